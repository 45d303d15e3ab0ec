//! `tapmesh-node`: keygen, pubkey, check, run, status, reload.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tapmesh_node::{config::Config, daemon, device::FrameDevice, tap};
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

fn render(json: &str) -> String {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else {
        return format!("{json}\n");
    };
    let secs = |k: &str| v[k].as_f64().map_or("-".to_owned(), |s| format!("{s:.1}s"));
    let drops: Vec<String> = v["drops"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, c)| c.as_u64().unwrap_or(0) > 0)
        .map(|(k, c)| format!("{k} {c}"))
        .collect();
    let ms = |s: f64| format!("{:.2} ms", s * 1e3);
    let rtt = match (v["rtt_secs"].as_f64(), v["rtt_samples"].as_u64()) {
        (Some(last), Some(n)) if n > 0 => format!(
            "{} (mean {} over {n} samples)",
            ms(last),
            ms(v["rtt_sum_secs"].as_f64().unwrap_or(0.0) / n as f64)
        ),
        _ => "-".to_owned(),
    };
    let mut peers = String::new();
    if v["mesh"].as_bool() == Some(true) {
        peers.push_str("mesh peers:\n  name          path      endpoint                  last handshake  rtt\n");
        for p in v["peers"].as_array().into_iter().flatten() {
            let ago = p["last_handshake_secs_ago"]
                .as_f64()
                .map_or("-".to_owned(), |s| format!("{s:.1}s ago"));
            let rtt = p["rtt_secs"].as_f64().map_or("-".to_owned(), ms);
            peers.push_str(&format!(
                "  {:<13} {:<9} {:<25} {:<15} {}\n",
                p["name"].as_str().unwrap_or("?"),
                p["path"].as_str().unwrap_or("?"),
                p["endpoint"].as_str().unwrap_or("-"),
                ago,
                rtt
            ));
        }
    }
    for h in v["hosts"].as_array().into_iter().flatten() {
        let addrs: Vec<&str> = h["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str())
            .collect();
        peers.push_str(&format!(
            "userspace host {} {}: {} connections open ({} accepted, {} refused), rx {} tx {} frames\n",
            h["mac"].as_str().unwrap_or("?"),
            addrs.join(" "),
            h["connections"],
            h["connections_accepted"],
            h["connections_refused"],
            h["rx_frames"],
            h["tx_frames"],
        ));
    }
    let table = format!(
        "node {}  switch {}  session {} (age {}, last handshake {} ago, last heard {} ago)\n\
         rtt to switch {}\n\
         tap rx {} frames / {} bytes, tap tx {} frames / {} bytes\n\
         underlay rx {} datagrams, tx {} datagrams\n\
         handshakes sent {} completed {} (rekeys {}), sessions lost {}, keepalives sent {}\n\
         drops: {}\n",
        v["name"].as_str().unwrap_or("?"),
        v["switch"].as_str().unwrap_or("?"),
        v["session"].as_str().unwrap_or("?"),
        secs("session_age_secs"),
        secs("last_handshake_secs_ago"),
        secs("last_rx_secs_ago"),
        rtt,
        v["tap_rx_frames"],
        v["tap_rx_bytes"],
        v["tap_tx_frames"],
        v["tap_tx_bytes"],
        v["udp_rx_datagrams"],
        v["udp_tx_datagrams"],
        v["handshakes_sent"],
        v["handshakes_completed"],
        v["rekeys"],
        v["sessions_lost"],
        v["keepalives_sent"],
        if drops.is_empty() {
            "none".into()
        } else {
            drops.join(", ")
        }
    );
    table + &local_ports(&v) + &peers
}

/// The local switch's ports, one line each (only if there is more than the
/// TAP and the uplink to show).
fn local_ports(v: &serde_json::Value) -> String {
    let ports = v["local"]["ports"]
        .as_array()
        .map_or(&[][..], |p| p.as_slice());
    if ports.len() <= 2 && ports.iter().all(|p| p["kind"] != "vm") {
        return String::new();
    }
    let mut out = format!(
        "local switch: {} MACs\n  kind    up    macs  rx frames   tx frames   port\n",
        v["local"]["macs"]
    );
    for p in ports {
        out.push_str(&format!(
            "  {:<7} {:<5} {:<5} {:<11} {:<11} {}\n",
            p["kind"].as_str().unwrap_or("?"),
            if p["up"] == true { "up" } else { "down" },
            p["macs"],
            p["rx_frames"],
            p["tx_frames"],
            p["name"].as_str().unwrap_or("?"),
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
        let tap = cfg.tap.as_ref().map(tap::open).transpose()?;
        let admin_listener = admin::bind(&cfg.admin_socket)
            .with_context(|| format!("admin socket {}", cfg.admin_socket.display()))?;
        tracing::info!(
            name = %cfg.name,
            tap = %cfg.tap.as_ref().map_or("none", |t| t.name.as_str()),
            mtu = cfg.core.mtu,
            offload = tap.as_ref().is_some_and(|t| t.has_vnet()),
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
