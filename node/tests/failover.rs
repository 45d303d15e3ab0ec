//! Nodes with several switches in synthetic time ([`tapmesh_sim`]): when
//! the home switch dies the node is homed on the next within the failover
//! budget, announces its MACs there, and stays there when the first comes
//! back; a first switch that never answers is skipped.
use std::time::{Duration, Instant};

use overlay_proto::ethernet::MacAddr;
use overlay_proto::vlan::NO_VLAN;
use tapmesh_node::engine::LinkState;
use tapmesh_node::failover::FailoverCause;
use tapmesh_sim::Net;
use tapmesh_sim::build::{several_switches, switch};
use tapmesh_sim::frames::{frame, mac};
use tapmesh_switch::NodeId;

/// The budget: homed on the next switch, and traffic flowing
/// again, within 3 s of the first lost keepalive.
const BUDGET: Duration = Duration::from_secs(3);

/// h1 and h2 "ping" each other every 50 ms: h1 sends tag `seq`, h2 answers
/// with `seq | 1 << 31`. Returns the tag h1 sent.
fn ping(net: &mut Net, seq: u32) -> u32 {
    net.send(0, &frame(mac(2), mac(1), seq));
    net.send(1, &frame(mac(1), mac(2), seq | 1 << 31));
    seq
}

fn homed_on(net: &Net, i: usize, name: &str) -> bool {
    net.nodes[i].home().name == name && net.nodes[i].link_state() == LinkState::Established
}

#[test]
fn a_dead_home_switch_is_replaced_within_budget_and_traffic_resumes() {
    let (mut net, _) = several_switches(2, 2, false);
    net.advance(Duration::from_millis(100));
    assert!(homed_on(&net, 0, "sw1") && homed_on(&net, 1, "sw1"));
    let mut seq = 0;
    for _ in 0..10 {
        seq = ping(&mut net, seq + 2);
        net.advance(Duration::from_millis(50));
    }
    assert_eq!(net.received(1, seq), 1, "h2 hears h1 through sw1");
    // kill -9: the switch is gone between two pings.
    net.switch = None;
    let mut first_lost: Option<Instant> = None;
    let mut homed: Option<Instant> = None;
    let mut learned_before_traffic = false;
    let mut resumed: Option<(Instant, Instant)> = None;
    let mut after_kill = Vec::new();
    let start = net.now;
    while net.now < start + Duration::from_secs(10) {
        seq = ping(&mut net, seq + 2);
        // The first packet h1 sent that sw1 will never answer.
        first_lost.get_or_insert(net.now);
        after_kill.push((net.now, seq));
        for _ in 0..5 {
            net.advance(Duration::from_millis(10));
            if homed.is_none() && homed_on(&net, 0, "sw2") {
                homed = Some(net.now);
                // Announced at once: sw2 knows h1's MAC before h1 sends.
                let sw2 = net.others[0].1.as_ref().unwrap();
                learned_before_traffic =
                    sw2.lookup_mac(net.now, NO_VLAN, &MacAddr(mac(1))) == Some(NodeId(0));
            }
        }
        if resumed.is_none()
            && let Some(&(sent, _)) = after_kill.iter().find(|(_, s)| net.received(1, *s) == 1)
        {
            resumed = Some((sent, net.now));
        }
    }
    let first_lost = first_lost.unwrap();
    let homed = homed.expect("h1 is homed on sw2") - first_lost;
    let (_, resumed) = resumed.expect("h2 hears h1 again");
    let resumed = resumed - first_lost;
    println!("homed on sw2 {homed:?}, h2 hears h1 {resumed:?} after the first lost keepalive");
    assert!(homed <= BUDGET, "homed after {homed:?}");
    // The design: lost after a 0.5 s probe and 0.4 s more (not before:
    // no failover on a short silence), the handshake at once.
    assert!(
        (Duration::from_millis(900)..=Duration::from_millis(1000)).contains(&homed),
        "homed after {homed:?}"
    );
    assert!(resumed <= BUDGET, "traffic resumed after {resumed:?}");
    assert!(
        learned_before_traffic,
        "sw2 learned h1's MAC from its announcement"
    );
    assert!(net.nodes[0].counters().announcements >= 1);
    let s = net.nodes[0].status(net.now, "h1");
    assert_eq!(
        (s.homes.home, s.homes.failovers, s.homes.failovers_lost),
        (1, 1, 1)
    );
    assert_eq!(s.homes.last_failover_cause, Some(FailoverCause::Lost));
    assert_eq!(s.homes.last_failover_from.as_deref(), Some("sw1"));
    assert!(homed_on(&net, 1, "sw2"), "h2 followed");
}

#[test]
fn stays_on_the_new_switch_when_the_old_one_returns() {
    let (mut net, cfgs) = several_switches(2, 2, false);
    net.advance(Duration::from_millis(100));
    net.switch = None;
    let mut seq = 0;
    for _ in 0..100 {
        seq = ping(&mut net, seq + 2);
        net.advance(Duration::from_millis(50));
    }
    assert!(homed_on(&net, 0, "sw2") && homed_on(&net, 1, "sw2"));
    let lost = net.nodes[0].counters().sessions_lost;
    // sw1 comes back (a restart without a state file) and stays up.
    net.switch = Some(switch(&cfgs[0], net.now, false));
    for _ in 0..(300_000 / 250) {
        seq = ping(&mut net, seq + 2);
        net.advance(Duration::from_millis(250));
    }
    for i in 0..2 {
        assert!(homed_on(&net, i, "sw2"), "h{} went back", i + 1);
        assert_eq!(net.nodes[i].status(net.now, "h").homes.failovers, 1);
    }
    assert_eq!(net.nodes[0].counters().sessions_lost, lost, "no flapping");
    assert_eq!(net.received(1, seq), 1, "still connected through sw2");
}

#[test]
fn a_first_switch_that_never_answers_is_skipped() {
    let (mut net, _) = several_switches(1, 3, false);
    // sw1 and sw2 are down from the start.
    net.switch = None;
    net.others[0].1 = None;
    let t0 = net.now;
    while !homed_on(&net, 0, "sw3") {
        net.advance(Duration::from_millis(10));
        assert!(net.now < t0 + Duration::from_secs(10), "never homed on sw3");
    }
    let took = net.now - t0;
    // One HANDSHAKE_TIMEOUT on each dead switch, then one round trip.
    assert!(
        (Duration::from_secs(2)..=Duration::from_millis(2100)).contains(&took),
        "homed on sw3 after {took:?}"
    );
    let s = net.nodes[0].status(net.now, "h1").homes;
    assert_eq!((s.home, s.failovers_no_answer, s.failovers_lost), (2, 2, 0));
}

#[test]
fn all_switches_down_costs_few_handshakes() {
    let (mut net, _) = several_switches(1, 2, false);
    net.switch = None;
    net.others[0].1 = None;
    net.advance(Duration::from_secs(60));
    let c = net.nodes[0].counters();
    // Each switch gets 1, 2, 4, then 5 s per round, its tunnel retrying
    // after 0.25, 0.5, 1, 2 s: about one initiation a second, not a storm.
    assert!(
        c.handshakes_sent <= 80,
        "{} initiations in 60 s",
        c.handshakes_sent
    );
    assert_eq!(net.nodes[0].link_state(), LinkState::Handshaking);
}

/// Whether mesh node `i` has a direct path to node `peer`.
fn direct(net: &Net, i: usize, peer: usize) -> bool {
    net.nodes[i]
        .peers()
        .path_of(net.now, &format!("h{}", peer + 1))
        == Some(tapmesh_node::peers::Path::Direct)
}

#[test]
fn in_mesh_mode_only_the_home_switch_vouches() {
    let (mut net, _) = several_switches(3, 2, true);
    net.advance(Duration::from_secs(2));
    for i in 0..3u8 {
        net.send(i.into(), &frame([0xff; 6], mac(i + 1), 1000 + u32::from(i)));
    }
    net.advance(Duration::from_millis(500));
    assert!(
        direct(&net, 0, 1) && direct(&net, 0, 2),
        "a full mesh on sw1"
    );
    // h1 alone loses sw1: it fails over to sw2, which vouches for nobody
    // else (the switches share nothing), and its complete list drops them.
    let (sw1, h1) = (net.switch_addr, net.addrs[0]);
    net.faults.set_blocked(sw1, h1, true);
    net.advance(Duration::from_secs(15));
    assert!(homed_on(&net, 0, "sw2"));
    assert!(
        !direct(&net, 0, 1) && !direct(&net, 0, 2),
        "sw2 vouches for neither"
    );
    // sw1 is reachable again and still holds its session with h1: what it
    // says about h2 and h3 is not taken (h1 left it).
    let unknown = net.nodes[0]
        .drops()
        .get(tapmesh_node::counters::DropReason::UnknownSession);
    net.faults.set_blocked(sw1, h1, false);
    net.advance(Duration::from_secs(5));
    assert!(homed_on(&net, 0, "sw2"), "no failback");
    assert!(
        !direct(&net, 0, 1) && !direct(&net, 0, 2),
        "sw1's vouch taken"
    );
    let now_unknown = net.nodes[0]
        .drops()
        .get(tapmesh_node::counters::DropReason::UnknownSession);
    assert!(
        now_unknown > unknown,
        "sw1's messages reached h1 and were dropped"
    );
    // sw1 dies: h2 and h3 follow h1 to sw2, which vouches for all three.
    net.switch = None;
    net.advance(Duration::from_secs(15));
    for i in 1..3 {
        assert!(homed_on(&net, i, "sw2"), "h{} on sw2", i + 1);
    }
    for i in 0..3u8 {
        net.send(i.into(), &frame([0xff; 6], mac(i + 1), 2000 + u32::from(i)));
    }
    net.advance(Duration::from_millis(500));
    assert!(
        direct(&net, 0, 1) && direct(&net, 0, 2),
        "a full mesh on sw2"
    );
}
