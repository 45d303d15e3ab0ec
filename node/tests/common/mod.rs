//! What the mesh tests in synthetic time share.
use std::time::Duration;

use tapmesh_node::peers::Path;
use tapmesh_sim::Net;
use tapmesh_sim::build::network;
use tapmesh_sim::frames::{frame, mac};

/// Three connected mesh nodes that announced their MACs.
pub fn mesh() -> Net {
    let (mut net, _) = network(3, true);
    net.advance(Duration::from_secs(2));
    for i in 0..3u8 {
        net.send(i.into(), &frame([0xff; 6], mac(i + 1), 1000 + u32::from(i)));
    }
    net.advance(Duration::from_millis(100));
    net
}

/// Node `i`'s path to node `peer`.
pub fn path(net: &Net, i: usize, peer: usize) -> Option<Path> {
    net.nodes[i]
        .peers()
        .path_of(net.now, &format!("h{}", peer + 1))
}
