//! Helpers shared by the monitoring test and the metrics benchmark: where the
//! daemons serve metrics in a test topology, scraping, process CPU time.
use std::net::SocketAddr;

use crate::topology::underlay_v4;
use crate::{Netns, Topology, http};

/// The port every daemon serves `/metrics` on in test topologies.
pub const METRICS_PORT: u16 = 9101;

/// Where the switch serves metrics.
pub fn switch_metrics_addr() -> SocketAddr {
    SocketAddr::new([198, 18, 0, 3].into(), METRICS_PORT)
}

/// Where node `i` serves metrics.
pub fn node_metrics_addr(i: usize) -> SocketAddr {
    SocketAddr::new(underlay_v4(i).into(), METRICS_PORT)
}

/// A topology of `hosts` hosts whose switch and nodes serve metrics on their underlay addresses.
pub fn topology_with_metrics(hosts: usize) -> Topology {
    let mut topo = Topology::central(hosts);
    topo.set_switch_config_extra(&format!("metrics-listen = \"{}\"", switch_metrics_addr()));
    for i in 1..=hosts {
        topo.set_node_config_extra(i, &format!("metrics-listen = \"{}\"", node_metrics_addr(i)));
    }
    topo
}

/// `/metrics` text, fetched from inside `ns`.
pub fn scrape(ns: &Netns, addr: SocketAddr) -> String {
    let r = http::get(ns, addr, "/metrics").unwrap_or_else(|e| panic!("GET {addr}/metrics: {e}"));
    assert_eq!(r.status, 200, "GET {addr}/metrics: {}", r.body);
    assert!(
        r.content_type
            .as_deref()
            .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")),
        "content type {:?}",
        r.content_type
    );
    r.body
}
