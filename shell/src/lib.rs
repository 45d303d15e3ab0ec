//! What the two daemons' I/O shells share, so `tapmesh-switch` and
//! `tapmesh-node` behave the same at the edges: the root-only admin socket,
//! one-line config errors, the Prometheus exporter, logging setup,
//! `keygen`/`pubkey`, and the shutdown signal. No protocol logic lives here.
//!
//! # Layout
//! - [`admin`]: the local admin socket (bind with safe permissions, request).
//! - [`busy_poll`]: `busy-poll-us`, polling a little before parking (latency).
//! - [`capture`]: live capture: the bounded pcapng buffer, filters, the stream.
//! - [`config`]: config-file errors naming file, key and problem; key files.
//! - [`dumpable`]: no core dumps or same-user ptrace of the daemons (keys).
//! - [`log_level`]: logging to stderr, its filter changed by `reload`.
//! - [`metrics`]: the Prometheus exporter (`metrics-listen`): `/metrics`, `/healthz`.
//! - [`reload`]: the `reload` command, its reply, SIGHUP, the reload counters.
//! - [`udp`]: the underlay socket with batched I/O (UDP GSO, recvmmsg, GRO).
//! - [`unix_path`]: binding unix sockets at a path (stale sockets, permissions).
//! - `testing` (feature `testing`, for the daemons' `tests/cli.rs` only; not
//!   in the product build): checks of the shared command-line contract.
//! - this file: `--version`, key commands, shutdown signal.
//! - `build.rs`: the git commit for `--version`.

pub mod admin;
pub mod busy_poll;
pub mod capture;
pub mod config;
pub mod dumpable;
pub mod log_level;
pub mod metrics;
pub mod reload;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod udp;
pub mod unix_path;

use std::io::Read;
use std::process::ExitCode;

use overlay_proto::keys::StaticSecret;

/// Exit status for bad configuration or bad input on the command line.
pub const EXIT_CONFIG: u8 = 2;

/// What `--version` prints after the program's name: the crate version and
/// the git commit it was built from (`build.rs`; "unknown" outside a
/// checkout unless `TAPMESH_COMMIT` was set at build time).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("TAPMESH_COMMIT"),
    ")"
);

/// Loads a config with `load`; on failure prints the one-line error
/// (`PROGRAM: config error: FILE: KEY: PROBLEM`) and gives the exit status 2
/// to return.
pub fn load_config<T>(
    program: &str,
    path: &std::path::Path,
    load: impl FnOnce(&std::path::Path) -> Result<T, config::ConfigError>,
) -> Result<T, ExitCode> {
    load(path).map_err(|e| {
        eprintln!("{program}: config error: {e}");
        ExitCode::from(EXIT_CONFIG)
    })
}

/// `check --config FILE`: validates the config as `run` would (key files
/// read, addresses parsed, names and keys unique) without starting anything;
/// prints `FILE: ok` and exits 0, or the one-line error and exits 2.
pub fn check_config<T>(
    program: &str,
    path: &std::path::Path,
    load: impl FnOnce(&std::path::Path) -> Result<T, config::ConfigError>,
) -> ExitCode {
    match load_config(program, path, load) {
        Ok(_) => {
            println!("{}: ok", path.display());
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// `keygen`: print a new base64 private key.
pub fn keygen() -> ExitCode {
    println!("{}", StaticSecret::generate(&mut rand::rng()).to_base64());
    ExitCode::SUCCESS
}

/// `pubkey`: read a private key on stdin, print its public key.
pub fn pubkey(program: &str) -> ExitCode {
    let mut text = String::new();
    if std::io::stdin().read_to_string(&mut text).is_err() {
        eprintln!("{program}: cannot read stdin");
        return ExitCode::from(EXIT_CONFIG);
    }
    match StaticSecret::from_base64(&text) {
        Ok(k) => {
            println!("{}", k.public_key());
            ExitCode::SUCCESS
        }
        Err(_) => {
            eprintln!("{program}: stdin: not a base64 32-byte private key");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

pub use log_level::init as init_logging;

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// A rate-limited drop summary: bad input is counted by the cores and never
/// logged per packet; this logs at most one warning per interval, and only if
/// the total grew.
#[derive(Debug)]
pub struct DropLog {
    interval: std::time::Duration,
    next: std::time::Instant,
    last_total: u64,
    status_cmd: &'static str,
}

impl DropLog {
    /// One summary per 10 s at most; `status_cmd` is what to run for details.
    pub fn new(now: std::time::Instant, status_cmd: &'static str) -> DropLog {
        let interval = std::time::Duration::from_secs(10);
        DropLog {
            interval,
            next: now + interval,
            last_total: 0,
            status_cmd,
        }
    }

    /// Call often; logs when the interval has passed and drops grew.
    pub fn tick(&mut self, now: std::time::Instant, total: u64) {
        if now < self.next {
            return;
        }
        self.next = now + self.interval;
        if total > self.last_total {
            tracing::warn!(
                dropped = total - self.last_total,
                "dropped in the last {} s (by reason: `{}`)",
                self.interval.as_secs(),
                self.status_cmd
            );
            self.last_total = total;
        }
    }
}
