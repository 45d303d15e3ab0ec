//! [`VmIntruder`]: another local user trying a node's VM port, for tests of
//! the port's peer check (`allow-uid`, `allow-gid`).
//!
//! It is a separate process with its own uid and gid (`setpriv`, as
//! [`crate::unprivileged`] runs the node), so the kernel reports those
//! credentials to the node, exactly as for any other local user; the
//! client is a few lines of the system's Python (`/usr/bin/python3`), so
//! the test binary never changes its own credentials. It connects (stream)
//! or sends one broadcast frame (dgram), then for a while counts what the
//! node sends it, and prints one line: `closed=<bool> received=<n>`.
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::process::tail;
use crate::{Netns, Process, wait_until};

/// The Python the intruder runs with (a system path any user can execute).
pub const PYTHON: &str = "/usr/bin/python3";

const SCRIPT: &str = r#"
import os, socket, sys, time
mode, node, own, secs = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
frame = b"\xff" * 6 + b"\x52\x54\x00\x66\x66\x66" + b"\x08\x06" + bytes(46)
if mode == "stream":
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(node)
    try:
        s.sendall(len(frame).to_bytes(4, "big") + frame)
    except OSError:
        pass
else:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(own)
    os.chmod(own, 0o777)  # so the node, another user, can answer
    s.sendto(frame, node)
print("sent", flush=True)
closed, received, end = False, 0, time.time() + secs
while time.time() < end:
    s.settimeout(max(0.01, end - time.time()))
    try:
        b = s.recv(65536)
    except socket.timeout:
        break
    except OSError:
        closed = True
        break
    if mode == "stream" and not b:
        closed = True
        break
    received += 1
print("closed=%s received=%d" % (closed, received), flush=True)
"#;

/// What the intruder saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntruderReport {
    /// The node closed its stream connection.
    pub closed: bool,
    /// Reads (stream) or datagrams (dgram) it got from the node.
    pub received: usize,
}

/// The running intruder; stopped by PID on drop.
#[derive(Debug)]
pub struct VmIntruder {
    process: Process,
}

impl VmIntruder {
    /// Starts the intruder in `ns` as `uid`/`gid` (no supplementary groups)
    /// against the VM port at `node` (`mode`: `"stream"` or `"dgram"`; a
    /// dgram intruder binds `own` first), listening for `listen` after it
    /// sent; returns once it has connected and sent its frame.
    pub fn start(
        ns: &Netns,
        (uid, gid): (u32, u32),
        mode: &str,
        node: &Path,
        own: &Path,
        listen: Duration,
        log: &Path,
    ) -> VmIntruder {
        assert!(
            Path::new(PYTHON).exists(),
            "the VM intruder needs {PYTHON} (Debian: apt-get install python3)"
        );
        let mut cmd: Command = ns.command("setpriv");
        cmd.args([&format!("--reuid={uid}"), &format!("--regid={gid}")])
            .args(["--clear-groups", "--", PYTHON, "-c", SCRIPT, mode])
            .arg(node)
            .arg(own)
            .arg(format!("{}", listen.as_secs_f64()));
        let mut process = Process::spawn_command("intruder", cmd, log);
        let sent = wait_until(Duration::from_secs(10), || {
            assert!(
                process.is_running() || tail(log, 5).contains("sent"),
                "the intruder failed:\n{}",
                tail(log, 20)
            );
            tail(log, 5).contains("sent")
        });
        assert!(sent, "the intruder did not send:\n{}", tail(log, 20));
        VmIntruder { process }
    }

    /// Waits for the intruder to finish listening and returns what it saw.
    pub fn finish(mut self, within: Duration) -> IntruderReport {
        let log = self.process.log().to_owned();
        let done = wait_until(within, || self.process.try_exit().is_some());
        assert!(done, "the intruder did not finish:\n{}", tail(&log, 20));
        let text = tail(&log, 5);
        let line = text
            .lines()
            .find(|l| l.starts_with("closed="))
            .unwrap_or_else(|| panic!("no report from the intruder:\n{}", tail(&log, 20)));
        let mut closed = None;
        let mut received = None;
        for kv in line.split_whitespace() {
            match kv.split_once('=') {
                Some(("closed", v)) => closed = Some(v == "True"),
                Some(("received", v)) => received = v.parse().ok(),
                _ => {}
            }
        }
        IntruderReport {
            closed: closed.expect("closed= in the report"),
            received: received.expect("received= in the report"),
        }
    }
}
