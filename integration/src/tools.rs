//! The programs outside this repository that the demo and the namespace tests
//! run, checked before anything starts.
//!
//! A fresh machine that lacks one stops with one line naming every missing
//! program and the Debian packages that bring them (`ping not found:
//! apt-get install iputils-ping`), instead of a test that times out waiting
//! for pings that were never sent.
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Once;

/// A program and the Debian package that installs it.
#[derive(Debug, Clone, Copy)]
pub struct Tool {
    /// The program as the code runs it (looked up in `PATH`, or a full path).
    pub program: &'static str,
    /// The Debian package that brings it.
    pub package: &'static str,
}

const fn tool(program: &'static str, package: &'static str) -> Tool {
    Tool { program, package }
}

/// `ip`: namespaces, veths, bridges, addresses.
pub const IP: Tool = tool("ip", "iproute2");
/// `bridge`: VXLAN forwarding entries in the benchmark.
pub const BRIDGE: Tool = tool("bridge", "iproute2");
/// `ping`: every topology checks its overlay with it.
pub const PING: Tool = tool("ping", "iputils-ping");
/// `nft`: NAT routers and blocked paths.
pub const NFT: Tool = tool("nft", "nftables");
/// `sysctl`: forwarding on NAT routers.
pub const SYSCTL: Tool = tool("sysctl", "procps");
/// `setpriv`: nodes run as an unprivileged user.
pub const SETPRIV: Tool = tool("setpriv", "util-linux");
/// `curl`: HTTP through a userspace host's forwards.
pub const CURL: Tool = tool("curl", "curl");
/// `iperf3`: the benchmarks' TCP and UDP load.
pub const IPERF3: Tool = tool("iperf3", "iperf3");
/// `tcpdump`: reads the daemons' live captures back (`tcpdump -r`).
pub const TCPDUMP: Tool = tool("tcpdump", "tcpdump");
/// The Prometheus server, at the path Debian's package installs it.
pub const PROMETHEUS: Tool = tool(crate::prometheus::PROMETHEUS, "prometheus");
/// `promtool` (same package).
pub const PROMTOOL: Tool = tool(crate::prometheus::PROMTOOL, "prometheus");

/// `etcd`: the members of the HA tests' etcd cluster.
pub const ETCD: Tool = tool(crate::etcd::ETCD, "etcd-server");
/// `etcdctl`: health, leader, compaction in the HA tests.
pub const ETCDCTL: Tool = tool(crate::etcd::ETCDCTL, "etcd-client");
/// `openssl`: the certificates of the etcd TLS tests.
pub const OPENSSL: Tool = tool(crate::pki::OPENSSL, "openssl");

/// What the demo runs.
pub const DEMO: &[Tool] = &[IP, PING];

/// What the namespace tests run, all of them: one run of the suite names
/// everything a fresh machine lacks at once.
pub const TESTS: &[Tool] = &[
    IP, PING, NFT, SYSCTL, SETPRIV, CURL, PROMETHEUS, PROMTOOL, TCPDUMP, ETCD, ETCDCTL, OPENSSL,
];

/// Where `program` is: itself if it contains a `/`, else the first
/// executable of that name in `path` (a `PATH`-style list).
pub fn find_in(program: &str, path: &std::ffi::OsStr) -> Option<PathBuf> {
    if program.contains('/') {
        return is_executable(Path::new(program)).then(|| PathBuf::from(program));
    }
    std::env::split_paths(path)
        .map(|d| d.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `None` if every tool is found in this process's `PATH`, else one line
/// naming the missing programs and how to install them, e.g.
/// `ping not found: apt-get install iputils-ping`.
pub fn missing(tools: &[Tool]) -> Option<String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let absent: Vec<&Tool> = tools
        .iter()
        .filter(|t| find_in(t.program, &path).is_none())
        .collect();
    if absent.is_empty() {
        return None;
    }
    let mut programs: Vec<&str> = absent.iter().map(|t| t.program).collect();
    let mut packages: Vec<&str> = absent.iter().map(|t| t.package).collect();
    programs.dedup();
    packages.dedup();
    Some(format!(
        "{} not found: apt-get install {}",
        programs.join(", "),
        packages.join(" ")
    ))
}

/// One line saying why this process cannot run namespaces, if it cannot:
/// not root, or tools missing.
pub fn cannot_run(tools: &[Tool]) -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Some(format!(
            "needs root (it creates network namespaces, veth pairs and TAP devices); \
             effective uid is {euid}"
        ));
    }
    missing(tools)
}

/// Checks once per process, before its first namespace, that it runs as
/// root and finds `tools`; if not, prints `PROGRAM: WHY` (one line) and ends
/// the process with status 2. Nothing has been created then, so there is
/// nothing to clean up, and a run stops with that one line instead of a
/// panic, or a timeout, in every test.
///
/// The first call in a process decides: each binary calls it with its own
/// list before it builds a topology; [`crate::Netns::new`] calls it with
/// [`TESTS`] for the namespace tests, and is a no-op after a binary's call.
pub fn preflight(program: &str, tools: &[Tool]) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if let Some(why) = cannot_run(tools) {
            // Straight to stderr: the test harness captures `eprintln!`, and
            // would drop it on exit.
            let _ = writeln!(std::io::stderr(), "{program}: {why}");
            std::process::exit(2);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_programs_in_the_given_path_only() {
        let sh = find_in("sh", std::ffi::OsStr::new("/bin:/usr/bin"));
        assert!(sh.is_some());
        assert!(find_in("sh", std::ffi::OsStr::new("/nonexistent")).is_none());
        assert!(find_in("/bin/sh", std::ffi::OsStr::new("")).is_some());
    }
}
