//! `tapmesh-switch`: keygen, pubkey, check, run, status, reload.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tapmesh_shell::{admin, init_logging, load_config, shutdown_signal};
use tapmesh_switch::{config::Config, server};

#[derive(Parser)]
#[command(
    name = "tapmesh-switch",
    version = tapmesh_shell::VERSION,
    about = "tapmesh central switch")]
struct Cli {
    /// Log level or filter (overrides RUST_LOG), e.g. `info`, `debug`.
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
    /// Run the switch.
    Run {
        /// Path to switch.toml.
        #[arg(long)]
        config: PathBuf,
    },
    /// Validate a config file without running (exit 0, or 2 with the error).
    Check {
        /// Path to switch.toml.
        #[arg(long)]
        config: PathBuf,
    },
    /// Re-read the running switch's config file and apply what changed
    /// (as SIGHUP does). Exit 0, or 2 with the one-line reason it was refused.
    Reload {
        /// The admin socket (default: from --config, else /run/tapmesh/switch.sock).
        #[arg(long)]
        socket: Option<PathBuf>,
        /// Read the admin socket path from this config.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Show nodes, counters and (with --macs) the MAC table of a running switch.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Include the MAC table.
        #[arg(long)]
        macs: bool,
        /// The admin socket (default: from --config, else /run/tapmesh/switch.sock).
        #[arg(long)]
        socket: Option<PathBuf>,
        /// Read the admin socket path from this config.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

const PROGRAM: &str = "tapmesh-switch";

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Keygen => tapmesh_shell::keygen(),
        Cmd::Pubkey => tapmesh_shell::pubkey("tapmesh-switch"),
        Cmd::Check { config } => tapmesh_shell::check_config(PROGRAM, &config, Config::load),
        Cmd::Run { config } => {
            tapmesh_shell::dumpable::forbid_dumps_or_warn("tapmesh-switch");
            let cfg = match load_config(PROGRAM, &config, Config::load) {
                Ok(c) => c,
                Err(code) => return code,
            };
            init_logging(cli.log_level.as_deref());
            match run(cfg, config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("tapmesh-switch: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Reload { socket, config } => match admin_path(socket, config) {
            Ok(path) => tapmesh_shell::reload::command(PROGRAM, &path),
            Err(code) => code,
        },
        Cmd::Status {
            json,
            macs,
            socket,
            config,
        } => {
            let path = match admin_path(socket, config) {
                Ok(p) => p,
                Err(code) => return code,
            };
            let req = if macs { "status macs" } else { "status" };
            match admin::request(&path, req) {
                Ok(reply) => {
                    if json {
                        println!("{reply}");
                    } else {
                        print!("{}", tapmesh_switch::status::render_table(&reply));
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!(
                        "tapmesh-switch: cannot reach the switch at {}: {e}",
                        path.display()
                    );
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// The admin socket: `--socket`, else the config's `admin-socket`, else the default.
fn admin_path(socket: Option<PathBuf>, config: Option<PathBuf>) -> Result<PathBuf, ExitCode> {
    match (socket, config) {
        (Some(s), _) => Ok(s),
        (None, Some(c)) => load_config(PROGRAM, &c, Config::load).map(|c| c.admin_socket),
        (None, None) => Ok("/run/tapmesh/switch.sock".into()),
    }
}

fn run(cfg: Config, path: PathBuf) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let std_sock = std::net::UdpSocket::bind(cfg.listen)
            .with_context(|| format!("binding UDP {}", cfg.listen))?;
        let socket = tapmesh_shell::udp::UdpLink::new(std_sock).context("setting up the UDP socket")?;
        let admin = admin::bind(&cfg.admin_socket)
            .with_context(|| format!("admin socket {}", cfg.admin_socket.display()))?;
        tracing::info!(listen = %cfg.listen, networks = cfg.networks.len(), nodes = cfg.networks.iter().map(|n| n.core.nodes.len()).sum::<usize>(), admin = %cfg.admin_socket.display(), "tapmesh-switch running");
        let admin_path = cfg.admin_socket.clone();
        let r = server::run(cfg, path, socket, Some(admin), shutdown_signal()).await;
        let _ = std::fs::remove_file(&admin_path);
        tracing::info!("tapmesh-switch stopped");
        r.context("switch loop")
    })
}
