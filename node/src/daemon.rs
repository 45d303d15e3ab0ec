//! The tokio shell around [`Node`] and the [`LocalSwitch`]: one task owns both
//! cores, the TAP (if any) and the UDP socket; VM ports and userspace hosts
//! run in their own tasks ([`vm_port`],
//! [`userhost::shell`]) and exchange frames with this
//! one over channels. Frames (TCP super-frames of up to 64 KB with an offload TAP) are
//! read from the TAP straight into a buffer with header room and sealed in
//! place, or fragmented into one GSO batch; datagrams arrive in recvmmsg/GRO
//! batches, are decrypted in place, and the frame is written to the TAP. Each
//! frame goes where the local switch says: the uplink (sealed for the switch),
//! the TAP, VM ports. All sources are drained in bounded batches.
use std::future::Future;
use std::io::ErrorKind;
use std::time::{Duration, Instant, SystemTime};

use overlay_proto::wire::{AEAD_TAG_LEN, DATA_HEADER_LEN};
use tapmesh_shell::admin::{self, AdminRequest};
use tapmesh_shell::metrics::Exporter;
use tapmesh_shell::udp::{RecvBuffers, UdpLink};
use tokio::net::UnixListener;
use tokio::sync::mpsc;

use crate::config::{Config, VmPortConfig};
use crate::counters::DropReason;
use crate::device::FrameDevice;
use crate::engine::Status;
use crate::engine::{Event, Node, TapWrite};
use crate::local_switch::{Forward, LocalSwitch, PortId, PortKind, UPLINK};
use crate::userhost::{self, UserHost};
use crate::vm_port::{self, HEADROOM, VmEvent};
use crate::workers::Workers;

mod outbox;
use outbox::Outbox;

/// Frames read from the TAP per wakeup before the socket gets a turn.
const BATCH: usize = 64;
/// Receive batches (recvmmsg) handled per wakeup before the TAP gets a turn.
const RX_BATCHES: usize = 4;
/// The largest read from the TAP: a 64 KiB super-frame plus virtio header
/// (oversize frames are counted and dropped by the core).
pub(crate) const MAX_READ: usize = 65536 + 64;

/// The node's local ports as the shell sees them: the local switch and the
/// queues towards VM ports and userspace hosts.
struct Ports {
    local: LocalSwitch,
    /// Queues towards VMs and userspace hosts, by port.
    queues: Vec<Option<PortQueue>>,
}

/// Plain frames for a port served by another task; each `Vec` starts with
/// `headroom` bytes the task fills in (a VM's length prefix).
struct PortQueue {
    tx: mpsc::Sender<Vec<u8>>,
    headroom: usize,
}

impl PortQueue {
    /// Queue a copy of `frame`, if the queue has room.
    fn push(&self, frame: &[u8]) -> bool {
        let mut v = Vec::with_capacity(self.headroom + frame.len());
        v.resize(self.headroom, 0);
        v.extend_from_slice(frame);
        self.tx.try_send(v).is_ok()
    }
}

impl Ports {
    /// Forward a frame from `ingress` ([`LocalSwitch::forward`]): VMs and
    /// hosts get theirs queued here; the answer says whether it also goes
    /// to the uplink and the TAP.
    fn forward(&mut self, now: Instant, ingress: PortId, payload: &[u8]) -> Forward {
        let queues = &self.queues;
        self.local.forward(now, ingress, payload, |p, f| {
            queues
                .get(p)
                .and_then(Option::as_ref)
                .is_some_and(|q| q.push(f))
        })
    }
}

/// Run the node until `shutdown` completes. `tap` is `None` for a node with
/// only VM ports and userspace hosts. `cfg` was read from `path`, which
/// `reload` and SIGHUP read again.
pub async fn run<D: FrameDevice>(
    cfg: Config,
    path: &std::path::Path,
    tap: Option<D>,
    udp: UdpLink,
    admin_listener: Option<UnixListener>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let now = Instant::now();
    let unix_now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let name = cfg.name.clone();
    let mut metrics = Exporter::<Status>::start(cfg.metrics_listen, "tapmesh-node")?;
    let mut core_cfg = cfg.core.clone();
    // The core must know what the TAP really is (offload may have fallen back).
    core_cfg.offload = tap.as_ref().is_some_and(|t| t.has_vnet());
    let mut ports = Ports {
        local: LocalSwitch::new(now, core_cfg.mtu, core_cfg.offload),
        queues: Vec::new(),
    };
    let tap_port = tap.as_ref().map(|t| {
        let p = ports.local.add_port(PortKind::Tap, t.name(), t.mtu());
        ports.local.set_up(p, true);
        p
    });
    let (vm_tx, mut vm_rx) = mpsc::channel::<VmEvent>(1024);
    let mut locals = Locals::default();
    for v in &cfg.vm_ports {
        locals.open_vm_port(&mut ports, v, &vm_tx)?;
    }
    for (i, h) in cfg.hosts.iter().enumerate() {
        locals.start_host(&mut ports, i, h, &vm_tx, now);
    }
    // Kept: a reload may open VM ports and start hosts later.
    let mut running = cfg;
    let mut reloads = tapmesh_shell::reload::ReloadCounters::default();
    let mut hangup = tapmesh_shell::reload::hangups()?;
    let core_cfg_vnet = core_cfg.offload;
    let mut core = Node::new(core_cfg, now, unix_now, rand::random());
    let first = core.switch_addr();
    core.set_local_addrs(local_addrs(&udp, first));
    let (admin_tx, mut admin_rx) = mpsc::channel::<AdminRequest>(16);
    if let Some(l) = admin_listener {
        tokio::spawn(admin::serve(l, admin_tx));
    }
    tokio::pin!(shutdown);
    let mut tap_buf = vec![0u8; DATA_HEADER_LEN + MAX_READ + AEAD_TAG_LEN];
    // Frames from VMs, in local format, with room to seal in place.
    let mut vm_buf = vec![0u8; DATA_HEADER_LEN + MAX_READ + AEAD_TAG_LEN];
    let mut rx = RecvBuffers::default();
    let mut batch = Outbox::new(BATCH);
    let mut drop_log = tapmesh_shell::DropLog::new(now, "tapmesh-node status");
    let mut busy = tapmesh_shell::busy_poll::BusyPoll::new(running.busy_poll);
    let busy_fds: Vec<_> = std::iter::once(udp.raw_fd())
        .chain(tap.as_ref().map(FrameDevice::raw_fd))
        .collect();
    let mut workers = match tap.as_ref().map(FrameDevice::extra_queues) {
        Some(q) if !q.is_empty() => Some(Workers::start(
            q,
            core_cfg_vnet,
            running.worker_opening,
            &udp,
        )?),
        _ => None,
    };
    let sealed = workers.as_ref().map(Workers::signal);
    core.handle_timeout(now);
    loop {
        flush(&mut core, &udp).await;
        let deadline = core
            .poll_timeout()
            .into_iter()
            .chain(workers.as_ref().and_then(Workers::poll_timeout))
            .min()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1))
            .min(ports.local.poll_timeout());
        busy.spin(&busy_fds, deadline);
        tokio::select! {
            _ = &mut shutdown => break,
            r = tap_recv(tap.as_ref(), &mut tap_buf[DATA_HEADER_LEN..DATA_HEADER_LEN + MAX_READ]) => {
                let (Some(tap), Some(tap_port)) = (tap.as_ref(), tap_port) else { continue };
                let mut r = r;
                for round in 1..=BATCH {
                    let n = match r {
                        Ok(n) => n,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    };
                    let now = Instant::now();
                    let payload = &tap_buf[DATA_HEADER_LEN..DATA_HEADER_LEN + n];
                    if ports.forward(now, tap_port, payload).uplink {
                        uplink(&mut core, now, &mut tap_buf, n, &mut batch, &udp).await;
                    }
                    busy.note_activity(now);
                    // Read the next frame only if this wakeup will handle it.
                    if round == BATCH {
                        break;
                    }
                    r = tap.try_recv(&mut tap_buf[DATA_HEADER_LEN..DATA_HEADER_LEN + MAX_READ]);
                }
                send_all(&mut batch, &udp).await;
            }
            r = rx.recv(&udp, true) => {
                let mut r = r;
                // Bounded: a few batches, then the TAP and timers get a turn.
                for round in 1..=RX_BATCHES {
                    let n = match r {
                        Ok(n) => n,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        // ICMP errors from earlier sends (switch down): keep going.
                        Err(e) if e.kind() == ErrorKind::ConnectionRefused => break,
                        Err(e) => return Err(e),
                    };
                    let now = Instant::now();
                    busy.note_activity(now);
                    // A large batch is opened on the workers too, then handled in order.
                    if let Some(batch) = workers.as_mut().and_then(|w| w.open_batch(now, &mut rx, n)) {
                        for d in batch {
                            let w = match d.opened {
                                Some(r) => core.handle_opened(now, d.from, d.buf, r),
                                None => core.handle_datagram(now, d.from, d.buf),
                            };
                            to_tap(&mut core, &mut ports, workers.as_ref(), tap.as_ref(), now, w, d.buf).await;
                        }
                    } else {
                        for (from, d) in rx.datagrams(n) {
                            let w = core.handle_datagram(now, from, d);
                            to_tap(&mut core, &mut ports, workers.as_ref(), tap.as_ref(), now, w, d).await;
                        }
                    }
                    if round == RX_BATCHES {
                        break;
                    }
                    r = rx.recv(&udp, false).await;
                }
            }
            // Frames a sealing worker read but left to this task.
            Some(frame) = crate::workers::fallback(workers.as_mut()) => {
                let (Some(tap_port), n) = (tap_port, frame.len().min(MAX_READ)) else { continue };
                let now = Instant::now();
                tap_buf[DATA_HEADER_LEN..DATA_HEADER_LEN + n].copy_from_slice(&frame[..n]);
                if ports.forward(now, tap_port, &tap_buf[DATA_HEADER_LEN..DATA_HEADER_LEN + n]).uplink {
                    uplink(&mut core, now, &mut tap_buf, n, &mut batch, &udp).await;
                }
                send_all(&mut batch, &udp).await;
            }
            // A worker sealed for a mesh peer: noted below (`refresh`).
            () = crate::workers::sealed(sealed.as_ref()) => {}
            // Never closed: `vm_tx` is kept for ports a reload opens.
            Some(ev) = vm_rx.recv() => {
                let mut ev = Some(ev);
                for round in 1..=BATCH {
                    let Some(e) = ev else { break };
                    let now = Instant::now();
                    match e {
                        VmEvent::Up(p) => {
                            tracing::info!(port = ports.local.name(p), "VM connected");
                            ports.local.set_up(p, true);
                        }
                        VmEvent::Down(p) => {
                            tracing::info!(port = ports.local.name(p), "VM disconnected");
                            ports.local.set_up(p, false);
                        }
                        VmEvent::Dropped(reason) => ports.local.note_drop(reason),
                        VmEvent::Frame(p, frame) => {
                            let t = ports.forward(now, p, &frame);
                            let at = DATA_HEADER_LEN;
                            // The TAP and the uplink take the local format.
                            let n = if t.tap || t.uplink {
                                ports.local.encode_local(&frame, &mut vm_buf[at..at + MAX_READ])
                            } else {
                                None
                            };
                            if let Some(n) = n {
                                if t.tap && let Some(tap) = tap.as_ref() {
                                    write_tap(tap, &vm_buf[at..at + n], &mut ports.local).await;
                                }
                                if t.uplink {
                                    uplink(&mut core, now, &mut vm_buf, n, &mut batch, &udp).await;
                                }
                            }
                        }
                    }
                    if round == BATCH {
                        break;
                    }
                    ev = vm_rx.try_recv().ok();
                }
                send_all(&mut batch, &udp).await;
            }
            _ = tokio::time::sleep_until(deadline.into()) => {}
            Some(req) = admin_rx.recv() => {
                let reply = match req.line.as_str() {
                    "status" => {
                        take_note(workers.as_mut(), &mut core);
                        serde_json::to_string(&status(&core, &ports.local, &locals, reloads, &name, workers.as_ref())).unwrap_or_default()
                    }
                    "reload" => {
                        let r = reload(path, &mut running, &mut locals, &mut ports, &vm_tx, &mut metrics);
                        reloads.count(r.is_ok());
                        tapmesh_shell::reload::reply(&r)
                    }
                    l if l.split(' ').next() == Some(tapmesh_shell::capture::REQUEST) => {
                        crate::capture::answer(&mut core, l, req.capture.clone())
                    }
                    _ => admin::unknown_request(&req.line),
                };
                let _ = req.reply.send(reply);
            }
            req = metrics.request() => {
                take_note(workers.as_mut(), &mut core);
                req.answer(status(&core, &ports.local, &locals, reloads, &name, workers.as_ref()))
            }
            Some(()) = hangup.recv() => {
                let r = reload(path, &mut running, &mut locals, &mut ports, &vm_tx, &mut metrics);
                reloads.count(r.is_ok());
            }
        }
        let now = Instant::now();
        if core.poll_timeout().is_some_and(|d| d <= now) {
            core.handle_timeout(now);
        }
        ports.local.handle_timeout(now);
        if let Some(w) = workers.as_mut() {
            w.refresh(
                &mut core,
                locals.vm_ports.is_empty() && locals.hosts.is_empty(),
                now,
            );
        }
        while let Some(ev) = core.poll_event() {
            let switch = core.home().name.as_str();
            match ev {
                Event::Connected => tracing::info!(%switch, "session with the switch established"),
                Event::Rekeyed => tracing::debug!("rekeyed"),
                Event::Lost => {
                    tracing::warn!(%switch, "the switch stopped answering; reconnecting")
                }
                Event::SwitchRestarted => {
                    tracing::info!(%switch, "the switch restarted; reconnecting")
                }
                Event::FailedOver(cause) => {
                    tracing::warn!(%switch, cause = cause.name(), "failing over to the next switch")
                }
                Event::Announced(macs) => {
                    tracing::info!(%switch, macs, "announced the local MACs to the new home switch")
                }
            }
        }
        while let Some(ev) = core.poll_path_event() {
            tracing::info!(peer = %ev.peer, path = ?ev.path, "mesh path changed");
        }
        if let Some(r) = core.poll_mac_moves(now) {
            let (mac, from, to) = &r.latest;
            tracing::warn!(
                moves = r.moves,
                mac = %mac,
                from = %from,
                to = %to,
                "MACs moved between mesh peers"
            );
        }
        drop_log.tick(now, core.drops().total() + ports.local.drops().total());
    }
    vm_port::remove_sockets(&running.vm_ports);
    Ok(())
}

/// The VM ports and userspace hosts running, in the order of the running
/// config's `vm_ports` and `hosts`.
#[derive(Default)]
struct Locals {
    vm_ports: Vec<PortId>,
    hosts: Vec<(PortId, userhost::shell::HostPort)>,
}

impl Locals {
    /// Bind a VM port's socket and start its task.
    fn open_vm_port(
        &mut self,
        ports: &mut Ports,
        v: &VmPortConfig,
        vm_tx: &mpsc::Sender<VmEvent>,
    ) -> std::io::Result<()> {
        let p = ports
            .local
            .add_port(PortKind::Vm, &v.path.to_string_lossy(), v.mtu as usize);
        let tx = match vm_port::start(p, v, ports.local.max_frame_in(p), vm_tx.clone()) {
            Ok(tx) => tx,
            Err(e) => {
                ports.local.remove_port(p);
                return Err(e);
            }
        };
        ports.queues.resize_with(p + 1, || None);
        ports.queues[p] = Some(PortQueue {
            tx,
            headroom: HEADROOM,
        });
        self.vm_ports.push(p);
        Ok(())
    }

    /// Start userspace host `h` (the `i`-th `[[host]]`) on a new port.
    fn start_host(
        &mut self,
        ports: &mut Ports,
        i: usize,
        h: &userhost::config::HostConfig,
        vm_tx: &mpsc::Sender<VmEvent>,
        now: Instant,
    ) {
        let name = format!("host[{i}] {}", h.addresses[0]);
        let p = ports.local.add_port(PortKind::Host, &name, h.mtu);
        ports.local.set_up(p, true);
        let host = UserHost::new(h, now, rand::random());
        let port = userhost::shell::spawn(host, vm_tx.clone(), move |f| VmEvent::Frame(p, f));
        ports.queues.resize_with(p + 1, || None);
        ports.queues[p] = Some(PortQueue {
            tx: port.to_host.clone(),
            headroom: 0,
        });
        self.hosts.push((p, port));
    }

    /// Take port `p` out: its queue dropped ends its task (the VM's socket
    /// closes, the host stops).
    fn close(ports: &mut Ports, p: PortId) {
        ports.local.remove_port(p);
        if let Some(q) = ports.queues.get_mut(p) {
            *q = None;
        }
    }
}

/// Re-read the config and apply what may change live (see
/// [`crate::reload`]); logs one line either way. Returns the summary or
/// the one-line refusal.
fn reload(
    path: &std::path::Path,
    running: &mut Config,
    locals: &mut Locals,
    ports: &mut Ports,
    vm_tx: &mpsc::Sender<VmEvent>,
    metrics: &mut Exporter<Status>,
) -> Result<String, String> {
    let r = Config::load(path).and_then(|new| {
        let plan = crate::reload::plan(path, running, &new)?;
        Ok((new, plan))
    });
    let (new, plan) = match r {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!("config reload refused, the running config stays: {e}");
            return Err(e.to_string());
        }
    };
    let summary = plan.summary(running);
    if let Some(listen) = plan.metrics_listen {
        if let Err(e) = metrics.move_to(running.metrics_listen, listen, "tapmesh-node") {
            let e = format!(
                "{}: metrics-listen: {e}; nothing was changed",
                path.display()
            );
            tracing::warn!("config reload refused, the running config stays: {e}");
            return Err(e);
        }
        running.metrics_listen = listen;
    }
    if let Some(level) = &plan.log_level {
        tapmesh_shell::log_level::apply(level.as_deref());
        running.log_level = level.clone();
    }
    for &i in plan.vm_removed.iter().rev() {
        let p = locals.vm_ports.remove(i);
        Locals::close(ports, p);
        let gone = running.vm_ports.remove(i);
        vm_port::remove_sockets(std::slice::from_ref(&gone));
    }
    for &i in plan.hosts_removed.iter().rev() {
        let (p, host) = locals.hosts.remove(i);
        Locals::close(ports, p);
        host.task.abort();
        running.hosts.remove(i);
    }
    let mut failed = Vec::new();
    for v in plan.vm_added {
        match locals.open_vm_port(ports, &v, vm_tx) {
            Ok(()) => running.vm_ports.push(v),
            Err(e) => failed.push(e.to_string()),
        }
    }
    let now = Instant::now();
    for h in plan.hosts_added {
        let i = new
            .hosts
            .iter()
            .position(|x| *x == h)
            .unwrap_or(running.hosts.len());
        locals.start_host(ports, i, &h, vm_tx, now);
        running.hosts.push(h);
    }
    if !failed.is_empty() {
        let e = format!("{summary}; but could not open: {}", failed.join(", "));
        tracing::warn!("config reloaded in part: {e}");
        return Err(e);
    }
    tracing::info!("config reloaded: {summary}");
    Ok(summary)
}

/// The node's status with the local switch's ports and drops, the
/// userspace hosts and the reloads.
fn status(
    core: &Node,
    local: &LocalSwitch,
    locals: &Locals,
    reloads: tapmesh_shell::reload::ReloadCounters,
    name: &str,
    workers: Option<&Workers>,
) -> Status {
    let mut s = core.status(Instant::now(), name);
    if let Some(w) = workers {
        w.add_to(&mut s);
    }
    for (reason, n) in local.drops().iter() {
        s.drops.add_n(reason, n);
    }
    s.local = Some(local.status());
    s.hosts = locals
        .hosts
        .iter()
        .map(|(_, h)| h.status.borrow().clone())
        .collect();
    s.reloads = reloads;
    for h in &s.hosts {
        s.drops
            .add_n(DropReason::Oversize, h.counters.oversize_drops);
        s.drops
            .add_n(DropReason::PortQueueFull, h.counters.queue_drops);
    }
    s
}

/// Before a status snapshot: the workers' latest sends for mesh peers
/// counted now, not at the next note ([`Workers::take_note`]).
fn take_note(workers: Option<&mut Workers>, core: &mut Node) {
    if let Some(w) = workers {
        w.take_note(core, Instant::now());
    }
}

/// Read from the TAP, or wait forever if the node has none.
async fn tap_recv(tap: Option<&impl FrameDevice>, buf: &mut [u8]) -> std::io::Result<usize> {
    match tap {
        Some(t) => t.recv(buf).await,
        None => std::future::pending().await,
    }
}

/// Deliver what [`Node::handle_datagram`] (or `handle_opened`) left in
/// `buf`, if anything: to the local switch, and to the TAP through the
/// flow's worker queue if the workers seal, else through the node task's.
async fn to_tap<D: FrameDevice>(
    core: &mut Node,
    ports: &mut Ports,
    workers: Option<&Workers>,
    tap: Option<&D>,
    now: Instant,
    w: Option<TapWrite>,
    buf: &[u8],
) {
    // HOT PATH
    let Some(w) = w else { return };
    let frame = match &w {
        TapWrite::InPlace(r) => &buf[r.clone()],
        TapWrite::Reassembled(r) => &core.reassembled()[r.clone()],
    };
    if !ports.forward(now, UPLINK, frame).tap {
        return;
    }
    match (workers.filter(|w| w.is_fast()), tap) {
        (Some(w), _) => {
            if !w.write_tap(frame) {
                ports.local.note_drop(DropReason::TapWrite);
            }
        }
        (None, Some(tap)) => write_tap(tap, frame, &mut ports.local).await,
        (None, None) => {}
    }
}

/// Write a frame to the TAP; a failed write is counted.
async fn write_tap(tap: &impl FrameDevice, frame: &[u8], local: &mut LocalSwitch) {
    if let Err(e) = tap.send(frame).await {
        tracing::trace!(error = %e, "TAP write failed");
        local.note_drop(DropReason::TapWrite);
    }
}

/// Hand a frame in local format at `buf[DATA_HEADER_LEN..DATA_HEADER_LEN + n]`
/// to the node core, to be sealed in place for the switch (or a mesh peer).
async fn uplink(
    core: &mut Node,
    now: Instant,
    buf: &mut [u8],
    n: usize,
    batch: &mut Outbox,
    udp: &UdpLink,
) {
    // HOT PATH
    match core.handle_tap_frame(now, buf, n) {
        // Sealed in place: kept (equal sizes merged into one GSO batch) and
        // sent when the source is drained, or when the outbox is full.
        Ok(Some(range)) => {
            if batch.push(core.destination(), &buf[range]) {
                send_all(batch, udp).await;
            }
        }
        // Fragments are queued in the core: send what came before them
        // first, to keep frames in order.
        Ok(None) => {
            send_all(batch, udp).await;
            flush(core, udp).await;
        }
        Err(_) => {}
    }
}

/// Our underlay address as peers on the same network would see it: the
/// source address the kernel picks towards the switch, with our UDP port.
/// (A connected throwaway socket sends nothing.)
fn local_addrs(udp: &UdpLink, switch: std::net::SocketAddr) -> Vec<std::net::SocketAddr> {
    let Ok(port) = udp.local_addr().map(|a| a.port()) else {
        return Vec::new();
    };
    let bind: std::net::SocketAddr = if switch.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    std::net::UdpSocket::bind(bind)
        .and_then(|s| s.connect(switch).and_then(|()| s.local_addr()))
        .map(|a| vec![std::net::SocketAddr::new(a.ip(), port)])
        .unwrap_or_default()
}

async fn send_all(batch: &mut Outbox, udp: &UdpLink) {
    batch.send_all(udp).await;
}

async fn flush(core: &mut Node, udp: &UdpLink) {
    while let Some(t) = core.poll_transmit() {
        if let Err(e) = udp.send(t.destination, t.contents, t.segment_size).await {
            tracing::trace!(error = %e, "send failed");
        }
    }
}
