//! What the two daemons' I/O shells share, so `tapmesh-switch` and
//! `tapmesh-node` behave the same at the edges: the root-only admin socket,
//! one-line config errors, logging setup, `keygen`/`pubkey`, and the
//! shutdown signal. No protocol logic lives here.
//!
//! # Layout
//! - [`admin`]: the local admin socket (bind with safe permissions, request).
//! - [`config`]: config-file errors naming file, key and problem; key files.
//! - this file: logging, key commands, shutdown signal.

pub mod admin;
pub mod config;

use std::io::Read;
use std::process::ExitCode;

use overlay_proto::keys::StaticSecret;

/// Exit status for bad configuration or bad input on the command line.
pub const EXIT_CONFIG: u8 = 2;

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

/// Log to stderr; `level` (from `--log-level`) overrides `RUST_LOG`; default `info`.
pub fn init_logging(level: Option<&str>) {
    let filter = match level {
        Some(l) => tracing_subscriber::EnvFilter::new(l),
        None => tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

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
