//! A ready-made network: a switch admitting `h1`..`hn` and their nodes.
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use overlay_proto::keys::StaticSecret;
use tapmesh_node::engine::Node;
use tapmesh_node::failover::SwitchTarget;
use tapmesh_switch::fabric::{NodeSpec, Switch, SwitchConfig};

use crate::Net;

/// The switch's underlay address.
pub fn switch_addr() -> SocketAddr {
    SocketAddr::from(([198, 18, 0, 3], 7777))
}

/// Node `i`'s underlay address.
pub fn node_addr(i: usize) -> SocketAddr {
    SocketAddr::from(([198, 18, 0, 10 + i as u8], 4000))
}

/// A switch (in mesh mode if `mesh`) admitting `h1`..`hn` with fresh keys,
/// and those `n` nodes at [`node_addr`], before any time has passed. Also
/// returns the switch's config, to restart or reload it.
pub fn network(n: usize, mesh: bool) -> (Net, SwitchConfig) {
    let t0 = Instant::now();
    let mut rng = rand::rng();
    let switch_key = StaticSecret::generate(&mut rng);
    let keys: Vec<StaticSecret> = (0..n).map(|_| StaticSecret::generate(&mut rng)).collect();
    let cfg = SwitchConfig::new(
        switch_key.clone(),
        keys.iter()
            .enumerate()
            .map(|(i, k)| NodeSpec::new(format!("h{}", i + 1), k.public_key()))
            .collect(),
    );
    let mut net = Net::new(t0, switch_addr(), Some(switch(&cfg, t0, mesh)));
    for (i, k) in keys.into_iter().enumerate() {
        let cfg = crate::node_config(k, switch_key.public_key(), switch_addr());
        let mut node = Node::new(cfg, t0, Duration::from_secs(1_700_000_000), i as u64);
        node.set_local_addrs(vec![node_addr(i)]);
        net.add_node(node, node_addr(i));
    }
    (net, cfg)
}

/// Switch `k`'s underlay address in [`several_switches`] (0 is
/// [`switch_addr`]).
pub fn nth_switch_addr(k: usize) -> SocketAddr {
    SocketAddr::from(([198, 18, 0, 3 + k as u8], 7777))
}

/// `switches` independent switches (each in mesh mode if `mesh`), each
/// admitting `h1`..`hn`, and `n` nodes listing all of them in order: the
/// first is [`Net::switch`], the others are [`Net::more_switches`] at
/// [`nth_switch_addr`]. Also returns each switch's config.
pub fn several_switches(n: usize, switches: usize, mesh: bool) -> (Net, Vec<SwitchConfig>) {
    let t0 = Instant::now();
    let mut rng = rand::rng();
    let keys: Vec<StaticSecret> = (0..n).map(|_| StaticSecret::generate(&mut rng)).collect();
    let cfgs: Vec<SwitchConfig> = (0..switches)
        .map(|_| {
            SwitchConfig::new(
                StaticSecret::generate(&mut rng),
                keys.iter()
                    .enumerate()
                    .map(|(i, k)| NodeSpec::new(format!("h{}", i + 1), k.public_key()))
                    .collect(),
            )
        })
        .collect();
    let targets: Vec<SwitchTarget> = cfgs
        .iter()
        .enumerate()
        .map(|(k, c)| SwitchTarget {
            name: format!("sw{}", k + 1),
            key: c.private_key.public_key(),
            addr: nth_switch_addr(k),
        })
        .collect();
    let mut net = Net::new(t0, switch_addr(), Some(switch(&cfgs[0], t0, mesh)));
    for (k, c) in cfgs.iter().enumerate().skip(1) {
        net.add_switch(nth_switch_addr(k), switch(c, t0, mesh));
    }
    for (i, k) in keys.into_iter().enumerate() {
        let mut cfg = crate::node_config(k, targets[0].key, targets[0].addr);
        cfg.set_switches(targets.clone());
        let mut node = Node::new(cfg, t0, Duration::from_secs(1_700_000_000), i as u64);
        node.set_local_addrs(vec![node_addr(i)]);
        net.add_node(node, node_addr(i));
    }
    (net, cfgs)
}

/// A fresh switch core with `cfg` (in mesh mode if `mesh`), as after a
/// restart without a state file.
pub fn switch(cfg: &SwitchConfig, now: Instant, mesh: bool) -> Switch {
    let mut s = Switch::new(cfg.clone(), now, 1);
    if mesh {
        s.enable_mesh();
    }
    s
}
