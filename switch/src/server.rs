//! The tokio shell around [`Switch`]: one task owns the core and the UDP
//! socket; it drains the socket in bounded batches, runs timers, sends what the
//! core queued, and answers admin requests relayed from the admin task.
use std::future::Future;
use std::io::ErrorKind;
use std::time::{Duration, Instant};

use tapmesh_shell::admin::{self, AdminRequest};
use tokio::net::{UdpSocket, UnixListener};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::core::{Event, Switch};
use crate::state;

/// The state file is rewritten at most this often.
const STATE_SAVE_INTERVAL: Duration = Duration::from_secs(1);

fn wall_timestamp() -> overlay_proto::handshake::Timestamp {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    overlay_proto::handshake::Timestamp::from_unix(t.as_secs(), t.subsec_nanos())
}

/// Datagrams handled per wakeup before timers and transmits get a turn.
const RX_BATCH: usize = 64;

/// Run the switch until `shutdown` completes.
pub async fn run(
    cfg: Config,
    socket: UdpSocket,
    admin: Option<UnixListener>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let seed = rand::random();
    let mut core = Switch::new(cfg.core, Instant::now(), seed);
    let state_file = cfg.state_file;
    let known = state::load(&state_file);
    if !known.is_empty() {
        let n = core.announce_restart(
            wall_timestamp(),
            known.iter().map(|(n, a)| (n.as_str(), *a)),
        );
        tracing::info!(
            nodes = n,
            "sent restart notices to the nodes' last known endpoints"
        );
    }
    let mut state_dirty = false;
    let mut state_saved_at = Instant::now();
    let mut state_warned = false;
    let (admin_tx, mut admin_rx) = mpsc::channel::<AdminRequest>(16);
    if let Some(l) = admin {
        tokio::spawn(admin::serve(l, admin_tx));
    }
    tokio::pin!(shutdown);
    let mut buf = vec![0u8; 65536];
    let mut drop_log = tapmesh_shell::DropLog::new(Instant::now(), "tapmesh-switch status");
    loop {
        let deadline = core
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        tokio::select! {
            _ = &mut shutdown => break,
            r = socket.recv_from(&mut buf) => {
                match r {
                    Ok((n, from)) => {
                        let now = Instant::now();
                        core.handle_datagram(now, from, &mut buf[..n]);
                        for _ in 1..RX_BATCH {
                            match socket.try_recv_from(&mut buf) {
                                Ok((n, from)) => core.handle_datagram(now, from, &mut buf[..n]),
                                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                                Err(_) => break,
                            }
                        }
                    }
                    // ICMP errors from earlier sends surface here on some kernels; ignore.
                    Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
                    Err(e) => return Err(e),
                }
            }
            _ = tokio::time::sleep_until(deadline.into()) => {}
            Some(req) = admin_rx.recv() => {
                let reply = match req.line.as_str() {
                    "status" => serde_json::to_string(&core.status(Instant::now(), false)),
                    "status macs" => serde_json::to_string(&core.status(Instant::now(), true)),
                    _ => Ok(admin::unknown_request(&req.line)),
                };
                let _ = req.reply.send(reply.unwrap_or_default());
            }
        }
        let now = Instant::now();
        core.handle_timeout(now);
        while let Some(ev) = core.poll_event() {
            match ev {
                Event::Roamed { node, endpoint } => {
                    state_dirty = true;
                    tracing::info!(%node, %endpoint, "node moved to a new endpoint")
                }
                Event::Connected { node, endpoint } => {
                    state_dirty = true;
                    tracing::info!(%node, %endpoint, "node connected")
                }
                Event::Rekeyed { node } => tracing::debug!(%node, "node rekeyed"),
                Event::TimedOut { node } => {
                    state_dirty = true;
                    tracing::info!(%node, "node timed out; its MACs are flushed")
                }
            }
        }
        while let Some(t) = core.poll_transmit() {
            if let Err(e) = socket.send_to(t.contents, t.destination).await {
                tracing::debug!(error = %e, "send failed");
            }
        }
        drop_log.tick(now, core.drops().total());
        if state_dirty && now >= state_saved_at + STATE_SAVE_INTERVAL {
            state_dirty = false;
            state_saved_at = now;
            if let Err(e) = state::save(&state_file, &core.endpoints())
                && !state_warned
            {
                state_warned = true;
                tracing::warn!(file = %state_file.display(), error = %e, "cannot write the state file; restart notices will not work");
            }
        }
    }
    Ok(())
}
