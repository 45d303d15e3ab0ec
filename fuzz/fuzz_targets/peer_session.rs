//! A mesh peer that forges flags and control messages over a real session:
//! what an admitted member can make another node do once a direct session
//! is up. The network ([`tapmesh_fuzz::peer_net`]: a VLAN-aware mesh switch,
//! nodes h1 and h3, and h2, a member that is only its sessions) is built
//! once per process and cloned for every input. Each input is a list of
//! records `[sel, flags, len_lo, len_hi, bytes...]`; by `sel % 8`:
//! - 0, 7: h2 seals `bytes` as they are with header flags `flags` (any:
//!   control, fragment, virtio, relayed, unknown bits) under its direct
//!   session with h1, and sends it to h1 from its own address;
//! - 1: the same to h3;
//! - 2: the same to the switch, under h2's session with it;
//! - 3: h3 reads `bytes` from its TAP (direct to a peer, or via the switch);
//! - 4: h1 reads `bytes` (a virtio header and a frame) from its TAP;
//! - 5: the latest datagram h2 sealed is sent again (a replay);
//! - 6: `flags` x 10 ms pass: timers run, probes and answers are delivered.
//!
//! Datagrams to h2's address are opened by h2, which answers handshakes
//! and pings as a peer would. Must never panic, and after each record:
//! - nothing reaches a TAP in a VLAN the sender and the receiver do not
//!   share: from h2, h1 gets only VLANs 7 and 8 (tagged: its native VLAN 1
//!   is not h2's) and h3 only VLAN 8; from h3, h1 gets VLAN 1 or 8; from
//!   h1, h3 gets VLAN 1 or 8;
//! - every TAP write is whole, within the MTU (per segment for a GSO
//!   super-frame), with a virtio header the kernel takes on h1's offload
//!   TAP, and with the source MAC of the frame sent;
//! - a node never passes on a frame it received: what h2 sends h1 reaches
//!   no other TAP, and h1 and h3 send h2 only control messages and
//!   keepalives unless the record had them read a frame from their TAP;
//! - a replay, and time passing, put nothing on any TAP;
//! - messages only the switch may send (`mesh`, `peer-update`,
//!   `peer-gone`, `peer-list-end`, `mac-owners`), sealed by h2 to h1, are
//!   refused as `control` drops, and nothing h2 sends directly changes whom
//!   h1 or h3 take as peers, their endpoints or VLANs (through the switch h2
//!   can change only its own endpoints);
//! - h1's table of MACs behind peers stays within its bounds, per peer and
//!   in all (h2 announced nearly its share in the setup);
//! - h1 and h3 send datagrams only to h2, each other and the switch, except
//!   handshake initiations to the endpoints the switch announced for h2,
//!   and those only to addresses a peer could be at (no loopback,
//!   multicast, unspecified, port 0 ...);
//! - h2 takes over neither a node's own MAC nor one the switch saw behind
//!   another member: frames to h1's or h3's MAC, in any VLAN, never go to
//!   h2 (checked after each record and with probes from h1 at the end),
//!   unless h2 sent a frame through the switch, which learns as any switch
//!   does and then tells the nodes where the MAC went.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use overlay_proto::control::{Control, check_local_addr};
// The bound on h1's MACs behind all peers together.
use overlay_proto::mac_table::MAC_LIMIT;
use overlay_proto::vlan::tag_vid;
use overlay_proto::vnet::VNET_HDR_LEN;
use overlay_proto::wire::{
    FLAG_CONTROL, FLAG_FRAGMENT, FLAG_VNET, Header, KNOWN_FLAGS, MessageType,
};
use tapmesh_fuzz::{PeerNet, peer_net, tap::check_write};
use tapmesh_node::peers::{MAC_LIMIT_PER_PEER, PeerStatus};
use tapmesh_node::counters::DropReason;
use tapmesh_switch::snooping::DEFAULT_QUERIER_MAC;

const MTU: usize = 1400;
/// `mesh.nodes` indices.
const H1: usize = 0;
const H3: usize = 1;
/// The rogue's destination index for the switch.
const SWITCH: usize = usize::MAX;

/// Who made the record's frame, if anyone.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Origin {
    H1,
    H2,
    H3,
    Nobody,
}

/// What h2 must not change about a node's peers: (name, key, VLANs,
/// endpoints), h2's endpoints left out unless `with_h2`.
type PeerSet = Vec<(String, String, Vec<u16>, Vec<String>)>;

fn peer_set(status: &[PeerStatus], with_h2: bool) -> PeerSet {
    let mut v: PeerSet = status
        .iter()
        .map(|s| {
            let c = if with_h2 || s.name != "h2" {
                s.candidates.clone()
            } else {
                Vec::new()
            };
            (s.name.clone(), s.public_key.clone(), s.vlans.clone(), c)
        })
        .collect();
    v.sort();
    v
}

/// A control message only the switch sends.
fn switch_only(bytes: &[u8]) -> bool {
    matches!(
        Control::parse(bytes),
        Ok(Control::Mesh { .. }
            | Control::PeerUpdate { .. }
            | Control::PeerGone { .. }
            | Control::PeerListEnd { .. }
            | Control::MacOwners { .. })
    )
}

/// MACs the switch saw behind h1 and h3 (each node's own): no frame to
/// one of them may go to h2, in any VLAN (`mac-owners` names none).
fn placed(dst: &[u8]) -> bool {
    dst == [2, 0, 0, 0, 0, 1] || dst == [2, 0, 0, 0, 0, 3]
}

fuzz_target!(|data: &[u8]| {
    let mut p = peer_net().clone();
    let rogue_addr = p.rogue.addr;
    let mut last: Option<(usize, Vec<u8>)> = None;
    // h2 sent a frame through the switch: it may have moved h1's or h3's
    // MAC there, as on any learning switch, and the switch then tells the
    // nodes so (`mac-owners`).
    let mut via_switch = false;
    let mut rest = data;
    let mut records = 0;
    while rest.len() >= 4 && records < 16 {
        records += 1;
        let sel = rest[0] % 8;
        let flags = rest[1];
        let len = (u16::from_le_bytes([rest[2], rest[3]]) as usize).min(rest.len() - 4);
        let bytes = &rest[4..4 + len];
        rest = &rest[4 + len..];

        let tap_before: Vec<usize> = p.mesh.tap.iter().map(Vec::len).collect();
        // Peer sets to compare (status costs a scan of the MAC table): h3's
        // only when h2 sent something towards it.
        let watched: &[usize] = match sel {
            6 => &[],
            1 | 2 => &[H1, H3],
            _ => &[H1],
        };
        let status_before: Vec<_> = watched
            .iter()
            .map(|n| p.mesh.nodes[*n].peers().status(p.mesh.now))
            .collect();
        let control_drops = p.mesh.nodes[H1].drops().get(DropReason::Control);
        let refused_otherwise = |p: &PeerNet| {
            let d = p.mesh.nodes[H1].drops();
            d.get(DropReason::UnknownSession)
                + d.get(DropReason::Expired)
                + d.get(DropReason::Replay)
        };
        let other_drops = refused_otherwise(&p);

        let mut sealed = false;
        let (origin, sent, (stray, opened)) = match sel {
            0 | 1 | 2 | 7 => {
                let to = match sel {
                    1 => H3,
                    2 => SWITCH,
                    _ => H1,
                };
                let (d, stray, opened) = p.rogue_send(to, flags, bytes);
                if let Some(d) = d {
                    sealed = true;
                    last = Some((to, d));
                }
                via_switch |= to == SWITCH && flags & FLAG_CONTROL == 0;
                let frame = flags & (FLAG_CONTROL | FLAG_FRAGMENT) == 0;
                let skip = if flags & FLAG_VNET != 0 {
                    VNET_HDR_LEN
                } else {
                    0
                };
                (
                    Origin::H2,
                    bytes.get(skip..).filter(|_| frame),
                    (stray, opened),
                )
            }
            3 => {
                p.mesh.send(H3, bytes);
                let s = p.mesh.take_strays();
                (Origin::H3, Some(bytes), p.settle_strays(s))
            }
            4 => {
                p.mesh.send(H1, bytes);
                let s = p.mesh.take_strays();
                (Origin::H1, bytes.get(VNET_HDR_LEN..), p.settle_strays(s))
            }
            5 => match last.clone() {
                Some((to, d)) => (Origin::Nobody, None, p.resend(to, d)),
                None => continue,
            },
            _ => (
                Origin::Nobody,
                None,
                p.pass(
                    Duration::from_millis(10 * u64::from(flags)),
                    Duration::from_millis(100),
                ),
            ),
        };

        // TAP writes: VLANs, form, size, source.
        for (node, offload) in [(H1, true), (H3, false)] {
            for w in &p.mesh.tap[node][tap_before[node]..] {
                let name = [1, 3][node];
                let frame = check_write(name, offload, MTU, w);
                let vid = tag_vid(frame);
                let ok = match (origin, node, sel) {
                    (Origin::H2, H1, _) => matches!(vid, Some(7 | 8)),
                    (Origin::H2, H3, 1 | 2) => vid == Some(8),
                    (Origin::H3, H1, _) | (Origin::H1, H3, _) => matches!(vid, None | Some(8)),
                    // The switch's own IGMP/MLD queries, sent on its timers
                    // into every VLAN of the node's port.
                    (Origin::Nobody, _, _)
                        if frame.get(6..12) == Some(&DEFAULT_QUERIER_MAC.0[..]) =>
                    {
                        match node {
                            H1 => matches!(vid, None | Some(7 | 8)),
                            _ => matches!(vid, None | Some(8)),
                        }
                    }
                    _ => false,
                };
                assert!(
                    ok,
                    "record {sel} (from {origin:?}) put a frame in VLAN {vid:?} on the TAP of h{name}"
                );
                if let Some(s) = sent.filter(|s| s.len() >= 12) {
                    assert_eq!(&frame[6..12], &s[6..12], "source MAC changed on the way");
                }
            }
        }

        // Loop guard, and MACs the switch placed elsewhere.
        for (from, f, payload) in &opened {
            if *from == SWITCH {
                continue;
            }
            let own_frame = matches!((origin, *from), (Origin::H1, H1) | (Origin::H3, H3));
            let frame = f & FLAG_CONTROL == 0 && !payload.is_empty();
            assert!(
                !frame || own_frame,
                "h{} passed a frame on to h2 (record {sel})",
                [1, 3][*from]
            );
            if !via_switch && frame && f & FLAG_FRAGMENT == 0 {
                let skip = if f & FLAG_VNET != 0 { VNET_HDR_LEN } else { 0 };
                if let Some(fr) = payload.get(skip..).filter(|fr| fr.len() >= 14) {
                    assert!(
                        !placed(&fr[..6]),
                        "h{} sent h2 a frame for a MAC the switch saw elsewhere",
                        [1, 3][*from]
                    );
                }
            }
        }

        // Switch-only control messages from a peer are refused, and nothing
        // sent directly changes whom the nodes take as peers.
        if sel == 0 || sel == 7 {
            let control =
                flags & (FLAG_CONTROL | FLAG_FRAGMENT) == FLAG_CONTROL && flags & !KNOWN_FLAGS == 0;
            if control && sealed && switch_only(bytes) {
                let refused = p.mesh.nodes[H1].drops().get(DropReason::Control) - control_drops;
                let unknown = refused_otherwise(&p) - other_drops;
                assert!(
                    refused == 1 || unknown >= 1,
                    "h1 took a switch-only control message from h2"
                );
            }
        }
        // Through the switch (2), h2 may change its own endpoints; and
        // h1's MAC table stays within its bound.
        let with_h2 = sel != 2;
        for (n, before) in watched.iter().zip(&status_before) {
            let after = p.mesh.nodes[*n].peers().status(p.mesh.now);
            assert_eq!(
                peer_set(before, with_h2),
                peer_set(&after, with_h2),
                "record {sel} changed the peers of h{}",
                [1, 3][*n]
            );
            if *n == H1 {
                let macs: usize = after.iter().map(|s| s.macs).sum();
                assert!(macs <= MAC_LIMIT, "h1 holds {macs} MACs behind peers");
                for s in &after {
                    assert!(
                        s.macs <= MAC_LIMIT_PER_PEER,
                        "h1 holds {} MACs behind {}",
                        s.macs,
                        s.name
                    );
                }
            }
        }

        // Datagrams elsewhere: only initiations to h2's announced endpoints,
        // and only to addresses a peer could be at.
        for (from, to, d) in &stray {
            assert_ne!(*from, SWITCH, "the switch sent to a stranger {to}");
            let t = Header::new_checked(&d[..]).map(|h| h.message_type());
            let name = [1, 3].get(*from).copied().unwrap_or(0);
            assert!(
                matches!(t, Ok(MessageType::HandshakeInit)),
                "h{name} sent {t:?} to {to}"
            );
            assert!(
                check_local_addr(rogue_addr, *to).is_ok(),
                "h{name} sent an initiation to {to}"
            );
        }
    }

    // Frames to MACs the switch saw behind h1 and h3 (h1's own among them)
    // go to h2 never, whatever the records taught h1.
    if !via_switch {
        let m1 = [2, 0, 0, 0, 0, 1];
        let m3 = [2, 0, 0, 0, 0, 3];
        for (dst, vid) in [(m3, None), (m3, Some(8)), (m1, Some(7)), (m1, Some(8))] {
            let mut f = vec![0u8; VNET_HDR_LEN];
            f.extend_from_slice(&dst);
            f.extend_from_slice(&[2, 0, 0, 0, 0, 0x11]);
            if let Some(v) = vid {
                f.extend_from_slice(&[0x81, 0x00, 0, v]);
            }
            f.extend_from_slice(&[0x88, 0xb5]);
            f.resize(VNET_HDR_LEN + 60, 0);
            p.mesh.send(H1, &f);
            let s = p.mesh.take_strays();
            let (_, opened) = p.settle_strays(s);
            for (from, fl, payload) in &opened {
                assert!(
                    *from != H1 || fl & FLAG_CONTROL != 0 || payload.is_empty(),
                    "h1 sent h2 a frame for {dst:02x?} in VLAN {vid:?}"
                );
            }
        }
    }
    // Timers over whatever state the records left, and status.
    let later = p.mesh.now + Duration::from_secs(2);
    for n in &mut p.mesh.nodes {
        n.handle_timeout(later);
        let _ = n.status(later, "h");
    }
});
