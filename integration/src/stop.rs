//! Ctrl-C handling for the long-running binaries (the demo, the lab, the
//! benchmarks): a signal only sets a flag; the program checks it between
//! steps and while waiting for children, and then unwinds normally so every
//! guard (namespaces, processes) is dropped.
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Installs SIGINT and SIGTERM handlers that set the stop flag. Children
/// started with [`crate::Process`] live in their own process group, so a
/// terminal's Ctrl-C reaches only us; we stop them by PID.
pub fn install_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe; the sigaction struct is fully initialised.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    }
}

/// Whether SIGINT or SIGTERM arrived.
pub fn requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// `Err("interrupted")` once a stop was requested.
pub fn check() -> Result<(), String> {
    if requested() {
        Err("interrupted (SIGINT/SIGTERM)".into())
    } else {
        Ok(())
    }
}

/// Waits for `child` to exit, at most `timeout`. On timeout or Ctrl-C the
/// child is killed by PID (SIGKILL) and reaped, and an error returned.
pub fn wait_child(child: &mut Child, timeout: Duration, what: &str) -> Result<ExitStatus, String> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) => {}
            Err(e) => return Err(format!("waiting for {what}: {e}")),
        }
        let why = if requested() {
            Some("interrupted")
        } else if Instant::now() >= deadline {
            Some("timed out")
        } else {
            None
        };
        if let Some(why) = why {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{what}: {why} after at most {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
