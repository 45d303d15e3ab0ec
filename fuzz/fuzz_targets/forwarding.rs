//! Frames behind established sessions: what an admitted (but buggy or
//! hostile) node can make the switch and the other nodes do. Each input is a
//! list of records `[sel, len_lo, len_hi, bytes...]`. For `sel % 4` < 3,
//! `bytes` is what node h1, h2 or h3 read from its TAP (a virtio header and
//! a frame for the offload nodes h1 and h2, a bare frame for h3), and the
//! node seals it. For `sel % 4 == 3` the rogue h4 seals `bytes` as they are,
//! with header flags `sel >> 2`: fragments, virtio headers and control
//! messages no honest node would send. The switch opens, learns, snoops,
//! tags or untags and forwards it (cutting super-frames for h3), and the
//! receivers open it for their TAPs.
//!
//! Must never panic, and across the whole run:
//! - every datagram goes to an admitted node or the switch, nowhere else;
//! - no frame comes back to the node that sent it;
//! - every TAP write is a whole frame no larger than the node's MTU allows
//!   (per segment for a super-frame), after a virtio header on offload TAPs;
//! - its source MAC is that of the frame being sent;
//! - the access port h2 only gets frames without their VLAN tag (a second,
//!   inner tag of a double-tagged frame stays, as on any 802.1Q switch),
//!   the trunks only untagged ones or VLAN 7, and nobody a frame too short
//!   for its tag;
//! - the MAC table stays within its limits.
//!
//! The network (three Noise handshakes) is built once per process and cloned
//! for every input, so runs are reproducible.
#![no_main]

use libfuzzer_sys::fuzz_target;
use overlay_proto::vnet::VNET_HDR_LEN;
use overlay_proto::wire::{
    DATA_HEADER_LEN, DATA_OVERHEAD, FLAG_CONTROL, FLAG_FRAGMENT, FLAG_VNET, Header,
};
use tapmesh_fuzz::{forwarding, forwarding_addrs, forwarding_offload, now, switch_addr};
use tapmesh_node::engine::TapWrite;

const MTU: usize = 1400;

fuzz_target!(|data: &[u8]| {
    let t = now();
    let mut net = forwarding().clone();
    let addrs = forwarding_addrs();
    let mut rest = data;
    let mut records = 0;
    while rest.len() >= 3 && records < 16 {
        records += 1;
        let sender = rest[0] as usize % 4;
        let flags = rest[0] >> 2;
        let len = (u16::from_le_bytes([rest[1], rest[2]]) as usize).min(rest.len() - 3);
        let payload = &rest[3..3 + len];
        rest = &rest[3 + len..];

        let mut buf = vec![0u8; DATA_HEADER_LEN + len + DATA_OVERHEAD];
        buf[DATA_HEADER_LEN..DATA_HEADER_LEN + len].copy_from_slice(payload);
        let mut wire: Vec<(usize, Vec<u8>)> = Vec::new(); // (from, datagram)
        let vnet = if sender == 3 {
            let n = net
                .rogue
                .seal(flags, &mut buf, len)
                .expect("buffer is big enough");
            wire.push((3, buf[..n].to_vec()));
            flags & FLAG_VNET != 0
        } else {
            if let Ok(Some(r)) = net.nodes[sender].handle_tap_frame(t, &mut buf, len) {
                assert_eq!(net.nodes[sender].destination(), switch_addr());
                wire.push((sender, buf[r].to_vec()));
            }
            forwarding_offload(sender)
        };
        // The frame being sent (without a virtio header), if this record is one.
        let sent = if sender == 3 && flags & (FLAG_FRAGMENT | FLAG_CONTROL) != 0 {
            None
        } else {
            payload.get(if vnet { VNET_HDR_LEN } else { 0 }..)
        };
        // Rounds: nodes -> switch -> nodes, until nothing moves.
        for _ in 0..8 {
            for (i, n) in net.nodes.iter_mut().enumerate() {
                while let Some(tx) = n.poll_transmit() {
                    assert_eq!(tx.destination, switch_addr(), "h{} sent elsewhere", i + 1);
                    wire.extend(tx.datagrams().map(|d| (i, d.to_vec())));
                }
            }
            if wire.is_empty() {
                break;
            }
            for (from, mut d) in wire.drain(..) {
                net.switch.handle_datagram(t, addrs[from], &mut d);
            }
            let mut out = Vec::new();
            while let Some(tx) = net.switch.poll_transmit() {
                let to = addrs
                    .iter()
                    .position(|a| *a == tx.destination)
                    .expect("the switch sends only to admitted nodes");
                out.extend(tx.datagrams().map(|d| (to, d.to_vec())));
            }
            for (to, mut d) in out {
                if to == 3 {
                    let control =
                        Header::new_checked(&d[..]).is_ok_and(|h| h.flags() & FLAG_CONTROL != 0);
                    if let Ok(r) = net.rogue.open(&mut d) {
                        assert!(
                            r.is_empty() || control || sender != 3,
                            "a frame came back to its sender h4"
                        );
                    }
                    continue;
                }
                let node = &mut net.nodes[to];
                let frame = match node.handle_datagram(t, switch_addr(), &mut d) {
                    Some(TapWrite::InPlace(r)) => d[r].to_vec(),
                    Some(TapWrite::Reassembled(r)) => node.reassembled()[r].to_vec(),
                    None => continue,
                };
                assert_ne!(to, sender, "a frame came back to its sender");
                check_tap_write(to, &frame, sent);
            }
        }
        let table = net.switch.mac_table();
        assert!(table.len() <= 128);
        for i in 0..4 {
            assert!(table.count_for(tapmesh_switch::NodeId(i)) <= 64);
        }
    }
    // Status and timers over whatever state the records left: the switch
    // ages out everything; the nodes get 2 s, enough to expire reassemblies
    // and send a probe but not to give up on the switch and start a new
    // handshake (three X25519 operations, 10x the cost of the rest).
    let _ = net.switch.status(t, true);
    net.switch
        .handle_timeout(t + std::time::Duration::from_secs(400));
    for n in &mut net.nodes {
        n.handle_timeout(t + std::time::Duration::from_secs(2));
    }
});

fn check_tap_write(to: usize, w: &[u8], sent: Option<&[u8]>) {
    let frame = tapmesh_fuzz::tap::check_write(to + 1, forwarding_offload(to), MTU, w);
    let tagged = frame[12..14] == [0x81, 0x00];
    if let Some(s) = sent {
        assert_eq!(&frame[6..12], &s[6..12], "source MAC changed on the way");
    }
    if tagged && to == 1 {
        // The access port gets VLAN 7 without its tag. A tag still there
        // can only be an inner one: the sender's frame was double-tagged
        // (outer VLAN 7, as 802.1Q allows), and h2 sees it as sent, less the
        // outer tag. (A rogue's reassembled frame cannot be checked here.)
        if let Some(s) = sent {
            let double = s.len() >= 22 && s[12..14] == [0x81, 0x00] && s[16..18] == [0x81, 0x00];
            assert!(double, "a tagged frame reached the access port h2");
            assert_eq!(&frame[12..16], &s[16..20], "not the sender's inner tag");
        }
    } else if tagged {
        let vid = u16::from_be_bytes([frame[14], frame[15]]) & 0x0fff;
        assert_eq!(vid, 7, "VLAN {vid} reached trunk h{}", to + 1);
    }
}
