//! `switch.toml` loading: defaults, each section, and that every error
//! names its key.
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use overlay_proto::keys::StaticSecret;
use tapmesh_shell::config::ConfigError;

use super::Config;
use super::network::{NodeEntry, port_vlan};
use crate::snooping::SnoopConfig;
use crate::storm::{Rate, StormConfig};
use crate::vlan::PortVlan;

mod etcd_credentials;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn setup(extra: &str) -> Result<Config, ConfigError> {
    setup_with(|_| extra.to_string())
}

/// Like `setup`; `extra` gets h1's public key.
fn setup_with(extra: impl Fn(&str) -> String) -> Result<Config, ConfigError> {
    setup_files(&[], extra)
}

/// Like `setup_with`, with more files (name, contents, mode) beside the
/// config.
fn setup_files(
    files: &[(&str, &str, u32)],
    extra: impl Fn(&str) -> String,
) -> Result<Config, ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!(
        "tm-cfg-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let k = StaticSecret::generate(&mut rand::rng());
    write(&dir, "s.key", &k.to_base64());
    for (name, text, mode) in files {
        let f = write(&dir, name, text);
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(*mode)).unwrap();
    }
    let pk = k.public_key().to_base64();
    let extra = extra(&pk);
    let p = write(
        &dir,
        "switch.toml",
        &format!(
            "listen = \"198.18.0.3:7777\"\nprivate-key-file = \"s.key\"\n{extra}\n[[node]]\nname = \"h1\"\npublic-key = \"{pk}\"\n"
        ),
    );
    let r = Config::load(&p);
    std::fs::remove_dir_all(&dir).unwrap();
    r
}

#[test]
fn good_config_with_defaults() {
    let c = setup("").unwrap();
    assert_eq!(c.listen, "198.18.0.3:7777".parse().unwrap());
    assert_eq!(c.networks[0].core.mac_aging, Duration::from_secs(300));
    assert_eq!(c.networks[0].core.node_timeout, Duration::from_secs(30));
    assert_eq!(c.networks[0].core.mac_limit_per_node, 1024);
    assert_eq!(c.networks[0].core.nodes.len(), 1);
    assert_eq!(c.metrics_listen, None);
    let c = setup("metrics-listen = \"127.0.0.1:9101\"").unwrap();
    assert_eq!(c.metrics_listen, Some("127.0.0.1:9101".parse().unwrap()));
    assert_eq!(c.log_level, None);
    let c = setup("log-level = \"debug\"").unwrap();
    assert_eq!(c.log_level.as_deref(), Some("debug"));
    let e = setup("log-level = \"info,tapmesh_switch=noisy\"").unwrap_err();
    assert_eq!(e.key, "log-level", "{e}");
    assert_eq!(c.networks[0].core.handshake_guard.load_threshold, 200);
    let c = setup("handshake-load-threshold = 5\ncookie-replies-per-sec = 7").unwrap();
    assert_eq!(c.networks[0].core.handshake_guard.load_threshold, 5);
    assert_eq!(c.networks[0].core.handshake_guard.cookie_replies_per_sec, 7);
    let e = setup("handshake-load-threshold = 0").unwrap_err();
    assert_eq!(e.key, "handshake-load-threshold", "{e}");
}

#[test]
fn networks() {
    let other = StaticSecret::generate(&mut rand::rng())
        .public_key()
        .to_base64();
    let blue = |id: u32, name: &str, node: &str, pk: &str| {
        format!(
            "[[network]]\nname = \"{name}\"\nid = {id}\nmode = \"mesh\"\n[[network.node]]\nname = \"{node}\"\npublic-key = \"{pk}\"\n"
        )
    };
    let c = setup_with(|_| blue(2, "blue", "b1", &other)).unwrap();
    let n: Vec<_> = c
        .networks
        .iter()
        .map(|n| {
            (
                n.name.as_str(),
                n.core.network_id,
                n.mode,
                n.core.nodes.len(),
            )
        })
        .collect();
    assert_eq!(
        n,
        [
            ("default", 0, crate::mesh::Mode::Central, 1),
            ("blue", 2, crate::mesh::Mode::Mesh, 1)
        ]
    );
    assert_eq!(c.networks[1].core.nodes[0].name, "b1");
    for (extra, key) in [
        (blue(0, "blue", "b1", &other), "network[0].id"),
        (blue(2, "default", "b1", &other), "network[0].name"),
        (blue(2, "blue", "h1", &other), "network[0].node[0].name"),
        (blue(2, "", "b1", &other), "network[0].name"),
    ] {
        let e = setup_with(|_| extra.clone()).unwrap_err();
        assert_eq!(e.key, key, "{e}");
    }
    // A key admitted to two networks.
    let e = setup_with(|pk| blue(2, "blue", "b1", pk)).unwrap_err();
    assert_eq!(e.key, "network[0].node[0].public-key", "{e}");
    // Two [[network]]s with the same id.
    let e = setup_with(|_| blue(2, "blue", "b1", &other) + &blue(2, "green", "g1", "AAAA"))
        .unwrap_err();
    assert_eq!(e.key, "network[1].id", "{e}");
}

#[test]
fn errors_name_the_key() {
    let e = setup("colour = \"blue\"").unwrap_err();
    assert_eq!(e.key, "colour", "{e}");
    let e = setup("mac-aging-secs = \"long\"").unwrap_err();
    assert_eq!(e.key, "mac-aging-secs", "{e}");
    let e = setup("mac-aging-secs = 0").unwrap_err();
    assert_eq!(e.key, "mac-aging-secs", "{e}");
    let e = setup("metrics-listen = \"localhost\"").unwrap_err();
    assert_eq!(e.key, "metrics-listen", "{e}");
    let e = setup("network-secret-file = \"/nonexistent/x\"").unwrap_err();
    assert_eq!(e.key, "network-secret-file", "{e}");
    assert!(!e.to_string().contains('\n'));
}

#[test]
fn multicast_and_storm_sections() {
    let c = setup("").unwrap();
    assert_eq!(c.networks[0].core.multicast, SnoopConfig::default());
    assert_eq!(
        c.networks[0].core.storm,
        StormConfig {
            exempt_link_local: true,
            ..StormConfig::default()
        }
    );
    assert_eq!(c.networks[0].core.nodes[0].vlan, PortVlan::Transparent);
    let c = setup(
        "[multicast]\nsnooping = false\nmembership-secs = 8\nquery-interval-secs = 2\nquery-response-secs = 1\nquerier-address = \"198.19.0.254\"\n[storm-control]\nbroadcast-pps = 500\n",
    )
    .unwrap();
    assert!(!c.networks[0].core.multicast.enabled);
    assert_eq!(
        c.networks[0].core.multicast.membership,
        Duration::from_secs(8)
    );
    assert_eq!(
        c.networks[0].core.multicast.querier_v4,
        Ipv4Addr::new(198, 19, 0, 254)
    );
    let limits = setup("[multicast]\nmax-groups-per-node = 10\nmax-groups = 20\nmax-groups-total = 30\nmax-sources-per-group = 4\nleaves-per-sec = 5\n").unwrap();
    let m = &limits.networks[0].core.multicast;
    assert_eq!(
        (m.max_groups_per_node, m.max_groups, m.max_groups_total),
        (10, 20, 30)
    );
    assert_eq!((m.max_sources_per_group, m.leaves_per_sec), (4, 5));
    assert_eq!(
        c.networks[0].core.storm.broadcast,
        Some(Rate {
            per_sec: 500,
            burst: 500
        })
    );
    for (extra, key) in [
        (
            "[multicast]\nmembership-secs = 100\n",
            "multicast.query-interval-secs",
        ),
        (
            "[multicast]\nquerier-address-v6 = \"fd00::1\"\n",
            "multicast.querier-address-v6",
        ),
        (
            "[multicast]\nquerier-mac = \"01:00:5e:00:00:01\"\n",
            "multicast.querier-mac",
        ),
        ("[multicast]\nmax-groups = 0\n", "multicast.max-groups"),
        (
            "[multicast]\nmax-sources-per-group = -1\n",
            "max-sources-per-group",
        ),
        ("[multicast]\ncolour = 1\n", "colour"),
        (
            "[storm-control]\nbroadcast-pps = 0\n",
            "storm-control.broadcast-pps",
        ),
    ] {
        let e = setup(extra).unwrap_err();
        assert_eq!(e.key, key, "{e}");
    }
}

#[test]
fn snooping_control_keys() {
    let c =
        setup("[multicast]\nigmp-version = 2\nmld-version = 1\nmetrics-top-groups = 5\n").unwrap();
    let m = &c.networks[0].core.multicast;
    assert_eq!(
        (m.igmp_version, m.mld_version, m.metrics_top_groups),
        (2, 1, 5)
    );
    let d = setup("").unwrap();
    let m = &d.networks[0].core.multicast;
    assert_eq!(
        (m.igmp_version, m.mld_version, m.metrics_top_groups),
        (3, 2, 20)
    );
    for (extra, key) in [
        ("[multicast]\nigmp-version = 1\n", "multicast.igmp-version"),
        ("[multicast]\nmld-version = 3\n", "multicast.mld-version"),
        (
            "[multicast]\nmetrics-top-groups = 100000\n",
            "multicast.metrics-top-groups",
        ),
    ] {
        let e = setup(extra).unwrap_err();
        assert_eq!(e.key, key, "{e}");
        assert!(!e.to_string().contains('\n'));
    }
    let r = setup_node("multicast-router = true").unwrap();
    assert!(r.networks[0].core.nodes[0].multicast_router);
    assert!(!d.networks[0].core.nodes[0].multicast_router);
    let e = setup_node("multicast-router = \"yes\"").unwrap_err();
    assert!(e.to_string().contains("multicast-router"), "{e}");
}

/// A config with node h1 followed by `node_extra` (its sub-tables).
fn setup_node(node_extra: &str) -> Result<Config, ConfigError> {
    let dir = std::env::temp_dir().join(format!(
        "tm-cfg-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let k = StaticSecret::generate(&mut rand::rng());
    write(&dir, "s.key", &k.to_base64());
    let pk = k.public_key().to_base64();
    let p = write(
        &dir,
        "switch.toml",
        &format!(
            "listen = \"198.18.0.3:7777\"\nprivate-key-file = \"s.key\"\n[[node]]\nname = \"h1\"\npublic-key = \"{pk}\"\n{node_extra}\n"
        ),
    );
    let r = Config::load(&p);
    std::fs::remove_dir_all(&dir).unwrap();
    r
}

#[test]
fn impair_section() {
    let c = setup_node("").unwrap();
    assert!(c.networks[0].impair.is_empty());
    let c = setup_node(
        "[node.impair]\nlink = \"down\"\nseed = 7\n[node.impair.egress]\nloss-percent = 5\ndelay-ms = 20\njitter-ms = 2.5\nrate-bits-per-sec = 1000000\n[node.impair.ingress]\nburst-enter-percent = 1\nburst-exit-percent = 30\n",
    )
    .unwrap();
    let (name, l) = &c.networks[0].impair[0];
    assert_eq!(name, "h1");
    assert!(l.down);
    assert_eq!(l.egress.loss, 0.05);
    assert_eq!(l.egress.delay, Duration::from_millis(20));
    assert_eq!(l.egress.jitter, Duration::from_micros(2500));
    assert_eq!(l.egress.rate, Some(1_000_000));
    assert_eq!(l.egress.seed, Some(7));
    let b = l.ingress.burst.unwrap();
    assert_eq!((b.enter, b.exit, b.loss_bad), (0.01, 0.3, 1.0));
    for (extra, key) in [
        (
            "[node.impair.egress]\nloss-percent = 150\n",
            "node[0].impair.egress.loss-percent",
        ),
        (
            "[node.impair.ingress]\ndelay-ms = -1\n",
            "node[0].impair.ingress.delay-ms",
        ),
        (
            "[node.impair.egress]\nburst-exit-percent = 10\n",
            "node[0].impair.egress.burst-enter-percent",
        ),
        (
            "[node.impair.egress]\nqueue-frames = 0\n",
            "node[0].impair.egress.queue-frames",
        ),
        (
            "[node.impair.egress]\nrate-bits-per-sec = 0\n",
            "node[0].impair.egress.rate-bits-per-sec",
        ),
        ("[node.impair]\nlink = \"sideways\"\n", "link"),
        ("[node.impair.egress]\nlos-percent = 1\n", "los-percent"),
    ] {
        let e = setup_node(extra).unwrap_err();
        assert!(e.key.ends_with(key), "{extra}: {e}");
        assert!(!e.to_string().contains('\n'));
    }
}

#[test]
fn node_vlans() {
    let n = |vlan: Option<u16>, trunk: Option<Vec<u16>>| NodeEntry {
        name: "x".into(),
        public_key: String::new(),
        vlan,
        trunk,
        fast_leave: false,
        multicast_router: false,
        impair: None,
    };
    assert_eq!(
        port_vlan(&n(None, None), false).unwrap(),
        PortVlan::Transparent
    );
    assert_eq!(
        port_vlan(&n(None, None), true).unwrap(),
        PortVlan::Member {
            native: Some(1),
            tagged: vec![]
        }
    );
    assert_eq!(
        port_vlan(&n(None, Some(vec![20, 10])), true).unwrap(),
        PortVlan::Member {
            native: None,
            tagged: vec![10, 20]
        }
    );
    assert_eq!(port_vlan(&n(Some(4095), None), true).unwrap_err().0, "vlan");
    assert_eq!(
        port_vlan(&n(Some(10), Some(vec![10])), true).unwrap_err().0,
        "trunk"
    );
    assert_eq!(
        port_vlan(&n(None, Some(vec![])), true).unwrap_err().0,
        "trunk"
    );
}

/// h1, h2 and h3 (with keys of their own), then `extra`.
fn setup_three(extra: &str) -> Result<Config, ConfigError> {
    let key = || {
        StaticSecret::generate(&mut rand::rng())
            .public_key()
            .to_base64()
    };
    setup_node(&format!(
        "[[node]]\nname = \"h2\"\npublic-key = \"{}\"\n[[node]]\nname = \"h3\"\npublic-key = \"{}\"\n{extra}",
        key(),
        key()
    ))
}

#[test]
fn mirror_sessions() {
    use crate::mirror::{DEFAULT_RATE, MirrorDirection, MirrorSpec};
    assert!(setup_three("").unwrap().networks[0].mirrors.is_empty());
    let c = setup_three(
        "[[mirror]]\nname = \"m1\"\nsource = \"h1\"\ndestination = \"h3\"\n[[mirror]]\nname = \"m2\"\nsource = \"h2\"\ndestination = \"h3\"\ndirection = \"sent\"\nrate = 5\n",
    )
    .unwrap();
    assert_eq!(
        c.networks[0].mirrors,
        [
            MirrorSpec::new("m1", "h1", "h3"),
            MirrorSpec {
                direction: MirrorDirection::Sent,
                rate: 5,
                ..MirrorSpec::new("m2", "h2", "h3")
            }
        ]
    );
    assert_eq!(c.networks[0].mirrors[0].rate, DEFAULT_RATE);
    // A VLAN filter on a VLAN-aware network, for a VLAN the source is in.
    let c = setup_three(
        "[[node]]\nname = \"t\"\npublic-key = \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"\ntrunk = [10]\n[[mirror]]\nname = \"m1\"\nsource = \"t\"\ndestination = \"h3\"\nvlan = 10\n",
    )
    .unwrap();
    assert_eq!(c.networks[0].mirrors[0].vlan, Some(10));
    let m = |body: &str| format!("[[mirror]]\nname = \"m1\"\n{body}\n");
    for (extra, key) in [
        (
            m("source = \"h9\"\ndestination = \"h3\""),
            "mirror[0].source",
        ),
        (
            m("source = \"h1\"\ndestination = \"h9\""),
            "mirror[0].destination",
        ),
        (
            m("source = \"h1\"\ndestination = \"h1\""),
            "mirror[0].destination",
        ),
        (
            m("source = \"h1\"\ndestination = \"h3\"\nrate = 0"),
            "mirror[0].rate",
        ),
        (
            m("source = \"h1\"\ndestination = \"h3\"\nvlan = 10"),
            "mirror[0].vlan",
        ),
        (
            m("source = \"h1\"\ndestination = \"h3\"\ndirection = \"sideways\""),
            "direction",
        ),
        (
            m("source = \"h1\"\ndestination = \"h3\"\ncolour = \"red\""),
            "colour",
        ),
        (
            "[[mirror]]\nname = \"m 1\"\nsource = \"h1\"\ndestination = \"h3\"\n".into(),
            "mirror[0].name",
        ),
        (
            m("source = \"h1\"\ndestination = \"h3\"")
                + &m("source = \"h2\"\ndestination = \"h3\""),
            "mirror[1].name",
        ),
    ] {
        let e = setup_three(&extra).unwrap_err();
        assert!(e.key.ends_with(key), "{extra}: {e}");
        assert!(!e.to_string().contains('\n'), "{e}");
    }
    // The source of a [[network]]'s session must be one of its nodes.
    let other = StaticSecret::generate(&mut rand::rng())
        .public_key()
        .to_base64();
    let e = setup_three(&format!(
        "[[network]]\nname = \"blue\"\nid = 2\n[[network.node]]\nname = \"b1\"\npublic-key = \"{other}\"\n[[network.mirror]]\nname = \"m1\"\nsource = \"h1\"\ndestination = \"b1\"\n"
    ))
    .unwrap_err();
    assert_eq!(e.key, "network[0].mirror[0].source", "{e}");
    assert!(
        e.to_string().contains("no node \"h1\" in network \"blue\""),
        "{e}"
    );
}

#[test]
fn cluster_section() {
    let c = setup("").unwrap();
    assert_eq!(c.cluster, None, "no [cluster]: a switch alone");
    let other = StaticSecret::generate(&mut rand::rng())
        .public_key()
        .to_base64();
    let peer = |name: &str, key: &str, endpoint: &str| {
        format!(
            "[[cluster.switch]]\nname = \"{name}\"\npublic-key = \"{key}\"\nendpoint = \"{endpoint}\"\n"
        )
    };
    let c = setup(&format!(
        "[cluster]\nname = \"sw1\"\n{}",
        peer("sw2", &other, "198.18.0.4:7777")
    ))
    .unwrap();
    let cl = c.cluster.unwrap();
    assert_eq!(&*cl.name, "sw1");
    assert!(cl.etcd_endpoints.is_empty());
    assert_eq!(cl.lease_ttl, Duration::from_secs(5));
    assert_eq!(cl.prefix, "/tapmesh");
    assert_eq!(cl.switches.len(), 1);
    assert_eq!(&*cl.switches[0].name, "sw2");
    assert_eq!(cl.switches[0].endpoint, "198.18.0.4:7777".parse().unwrap());
    let c = setup(
        "[cluster]\nname = \"sw1\"\netcd-endpoints = [\"http://198.18.0.9:2379\", \"http://198.18.0.10:2379\"]\nlease-ttl-secs = 10\nprefix = \"/lab/ha\"\n",
    )
    .unwrap();
    let cl = c.cluster.unwrap();
    assert_eq!(cl.etcd_endpoints.len(), 2);
    assert_eq!(cl.lease_ttl, Duration::from_secs(10));
    assert_eq!(cl.prefix, "/lab/ha");

    // Each bad value names its key.
    let bad = |extra: String, key: &str| {
        let e = setup(&extra).unwrap_err();
        assert_eq!(e.key, key, "{e}");
        assert!(e.to_string().contains("switch.toml"), "{e}");
    };
    bad("[cluster]\nname = \"\"\n".into(), "cluster.name");
    bad("[cluster]\nname = \"a/b\"\n".into(), "cluster.name");
    bad(
        "[cluster]\nname = \"a\"\netcd-endpoints = [\"198.18.0.9:2379\"]\n".into(),
        "cluster.etcd-endpoints[0]",
    );
    bad(
        "[cluster]\nname = \"a\"\nlease-ttl-secs = 1\n".into(),
        "cluster.lease-ttl-secs",
    );
    bad(
        "[cluster]\nname = \"a\"\nlease-ttl-secs = 61\n".into(),
        "cluster.lease-ttl-secs",
    );
    bad(
        "[cluster]\nname = \"a\"\nprefix = \"tapmesh\"\n".into(),
        "cluster.prefix",
    );
    bad(
        format!(
            "[cluster]\nname = \"a\"\n{}",
            peer("a", &other, "198.18.0.4:1")
        ),
        "cluster.switch[0].name",
    );
    bad(
        format!(
            "[cluster]\nname = \"a\"\n{}{}",
            peer("b", &other, "198.18.0.4:1"),
            peer("c", &other, "198.18.0.5:1")
        ),
        "cluster.switch[1].public-key",
    );
    bad(
        format!(
            "[cluster]\nname = \"a\"\n{}",
            peer("b", "nope", "198.18.0.4:1")
        ),
        "cluster.switch[0].public-key",
    );
    bad(
        format!("[cluster]\nname = \"a\"\n{}", peer("b", &other, "sw2:7777")),
        "cluster.switch[0].endpoint",
    );
    bad(
        format!(
            "[cluster]\nname = \"a\"\n{}",
            peer("b", &other, "0.0.0.0:7777")
        ),
        "cluster.switch[0].endpoint",
    );
    // A node's key (h1's) cannot be a switch's.
    let e = setup_with(|pk| format!("[cluster]\nname = \"a\"\n{}", peer("b", pk, "198.18.0.4:1")))
        .unwrap_err();
    assert_eq!(e.key, "cluster.switch[0].public-key", "{e}");
    // Unknown keys are refused (named as the TOML reader names them).
    let e = setup("[cluster]\nname = \"a\"\nbogus = 1\n").unwrap_err();
    assert!(e.to_string().contains("bogus"), "{e}");
}

#[test]
fn busy_poll_is_off_by_default_and_bounded() {
    assert_eq!(setup("").unwrap().busy_poll, None);
    assert_eq!(setup("busy-poll-us = 0").unwrap().busy_poll, None);
    let c = setup("busy-poll-us = 1000").unwrap();
    assert_eq!(c.busy_poll, Some(Duration::from_millis(1)));
    let e = setup("busy-poll-us = 5000").unwrap_err();
    assert_eq!(e.key, "busy-poll-us", "{e}");
    assert!(e.problem.contains("5000 is out of range 0..=1000"), "{e}");
    assert_eq!(setup("busy-poll-us = -3").unwrap_err().key, "busy-poll-us");
}

#[test]
fn workers_are_auto_by_default_and_bounded() {
    let auto = crate::workers::auto(crate::workers::cores());
    assert_eq!(setup("").unwrap().workers, auto);
    assert_eq!(setup("workers = \"auto\"").unwrap().workers, auto);
    assert_eq!(setup("workers = 2").unwrap().workers, 2);
    for bad in ["workers = 0", "workers = 65", "workers = -1"] {
        let e = setup(bad).unwrap_err();
        assert_eq!(e.key, "workers", "{e}");
        assert!(e.problem.contains("is not between 1 and 64"), "{e}");
        assert_eq!(e.to_string().lines().count(), 1, "{e}");
    }
    let e = setup("workers = \"all\"").unwrap_err();
    assert_eq!(e.key, "workers", "{e}");
    assert!(e.problem.contains("\"all\" is neither a number"), "{e}");
    for bad in ["workers = 2.5", "workers = true"] {
        let e = setup(bad).unwrap_err();
        assert_eq!(e.key, "workers", "{e}");
        assert!(
            e.problem
                .contains("a number of workers (1 to 64) or \"auto\""),
            "{e}"
        );
    }
}
