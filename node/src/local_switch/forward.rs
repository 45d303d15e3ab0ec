//! Forwarding a frame: the ports it goes to, the form it takes at each, and
//! what is counted on the way. The shell only moves the bytes: it gives
//! [`LocalSwitch::forward`] each frame with a callback that queues frames for
//! VM ports and userspace hosts, and writes the frame to the TAP and hands it
//! to the node core as the answer says.
use std::time::Instant;

use overlay_proto::vnet::VNET_HDR_LEN;

use super::{Destination, Format, LocalSwitch, PortId, PortKind, UPLINK};
use crate::counters::DropReason;

/// Whether a frame goes to the two ports the shell serves itself, from
/// [`LocalSwitch::forward`]. The frame goes to both in the ingress port's
/// format; a frame from a VM or host takes the local format first
/// ([`LocalSwitch::encode_local`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Forward {
    /// To the node core, to be sealed for the switch or a mesh peer.
    pub uplink: bool,
    /// To the TAP.
    pub tap: bool,
}

impl LocalSwitch {
    /// Learn from and forward a frame (`payload`, in the format of port
    /// `ingress`). Each VM port and userspace host it goes to gets it as
    /// plain frames no longer than its MTU allows (a super-frame cut into
    /// segments), each given to `queue(port, frame)`, which says whether the
    /// port's queue took it. Returns whether it also goes to the uplink and
    /// the TAP. Counted: frames sent per port (a VM's per segment), and drops
    /// by reason (too large for the TAP or a VM, a full queue, a super-frame
    /// that cannot be cut).
    pub fn forward(
        &mut self,
        now: Instant,
        ingress: PortId,
        payload: &[u8],
        mut queue: impl FnMut(PortId, &[u8]) -> bool,
    ) -> Forward {
        // HOT PATH
        let format = self.format(ingress);
        let mut fwd = Forward::default();
        match self.handle_frame(now, ingress, format.frame(payload)) {
            Destination::Port(p) => self.send(p, format, payload, &mut queue, &mut fwd),
            Destination::Flood { except } => {
                for p in 0..self.ports.len() {
                    if self.floods_to(p, except) {
                        self.send(p, format, payload, &mut queue, &mut fwd);
                    }
                }
            }
            Destination::Nowhere => {}
        }
        fwd
    }

    /// A plain frame from a VM or host in the local format (the uplink's and
    /// the TAP's), written to `out`: its length, or `None` if `out` is too
    /// short (counted).
    pub fn encode_local(&mut self, frame: &[u8], out: &mut [u8]) -> Option<usize> {
        let hdr = match self.format(UPLINK) {
            Format::Plain => 0,
            // All zero: a complete frame.
            Format::Vnet => VNET_HDR_LEN,
        };
        let Some(out) = out.get_mut(..hdr + frame.len()) else {
            self.drops.add(DropReason::Oversize);
            return None;
        };
        out[..hdr].fill(0);
        out[hdr..].copy_from_slice(frame);
        Some(out.len())
    }

    /// The format a port's frames have.
    pub fn format(&self, port: PortId) -> Format {
        match self.kind(port) {
            Some(PortKind::Uplink | PortKind::Tap) if self.offload => Format::Vnet,
            _ => Format::Plain,
        }
    }

    fn send(
        &mut self,
        port: PortId,
        format: Format,
        payload: &[u8],
        queue: &mut impl FnMut(PortId, &[u8]) -> bool,
        fwd: &mut Forward,
    ) {
        let (mut sent, mut full, mut r) = (0, 0, Ok(()));
        match self.kind(port) {
            Some(PortKind::Uplink) => (fwd.uplink, sent) = (true, 1),
            // The TAP's own MTU (the core checks only the largest port's).
            Some(PortKind::Tap) if self.fits(port, format, payload) => (fwd.tap, sent) = (true, 1),
            Some(PortKind::Tap) => r = Err(DropReason::Oversize),
            // VMs and hosts: plain frames, each queued.
            Some(PortKind::Vm | PortKind::Host) if self.is_up(port) => {
                let mut scratch = std::mem::take(&mut self.scratch);
                r = format.plain_frames(
                    payload,
                    |f| self.max_frame(port, f),
                    &mut scratch,
                    |f| match queue(port, f) {
                        true => sent += 1,
                        false => full += 1,
                    },
                );
                self.scratch = scratch;
            }
            _ => {}
        }
        self.count_sent(port, sent);
        self.drops.add_n(DropReason::PortQueueFull, full);
        if let Err(d) = r {
            self.drops.add(d);
        }
    }
}

#[cfg(test)]
mod tests {
    use overlay_proto::vnet::{self, VnetHdr};

    use super::*;

    const A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];
    const BCAST: [u8; 6] = [0xff; 6];

    /// An IPv4 frame from `src` to `dst` with `len - 14` bytes of IP packet.
    fn frame(dst: [u8; 6], src: [u8; 6], len: usize) -> Vec<u8> {
        let mut f = [dst, src].concat();
        f.extend_from_slice(&[0x08, 0x00]);
        f.resize(len, 0);
        f
    }

    /// `f` behind a virtio header.
    fn vnet(h: VnetHdr, f: &[u8]) -> Vec<u8> {
        let mut v = vec![0; VNET_HDR_LEN];
        h.emit(&mut v);
        v.extend_from_slice(f);
        v
    }

    /// Uplink (0, MTU 1500), TAP (1, MTU 1400), VM (2), a VM that is down
    /// (3) and a userspace host (4), VMs and host at MTU 1500.
    fn five_ports(offload: bool) -> LocalSwitch {
        let mut s = LocalSwitch::new(Instant::now(), 1500, offload);
        s.add_port(PortKind::Tap, "tapmesh0", 1400);
        s.add_port(PortKind::Vm, "/run/vm1.sock", 1500);
        s.add_port(PortKind::Vm, "/run/vm2.sock", 1500);
        s.add_port(PortKind::Host, "host[0]", 1500);
        for p in [1, 2, 4] {
            s.set_up(p, true);
        }
        s
    }

    /// Forward and collect what the queues got: (port, frame).
    fn run(
        s: &mut LocalSwitch,
        ingress: PortId,
        payload: &[u8],
    ) -> (Forward, Vec<(PortId, Vec<u8>)>) {
        let mut got = Vec::new();
        let fwd = s.forward(Instant::now(), ingress, payload, |p, f| {
            got.push((p, f.to_vec()));
            true
        });
        (fwd, got)
    }

    fn tx(s: &LocalSwitch) -> Vec<u64> {
        let st = s.status();
        st.ports.iter().map(|p| p.counters.tx_frames).collect()
    }

    #[test]
    fn flood_reaches_every_port_that_is_up_but_the_ingress() {
        let mut s = five_ports(false);
        let f = frame(BCAST, A, 60);
        // From a VM: the uplink, the TAP and the host; not itself, not the
        // VM that is down.
        let (fwd, got) = run(&mut s, 2, &f);
        assert_eq!(
            fwd,
            Forward {
                uplink: true,
                tap: true
            }
        );
        assert_eq!(got, vec![(4, f.clone())]);
        assert_eq!(tx(&s), vec![1, 1, 0, 0, 1]);
        // From the uplink: the TAP and both local ports, not back up.
        let (fwd, got) = run(&mut s, UPLINK, &f);
        assert_eq!(
            fwd,
            Forward {
                uplink: false,
                tap: true
            }
        );
        assert_eq!(got, vec![(2, f.clone()), (4, f.clone())]);
        // Known unicast goes to its one port only.
        s.forward(Instant::now(), 4, &frame(BCAST, B, 60), |_, _| true);
        let (fwd, got) = run(&mut s, 1, &frame(B, A, 60));
        assert_eq!(fwd, Forward::default());
        assert_eq!(got, vec![(4, frame(B, A, 60))]);
        assert_eq!(s.drops().total(), 0);
        // A lone VM port (a wire to the uplink) gets nothing while it is down.
        let mut s = LocalSwitch::new(Instant::now(), 1500, false);
        let vm = s.add_port(PortKind::Vm, "/run/vm1.sock", 1500);
        assert_eq!(run(&mut s, UPLINK, &f).1, vec![]);
        s.set_up(vm, true);
        assert_eq!(run(&mut s, UPLINK, &f).1, vec![(vm, f)]);
    }

    #[test]
    fn frames_over_the_tap_mtu_are_dropped_and_counted() {
        let mut s = five_ports(false);
        // 1500 bytes of IP: fits the uplink and the VMs, not the TAP (1400).
        let (fwd, got) = run(&mut s, UPLINK, &frame(BCAST, A, 1514));
        assert_eq!(
            fwd,
            Forward {
                uplink: false,
                tap: false
            }
        );
        assert_eq!(got.len(), 2);
        assert_eq!(s.drops().get(DropReason::Oversize), 1);
        assert_eq!(tx(&s)[1], 0);
        // 1400 does.
        let (fwd, _) = run(&mut s, UPLINK, &frame(BCAST, A, 1414));
        assert!(fwd.tap);
        assert_eq!(s.drops().get(DropReason::Oversize), 1);
        // Too large for a VM: dropped there, counted, the TAP unaffected.
        let mut s = five_ports(false);
        let (fwd, got) = run(&mut s, 1, &frame(BCAST, A, 1600));
        assert!(fwd.uplink);
        assert!(got.is_empty());
        assert_eq!(s.drops().get(DropReason::Oversize), 2);
    }

    #[test]
    fn a_full_queue_is_counted_per_frame() {
        let mut s = five_ports(false);
        let fwd = s.forward(Instant::now(), 1, &frame(BCAST, A, 60), |p, _| p != 4);
        assert!(fwd.uplink);
        assert_eq!(s.drops().get(DropReason::PortQueueFull), 1);
        assert_eq!(tx(&s), vec![1, 0, 1, 0, 0]);
    }

    #[test]
    fn virtio_headers_per_port_kind() {
        let f = frame(BCAST, A, 60);
        let plain = vnet(VnetHdr::default(), &f);
        // With offload, the TAP and uplink speak the virtio format: the
        // header is stripped for VMs, the payload passes to the TAP as is.
        let mut s = five_ports(true);
        assert_eq!(s.format(UPLINK), Format::Vnet);
        assert_eq!(s.format(1), Format::Vnet);
        assert_eq!(s.format(2), Format::Plain);
        assert_eq!(s.format(4), Format::Plain);
        let (fwd, got) = run(&mut s, UPLINK, &plain);
        assert!(fwd.tap);
        assert_eq!(got, vec![(2, f.clone()), (4, f.clone())]);
        // A frame from a VM gets an all-zero header for the TAP and uplink:
        // a complete frame, the same frame.
        let mut out = [0xaa; 100];
        let n = s.encode_local(&f, &mut out).unwrap();
        assert_eq!(&out[..n], &plain[..]);
        assert!(VnetHdr::parse(&out).unwrap().is_plain());
        assert_eq!(Format::Vnet.frame(&out[..n]), &f[..]);
        assert_eq!(s.encode_local(&f, &mut out[..69]), None);
        // Without offload nothing is added or stripped.
        let mut s = five_ports(false);
        assert_eq!(s.format(1), Format::Plain);
        let n = s.encode_local(&f, &mut out).unwrap();
        assert_eq!(&out[..n], &f[..]);
        let (_, got) = run(&mut s, 1, &f);
        assert_eq!(got[0], (2, f.clone()));
        // No room for the frame: dropped and counted.
        assert_eq!(s.encode_local(&f, &mut out[..59]), None);
        assert_eq!(s.drops().get(DropReason::Oversize), 1);
        assert_eq!(s.encode_local(&f, &mut out[..60]), Some(60));
        // A TAP payload too short for its header is a runt.
        let mut s = five_ports(true);
        let (fwd, got) = run(&mut s, 1, &plain[..8]);
        assert_eq!((fwd, got.len()), (Forward::default(), 0));
        assert_eq!(s.drops().get(DropReason::Runt), 1);
    }

    #[test]
    fn super_frames_are_cut_for_vms_and_counted_per_segment() {
        // A TCP super-frame of 4000 bytes in segments of 1000, with the
        // partial checksum Linux leaves in it.
        let mut f = frame(BCAST, A, 14 + 40 + 4000);
        f[14] = 0x45;
        f[16..18].copy_from_slice(&4040u16.to_be_bytes());
        f[23] = 6;
        f[14 + 20 + 12] = 5 << 4;
        let h = VnetHdr {
            flags: vnet::F_NEEDS_CSUM,
            gso_type: vnet::GSO_TCPV4,
            hdr_len: 54,
            gso_size: 1000,
            csum_start: 34,
            csum_offset: 16,
        };
        let payload = vnet(h, &f);
        let mut s = five_ports(true);
        let (fwd, got) = run(&mut s, 1, &payload);
        // To the uplink as it is; to the VM and host as four plain frames.
        assert_eq!(
            fwd,
            Forward {
                uplink: true,
                tap: false
            }
        );
        assert_eq!(got.len(), 8);
        assert!(got.iter().all(|(_, g)| g.len() == 14 + 40 + 1000));
        assert!(got.iter().all(|(_, g)| g[..14] == f[..14]));
        assert_eq!(tx(&s), vec![1, 0, 4, 0, 4]);
        // The segment size counts against the TAP's MTU, not the length.
        let (fwd, _) = run(&mut s, UPLINK, &payload);
        assert!(fwd.tap);
        let mut big = h;
        big.gso_size = 1401;
        let (fwd, _) = run(&mut s, UPLINK, &vnet(big, &f));
        assert!(!fwd.tap);
        // Segments over a VM's MTU are dropped there (and at the TAP).
        let (_, got) = run(
            &mut s,
            UPLINK,
            &vnet(
                VnetHdr {
                    gso_size: 2000,
                    ..h
                },
                &f,
            ),
        );
        assert!(got.is_empty());
        assert_eq!(s.drops().get(DropReason::Oversize), 1 + 3);
        // A super-frame that cannot be cut.
        let (_, got) = run(&mut s, UPLINK, &vnet(h, &f[..40]));
        assert!(got.is_empty());
        assert_eq!(s.drops().get(DropReason::Segment), 2);
    }
}
