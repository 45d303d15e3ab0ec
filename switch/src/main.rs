//! `tapmesh-switch`: keygen, pubkey, check, run, status, reload, impair,
//! link, mirror, groups, querier, capture.
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
        #[command(flatten)]
        admin: AdminArgs,
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
    /// Impair a node's link on a running switch: loss, bursts, delay,
    /// jitter, reordering, duplication, corruption, rate (see the README's
    /// "Lab: link impairment"). Replaces what the direction did.
    Impair {
        /// The node.
        node: String,
        /// Only frames to the node (default: both directions).
        #[arg(long, conflicts_with = "ingress")]
        egress: bool,
        /// Only frames from the node.
        #[arg(long)]
        ingress: bool,
        /// Remove every impairment of the node (both directions, link up).
        #[arg(long, conflicts_with_all = ["egress", "ingress", "settings"])]
        clear: bool,
        /// KEY=VALUE: loss=5% burst-enter=1% burst-exit=30% burst-loss=100%
        /// delay=20ms jitter=5ms reorder=10% duplicate=1% corrupt=0.1%
        /// rate=10mbit queue=1000 seed=42.
        settings: Vec<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Port mirroring (SPAN) on a running switch: copies of a node's frames
    /// on another node's TAP (see the README's "Lab: port mirroring").
    Mirror {
        #[command(subcommand)]
        cmd: MirrorCmd,
    },
    /// Show the multicast group table of a running switch, per network and
    /// VLAN: groups, members with their filter mode, sources and timers,
    /// router ports (learned and static) and who is querier.
    Groups {
        /// Only this network.
        #[arg(long)]
        network: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Change the built-in IGMP/MLD querier of a running switch (see the
    /// README's "Lab: snooping controls"); without arguments, show it.
    Querier {
        /// Only this network (default: every network).
        #[arg(long)]
        network: Option<String>,
        /// `on` or `off`, then KEY=VALUE: version=2|3 (IGMPv2+MLDv1 or
        /// IGMPv3+MLDv2) igmp-version=2|3 mld-version=1|2 interval=125s
        /// response=10s last-member-interval=1s last-member-count=2.
        settings: Vec<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Capture the frames the switch forwards, in clear, as pcapng on
    /// stdout (or --write FILE): one interface per node, with directions
    /// (see the README's "Lab: capture"). Runs until interrupted.
    Capture {
        /// Only this network.
        #[arg(long)]
        network: Option<String>,
        #[command(flatten)]
        args: tapmesh_shell::capture::client::CaptureArgs,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Take a node's link down (every frame both ways dropped) or up again.
    Link {
        /// The node.
        node: String,
        /// `down` or `up`.
        #[arg(value_parser = ["down", "up"])]
        state: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// `tapmesh-switch mirror …`.
#[derive(Subcommand)]
enum MirrorCmd {
    /// Add a session, or replace the one of that name.
    Add {
        /// The session's name (letters, digits, '-', '_', '.').
        name: String,
        /// KEY=VALUE: source=NODE destination=NODE (required),
        /// direction=both|received|sent, vlan=VID, rate=FRAMES_PER_SEC.
        settings: Vec<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// End a session.
    Remove {
        /// The session's name.
        name: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Every session with what it copied.
    List {
        /// Print JSON instead of lines.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// Where the running switch's admin socket is.
#[derive(clap::Args)]
struct AdminArgs {
    /// The admin socket (default: from --config, else /run/tapmesh/switch.sock).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Read the admin socket path from this config.
    #[arg(long)]
    config: Option<PathBuf>,
}

impl AdminArgs {
    fn path(self) -> Result<PathBuf, ExitCode> {
        Ok(match (self.socket, self.config) {
            (Some(s), _) => s,
            (None, Some(c)) => load_config(PROGRAM, &c, Config::load)?.admin_socket,
            (None, None) => "/run/tapmesh/switch.sock".into(),
        })
    }
}

const PROGRAM: &str = "tapmesh-switch";

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Keygen => tapmesh_shell::keygen(),
        Cmd::Impair {
            node,
            egress,
            ingress,
            clear,
            settings,
            admin,
        } => {
            let dir = match (egress, ingress) {
                (true, _) => "egress",
                (_, true) => "ingress",
                _ => "both",
            };
            let request = if clear {
                format!("impair {node} clear")
            } else {
                format!("impair {node} {dir} {}", settings.join(" "))
            };
            impair(admin, request)
        }
        Cmd::Capture {
            network,
            args,
            admin,
        } => match admin.path() {
            Ok(path) => args.run(PROGRAM, &path, network),
            Err(code) => code,
        },
        Cmd::Link { node, state, admin } => impair(admin, format!("link {node} {state}")),
        Cmd::Mirror { cmd } => mirror(cmd),
        Cmd::Groups {
            network,
            json,
            admin,
        } => groups(admin, network.as_deref(), json),
        Cmd::Querier {
            network,
            settings,
            admin,
        } => {
            let mut request = String::from("querier");
            if let Some(n) = network {
                request.push_str(&format!(" network={n}"));
            }
            for s in settings {
                request.push(' ');
                request.push_str(&s);
            }
            querier(admin, &request)
        }
        Cmd::Pubkey => tapmesh_shell::pubkey("tapmesh-switch"),
        Cmd::Check { config } => tapmesh_shell::check_config(PROGRAM, &config, Config::load),
        Cmd::Run { config } => {
            tapmesh_shell::dumpable::forbid_dumps_or_warn("tapmesh-switch");
            let cfg = match load_config(PROGRAM, &config, Config::load) {
                Ok(c) => c,
                Err(code) => return code,
            };
            init_logging(cli.log_level.as_deref(), cfg.log_level.as_deref());
            match run(cfg, config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("tapmesh-switch: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Reload { admin } => match admin.path() {
            Ok(path) => tapmesh_shell::reload::command(PROGRAM, &path),
            Err(code) => code,
        },
        Cmd::Status {
            json,
            macs,
            socket,
            config,
        } => {
            let path = match (AdminArgs { socket, config }).path() {
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

/// Send an impairment request; print the node's link as set now.
fn impair(admin: AdminArgs, request: String) -> ExitCode {
    // Check it here first: a bad value is a usage error (exit 2).
    if let Err(e) = tapmesh_switch::impair::Request::parse(&request) {
        eprintln!("{PROGRAM}: {e}");
        return ExitCode::from(2);
    }
    let path = match admin.path() {
        Ok(p) => p,
        Err(code) => return code,
    };
    match admin::request(&path, &request) {
        Ok(reply) => {
            let v: serde_json::Value = serde_json::from_str(&reply).unwrap_or_default();
            if let Some(e) = v["error"].as_str() {
                eprintln!("{PROGRAM}: {e}");
                return ExitCode::FAILURE;
            }
            println!(
                "link {}; egress {}; ingress {}",
                v["link"].as_str().unwrap_or("?"),
                v["egress"].as_str().unwrap_or("?"),
                v["ingress"].as_str().unwrap_or("?")
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "{PROGRAM}: cannot reach the switch at {}: {e}",
                path.display()
            );
            ExitCode::FAILURE
        }
    }
}

/// Send a mirror request; print the session set, the one removed, or the list.
fn mirror(cmd: MirrorCmd) -> ExitCode {
    use tapmesh_switch::mirror::MirrorStatus;
    let (request, admin, json) = match cmd {
        MirrorCmd::Add {
            name,
            settings,
            admin,
        } => (
            format!("mirror add {name} {}", settings.join(" ")),
            admin,
            false,
        ),
        MirrorCmd::Remove { name, admin } => (format!("mirror remove {name}"), admin, false),
        MirrorCmd::List { json, admin } => ("mirror list".to_string(), admin, json),
    };
    // Check it here first: a bad value is a usage error (exit 2).
    if let Err(e) = tapmesh_switch::mirror::Request::parse(&request) {
        eprintln!("{PROGRAM}: {e}");
        return ExitCode::from(2);
    }
    let path = match admin.path() {
        Ok(p) => p,
        Err(code) => return code,
    };
    let reply = match admin::request(&path, &request) {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "{PROGRAM}: cannot reach the switch at {}: {e}",
                path.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let v: serde_json::Value = serde_json::from_str(&reply).unwrap_or_default();
    if let Some(e) = v["error"].as_str() {
        eprintln!("{PROGRAM}: {e}");
        return ExitCode::FAILURE;
    }
    if json {
        println!("{reply}");
    } else if let Some(name) = v["removed"].as_str() {
        println!("mirror {name} removed");
    } else if let Some(list) = v.get("mirrors") {
        let list: Vec<MirrorStatus> = serde_json::from_value(list.clone()).unwrap_or_default();
        for m in list {
            println!("mirror {m}");
        }
    } else {
        let m: MirrorStatus = serde_json::from_value(v).unwrap_or_default();
        println!("mirror {m}");
    }
    ExitCode::SUCCESS
}

/// Print the group table (or its JSON), only `network`'s if given.
fn groups(admin: AdminArgs, network: Option<&str>, json: bool) -> ExitCode {
    let path = match admin.path() {
        Ok(p) => p,
        Err(code) => return code,
    };
    match admin::request(&path, "groups") {
        Ok(reply) => match tapmesh_switch::status::groups::only_network(&reply, network) {
            Ok(m) if json => {
                println!("{}", serde_json::to_string(&m).unwrap_or_default());
                ExitCode::SUCCESS
            }
            Ok(m) => {
                print!("{}", tapmesh_switch::status::groups::render(&m));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{PROGRAM}: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => unreachable_switch(&path, e),
    }
}

/// Send a querier request; print each network's querier as set now.
fn querier(admin: AdminArgs, request: &str) -> ExitCode {
    // Check it here first: a bad value is a usage error (exit 2).
    if let Err(e) = tapmesh_switch::snooping::controls::QuerierRequest::parse(request) {
        eprintln!("{PROGRAM}: {e}");
        return ExitCode::from(2);
    }
    let path = match admin.path() {
        Ok(p) => p,
        Err(code) => return code,
    };
    match admin::request(&path, request) {
        Ok(reply) => {
            let v: serde_json::Value = serde_json::from_str(&reply).unwrap_or_default();
            if let Some(e) = v["error"].as_str() {
                eprintln!("{PROGRAM}: {e}");
                return ExitCode::FAILURE;
            }
            let nets: Vec<tapmesh_switch::snooping::controls::QuerierSettings> =
                serde_json::from_value(v["networks"].clone()).unwrap_or_default();
            for n in nets {
                println!("network {}: querier {}", n.network, n.describe());
            }
            ExitCode::SUCCESS
        }
        Err(e) => unreachable_switch(&path, e),
    }
}

/// The admin socket did not answer.
fn unreachable_switch(path: &std::path::Path, e: std::io::Error) -> ExitCode {
    eprintln!(
        "{PROGRAM}: cannot reach the switch at {}: {e}",
        path.display()
    );
    ExitCode::FAILURE
}

fn run(cfg: Config, path: PathBuf) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let std_sock = tapmesh_switch::workers::bind(cfg.listen, cfg.workers > 1)
            .with_context(|| format!("binding UDP {}", cfg.listen))?;
        let socket = tapmesh_shell::udp::UdpLink::new(std_sock).context("setting up the UDP socket")?;
        let admin = admin::bind(&cfg.admin_socket)
            .with_context(|| format!("admin socket {}", cfg.admin_socket.display()))?;
        tracing::info!(listen = %cfg.listen, networks = cfg.networks.len(), nodes = cfg.networks.iter().map(|n| n.core.nodes.len()).sum::<usize>(), workers = cfg.workers, admin = %cfg.admin_socket.display(), "tapmesh-switch running");
        let admin_path = cfg.admin_socket.clone();
        let r = server::run(cfg, path, socket, Some(admin), shutdown_signal()).await;
        let _ = std::fs::remove_file(&admin_path);
        tracing::info!("tapmesh-switch stopped");
        r.context("switch loop")
    })
}
