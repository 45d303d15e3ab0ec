//! VLANs on a mesh node's direct paths: the receiver classifies what a peer
//! sends by the peer's port (as the switch announced it), refuses what is
//! not in a VLAN both share, and says when a frame must be retagged; a
//! member sharing no VLAN is never a peer. The bounds on what a peer may
//! claim hold across VLANs: the per-peer MAC limit counts every VLAN, our
//! own MACs and MACs the switch placed behind another member are refused in
//! every VLAN. These checks need no session, so
//! they run on `Peers` alone; the namespace tests in `integration/tests/mesh.rs`
//! run the same rules on real TAPs.
use std::time::{Duration, Instant};

use overlay_proto::ethernet::MacAddr;
use overlay_proto::keys::{Psk, PublicKey, StaticSecret};
use overlay_proto::transmit::TxQueue;
use overlay_proto::vlan::{Ingress, PortVlan, Vid};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tapmesh_node::counters::DropReason;
use tapmesh_node::peers::{MAC_LIMIT_PER_PEER, Peers};

const ZERO32: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

fn access(v: Vid) -> PortVlan {
    PortVlan::Member {
        native: Some(v),
        tagged: vec![],
    }
}

fn trunk(v: &[Vid]) -> PortVlan {
    PortVlan::Member {
        native: None,
        tagged: v.to_vec(),
    }
}

fn key(seed: u64) -> PublicKey {
    StaticSecret::generate(&mut StdRng::seed_from_u64(seed)).public_key()
}

/// A mesh node on `own`, with one peer (slot 0) announced as `peer`.
fn node(own: PortVlan, peer: PortVlan) -> (Peers, Instant) {
    let t0 = Instant::now();
    let local = StaticSecret::generate(&mut StdRng::seed_from_u64(1));
    let psk = Psk::from_base64(ZERO32).unwrap();
    let mut p = Peers::new(local, psk, 0, false, (t0, Duration::from_secs(1)), 7);
    p.enable(own);
    let ep = vec!["198.18.0.12:7000".parse().unwrap()];
    p.update(t0, key(2), "h2".into(), ep, peer);
    (p, t0)
}

const SRC: [u8; 6] = [2, 0, 0, 0, 0, 2];

fn untagged() -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 1];
    f.extend_from_slice(&SRC);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&[0x45; 46]);
    f
}

fn tagged(vid: Vid) -> Vec<u8> {
    let mut f = untagged();
    f.splice(12..12, [0x81, 0x00, (vid >> 8) as u8, vid as u8]);
    f
}

fn macs(p: &Peers, now: Instant) -> usize {
    p.status(now).first().map_or(0, |s| s.macs)
}

#[test]
fn access_peers_in_one_vlan_pass_untagged_frames_as_they_are() {
    let (mut p, t0) = node(access(10), access(10));
    assert_eq!(p.admit(t0, 0, &untagged()), Ok(None));
    assert_eq!(macs(&p, t0), 1, "source learned in VLAN 10");
    assert_eq!(p.status(t0)[0].vlans, vec![10]);
    // An access port's frames are untagged: a tag is refused, as the switch
    // refuses it, whatever VLAN it names.
    for v in [10, 20, 0] {
        assert_eq!(
            p.admit(t0, 0, &tagged(v)),
            Err(DropReason::VlanFiltered),
            "tag {v}"
        );
    }
}

#[test]
fn a_trunk_peer_is_held_to_the_vlans_it_shares_and_its_tag_is_removed() {
    // As the switch announces a trunk [10, 20] to an access node on 10.
    let (mut p, t0) = node(access(10), trunk(&[10]));
    assert_eq!(
        p.admit(t0, 0, &tagged(10)),
        Ok(Some(Ingress {
            vid: 10,
            tagged: true
        })),
        "delivered without its tag"
    );
    // VLAN 20 is not ours; untagged frames have no VLAN on that trunk.
    assert_eq!(p.admit(t0, 0, &tagged(20)), Err(DropReason::VlanFiltered));
    assert_eq!(p.admit(t0, 0, &untagged()), Err(DropReason::VlanFiltered));
    assert_eq!(macs(&p, t0), 1);
    assert_eq!(
        p.status(t0)[0].rx_frames,
        1,
        "refused frames are not counted in"
    );
}

#[test]
fn a_trunk_node_gets_an_access_peers_frames_tagged_and_refuses_a_lying_peer() {
    let (mut p, t0) = node(trunk(&[10, 20]), access(10));
    assert_eq!(
        p.admit(t0, 0, &untagged()),
        Ok(Some(Ingress {
            vid: 10,
            tagged: false
        })),
        "delivered with a tag for VLAN 10"
    );
    // A peer on an access port that sends a tagged frame to reach VLAN 20
    // (which we carry) is refused: its port takes no tags.
    assert_eq!(p.admit(t0, 0, &tagged(20)), Err(DropReason::VlanFiltered));
    // A frame cut inside its tag is a runt, not an untagged frame.
    assert_eq!(p.admit(t0, 0, &tagged(10)[..16]), Err(DropReason::Runt));
}

#[test]
fn a_member_sharing_no_vlan_is_never_a_peer() {
    // Even if a switch announced it, with or without VLANs.
    for peer in [access(20), trunk(&[30]), PortVlan::Transparent] {
        let (p, t0) = node(access(10), peer.clone());
        assert!(p.status(t0).is_empty(), "{peer:?} became a peer");
    }
    let (p, t0) = node(PortVlan::Transparent, access(10));
    assert!(
        p.status(t0).is_empty(),
        "VLAN-aware peer on an unaware node"
    );
    // A peer announced again with nothing shared is forgotten.
    let (mut p, t0) = node(access(10), access(10));
    assert_eq!(p.status(t0).len(), 1);
    let ep = vec!["198.18.0.12:7000".parse().unwrap()];
    p.update(t0, key(2), "h2".into(), ep, access(20));
    assert!(p.status(t0).is_empty());
}

#[test]
fn a_change_of_our_own_vlans_forgets_every_peer() {
    let (mut p, t0) = node(access(10), access(10));
    p.enable(access(10));
    assert_eq!(p.status(t0).len(), 1, "the same port keeps its peers");
    p.enable(access(20));
    assert!(p.status(t0).is_empty());
    assert_eq!(p.admit(t0, 0, &untagged()), Err(DropReason::UnknownSession));
}

#[test]
fn a_vlan_unaware_mesh_passes_everything_as_before() {
    let (mut p, t0) = node(PortVlan::Transparent, PortVlan::Transparent);
    assert_eq!(p.admit(t0, 0, &untagged()), Ok(None));
    assert_eq!(p.admit(t0, 0, &tagged(20)), Ok(None));
    assert!(p.status(t0)[0].vlans.is_empty());
}

/// `frame` with source MAC `src`.
fn from(mut frame: Vec<u8>, src: [u8; 6]) -> Vec<u8> {
    frame[6..12].copy_from_slice(&src);
    frame
}

/// Peer `name`'s MACs.
fn macs_of(p: &Peers, now: Instant, name: &str) -> usize {
    p.status(now)
        .iter()
        .find(|s| s.name == name)
        .map_or(0, |s| s.macs)
}

#[test]
fn the_per_peer_mac_limit_counts_every_vlan() {
    let (mut p, t0) = node(trunk(&[10, 20]), trunk(&[10, 20]));
    let half = MAC_LIMIT_PER_PEER as u32 / 2 + 10;
    for vid in [10, 20] {
        for k in 0..half {
            let src = [2, 0x10, vid as u8, (k >> 8) as u8, k as u8, 0x22];
            assert!(p.admit(t0, 0, &from(tagged(vid), src)).is_ok());
        }
    }
    assert_eq!(macs(&p, t0), MAC_LIMIT_PER_PEER);
    assert_eq!(
        p.mac_counters().refused_limit,
        2 * u64::from(half) - MAC_LIMIT_PER_PEER as u64
    );
    // A MAC refused at the limit changes no route: the sealing workers'
    // copy of the routes is not made again for it (every new MAC a peer
    // past its limit sends from would otherwise rebuild it).
    let generation = p.generation();
    assert!(
        p.admit(t0, 0, &from(tagged(10), [2, 0x11, 0, 0, 0, 1]))
            .is_ok()
    );
    assert_eq!(
        p.mac_counters().refused_limit,
        2 * u64::from(half) - MAC_LIMIT_PER_PEER as u64 + 1
    );
    assert_eq!(
        p.generation(),
        generation,
        "a refused MAC counted as a change"
    );
}

#[test]
fn our_own_macs_are_refused_in_every_vlan() {
    let (mut p, t0) = node(trunk(&[10, 20]), trunk(&[10, 20]));
    let mut tx = TxQueue::new(16);
    let ours = [2, 0, 0, 0, 0, 0x77];
    p.note_local_mac(t0, MacAddr(ours), &mut tx);
    for vid in [10, 20] {
        assert!(p.admit(t0, 0, &from(tagged(vid), ours)).is_ok());
    }
    assert_eq!(macs(&p, t0), 0, "our MAC learned behind a peer");
    assert_eq!(p.mac_counters().refused_local, 2);
}

#[test]
fn a_mac_the_switch_placed_behind_a_member_is_no_other_peers_in_any_vlan() {
    let (mut p, t0) = node(trunk(&[10, 20]), trunk(&[10, 20]));
    let ep = vec!["198.18.0.13:7000".parse().unwrap()];
    p.update(t0, key(3), "h3".into(), ep, trunk(&[10, 20]));
    let h3 = 1;
    let (x, y) = ([2, 0, 0, 0, 0, 0x31], [2, 0, 0, 0, 0, 0x32]);
    // h3 had claimed y in both VLANs before the switch spoke.
    for vid in [10, 20] {
        assert!(p.admit(t0, h3, &from(tagged(vid), y)).is_ok());
    }
    assert_eq!(macs_of(&p, t0, "h3"), 2);
    // The switch saw x and y behind h2 (in one VLAN; it does not say which).
    p.set_owners(t0, key(2), vec![MacAddr(x), MacAddr(y)]);
    assert_eq!(macs_of(&p, t0, "h3"), 0, "h3 keeps no claim on y");
    // h3 claims them again, in either VLAN: refused. h2 may, in both.
    for vid in [10, 20] {
        assert!(p.admit(t0, h3, &from(tagged(vid), x)).is_ok());
        assert!(p.admit(t0, h3, &from(tagged(vid), y)).is_ok());
    }
    assert_eq!(macs_of(&p, t0, "h3"), 0);
    assert_eq!(p.mac_counters().refused_owner, 4);
    for vid in [10, 20] {
        assert!(p.admit(t0, 0, &from(tagged(vid), x)).is_ok());
    }
    assert_eq!(macs_of(&p, t0, "h2"), 2);
}

#[test]
fn a_mac_moves_between_peers_within_a_vlan_not_across_vlans() {
    let (mut p, t0) = node(trunk(&[10, 20]), trunk(&[10, 20]));
    let ep = vec!["198.18.0.13:7000".parse().unwrap()];
    p.update(t0, key(3), "h3".into(), ep, trunk(&[10, 20]));
    let m = [2, 0, 0, 0, 0, 0x41];
    assert!(p.admit(t0, 0, &from(tagged(10), m)).is_ok());
    // The same MAC in another VLAN behind another peer: a separate entry.
    assert!(p.admit(t0, 1, &from(tagged(20), m)).is_ok());
    assert_eq!(p.mac_counters().moves, 0);
    assert_eq!((macs_of(&p, t0, "h2"), macs_of(&p, t0, "h3")), (1, 1));
    // In the same VLAN it moves, and is counted and reported.
    assert!(p.admit(t0, 1, &from(tagged(10), m)).is_ok());
    assert_eq!(p.mac_counters().moves, 1);
    assert_eq!((macs_of(&p, t0, "h2"), macs_of(&p, t0, "h3")), (0, 2));
    let r = p.poll_move_report(t0).expect("a report");
    assert_eq!(r.latest, (MacAddr(m), "h2".to_string(), "h3".to_string()));
}

/// Peers `h{k}` for each `k`, beside `h2` (slot 0): trunks of VLANs 10 and 20.
fn add_peers(p: &mut Peers, t0: Instant, ks: std::ops::Range<u64>) {
    for k in ks {
        let ep = vec![format!("198.18.0.{}:7000", 10 + k).parse().unwrap()];
        p.update(t0, key(k), format!("h{k}"), ep, trunk(&[10, 20]));
    }
}

#[test]
fn learned_macs_age_out_in_handle_timeout() {
    let (mut p, t0) = node(trunk(&[10, 20]), trunk(&[10, 20]));
    let mut tx = TxQueue::new(64);
    assert!(p.admit(t0, 0, &from(tagged(10), SRC)).is_ok());
    assert!(p.admit(t0, 0, &from(tagged(20), SRC)).is_ok());
    assert_eq!(macs(&p, t0), 2);
    // Refreshed in VLAN 20 only: VLAN 10's entry ages out first.
    let t1 = t0 + Duration::from_secs(100);
    assert!(p.admit(t1, 0, &from(tagged(20), SRC)).is_ok());
    let aged = t0 + Duration::from_secs(300);
    assert!(p.poll_timeout().is_some_and(|t| t <= aged));
    p.handle_timeout(aged, &mut tx);
    assert_eq!(macs(&p, aged), 1, "the entry not refreshed is swept");
    p.handle_timeout(t1 + Duration::from_secs(300), &mut tx);
    assert_eq!(macs(&p, t1 + Duration::from_secs(300)), 0);
}

#[test]
fn a_full_table_makes_room_in_handle_timeout_not_on_the_hot_path() {
    // 4 peers of 1024 MACs fill the node's 4096.
    let (mut p, t0) = node(trunk(&[10, 20]), trunk(&[10, 20]));
    add_peers(&mut p, t0, 3..6);
    for i in 0..4 {
        for k in 0..MAC_LIMIT_PER_PEER as u32 {
            let src = [2, 0x20, i as u8, (k >> 8) as u8, k as u8, 1];
            assert!(p.admit(t0, i, &from(tagged(10), src)).is_ok());
        }
    }
    let full = p.mac_counters().refused_limit;
    assert_eq!(full, 0);
    add_peers(&mut p, t0, 6..7);
    let h6 = 4;
    // Every entry has aged out, but a new MAC is refused until a sweep:
    // learning never scans the table.
    let later = t0 + Duration::from_secs(301);
    let new = [2, 0x30, 0, 0, 0, 1];
    assert!(p.admit(later, h6, &from(tagged(10), new)).is_ok());
    assert_eq!(p.mac_counters().refused_limit, full + 1);
    assert_eq!(macs_of(&p, later, "h6"), 0);
    let mut tx = TxQueue::new(64);
    p.handle_timeout(later, &mut tx);
    assert!(p.admit(later, h6, &from(tagged(10), new)).is_ok());
    assert_eq!(macs_of(&p, later, "h6"), 1);
    assert_eq!(p.mac_counters().refused_limit, full + 1);
    assert_eq!(macs(&p, later), 0, "h2's MACs were swept");
}

#[test]
fn group_and_zero_sources_are_not_learned_behind_a_peer() {
    let (mut p, t0) = node(trunk(&[10, 20]), trunk(&[10, 20]));
    for src in [[0; 6], [0xff; 6], [1, 0, 0x5e, 0, 0, 1]] {
        assert!(p.admit(t0, 0, &from(tagged(10), src)).is_ok());
    }
    assert_eq!(macs(&p, t0), 0);
}

/// The sealing workers' copy of the routes holds a MAC behind a peer only
/// in a VLAN the peer is a member of (as `route` decides), and a change of
/// the peer's port makes a new copy.
#[test]
fn a_mac_in_a_vlan_the_peer_left_leaves_the_workers_routes() {
    let (mut p, t0) = node(trunk(&[10, 20]), trunk(&[10, 20]));
    assert!(p.admit(t0, 0, &tagged(20)).is_ok());
    let learned: Vec<_> = p.member_macs(t0).collect();
    assert_eq!(learned, [(20, MacAddr(SRC), 0)]);
    let generation = p.generation();
    let ep = vec!["198.18.0.12:7000".parse().unwrap()];
    p.update(t0, key(2), "h2".into(), ep, trunk(&[10]));
    assert_ne!(p.generation(), generation, "the peer's port changed");
    assert_eq!(macs(&p, t0), 1, "still learned");
    assert_eq!(p.member_macs(t0).count(), 0, "but not a member of VLAN 20");
}
