//! The node's link to the switch in synthetic time ([`tapmesh_sim`]): idle
//! keepalives keep it up, a probe finds a switch that went silent, and the
//! node reconnects with backoff while the switch is down and at once when
//! it is back.
use std::time::{Duration, Instant};

use overlay_proto::timers::{
    HANDSHAKE_RETRY_MAX, HANDSHAKE_RETRY_MIN, KEEPALIVE_INTERVAL, PROBE_AFTER, PROBE_TIMEOUT,
};
use tapmesh_node::counters::DropReason;
use tapmesh_node::engine::{LinkState, TapWrite};
use tapmesh_sim::build::{network, switch};
use tapmesh_sim::frames::{frame, mac};
use tapmesh_sim::{FROM_SWITCH, LinkFaults};
use tapmesh_switch::NodeId;

/// One simulation step ([`tapmesh_sim::Net::step`]).
const STEP: Duration = Duration::from_millis(10);

#[test]
fn idle_keepalives_keep_the_link_up_for_minutes() {
    let (mut net, _) = network(1, false);
    net.advance(Duration::from_millis(100));
    assert_eq!(net.nodes[0].link_state(), LinkState::Established);
    let sent = net.nodes[0].counters().keepalives_sent;
    // Five idle minutes: ten times the switch's node timeout (30 s).
    net.advance(Duration::from_secs(300));
    let c = net.nodes[0].counters();
    let keepalives = c.keepalives_sent - sent;
    // One every 10 s, and one confirming each rekey.
    let every = KEEPALIVE_INTERVAL.as_secs();
    assert!(
        (300 / every - 1..=300 / every + c.rekeys + 1).contains(&keepalives),
        "{keepalives} keepalives in 300 s with {} rekeys, one every {every} s expected",
        c.rekeys
    );
    assert_eq!(c.sessions_lost, 0, "the node gave up a live switch");
    assert!(net.switch().is_connected(NodeId(0)), "the switch forgot h1");
    // Rekeyed on schedule, nothing more.
    assert_eq!(c.handshakes_completed, 1 + 2, "{c:?}");
}

#[test]
fn a_switch_that_goes_silent_is_found_by_one_probe() {
    let (mut net, _) = network(2, false);
    net.advance(Duration::from_millis(100));
    net.send(1, &frame([0xff; 6], mac(2), 0));
    // From now on nothing from the switch reaches h1; h1 keeps sending.
    let (sw, h1) = (net.switch_addr, net.addrs[0]);
    net.faults.set_link(
        sw,
        h1,
        LinkFaults {
            loss: 1.0,
            ..LinkFaults::default()
        },
    );
    let probes_before = net.nodes[0].counters().keepalives_sent;
    let silent = net.now;
    let mut probed = None;
    let mut lost = None;
    let mut t = 0;
    while net.now < silent + Duration::from_secs(10) && lost.is_none() {
        if t % 10 == 0 {
            net.send(0, &frame(mac(2), mac(1), t));
        }
        net.tick(STEP);
        t += 1;
        let c = net.nodes[0].counters();
        if probed.is_none() && c.keepalives_sent > probes_before {
            probed = Some(net.now - silent);
        }
        if c.sessions_lost > 0 {
            lost = Some(net.now - silent);
        }
    }
    let probed = probed.expect("h1 never probed the silent switch");
    let lost = lost.expect("h1 never gave up the silent switch");
    assert!(
        probed >= PROBE_AFTER && probed <= PROBE_AFTER + STEP,
        "probed after {probed:?}"
    );
    let deadline = PROBE_AFTER + PROBE_TIMEOUT;
    assert!(
        lost >= deadline && lost <= deadline + STEP,
        "gave up after {lost:?}"
    );
    assert_eq!(net.nodes[0].link_state(), LinkState::Handshaking);
    assert_eq!(
        net.nodes[0].counters().keepalives_sent - probes_before,
        1,
        "one probe, not a stream of keepalives"
    );
    // h2, whose link was not touched, kept its session.
    assert_eq!(net.nodes[1].counters().sessions_lost, 0);
}

#[test]
fn a_node_reconnects_with_backoff_while_the_switch_is_down_and_at_once_after() {
    let (mut net, cfg) = network(2, false);
    net.advance(Duration::from_millis(100));
    net.send(1, &frame([0xff; 6], mac(2), 0));
    net.switch = None;
    let down = net.now;
    // Attempts: the times handshakes_sent went up.
    let mut attempts: Vec<Instant> = Vec::new();
    let mut sent = net.nodes[0].counters().handshakes_sent;
    let mut lost_at = None;
    while net.now < down + Duration::from_secs(60) {
        net.tick(STEP);
        let c = net.nodes[0].counters();
        if c.handshakes_sent > sent {
            attempts.push(net.now);
            sent = c.handshakes_sent;
        }
        if lost_at.is_none() && c.sessions_lost > 0 {
            lost_at = Some(net.now);
        }
    }
    let lost_at = lost_at.expect("the session with a dead switch was never given up");
    assert!(
        lost_at - down <= KEEPALIVE_INTERVAL + PROBE_AFTER + PROBE_TIMEOUT + STEP,
        "gave up {:?} after the switch died",
        lost_at - down
    );
    assert_eq!(attempts.first(), Some(&lost_at), "no attempt at once");
    let gaps: Vec<Duration> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.len() >= 6, "attempts {gaps:?}");
    assert!(
        gaps[0] >= HANDSHAKE_RETRY_MIN && gaps[0] <= HANDSHAKE_RETRY_MIN + STEP,
        "first retry after {:?}",
        gaps[0]
    );
    for w in gaps.windows(2) {
        assert!(w[1] + STEP >= w[0], "the backoff shrank: {gaps:?}");
    }
    assert!(
        gaps.iter().all(|g| *g <= HANDSHAKE_RETRY_MAX + STEP),
        "a retry later than the cap: {gaps:?}"
    );
    let capped = &gaps[gaps.len() - 3..];
    assert!(
        capped.iter().all(|g| *g + STEP >= HANDSHAKE_RETRY_MAX),
        "the backoff never reached its cap: {gaps:?}"
    );
    // The switch is back (no state file, so no restart notice): the node
    // connects at its next attempt, and frames flow again.
    net.switch = Some(switch(&cfg, net.now, false));
    let back = net.now;
    while net.nodes[0].link_state() != LinkState::Established
        && net.now < back + 2 * HANDSHAKE_RETRY_MAX
    {
        net.tick(STEP);
    }
    assert_eq!(net.nodes[0].link_state(), LinkState::Established);
    assert!(
        net.now - back <= HANDSHAKE_RETRY_MAX + STEP,
        "reconnected {:?} after the switch came back",
        net.now - back
    );
    net.advance(HANDSHAKE_RETRY_MAX);
    net.send(1, &frame([0xff; 6], mac(2), 1));
    net.send(0, &frame(mac(2), mac(1), 2));
    assert_eq!(net.received(1, 2), 1, "h1's frame did not reach h2");
    assert_eq!(net.nodes[0].counters().sessions_lost, 1);
}

/// A datagram from the switch opened on another thread (a node's opening
/// thread, through the session's shared receive half) is handled by
/// `Node::handle_opened` as `handle_datagram` would have: the frame
/// delivered, a forgery and a replay dropped and counted by reason.
#[test]
fn a_datagram_opened_elsewhere_is_delivered_or_counted_as_the_node_would() {
    let (mut net, _) = network(2, false);
    net.advance(Duration::from_millis(100));
    // The switch learns both MACs.
    net.send(0, &frame([0xff; 6], mac(1), 0));
    net.send(1, &frame([0xff; 6], mac(2), 0));
    net.advance(Duration::from_millis(10));
    // h1 moved away for a moment: the switch's datagram for it is kept.
    let h1 = net.addrs[0];
    net.addrs[0] = "198.18.200.1:9".parse().unwrap();
    let sent = frame(mac(1), mac(2), 7);
    net.send(1, &sent);
    net.deliver();
    net.addrs[0] = h1;
    let (_, _, d) = net
        .take_strays()
        .into_iter()
        .find(|(from, to, _)| *from == FROM_SWITCH && *to == h1)
        .expect("the switch sent h1 nothing");
    let (now, sw) = (net.now, net.switch_addr);
    let node = &mut net.nodes[0];
    let rx = std::sync::Arc::clone(node.plain_uplink(now).expect("no session").receiver());
    let (rx_before, drops) = (node.counters().udp_rx_datagrams, node.drops().clone());

    let mut forged = d.clone();
    *forged.last_mut().unwrap() ^= 1;
    let r = rx.open(&mut forged);
    assert_eq!(r, Err(overlay_proto::Error::BadTag));
    assert!(node.handle_opened(now, sw, &mut forged, r).is_none());

    let mut genuine = d.clone();
    let r = rx.open(&mut genuine);
    match node.handle_opened(now, sw, &mut genuine, r) {
        Some(TapWrite::InPlace(range)) => assert_eq!(&genuine[range], &sent[..]),
        other => panic!("the frame was not delivered: {other:?}"),
    }

    let mut again = d;
    let r = rx.open(&mut again);
    assert_eq!(r, Err(overlay_proto::Error::Replay));
    assert!(node.handle_opened(now, sw, &mut again, r).is_none());

    assert_eq!(node.counters().udp_rx_datagrams, rx_before + 3);
    assert_eq!(
        node.drops().get(DropReason::BadTag),
        drops.get(DropReason::BadTag) + 1
    );
    assert_eq!(
        node.drops().get(DropReason::Replay),
        drops.get(DropReason::Replay) + 1
    );
    assert_eq!(node.drops().total(), drops.total() + 2);
}
