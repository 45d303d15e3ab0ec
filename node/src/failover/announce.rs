//! The MACs that sent through the uplink recently, and the RARP frames
//! that announce them to a new home switch.
//!
//! The table is small and fixed (no allocation after start): the node
//! notes each frame's source MAC and VLAN tag on its way to the uplink
//! (one comparison when the same MAC sends again, a short scan when not),
//! and after a failover announces every entry heard within
//! [`ANNOUNCE_WITHIN`] with one frame built as QEMU's `announce-self`
//! builds it: broadcast, ethertype RARP (0x8035), "reverse request" with
//! the MAC as sender and target, padded to the 60-byte minimum, in the
//! VLAN the MAC sent in.
use std::time::{Duration, Instant};

use overlay_proto::ethernet::{Frame, MacAddr, TPID_8021Q, Tci};

/// The MACs remembered (the oldest is replaced by a new one).
pub const LOCAL_MAC_SLOTS: usize = 64;
/// A MAC not heard from for this long is not announced (the switch's own
/// MAC aging is 300 s).
pub const ANNOUNCE_WITHIN: Duration = Duration::from_secs(300);
/// The RARP ethertype.
pub const ETHERTYPE_RARP: u16 = 0x8035;
/// The length of an untagged announcement (the Ethernet minimum without FCS).
pub const ANNOUNCE_LEN: usize = 60;

/// Refresh an entry's time at most this often (not on every frame).
const REFRESH: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
struct Entry {
    mac: MacAddr,
    vlan: Option<Tci>,
    seen: Instant,
}

/// The source MACs (with their VLAN tag) of frames sent to the uplink.
#[derive(Debug, Clone)]
pub struct LocalMacs {
    entries: Vec<Entry>,
    /// The entry the last frame hit.
    last: usize,
}

impl Default for LocalMacs {
    fn default() -> LocalMacs {
        LocalMacs {
            entries: Vec::with_capacity(LOCAL_MAC_SLOTS),
            last: 0,
        }
    }
}

impl LocalMacs {
    /// Note the source of `frame`, on its way to the uplink.
    pub fn note(&mut self, now: Instant, frame: &[u8]) {
        // HOT PATH
        let Ok(f) = Frame::new_checked(frame) else {
            return;
        };
        let (mac, vlan) = (f.src(), f.vlan().map(|t| Tci(t.0 & 0x0fff)));
        let fresh = |e: &Entry| now.saturating_duration_since(e.seen) < REFRESH;
        if let Some(e) = self.entries.get_mut(self.last)
            && e.mac == mac
            && e.vlan == vlan
        {
            if !fresh(e) {
                e.seen = now;
            }
            return;
        }
        if !mac.is_valid_source() {
            return;
        }
        if let Some(i) = self
            .entries
            .iter()
            .position(|e| e.mac == mac && e.vlan == vlan)
        {
            self.entries[i].seen = now;
            self.last = i;
            return;
        }
        let entry = Entry {
            mac,
            vlan,
            seen: now,
        };
        if self.entries.len() < LOCAL_MAC_SLOTS {
            self.entries.push(entry);
            self.last = self.entries.len() - 1;
        } else if let Some((i, _)) = self.entries.iter().enumerate().min_by_key(|(_, e)| e.seen) {
            self.entries[i] = entry;
            self.last = i;
        }
    }

    /// The MACs heard within [`ANNOUNCE_WITHIN`], with their VLAN tag.
    pub fn recent(&self, now: Instant) -> impl Iterator<Item = (MacAddr, Option<Tci>)> + '_ {
        self.entries
            .iter()
            .filter(move |e| now.saturating_duration_since(e.seen) < ANNOUNCE_WITHIN)
            .map(|e| (e.mac, e.vlan))
    }
}

/// Write the announcement of `mac` (tagged with `vlan`, if any) into
/// `out`; returns its length.
pub fn announcement(mac: MacAddr, vlan: Option<Tci>, out: &mut Vec<u8>) -> usize {
    out.clear();
    out.extend_from_slice(&MacAddr::BROADCAST.0);
    out.extend_from_slice(&mac.0);
    if let Some(t) = vlan {
        out.extend_from_slice(&TPID_8021Q.to_be_bytes());
        out.extend_from_slice(&t.0.to_be_bytes());
    }
    out.extend_from_slice(&ETHERTYPE_RARP.to_be_bytes());
    // Ethernet, IPv4, 6-byte and 4-byte addresses, opcode 3 (reverse request).
    out.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 3]);
    out.extend_from_slice(&mac.0);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&mac.0);
    out.extend_from_slice(&[0; 4]);
    let min = ANNOUNCE_LEN + if vlan.is_some() { 4 } else { 0 };
    out.resize(min.max(out.len()), 0);
    out.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(src: u8, vlan: Option<u16>) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, src]);
        if let Some(v) = vlan {
            f.extend_from_slice(&TPID_8021Q.to_be_bytes());
            f.extend_from_slice(&v.to_be_bytes());
        }
        f.extend_from_slice(&[0x08, 0x00]);
        f.resize(f.len() + 46, 0);
        f
    }

    #[test]
    fn remembers_each_mac_and_vlan_once() {
        let t0 = Instant::now();
        let mut m = LocalMacs::default();
        for _ in 0..3 {
            m.note(t0, &frame(1, None));
            m.note(t0, &frame(2, Some(10)));
        }
        // The priority bits are not part of the VLAN.
        m.note(t0, &frame(2, Some(10 | 0xa000)));
        let got: Vec<_> = m.recent(t0).collect();
        assert_eq!(
            got,
            vec![
                (MacAddr([2, 0, 0, 0, 0, 1]), None),
                (MacAddr([2, 0, 0, 0, 0, 2]), Some(Tci(10)))
            ]
        );
    }

    #[test]
    fn ignores_group_sources_and_runts() {
        let t0 = Instant::now();
        let mut m = LocalMacs::default();
        let mut f = frame(1, None);
        f[6] = 1;
        m.note(t0, &f);
        m.note(t0, &[0u8; 10]);
        assert_eq!(m.recent(t0).count(), 0);
    }

    #[test]
    fn bounded_and_forgets_the_stale() {
        let t0 = Instant::now();
        let mut m = LocalMacs::default();
        for i in 0..=LOCAL_MAC_SLOTS as u8 {
            m.note(t0 + Duration::from_secs(u64::from(i)), &frame(i, None));
        }
        let now = t0 + Duration::from_secs(LOCAL_MAC_SLOTS as u64);
        let macs: Vec<_> = m.recent(now).map(|(mac, _)| mac.0[5]).collect();
        assert_eq!(macs.len(), LOCAL_MAC_SLOTS);
        assert!(!macs.contains(&0), "the oldest was replaced");
        assert_eq!(m.recent(now + ANNOUNCE_WITHIN).count(), 0);
    }

    #[test]
    fn announcement_is_a_rarp_reverse_request() {
        let mac = MacAddr([2, 0, 0, 0, 0, 7]);
        let mut out = Vec::new();
        assert_eq!(announcement(mac, None, &mut out), ANNOUNCE_LEN);
        let f = Frame::new_checked(&out[..]).unwrap();
        assert!(f.dst().is_broadcast());
        assert_eq!(f.src(), mac);
        assert_eq!(f.ethertype(), ETHERTYPE_RARP);
        assert_eq!(&f.payload()[6..8], &[0, 3]);
        assert_eq!(&f.payload()[8..14], &mac.0);
        assert_eq!(&f.payload()[18..24], &mac.0);
        assert_eq!(announcement(mac, Some(Tci(5)), &mut out), ANNOUNCE_LEN + 4);
        let f = Frame::new_checked(&out[..]).unwrap();
        assert_eq!(f.vlan(), Some(Tci(5)));
        assert_eq!(f.ethertype(), ETHERTYPE_RARP);
    }
}
