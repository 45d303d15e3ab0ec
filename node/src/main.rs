//! `tapmesh-node`: keygen, pubkey, check, run, status, reload, capture.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tapmesh_node::engine::Status;
use tapmesh_node::local_switch::{LocalStatus, PortKind};
use tapmesh_node::{config::Config, daemon, device::FrameDevice, tap};
use tapmesh_shell::admin::{drops_line, variant_name};
use tapmesh_shell::{EXIT_CONFIG, admin, init_logging, load_config, shutdown_signal};

#[derive(Parser)]
#[command(
    name = "tapmesh-node",
    version = tapmesh_shell::VERSION,
    about = "tapmesh node: a TAP device on the virtual LAN"
)]
struct Cli {
    /// Log level or filter, e.g. `info`, `debug`; overrides the config's
    /// `log-level` (also on reload) and RUST_LOG.
    #[arg(long, global = true)]
    log_level: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print a new base64 private key.
    Keygen,
    /// Read a private key on stdin, print its public key.
    Pubkey,
    /// Run the node.
    Run {
        /// Path to node.toml.
        #[arg(long)]
        config: PathBuf,
    },
    /// Validate a config file without running (exit 0, or 2 with the error).
    Check {
        /// Path to node.toml.
        #[arg(long)]
        config: PathBuf,
    },
    /// Re-read the running node's config file and apply what can change
    /// live: VM ports and userspace hosts (as SIGHUP does). Exit 0, or 2
    /// with the one-line reason it was refused.
    Reload {
        /// The admin socket (default: from --config).
        #[arg(long)]
        socket: Option<PathBuf>,
        /// Read the admin socket path from this config.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Show the session and counters of a running node.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// The admin socket (default: from --config).
        #[arg(long)]
        socket: Option<PathBuf>,
        /// Read the admin socket path from this config.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Mesh mode: capture the frames on this node's direct paths, in clear,
    /// as pcapng on stdout (or --write FILE): one interface per peer, with
    /// directions (see the README's "Lab: capture"). Runs until interrupted.
    Capture {
        #[command(flatten)]
        args: tapmesh_shell::capture::client::CaptureArgs,
        /// The admin socket (default: from --config).
        #[arg(long)]
        socket: Option<PathBuf>,
        /// Read the admin socket path from this config.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

const PROGRAM: &str = "tapmesh-node";

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Keygen => tapmesh_shell::keygen(),
        Cmd::Pubkey => tapmesh_shell::pubkey("tapmesh-node"),
        Cmd::Check { config } => tapmesh_shell::check_config(PROGRAM, &config, Config::load),
        Cmd::Run { config } => {
            tapmesh_shell::dumpable::forbid_dumps_or_warn("tapmesh-node");
            let cfg = match load_config(PROGRAM, &config, Config::load) {
                Ok(c) => c,
                Err(code) => return code,
            };
            init_logging(cli.log_level.as_deref(), cfg.log_level.as_deref());
            match run(cfg, config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Reload { socket, config } => match admin_path("reload", socket, config) {
            Ok(path) => tapmesh_shell::reload::command(PROGRAM, &path),
            Err(code) => code,
        },
        Cmd::Capture {
            args,
            socket,
            config,
        } => match admin_path("capture", socket, config) {
            Ok(path) => args.run(PROGRAM, &path, None),
            Err(code) => code,
        },
        Cmd::Status {
            json,
            socket,
            config,
        } => {
            let path = match admin_path("status", socket, config) {
                Ok(p) => p,
                Err(code) => return code,
            };
            match admin::request(&path, "status") {
                Ok(reply) => {
                    if json {
                        println!("{reply}");
                    } else {
                        print!("{}", render(&reply));
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!(
                        "tapmesh-node: cannot reach the node at {}: {e}",
                        path.display()
                    );
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// The admin socket for `command`: `--socket`, else the config's `admin-socket`.
fn admin_path(
    command: &str,
    socket: Option<PathBuf>,
    config: Option<PathBuf>,
) -> Result<PathBuf, ExitCode> {
    match (socket, config) {
        (Some(s), _) => Ok(s),
        (None, Some(c)) => load_config(PROGRAM, &c, Config::load).map(|c| c.admin_socket),
        (None, None) => {
            eprintln!("tapmesh-node: {command} needs --socket PATH or --config FILE");
            Err(ExitCode::from(EXIT_CONFIG))
        }
    }
}

/// Render a status JSON document as text (the JSON itself if it is not a
/// status).
fn render(json: &str) -> String {
    match serde_json::from_str::<Status>(json) {
        Ok(s) => render_status(&s),
        Err(_) => format!("{json}\n"),
    }
}

fn render_status(v: &Status) -> String {
    let secs = |s: Option<f64>| s.map_or("-".to_owned(), |s| format!("{s:.1}s"));
    let ms = |s: f64| format!("{:.2} ms", s * 1e3);
    let rtt = match v.rtt_secs {
        Some(last) if v.rtt_samples > 0 => format!(
            "{} (mean {} over {} samples)",
            ms(last),
            ms(v.rtt_sum_secs / v.rtt_samples as f64),
            v.rtt_samples
        ),
        _ => "-".to_owned(),
    };
    let mut peers = String::new();
    if v.mesh {
        peers.push_str("mesh peers:\n  name          path      endpoint                  last handshake  rtt\n");
        for p in &v.peers {
            let ago = p
                .last_handshake_secs_ago
                .map_or("-".to_owned(), |s| format!("{s:.1}s ago"));
            let rtt = p.rtt_secs.map_or("-".to_owned(), ms);
            peers.push_str(&format!(
                "  {:<13} {:<9} {:<25} {:<15} {}\n",
                p.name,
                variant_name(&p.path),
                p.endpoint.as_deref().unwrap_or("-"),
                ago,
                rtt
            ));
        }
    }
    for h in &v.hosts {
        peers.push_str(&format!(
            "userspace host {} {}: {} connections open ({} accepted, {} refused), rx {} tx {} frames\n",
            h.mac,
            h.addresses.join(" "),
            h.connections,
            h.counters.connections_accepted,
            h.counters.connections_refused,
            h.counters.rx_frames,
            h.counters.tx_frames,
        ));
    }
    let c = &v.counters;
    let table = format!(
        "node {}  switch {}  session {} (age {}, last handshake {} ago, last heard {} ago)\n\
         rtt to switch {}\n\
         tap rx {} frames / {} bytes, tap tx {} frames / {} bytes\n\
         underlay rx {} datagrams, tx {} datagrams\n\
         handshakes sent {} completed {} (rekeys {}), sessions lost {}, keepalives sent {}\n\
         drops: {}\n",
        v.name,
        v.switch,
        variant_name(&v.session),
        secs(v.session_age_secs),
        secs(v.last_handshake_secs_ago),
        secs(v.last_rx_secs_ago),
        rtt,
        c.tap_rx_frames,
        c.tap_rx_bytes,
        c.tap_tx_frames,
        c.tap_tx_bytes,
        c.udp_rx_datagrams,
        c.udp_tx_datagrams,
        c.handshakes_sent,
        c.handshakes_completed,
        c.rekeys,
        c.sessions_lost,
        c.keepalives_sent,
        drops_line(&v.drops)
    );
    let mut workers = String::new();
    if c.worker_sealed_frames > 0 {
        workers += &format!(
            "tap rx sealed by workers {} frames\n",
            c.worker_sealed_frames
        );
    }
    if c.worker_opened_datagrams > 0 {
        workers += &format!(
            "udp rx opened by workers {} datagrams\n",
            c.worker_opened_datagrams
        );
    }
    if c.worker_open_pauses > 0 {
        workers += &format!(
            "opening on workers paused {} times (they were slower than the node alone)\n",
            c.worker_open_pauses
        );
    }
    table
        + &workers
        + &homes(&v.homes)
        + &v.capture.status_line().unwrap_or_default()
        + &v.local.as_ref().map_or(String::new(), local_ports)
        + &peers
}

/// The configured switches and failovers (only with several switches).
fn homes(h: &tapmesh_node::failover::HomeStatus) -> String {
    if h.switches.len() < 2 {
        return String::new();
    }
    let list: Vec<String> = h
        .switches
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let home = if i == h.home { " (home)" } else { "" };
            format!("{} {}{home}", s.name, s.endpoint)
        })
        .collect();
    let last = match (h.last_failover_secs_ago, h.last_failover_cause) {
        (Some(ago), Some(cause)) => format!(
            ", last {ago:.1}s ago ({} from {})",
            cause.name(),
            h.last_failover_from.as_deref().unwrap_or("-")
        ),
        _ => String::new(),
    };
    format!(
        "switches: {}
failovers {} (lost {}, no answer {}){last}\n",
        list.join(", "),
        h.failovers,
        h.failovers_lost,
        h.failovers_no_answer,
    )
}

/// The local switch's ports, one line each (only if there is more than the
/// TAP and the uplink to show).
fn local_ports(local: &LocalStatus) -> String {
    let ports = &local.ports;
    if ports.len() <= 2 && ports.iter().all(|p| p.kind != PortKind::Vm) {
        return String::new();
    }
    let mut out = format!(
        "local switch: {} MACs\n  kind    up    macs  rx frames   tx frames   port\n",
        local.macs
    );
    for p in ports {
        out.push_str(&format!(
            "  {:<7} {:<5} {:<5} {:<11} {:<11} {}\n",
            p.kind.name(),
            if p.up { "up" } else { "down" },
            p.macs,
            p.counters.rx_frames,
            p.counters.tx_frames,
            p.name,
        ));
    }
    out
}

fn run(cfg: Config, path: PathBuf) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let bind: std::net::SocketAddr = if cfg.core.switch_addr.is_ipv4() {
            "0.0.0.0:0".parse()?
        } else {
            "[::]:0".parse()?
        };
        let std_sock = std::net::UdpSocket::bind(bind).context("binding the UDP socket")?;
        let socket =
            tapmesh_shell::udp::UdpLink::new(std_sock).context("setting up the UDP socket")?;
        let tap = cfg
            .tap
            .as_ref()
            .map(|t| tap::open(t, cfg.workers))
            .transpose()?;
        let admin_listener = admin::bind(&cfg.admin_socket)
            .with_context(|| format!("admin socket {}", cfg.admin_socket.display()))?;
        tracing::info!(
            name = %cfg.name,
            tap = %cfg.tap.as_ref().map_or("none", |t| t.name.as_str()),
            mtu = cfg.core.mtu,
            offload = tap.as_ref().is_some_and(|t| t.has_vnet()),
            workers = cfg.workers,
            vm_ports = cfg.vm_ports.len(),
            hosts = cfg.hosts.len(),
            switch = %cfg.core.switch_addr,
            "tapmesh-node running"
        );
        let admin_path = cfg.admin_socket.clone();
        let r = daemon::run(
            cfg,
            &path,
            tap,
            socket,
            Some(admin_listener),
            shutdown_signal(),
        )
        .await;
        let _ = std::fs::remove_file(&admin_path);
        tracing::info!("tapmesh-node stopped");
        r.context("node loop")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapmesh_node::counters::DropReason;
    use tapmesh_node::local_switch::{PortCounters, PortStatus};
    use tapmesh_node::peers::{Path, PeerStatus};
    use tapmesh_node::userhost::{HostCounters, HostStatus};

    /// A status with every part filled in, as the node serializes it.
    fn full_status() -> Status {
        let mut s = Status {
            name: "h1".into(),
            switch: "198.18.0.1:7777".into(),
            session: tapmesh_node::engine::LinkState::Established,
            session_age_secs: Some(12.34),
            last_handshake_secs_ago: Some(2.0),
            last_rx_secs_ago: None,
            rtt_secs: Some(0.00123),
            rtt_samples: 4,
            rtt_sum_secs: 0.006,
            mesh: true,
            ..Default::default()
        };
        s.counters.tap_rx_frames = 5;
        s.counters.udp_tx_datagrams = 9;
        s.counters.rekeys = 1;
        s.drops.add_n(DropReason::Runt, 2);
        s.drops.add_n(DropReason::BadTag, 1);
        let peer = |name: &str, path, endpoint: Option<&str>, rtt: Option<f64>| PeerStatus {
            name: name.into(),
            public_key: "k".into(),
            path,
            endpoint: endpoint.map(Into::into),
            candidates: vec![],
            last_handshake_secs_ago: rtt.map(|_| 4.25),
            rtt_secs: rtt,
            tx_frames: 1,
            rx_frames: 2,
            path_changes: 0,
            macs: 1,
            vlans: vec![],
            vouch_secs_left: 30.0,
        };
        s.peers = vec![
            peer("h2", Path::Direct, Some("198.18.0.12:4000"), Some(0.0005)),
            peer("h3", Path::Relayed, None, None),
        ];
        s.hosts = vec![HostStatus {
            mac: "02:00:00:00:00:09".into(),
            addresses: vec!["198.19.0.50/24".into(), "fd00::50/64".into()],
            connections: 1,
            counters: HostCounters {
                rx_frames: 7,
                tx_frames: 8,
                connections_accepted: 3,
                connections_refused: 1,
                ..Default::default()
            },
        }];
        let port = |name: &str, kind, up| PortStatus {
            name: name.into(),
            kind,
            up,
            macs: 1,
            counters: PortCounters {
                rx_frames: 12345,
                tx_frames: 6,
                disconnects: 0,
            },
        };
        s.local = Some(LocalStatus {
            ports: vec![
                port("uplink", PortKind::Uplink, true),
                port("tapmesh0", PortKind::Tap, true),
                port("/run/vm1.sock", PortKind::Vm, false),
            ],
            macs: 3,
            filtered: 0,
        });
        s
    }

    /// The text of a status with every part filled in, as the node
    /// serializes it: the same the renderer printed when it read untyped
    /// JSON, except that the local ports' MAC and frame columns are now
    /// padded to their headers.
    #[test]
    fn text_of_a_full_status() {
        let json = serde_json::to_string(&full_status()).unwrap();
        let expected = "\
node h1  switch 198.18.0.1:7777  session established (age 12.3s, last handshake 2.0s ago, last heard - ago)
rtt to switch 1.23 ms (mean 1.50 ms over 4 samples)
tap rx 5 frames / 0 bytes, tap tx 0 frames / 0 bytes
underlay rx 0 datagrams, tx 9 datagrams
handshakes sent 0 completed 0 (rekeys 1), sessions lost 0, keepalives sent 0
drops: bad_tag 1, runt 2
local switch: 3 MACs
  kind    up    macs  rx frames   tx frames   port
  uplink  up    1     12345       6           uplink
  tap     up    1     12345       6           tapmesh0
  vm      down  1     12345       6           /run/vm1.sock
mesh peers:
  name          path      endpoint                  last handshake  rtt
  h2            direct    198.18.0.12:4000          4.2s ago        0.50 ms
  h3            relayed   -                         -               -
userspace host 02:00:00:00:00:09 198.19.0.50/24 fd00::50/64: 1 connections open (3 accepted, 1 refused), rx 7 tx 8 frames
";
        assert_eq!(render(&json), expected);
        assert_eq!(render("not json"), "not json\n");
    }

    /// Frames sealed by workers get a line of their own, only when there are
    /// some.
    #[test]
    fn text_of_a_node_with_workers() {
        let mut s = Status {
            name: "h1".into(),
            ..Default::default()
        };
        assert!(!render_status(&s).contains("workers"));
        s.counters.worker_sealed_frames = 42;
        let text = render_status(&s);
        assert!(
            text.contains("tap rx sealed by workers 42 frames\n"),
            "{text}"
        );
        assert!(!text.contains("opened by workers"), "{text}");
        s.counters.worker_opened_datagrams = 7;
        let text = render_status(&s);
        assert!(
            text.contains("udp rx opened by workers 7 datagrams\n"),
            "{text}"
        );
        assert!(!text.contains("paused"), "{text}");
        s.counters.worker_open_pauses = 3;
        let text = render_status(&s);
        assert!(text.contains("opening on workers paused 3 times"), "{text}");
    }

    /// With several switches, one line lists them and one the failovers.
    #[test]
    fn text_of_a_node_with_two_switches() {
        use tapmesh_node::failover::{FailoverCause, HomeStatus, SwitchStatus};
        let mut s = Status {
            name: "h1".into(),
            switch: "198.18.0.4:7777".into(),
            ..Default::default()
        };
        s.homes = HomeStatus {
            switches: vec![
                SwitchStatus {
                    name: "sw1".into(),
                    endpoint: "198.18.0.3:7777".into(),
                },
                SwitchStatus {
                    name: "sw2".into(),
                    endpoint: "198.18.0.4:7777".into(),
                },
            ],
            home: 1,
            failovers: 1,
            failovers_lost: 1,
            failovers_no_answer: 0,
            last_failover_secs_ago: Some(12.25),
            last_failover_cause: Some(FailoverCause::Lost),
            last_failover_from: Some("sw1".into()),
        };
        let text = render(&serde_json::to_string(&s).unwrap());
        let want = "switches: sw1 198.18.0.3:7777, sw2 198.18.0.4:7777 (home)\n\
                    failovers 1 (lost 1, no answer 0), last 12.2s ago (lost from sw1)\n";
        assert!(text.contains(want), "{text}");
    }
}
