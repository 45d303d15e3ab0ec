//! The node's sans-IO core: one session with the switch, kept alive, rekeyed
//! and re-established by itself.
//!
//! Inputs: [`Node::handle_tap_frame`] for each frame read from the TAP,
//! [`Node::handle_datagram`] for each UDP datagram, [`Node::handle_timeout`]
//! when [`Node::poll_timeout`]'s deadline passes. Outputs: the datagram
//! `handle_tap_frame` sealed in place, the frame range `handle_datagram`
//! decrypted in place, and control datagrams from [`Node::poll_transmit`].
//!
//! The session with the switch is an [`overlay_proto::tunnel::Tunnel`] in
//! the initiator role; this module decides what goes through it.
//!
//! Liveness: the node is the initiator. It rekeys every 120 s, or every
//! [`NodeConfig::rekey_after`] if that is shorter (the old session keeps
//! working until the new one is up), sends a keepalive after 10 s
//! without sending, and the switch answers every keepalive. If the node sent
//! something and heard nothing for [`PROBE_AFTER`](overlay_proto::timers::PROBE_AFTER), it sends a probe; if that
//! stays unanswered for [`PROBE_TIMEOUT`](overlay_proto::timers::PROBE_TIMEOUT) the session is declared lost and a
//! new handshake starts at once, retried with doubling backoff capped at 5 s.
//! So a restarted switch is noticed within about 5 s and traffic resumes
//! within one retry interval of the switch coming back.
use std::net::SocketAddr;
use std::ops::Range;
use std::time::{Duration, Instant};

use overlay_proto::control::Control;
use overlay_proto::ethernet::{self, Frame};
use overlay_proto::handshake::Timestamp;
use overlay_proto::keys::{Psk, PublicKey, StaticSecret};
use overlay_proto::notice::NoticeKey;
use overlay_proto::timers::REKEY_AFTER_TIME;
pub use overlay_proto::transmit::Transmit;
use overlay_proto::transmit::TxQueue;
use overlay_proto::tunnel::{Ctx, Role, Sealed, Tunnel, TunnelConfig, TunnelEvent};
use overlay_proto::vlan::{self, Ingress};
use overlay_proto::vnet::{self, VNET_HDR_LEN, VnetHdr};
use overlay_proto::wire::{
    DATA_HEADER_LEN, FLAG_CONTROL, FLAG_FRAGMENT, FLAG_RELAYED, FLAG_VNET, Header, MessageType,
};
use serde::Serialize;

use crate::peers::{IndexOwner, MacCounters, MoveReport, PathEvent, PeerStatus, Peers};
use crate::stats::{Counters, DropReason, Drops, Rtt};

/// Control datagrams (handshakes, keepalives, peer messages) queued before
/// new ones are dropped.
const TX_QUEUE_LIMIT: usize = 256;

/// Everything the core needs, already validated.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's static key.
    pub private_key: StaticSecret,
    /// The switch's public key.
    pub switch_key: PublicKey,
    /// The switch's underlay address.
    pub switch_addr: SocketAddr,
    /// The network secret (all zeros if none).
    pub psk: Psk,
    /// The network id.
    pub network_id: u32,
    /// The TAP MTU: frames longer than MTU + Ethernet header (+ one VLAN tag)
    /// are dropped in both directions.
    pub mtu: usize,
    /// The TAP was opened with a virtio-net header (offloads): frames read
    /// from it start with one, frames written to it must, and the node tells
    /// the switch it accepts offloaded super-frames.
    pub offload: bool,
    /// The underlay MTU: datagrams are kept within it (larger frames travel
    /// as fragments).
    pub underlay_mtu: usize,
    /// Rekey the session with the switch once it is this old
    /// (`rekey-after-secs`); never later than [`REKEY_AFTER_TIME`].
    pub rekey_after: Duration,
    /// Mesh mode: how long peers the switch vouched for keep working after
    /// the switch was last heard (`vouch-lifetime-secs`, default
    /// [`DEFAULT_VOUCH_LIFETIME`](crate::peers::DEFAULT_VOUCH_LIFETIME)).
    pub vouch_lifetime: Duration,
}

impl NodeConfig {
    /// When the session with the switch is due for a rekey, by age.
    fn rekey_age(&self) -> Duration {
        self.rekey_after.min(REKEY_AFTER_TIME)
    }

    fn max_datagram(&self) -> usize {
        let ip = if self.switch_addr.is_ipv4() { 20 } else { 40 };
        self.underlay_mtu.saturating_sub(ip + 8)
    }
}

/// Where the frame to write to the TAP is, after [`Node::handle_datagram`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TapWrite {
    /// In the datagram buffer that was passed in.
    InPlace(Range<usize>),
    /// In the node's reassembly buffer: [`Node::reassembled`].
    Reassembled(Range<usize>),
}

/// The state of the link to the switch, for status and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// No session; a handshake is in flight or scheduled.
    #[default]
    Handshaking,
    /// A session is up.
    Established,
}

/// Something for the log, drained with [`Node::poll_event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The first session (or the first after a loss) is up.
    Connected,
    /// A rekey finished.
    Rekeyed,
    /// The switch stopped answering; reconnecting.
    Lost,
    /// The switch announced a restart; reconnecting.
    SwitchRestarted,
}

/// The node state machine.
#[derive(Debug)]
#[cfg_attr(fuzzing, derive(Clone))]
pub struct Node {
    cfg: NodeConfig,
    /// The session with the switch (its identity and index table are the
    /// mesh peers': [`Peers::endpoint`]).
    uplink: Tunnel<IndexOwner>,
    notice_key: Option<NoticeKey>,
    /// Reassembled frames, with room for a virtio header in front.
    scratch: Vec<u8>,
    /// A second such buffer, for a reassembled frame that changes VLAN form.
    vlan_scratch: Vec<u8>,
    /// Only restart notices newer than this are accepted (starts at our own start).
    last_notice: Timestamp,
    tx: TxQueue,
    drops: Drops,
    counters: Counters,
    events: Vec<Event>,
    /// When the latest keepalive went out, until its answer comes (RTT).
    keepalive_sent_at: Option<Instant>,
    rtt: Rtt,
    /// Mesh mode: direct sessions with other nodes.
    peers: Peers,
    /// Where the datagram [`Node::handle_tap_frame`] last returned goes.
    destination: SocketAddr,
    /// Our underlay addresses, announced to the switch in mesh mode.
    local_addrs: Vec<SocketAddr>,
}

impl Node {
    /// A node with no session yet. `unix_now` is the wall-clock time (since the
    /// Unix epoch) that corresponds to `now`; handshake timestamps are derived
    /// from it so that they increase across restarts. `seed` feeds the
    /// session-index generator.
    pub fn new(cfg: NodeConfig, now: Instant, unix_now: Duration, seed: u64) -> Node {
        let notice_key = NoticeKey::derive(&cfg.private_key, &cfg.switch_key).ok();
        let started = Timestamp::from_unix(unix_now.as_secs(), unix_now.subsec_nanos());
        let mut peers = Peers::new(
            cfg.private_key.clone(),
            cfg.psk.clone(),
            cfg.network_id,
            cfg.offload,
            (now, unix_now),
            seed,
        );
        peers.set_vouch_lifetime(cfg.vouch_lifetime);
        let mut uplink = Tunnel::new(
            now,
            IndexOwner::Uplink,
            cfg.switch_key,
            TunnelConfig {
                rekey_after: cfg.rekey_age(),
                roaming: false,
                ..TunnelConfig::new(Role::Initiator)
            },
        );
        uplink.set_endpoint(Some(cfg.switch_addr));
        Node {
            peers,
            destination: cfg.switch_addr,
            local_addrs: Vec::new(),
            uplink,
            notice_key,
            scratch: Vec::new(),
            vlan_scratch: Vec::new(),
            last_notice: started,
            cfg,
            tx: TxQueue::new(TX_QUEUE_LIMIT),
            drops: Drops::default(),
            counters: Counters::default(),
            events: Vec::new(),
            keepalive_sent_at: None,
            rtt: Rtt::default(),
        }
    }

    /// The switch's address: where [`handle_tap_frame`](Self::handle_tap_frame)'s datagrams go.
    pub fn switch_addr(&self) -> SocketAddr {
        self.cfg.switch_addr
    }

    /// Where the datagram the latest [`handle_tap_frame`](Self::handle_tap_frame)
    /// returned goes: the switch, or in mesh mode a peer on a direct path.
    pub fn destination(&self) -> SocketAddr {
        self.destination
    }

    /// Our own underlay addresses (the shell finds them), announced to the
    /// switch in mesh mode so peers behind the same NAT can reach us.
    pub fn set_local_addrs(&mut self, addrs: Vec<SocketAddr>) {
        self.local_addrs = addrs;
    }

    /// The mesh peers: paths, sessions, learned MACs.
    pub fn peers(&self) -> &Peers {
        &self.peers
    }

    /// The next mesh path change, for the log.
    pub fn poll_path_event(&mut self) -> Option<PathEvent> {
        self.peers.poll_event()
    }

    /// A summary of MAC moves between mesh peers, for the log, at most
    /// every [`MOVE_LOG_EVERY`](crate::peers::MOVE_LOG_EVERY).
    pub fn poll_mac_moves(&mut self, now: Instant) -> Option<MoveReport> {
        self.peers.poll_move_report(now)
    }

    /// Up or not.
    pub fn link_state(&self) -> LinkState {
        if self.uplink.current().is_some() {
            LinkState::Established
        } else {
            LinkState::Handshaking
        }
    }

    /// Seal a frame read from the TAP for the switch. What the TAP gave (the
    /// frame, after a virtio header if `offload`) is at
    /// `buf[DATA_HEADER_LEN..DATA_HEADER_LEN + frame_len]` and `buf` has
    /// [`DATA_OVERHEAD`](overlay_proto::wire::DATA_OVERHEAD) bytes more room. Returns where in `buf` the sealed
    /// datagram is (send it to [`switch_addr`](Self::switch_addr)), `None` if
    /// the frame was too large for one datagram and its fragments wait in
    /// [`poll_transmit`](Self::poll_transmit), or why it was dropped (counted).
    pub fn handle_tap_frame(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        frame_len: usize,
    ) -> Result<Option<Range<usize>>, DropReason> {
        // HOT PATH
        let r = self.tap_frame(now, buf, frame_len);
        if let Err(d) = r {
            self.drops.add(d);
        }
        r
    }

    fn tap_frame(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        len: usize,
    ) -> Result<Option<Range<usize>>, DropReason> {
        self.counters.tap_rx_frames += 1;
        self.counters.tap_rx_bytes += len as u64;
        let payload = &buf[DATA_HEADER_LEN..DATA_HEADER_LEN + len];
        let (vnet, frame) = self.split_checked(self.cfg.offload, payload)?;
        // A complete ordinary frame travels without its virtio header.
        let (flags, start) = match vnet {
            Some(h) if !h.is_plain() => (FLAG_VNET, 0),
            Some(_) => (0, VNET_HDR_LEN),
            None => (0, 0),
        };
        let plen = len - start;
        let max = self.cfg.max_datagram();
        self.destination = self.cfg.switch_addr;
        if self.peers.is_enabled() {
            // Mesh: known unicast to a peer with a direct path goes straight
            // there; everything else goes to the switch as in central mode.
            if let Ok(f) = Frame::new_checked(frame) {
                self.peers.note_local_mac(now, f.src(), &mut self.tx);
            }
            if let Some(i) = self.peers.route(now, frame, flags & FLAG_VNET != 0) {
                let r =
                    self.peers
                        .seal(now, i, flags, &mut buf[start..], plen, max, &mut self.tx)?;
                self.counters.udp_tx_datagrams += 1;
                return Ok(r.map(|(to, r)| {
                    self.destination = to;
                    r.start + start..r.end + start
                }));
            }
        }
        if !self.uplink.is_up(now) {
            self.with_uplink(now, |t, ctx, to| t.ensure_handshake(now, ctx, to));
            return Err(DropReason::NoSession);
        }
        match self
            .uplink
            .seal(now, flags, &mut buf[start..], plen, max, &mut self.tx)
            .map_err(DropReason::from)?
        {
            Sealed::InPlace(r) => {
                self.counters.udp_tx_datagrams += 1;
                Ok(Some(r.start + start..r.end + start))
            }
            Sealed::Queued(n) => {
                self.counters.udp_tx_datagrams += n as u64;
                Ok(None)
            }
        }
    }

    /// Process one received datagram, decrypting in place. Returns the range of
    /// `buf` holding a frame to write to the TAP, if any.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        buf: &mut [u8],
    ) -> Option<TapWrite> {
        // HOT PATH
        self.counters.udp_rx_datagrams += 1;
        match self.datagram(now, from, buf) {
            Ok(r) => r,
            Err(d) => {
                self.drops.add(d);
                None
            }
        }
    }

    fn datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        buf: &mut [u8],
    ) -> Result<Option<TapWrite>, DropReason> {
        let h = Header::new_checked(&buf[..])?;
        if h.network_id() != self.cfg.network_id {
            return Err(DropReason::UnknownNetwork);
        }
        match h.message_type() {
            MessageType::Data => {}
            MessageType::HandshakeResp => {
                let h = Header::new_checked(&buf[..])?;
                if !self.peers.handle_resp(now, from, &h, &mut self.tx)? {
                    let r = self
                        .uplink
                        .handle_response(now, from, self.peers.endpoint().1, &h);
                    self.uplink_events(now);
                    r.map_err(DropReason::from)?;
                }
                return Ok(None);
            }
            // Only mesh peers initiate to a node.
            MessageType::HandshakeInit => {
                let h = Header::new_checked(&buf[..])?;
                self.peers.handle_init(now, from, &h, &mut self.tx)?;
                return Ok(None);
            }
            MessageType::CookieReply => {
                let h = Header::new_checked(&buf[..])?;
                if !self.peers.handle_cookie_reply(now, &h)? {
                    let r = self.uplink.handle_cookie_reply(now, &h);
                    self.uplink_events(now);
                    r.map_err(DropReason::from)?;
                }
                return Ok(None);
            }
            MessageType::RestartNotice => {
                let h = Header::new_checked(&buf[..])?;
                self.restart_notice(now, &h)?;
                return Ok(None);
            }
            MessageType::Unknown(_) => return Err(DropReason::UnknownType),
        }
        let index = h.receiver_index();
        let flags = h.flags();
        if self.peers.index_owner(index) != Some(IndexOwner::Uplink) {
            let peer = self.peers.lookup(index).ok_or(DropReason::UnknownSession)?;
            let range = self.peers.open(now, from, peer, buf, &mut self.tx)?;
            if range.is_empty() {
                return Ok(None);
            }
            if flags & FLAG_CONTROL != 0 {
                if flags & FLAG_FRAGMENT != 0 {
                    return Err(DropReason::Control);
                }
                let payload = &buf[range];
                self.peers
                    .handle_control(now, peer, payload, &mut self.tx)?;
                return Ok(None);
            }
            return self.deliver(now, Some(peer), flags, buf, range);
        }
        let range = self
            .uplink
            .open(now, from, self.peers.endpoint().1, buf)
            .map_err(DropReason::from)?
            .range;
        self.peers.switch_heard(now);
        if range.is_empty() {
            // The switch sends empty packets only to answer our keepalives.
            if let Some(sent) = self.keepalive_sent_at.take() {
                self.rtt.record(now.saturating_duration_since(sent));
            }
            return Ok(None);
        }
        if flags & FLAG_CONTROL != 0 {
            if flags & FLAG_FRAGMENT != 0 {
                return Err(DropReason::Control);
            }
            return self.switch_control(now, range, buf).map(|()| None);
        }
        if flags & FLAG_RELAYED != 0 {
            self.counters.relayed_rx_frames += 1;
        }
        self.deliver(now, None, flags, buf, range)
    }

    /// A control message from the switch (mesh mode).
    fn switch_control(
        &mut self,
        now: Instant,
        range: Range<usize>,
        buf: &[u8],
    ) -> Result<(), DropReason> {
        match Control::parse(&buf[range]).map_err(|_| DropReason::Control)? {
            Control::Mesh { vlan } => {
                self.peers.enable(vlan);
                self.peers.begin_list();
                let msg = Control::LocalAddrs(self.local_addrs.clone());
                self.send_control(now, &msg);
            }
            Control::PeerUpdate {
                key,
                name,
                endpoints,
                vlan,
            } if self.peers.is_enabled() => self.peers.update(now, key, name, endpoints, vlan),
            Control::PeerGone { key } => self.peers.remove(&key),
            Control::PeerListEnd { count } if self.peers.is_enabled() => {
                self.peers.end_list(now, count)
            }
            Control::MacOwners { key, macs } if self.peers.is_enabled() => {
                self.peers.set_owners(now, key, macs)
            }
            _ => return Err(DropReason::Control),
        }
        Ok(())
    }

    /// Seal a control message for the switch and queue it.
    fn send_control(&mut self, now: Instant, msg: &Control) {
        if self.uplink.current().is_none() {
            return;
        }
        if self.tx.is_full() {
            self.drops.add(DropReason::TxQueueFull);
            return;
        }
        let mut payload = Vec::with_capacity(msg.buffer_len());
        msg.emit(&mut payload);
        let sent = self
            .uplink
            .send(now, FLAG_CONTROL, &[&payload], usize::MAX, &mut self.tx);
        if sent.is_ok() {
            self.counters.udp_tx_datagrams += 1;
        }
    }

    /// A decrypted payload (frame or fragment) from the switch (`peer` is
    /// `None`) or from a mesh peer: check it, reassemble it, admit it by VLAN
    /// and learn its source MAC if a peer sent it, give it our port's VLAN
    /// form, and say where the frame for the TAP is.
    fn deliver(
        &mut self,
        now: Instant,
        peer: Option<usize>,
        flags: u8,
        buf: &mut [u8],
        range: Range<usize>,
    ) -> Result<Option<TapWrite>, DropReason> {
        // HOT PATH
        let vnet = flags & FLAG_VNET != 0;
        if vnet && !self.cfg.offload {
            // We never announced offload support; the switch must not send these.
            return Err(DropReason::Offload);
        }
        // With an offload TAP every frame needs a virtio header in front;
        // an all-zero one means "complete ordinary frame".
        let add_hdr = self.cfg.offload && !vnet;
        if flags & FLAG_FRAGMENT == 0 {
            let ing = self.check_frame(now, peer, vnet, &buf[range.clone()])?;
            if peer.is_none() && flags & FLAG_RELAYED != 0 {
                let skip = if vnet { VNET_HDR_LEN } else { 0 };
                self.peers
                    .note_relayed(now, &buf[range.start + skip..range.end], &mut self.tx);
            }
            if let Some(ing) = ing {
                let mut out = std::mem::take(&mut self.scratch);
                let n = retag(vnet, add_hdr, &buf[range], ing, &mut out);
                self.scratch = out;
                return Ok(Some(TapWrite::Reassembled(0..n)));
            }
            if add_hdr {
                let start = range.start - VNET_HDR_LEN;
                buf[start..range.start].fill(0);
                return Ok(Some(TapWrite::InPlace(start..range.end)));
            }
            return Ok(Some(TapWrite::InPlace(range)));
        }
        let whole = match peer {
            None => self
                .uplink
                .reassemble(now, &buf[range])
                .map_err(|_| DropReason::Fragment),
            Some(p) => self.peers.reassemble(now, p, &buf[range]),
        };
        let Some(whole) = whole? else {
            return Ok(None);
        };
        let skip = if add_hdr { VNET_HDR_LEN } else { 0 };
        self.scratch.clear();
        self.scratch.resize(skip, 0);
        self.scratch.extend_from_slice(whole);
        let mut n = self.scratch.len();
        let payload = std::mem::take(&mut self.scratch);
        let r = self.check_frame(now, peer, vnet, &payload[skip..]);
        self.scratch = payload;
        if let Some(ing) = r? {
            let mut out = std::mem::take(&mut self.vlan_scratch);
            n = retag(vnet, add_hdr, &self.scratch[skip..], ing, &mut out);
            self.vlan_scratch = std::mem::replace(&mut self.scratch, out);
        }
        Ok(Some(TapWrite::Reassembled(0..n)))
    }

    /// The frame of a [`TapWrite::Reassembled`].
    pub fn reassembled(&self) -> &[u8] {
        &self.scratch
    }

    /// Split a payload into its virtio header (if `vnet`) and frame, refusing
    /// runts and frames over the MTU in either direction. A GSO super-frame is
    /// checked by its segment size; others as they are.
    fn split_checked<'p>(
        &self,
        vnet: bool,
        payload: &'p [u8],
    ) -> Result<(Option<VnetHdr>, &'p [u8]), DropReason> {
        let (hdr, frame) = if vnet {
            let h = VnetHdr::parse(payload).ok_or(DropReason::Runt)?;
            (Some(h), &payload[VNET_HDR_LEN..])
        } else {
            (None, payload)
        };
        if frame.len() < ethernet::HEADER_LEN {
            return Err(DropReason::Runt);
        }
        if !vnet::fits_mtu(hdr.as_ref(), frame, self.cfg.mtu) {
            return Err(DropReason::Oversize);
        }
        if hdr.is_some_and(|h| !h.fits(frame)) {
            return Err(DropReason::Offload);
        }
        Ok((hdr, frame))
    }

    /// Check a frame (with its virtio header if `vnet`) about to go to the
    /// TAP; if mesh peer `peer` sent it, admit it by VLAN
    /// ([`Peers::admit`]: `Some` if it must change form); count it.
    fn check_frame(
        &mut self,
        now: Instant,
        peer: Option<usize>,
        vnet: bool,
        payload: &[u8],
    ) -> Result<Option<Ingress>, DropReason> {
        let (_, frame) = self.split_checked(vnet, payload)?;
        let retag = match peer {
            Some(p) => self.peers.admit(now, p, frame)?,
            None => None,
        };
        self.counters.tap_tx_frames += 1;
        self.counters.tap_tx_bytes += frame.len() as u64;
        Ok(retag)
    }

    fn restart_notice(&mut self, now: Instant, h: &Header<&[u8]>) -> Result<(), DropReason> {
        let key = self.notice_key.as_ref().ok_or(DropReason::BadTag)?;
        let ts = key.open(h)?;
        if ts <= self.last_notice {
            return Err(DropReason::Replay);
        }
        self.last_notice = ts;
        self.counters.restart_notices += 1;
        self.events.push(Event::SwitchRestarted);
        // The switch has no session with us any more: start over at once.
        if self.uplink.close(self.peers.endpoint().1) {
            self.counters.sessions_lost += 1;
        }
        self.with_uplink(now, |t, ctx, to| {
            let _ = t.start_handshake(now, ctx, to);
        });
        Ok(())
    }

    /// Run `f` on the uplink with the node's identity, index table and
    /// queue, and the switch as the target of initiations; then act on
    /// what the uplink reports.
    fn with_uplink(
        &mut self,
        now: Instant,
        f: impl FnOnce(&mut Tunnel<IndexOwner>, &mut Ctx<'_, IndexOwner>, &[SocketAddr]),
    ) {
        let (local, indices) = self.peers.endpoint();
        let mut ctx = Ctx {
            local,
            indices,
            tx: &mut self.tx,
        };
        f(&mut self.uplink, &mut ctx, &[self.cfg.switch_addr]);
        self.uplink_events(now);
    }

    /// Count and act on what the uplink reports: sends keepalives and
    /// probes (empty packets the switch answers), confirms new sessions.
    fn uplink_events(&mut self, now: Instant) {
        while let Some(e) = self.uplink.poll_event() {
            match e {
                TunnelEvent::InitiationSent(n) => {
                    self.counters.handshakes_sent += 1;
                    self.counters.udp_tx_datagrams += n as u64;
                }
                TunnelEvent::InitiationFailed(e) => self.drops.add(DropReason::from(e)),
                TunnelEvent::Established { rekey } => {
                    self.counters.handshakes_completed += 1;
                    self.counters.rekeys += u64::from(rekey);
                    self.events.push(if rekey {
                        Event::Rekeyed
                    } else {
                        Event::Connected
                    });
                    // Confirm the session to the switch at once: it keeps
                    // using the old one until it sees a packet under the new one.
                    self.send_keepalive(now);
                }
                TunnelEvent::Lost => {
                    self.counters.sessions_lost += 1;
                    self.events.push(Event::Lost);
                }
                TunnelEvent::CookieStored => self.counters.cookie_replies += 1,
                TunnelEvent::ProbeDue | TunnelEvent::KeepaliveDue => self.send_keepalive(now),
                TunnelEvent::FragmentsExpired(n) => self.drops.add_n(DropReason::Fragment, n),
            }
        }
    }

    fn send_keepalive(&mut self, now: Instant) {
        if self.tx.is_full() {
            self.drops.add(DropReason::TxQueueFull);
            return;
        }
        if self.uplink.send_keepalive(now, &mut self.tx).is_ok() {
            self.counters.keepalives_sent += 1;
            self.keepalive_sent_at = Some(now);
            self.counters.udp_tx_datagrams += 1;
        }
    }

    /// Run timers: handshake retries, rekey, keepalives, liveness probes.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.with_uplink(now, |t, ctx, to| t.handle_timeout(now, ctx, to));
        self.peers.handle_timeout(now, &mut self.tx);
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.uplink.poll_timeout(), self.peers.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    /// The next control datagram to send, if any. Drain after every `handle_*`.
    pub fn poll_transmit(&mut self) -> Option<Transmit<'_>> {
        self.tx.pop()
    }

    /// The next event for the log.
    pub fn poll_event(&mut self) -> Option<Event> {
        if self.events.is_empty() {
            None
        } else {
            Some(self.events.remove(0))
        }
    }

    /// Drop counters.
    pub fn drops(&self) -> &Drops {
        &self.drops
    }

    /// Traffic counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// A snapshot for `status`.
    pub fn status(&self, now: Instant, name: &str) -> Status {
        let ago = |t: Option<Instant>| t.map(|t| now.saturating_duration_since(t).as_secs_f64());
        Status {
            name: name.to_owned(),
            switch: self.cfg.switch_addr.to_string(),
            session: self.link_state(),
            session_age_secs: self.uplink.current().map(|s| s.age(now).as_secs_f64()),
            last_handshake_secs_ago: ago(self.uplink.last_handshake()),
            last_rx_secs_ago: ago(self.uplink.last_rx()),
            rtt_secs: self.rtt.last.map(|d| d.as_secs_f64()),
            rtt_samples: self.rtt.samples,
            rtt_sum_secs: self.rtt.sum.as_secs_f64(),
            drops: self.drops.clone(),
            counters: self.counters.clone(),
            mesh: self.peers.is_enabled(),
            peers: self.peers.status(now),
            peer_macs: self.peers.mac_counters(),
            handshake_guard: self.peers.guard_status(now),
            local: None,
            hosts: Vec::new(),
            reloads: Default::default(),
        }
    }
}

/// Write `payload` (a frame, after its virtio header if `vnet`) into `out`
/// in its other VLAN form ([`vlan::append_other_form`]), behind a virtio
/// header if `vnet` or `add_hdr` (all zero: a complete frame). Returns the
/// length written. `payload` passed [`Node::split_checked`].
fn retag(vnet: bool, add_hdr: bool, payload: &[u8], ing: Ingress, out: &mut Vec<u8>) -> usize {
    out.clear();
    let (hdr, frame) = if vnet {
        (VnetHdr::parse(payload), &payload[VNET_HDR_LEN..])
    } else {
        (None, payload)
    };
    if vnet || add_hdr {
        out.resize(VNET_HDR_LEN, 0);
    }
    if let Some(h) = vlan::append_other_form(frame, ing, hdr, out) {
        h.emit(&mut out[..VNET_HDR_LEN]);
    }
    out.len()
}

/// What `tapmesh-node status` prints.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Status {
    /// The node's name.
    pub name: String,
    /// The switch's address.
    pub switch: String,
    /// The link state.
    pub session: LinkState,
    /// Age of the current session.
    pub session_age_secs: Option<f64>,
    /// Seconds since the last completed handshake.
    pub last_handshake_secs_ago: Option<f64>,
    /// Seconds since anything authentic arrived from the switch.
    pub last_rx_secs_ago: Option<f64>,
    /// The latest round-trip time to the switch (keepalive answered), if any.
    pub rtt_secs: Option<f64>,
    /// Round-trip samples so far.
    pub rtt_samples: u64,
    /// Their sum, in seconds (mean = `rtt_sum_secs / rtt_samples`).
    pub rtt_sum_secs: f64,
    /// Drops by reason.
    pub drops: Drops,
    /// Traffic.
    #[serde(flatten)]
    pub counters: Counters,
    /// The switch runs this network in mesh mode.
    pub mesh: bool,
    /// Mesh peers: path (direct or relayed), endpoint, last handshake, RTT.
    pub peers: Vec<PeerStatus>,
    /// Mesh mode: MAC moves and refused claims, peers dropped for want of
    /// the switch's vouch.
    pub peer_macs: MacCounters,
    /// The flood defence in front of peers' initiations (mesh mode).
    pub handshake_guard: overlay_proto::handshake_guard::GuardStatus,
    /// The local switch: ports (TAP, VMs), MACs (the shell fills it in).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local: Option<crate::local_switch::LocalStatus>,
    /// Userspace hosts: addresses, connections, counters (the shell fills
    /// it in).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<crate::userhost::HostStatus>,
    /// Config reloads applied and refused (the shell fills it in).
    pub reloads: tapmesh_shell::reload::ReloadCounters,
}

#[cfg(test)]
mod retag_tests {
    use super::*;

    fn untagged() -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00];
        f.resize(60, 0x45);
        f
    }

    #[test]
    fn a_tag_added_moves_the_virtio_offsets_and_a_zero_header_stays_zero() {
        let f = untagged();
        let ing = Ingress {
            vid: 10,
            tagged: false,
        };
        let h = VnetHdr {
            csum_start: 34,
            hdr_len: 54,
            ..VnetHdr::default()
        };
        let mut payload = vec![0; VNET_HDR_LEN];
        h.emit(&mut payload);
        payload.extend_from_slice(&f);
        let mut out = Vec::new();
        let n = retag(true, false, &payload, ing, &mut out);
        assert_eq!(n, payload.len() + 4);
        let h2 = VnetHdr::parse(&out).unwrap();
        assert_eq!((h2.csum_start, h2.hdr_len), (38, 58));
        let frame = &out[VNET_HDR_LEN..];
        assert_eq!(vlan::tag_vid(frame), Some(10));
        assert_eq!(&frame[16..], &f[12..]);
        // A plain frame for an offload TAP: an all-zero header in front.
        let n = retag(false, true, &f, ing, &mut out);
        assert_eq!(n, VNET_HDR_LEN + f.len() + 4);
        assert!(out[..VNET_HDR_LEN].iter().all(|b| *b == 0));
        // And back: the tag removed, nothing in front without offload.
        let tagged = out[VNET_HDR_LEN..].to_vec();
        let ing = Ingress {
            vid: 10,
            tagged: true,
        };
        let n = retag(false, false, &tagged, ing, &mut out);
        assert_eq!(&out[..n], &f[..]);
    }
}
