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
//! Sans-IO like the other cores: [`LocalSwitch::forward`] takes the ingress
//! port and the frame, says where it goes and hands VMs and hosts their
//! copies in their format; the shell moves the bytes. Frame formats differ
//! per port ([`Format`]): the uplink and an offload TAP speak "local format"
//! (a virtio-net header before the frame when the node core has `offload`
//! on, possibly a TCP super-frame), VM ports and hosts plain Ethernet frames.
//!
//! [`Node`]: crate::engine::Node
use std::time::Instant;

use overlay_proto::ethernet::{self, Frame};
use overlay_proto::mac_table::{MAC_AGING, MAC_LIMIT, MacTable};
use overlay_proto::vlan::NO_VLAN;
use overlay_proto::vnet::{self, VnetHdr};
use serde::Serialize;

use crate::counters::{DropReason, Drops};

mod format;
mod forward;

pub use format::Format;
pub use forward::Forward;

/// A port number; [`UPLINK`] is always port 0.
pub type PortId = usize;

/// The overlay uplink: the node core and, through it, the switch.
pub const UPLINK: PortId = 0;

/// What is behind a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
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
#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize)]
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
pub enum Destination {
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
    /// The uplink and the TAP speak [`Format::Vnet`].
    offload: bool,
    /// Segments of super-frames cut for VMs (reused).
    scratch: Vec<u8>,
}

impl LocalSwitch {
    /// A switch with only the uplink, whose MTU is `uplink_mtu`; with
    /// `offload`, the uplink and the TAP speak [`Format::Vnet`].
    pub fn new(now: Instant, uplink_mtu: usize, offload: bool) -> LocalSwitch {
        let mut s = LocalSwitch {
            ports: Vec::new(),
            macs: MacTable::new(MAC_AGING, usize::MAX, MAC_LIMIT),
            next_sweep: now + MAC_AGING,
            drops: Drops::default(),
            filtered: 0,
            offload,
            scratch: Vec::new(),
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

    /// The longest frame a VM or host may send in on `port`: a VLAN tag
    /// makes a frame 4 bytes longer.
    pub fn max_frame_in(&self, port: PortId) -> usize {
        self.max_frame(port, &[]) + 4
    }

    fn mtu(&self, port: PortId) -> usize {
        self.ports.get(port).map_or(0, |p| p.mtu)
    }

    /// Whether a payload in `format` fits the port: a GSO super-frame by its
    /// segment size, anything else by its length.
    pub fn fits(&self, port: PortId, format: Format, payload: &[u8]) -> bool {
        let hdr = match format {
            Format::Plain => None,
            Format::Vnet => match VnetHdr::parse(payload) {
                Some(h) => Some(h),
                None => return false,
            },
        };
        vnet::fits_mtu(hdr.as_ref(), format.frame(payload), self.mtu(port))
    }

    /// Learn the source of a frame that came in on `ingress` and say where
    /// it goes. `frame` is the plain Ethernet frame (of a super-frame, its
    /// headers: the MACs are the same in every segment). Cheap when the node
    /// has a single local port: everything goes between it and the uplink.
    pub fn handle_frame(&mut self, now: Instant, ingress: PortId, frame: &[u8]) -> Destination {
        // HOT PATH
        let Some(p) = self.ports.get_mut(ingress) else {
            return Destination::Nowhere;
        };
        p.counters.rx_frames += 1;
        let Ok(frame) = Frame::new_checked(frame) else {
            self.drops.add(DropReason::Runt);
            return Destination::Nowhere;
        };
        if self.ports.len() == 2 {
            // One local port and the uplink: nothing to learn or choose.
            return Destination::Port(1 - ingress);
        }
        // A move (a VM migrated, a host replugged) is taken at once; group
        // and all-zero sources are never learned.
        self.macs.learn(now, NO_VLAN, frame.src(), ingress);
        let dst = frame.dst();
        if dst.is_group() {
            return Destination::Flood { except: ingress };
        }
        match self.macs.lookup(now, NO_VLAN, &dst) {
            Some(p) if p == ingress => {
                self.filtered += 1;
                Destination::Nowhere
            }
            Some(p) if self.ports[p].up => Destination::Port(p),
            _ => Destination::Flood { except: ingress },
        }
    }

    /// The ports a flood from `except` goes to: every port that is up but
    /// `except`.
    pub fn flood_ports(&self, except: PortId) -> impl Iterator<Item = PortId> + '_ {
        (0..self.ports.len()).filter(move |&p| self.floods_to(p, except))
    }

    fn floods_to(&self, port: PortId, except: PortId) -> bool {
        port != except && self.is_up(port)
    }

    /// Count `n` frames sent out of `port` (segments of one super-frame).
    fn count_sent(&mut self, port: PortId, n: u64) {
        if let Some(p) = self.ports.get_mut(port) {
            p.counters.tx_frames += n;
        }
    }

    /// Count a drop that happened at a port (framing, a failed TAP write).
    pub fn note_drop(&mut self, reason: DropReason) {
        self.drops.add(reason);
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
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
#[serde(default)]
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
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
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

#[cfg(test)]
mod tests {
    use overlay_proto::vnet::VNET_HDR_LEN;

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
        let mut s = LocalSwitch::new(t0, 1500, false);
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
            Destination::Flood { except: 2 }
        );
        assert_eq!(s.flood_ports(2).collect::<Vec<_>>(), vec![0, 1, 3]);
        // B answers from VM 2 (port 3): A is known on port 2, so only there.
        assert_eq!(s.handle_frame(t0, 3, &frame(A, B)), Destination::Port(2));
        assert_eq!(s.handle_frame(t0, 2, &frame(B, A)), Destination::Port(3));
        // A remote MAC learned from the uplink: unicast goes only there.
        assert_eq!(
            s.handle_frame(t0, UPLINK, &frame(BCAST, C)),
            Destination::Flood { except: 0 }
        );
        assert_eq!(
            s.handle_frame(t0, 2, &frame(C, A)),
            Destination::Port(UPLINK)
        );
        // Destination behind the ingress port: filtered.
        assert_eq!(s.handle_frame(t0, 2, &frame(A, A)), Destination::Nowhere);
        assert_eq!(s.status().filtered, 1);
        assert_eq!(s.status().ports[2].macs, 1);
    }

    #[test]
    fn aging_moves_and_port_down() {
        let t0 = Instant::now();
        let mut s = four_ports(t0);
        s.handle_frame(t0, 2, &frame(BCAST, A));
        assert_eq!(s.handle_frame(t0, 1, &frame(A, B)), Destination::Port(2));
        // A moves to VM 2's port.
        s.handle_frame(t0, 3, &frame(BCAST, A));
        assert_eq!(s.handle_frame(t0, 1, &frame(A, B)), Destination::Port(3));
        // Aged out: flooded again, and swept from the table.
        let later = t0 + MAC_AGING + Duration::from_secs(1);
        assert_eq!(
            s.handle_frame(later, 1, &frame(A, B)),
            Destination::Flood { except: 1 }
        );
        s.handle_timeout(later);
        assert_eq!(s.status().macs, 1); // only B, just learned
        // A port going down forgets its MACs and leaves floods.
        s.handle_frame(later, 3, &frame(BCAST, A));
        s.set_up(3, false);
        assert_eq!(
            s.handle_frame(later, 1, &frame(A, B)),
            Destination::Flood { except: 1 }
        );
        assert_eq!(s.flood_ports(1).collect::<Vec<_>>(), vec![0, 2]);
        assert_eq!(s.status().ports[3].counters.disconnects, 1);
        // Multicast sources are never learned; runts are dropped and counted.
        s.handle_frame(later, 2, &frame(A, [3, 0, 0, 0, 0, 1]));
        assert_eq!(s.status().macs, 1);
        assert_eq!(s.handle_frame(later, 2, &[0u8; 10]), Destination::Nowhere);
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
            Destination::Flood { except: 1 }
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
        let mut s = LocalSwitch::new(t0, 1400, false);
        let tap = s.add_port(PortKind::Tap, "tapmesh0", 1400);
        s.set_up(tap, true);
        assert_eq!(
            s.handle_frame(t0, tap, &frame(A, B)),
            Destination::Port(UPLINK)
        );
        assert_eq!(
            s.handle_frame(t0, UPLINK, &frame(B, A)),
            Destination::Port(tap)
        );
        assert_eq!(s.status().macs, 0);
    }

    #[test]
    fn fits_by_length_or_segment_size() {
        let t0 = Instant::now();
        let s = four_ports(t0);
        let mut f = frame(A, B);
        f.resize(1414, 0);
        assert!(s.fits(1, Format::Plain, &f));
        f.push(0);
        assert!(!s.fits(1, Format::Plain, &f));
        assert!(s.fits(2, Format::Plain, &f));
        // A super-frame: its segment size counts, not its length.
        let mut v = vec![0u8; VNET_HDR_LEN];
        v[1] = vnet::GSO_TCPV4;
        v[4..6].copy_from_slice(&1400u16.to_le_bytes());
        v.extend_from_slice(&[0u8; 30000]);
        assert!(s.fits(1, Format::Vnet, &v));
        v[4..6].copy_from_slice(&1401u16.to_le_bytes());
        assert!(!s.fits(1, Format::Vnet, &v));
        assert!(!s.fits(1, Format::Vnet, &v[..4]));
    }
}
