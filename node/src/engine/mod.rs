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

use overlay_proto::handshake::Timestamp;
use overlay_proto::keys::{Psk, PublicKey, StaticSecret};
use overlay_proto::notice::NoticeKey;
use overlay_proto::timers::REKEY_AFTER_TIME;
pub use overlay_proto::transmit::Transmit;
use overlay_proto::transmit::TxQueue;
use overlay_proto::tunnel::{Role, Tunnel, TunnelConfig};
use serde::Serialize;

use crate::counters::{Counters, Drops, Rtt};
use crate::failover::announce::LocalMacs;
use crate::failover::{FailoverCause, Homes, SwitchTarget};
use crate::peers::{IndexOwner, MoveReport, PathEvent, Peers};

mod capture;
mod datagram;
mod deliver;
mod failover;
mod status;
pub(crate) mod tap;
mod uplink;
mod workers;

pub use status::Status;

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
    /// Every switch the node may be homed on, in order of preference
    /// (`[[switch]]`; see [`crate::failover`]). Empty: only the one above.
    /// When not empty its first entry is the one above
    /// ([`NodeConfig::set_switches`]).
    pub switches: Vec<SwitchTarget>,
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
    /// Home the node on `switches` (at least one), in order of preference.
    pub fn set_switches(&mut self, switches: Vec<SwitchTarget>) {
        if let Some(first) = switches.first() {
            self.switch_key = first.key;
            self.switch_addr = first.addr;
        }
        self.switches = switches;
    }

    /// The switches as [`Homes`] takes them: the list, or the one switch.
    fn targets(&self) -> Vec<SwitchTarget> {
        if self.switches.is_empty() {
            vec![SwitchTarget {
                name: self.switch_addr.to_string(),
                key: self.switch_key,
                addr: self.switch_addr,
            }]
        } else {
            self.switches.clone()
        }
    }

    /// When the session with the switch is due for a rekey, by age.
    fn rekey_age(&self) -> Duration {
        self.rekey_after.min(REKEY_AFTER_TIME)
    }

    fn max_datagram(&self) -> usize {
        // Every switch has the first one's address family.
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
    /// The node gave up on its home switch and turned to the next
    /// ([`Node::home`]).
    FailedOver(FailoverCause),
    /// The node announced this many local MACs to its new home switch.
    Announced(usize),
}

/// The node state machine.
#[derive(Debug)]
#[cfg_attr(fuzzing, derive(Clone))]
pub struct Node {
    cfg: NodeConfig,
    /// The session with the home switch (its identity and index table are
    /// the mesh peers': [`Peers::endpoint`]).
    uplink: Tunnel<IndexOwner>,
    /// The switches the node may be homed on, and which one it is.
    homes: Homes,
    /// With several switches: the MACs to announce after a failover.
    local_macs: LocalMacs,
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
    /// Live captures of the direct paths (empty: none running).
    captures: crate::capture::Captures,
}

impl Node {
    /// A node with no session yet. `unix_now` is the wall-clock time (since the
    /// Unix epoch) that corresponds to `now`; handshake timestamps are derived
    /// from it so that they increase across restarts. `seed` feeds the
    /// session-index generator.
    pub fn new(cfg: NodeConfig, now: Instant, unix_now: Duration, seed: u64) -> Node {
        let homes = Homes::new(now, cfg.targets());
        let notice_key = NoticeKey::derive(&cfg.private_key, &homes.home().key).ok();
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
        let uplink = uplink_tunnel(now, &cfg, &homes);
        Node {
            peers,
            destination: homes.home().addr,
            homes,
            local_macs: LocalMacs::default(),
            local_addrs: Vec::new(),
            captures: Default::default(),
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

    /// The home switch's address: where [`handle_tap_frame`](Self::handle_tap_frame)'s datagrams go.
    pub fn switch_addr(&self) -> SocketAddr {
        self.homes.home().addr
    }

    /// The switch the node is homed on (or trying to be).
    pub fn home(&self) -> &SwitchTarget {
        self.homes.home()
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

    /// Run timers: handshake retries, rekey, keepalives, liveness probes,
    /// failover to the next switch.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.homes.is_unanswered(now) {
            self.fail_over(now, FailoverCause::NoAnswer);
        }
        self.with_uplink(now, |t, ctx, to| t.handle_timeout(now, ctx, to));
        self.peers.handle_timeout(now, &mut self.tx);
        self.sweep_captures();
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.uplink.poll_timeout(),
            self.peers.poll_timeout(),
            self.homes.poll_timeout(),
        ]
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
}

/// The uplink to the home switch. With several switches it probes sooner
/// and gives up sooner ([`crate::failover`]), so that a failover fits its
/// budget.
fn uplink_tunnel(now: Instant, cfg: &NodeConfig, homes: &Homes) -> Tunnel<IndexOwner> {
    let base = TunnelConfig {
        rekey_after: cfg.rekey_age(),
        roaming: false,
        ..TunnelConfig::new(Role::Initiator)
    };
    let tcfg = if homes.is_several() {
        TunnelConfig {
            probe_after: crate::failover::PROBE_AFTER,
            probe_timeout: crate::failover::PROBE_TIMEOUT,
            ..base
        }
    } else {
        base
    };
    let home = homes.home();
    let mut uplink = Tunnel::new(now, IndexOwner::Uplink, home.key, tcfg);
    uplink.set_endpoint(Some(home.addr));
    uplink
}
