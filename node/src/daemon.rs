//! The tokio shell around [`Node`]: one task owns the core, the TAP and the UDP
//! socket. Frames are read from the TAP straight into a buffer with header
//! room, sealed in place and sent; datagrams are decrypted in place and the
//! frame is written to the TAP. Both sides are drained in bounded batches.
use std::future::Future;
use std::io::ErrorKind;
use std::time::{Duration, Instant, SystemTime};

use overlay_proto::wire::{DATA_HEADER_LEN, TAG_LEN};
use tapmesh_shell::admin::{self, AdminRequest};
use tokio::net::{UdpSocket, UnixListener};
use tokio::sync::mpsc;
use tokio_tun::Tun;

use crate::config::Config;
use crate::core::{Event, Node};

/// Frames or datagrams handled per wakeup before the other side gets a turn.
const BATCH: usize = 64;
/// The largest frame read from the TAP (oversize ones are counted and dropped by the core).
const MAX_FRAME: usize = 65535;

/// Run the node until `shutdown` completes.
pub async fn run(
    cfg: Config,
    tap: Tun,
    socket: UdpSocket,
    admin_listener: Option<UnixListener>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let now = Instant::now();
    let unix_now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let name = cfg.name.clone();
    let mut core = Node::new(cfg.core, now, unix_now, rand::random());
    let switch = core.switch_addr();
    let (admin_tx, mut admin_rx) = mpsc::channel::<AdminRequest>(16);
    if let Some(l) = admin_listener {
        tokio::spawn(admin::serve(l, admin_tx));
    }
    tokio::pin!(shutdown);
    let mut tap_buf = vec![0u8; DATA_HEADER_LEN + MAX_FRAME + TAG_LEN];
    let mut udp_buf = vec![0u8; 65536];
    let mut drop_log = tapmesh_shell::DropLog::new(now, "tapmesh-node status");
    core.handle_timeout(now);
    loop {
        flush(&mut core, &socket).await;
        let deadline = core
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        tokio::select! {
            _ = &mut shutdown => break,
            r = tap.recv(&mut tap_buf[DATA_HEADER_LEN..DATA_HEADER_LEN + MAX_FRAME]) => {
                let mut r = r;
                for _ in 0..BATCH {
                    let n = match r {
                        Ok(n) => n,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    };
                    if let Ok(len) = core.handle_tap_frame(Instant::now(), &mut tap_buf, n)
                        && let Err(e) = socket.send_to(&tap_buf[..len], switch).await
                    {
                        tracing::trace!(error = %e, "send failed");
                    }
                    r = tap.try_recv(&mut tap_buf[DATA_HEADER_LEN..DATA_HEADER_LEN + MAX_FRAME]);
                }
            }
            r = socket.recv_from(&mut udp_buf) => {
                let mut r = r;
                for _ in 0..BATCH {
                    let (n, from) = match r {
                        Ok(v) => v,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        // ICMP errors from earlier sends (switch down): keep going.
                        Err(e) if e.kind() == ErrorKind::ConnectionRefused => break,
                        Err(e) => return Err(e),
                    };
                    if let Some(range) = core.handle_datagram(Instant::now(), from, &mut udp_buf[..n])
                        && let Err(e) = tap.send(&udp_buf[range]).await
                    {
                        tracing::trace!(error = %e, "TAP write failed");
                    }
                    r = socket.try_recv_from(&mut udp_buf);
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
        drop_log.tick(now, core.drops().total());
    }
    Ok(())
}

async fn flush(core: &mut Node, socket: &UdpSocket) {
    while let Some(t) = core.poll_transmit() {
        if let Err(e) = socket.send_to(t.contents, t.destination).await {
            tracing::trace!(error = %e, "send failed");
        }
    }
}
