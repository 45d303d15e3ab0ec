//! Nodes with several switches, on the real binaries: two independent
//! switches admit the same nodes, every node lists both (`sw1` first); a
//! `kill -9` of `sw1` while h1 pings h2 homes both nodes on `sw2` and the
//! pings resume within the failover budget.
use std::time::{Duration, Instant};

use integration::Topology;
use integration::status::counter;
use integration::topology::overlay_v4;
use integration::traffic::ping_in_background;

/// How long a fresh overlay gets to pass pings between every pair.
const UP: Duration = Duration::from_secs(20);
/// The budget, from the first lost keepalive to traffic flowing
/// again. The design needs 0.9 s plus a round trip (see the node's
/// `failover` module), so the assertion leaves 2 s of margin for two
/// busy cores.
const BUDGET: Duration = Duration::from_secs(3);
/// One ping every 50 ms: the gap is measured to that resolution.
const INTERVAL: Duration = Duration::from_millis(50);

fn home(topo: &Topology, i: usize) -> (u64, String) {
    let s = topo.node_status(i);
    (
        counter(&s, &["homes", "home"]),
        s["session"].as_str().unwrap_or("?").to_owned(),
    )
}

#[test]
fn kill_9_of_the_home_switch_homes_nodes_on_the_next_within_3_s() {
    let mut topo = Topology::central(2);
    topo.start_second_switch();
    topo.start_all(UP);
    for i in 1..=2 {
        assert_eq!(home(&topo, i), (0, "established".into()), "h{i} on sw1");
    }
    let count = 200; // 10 s
    let ping = ping_in_background(topo.ns(1), overlay_v4(2).into(), "0.05", count);
    std::thread::sleep(Duration::from_secs(2));
    topo.kill9_switch();
    let killed = Instant::now();
    let (sent, received) = ping.result();
    let lost = sent - received;
    let gap = INTERVAL * lost;
    eprintln!(
        "kill -9 of sw1: {lost} of {sent} pings lost, a gap of about {gap:?} ({:?} after the kill the pings ended)",
        killed.elapsed()
    );
    assert_eq!(sent, count);
    assert!(lost > 0, "no ping lost: did the switch die?");
    assert!(gap <= BUDGET, "traffic stopped for {gap:?}");
    for i in 1..=2 {
        let s = topo.node_status(i);
        assert_eq!(home(&topo, i), (1, "established".into()), "h{i} on sw2");
        assert_eq!(counter(&s, &["homes", "failovers_lost"]), 1, "h{i}: {s}");
        assert!(counter(&s, &["announcements"]) >= 1, "h{i} announced: {s}");
        assert_eq!(s["homes"]["last_failover_from"], "sw1", "h{i}: {s}");
    }
    let sw2 = topo.try_second_switch_status().expect("sw2 answers");
    assert!(
        integration::status::switch_node_connected(&sw2, "h1")
            && integration::status::switch_node_connected(&sw2, "h2"),
        "sw2 serves both: {sw2}"
    );
    // And it stays there: nothing flaps while sw1 is gone.
    assert!(topo.ping(1, overlay_v4(2)) && topo.ping(2, overlay_v4(1)));
    topo.assert_all_running();
}
