//! The `capture` command of both daemons: send the request, then copy the
//! pcapng stream to stdout or a file until the daemon or the reader stops
//! (Ctrl-C, or the program reading stdout exits).
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::{CaptureSpec, Filter};

/// The `capture` command's options both daemons share.
#[derive(Debug, clap::Args)]
pub struct CaptureArgs {
    /// Only frames from or to this node (at a node: this peer); repeatable.
    #[arg(long = "node")]
    pub nodes: Vec<String>,
    /// Only frames of this VLAN.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=4094))]
    pub vlan: Option<u16>,
    /// Write to this file instead of stdout.
    #[arg(long)]
    pub write: Option<PathBuf>,
    /// A filter in libpcap's language, as for tcpdump (e.g. `icmp`).
    pub filter: Vec<String>,
}

impl CaptureArgs {
    /// Run the capture (see [`run`]) on the daemon at `socket`, in
    /// `network` if given.
    pub fn run(self, program: &str, socket: &Path, network: Option<String>) -> ExitCode {
        let spec = CaptureSpec {
            network,
            nodes: self.nodes,
            vlan: self.vlan,
            filter: (!self.filter.is_empty()).then(|| self.filter.join(" ")),
        };
        run(program, socket, &spec, self.write.as_deref())
    }
}

/// Run the capture `spec` against the daemon whose admin socket is at
/// `socket`, writing pcapng to `write` (stdout if `None`). A bad filter is
/// refused before connecting (exit 2); a refused request prints the
/// daemon's one-line reason (exit 1).
pub fn run(program: &str, socket: &Path, spec: &CaptureSpec, write: Option<&Path>) -> ExitCode {
    if let Some(expr) = &spec.filter
        && let Err(e) = Filter::compile(expr)
    {
        eprintln!("{program}: {e}");
        return ExitCode::from(crate::EXIT_CONFIG);
    }
    let mut conn = match std::os::unix::net::UnixStream::connect(socket) {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "{program}: cannot reach the daemon at {}: {e}",
                socket.display()
            );
            return ExitCode::FAILURE;
        }
    };
    // The write side stays open: closing it ends the capture.
    let line = spec.request_line() + "\n";
    if let Err(e) = conn.write_all(line.as_bytes()) {
        eprintln!("{program}: sending the capture request: {e}");
        return ExitCode::FAILURE;
    }
    let mut out: Box<dyn Write> = match write {
        None => Box::new(std::io::stdout().lock()),
        Some(p) => match std::fs::File::create(p) {
            Ok(f) => Box::new(f),
            Err(e) => {
                eprintln!("{program}: cannot create {}: {e}", p.display());
                return ExitCode::FAILURE;
            }
        },
    };
    let mut buf = vec![0u8; 1 << 16];
    let mut first = true;
    loop {
        let n = match conn.read(&mut buf) {
            Ok(0) => return ExitCode::SUCCESS,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("{program}: capture stream: {e}");
                return ExitCode::FAILURE;
            }
        };
        // A pcapng stream starts with a section header, never with `{`.
        if first && buf[0] == b'{' {
            let mut reply = buf[..n].to_vec();
            let _ = conn.read_to_end(&mut reply);
            let v: serde_json::Value = serde_json::from_slice(&reply).unwrap_or_default();
            let reason = v["error"].as_str().unwrap_or("refused");
            eprintln!("{program}: capture refused: {reason}");
            return ExitCode::FAILURE;
        }
        first = false;
        // Each chunk goes out at once, so a live reader sees frames as they
        // come; a reader that went away ends the capture.
        if out.write_all(&buf[..n]).and_then(|()| out.flush()).is_err() {
            return ExitCode::SUCCESS;
        }
    }
}
