//! The switch on two cores (`workers = 2`): the worker thread opens every
//! data datagram and forwards known unicast itself (the fast path), TCP
//! sees no more retransmissions than through the same switch with one
//! worker, measured in the same test between the same hosts, and a mirror
//! takes the fast path back to the core at once; a send the kernel refuses
//! the worker is counted. A handshake flood is stopped by the workers'
//! gate: the core's socket sees none of it, and a node that restarts during
//! it connects (its cookie comes from a worker's socket).
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use integration::attack::{RawSender, flood_switch_under_load, garbage, unknown_key_initiations};
use integration::bench::iperf::{self, Load};
use integration::status::counter;
use integration::topology::{overlay_v4, underlay_v4};
use integration::{Topology, bins, wait_until};
use overlay_proto::keys::PublicKey;
use serde_json::Value;

const UP: Duration = Duration::from_secs(20);
/// Seconds of iperf3 TCP per worker setting.
const SECS: u32 = 3;
/// The handshake flood at the gate: far above the load threshold (200/s).
const FLOOD_RATE: u64 = 20_000;

/// Sender retransmissions of an iperf3 TCP stream h1 -> h2, and its Mbit/s.
fn retransmits(topo: &Topology, tag: &str) -> (u64, f64) {
    let r = iperf::run(
        topo.ns(2),
        topo.ns(1),
        overlay_v4(2).into(),
        Load::Tcp { streams: 1 },
        SECS,
        topo.dir(),
        tag,
    )
    .unwrap_or_else(|e| panic!("{tag}: {e}"));
    assert!(r.bytes > 0, "{tag}: nothing transferred");
    (r.retransmits, r.bits_per_sec / 1e6)
}

/// `tapmesh-switch mirror ARGS… --socket ADMIN`, which must succeed.
fn mirror(topo: &Topology, args: &[&str]) {
    let out = Command::new(bins::bin(bins::SWITCH))
        .arg("mirror")
        .args(args)
        .arg("--socket")
        .arg(topo.admin_socket())
        .output()
        .expect("run tapmesh-switch mirror");
    assert!(out.status.success(), "mirror {args:?}: {out:?}");
}

/// Pings h1 -> h2, `n` of them, all answered; returns the unicast frames
/// the switch forwarded meanwhile, and how many of them the workers did.
fn forwarded_while_pinging(topo: &Topology, n: usize) -> (u64, u64) {
    let count = |s: &serde_json::Value| {
        (
            counter(s, &["forwarded", "unicast"]),
            counter(s, &["workers", "forwarded"]),
        )
    };
    let before = count(&topo.switch_status());
    for _ in 0..n {
        assert!(topo.ping(1, overlay_v4(2)), "h1 -> h2");
    }
    let after = count(&topo.switch_status());
    (after.0 - before.0, after.1 - before.1)
}

/// With the switch's host refusing UDP to h2 (a firewall: the kernel
/// fails the send), h1 sends h2 five echo requests the switch forwards;
/// returns how much the status counter at `path` rose meanwhile.
fn sends_refused(topo: &Topology, path: &[&str]) -> u64 {
    let failed = |s: &Value| counter(s, path);
    let before = failed(&topo.switch_status());
    topo.switch_ns().block_udp_with(underlay_v4(2));
    let to = overlay_v4(2).to_string();
    // Unanswered: what matters is what the worker tried to send.
    let args = ["-n", "-q", "-c", "5", "-i", "0.2", "-W", "1", &to];
    topo.ns(1).exec("ping", &args);
    let after = failed(&topo.switch_status());
    topo.switch_ns().unblock_udp();
    after - before
}

#[test]
fn two_workers_carry_tcp_intact_with_no_more_retransmissions_than_one() {
    let started = Instant::now();
    let mut topo = Topology::central(2);
    let flooder = topo.add_unadmitted_node();
    topo.set_switch_config_extra("workers = 2\n");
    topo.start_all(UP);
    assert!(topo.ping(1, overlay_v4(2)) && topo.ping(2, overlay_v4(1)));
    let report = topo
        .tcp_transfer(1, 2, overlay_v4(2), 16 << 20)
        .unwrap_or_else(|e| panic!("16 MiB transfer h1 -> h2 failed: {e}"));
    assert_eq!(report.bytes, 16 << 20);
    let (two, two_mbit) = retransmits(&topo, "workers-2");
    let status = topo.switch_status();
    assert_eq!(counter(&status, &["workers", "count"]), 2, "{status}");
    // Every data datagram reached the worker (the steering program), and
    // the transfers alone are thousands of them.
    let opened = counter(&status, &["workers", "opened"]);
    assert!(opened > 10_000, "the worker opened only {opened}: {status}");
    // Most unicast frames never reached the core: the worker forwarded
    // them (status folds them into the unicast count).
    let forwarded = counter(&status, &["workers", "forwarded"]);
    let unicast = counter(&status, &["forwarded", "unicast"]);
    assert!(
        forwarded * 4 >= unicast * 3,
        "the worker forwarded {forwarded} of {unicast} unicast frames: {status}"
    );
    let bad_tag = counter(&status, &["drops", "bad_tag"]);
    let replay = counter(&status, &["drops", "replay"]);
    assert_eq!((bad_tag, replay), (0, 0), "{status}");
    let flood = flood_at_the_gate(&mut topo, flooder);

    // A mirror needs the core: from the request on, the worker forwards
    // nothing; removed, the fast path is back.
    mirror(
        &topo,
        &["add", "m", "source=h1", "destination=h2", "direction=sent"],
    );
    let (unicast, by_worker) = forwarded_while_pinging(&topo, 5);
    assert!(
        unicast >= 10,
        "the switch forwarded {unicast} unicast frames"
    );
    assert_eq!(by_worker, 0, "the worker forwarded with a mirror");
    mirror(&topo, &["remove", "m"]);
    let (unicast, by_worker) = forwarded_while_pinging(&topo, 5);
    assert!(
        by_worker >= 10 && by_worker == unicast,
        "the worker forwarded {by_worker} of {unicast} after the mirror went"
    );
    let refused = sends_refused(&topo, &["workers", "send_failed"]);
    assert!(refused >= 5, "the worker's refused sends counted {refused}");

    // The same hosts through one worker (set: the default, "auto",
    // depends on the host's cores).
    topo.stop_switch();
    topo.set_switch_config_extra("workers = 1\n");
    topo.start_switch();
    let back = wait_until(Duration::from_secs(10), || topo.ping(1, overlay_v4(2)));
    assert!(back, "h1 -> h2 did not resume with one worker");
    // The core counts the sends the kernel refuses it as drops.
    let refused = sends_refused(&topo, &["drops", "send_failed"]);
    assert!(refused >= 5, "the core's refused sends counted {refused}");
    assert!(wait_until(Duration::from_secs(10), || topo.ping(1, overlay_v4(2))));
    let (one, one_mbit) = retransmits(&topo, "workers-1");
    assert!(
        topo.switch_status().get("workers").is_none(),
        "one worker has no workers section"
    );
    eprintln!(
        "workers = 2: {two_mbit:.0} Mbit/s, {two} retransmits; workers = 1: {one_mbit:.0} Mbit/s, {one} retransmits; opened by the worker {opened}; {flood}; {:?}",
        started.elapsed()
    );
    // The margin absorbs the noise of two busy cores; reordering by the
    // workers would cost far more (every batch out of order).
    assert!(
        two <= 2 * one + 50,
        "workers = 2 retransmitted {two}, workers = 1 {one}"
    );
    topo.assert_all_running();
}

fn gate(status: &Value, key: &str) -> u64 {
    counter(status, &["workers", "gate", key])
}

/// Floods the switch (two workers) from `flooder` with valid-`mac1`
/// initiations of unknown keys, forged initiations and random datagrams
/// while h1 restarts: the gate stops the flood on the worker (the core's
/// own socket receives almost none of it, and the drops keep their
/// reasons), and h1 connects again through it. Returns what it measured.
fn flood_at_the_gate(topo: &mut Topology, flooder: usize) -> String {
    let switch_key = PublicKey::from_base64(&topo.switch_public_key()).expect("switch key");
    let unknown = unknown_key_initiations(&switch_key, 64);
    let junk = garbage(8, 128);
    let flood: Vec<Vec<u8>> = (0..128)
        .flat_map(|i| [unknown[i % unknown.len()].clone(), junk[i].clone()])
        .collect();
    let before = topo.switch_status();
    // From the flooder's own address (its cookie replies go back to it),
    // through a raw socket opened up front, so the flood borrows nothing
    // while h1 restarts.
    let raw = RawSender::open(topo.ns(flooder));
    let target = match topo.switch_addr() {
        SocketAddr::V4(a) => a,
        a => panic!("the switch listens on IPv4 in this topology, not {a}"),
    };
    let source = [underlay_v4(flooder)];
    let attack = flood_switch_under_load(
        topo,
        &raw,
        target,
        &source,
        &flood,
        FLOOD_RATE,
        |topo, under_load| {
            under_load.then(|| topo.restart_node_until_established(1, Duration::from_secs(10)))
        },
    );
    let (report, under_load, took) = (attack.report, attack.under_load, attack.during.flatten());
    let after = topo.switch_status();
    let delta = |key: &str| gate(&after, key) - gate(&before, key);
    let drop = |k: &str| counter(&after, &["drops", k]) - counter(&before, &["drops", k]);
    let (stopped, core) = (delta("stopped"), delta("core_received"));
    let summary = format!(
        "flood at the gate: {} sent ({:.0}/s); gate stopped {stopped}, admitted {}; the core's \
         socket received {core}; drops bad_mac1 {} bad_mac2 {}; h1 reconnected after {took:?}",
        report.sent,
        report.rate(),
        delta("admitted"),
        drop("bad_mac1"),
        drop("bad_mac2"),
    );
    assert!(
        under_load,
        "the flood did not put the switch under load: {summary}"
    );
    assert!(
        took.is_some(),
        "h1 did not reconnect within 10 s: {summary}"
    );
    // The kernel may drop some of the flood at a full socket buffer; what
    // the switch received, the gate stopped.
    assert!(stopped > report.sent / 2, "{summary}");
    assert!(
        core <= report.sent / 100,
        "the core saw the flood: {summary}"
    );
    assert!(drop("bad_mac1") > 0 && drop("bad_mac2") > 0, "{summary}");
    summary
}
