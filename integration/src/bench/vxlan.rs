//! The kernel VXLAN overlay the benchmarks compare tapmesh with: in hosts 1
//! and 2 of a [`Topology`], `vx0` (VNI 42, UDP 4789, unicast flooding to the
//! other host) in a bridge `brov` holding 198.19.1.i/24, MTU 1450.
use std::net::Ipv4Addr;

use crate::Topology;
use crate::topology::underlay_v4;

/// Adds the VXLAN overlay to hosts 1 and 2.
pub fn add(topo: &Topology) {
    for (i, peer) in [(1usize, 2usize), (2, 1)] {
        let ns = topo.ns(i);
        let local = underlay_v4(i).to_string();
        let remote = underlay_v4(peer).to_string();
        ns.ip(&[
            "link", "add", "vx0", "type", "vxlan", "id", "42", "dstport", "4789", "local", &local,
            "dev", "eth0",
        ]);
        ns.exec_ok(
            "bridge",
            &[
                "fdb",
                "append",
                "00:00:00:00:00:00",
                "dev",
                "vx0",
                "dst",
                &remote,
            ],
        );
        ns.ip(&["link", "add", "brov", "type", "bridge"]);
        ns.ip(&["link", "set", "vx0", "master", "brov"]);
        ns.ip(&["link", "set", "vx0", "mtu", "1450"]);
        ns.ip(&["link", "set", "brov", "mtu", "1450"]);
        ns.ip(&["addr", "add", &format!("{}/24", v4(i)), "dev", "brov"]);
        ns.ip(&["link", "set", "vx0", "up"]);
        ns.ip(&["link", "set", "brov", "up"]);
    }
}

/// Removes it again.
pub fn remove(topo: &Topology) {
    for i in [1, 2] {
        topo.ns(i).ip(&["link", "del", "brov"]);
        topo.ns(i).ip(&["link", "del", "vx0"]);
    }
}

/// Host `i`'s address on the VXLAN overlay, 198.19.1.i.
pub fn v4(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 19, 1, i as u8)
}
