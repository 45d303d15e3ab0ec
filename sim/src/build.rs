//! Ready-made networks: a switch admitting `h1`..`hn` and their nodes, or a
//! cluster of switches with nodes homed on each.
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use overlay_proto::keys::StaticSecret;
use tapmesh_node::engine::Node;
use tapmesh_node::failover::SwitchTarget;
use tapmesh_switch::cluster::{ClusterConfig, PeerSwitch};
use tapmesh_switch::fabric::{NodeSpec, Switch, SwitchConfig};
use tapmesh_switch::vlan::PortVlan;

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

/// Switch `k`'s underlay address in [`several_switches`] and [`cluster`] (0 is
/// [`switch_addr`]).
pub fn nth_switch_addr(k: usize) -> SocketAddr {
    SocketAddr::from(([198, 18, 0, 3 + k as u8], 7777))
}

/// `switches` independent switches (each in mesh mode if `mesh`), each
/// admitting `h1`..`hn`, and `n` nodes listing all of them in order: the
/// first is [`Net::switch`], the others are [`Net::others`] at
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
        net.add_switch(switch(c, t0, mesh), nth_switch_addr(k));
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

/// A cluster built by [`cluster`]: each switch's config and `[cluster]`.
#[derive(Debug, Clone)]
pub struct ClusterSetup {
    /// Switch `k`'s core config (every switch admits every node).
    pub switches: Vec<SwitchConfig>,
    /// Switch `k`'s `[cluster]`: named `s{k}`, listing every other switch.
    pub clusters: Vec<ClusterConfig>,
}

/// A cluster of switches `s0`..: node `h{i+1}` is homed on switch
/// `homes[i]` (every switch admits every node, all in network `default`).
/// Switch 0 is the [`Net`]'s switch, the others are in [`Net::others`]
/// (switch `k` at index `k - 1`), at [`nth_switch_addr`]. With `store`,
/// each switch publishes what it owns ([`ClusterConfig::etcd_endpoints`] is
/// set, nothing connects to it).
pub fn cluster(homes: &[usize], store: bool) -> (Net, ClusterSetup) {
    cluster_with_vlans(homes, store, |_| PortVlan::Transparent)
}

/// [`cluster`], node `h{i+1}`'s port in VLANs `vlan(i)` on every switch.
pub fn cluster_with_vlans(
    homes: &[usize],
    store: bool,
    vlan: impl Fn(usize) -> PortVlan,
) -> (Net, ClusterSetup) {
    build_cluster(homes, store, false, vlan)
}

/// [`cluster`] with a store, every switch in mesh mode, and node `h{i+1}`
/// listing every switch, its home `homes[i]` first and the others after it
/// in cyclic order (so it fails over when its home dies).
pub fn mesh_cluster(homes: &[usize]) -> (Net, ClusterSetup) {
    build_cluster(homes, true, true, |_| PortVlan::Transparent)
}

fn build_cluster(
    homes: &[usize],
    store: bool,
    mesh: bool,
    vlan: impl Fn(usize) -> PortVlan,
) -> (Net, ClusterSetup) {
    let t0 = Instant::now();
    let wall = Duration::from_secs(1_700_000_000);
    let mut rng = rand::rng();
    let n_switches = homes.iter().max().map_or(1, |m| m + 1);
    let switch_keys: Vec<StaticSecret> = (0..n_switches)
        .map(|_| StaticSecret::generate(&mut rng))
        .collect();
    let keys: Vec<StaticSecret> = (0..homes.len())
        .map(|_| StaticSecret::generate(&mut rng))
        .collect();
    let nodes: Vec<NodeSpec> = (keys.iter().enumerate())
        .map(|(i, k)| NodeSpec {
            vlan: vlan(i),
            ..NodeSpec::new(format!("h{}", i + 1), k.public_key())
        })
        .collect();
    let mut setup = ClusterSetup {
        switches: Vec::new(),
        clusters: Vec::new(),
    };
    for (k, key) in switch_keys.iter().enumerate() {
        setup
            .switches
            .push(SwitchConfig::new(key.clone(), nodes.clone()));
        setup.clusters.push(ClusterConfig {
            name: format!("s{k}").into(),
            etcd_endpoints: if store {
                vec!["http://198.18.0.100:2379".into()]
            } else {
                Vec::new()
            },
            etcd_credentials: Default::default(),
            lease_ttl: Duration::from_secs(5),
            prefix: "/tapmesh".into(),
            switches: (switch_keys.iter().enumerate())
                .filter(|(j, _)| *j != k)
                .map(|(j, s)| PeerSwitch {
                    name: format!("s{j}").into(),
                    public_key: s.public_key(),
                    endpoint: nth_switch_addr(j),
                })
                .collect(),
        });
    }
    let core = |k: usize| {
        let mut s = Switch::new(setup.switches[k].clone(), t0, k as u64 + 1);
        if mesh {
            s.enable_mesh();
        }
        s.join_cluster(t0, wall, "default", &setup.clusters[k]);
        s
    };
    let mut net = Net::new(t0, nth_switch_addr(0), Some(core(0)));
    for k in 1..n_switches {
        net.add_switch(core(k), nth_switch_addr(k));
    }
    for (i, key) in keys.into_iter().enumerate() {
        let home = homes[i];
        let mut cfg =
            crate::node_config(key, switch_keys[home].public_key(), nth_switch_addr(home));
        if mesh {
            cfg.set_switches(
                (0..n_switches)
                    .map(|d| (home + d) % n_switches)
                    .map(|k| SwitchTarget {
                        name: format!("s{k}"),
                        key: switch_keys[k].public_key(),
                        addr: nth_switch_addr(k),
                    })
                    .collect(),
            );
        }
        let mut node = Node::new(cfg, t0, wall, i as u64);
        if mesh {
            node.set_local_addrs(vec![node_addr(i)]);
        }
        net.add_node(node, node_addr(i));
    }
    (net, setup)
}
