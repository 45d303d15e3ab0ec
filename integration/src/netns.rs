//! Network namespaces: the [`Netns`] guard, commands run inside one, and Rust
//! code run inside one.
//!
//! Names are unique per process and topology ([`unique_prefix`]:
//! `tmi{pid}x{counter}`), because tests run in parallel threads and in
//! parallel test binaries.
use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::{Command, Output, Stdio};
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};

/// Prefix of every namespace this crate creates.
pub const NAME_PREFIX: &str = "tmi";

/// A fresh prefix for one topology's namespaces: `tmi{pid}x{counter}`.
pub fn unique_prefix() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{NAME_PREFIX}{}x{n}", std::process::id())
}

/// A named network namespace (`ip netns add`), deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates namespace `name` and brings its `lo` up. Panics if the
    /// namespace cannot be made; the first one of a process checks root and
    /// the tools first ([`crate::tools::preflight`]).
    pub fn new(name: &str) -> Netns {
        crate::tools::preflight("tapmesh namespace tests", crate::tools::TESTS);
        crate::require_root();
        sweep_stale_once();
        run_ok("ip", &["netns", "add", name]);
        let ns = Netns {
            name: name.to_string(),
        };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// The namespace's name, as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n NAME args…`; panics with its stderr if it fails.
    pub fn ip(&self, args: &[&str]) -> Output {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        run_ok("ip", &full)
    }

    /// A `Command` for `ip netns exec NAME program`: the program runs with
    /// this namespace as its network namespace, under the same PID (`ip netns
    /// exec` execs, it does not fork).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Runs `program args…` inside the namespace and returns its output,
    /// whatever its exit status.
    pub fn exec(&self, program: &str, args: &[&str]) -> Output {
        self.command(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run `{program}` in netns {}: {e}", self.name))
    }

    /// Like [`Netns::exec`] but panics with stdout and stderr if the command fails.
    pub fn exec_ok(&self, program: &str, args: &[&str]) -> Output {
        let out = self.exec(program, args);
        assert!(
            out.status.success(),
            "`{program} {}` in netns {} failed ({}):\n{}{}",
            args.join(" "),
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Loads an nft ruleset (`nft -f -`) in the namespace; panics with
    /// nft's complaint if it fails.
    pub fn nft(&self, script: &str) {
        use std::io::Write;
        let mut c = self
            .command("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run nft in netns {}: {e}", self.name));
        c.stdin
            .take()
            .expect("nft stdin")
            .write_all(script.as_bytes())
            .expect("write nft script");
        let out = c.wait_with_output().expect("wait for nft");
        assert!(
            out.status.success(),
            "nft in netns {} failed: {}\n{script}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Drops all UDP to and from `peer` in this namespace (an nft table
    /// `tapmesh_block`), until [`unblock_udp`](Self::unblock_udp).
    pub fn block_udp_with(&self, peer: std::net::Ipv4Addr) {
        self.nft(&format!(
            "table inet tapmesh_block {{\n\
               chain out {{ type filter hook output priority 0; ip daddr {peer} meta l4proto udp drop; }}\n\
               chain in {{ type filter hook input priority 0; ip saddr {peer} meta l4proto udp drop; }}\n\
             }}\n"
        ));
    }

    /// Removes what [`block_udp_with`](Self::block_udp_with) added.
    pub fn unblock_udp(&self) {
        self.nft("delete table inet tapmesh_block\n");
    }

    /// Runs `f` on a new thread whose network namespace is this one, and
    /// returns its result. Sockets `f` creates belong to this namespace for
    /// their whole life, whichever thread uses them later; that is how tests
    /// open TCP, UDP and packet sockets inside hosts. Only the helper thread
    /// changes namespace, so the caller's thread is never affected.
    pub fn enter<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        let path = format!("/run/netns/{}", self.name);
        let file = File::open(&path).unwrap_or_else(|e| panic!("cannot open {path}: {e}"));
        std::thread::scope(|s| {
            let handle = s.spawn(move || {
                // SAFETY: setns on an open namespace fd changes only this
                // thread's network namespace; the thread ends after `f`.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert!(
                    rc == 0,
                    "setns({path}) failed: {}",
                    std::io::Error::last_os_error()
                );
                f()
            });
            handle
                .join()
                .unwrap_or_else(|e| std::panic::resume_unwind(e))
        })
    }

    /// Reads a file under `/proc/thread-self/net/` (for example `snmp` or
    /// `udp`) as this namespace sees it.
    pub fn proc_net(&self, file: &str) -> String {
        let path = format!("/proc/thread-self/net/{file}");
        self.enter(|| std::fs::read_to_string(&path))
            .unwrap_or_else(|e| panic!("cannot read {path} in netns {}: {e}", self.name))
    }

    /// Whether an interface `ifname` exists in this namespace.
    pub fn has_link(&self, ifname: &str) -> bool {
        Command::new("ip")
            .args(["-n", &self.name, "link", "show", "dev", ifname])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// The MAC address of `ifname`, as `aa:bb:cc:dd:ee:ff`.
    pub fn mac(&self, ifname: &str) -> String {
        let out = self.ip(&["-j", "link", "show", "dev", ifname]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("`ip -j link show {ifname}` gave bad JSON: {e}"));
        v[0]["address"]
            .as_str()
            .unwrap_or_else(|| panic!("no address for {ifname} in netns {}", self.name))
            .to_string()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace destroys the veths, bridges and TAPs in it.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// Whether namespace `name` exists (`/run/netns/NAME`).
pub fn exists(name: &str) -> bool {
    std::path::Path::new("/run/netns").join(name).exists()
}

/// Names of all namespaces whose name starts with `prefix`.
pub fn list_with_prefix(prefix: &str) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// Runs `program args…` in the current namespace; panics with its output if
/// it fails. Used only for `ip` commands that name their namespace.
pub fn run_ok(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{program}`: {e}"));
    assert_succeeded(program, args, &out);
    out
}

/// Panics with the command line, its exit status and its output unless
/// `out` is a success.
pub fn assert_succeeded(program: &str, args: &[&str], out: &Output) {
    assert!(
        out.status.success(),
        "`{program} {}` failed ({}):\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Deletes namespaces left behind by earlier test processes of this crate that
/// died without running their destructors (SIGKILL, abort): names of the form
/// `tmi{pid}x…` whose `pid` no longer exists. Runs once per process.
fn sweep_stale_once() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for name in list_with_prefix(NAME_PREFIX) {
            let rest = &name[NAME_PREFIX.len()..];
            let Some((pid, _)) = rest.split_once('x') else {
                continue;
            };
            let Ok(pid) = pid.parse::<u32>() else {
                continue;
            };
            if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
            {
                let _ = Command::new("ip")
                    .args(["netns", "del", &name])
                    .stderr(Stdio::null())
                    .status();
            }
        }
    });
}
