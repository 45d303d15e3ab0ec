//! The tokio shell around [`Node`]: one task owns the core, the TAP and the UDP
//! socket. Frames (TCP super-frames of up to 64 KB with an offload TAP) are
//! read from the TAP straight into a buffer with header room and sealed in
//! place, or fragmented into one GSO batch; datagrams arrive in recvmmsg/GRO
//! batches, are decrypted in place, and the frame is written to the TAP. Both
//! sides are drained in bounded batches.
use std::future::Future;
use std::io::ErrorKind;
use std::time::{Duration, Instant, SystemTime};

use overlay_proto::transmit::TxQueue;
use overlay_proto::wire::{DATA_HEADER_LEN, TAG_LEN};
use tapmesh_shell::admin::{self, AdminRequest};
use tapmesh_shell::metrics::Exporter;
use tapmesh_shell::udp::{RecvBuffers, UdpLink};
use tokio::net::UnixListener;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::core::Status;
use crate::core::{Event, Node, TapWrite};
use crate::tap::Tap;

/// Frames read from the TAP per wakeup before the socket gets a turn.
const BATCH: usize = 64;
/// Receive batches (recvmmsg) handled per wakeup before the TAP gets a turn.
const RX_BATCHES: usize = 4;
/// The largest read from the TAP: a 64 KiB super-frame plus virtio header
/// (oversize frames are counted and dropped by the core).
const MAX_READ: usize = 65536 + 64;

/// Run the node until `shutdown` completes.
pub async fn run(
    cfg: Config,
    tap: Tap,
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
    let mut core_cfg = cfg.core;
    // The core must know what the TAP really is (offload may have fallen back).
    core_cfg.offload = tap.has_vnet();
    let mut core = Node::new(core_cfg, now, unix_now, rand::random());
    let switch = core.switch_addr();
    core.set_local_addrs(local_addrs(&udp, switch));
    let (admin_tx, mut admin_rx) = mpsc::channel::<AdminRequest>(16);
    if let Some(l) = admin_listener {
        tokio::spawn(admin::serve(l, admin_tx));
    }
    tokio::pin!(shutdown);
    let mut tap_buf = vec![0u8; DATA_HEADER_LEN + MAX_READ + TAG_LEN];
    let mut rx = RecvBuffers::default();
    let mut batch = TxQueue::new(BATCH);
    let mut drop_log = tapmesh_shell::DropLog::new(now, "tapmesh-node status");
    core.handle_timeout(now);
    loop {
        flush(&mut core, &udp).await;
        let deadline = core
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        tokio::select! {
            _ = &mut shutdown => break,
            r = tap.recv(&mut tap_buf[DATA_HEADER_LEN..DATA_HEADER_LEN + MAX_READ]) => {
                let mut r = r;
                for round in 1..=BATCH {
                    let n = match r {
                        Ok(n) => n,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    };
                    match core.handle_tap_frame(Instant::now(), &mut tap_buf, n) {
                        // Sealed in place: collect equal-sized datagrams into
                        // one GSO batch, sent when the TAP is drained.
                        Ok(Some(range)) => {
                            let len = range.len();
                            let mut d = batch.buffer(len);
                            d[..len].copy_from_slice(&tap_buf[range]);
                            d.truncate(len);
                            batch.push(core.destination(), d);
                            if batch.len() > 1 {
                                send_all(&mut batch, &udp).await;
                            }
                        }
                        // Fragments are queued in the core: send what came
                        // before them first, to keep frames in order.
                        Ok(None) => {
                            send_all(&mut batch, &udp).await;
                            flush(&mut core, &udp).await;
                        }
                        Err(_) => {}
                    }
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
                    for (from, d) in rx.datagrams(n) {
                        let Some(w) = core.handle_datagram(now, from, d) else { continue };
                        let frame = match &w {
                            TapWrite::InPlace(r) => &d[r.clone()],
                            TapWrite::Reassembled(r) => &core.reassembled()[r.clone()],
                        };
                        if let Err(e) = tap.send(frame).await {
                            tracing::trace!(error = %e, "TAP write failed");
                        }
                    }
                    if round == RX_BATCHES {
                        break;
                    }
                    r = rx.recv(&udp, false).await;
                }
            }
            _ = tokio::time::sleep_until(deadline.into()) => {}
            Some(req) = admin_rx.recv() => {
                let reply = match req.line.as_str() {
                    "status" => serde_json::to_string(&core.status(Instant::now(), &name)).unwrap_or_default(),
                    _ => admin::unknown_request(&req.line),
                };
                let _ = req.reply.send(reply);
            }
            req = metrics.request() => req.answer(core.status(Instant::now(), &name)),
        }
        let now = Instant::now();
        if core.poll_timeout().is_some_and(|d| d <= now) {
            core.handle_timeout(now);
        }
        while let Some(ev) = core.poll_event() {
            match ev {
                Event::Connected => tracing::info!(%switch, "session with the switch established"),
                Event::Rekeyed => tracing::debug!("rekeyed"),
                Event::Lost => {
                    tracing::warn!(%switch, "the switch stopped answering; reconnecting")
                }
                Event::SwitchRestarted => {
                    tracing::info!(%switch, "the switch restarted; reconnecting")
                }
            }
        }
        while let Some(ev) = core.poll_path_event() {
            tracing::info!(peer = %ev.peer, path = ?ev.path, "mesh path changed");
        }
        drop_log.tick(now, core.drops().total());
    }
    Ok(())
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

async fn send_all(batch: &mut TxQueue, udp: &UdpLink) {
    while let Some(t) = batch.pop() {
        if let Err(e) = udp.send(t.destination, t.contents, t.segment_size).await {
            tracing::trace!(error = %e, "send failed");
        }
    }
}

async fn flush(core: &mut Node, udp: &UdpLink) {
    while let Some(t) = core.poll_transmit() {
        if let Err(e) = udp.send(t.destination, t.contents, t.segment_size).await {
            tracing::trace!(error = %e, "send failed");
        }
    }
}
