//! A switch in a cluster (`[cluster]` with etcd endpoints) against a real
//! three-member etcd cluster (Debian's etcd, started by the test, data in a
//! temporary directory): its lease and keys, a crash, etcd without quorum,
//! and a partition with and without compaction.
use std::time::{Duration, Instant};

use integration::etcd::{self, EtcdCluster, HEALTHY_TIMEOUT};
use integration::monitoring::{scrape, switch_metrics_addr};
use integration::status::counter;
use integration::topology::overlay_v4;
use integration::{Topology, wait_until};
use serde_json::Value;

/// Lease TTL of the switch under test.
const TTL_SECS: u64 = 3;
/// The switch's name in the cluster.
const NAME: &str = "sw1";
/// The switch's own key (top-level network `default`).
const SWITCH_KEY: &str = "/tapmesh/default/switch/sw1";
/// Margin on top of the lease TTL on two busy cores.
const MARGIN: Duration = Duration::from_secs(10);
/// The switch's link to the etcd subnet.
const ETCD_LINK: &str = "etcd0";

/// Two hosts on one switch, the switch attached to `etcd` and configured
/// with its endpoints; everything started and the overlay up.
fn switch_on(etcd: &mut EtcdCluster) -> Topology {
    let mut t = Topology::central(2);
    etcd.attach(t.switch_ns(), ETCD_LINK);
    let endpoints: Vec<String> = etcd
        .endpoint_list()
        .iter()
        .map(|e| format!("\"{e}\""))
        .collect();
    t.set_switch_config_extra(&format!(
        "metrics-listen = \"{}\"\n\
         cluster = {{ name = \"{NAME}\", etcd-endpoints = [{}], lease-ttl-secs = {TTL_SECS} }}\n",
        switch_metrics_addr(),
        endpoints.join(", ")
    ));
    t.start_all(Duration::from_secs(20));
    t.wait_mesh(&[1, 2], Duration::from_secs(20))
        .expect("overlay up");
    t
}

fn etcd_status(t: &Topology) -> Value {
    t.switch_status()
        .get("etcd")
        .cloned()
        .unwrap_or(Value::Null)
}

fn connection(t: &Topology) -> String {
    etcd_status(t)["connection"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn wait_connection(t: &Topology, state: &str, timeout: Duration) {
    assert!(
        wait_until(timeout, || connection(t) == state),
        "etcd connection not {state} after {timeout:?}: {}",
        etcd_status(t)
    );
}

#[test]
fn switch_writes_its_nodes_and_macs_under_its_lease_and_they_vanish_after_kill9() {
    let mut etcd = EtcdCluster::three();
    let mut t = switch_on(&mut etcd);
    wait_connection(&t, "connected", HEALTHY_TIMEOUT);
    assert!(
        wait_until(HEALTHY_TIMEOUT, || etcd
            .keys("/tapmesh/")
            .contains(&SWITCH_KEY.to_string())),
        "{SWITCH_KEY} not written: {:?}",
        etcd.keys("/tapmesh/")
    );
    // What the engine owns goes to etcd: the nodes homed here (with their
    // endpoints) and the MACs learned behind them, owned by this switch.
    let node_keys = ["/tapmesh/default/node/h1", "/tapmesh/default/node/h2"];
    let mac_prefix = "/tapmesh/default/mac/";
    assert!(
        wait_until(HEALTHY_TIMEOUT, || {
            let keys = etcd.keys("/tapmesh/");
            node_keys.iter().all(|k| keys.contains(&k.to_string()))
                && keys.iter().filter(|k| k.starts_with(mac_prefix)).count() >= 2
        }),
        "nodes and MACs not written: {:?}",
        etcd.keys("/tapmesh/")
    );
    let h1 = etcd.etcdctl(&["get", "--print-value-only", node_keys[0]]);
    assert!(
        h1.contains(&format!("\"switch\":\"{NAME}\"")) && h1.contains("198.18.0.11:"),
        "{h1}"
    );
    let s = etcd_status(&t);
    assert!(counter(&s, &["lease_id"]) > 0, "no lease: {s}");
    assert_eq!(counter(&s, &["lease_ttl_secs"]), TTL_SECS);
    assert!(counter(&s, &["writes"]) >= 1, "{s}");
    assert!(counter(&s, &["owned"]) >= 1, "{s}");
    assert!(counter(&s, &["revision"]) > 0, "{s}");

    // The metrics say the same.
    let m = scrape(t.switch_ns(), switch_metrics_addr());
    for line in [
        "tapmesh_switch_etcd_connection{state=\"connected\"} 1",
        "tapmesh_switch_etcd_connection{state=\"down\"} 0",
        "tapmesh_switch_etcd_leases_granted_total 1",
        "tapmesh_switch_etcd_resyncs_total{cause=\"connect\"} 1",
    ] {
        assert!(
            m.lines().any(|l| l == line),
            "no `{line}` in /metrics:\n{m}"
        );
    }
    assert!(m.contains("tapmesh_switch_etcd_writes_total "), "{m}");

    // kill -9: the lease is no longer kept alive; etcd deletes the key
    // within the TTL.
    let killed = Instant::now();
    t.kill9_switch();
    assert!(
        wait_until(Duration::from_secs(TTL_SECS) + MARGIN, || etcd
            .keys("/tapmesh/")
            .is_empty()),
        "keys outlived the switch by more than its TTL + margin: {:?}",
        etcd.keys("/tapmesh/")
    );
    eprintln!(
        "the switch's keys gone {:.1}s after kill -9 (TTL {TTL_SECS}s)",
        killed.elapsed().as_secs_f64()
    );
}

#[test]
fn forwarding_goes_on_without_etcd_quorum_and_the_switch_rejoins() {
    let mut etcd = EtcdCluster::three();
    let t = switch_on(&mut etcd);
    wait_connection(&t, "connected", HEALTHY_TIMEOUT);
    assert_eq!(counter(&etcd_status(&t), &["leases_granted"]), 1);

    // Pings run all along: leader killed, then a second member.
    let pinger = {
        let ns = t.ns(1).name().to_string();
        let to = overlay_v4(2).to_string();
        std::thread::spawn(move || {
            std::process::Command::new("ip")
                .args([
                    "netns", "exec", &ns, "ping", "-n", "-q", "-i", "0.2", "-c", "100", "-W", "1",
                ])
                .arg(&to)
                .output()
                .expect("ping runs")
        })
    };
    let leader = etcd.wait_leader(Duration::from_secs(10)).expect("a leader");
    etcd.kill9(leader);
    let second = (1..=3).find(|&i| i != leader).expect("3 members");
    etcd.kill9(second);
    // No quorum: the switch loses its session with etcd.
    wait_connection(&t, "down", Duration::from_secs(20));
    let out = pinger.join().expect("pinger thread");
    let text = String::from_utf8_lossy(&out.stdout);
    let received = text
        .split(',')
        .find_map(|p| p.trim().strip_suffix(" received"))
        .and_then(|n| n.trim().parse::<u32>().ok())
        .unwrap_or(0);
    assert!(
        received >= 95,
        "pings lost while etcd lost its quorum: {received}/100 received\n{text}"
    );

    // Recovery: the switch connects again and its key is there (the lease
    // survives: a new etcd leader extends every lease it takes over).
    etcd.restart(leader);
    etcd.restart(second);
    etcd.wait_healthy(HEALTHY_TIMEOUT).expect("etcd back");
    wait_connection(&t, "connected", Duration::from_secs(30));
    assert!(
        wait_until(HEALTHY_TIMEOUT, || etcd
            .keys("/tapmesh/")
            .contains(&SWITCH_KEY.to_string())),
        "{SWITCH_KEY} missing after the outage"
    );
    assert!(t.ping_ok_within(2, overlay_v4(1), Duration::from_secs(5)));
}

/// Partitions the switch from etcd, has another "switch" write meanwhile,
/// optionally compacts, heals, and returns the switch's etcd status before
/// and after, once it has caught up with that write.
fn partition_write_heal(etcd: &EtcdCluster, t: &Topology, n: u32, compact: bool) -> (Value, Value) {
    let before = etcd_status(t);
    etcd::partition_ns(t.switch_ns(), ETCD_LINK);
    wait_connection(t, "down", Duration::from_secs(20));
    // Cut off for longer than its TTL, the switch looks dead: its keys go.
    assert!(
        wait_until(Duration::from_secs(TTL_SECS) + MARGIN, || !etcd
            .keys("/tapmesh/")
            .contains(&SWITCH_KEY.to_string())),
        "{SWITCH_KEY} outlived the partition's TTL"
    );
    // Two writes: the history the switch misses is then longer than one
    // revision, so a compaction at the head takes some of it.
    for port in [7777, 7778] {
        etcd.etcdctl(&[
            "put",
            &format!("/tapmesh/default/switch/other{n}"),
            &format!(r#"{{"endpoint":"198.18.0.99:{port}"}}"#),
        ]);
    }
    let written = etcd.revision();
    if compact {
        etcd.compact();
    }
    etcd::heal_ns(t.switch_ns());
    wait_connection(t, "connected", Duration::from_secs(30));
    assert!(
        wait_until(HEALTHY_TIMEOUT, || etcd_status(t)["revision"]
            .as_i64()
            .unwrap_or(0)
            >= written),
        "the switch did not catch up with revision {written}: {}",
        etcd_status(t)
    );
    // Its lease expired meanwhile: a new one, and its keys written again.
    assert!(
        wait_until(HEALTHY_TIMEOUT, || etcd
            .keys("/tapmesh/")
            .contains(&SWITCH_KEY.to_string())),
        "{SWITCH_KEY} not written again after the partition"
    );
    let after = etcd_status(t);
    assert!(counter(&after, &["connects"]) > counter(&before, &["connects"]));
    assert_eq!(
        counter(&after, &["leases_granted"]),
        counter(&before, &["leases_granted"]) + 1,
        "{after}"
    );
    (before, after)
}

#[test]
fn after_a_partition_the_switch_catches_up_or_resyncs_behind_a_compaction() {
    let mut etcd = EtcdCluster::three();
    let t = switch_on(&mut etcd);
    wait_connection(&t, "connected", HEALTHY_TIMEOUT);

    // Back from a partition with the history still there: the watch goes on
    // from the last revision seen and gets the missed write; no re-read.
    let (before, after) = partition_write_heal(&etcd, &t, 1, false);
    assert_eq!(counter(&after, &["compactions"]), 0, "{after}");
    assert_eq!(
        counter(&after, &["resyncs"]),
        counter(&before, &["resyncs"]),
        "a whole re-read without a compaction: {after}"
    );
    assert!(
        counter(&after, &["watch_events"]) > counter(&before, &["watch_events"]),
        "{after}"
    );

    // The same with the history compacted meanwhile: the watch is cancelled
    // with the compact revision, and the switch reads the prefix again.
    let (before, after) = partition_write_heal(&etcd, &t, 2, true);
    assert_eq!(
        counter(&after, &["compactions"]),
        counter(&before, &["compactions"]) + 1,
        "the watch was not cancelled by the compaction: {after}"
    );
    assert_eq!(
        counter(&after, &["resyncs"]),
        counter(&before, &["resyncs"]) + 1,
        "{after}"
    );
}
