//! Keeping the daemons' memory, and so their private keys, out of core
//! dumps and away from other processes of the same user.
//!
//! `prctl(PR_SET_DUMPABLE, 0)` (what OpenSSH's `ssh-agent` and GnuPG's agent
//! do) makes the kernel write no core dump for the process and lets no
//! process without `CAP_SYS_PTRACE` attach to it or read its memory through
//! `/proc/PID/mem`, even one running as the same user. Its `/proc/PID` files
//! then belong to root. The daemons call it first thing in `run`.

/// Mark this process as not dumpable, before it reads any key; if the
/// kernel refuses, say so on stderr (one line) and go on.
pub fn forbid_dumps_or_warn(program: &str) {
    if let Err(e) = forbid_dumps() {
        eprintln!("{program}: warning: cannot forbid core dumps (prctl PR_SET_DUMPABLE): {e}");
    }
}

/// Mark this process as not dumpable. Fails only on a kernel without
/// `prctl` (not Linux), which the daemons do not run on.
pub fn forbid_dumps() -> std::io::Result<()> {
    // SAFETY: PR_SET_DUMPABLE takes an integer argument and touches no
    // memory of ours; the unused arguments are zero as the man page asks.
    let r = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Whether this process may be dumped (`PR_GET_DUMPABLE`).
pub fn is_dumpable() -> bool {
    // SAFETY: PR_GET_DUMPABLE only returns the flag.
    unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) != 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidding_dumps_clears_the_flag() {
        // Run in a child process, so the test binary itself stays as it was.
        if std::env::var_os("TAPMESH_DUMPABLE_CHILD").is_some() {
            forbid_dumps().unwrap();
            assert!(!is_dumpable());
            return;
        }
        assert!(is_dumpable(), "test processes start dumpable");
        let exe = std::env::current_exe().unwrap();
        let st = std::process::Command::new(exe)
            .args([
                "--exact",
                "dumpable::tests::forbidding_dumps_clears_the_flag",
            ])
            .env("TAPMESH_DUMPABLE_CHILD", "1")
            .status()
            .unwrap();
        assert!(st.success());
    }
}
