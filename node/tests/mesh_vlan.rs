//! VLANs on a mesh node's direct paths: the receiver classifies what a peer
//! sends by the peer's port (as the switch announced it), refuses what is
//! not in a VLAN both share, and says when a frame must be retagged; a
//! member sharing no VLAN is never a peer. These checks need no session, so
//! they run on `Peers` alone; the namespace tests in `integration/tests/mesh.rs`
//! run the same rules on real TAPs.
use std::time::{Duration, Instant};

use overlay_proto::keys::{Psk, PublicKey, StaticSecret};
use overlay_proto::vlan::{Ingress, PortVlan, Vid};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tapmesh_node::peers::Peers;
use tapmesh_node::stats::DropReason;

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
