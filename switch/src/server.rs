//! The tokio shell around the [`Networks`] (one `Switch` core per network):
//! one task owns the cores and the UDP socket; it drains the socket in bounded
//! batches, runs timers, sends what the cores queued, and answers admin
//! requests relayed from the admin task and snapshot requests from the metrics
//! exporter (one per scrape). `reload` over the admin socket and SIGHUP
//! re-read the config file and apply it (see [`crate::reload`]).
use std::future::Future;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tapmesh_shell::admin::{self, AdminRequest};
use tapmesh_shell::capture;
use tapmesh_shell::config::ConfigError;
use tapmesh_shell::metrics::Exporter;
use tapmesh_shell::udp::{RecvBuffers, SendBatch, UdpLink};
use tokio::net::UnixListener;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::endpoints_file;
use crate::etcd::link::EtcdLink;
use crate::fabric::Event;
use crate::networks::Networks;
use crate::status::Status;
use crate::workers::Workers;
use crate::workers::batch::Opening;

/// How late tokio's timers fire, about: they round deadlines up to whole
/// milliseconds. Frames held by link impairment are released this early so
/// an added delay is right on average.
const TIMER_SLACK: Duration = Duration::from_millis(1);

/// With workers, the sessions they open under are published again (and
/// dropped ones reclaimed) at least this often, besides after each connect
/// or rekey.
const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);

/// The state file is rewritten at most this often.
const STATE_SAVE_INTERVAL: Duration = Duration::from_secs(1);

fn wall_timestamp() -> overlay_proto::handshake::Timestamp {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    overlay_proto::handshake::Timestamp::from_unix(t.as_secs(), t.subsec_nanos())
}

/// Run the switch until `shutdown` completes. `cfg` was read from
/// `config_path`, which `reload` and SIGHUP read again.
pub async fn run(
    cfg: Config,
    config_path: PathBuf,
    socket: UdpLink,
    admin: Option<UnixListener>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let seed = rand::random();
    let mut metrics = Exporter::<Status>::start(cfg.metrics_listen, "tapmesh-switch")?;
    let mut running = cfg;
    let networks = std::mem::take(&mut running.networks);
    let mut etcd = running.cluster.as_ref().and_then(|c| {
        let names = networks.iter().map(|n| n.name.as_str());
        EtcdLink::start(Instant::now(), c, names, running.listen)
    });
    let mut core = Networks::new(networks, Instant::now(), seed);
    core.set_timer_slack(TIMER_SLACK);
    if let Some(c) = running.cluster.clone() {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        core.join_cluster(Instant::now(), wall, c);
    }
    let state_file = running.state_file.clone();
    let mut hangup = tapmesh_shell::reload::hangups()?;
    let known = endpoints_file::load(&state_file);
    if !known.is_empty() {
        let n = core.announce_restart(wall_timestamp(), &known);
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
    let mut rx = RecvBuffers::default();
    let mut sends = SendBatch::default();
    let mut busy = tapmesh_shell::busy_poll::BusyPoll::new(running.busy_poll);
    let mut workers = Workers::start(running.workers, &socket)?;
    if let Some(w) = &workers {
        // The gate knows every network from the first datagram on.
        w.publish(&core);
    }
    let mut published_at = Instant::now();
    let mut drop_log = tapmesh_shell::DropLog::new(Instant::now(), "tapmesh-switch status");
    loop {
        let deadline = core
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        let deadline = etcd
            .as_ref()
            .and_then(EtcdLink::poll_timeout)
            .map_or(deadline, |d| d.min(deadline));
        busy.spin(&[socket.raw_fd()], deadline);
        tokio::select! {
            _ = &mut shutdown => break,
            // One recvmmsg/GRO batch per wakeup; then transmits and timers.
            r = rx.recv(&socket, true) => {
                match r {
                    Ok(n) => {
                        let now = Instant::now();
                        let mut received = 0;
                        for (from, d) in rx.datagrams(n) {
                            core.handle_datagram(now, from, d);
                            received += 1;
                        }
                        if let Some(w) = &workers {
                            w.count_core(received);
                        }
                        busy.note_activity(now);
                    }
                    // ICMP errors from earlier sends surface here on some kernels; ignore.
                    Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
                    Err(e) => return Err(e),
                }
            }
            Some(mut batch) = Workers::next(&mut workers) => {
                let now = Instant::now();
                for (from, d, opening) in batch.datagrams() {
                    match opening {
                        Opening::Sealed => core.handle_datagram(now, from, d),
                        Opening::Opened(r) => core.handle_opened(now, from, d, r),
                        Opening::Admitted => core.handle_admitted(now, from, d),
                    }
                }
                if let Some(w) = &workers {
                    w.recycle(batch);
                }
            }
            _ = tokio::time::sleep_until(deadline.into()) => {}
            Some(r) = etcd_report(&mut etcd) => {
                let link = etcd.as_mut().expect("a report came from it");
                crate::etcd::link::take_reports(link, r, Instant::now());
            }
            Some(req) = admin_rx.recv() => {
                // A change (reload, mirror, capture, impairment, ...) takes
                // the workers' fast path back until it is published again.
                if !matches!(req.line.as_str(), "status" | "status macs" | "groups") {
                    core.revoke_fast_paths();
                }
                let reply = match req.line.as_str() {
                    "status" => serde_json::to_string(&status(&core, &etcd, &workers, &sends, false)),
                    "status macs" => serde_json::to_string(&status(&core, &etcd, &workers, &sends, true)),
                    "reload" => Ok(reload(&config_path, &mut running, &mut core, &mut metrics)),
                    "groups" => serde_json::to_string(&core.status(Instant::now(), false).multicast),
                    l if l == "querier" || l.starts_with("querier ") => {
                        let reply = core.querier_request(Instant::now(), l);
                        tracing::info!(request = %l, "querier request");
                        Ok(reply)
                    }
                    l if l.starts_with("impair ") || l.starts_with("link ") => {
                        let reply = core.impair_request(l);
                        tracing::info!(request = %l, "link impairment request");
                        Ok(reply)
                    }
                    l if l.starts_with("mirror ") => Ok(crate::mirror::admin_request(&mut core, l)),
                    l if l.split(' ').next() == Some(capture::REQUEST) => {
                        Ok(crate::capture::answer(&mut core, l, req.capture.clone()))
                    }
                    _ => Ok(admin::unknown_request(&req.line)),
                };
                let _ = req.reply.send(reply.unwrap_or_default());
            }
            req = metrics.request() => req.answer(status(&core, &etcd, &workers, &sends, false)),
            Some(()) = hangup.recv() => {
                core.revoke_fast_paths();
                reload(&config_path, &mut running, &mut core, &mut metrics);
            }
        }
        let now = Instant::now();
        core.handle_timeout(now);
        if let Some(link) = etcd.as_mut() {
            crate::etcd::link::exchange(link, &mut core, now);
        }
        let mut sessions_changed = false;
        while let Some((network, ev)) = core.poll_event() {
            sessions_changed |= matches!(
                ev,
                Event::Connected { .. } | Event::Rekeyed { .. } | Event::SwitchUp { .. }
            );
            match ev {
                Event::Roamed { node, endpoint } => {
                    state_dirty = true;
                    tracing::info!(network, %node, %endpoint, "node moved to a new endpoint")
                }
                Event::Connected { node, endpoint } => {
                    state_dirty = true;
                    tracing::info!(network, %node, %endpoint, "node connected")
                }
                Event::Rekeyed { node } => tracing::debug!(network, %node, "node rekeyed"),
                Event::TimedOut { node } => {
                    state_dirty = true;
                    tracing::info!(network, %node, "node timed out; its MACs are flushed")
                }
                Event::SwitchUp { switch, endpoint } => {
                    tracing::info!(network, %switch, %endpoint, "switch trunk up")
                }
                Event::SwitchDown { switch } => tracing::warn!(
                    network,
                    %switch,
                    "switch trunk down; the MACs behind it are flushed"
                ),
            }
        }
        if let Some(w) = &workers
            && (sessions_changed
                || now >= published_at + PUBLISH_INTERVAL
                || w.fast_path_stale(&core))
        {
            w.publish(&core);
            published_at = now;
        }
        // Small datagrams to many nodes: many per system call (sendmmsg).
        while let Some(t) = core.poll_transmit() {
            sends.send(&socket, &t).await;
        }
        sends.flush(&socket).await;
        drop_log.tick(now, core.drops_total());
        if state_dirty && now >= state_saved_at + STATE_SAVE_INTERVAL {
            state_dirty = false;
            state_saved_at = now;
            if let Err(e) = endpoints_file::save(&state_file, &core.endpoints())
                && !state_warned
            {
                state_warned = true;
                tracing::warn!(file = %state_file.display(), error = %e, "cannot write the state file; restart notices will not work");
            }
        }
    }
    Ok(())
}

/// The status snapshot, with the etcd store's and the workers' parts when
/// there are.
fn status(
    core: &Networks,
    etcd: &Option<EtcdLink>,
    workers: &Option<Workers>,
    sends: &SendBatch,
    with_macs: bool,
) -> Status {
    let mut s = core.status(Instant::now(), with_macs);
    s.drops
        .add_n(crate::counters::DropReason::SendFailed, sends.failed());
    s.etcd = etcd.as_ref().map(EtcdLink::status);
    s.workers = workers.as_ref().map(Workers::status);
    if let Some(w) = workers {
        s.drops += &w.gate_drops();
    }
    s
}

/// The etcd store's next report, or never without a store.
async fn etcd_report(etcd: &mut Option<EtcdLink>) -> Option<crate::etcd::store::Report> {
    match etcd {
        Some(link) => link.report().await,
        None => std::future::pending().await,
    }
}

/// Re-read the config and apply it; logs one line either way and returns
/// the admin reply: `{"ok":"SUMMARY"}` or `{"error":"ONE-LINE ERROR"}`.
fn reload(
    path: &Path,
    running: &mut Config,
    core: &mut Networks,
    metrics: &mut Exporter<Status>,
) -> String {
    let r = Config::load(path).and_then(|new| {
        let (from, to) = (running.metrics_listen, new.metrics_listen);
        let moved = from != to;
        if moved && let Err(e) = metrics.move_to(from, to, "tapmesh-switch") {
            let problem = format!("{e}; nothing was changed");
            return Err(ConfigError::new(path, "metrics-listen", problem));
        }
        let level = (running.log_level != new.log_level).then(|| new.log_level.clone());
        let r = crate::reload::apply(path, running, new, core, Instant::now());
        match &r {
            Err(_) if moved => {
                // Refused: serve where the running config says.
                let _ = metrics.move_to(to, from, "tapmesh-switch");
            }
            Ok(_) if moved => tracing::info!(from = ?from, to = ?to, "metrics-listen moved"),
            _ => {}
        }
        r.map(|changes| (changes, level))
    });
    core.count_reload(r.is_ok());
    let r = r
        .map(|(changes, level)| {
            if let Some(l) = &level {
                tapmesh_shell::log_level::apply(l.as_deref());
            }
            let summary = crate::reload::summary(&changes, level.as_ref().map(Option::as_deref));
            tracing::info!("config reloaded: {summary}");
            summary
        })
        .map_err(|e| {
            tracing::warn!("config reload refused, the running config stays: {e}");
            e.to_string()
        });
    tapmesh_shell::reload::reply(&r)
}
