//! Issue 13 item 4 with the real binaries in namespaces: a forged handshake
//! response ahead of every genuine one stops no handshake, at a node's
//! uplink or between mesh peers.
//!
//! The attacker ([`OnPath`]) sits on one host's link in a namespace of its
//! own and sees every datagram the host sends. For each handshake
//! initiation it picks, it writes [`FORGERIES`] responses towards the host
//! (right type and network, the initiation's sender index as receiver index,
//! which travels in clear, a random rest; from the address the initiation
//! went to) and only then passes the initiation on, holding it
//! [`integration::on_path::HOLD`]: so every forgery reaches the host before the genuine
//! response, every time. Before the fix the first forgery consumed the
//! in-flight initiation and the genuine response was refused; the host
//! retried, met the next forgery, and never connected.
//!
//! Each test measures the same thing without forgeries first (the wire in
//! place, forging nothing), so the bound is relative to that.
use std::time::{Duration, Instant};

use integration::on_path::{Forge, OnPath};
use integration::status::{counter, node_peer};
use integration::topology::{overlay_v4, overlay_v6, underlay_v4};
use integration::{Topology, wait_until};
use overlay_proto::keys::PublicKey;

/// Forged responses per initiation.
const FORGERIES: usize = 3;
/// How long a node gets to connect (the issue measured no session in 10 s
/// under forgeries).
const LIMIT: Duration = Duration::from_secs(10);
/// How much longer than without forgeries connecting may take: room for a
/// busy machine, far below a retry cycle lost to a forgery.
const MARGIN: Duration = Duration::from_secs(3);

/// Starts host `i`'s node and returns how long after its start it reported
/// an established session with the switch (`None`: not within [`LIMIT`]
/// after it was ready).
fn start_and_time_session(topo: &mut Topology, i: usize) -> Option<Duration> {
    let t = Instant::now();
    topo.start_node(i);
    wait_until(LIMIT, || {
        topo.try_node_status(i)
            .is_ok_and(|s| s["session"] == "established")
    })
    .then(|| t.elapsed())
}

/// Whether host `i` reaches `peer` over a direct session, as `i` sees it.
fn is_direct(topo: &Topology, i: usize, peer: usize) -> bool {
    topo.try_node_status(i)
        .is_ok_and(|s| node_peer(&s, topo.host_name(peer)).is_some_and(|p| p["path"] == "direct"))
}

/// Starts the nodes of hosts `a` and `b` and returns how long after that
/// the path between them was direct both ways (`None`: not within
/// [`LIMIT`] after they were ready).
fn start_and_time_direct(topo: &mut Topology, a: usize, b: usize) -> Option<Duration> {
    let t = Instant::now();
    topo.start_node(a);
    topo.start_node(b);
    wait_until(LIMIT, || is_direct(topo, a, b) && is_direct(topo, b, a)).then(|| t.elapsed())
}

/// At the uplink: every initiation h1 sends the switch meets three forged
/// responses first. h1 still connects (session established, pings over the
/// overlay to h2 both ways, IPv4 and IPv6) within [`MARGIN`] of the time
/// it takes without forgeries, and counts each forgery as
/// `forged_response`: all arrived while the initiation was in flight,
/// none spoiled it.
#[test]
fn forged_responses_ahead_of_every_uplink_response_stop_no_handshake() {
    let mut topo = Topology::central(2);
    let attacker = OnPath::insert(&topo, 1, FORGERIES);
    topo.start_switch();
    topo.start_node(2);

    let clean = start_and_time_session(&mut topo, 1)
        .unwrap_or_else(|| panic!("h1 did not connect without forgeries within {LIMIT:?}"));
    assert_eq!(attacker.forged(), 0);
    topo.stop_node(1);

    attacker.forge(Forge::To(topo.switch_addr()));
    let seen = attacker.initiations();
    let took = start_and_time_session(&mut topo, 1);
    let injected = attacker.forged();
    let st = topo.node_status(1);
    let refused = counter(&st, &["drops", "forged_response"]);
    eprintln!(
        "uplink: h1 connected after {clean:?} without forgeries, {took:?} with {injected} \
         forged responses ahead of the genuine ones ({} initiations); h1 refused {refused} \
         as forged; h1 drops {}",
        attacker.initiations() - seen,
        st["drops"]
    );
    let took = took.unwrap_or_else(|| {
        panic!("h1 did not connect within {LIMIT:?} with {injected} forged responses: {st}")
    });
    assert!(
        took <= clean + MARGIN,
        "h1 connected after {took:?} with forgeries, {clean:?} without"
    );
    assert!(
        injected >= FORGERIES as u64,
        "the attacker forged only {injected} responses"
    );
    // Each forgery was ahead of its initiation's genuine response (the
    // wire makes sure), so each met the initiation in flight.
    assert_eq!(
        refused, injected,
        "h1 counted {refused} forged responses; the attacker sent {injected}"
    );
    assert!(topo.is_connected(1), "the switch does not list h1");
    for (from, to) in [(1, 2), (2, 1)] {
        assert!(
            topo.ping_ok_within(from, overlay_v4(to), Duration::from_secs(5)),
            "h{from} -> h{to} (IPv4) over the overlay"
        );
        assert!(
            topo.ping_ok_within(from, overlay_v6(to), Duration::from_secs(5)),
            "h{from} -> h{to} (IPv6) over the overlay"
        );
    }
    assert_eq!(attacker.send_errors(), 0, "the wire failed to pass frames");
    topo.assert_all_running();
}

/// Between mesh peers: every initiation one peer sends the other meets
/// three forged responses first. The other peer's initiations to it are
/// dropped (nftables in the other's namespace), so the direct path can come
/// up only through the attacked initiations; the attacker sits on the link
/// of the peer with the lower public key, whose initiation wins a
/// simultaneous open (the other answers it even with its own in flight).
/// The path still comes up both ways within [`MARGIN`] of the time it takes
/// without forgeries, pings cross it, and every forgery is counted as
/// `forged_response`.
#[test]
fn forged_responses_ahead_of_every_peer_response_stop_no_direct_path() {
    let mut topo = Topology::mesh(2);
    let key = |topo: &mut Topology, i: usize| {
        PublicKey::from_base64(&topo.node_public_key(i)).expect("node key")
    };
    let (l, h) = if key(&mut topo, 1).0 < key(&mut topo, 2).0 {
        (1, 2)
    } else {
        (2, 1)
    };
    let attacker = OnPath::insert(&topo, l, FORGERIES);
    topo.ns(h).nft(&format!(
        "table ip forged_response_lab {{\n\
           chain out {{ type filter hook output priority 0;\n\
             ip daddr {} meta l4proto udp @th,64,8 0x12 counter drop; }}\n\
         }}\n",
        underlay_v4(l)
    ));
    topo.start_switch();

    let clean = start_and_time_direct(&mut topo, l, h).unwrap_or_else(|| {
        panic!(
            "h{l} <-> h{h} not direct without forgeries within {LIMIT:?}: {}",
            topo.node_status(l)
        )
    });
    assert_eq!(attacker.forged(), 0);
    topo.stop_node(h);
    topo.stop_node(l);

    attacker.forge(Forge::AllBut(topo.switch_addr()));
    let seen = attacker.initiations();
    let took = start_and_time_direct(&mut topo, l, h);
    let injected = attacker.forged();
    let st = topo.node_status(l);
    let refused = counter(&st, &["drops", "forged_response"]);
    eprintln!(
        "mesh: h{l} <-> h{h} direct after {clean:?} without forgeries, {took:?} with \
         {injected} forged responses ahead of h{h}'s ({} initiations from h{l}, to the \
         switch too); h{l} refused {refused} as forged; h{l} drops {}; h{h}'s initiations \
         to h{l} dropped in both runs: {}",
        attacker.initiations() - seen,
        st["drops"],
        String::from_utf8_lossy(&topo.ns(h).exec_ok("nft", &["list", "ruleset"]).stdout)
            .lines()
            .find(|l| l.contains("counter"))
            .unwrap_or("?")
            .trim()
    );
    let took = took.unwrap_or_else(|| {
        panic!("h{l} <-> h{h} not direct within {LIMIT:?} with {injected} forged responses: {st}")
    });
    assert!(
        took <= clean + MARGIN,
        "direct after {took:?} with forgeries, {clean:?} without"
    );
    assert!(
        injected >= FORGERIES as u64,
        "the attacker forged only {injected} responses"
    );
    assert_eq!(
        refused, injected,
        "h{l} counted {refused} forged responses; the attacker sent {injected}"
    );
    for (from, to) in [(l, h), (h, l)] {
        assert!(
            topo.ping_ok_within(from, overlay_v4(to), Duration::from_secs(5)),
            "h{from} -> h{to} over the overlay"
        );
        assert!(
            is_direct(&topo, from, to),
            "h{from} -> h{to} no longer direct after the pings"
        );
    }
    assert_eq!(attacker.send_errors(), 0, "the wire failed to pass frames");
    topo.assert_all_running();
}
