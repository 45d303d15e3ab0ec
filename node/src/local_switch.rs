//! The node's own learning switch, between its local ports (the TAP, each VM
//! connection, later a userspace host) and its overlay uplink (the [`Node`]
//! core).
//!
//! Why a switch in the node: VMs plug straight into the node over sockets,
//! so frames between two VMs on one host must go from one to the other
//! without a round trip through the overlay, and frames for a remote MAC must
//! go only to the uplink. It behaves like a small Ethernet switch: it learns
//! source MACs per port (entries age out, the table is bounded), sends known
//! unicast to one port, and floods broadcast, multicast and unknown unicast
//! to every port that is up, never back to the ingress port.
//!
//! Sans-IO like the other cores: [`LocalSwitch::handle_frame`] takes the
//! ingress port and the frame's first bytes and says where the frame goes;
//! the shell moves the bytes. Frame formats differ per port: the uplink and
//! an offload TAP speak "local format" (a virtio-net header before the frame
//! when the node core has `offload` on, possibly a TCP super-frame), VM ports
//! plain Ethernet frames. [`plain_frames`] turns the former into the latter.
//!
//! [`Node`]: crate::core::Node
use std::time::Instant;

use overlay_proto::ethernet::{self, Frame};
use overlay_proto::mac_table::{MAC_AGING, MAC_LIMIT, MacTable};
use overlay_proto::vlan::NO_VLAN;
use overlay_proto::vnet::{self, VNET_HDR_LEN, VnetHdr};
use serde::Serialize;

use crate::stats::{DropReason, Drops};

/// A port number; [`UPLINK`] is always port 0.
pub type PortId = usize;

/// The overlay uplink: the node core and, through it, the switch.
pub const UPLINK: PortId = 0;

/// What is behind a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PortKind {
    /// The overlay uplink ([`UPLINK`]).
    Uplink,
    /// The node's TAP device.
    Tap,
    /// A VM connected over a unix socket.
    Vm,
    /// A userspace host inside the node.
    Host,
}

impl PortKind {
    /// The stable name (status JSON, metric label).
    pub fn name(self) -> &'static str {
        match self {
            PortKind::Uplink => "uplink",
            PortKind::Tap => "tap",
            PortKind::Vm => "vm",
            PortKind::Host => "host",
        }
    }
}

#[derive(Debug)]
struct Port {
    kind: PortKind,
    name: String,
    /// The largest frame (Ethernet header included, no VLAN tag) it takes.
    mtu: usize,
    up: bool,
    /// Taken out by a reload: never up again, not in status.
    removed: bool,
    counters: PortCounters,
}

/// Per-port traffic, seen from the port (rx: frames it sent into the switch).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct PortCounters {
    /// Frames that came in on the port.
    pub rx_frames: u64,
    /// Frames sent out of the port (to a VM: each segment of a super-frame).
    pub tx_frames: u64,
    /// Times the port went down (a VM disconnected).
    pub disconnects: u64,
}

/// Where a frame goes, from [`LocalSwitch::handle_frame`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Egress {
    /// To this one port.
    Port(PortId),
    /// To every port that is up except the ingress port: iterate with
    /// [`LocalSwitch::flood_ports`].
    Flood {
        /// The ingress port.
        except: PortId,
    },
    /// Nowhere: the destination is behind the ingress port, or the frame
    /// was dropped (counted).
    Nowhere,
}

/// The local learning switch.
#[derive(Debug)]
pub struct LocalSwitch {
    ports: Vec<Port>,
    /// The local ports behind each MAC ([`MAC_LIMIT`] at most, any number
    /// per port); the local switch is VLAN-unaware, so all in [`NO_VLAN`].
    macs: MacTable<PortId>,
    next_sweep: Instant,
    drops: Drops,
    /// Frames whose destination was behind their own ingress port.
    filtered: u64,
}

impl LocalSwitch {
    /// A switch with only the uplink, whose MTU is `uplink_mtu`.
    pub fn new(now: Instant, uplink_mtu: usize) -> LocalSwitch {
        let mut s = LocalSwitch {
            ports: Vec::new(),
            macs: MacTable::new(MAC_AGING, usize::MAX, MAC_LIMIT),
            next_sweep: now + MAC_AGING,
            drops: Drops::default(),
            filtered: 0,
        };
        s.add_port(PortKind::Uplink, "uplink", uplink_mtu);
        s.ports[UPLINK].up = true;
        s
    }

    /// Add a port (down until [`set_up`](Self::set_up), except the uplink).
    /// `mtu` is its IP MTU; frames to it may be 14 bytes longer (18 with a
    /// VLAN tag).
    pub fn add_port(&mut self, kind: PortKind, name: &str, mtu: usize) -> PortId {
        self.ports.push(Port {
            kind,
            name: name.to_owned(),
            mtu,
            up: false,
            removed: false,
            counters: PortCounters::default(),
        });
        self.ports.len() - 1
    }

    /// A port came up (a VM connected) or went down (it disconnected): a
    /// port going down forgets the MACs learned on it, so their frames flood
    /// until they are learned again, wherever they reappear.
    pub fn set_up(&mut self, port: PortId, up: bool) {
        let Some(p) = self.ports.get_mut(port) else {
            return;
        };
        if p.up && !up {
            p.counters.disconnects += 1;
            self.macs.flush_port(port);
        }
        p.up = up && !p.removed;
    }

    /// Take a port out for good (a reload removed its VM socket or
    /// userspace host): down, its MACs forgotten, gone from `status`.
    pub fn remove_port(&mut self, port: PortId) {
        if port == UPLINK {
            return;
        }
        self.set_up(port, false);
        if let Some(p) = self.ports.get_mut(port) {
            p.removed = true;
        }
    }

    /// Is the port up?
    pub fn is_up(&self, port: PortId) -> bool {
        self.ports.get(port).is_some_and(|p| p.up)
    }

    /// The port's name (for logs).
    pub fn name(&self, port: PortId) -> &str {
        self.ports.get(port).map_or("?", |p| p.name.as_str())
    }

    /// The port's kind.
    pub fn kind(&self, port: PortId) -> Option<PortKind> {
        self.ports.get(port).map(|p| p.kind)
    }

    /// The longest plain frame the port takes: its MTU plus the Ethernet
    /// header, plus 4 if `frame` carries an 802.1Q tag.
    pub fn max_frame(&self, port: PortId, frame: &[u8]) -> usize {
        ethernet::max_len(self.mtu(port), frame)
    }

    fn mtu(&self, port: PortId) -> usize {
        self.ports.get(port).map_or(0, |p| p.mtu)
    }

    /// Whether a payload (after a virtio header if `vnet`) fits the port:
    /// a GSO super-frame by its segment size, anything else by its length.
    pub fn fits(&self, port: PortId, vnet: bool, payload: &[u8]) -> bool {
        let (hdr, frame) = if vnet {
            match VnetHdr::parse(payload) {
                Some(h) => (Some(h), &payload[VNET_HDR_LEN..]),
                None => return false,
            }
        } else {
            (None, payload)
        };
        vnet::fits_mtu(hdr.as_ref(), frame, self.mtu(port))
    }

    /// Learn the source of a frame that came in on `ingress` and say where
    /// it goes. `frame` is the plain Ethernet frame (of a super-frame, its
    /// headers: the MACs are the same in every segment). Cheap when the node
    /// has a single local port: everything goes between it and the uplink.
    pub fn handle_frame(&mut self, now: Instant, ingress: PortId, frame: &[u8]) -> Egress {
        // HOT PATH
        let Some(p) = self.ports.get_mut(ingress) else {
            return Egress::Nowhere;
        };
        p.counters.rx_frames += 1;
        let Ok(frame) = Frame::new_checked(frame) else {
            self.drops.add(DropReason::Runt);
            return Egress::Nowhere;
        };
        if self.ports.len() == 2 {
            // One local port and the uplink: nothing to learn or choose.
            return Egress::Port(1 - ingress);
        }
        // A move (a VM migrated, a host replugged) is taken at once; group
        // and all-zero sources are never learned.
        self.macs.learn(now, NO_VLAN, frame.src(), ingress);
        let dst = frame.dst();
        if dst.is_group() {
            return Egress::Flood { except: ingress };
        }
        match self.macs.lookup(now, NO_VLAN, &dst) {
            Some(p) if p == ingress => {
                self.filtered += 1;
                Egress::Nowhere
            }
            Some(p) if self.ports[p].up => Egress::Port(p),
            _ => Egress::Flood { except: ingress },
        }
    }

    /// The ports a flood from `except` goes to: every port that is up but
    /// `except`.
    pub fn flood_ports(&self, except: PortId) -> impl Iterator<Item = PortId> + '_ {
        self.ports
            .iter()
            .enumerate()
            .filter(move |(i, p)| *i != except && p.up)
            .map(|(i, _)| i)
    }

    /// Count a frame sent out of `port`.
    pub fn note_sent(&mut self, port: PortId) {
        self.note_sent_n(port, 1);
    }

    /// Count `n` frames sent out of `port` (segments of one super-frame).
    pub fn note_sent_n(&mut self, port: PortId, n: u64) {
        if let Some(p) = self.ports.get_mut(port) {
            p.counters.tx_frames += n;
        }
    }

    /// Count a drop that happened at a port (framing, queue full, size).
    pub fn note_drop(&mut self, reason: DropReason) {
        self.drops.add(reason);
    }

    /// Count `n` drops at once.
    pub fn note_drops(&mut self, reason: DropReason, n: u64) {
        self.drops.add_n(reason, n);
    }

    /// Forget expired MACs.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now < self.next_sweep {
            return;
        }
        self.macs.expire(now);
        self.next_sweep = now + self.macs.aging() / 4;
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has work.
    pub fn poll_timeout(&self) -> Instant {
        self.next_sweep
    }

    /// Drops counted here (by ports and by this switch).
    pub fn drops(&self) -> &Drops {
        &self.drops
    }

    /// A snapshot of the ports, for `status`.
    pub fn status(&self) -> LocalStatus {
        let ports = self
            .ports
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.removed)
            .map(|(i, p)| PortStatus {
                name: p.name.clone(),
                kind: p.kind,
                up: p.up,
                macs: self.macs.count_for(i),
                counters: p.counters,
            })
            .collect();
        LocalStatus {
            ports,
            macs: self.macs.len(),
            filtered: self.filtered,
        }
    }
}

/// The local switch in `status`.
#[derive(Debug, Clone, Serialize)]
pub struct LocalStatus {
    /// Every port, the uplink first.
    pub ports: Vec<PortStatus>,
    /// MACs in the local table.
    pub macs: usize,
    /// Frames not forwarded because their destination was behind their own
    /// ingress port.
    pub filtered: u64,
}

/// One port in `status`.
#[derive(Debug, Clone, Serialize)]
pub struct PortStatus {
    /// The port's name: `uplink`, the TAP's name, or the VM socket's path.
    pub name: String,
    /// What is behind it.
    pub kind: PortKind,
    /// Up (a VM is connected).
    pub up: bool,
    /// MACs learned on it.
    pub macs: usize,
    /// Its traffic.
    #[serde(flatten)]
    pub counters: PortCounters,
}

/// Turn a payload in local format (after a virtio-net header if `vnet`) into
/// plain Ethernet frames of at most `max` bytes (by [`LocalSwitch::max_frame`]
/// of the egress port) and give each to `out`. A TCP super-frame is cut into
/// segments, a frame with a partial checksum gets it completed; both need a
/// copy, made in `scratch` (the payload itself is left as it was, since it may
/// still go to the uplink or the TAP). Returns why the frame (or one segment)
/// was dropped; the caller counts it.
pub fn plain_frames(
    vnet: bool,
    payload: &[u8],
    max: impl Fn(&[u8]) -> usize,
    scratch: &mut Vec<u8>,
    mut out: impl FnMut(&[u8]),
) -> Result<(), DropReason> {
    let frame = if vnet {
        let h = VnetHdr::parse(payload).ok_or(DropReason::Runt)?;
        let frame = &payload[VNET_HDR_LEN..];
        if !h.is_plain() {
            scratch.clear();
            scratch.extend_from_slice(frame);
            let mut oversize = false;
            vnet::segment(&h, scratch, |seg| {
                if seg.len() <= max(seg) {
                    out(seg);
                } else {
                    oversize = true;
                }
            })
            .map_err(|_| DropReason::Segment)?;
            return if oversize {
                Err(DropReason::Oversize)
            } else {
                Ok(())
            };
        }
        frame
    } else {
        payload
    };
    if frame.len() < ethernet::HEADER_LEN {
        return Err(DropReason::Runt);
    }
    if frame.len() > max(frame) {
        return Err(DropReason::Oversize);
    }
    out(frame);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];
    const C: [u8; 6] = [2, 0, 0, 0, 0, 0xc];
    const BCAST: [u8; 6] = [0xff; 6];

    fn frame(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&dst);
        f.extend_from_slice(&src);
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&[0u8; 46]);
        f
    }

    /// Uplink (0), TAP (1), two VMs (2, 3), all up.
    fn four_ports(t0: Instant) -> LocalSwitch {
        let mut s = LocalSwitch::new(t0, 1500);
        let tap = s.add_port(PortKind::Tap, "tapmesh0", 1400);
        let vm1 = s.add_port(PortKind::Vm, "/run/vm1.sock", 1500);
        let vm2 = s.add_port(PortKind::Vm, "/run/vm2.sock", 1500);
        for p in [tap, vm1, vm2] {
            s.set_up(p, true);
        }
        s
    }

    #[test]
    fn learns_and_keeps_vm_to_vm_traffic_local() {
        let t0 = Instant::now();
        let mut s = four_ports(t0);
        // Unknown destination: flooded to all but the ingress port.
        assert_eq!(
            s.handle_frame(t0, 2, &frame(B, A)),
            Egress::Flood { except: 2 }
        );
        assert_eq!(s.flood_ports(2).collect::<Vec<_>>(), vec![0, 1, 3]);
        // B answers from VM 2 (port 3): A is known on port 2, so only there.
        assert_eq!(s.handle_frame(t0, 3, &frame(A, B)), Egress::Port(2));
        assert_eq!(s.handle_frame(t0, 2, &frame(B, A)), Egress::Port(3));
        // A remote MAC learned from the uplink: unicast goes only there.
        assert_eq!(
            s.handle_frame(t0, UPLINK, &frame(BCAST, C)),
            Egress::Flood { except: 0 }
        );
        assert_eq!(s.handle_frame(t0, 2, &frame(C, A)), Egress::Port(UPLINK));
        // Destination behind the ingress port: filtered.
        assert_eq!(s.handle_frame(t0, 2, &frame(A, A)), Egress::Nowhere);
        assert_eq!(s.status().filtered, 1);
        assert_eq!(s.status().ports[2].macs, 1);
    }

    #[test]
    fn aging_moves_and_port_down() {
        let t0 = Instant::now();
        let mut s = four_ports(t0);
        s.handle_frame(t0, 2, &frame(BCAST, A));
        assert_eq!(s.handle_frame(t0, 1, &frame(A, B)), Egress::Port(2));
        // A moves to VM 2's port.
        s.handle_frame(t0, 3, &frame(BCAST, A));
        assert_eq!(s.handle_frame(t0, 1, &frame(A, B)), Egress::Port(3));
        // Aged out: flooded again, and swept from the table.
        let later = t0 + MAC_AGING + Duration::from_secs(1);
        assert_eq!(
            s.handle_frame(later, 1, &frame(A, B)),
            Egress::Flood { except: 1 }
        );
        s.handle_timeout(later);
        assert_eq!(s.status().macs, 1); // only B, just learned
        // A port going down forgets its MACs and leaves floods.
        s.handle_frame(later, 3, &frame(BCAST, A));
        s.set_up(3, false);
        assert_eq!(
            s.handle_frame(later, 1, &frame(A, B)),
            Egress::Flood { except: 1 }
        );
        assert_eq!(s.flood_ports(1).collect::<Vec<_>>(), vec![0, 2]);
        assert_eq!(s.status().ports[3].counters.disconnects, 1);
        // Multicast sources are never learned; runts are dropped and counted.
        s.handle_frame(later, 2, &frame(A, [3, 0, 0, 0, 0, 1]));
        assert_eq!(s.status().macs, 1);
        assert_eq!(s.handle_frame(later, 2, &[0u8; 10]), Egress::Nowhere);
        assert_eq!(s.drops().get(DropReason::Runt), 1);
    }

    #[test]
    fn group_and_zero_sources_are_not_learned() {
        let t0 = Instant::now();
        let mut s = four_ports(t0);
        for src in [[0; 6], BCAST, [1, 0, 0x5e, 0, 0, 1]] {
            s.handle_frame(t0, 2, &frame(A, src));
        }
        assert_eq!(s.status().macs, 0);
        // So a frame to the all-zero MAC is flooded, not sent to port 2.
        assert_eq!(
            s.handle_frame(t0, 1, &frame([0; 6], B)),
            Egress::Flood { except: 1 }
        );
    }

    #[test]
    fn table_is_bounded() {
        let t0 = Instant::now();
        let mut s = four_ports(t0);
        for i in 0..(MAC_LIMIT as u32 + 100) {
            let b = i.to_be_bytes();
            s.handle_frame(t0, 2, &frame(BCAST, [2, 0, b[0], b[1], b[2], b[3]]));
        }
        assert_eq!(s.status().macs, MAC_LIMIT);
    }

    #[test]
    fn single_local_port_is_a_wire() {
        let t0 = Instant::now();
        let mut s = LocalSwitch::new(t0, 1400);
        let tap = s.add_port(PortKind::Tap, "tapmesh0", 1400);
        s.set_up(tap, true);
        assert_eq!(s.handle_frame(t0, tap, &frame(A, B)), Egress::Port(UPLINK));
        assert_eq!(s.handle_frame(t0, UPLINK, &frame(B, A)), Egress::Port(tap));
        assert_eq!(s.status().macs, 0);
    }

    #[test]
    fn fits_by_length_or_segment_size() {
        let t0 = Instant::now();
        let s = four_ports(t0);
        let mut f = frame(A, B);
        f.resize(1414, 0);
        assert!(s.fits(1, false, &f));
        f.push(0);
        assert!(!s.fits(1, false, &f));
        assert!(s.fits(2, false, &f));
        // A super-frame: its segment size counts, not its length.
        let mut v = vec![0u8; VNET_HDR_LEN];
        v[1] = vnet::GSO_TCPV4;
        v[4..6].copy_from_slice(&1400u16.to_le_bytes());
        v.extend_from_slice(&[0u8; 30000]);
        assert!(s.fits(1, true, &v));
        v[4..6].copy_from_slice(&1401u16.to_le_bytes());
        assert!(!s.fits(1, true, &v));
        assert!(!s.fits(1, true, &v[..4]));
    }

    #[test]
    fn plain_frames_strips_headers_and_checks_size() {
        let f = frame(A, B);
        let mut scratch = Vec::new();
        let mut got = Vec::new();
        // Plain in, plain out.
        plain_frames(false, &f, |_| 1514, &mut scratch, |s| got.push(s.to_vec())).unwrap();
        // An all-zero virtio header is stripped.
        let mut v = vec![0u8; VNET_HDR_LEN];
        v.extend_from_slice(&f);
        plain_frames(true, &v, |_| 1514, &mut scratch, |s| got.push(s.to_vec())).unwrap();
        assert_eq!(got, vec![f.clone(), f.clone()]);
        // Too big for the port, too short, or a bad GSO header: refused.
        assert_eq!(
            plain_frames(false, &f, |_| 40, &mut scratch, |_| panic!()),
            Err(DropReason::Oversize)
        );
        assert_eq!(
            plain_frames(true, &v[..20], |_| 1514, &mut scratch, |_| panic!()),
            Err(DropReason::Runt)
        );
        v[1] = vnet::GSO_TCPV4;
        v[4] = 100;
        assert_eq!(
            plain_frames(true, &v, |_| 1514, &mut scratch, |_| panic!()),
            Err(DropReason::Segment)
        );
    }
}
