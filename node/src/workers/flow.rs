//! Which TAP queue a frame for the TAP is written to.
//!
//! The kernel sends a flow out of the queue its frames were last written to
//! (the TUN flow table), so writing every frame of a flow to one queue pins
//! the flow's outgoing direction to that queue's worker: each direction of a
//! flow is handled by one thread, in order. The choice only has to be the
//! same for both directions of a flow and stable: a symmetric hash of the IP
//! addresses and, for TCP and UDP, the ports; MAC addresses for other frames.

use overlay_proto::vnet::VNET_HDR_LEN;

const ETH_HEADER: usize = 14;
const VLAN_TAG: usize = 4;

/// The queue, `0..queues`, for a payload in local format (after a virtio
/// header if `vnet`). A short or unparsable frame gets queue 0.
pub fn queue_for(payload: &[u8], vnet: bool, queues: usize) -> usize {
    // HOT PATH
    if queues <= 1 {
        return 0;
    }
    let frame = if vnet {
        payload.get(VNET_HDR_LEN..).unwrap_or(&[])
    } else {
        payload
    };
    let h = flow_hash(frame);
    // Multiply-shift: no division on the hot path.
    ((u64::from(h) * queues as u64) >> 32) as usize
}

/// A hash equal for both directions of a flow.
fn flow_hash(frame: &[u8]) -> u32 {
    if frame.len() < ETH_HEADER {
        return 0;
    }
    let mut at = 12;
    let mut ethertype = u16::from_be_bytes([frame[at], frame[at + 1]]);
    while ethertype == 0x8100 || ethertype == 0x88a8 {
        at += VLAN_TAG;
        let Some(t) = frame.get(at..at + 2) else {
            return 0;
        };
        ethertype = u16::from_be_bytes([t[0], t[1]]);
    }
    let l3 = &frame[at + 2..];
    let (a, b, proto, l4) = match ethertype {
        0x0800 if l3.len() >= 20 => {
            let ihl = usize::from(l3[0] & 0x0f) * 4;
            (
                fold(&l3[12..16]),
                fold(&l3[16..20]),
                l3[9],
                l3.get(ihl..).unwrap_or(&[]),
            )
        }
        0x86dd if l3.len() >= 40 => (fold(&l3[8..24]), fold(&l3[24..40]), l3[6], &l3[40..]),
        _ => (fold(&frame[0..6]), fold(&frame[6..12]), 0, &[][..]),
    };
    let ports = match proto {
        // TCP, UDP: source and destination port, in either order.
        6 | 17 if l4.len() >= 4 => {
            u32::from(u16::from_be_bytes([l4[0], l4[1]]))
                ^ u32::from(u16::from_be_bytes([l4[2], l4[3]]))
        }
        _ => 0,
    };
    // Symmetric: XOR of the two ends, then mixed.
    mix((a ^ b) ^ ports.rotate_left(16) ^ u32::from(proto))
}

fn fold(bytes: &[u8]) -> u32 {
    bytes
        .iter()
        .fold(0u32, |h, &x| h.rotate_left(5) ^ u32::from(x))
        .wrapping_mul(0x9e37_79b9)
}

fn mix(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Ethernet + IPv4 + TCP header from `src:sp` to `dst:dp`.
    fn tcp4(src: [u8; 4], sp: u16, dst: [u8; 4], dp: u16) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 20];
        f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        f[14] = 0x45;
        f[14 + 9] = 6;
        f[14 + 12..14 + 16].copy_from_slice(&src);
        f[14 + 16..14 + 20].copy_from_slice(&dst);
        f[34..36].copy_from_slice(&sp.to_be_bytes());
        f[36..38].copy_from_slice(&dp.to_be_bytes());
        f
    }

    #[test]
    fn both_directions_of_a_flow_get_one_queue() {
        let a = [198, 19, 0, 1];
        let b = [198, 19, 0, 2];
        for q in [2, 3, 4, 16] {
            for port in 40000..40100 {
                let there = tcp4(a, port, b, 5201);
                let back = tcp4(b, 5201, a, port);
                assert_eq!(queue_for(&there, false, q), queue_for(&back, false, q));
                // With a virtio header in front: the same queue.
                let mut v = vec![0u8; VNET_HDR_LEN];
                v.extend_from_slice(&there);
                assert_eq!(queue_for(&v, true, q), queue_for(&there, false, q));
            }
        }
    }

    #[test]
    fn flows_spread_over_the_queues_and_stay_in_range() {
        let mut seen = [0usize; 4];
        for port in 40000..40400 {
            let f = tcp4([198, 19, 0, 1], port, [198, 19, 0, 2], 5201);
            seen[queue_for(&f, false, 4)] += 1;
        }
        // 400 flows over 4 queues: every queue gets a fair share.
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
        assert_eq!(queue_for(&[0u8; 5], false, 4), 0);
        assert_eq!(queue_for(&tcp4([1; 4], 1, [2; 4], 2), false, 1), 0);
    }
}
