//! [`UserHost`]: one smoltcp interface and its TCP sockets as a sans-IO
//! state machine. See the module doc of [`crate::userhost`] for the why.
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp::{self, RecvError, State};
use smoltcp::wire::{EthernetAddress, IpCidr};

use super::config::HostConfig;
use super::device::{ETHERNET_HEADER_LEN, QueueDevice};

/// Listening sockets kept per forward (fewer when the connection limit is
/// near): that many clients can be in the handshake at once.
pub const LISTENERS_PER_FORWARD: usize = 4;
/// Receive and send buffer of each TCP socket. With the window scale option
/// this is also the window: 64 KiB per connection each way.
pub const SOCKET_BUFFER: usize = 64 * 1024;
/// Frames waiting in each direction of the in-memory device.
pub const FRAME_QUEUE: usize = 256;
/// How long a connection may wait for the shell to open the local side
/// before it is refused (RST).
pub const ACCEPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Keep-alive probe interval on idle connections, and how long an
/// unanswered peer is given before the connection is aborted.
pub const KEEP_ALIVE: Duration = Duration::from_secs(30);
/// See [`KEEP_ALIVE`].
pub const PEER_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a client has, after its SYN-ACK went out, to complete the
/// handshake (its ACK). A real client answers within a round trip, or
/// after a SYN-ACK retransmission (smoltcp's first RTO is 1 s); a SYN from a
/// spoofed address never does, and holds a local connection and a
/// connection slot until this passes (it was [`PEER_TIMEOUT`], 120 s). Then
/// the connection is dropped without a RST (the address is likely forged).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections of one forward in the handshake at once (a SYN arrived,
/// the handshake is not complete), at most its `max-connections`. A new
/// SYN beyond this displaces the oldest: a flood of spoofed SYNs then holds
/// this many slots and local connections, never the whole forward, and a
/// real client's SYN still gets in (it completes its handshake unless this
/// many more SYNs arrive within its round trip).
pub const HALF_OPEN_PER_FORWARD: usize = 8;
/// Connections in the handshake at once on one host, all forwards; the
/// oldest is displaced beyond this.
pub const HALF_OPEN_PER_HOST: usize = 32;
/// How long an ended connection waits for the shell to read what the
/// client sent last (the local side may be slow to take it).
pub const LINGER: Duration = Duration::from_secs(60);

/// One TCP connection through a forward, for the life of its socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(u64);

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "c{}", self.0)
    }
}

/// What the shell must do, drained with [`UserHost::poll_event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostEvent {
    /// A client's SYN arrived on a forwarded port. Open a connection to `to`
    /// and answer with [`UserHost::accept`] (the SYN-ACK goes out then) or
    /// [`UserHost::refuse`] (the client gets a RST, as from a closed port).
    Connect {
        /// The connection.
        conn: ConnId,
        /// The forward's local address.
        to: SocketAddr,
    },
    /// The connection is gone: drop the local side. `reset` if it did not
    /// end with both sides closing (RST, refused, timed out).
    Closed {
        /// The connection.
        conn: ConnId,
        /// It ended abnormally.
        reset: bool,
    },
}

/// What [`UserHost::recv`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recv {
    /// This many bytes were copied out.
    Data(usize),
    /// Nothing buffered now; more may come.
    Empty,
    /// The client closed its sending side and everything before was read:
    /// shut down the local side's write half.
    Finished,
    /// The connection is gone or was reset.
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the shell to open the local side.
    Pending {
        deadline: Instant,
    },
    Open,
}

#[derive(Debug)]
struct Conn {
    handle: SocketHandle,
    forward: usize,
    phase: Phase,
    /// The shell closed our sending side (FIN queued).
    local_closed: bool,
    /// The client's FIN was handed to the shell.
    remote_finished: bool,
    /// We aborted it (refused, timed out, or the local side failed).
    aborted: bool,
    /// When the socket ended with data or a FIN still unread.
    ended_at: Option<Instant>,
    /// When the SYN-ACK went out (the shell accepted), while the client has
    /// not completed the handshake; `None` before and after.
    synack_at: Option<Instant>,
    /// The client completed the handshake.
    established: bool,
}

impl Conn {
    /// In the handshake: a SYN arrived, no ACK yet, not being torn down.
    fn is_half_open(&self) -> bool {
        !self.established && !self.aborted
    }
}

#[derive(Debug)]
struct ForwardState {
    port: u16,
    to: SocketAddr,
    max_connections: usize,
    listeners: Vec<SocketHandle>,
    active: usize,
}

/// Counters for status and metrics.
#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize)]
pub struct HostCounters {
    /// Frames handed to the host.
    pub rx_frames: u64,
    /// Frames the host sent.
    pub tx_frames: u64,
    /// Frames longer than the host's MTU, dropped.
    pub oversize_drops: u64,
    /// Frames dropped because the host's receive queue was full.
    pub queue_drops: u64,
    /// Connections opened to local services.
    pub connections_accepted: u64,
    /// Connections refused (local side failed to open, or too slow).
    pub connections_refused: u64,
    /// Retransmitted SYNs a spare listener caught (answered by the first
    /// socket instead).
    pub duplicate_syns: u64,
    /// Connections in the handshake displaced by newer SYNs
    /// ([`HALF_OPEN_PER_FORWARD`], [`HALF_OPEN_PER_HOST`]).
    pub half_open_dropped: u64,
    /// Connections whose client did not complete the handshake within
    /// [`HANDSHAKE_TIMEOUT`] of the SYN-ACK.
    pub handshake_timeouts: u64,
}

/// A snapshot for `status`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct HostStatus {
    /// The host's MAC.
    pub mac: String,
    /// Its addresses.
    pub addresses: Vec<String>,
    /// Open connections (all forwards).
    pub connections: usize,
    /// Counters.
    #[serde(flatten)]
    pub counters: HostCounters,
}

/// A userspace host on the LAN: answers ARP, neighbour discovery and ping
/// on its addresses, and accepts TCP connections on forwarded ports whose
/// data the shell splices to local sockets.
///
/// Inputs: [`handle_frame`](Self::handle_frame) for each frame the local
/// switch delivers to it, [`handle_timeout`](Self::handle_timeout) when
/// [`poll_timeout`](Self::poll_timeout) passes, and the connection calls
/// ([`accept`](Self::accept), [`recv`](Self::recv), [`send`](Self::send),
/// [`close`](Self::close), ...). Outputs: frames from
/// [`poll_frame`](Self::poll_frame) and events from
/// [`poll_event`](Self::poll_event). Every input that takes `now` runs the
/// stack, so frames and events are ready right after it.
pub struct UserHost {
    iface: Interface,
    device: QueueDevice,
    sockets: SocketSet<'static>,
    forwards: Vec<ForwardState>,
    conns: BTreeMap<ConnId, Conn>,
    next_conn: u64,
    events: VecDeque<HostEvent>,
    /// smoltcp counts time from here.
    epoch: Instant,
    now: Instant,
    mac: [u8; 6],
    mtu: usize,
    counters: HostCounters,
}

impl std::fmt::Debug for UserHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserHost")
            .field("mac", &EthernetAddress(self.mac))
            .field("addresses", &self.iface.ip_addrs())
            .field("connections", &self.conns.len())
            .finish_non_exhaustive()
    }
}

impl UserHost {
    /// A host with `cfg`'s addresses and forwards. `seed` feeds smoltcp's
    /// generator (TCP initial sequence numbers, ports).
    pub fn new(cfg: &HostConfig, now: Instant, seed: u64) -> UserHost {
        let mut device = QueueDevice::new(cfg.mtu, FRAME_QUEUE);
        let mut ic = IfaceConfig::new(EthernetAddress(cfg.mac).into());
        ic.random_seed = seed;
        let mut iface = Interface::new(ic, &mut device, smol_time(now, now));
        iface.update_ip_addrs(|addrs| {
            for a in &cfg.addresses {
                // The config allows at most as many as smoltcp has room for.
                let _ = addrs.push(IpCidr::new(a.addr.into(), a.prefix));
            }
        });
        let mut host = UserHost {
            iface,
            device,
            sockets: SocketSet::new(Vec::new()),
            forwards: cfg
                .forwards
                .iter()
                .map(|f| ForwardState {
                    port: f.port,
                    to: f.to,
                    max_connections: f.max_connections,
                    listeners: Vec::new(),
                    active: 0,
                })
                .collect(),
            conns: BTreeMap::new(),
            next_conn: 0,
            events: VecDeque::new(),
            epoch: now,
            now,
            mac: cfg.mac,
            mtu: cfg.mtu,
            counters: HostCounters::default(),
        };
        for i in 0..host.forwards.len() {
            host.top_up_listeners(i);
        }
        host
    }

    /// The host's MAC.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// The counters.
    pub fn counters(&self) -> HostCounters {
        self.counters
    }

    /// A snapshot for `status`.
    pub fn status(&self) -> HostStatus {
        HostStatus {
            mac: self
                .mac
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":"),
            addresses: self
                .iface
                .ip_addrs()
                .iter()
                .map(|c| c.to_string())
                .collect(),
            connections: self.conns.len(),
            counters: self.counters,
        }
    }

    /// A frame from the LAN (any frame: the host ignores what is not for
    /// its MAC, broadcast or multicast).
    pub fn handle_frame(&mut self, now: Instant, frame: &[u8]) {
        self.counters.rx_frames += 1;
        if frame.len() > self.mtu + ETHERNET_HEADER_LEN {
            self.counters.oversize_drops += 1;
            return;
        }
        if !self.device.push_rx(frame) {
            self.counters.queue_drops += 1;
        }
        self.run(now);
    }

    /// The next frame the host sends, if any. Call until `None` after every
    /// input; if frames were waiting, [`poll_timeout`](Self::poll_timeout)
    /// then asks for a [`handle_timeout`](Self::handle_timeout) at once so
    /// the stack can send what the full queue held back.
    pub fn poll_frame(&mut self) -> Option<Vec<u8>> {
        let f = self.device.pop_tx()?;
        self.counters.tx_frames += 1;
        Some(f)
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next (may be
    /// in the past: at once). `None`: only when something arrives.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        let smol = self
            .iface
            .poll_at(smol_time(self.epoch, self.now), &self.sockets)
            .map(|t| self.epoch + Duration::from_micros(t.total_micros().max(0) as u64));
        let pending = self
            .conns
            .values()
            .filter_map(|c| match c.phase {
                Phase::Pending { deadline } if !c.aborted => Some(deadline),
                Phase::Open if c.is_half_open() => c.synack_at.map(|t| t + HANDSHAKE_TIMEOUT),
                Phase::Pending { .. } | Phase::Open => None,
            })
            .min();
        [smol, pending].into_iter().flatten().min()
    }

    /// Timers: retransmissions, delayed ACKs, keep-alives, accept deadlines.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.run(now);
    }

    /// The next event for the shell.
    pub fn poll_event(&mut self) -> Option<HostEvent> {
        self.events.pop_front()
    }

    /// The local side of `conn` is open: let the client's handshake finish.
    pub fn accept(&mut self, now: Instant, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.phase != Phase::Open {
            c.phase = Phase::Open;
            c.synack_at = Some(self.now.max(now));
            self.counters.connections_accepted += 1;
            self.sockets
                .get_mut::<tcp::Socket>(c.handle)
                .pause_synack(false);
        }
        self.run(now);
    }

    /// The local side of `conn` could not be opened: the client gets a RST.
    pub fn refuse(&mut self, now: Instant, conn: ConnId) {
        if self.conns.contains_key(&conn) {
            self.counters.connections_refused += 1;
        }
        self.abort(now, conn);
    }

    /// Copy data the client sent on `conn` into `buf`.
    pub fn recv(&mut self, now: Instant, conn: ConnId, buf: &mut [u8]) -> Recv {
        let Some(c) = self.conns.get_mut(&conn) else {
            return Recv::Closed;
        };
        let s = self.sockets.get_mut::<tcp::Socket>(c.handle);
        let r = match s.recv_slice(buf) {
            Ok(0) => Recv::Empty,
            Ok(n) => Recv::Data(n),
            Err(RecvError::Finished) => {
                c.remote_finished = true;
                Recv::Finished
            }
            // Not yet established (SYN-ACK held or in flight) or gone.
            Err(RecvError::InvalidState) => match s.state() {
                State::SynReceived | State::Listen => Recv::Empty,
                _ => Recv::Closed,
            },
        };
        if matches!(r, Recv::Data(_)) {
            // The window opened: tell the client.
            self.run(now);
        }
        r
    }

    /// How many bytes [`send`](Self::send) on `conn` would take now.
    pub fn send_space(&self, conn: ConnId) -> usize {
        let Some(c) = self.conns.get(&conn) else {
            return 0;
        };
        let s = self.sockets.get::<tcp::Socket>(c.handle);
        if c.local_closed || !s.may_send() {
            return 0;
        }
        s.send_capacity() - s.send_queue()
    }

    /// Queue data from the local side to the client; returns how much was
    /// taken (at most [`send_space`](Self::send_space)).
    pub fn send(&mut self, now: Instant, conn: ConnId, data: &[u8]) -> usize {
        let Some(c) = self.conns.get(&conn) else {
            return 0;
        };
        if c.local_closed {
            return 0;
        }
        let n = self
            .sockets
            .get_mut::<tcp::Socket>(c.handle)
            .send_slice(data)
            .unwrap_or(0);
        if n > 0 {
            self.run(now);
        }
        n
    }

    /// The local side closed its sending side: send a FIN after the data
    /// queued before it.
    pub fn close(&mut self, now: Instant, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.local_closed = true;
        self.sockets.get_mut::<tcp::Socket>(c.handle).close();
        self.run(now);
    }

    /// The local side failed: reset the client's connection.
    pub fn abort(&mut self, now: Instant, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.aborted = true;
        self.sockets.get_mut::<tcp::Socket>(c.handle).abort();
        self.run(now);
    }

    /// Connections open now.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Run the stack: ingress, egress, then connection bookkeeping, and
    /// once more if the bookkeeping changed a socket (a RST to send).
    fn run(&mut self, now: Instant) {
        self.now = self.now.max(now);
        for _ in 0..2 {
            let t = smol_time(self.epoch, self.now);
            self.iface.poll(t, &mut self.device, &mut self.sockets);
            if !self.maintain() {
                break;
            }
        }
    }

    /// New connections out of the listeners, finished ones out of the set,
    /// expired accepts refused. Returns whether a socket needs a poll.
    fn maintain(&mut self) -> bool {
        let mut changed = false;
        for i in 0..self.forwards.len() {
            let mut k = 0;
            while k < self.forwards[i].listeners.len() {
                let h = self.forwards[i].listeners[k];
                let s = self.sockets.get::<tcp::Socket>(h);
                if s.state() == State::Listen {
                    k += 1;
                    continue;
                }
                self.forwards[i].listeners.swap_remove(k);
                let tuple = (s.local_endpoint(), s.remote_endpoint());
                let duplicate = tuple.1.is_some()
                    && self.conns.values().any(|c| {
                        let o = self.sockets.get::<tcp::Socket>(c.handle);
                        (o.local_endpoint(), o.remote_endpoint()) == tuple
                    });
                if duplicate || tuple.1.is_none() {
                    // A retransmitted SYN a spare listener took while the
                    // first socket held its SYN-ACK: forget this copy
                    // without a word (the first socket answers).
                    if duplicate {
                        self.counters.duplicate_syns += 1;
                    }
                    self.sockets.remove(h);
                } else {
                    let id = ConnId(self.next_conn);
                    self.next_conn += 1;
                    self.conns.insert(
                        id,
                        Conn {
                            handle: h,
                            forward: i,
                            phase: Phase::Pending {
                                deadline: self.now + ACCEPT_TIMEOUT,
                            },
                            local_closed: false,
                            remote_finished: false,
                            aborted: false,
                            ended_at: None,
                            synack_at: None,
                            established: false,
                        },
                    );
                    self.forwards[i].active += 1;
                    self.events.push_back(HostEvent::Connect {
                        conn: id,
                        to: self.forwards[i].to,
                    });
                    self.bound_half_open(i);
                }
                self.top_up_listeners(i);
            }
        }
        let mut gone = Vec::new();
        for (&id, c) in &mut self.conns {
            let s = self.sockets.get_mut::<tcp::Socket>(c.handle);
            if !c.established && !matches!(s.state(), State::SynReceived | State::Listen) {
                c.established = true;
                c.synack_at = None;
            }
            if c.is_half_open()
                && c.synack_at
                    .is_some_and(|t| self.now >= t + HANDSHAKE_TIMEOUT)
            {
                // No RST: the SYN's address is likely forged.
                self.counters.handshake_timeouts += 1;
                gone.push((id, true));
                continue;
            }
            if let Phase::Pending { deadline } = c.phase
                && self.now >= deadline
                && !c.aborted
            {
                c.aborted = true;
                self.counters.connections_refused += 1;
                s.abort();
                changed = true;
                continue;
            }
            let state = s.state();
            let ended = state == State::TimeWait
                // Closed: after an abort once the RST went out, after a
                // client's RST or the last ACK at once (smoltcp then
                // forgets the peer).
                || (state == State::Closed && s.remote_endpoint().is_none());
            let reset = if state == State::Listen {
                // A RST in SYN-RECEIVED puts the socket back to listening:
                // the client gave up before the local side answered.
                Some(true)
            } else if !ended {
                None
            } else if c.aborted {
                Some(true)
            } else if c.remote_finished {
                Some(!c.local_closed)
            } else if s.recv_queue() == 0
                && !matches!(s.recv_slice(&mut []), Err(RecvError::Finished))
            {
                // Nothing left to read and no FIN: the client reset it.
                Some(true)
            } else {
                // The shell still has data or the FIN to read; it has
                // LINGER to do so.
                let since = *c.ended_at.get_or_insert(self.now);
                (self.now >= since + LINGER).then_some(true)
            };
            if let Some(reset) = reset {
                gone.push((id, reset));
            }
        }
        for (id, reset) in gone {
            if let Some(c) = self.conns.remove(&id) {
                self.sockets.remove(c.handle);
                self.forwards[c.forward].active -= 1;
                self.events.push_back(HostEvent::Closed { conn: id, reset });
                self.top_up_listeners(c.forward);
            }
        }
        changed
    }

    /// Keep the connections in the handshake within
    /// [`HALF_OPEN_PER_FORWARD`] (or forward `i`'s `max-connections`, if
    /// lower) and [`HALF_OPEN_PER_HOST`], displacing the oldest (ids grow
    /// with time): forgotten without a RST, the shell told to close its
    /// local side. A real client displaced this way retransmits its SYN.
    fn bound_half_open(&mut self, i: usize) {
        let per_forward = HALF_OPEN_PER_FORWARD.min(self.forwards[i].max_connections);
        loop {
            let half_open = |c: &&Conn| c.is_half_open();
            let in_forward = self
                .conns
                .values()
                .filter(half_open)
                .filter(|c| c.forward == i);
            let victim = if in_forward.count() > per_forward {
                self.conns
                    .iter()
                    .find(|(_, c)| c.is_half_open() && c.forward == i)
            } else if self.conns.values().filter(half_open).count() > HALF_OPEN_PER_HOST {
                self.conns.iter().find(|(_, c)| c.is_half_open())
            } else {
                return;
            };
            let Some((&id, _)) = victim else { return };
            let c = self.conns.remove(&id).expect("found above");
            self.sockets.remove(c.handle);
            self.forwards[c.forward].active -= 1;
            self.counters.half_open_dropped += 1;
            self.events.push_back(HostEvent::Closed {
                conn: id,
                reset: true,
            });
            self.top_up_listeners(c.forward);
        }
    }

    /// Keep [`LISTENERS_PER_FORWARD`] listeners on forward `i`, within its
    /// connection limit.
    fn top_up_listeners(&mut self, i: usize) {
        let f = &mut self.forwards[i];
        let want = LISTENERS_PER_FORWARD.min(f.max_connections.saturating_sub(f.active));
        while f.listeners.len() < want {
            let mut s = tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0; SOCKET_BUFFER]),
                tcp::SocketBuffer::new(vec![0; SOCKET_BUFFER]),
            );
            s.pause_synack(true);
            s.set_keep_alive(Some(KEEP_ALIVE.into()));
            s.set_timeout(Some(PEER_TIMEOUT.into()));
            // Port is never 0 (validated), so listen cannot fail.
            if s.listen(f.port).is_err() {
                return;
            }
            f.listeners.push(self.sockets.add(s));
        }
    }
}

fn smol_time(epoch: Instant, now: Instant) -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_micros(now.saturating_duration_since(epoch).as_micros() as i64)
}
