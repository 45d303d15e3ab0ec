//! The [`Process`] guard: a child started inside a namespace, stopped by PID.
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::Netns;
use crate::wait::wait_until;

/// How long a process gets to exit after SIGTERM before it is sent SIGKILL.
pub const TERM_GRACE: Duration = Duration::from_secs(3);

/// A child process running `program args…` inside a namespace, with stdout and
/// stderr appended to a log file. On drop it is sent SIGTERM, then SIGKILL
/// after [`TERM_GRACE`], and reaped. Only this PID is ever signalled.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Child,
    log: PathBuf,
    exit: Option<ExitStatus>,
}

impl Process {
    /// Starts `program args…` in `ns` via `ip netns exec` (which execs, so the
    /// PID is the program's own). The child gets its own process group, so a
    /// Ctrl-C meant for the test or demo does not reach it directly: the guard
    /// decides how it ends.
    pub fn spawn(
        name: &str,
        ns: &Netns,
        program: &Path,
        args: &[&str],
        log: impl Into<PathBuf>,
    ) -> Process {
        let mut cmd = ns.command(program);
        cmd.args(args);
        Self::spawn_command(name, cmd, log)
    }

    /// Starts a prepared command (stdin, stdout and stderr are set here).
    pub fn spawn_command(name: &str, mut cmd: Command, log: impl Into<PathBuf>) -> Process {
        use std::os::unix::process::CommandExt;
        let log = log.into();
        let file = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap_or_else(|e| panic!("cannot open log {}: {e}", log.display()));
        let out = file.try_clone().expect("cannot duplicate log file handle");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(file))
            .process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        Process {
            name: name.to_string(),
            child,
            log,
            exit: None,
        }
    }

    /// The process' PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A short name for messages (`switch`, `h1`, …).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The log file receiving its stdout and stderr.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Whether it is still running (reaps it if it has exited).
    pub fn is_running(&mut self) -> bool {
        self.try_exit().is_none()
    }

    /// Its exit status, if it has exited.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    /// Sends `signal` to this PID, if it has not been reaped yet.
    pub fn signal(&mut self, signal: libc::c_int) {
        if self.try_exit().is_some() {
            return;
        }
        let pid = self.pid() as libc::pid_t;
        // SAFETY: kill has no memory-safety preconditions; the PID is our
        // unreaped child, so it cannot have been reused.
        unsafe { libc::kill(pid, signal) };
    }

    /// SIGKILL and reap, as a crash would (no cleanup by the process).
    pub fn kill9(&mut self) -> ExitStatus {
        self.signal(libc::SIGKILL);
        self.wait()
    }

    /// SIGTERM, then SIGKILL after [`TERM_GRACE`]; reaps it and returns its
    /// exit status.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        if !wait_until(TERM_GRACE, || self.try_exit().is_some()) {
            self.signal(libc::SIGKILL);
        }
        self.wait()
    }

    fn wait(&mut self) -> ExitStatus {
        if let Some(status) = self.exit {
            return status;
        }
        let status = self.child.wait().expect("waiting for our own child failed");
        self.exit = Some(status);
        status
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last `lines` lines of the file at `path` (empty if unreadable).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
