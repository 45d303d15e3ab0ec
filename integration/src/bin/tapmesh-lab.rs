//! `tapmesh-lab`: a lab in one command. `up FILE` reads a topology file
//! (hosts with their VLANs, addresses and link impairment, the switch's
//! multicast settings and mirrors), builds the switch and each host in a
//! network namespace with the real binaries, prints how to enter each host,
//! watch the switch and capture, and waits; Ctrl-C (SIGINT) or SIGTERM tears
//! everything down, as does an error halfway. `check FILE` only checks the
//! file; `run FILE -- COMMAND...` runs a command with the lab up and tears
//! it down after. `mcast send|recv` are the multicast ends lab scripts use
//! inside hosts. Finds the binaries beside itself (or in `TAPMESH_BIN_DIR`).
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use integration::lab::{self, Lab, launch, mcast};
use integration::topology::TAP;
use integration::{Topology, bins, stop, tools};

const PROGRAM: &str = "tapmesh-lab";

#[derive(Parser)]
#[command(name = PROGRAM, version, about = "tapmesh labs in network namespaces, in one command")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Bring the lab up, print how to use it, and wait: Ctrl-C or SIGTERM
    /// tears it down.
    Up {
        /// The topology file.
        file: PathBuf,
        /// The lab's name, prefix of its namespaces (default: from the file).
        #[arg(long)]
        name: Option<String>,
    },
    /// Check the topology file only: prints `FILE: ok`, or one line and
    /// exit status 2.
    Check {
        /// The topology file.
        file: PathBuf,
        /// The lab's name (default: from the file).
        #[arg(long)]
        name: Option<String>,
    },
    /// Bring the lab up, run COMMAND (with TAPMESH_LAB_NAME,
    /// TAPMESH_LAB_SOCKET, TAPMESH_LAB_DIR and the binaries in PATH), tear
    /// the lab down, and exit with the command's status.
    Run {
        /// The topology file.
        file: PathBuf,
        /// The lab's name (default: from the file).
        #[arg(long)]
        name: Option<String>,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true)]
        command: Vec<OsString>,
    },
    /// Multicast ends for lab scripts, run inside a host.
    #[command(subcommand)]
    Mcast(McastCmd),
}

#[derive(Subcommand)]
enum McastCmd {
    /// Send numbered datagrams to GROUP:PORT (239.0.0.0/8, [ff1x::]) out of a device.
    Send {
        /// e.g. 239.1.2.3:5000 or [ff15::1234]:5000.
        group: String,
        #[arg(long, default_value = TAP)]
        dev: String,
        #[arg(long, default_value_t = 100)]
        count: u64,
        #[arg(long, default_value_t = 20)]
        interval_ms: u64,
    },
    /// Join GROUP:PORT on a device, print `joined ...`, and after SECONDS
    /// (or on SIGINT/SIGTERM, whichever comes first) print `received N`:
    /// how many of the lab's datagrams arrived.
    Recv {
        /// e.g. 239.1.2.3:5000 or [ff15::1234]:5000.
        group: String,
        #[arg(long, default_value = TAP)]
        dev: String,
        #[arg(long, default_value_t = 5)]
        seconds: u64,
    },
}

fn main() -> ExitCode {
    match Cli::parse().cmd {
        Cmd::Check { file, name } => {
            tapmesh_shell::check_config(PROGRAM, &file, |p| lab::load(p, name.as_deref()))
        }
        Cmd::Up { file, name } => launch_lab(&file, name.as_deref(), None),
        Cmd::Run {
            file,
            name,
            command,
        } => launch_lab(&file, name.as_deref(), Some(&command)),
        Cmd::Mcast(cmd) => run_mcast(cmd),
    }
}

fn run_mcast(cmd: McastCmd) -> ExitCode {
    let result = match cmd {
        McastCmd::Send {
            group,
            dev,
            count,
            interval_ms,
        } => mcast::parse_group(&group)
            .and_then(|g| mcast::send(g, &dev, count, Duration::from_millis(interval_ms))),
        McastCmd::Recv {
            group,
            dev,
            seconds,
        } => mcast::parse_group(&group)
            .and_then(|g| {
                stop::install_handlers();
                // A line a script can wait for before it starts the sender.
                let joined = || {
                    println!("joined {g} on {dev}");
                    let _ = std::io::Write::flush(&mut std::io::stdout());
                };
                mcast::receive(g, &dev, Duration::from_secs(seconds), joined)
            })
            .map(|n| println!("received {n}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{PROGRAM} mcast: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `up` (no command) or `run` (a command).
fn launch_lab(
    file: &std::path::Path,
    name: Option<&str>,
    command: Option<&[OsString]>,
) -> ExitCode {
    let lab = match tapmesh_shell::load_config(PROGRAM, file, |p| lab::load(p, name)) {
        Ok(lab) => lab,
        Err(code) => return code,
    };
    tools::preflight(PROGRAM, tools::DEMO);
    if let Err(e) = bins::build_if_run_by_cargo(&["tapmesh-switch", "tapmesh-node"]) {
        eprintln!("{PROGRAM}: {e}");
        return ExitCode::FAILURE;
    }
    let taken = launch::existing_namespaces(&lab);
    if !taken.is_empty() {
        eprintln!(
            "{PROGRAM}: namespaces {} exist: is lab {} up already? (another --name, or `ip netns del` them)",
            taken.join(", "),
            lab.name
        );
        return ExitCode::FAILURE;
    }
    // Before anything is built, so an early Ctrl-C still cleans up.
    stop::install_handlers();
    // A failure halfway panics inside the topology, whose guards then tear
    // down what was built; say it in one message, not a backtrace hint.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("failed");
        eprintln!("{PROGRAM}: {msg}");
    }));
    println!("bringing lab {} up ...", lab.name);
    let up = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        launch::bring_up(&lab, stop::requested)
    }));
    let topo = match up {
        Ok(Ok(Some(topo))) => topo,
        Ok(Ok(None)) => {
            println!("stopped; lab {} torn down.", lab.name);
            return ExitCode::from(130);
        }
        Ok(Err(e)) => {
            eprintln!("{PROGRAM}: {e}");
            println!("lab {} torn down.", lab.name);
            return ExitCode::FAILURE;
        }
        Err(_) => {
            println!("lab {} torn down.", lab.name);
            return ExitCode::FAILURE;
        }
    };
    let code = match command {
        None => wait_for_stop(&lab, topo),
        Some(cmd) => run_command(&lab, topo, cmd),
    };
    println!("lab {} torn down.", lab.name);
    code
}

fn wait_for_stop(lab: &Lab, mut topo: Topology) -> ExitCode {
    println!("{}", launch::instructions(lab, &topo));
    while !stop::requested() {
        std::thread::sleep(Duration::from_millis(200));
        if !topo.switch_running() {
            eprintln!("{PROGRAM}: the switch exited; tearing down");
            return ExitCode::FAILURE;
        }
    }
    println!("tearing down lab {} ...", lab.name);
    ExitCode::SUCCESS
}

fn run_command(lab: &Lab, topo: Topology, command: &[OsString]) -> ExitCode {
    println!("lab {} is up; running {:?}", lab.name, command);
    let mut child = match std::process::Command::new(&command[0])
        .args(&command[1..])
        .envs(launch::script_env(lab, &topo))
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{PROGRAM}: cannot run {:?}: {e}", command[0]);
            return ExitCode::FAILURE;
        }
    };
    let mut signalled = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) => {}
            Err(_) => break None,
        }
        if stop::requested() && !signalled {
            // Our own child, by PID: it may have had the Ctrl-C already.
            // SAFETY: kill has no memory-safety preconditions; the child
            // is not reaped yet, so its PID cannot have been reused.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            signalled = true;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    println!("tearing down lab {} ...", lab.name);
    drop(topo);
    match status.and_then(|s| s.code()) {
        Some(c) => ExitCode::from(c.clamp(0, 255) as u8),
        None => ExitCode::FAILURE,
    }
}
