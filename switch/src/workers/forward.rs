//! A worker forwarding a plain unicast frame itself (see [`super::fastpath`]
//! for what the core publishes): the same checks as the core's
//! `forward_frame` for a VLAN-unaware port, the source already learned at
//! the port it came from, the destination known and eligible; then one seal
//! under the destination's session and one send from the worker's socket.
//! Anything else goes to the core as before.
//!
//! Fragments of a session the fast path covers are reassembled here (one
//! session's datagrams all reach one worker), so an offloaded super-frame
//! is forwarded whole; a payload the worker reassembled but may not forward
//! goes to the core whole, as one datagram it opened.
use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::{Duration, Instant};

use overlay_proto::ethernet::Frame;
use overlay_proto::frag::{FragHeader, Reassembler};
use overlay_proto::vnet::{VNET_HDR_LEN, VnetHdr};
use overlay_proto::wire::{DATA_HEADER_LEN, FLAG_FRAGMENT, FLAG_VNET, Header};

use super::fastpath::{FastNet, FastTable};
use crate::NodeId;
use crate::fabric::MAX_FRAME;
use crate::vlan::{self, PortVlan};

/// How often a worker forgets the reassembly of sessions no longer published.
const PRUNE_EVERY: Duration = Duration::from_secs(1);
/// A worker's fragment ids: top bit set, the worker's number in bits 24..31,
/// so they never meet the core's (counted from 0) or another worker's.
const FRAME_ID_WORKER: u32 = 0x8000_0000;
const FRAME_ID_COUNT: u32 = 0x00ff_ffff;

/// What became of an opened datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Sealed into [`Forwarder::out`]: send it to `to` (`stride`: a batch of
    /// fragments of that size).
    Send {
        /// The destination node's endpoint.
        to: SocketAddr,
        /// The fragments' size, if fragmented.
        stride: Option<usize>,
    },
    /// A fragment, held until its frame is complete.
    Held,
    /// To the core, as it is.
    Core,
    /// A payload reassembled here, to the core: [`Forwarder::whole`] holds it
    /// as one opened datagram.
    CoreWhole,
}

/// One worker's fast-path state: reassembly by session, the sealed output,
/// its fragment ids.
#[derive(Debug)]
pub struct Forwarder {
    reassembly: HashMap<(u32, u32), Reassembler>,
    whole: Vec<u8>,
    out: Vec<u8>,
    frame_id: u32,
    id_base: u32,
    pruned_at: Option<Instant>,
}

impl Forwarder {
    /// The state of worker `worker` (its fragment ids are its own).
    pub fn new(worker: usize) -> Forwarder {
        let id_base = FRAME_ID_WORKER | ((worker as u32 & 0x7f) << 24);
        Forwarder {
            reassembly: HashMap::new(),
            whole: Vec::new(),
            out: Vec::new(),
            frame_id: id_base,
            id_base,
            pruned_at: None,
        }
    }

    /// The datagram(s) the last [`Step::Send`] sealed.
    pub fn out(&self) -> &[u8] {
        &self.out
    }

    /// The datagram the last [`Step::CoreWhole`] built, and where its
    /// payload is.
    pub fn whole(&self) -> (&[u8], Range<usize>) {
        (&self.whole, DATA_HEADER_LEN..self.whole.len())
    }

    /// Decide for the data datagram `d` from `from`, opened in place with
    /// the payload at `range`.
    pub fn step(
        &mut self,
        now: Instant,
        table: &FastTable,
        from: SocketAddr,
        d: &[u8],
        range: Range<usize>,
    ) -> Step {
        // HOT PATH
        self.prune(now, table);
        let h = Header::new_unchecked(d);
        let (network, index, flags) = (h.network_id(), h.receiver_index(), h.flags());
        if range.is_empty() || flags & !(FLAG_FRAGMENT | FLAG_VNET) != 0 {
            return Step::Core;
        }
        let Some(net) = table.get(network) else {
            return Step::Core;
        };
        let Some(&id) = net.by_index.get(&index) else {
            return Step::Core;
        };
        match net.port(id) {
            Some(p) if p.endpoint == from => p.tally.heard(net.base, now),
            _ => return Step::Core,
        }
        if flags & FLAG_FRAGMENT == 0 {
            return self.forward(now, &net, id, flags, &d[range]);
        }
        let Some((fh, chunk)) = FragHeader::parse(&d[range]) else {
            return Step::Core;
        };
        let r = self.reassembly.entry((network, index)).or_default();
        let whole = match r.push(now, fh, chunk) {
            Ok(None) => return Step::Held,
            Ok(Some(whole)) => whole,
            // The core counts what is wrong with it.
            Err(_) => return Step::Core,
        };
        self.whole.clear();
        self.whole.extend_from_slice(&d[..DATA_HEADER_LEN]);
        let mut wh = Header::new_unchecked(&mut self.whole[..]);
        wh.set_common(
            wh.message_type(),
            flags & !FLAG_FRAGMENT,
            wh.hops(),
            network,
        );
        self.whole.extend_from_slice(whole);
        let whole = std::mem::take(&mut self.whole);
        let step = self.forward(
            now,
            &net,
            id,
            flags & !FLAG_FRAGMENT,
            &whole[DATA_HEADER_LEN..],
        );
        self.whole = whole;
        match step {
            Step::Core => Step::CoreWhole,
            s => s,
        }
    }

    /// Forward the payload of node `from` if the fast path may: seal it
    /// into `out` for its destination.
    fn forward(
        &mut self,
        now: Instant,
        net: &FastNet,
        from: NodeId,
        flags: u8,
        payload: &[u8],
    ) -> Step {
        // HOT PATH
        let (vnet, frame) = if flags & FLAG_VNET != 0 {
            let Some(h) = VnetHdr::parse(payload) else {
                return Step::Core;
            };
            let frame = &payload[VNET_HDR_LEN..];
            if !h.fits(frame) {
                return Step::Core;
            }
            (Some(h), frame)
        } else {
            (None, payload)
        };
        let Ok(eth) = Frame::new_checked(frame) else {
            return Step::Core;
        };
        let (dst, src) = (eth.dst(), eth.src());
        if frame.len() > MAX_FRAME
            || vlan::is_truncated_tag(frame)
            || !src.is_valid_source()
            || dst.is_group()
        {
            return Step::Core;
        }
        // Only VLAN-unaware ports are published: their one rule.
        let Some(ing) = PortVlan::Transparent.ingress(frame) else {
            return Step::Core;
        };
        // Learning stays with the core: the source must already be known
        // behind this port, and the destination behind another.
        let learned = net.macs.get(&(ing.vid, src)).map(|e| *e);
        let Some(source) = learned.filter(|e| e.port == from && e.expires_at > now) else {
            return Step::Core;
        };
        let found = net.macs.get(&(ing.vid, dst)).map(|e| *e);
        let Some(to) = found.filter(|e| e.expires_at > now).map(|e| e.port) else {
            return Step::Core;
        };
        if to == from {
            return Step::Core;
        }
        let Some(egress) = net.port(to) else {
            return Step::Core;
        };
        if egress.sender.is_expired(now) {
            return Step::Core;
        }
        let mut hdr = [0u8; VNET_HDR_LEN];
        let (flags, parts): (u8, [&[u8]; 2]) = match vnet {
            Some(h) if egress.accepts_vnet => {
                h.emit(&mut hdr);
                (FLAG_VNET, [&hdr, frame])
            }
            Some(h) if h.is_plain() => (0, [&[], frame]),
            // Cutting a super-frame for a node without offload: the core.
            Some(_) => return Step::Core,
            None => (0, [&[], frame]),
        };
        let sealed = egress.sender.seal_frame(
            flags,
            &parts,
            egress.max_datagram,
            &mut self.frame_id,
            &mut self.out,
        );
        self.frame_id = self.id_base | (self.frame_id & FRAME_ID_COUNT);
        let Ok(stride) = sealed else {
            // The core seals again and counts why it cannot.
            return Step::Core;
        };
        // A refresh, as the core's learning does (only the age changes).
        if source.expires_at < now + net.aging / 2
            && let Some(mut e) = net.macs.get_mut(&(ing.vid, src))
            && e.port == from
        {
            e.expires_at = now + net.aging;
        }
        let len = frame.len() as u64;
        if let Some(p) = net.port(from) {
            p.tally
                .rx_frames
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            p.tally
                .rx_bytes
                .fetch_add(len, std::sync::atomic::Ordering::Relaxed);
        }
        egress
            .tally
            .tx_frames
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        egress
            .tally
            .tx_bytes
            .fetch_add(len, std::sync::atomic::Ordering::Relaxed);
        net.unicast
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Step::Send {
            to: egress.endpoint,
            stride,
        }
    }

    /// Now and then: forget reassembly of sessions no longer published.
    fn prune(&mut self, now: Instant, table: &FastTable) {
        if self.pruned_at.is_some_and(|t| now < t + PRUNE_EVERY) {
            return;
        }
        self.pruned_at = Some(now);
        self.reassembly.retain(|(n, i), r| {
            r.expire(now);
            table
                .get(*n)
                .is_some_and(|net| net.by_index.contains_key(i))
        });
    }
}
