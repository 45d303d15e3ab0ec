//! Test hosts in real Linux network namespaces, running the real
//! `tapmesh-switch` and `tapmesh-node` binaries.
//!
//! Why namespaces: the unit tests and the simulator in `switch/` and `node/`
//! check the state machines; only a real TAP, a real UDP socket and a real
//! kernel TCP stack show that the pieces fit. Every topology lives in
//! namespaces it creates itself, uses only 198.18.0.0/15 and `fd00::/8`, and
//! never touches the root namespace's interfaces: veth pairs are created
//! directly inside the namespaces.
//!
//! Everything a test creates is held by a guard whose `Drop` removes it, also
//! when the test panics: [`Netns`] deletes its namespace, [`Process`] stops
//! the process it started (by PID, SIGTERM then SIGKILL), [`Topology`] stops
//! its processes, prints the tail of their logs if the test failed, and then
//! drops its namespaces and temporary directory.
//!
//! The tests need root. Without it they fail loudly ([`require_root`]); they
//! never skip.
//!
//! # Layout
//! - [`attack`]: paced floods, outsiders' handshake initiations, garbage,
//!   UDP datagrams out of a capture (to replay), a process's fds and RSS.
//! - [`bench`]: helpers of the `tapmesh-bench` and `tapmesh-loadgen` binaries.
//! - [`bins`]: where the `tapmesh-*` binaries are (`TAPMESH_BIN_DIR`, else
//!   beside the running executable).
//! - [`dashboard`]: the Grafana dashboard's queries by row and panel, and
//!   the check that each returns data from a real Prometheus.
//! - [`cluster`]: [`cluster::Cluster`], three switches on a real etcd
//!   cluster with nodes spread over them (every node lists every switch),
//!   partitions of one switch.
//! - [`etcd`]: a real etcd cluster (members in namespaces, data in a
//!   temporary directory): health, leader, kill -9, restart, partitions,
//!   compaction.
//! - [`impair`]: a UDP relay that loses, delays, reorders and duplicates
//!   (an impaired underlay where `sch_netem` is missing).
//! - [`live_capture`]: the daemons' `capture` command, a reader that never
//!   reads, the pcapng read back, `tcpdump -r`.
//! - [`lab`]: the lab launcher's topology file, bring-up and multicast
//!   helpers (`tapmesh-lab`).
//! - [`monitoring`]: metrics addresses, scraping and process CPU for monitoring tests.
//! - [`on_path`]: an attacker on a host's link (a userspace wire in its own
//!   namespace) that forges a handshake response ahead of every genuine one.
//! - [`multicast`]: joining groups and sending to them from a host
//!   namespace, and counting group frames and IGMP queries in a capture.
//! - [`netns`]: the [`Netns`] guard, running commands in a namespace, and
//!   running Rust code in one ([`Netns::enter`]: sockets made there stay there).
//! - [`peer_switch`]: another switch of a cluster in a host's namespace
//!   (its key, config, admin socket), and `[cluster]` sections.
//! - [`pki`]: a test CA and the certificates it issues (`openssl`).
//! - [`process`]: the [`Process`] guard.
//! - [`http`]: a minimal HTTP GET from inside a namespace (`/metrics`, APIs).
//! - [`prometheus`]: a real Prometheus server in a namespace, and PromQL queries.
//! - [`qemu`]: real QEMU VMs (QEMU, kernel and busybox initramfs from Debian
//!   packages, cached under `target/qemu-cache/`), driven over their serial console.
//! - [`config`]: keys and the TOML files for the switch and the nodes.
//! - [`topology`]: [`Topology::central`], one switch namespace with a bridge and
//!   N hosts.
//! - [`tools`]: the external programs the demo and the tests run, checked
//!   before the first namespace (one line naming what to install).
//! - [`traffic`]: TCP transfers with byte-for-byte checks, UDP sprays.
//! - [`unprivileged`]: a node without a TAP run as `nobody` in a topology's
//!   host namespace.
//! - [`capture`]: an `AF_PACKET` capture on an interface inside a namespace.
//! - `packet_socket`: opening an `AF_PACKET` socket on one interface (the
//!   capture, the trunk port, the on-path relay, the frame injectors).
//! - [`reload`]: `reload` over the admin socket or SIGHUP, for a running
//!   switch or node, after rewriting its config.
//! - [`stop`]: Ctrl-C and SIGTERM as a flag for the demo, the lab and the
//!   benchmarks, and waiting for a child while honouring it.
//! - [`status`]: reading the `status --json` output (missing keys count as 0).
//! - [`trunk`]: a raw socket on a TAP standing in for a VLAN trunk (tagged
//!   ARP out, each frame's VLAN read back) where the 8021q module is missing.
//! - [`vm_client`]: a fake VM on a node's VM port (QEMU's stream and dgram
//!   framing, ARP and ping), for tests of the port itself.
//! - [`vm_intruder`]: another local user (its own uid, via `setpriv`) trying
//!   a node's VM port.
//! - [`wait`]: [`wait_until`], polling with a deadline instead of sleeping.

pub mod attack;
pub mod bench;
pub mod bins;
pub mod capture;
pub mod cluster;
pub mod config;
pub mod dashboard;
pub mod etcd;
pub mod http;
pub mod impair;
pub mod lab;
pub mod live_capture;
pub mod monitoring;
pub mod multicast;
pub mod netns;
pub mod on_path;
mod packet_socket;
pub mod peer_switch;
pub mod pki;
pub mod process;
pub mod prometheus;
pub mod qemu;
pub mod reload;
pub mod status;
pub mod stop;
pub mod tools;
pub mod topology;
pub mod traffic;
pub mod trunk;
pub mod unprivileged;
pub mod vm_client;
pub mod vm_intruder;
pub mod wait;

pub use capture::{Capture, Frame};
pub use netns::Netns;
pub use process::Process;
pub use topology::{Topology, Underlay};
pub use wait::wait_until;

/// Panics with a clear message unless the effective user is root. Namespace
/// tests must fail, not skip, when they cannot run.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert!(
        euid == 0,
        "tapmesh integration tests must run as root (they create network namespaces, \
         veth pairs and TAP devices); effective uid is {euid}. Run e.g. \
         `sudo -E cargo test --release -p integration`."
    );
}

/// The index of the `i`-th (1-based) of `len` things named `{what}{i}` in
/// tests (host h1, etcd member e1); panics naming the thing and how many
/// there are if there is no such one.
pub(crate) fn one_based(len: usize, i: usize, what: &str) -> usize {
    assert!((1..=len).contains(&i), "no {what}{i} (have {len})");
    i - 1
}
