//! A real etcd cluster for the HA tests: [`EtcdCluster`], three members (or
//! any number) of Debian's `etcd` (3.4), each in its own namespace, on a
//! hub namespace's bridge.
//!
//! ```text
//!   {prefix}-etcd: br0 198.18.50.1/24 (etcdctl runs here)
//!        | ve1             | ve2             | ve3            | vc1 …  (attach)
//!   {prefix}-e1        {prefix}-e2        {prefix}-e3        a switch's namespace
//!   eth0 198.18.50.11  eth0 198.18.50.12  eth0 198.18.50.13  ec1 198.18.50.101
//!   etcd: clients :2379, peers :2380, data in {dir}/eN.data
//! ```
//!
//! Data and logs live in a temporary directory. Dropping the cluster stops
//! every member it started (by PID: SIGTERM, then SIGKILL), prints the tail
//! of each member's log if the thread is panicking, and removes the
//! namespaces and the directory. Helpers: [`EtcdCluster::wait_healthy`],
//! [`EtcdCluster::leader`] (`etcdctl endpoint status -w json`),
//! [`EtcdCluster::kill9`], [`EtcdCluster::restart`],
//! [`EtcdCluster::partition`] / [`EtcdCluster::heal`] (an nft drop in the
//! member's namespace; [`partition_ns`] / [`heal_ns`] for a switch's link
//! to etcd), and [`EtcdCluster::compact`].
//!
//! [`EtcdCluster::start_tls`] starts the members with TLS for clients and
//! peers and client-certificate authentication, certificates from a test
//! CA ([`crate::pki`]) in the same directory; `etcdctl` then presents the
//! client certificate [`EtcdTls::client`] (CN `root`), and
//! [`EtcdCluster::enable_auth`] turns on etcd's users.
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use serde_json::Value;

use crate::pki::{CertFiles, TestCa};
use crate::process::tail;
use crate::{Netns, Process, wait_until};

/// The etcd server, as Debian's `etcd-server` installs it.
pub const ETCD: &str = "etcd";
/// The etcd command-line client (Debian's `etcd-client`).
pub const ETCDCTL: &str = "etcdctl";
/// The port members serve clients on.
pub const CLIENT_PORT: u16 = 2379;
/// The port members talk to each other on.
pub const PEER_PORT: u16 = 2380;
/// How long a cluster (or a restarted member) gets to become healthy.
pub const HEALTHY_TIMEOUT: Duration = Duration::from_secs(30);
/// Raft heartbeat interval (ms). etcd's default; elections take 10 of them.
const HEARTBEAT_MS: u32 = 100;
/// Raft election timeout (ms): long enough that two busy cores do not
/// cause spurious elections, short enough that a killed leader is replaced
/// in a few seconds.
const ELECTION_MS: u32 = 2000;
/// Lines of each member's log printed when a test fails.
const LOG_TAIL_LINES: usize = 40;
/// The etcd subnet: the hub's bridge, members and attached clients.
const SUBNET: [u8; 3] = [198, 18, 50];
/// The nft table a partition adds.
const PARTITION_TABLE: &str = "tapmesh_etcd_partition";

/// Member `i`'s address (1-based): `198.18.50.(10+i)`.
pub fn member_v4(i: usize) -> Ipv4Addr {
    assert!((1..=50).contains(&i), "member index {i} out of range");
    Ipv4Addr::new(SUBNET[0], SUBNET[1], SUBNET[2], 10 + i as u8)
}

/// The `k`-th attached client's address (1-based): `198.18.50.(100+k)`.
pub fn client_v4(k: usize) -> Ipv4Addr {
    assert!((1..=150).contains(&k), "client index {k} out of range");
    Ipv4Addr::new(SUBNET[0], SUBNET[1], SUBNET[2], 100 + k as u8)
}

#[derive(Debug)]
struct Member {
    name: String,
    ns: Netns,
    process: Option<Process>,
    runs: u32,
    partitioned: bool,
}

/// A running etcd cluster, removed on drop.
#[derive(Debug)]
pub struct EtcdCluster {
    prefix: String,
    dir: PathBuf,
    hub: Netns,
    members: Vec<Member>,
    clients: usize,
    logs: Vec<PathBuf>,
    tls: Option<EtcdTls>,
}

/// The certificates of a cluster started with [`EtcdCluster::start_tls`].
#[derive(Debug)]
pub struct EtcdTls {
    /// The CA that signed the members' and the client's certificates.
    pub ca: TestCa,
    /// The client certificate `etcdctl` presents. Its CN is `root`: with
    /// etcd's auth on, a client that presents a certificate and no password
    /// is the user its CN names.
    pub client: CertFiles,
    members: Vec<CertFiles>,
}

impl EtcdCluster {
    /// Builds `n` member namespaces and starts one etcd in each (a new
    /// cluster, token = the prefix). Does not wait: see
    /// [`wait_healthy`](Self::wait_healthy).
    pub fn start(n: usize) -> EtcdCluster {
        Self::start_with(n, false)
    }

    /// Like [`start`](Self::start), with TLS: `https://` for clients and
    /// peers, each member's certificate with its address in
    /// subjectAltName, and client certificates required (signed by the
    /// cluster's CA, [`EtcdTls::ca`]).
    pub fn start_tls(n: usize) -> EtcdCluster {
        Self::start_with(n, true)
    }

    fn start_with(n: usize, tls: bool) -> EtcdCluster {
        assert!((1..=7).contains(&n), "1..=7 etcd members, not {n}");
        let prefix = crate::netns::unique_prefix();
        let dir = std::env::temp_dir().join(format!("{prefix}-etcd"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let hub = Netns::new(&format!("{prefix}-etcd"));
        hub.ip(&[
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ]);
        hub.ip(&["addr", "add", "198.18.50.1/24", "dev", "br0"]);
        hub.ip(&["link", "set", "br0", "up"]);
        let tls = tls.then(|| {
            let ca = TestCa::new(&dir, "etcd-ca");
            let members = (1..=n)
                .map(|i| ca.issue(&format!("e{i}"), &[member_v4(i).into()]))
                .collect();
            let client = ca.issue("root", &[]);
            EtcdTls {
                ca,
                client,
                members,
            }
        });
        let mut cluster = EtcdCluster {
            prefix,
            dir,
            hub,
            members: Vec::new(),
            clients: 0,
            logs: Vec::new(),
            tls,
        };
        for i in 1..=n {
            let name = format!("e{i}");
            let ns = Netns::new(&format!("{}-{name}", cluster.prefix));
            cluster.link_into(&ns, &format!("ve{i}"), "eth0", member_v4(i));
            cluster.members.push(Member {
                name,
                ns,
                process: None,
                runs: 0,
                partitioned: false,
            });
        }
        for i in 1..=n {
            cluster.spawn(i);
        }
        cluster
    }

    /// Starts three members and waits until every one is healthy.
    pub fn three() -> EtcdCluster {
        let c = EtcdCluster::start(3);
        c.wait_healthy(HEALTHY_TIMEOUT)
            .unwrap_or_else(|e| panic!("etcd cluster did not become healthy: {e}"));
        c
    }

    /// A veth from the hub's bridge (`hub_port`) into `ns` (`ifname`, with
    /// `addr/24`), up.
    fn link_into(&self, ns: &Netns, hub_port: &str, ifname: &str, addr: Ipv4Addr) {
        self.hub.ip(&[
            "link",
            "add",
            hub_port,
            "type",
            "veth",
            "peer",
            "name",
            ifname,
            "netns",
            ns.name(),
        ]);
        self.hub.ip(&["link", "set", hub_port, "master", "br0"]);
        self.hub.ip(&["link", "set", hub_port, "up"]);
        ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", ifname]);
        ns.ip(&["link", "set", ifname, "up"]);
    }

    /// Connects namespace `ns` (a switch's) to the etcd subnet: a veth
    /// `ifname` there with the next client address, which it returns.
    pub fn attach(&mut self, ns: &Netns, ifname: &str) -> Ipv4Addr {
        self.clients += 1;
        let addr = client_v4(self.clients);
        self.link_into(ns, &format!("vc{}", self.clients), ifname, addr);
        addr
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the cluster has no members (never: [`start`](Self::start)
    /// needs at least one).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The hub namespace, where `etcdctl` runs.
    pub fn hub(&self) -> &Netns {
        &self.hub
    }

    /// Member `i`'s namespace.
    pub fn member_ns(&self, i: usize) -> &Netns {
        &self.member(i).ns
    }

    /// Every member's client URL, comma-separated (for `--endpoints`).
    pub fn endpoints(&self) -> String {
        (1..=self.members.len())
            .map(|i| self.client_url(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Every member's client URL, as a list (for a switch's
    /// `etcd-endpoints`).
    pub fn endpoint_list(&self) -> Vec<String> {
        (1..=self.members.len())
            .map(|i| self.client_url(i))
            .collect()
    }

    /// Member `i`'s client URL, `http://198.18.50.(10+i):2379`
    /// (`https://` with TLS).
    pub fn client_url(&self, i: usize) -> String {
        format!("{}://{}:{CLIENT_PORT}", self.scheme(), member_v4(i))
    }

    fn peer_url(&self, i: usize) -> String {
        format!("{}://{}:{PEER_PORT}", self.scheme(), member_v4(i))
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// The certificates, if the cluster was started with
    /// [`start_tls`](Self::start_tls).
    pub fn tls(&self) -> Option<&EtcdTls> {
        self.tls.as_ref()
    }

    /// Turns on etcd's authentication (TLS clusters only): a `root` user
    /// (which `etcdctl`'s client certificate stands for), and `user` with
    /// `password`, allowed to read and write the keys under `prefix`.
    pub fn enable_auth(&self, user: &str, password: &str, prefix: &str) {
        assert!(self.tls.is_some(), "auth needs a TLS cluster (start_tls)");
        let root_password = format!("root-{}", self.prefix);
        for args in [
            vec![
                "user",
                "add",
                "root",
                "--interactive=false",
                "--new-user-password",
                &root_password,
            ],
            vec!["role", "add", "tapmesh"],
            vec![
                "role",
                "grant-permission",
                "tapmesh",
                "--prefix=true",
                "readwrite",
                prefix,
            ],
            vec![
                "user",
                "add",
                user,
                "--interactive=false",
                "--new-user-password",
                password,
            ],
            vec!["user", "grant-role", user, "tapmesh"],
            vec!["auth", "enable"],
        ] {
            self.etcdctl(&args);
        }
    }

    fn member(&self, i: usize) -> &Member {
        &self.members[crate::one_based(self.members.len(), i, "etcd member e")]
    }

    fn member_mut(&mut self, i: usize) -> &mut Member {
        let k = crate::one_based(self.members.len(), i, "etcd member e");
        &mut self.members[k]
    }

    fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.join(format!("e{i}.data"))
    }

    /// Starts member `i`'s etcd (its data directory is kept across runs, so
    /// a restart rejoins with its state).
    fn spawn(&mut self, i: usize) {
        let initial_cluster = (1..=self.members.len())
            .map(|j| format!("e{j}={}", self.peer_url(j)))
            .collect::<Vec<_>>()
            .join(",");
        let client = self.client_url(i);
        let peer = self.peer_url(i);
        let data = self.data_dir(i);
        let m = self.member(i);
        let log = self.dir.join(format!("{}.{}.log", m.name, m.runs + 1));
        let args: Vec<String> = vec![
            "--name".into(),
            m.name.clone(),
            "--data-dir".into(),
            data.display().to_string(),
            "--listen-client-urls".into(),
            client.clone(),
            "--advertise-client-urls".into(),
            client,
            "--listen-peer-urls".into(),
            peer.clone(),
            "--initial-advertise-peer-urls".into(),
            peer,
            "--initial-cluster".into(),
            initial_cluster,
            "--initial-cluster-state".into(),
            "new".into(),
            "--initial-cluster-token".into(),
            self.prefix.clone(),
            "--heartbeat-interval".into(),
            HEARTBEAT_MS.to_string(),
            "--election-timeout".into(),
            ELECTION_MS.to_string(),
            "--logger".into(),
            "zap".into(),
        ];
        let mut args = args;
        if let Some(tls) = &self.tls {
            let own = &tls.members[i - 1];
            let (cert, key, ca) = (
                own.cert.display().to_string(),
                own.key.display().to_string(),
                tls.ca.cert.display().to_string(),
            );
            for (flag, v) in [
                ("--cert-file", &cert),
                ("--key-file", &key),
                ("--trusted-ca-file", &ca),
                ("--peer-cert-file", &cert),
                ("--peer-key-file", &key),
                ("--peer-trusted-ca-file", &ca),
            ] {
                args.extend([flag.to_string(), v.clone()]);
            }
            args.extend([
                "--client-cert-auth".to_string(),
                "--peer-client-cert-auth".to_string(),
            ]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let p = Process::spawn(&m.name, &m.ns, Path::new(ETCD), &args, &log);
        self.logs.push(log);
        let m = self.member_mut(i);
        m.runs += 1;
        m.process = Some(p);
    }

    /// Runs `etcdctl --endpoints=ENDPOINTS args…` in the hub namespace.
    pub fn etcdctl_at(&self, endpoints: &str, args: &[&str]) -> Output {
        let mut full = vec![
            "--endpoints",
            endpoints,
            "--dial-timeout=2s",
            "--command-timeout=5s",
        ];
        let tls_args: Vec<String> = self
            .tls
            .iter()
            .flat_map(|t| {
                [
                    format!("--cacert={}", t.ca.cert.display()),
                    format!("--cert={}", t.client.cert.display()),
                    format!("--key={}", t.client.key.display()),
                ]
            })
            .collect();
        full.extend(tls_args.iter().map(String::as_str));
        full.extend_from_slice(args);
        self.hub
            .command(ETCDCTL)
            .args(&full)
            .env("ETCDCTL_API", "3")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run etcdctl: {e}"))
    }

    /// Runs `etcdctl` against every member; panics with its output if it
    /// fails. Returns stdout.
    pub fn etcdctl(&self, args: &[&str]) -> String {
        let out = self.etcdctl_at(&self.endpoints(), args);
        crate::netns::assert_succeeded("etcdctl", args, &out);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Whether member `i` answers `endpoint health` (it is up and has a
    /// leader, i.e. is part of a quorum).
    pub fn member_healthy(&self, i: usize) -> bool {
        self.etcdctl_at(&self.client_url(i), &["endpoint", "health"])
            .status
            .success()
    }

    /// Waits until every running, unpartitioned member is healthy.
    pub fn wait_healthy(&self, timeout: Duration) -> Result<(), String> {
        let live: Vec<usize> = (1..=self.members.len())
            .filter(|&i| self.member(i).process.is_some() && !self.member(i).partitioned)
            .collect();
        if wait_until(timeout, || live.iter().all(|&i| self.member_healthy(i))) {
            Ok(())
        } else {
            let sick: Vec<String> = live
                .iter()
                .filter(|&&i| !self.member_healthy(i))
                .map(|i| format!("e{i}"))
                .collect();
            Err(format!(
                "not healthy after {timeout:?}: {}",
                sick.join(", ")
            ))
        }
    }

    /// `etcdctl endpoint status -w json` of the reachable members:
    /// (member index, member id, leader id, revision).
    fn statuses(&self) -> Vec<(usize, u64, u64, i64)> {
        let mut out = Vec::new();
        for i in 1..=self.members.len() {
            let o = self.etcdctl_at(&self.client_url(i), &["endpoint", "status", "-w", "json"]);
            if !o.status.success() {
                continue;
            }
            let Ok(v) = serde_json::from_slice::<Value>(&o.stdout) else {
                continue;
            };
            let s = &v[0]["Status"];
            let id = s["header"]["member_id"].as_u64().unwrap_or(0);
            let leader = s["leader"].as_u64().unwrap_or(0);
            let rev = s["header"]["revision"].as_i64().unwrap_or(0);
            out.push((i, id, leader, rev));
        }
        out
    }

    /// The member that is leader now, as a reachable member reports it.
    pub fn leader(&self) -> Option<usize> {
        let st = self.statuses();
        let leader_id = st.iter().map(|s| s.2).find(|&l| l != 0)?;
        st.iter().find(|s| s.1 == leader_id).map(|s| s.0)
    }

    /// Waits for a leader among the reachable members.
    pub fn wait_leader(&self, timeout: Duration) -> Option<usize> {
        let mut found = None;
        wait_until(timeout, || {
            found = self.leader();
            found.is_some()
        });
        found
    }

    /// The store's current revision, as the reachable members report it.
    pub fn revision(&self) -> i64 {
        self.statuses().iter().map(|s| s.3).max().unwrap_or(0)
    }

    /// Compacts the key space up to the current revision (a watcher behind
    /// it gets its watch cancelled with the compact revision).
    pub fn compact(&self) -> i64 {
        let rev = self.revision();
        assert!(rev > 0, "no member reported a revision");
        self.etcdctl(&["compact", &rev.to_string(), "--physical"]);
        rev
    }

    /// Keys under `prefix` (one per line in etcdctl's output).
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        self.etcdctl(&["get", "--prefix", "--keys-only", prefix])
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// `kill -9` of member `i`, as a crash.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut p) = self.member_mut(i).process.take() {
            p.kill9();
        }
    }

    /// Member `i`'s process id, while it runs (for its CPU time).
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.member(i).process.as_ref().map(Process::pid)
    }

    /// Whether member `i`'s process runs.
    pub fn is_running(&mut self, i: usize) -> bool {
        self.member_mut(i)
            .process
            .as_mut()
            .is_some_and(Process::is_running)
    }

    /// Starts member `i` again with its data (after [`kill9`](Self::kill9)).
    pub fn restart(&mut self, i: usize) {
        self.kill9(i);
        self.spawn(i);
    }

    /// Cuts member `i` off the network (every packet in and out of its
    /// `eth0` dropped by nft), until [`heal`](Self::heal).
    pub fn partition(&mut self, i: usize) {
        partition_ns(&self.member(i).ns, "eth0");
        self.member_mut(i).partitioned = true;
    }

    /// Undoes [`partition`](Self::partition).
    pub fn heal(&mut self, i: usize) {
        heal_ns(&self.member(i).ns);
        self.member_mut(i).partitioned = false;
    }

    /// Prints the tail of every member's log.
    pub fn print_logs(&self) {
        for log in &self.logs {
            eprintln!(
                "----- {} (last {LOG_TAIL_LINES} lines) -----\n{}",
                log.display(),
                tail(log, LOG_TAIL_LINES)
            );
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut p) = m.process.take() {
                p.stop();
            }
        }
        if std::thread::panicking() {
            self.print_logs();
        }
        // Namespaces go with the members and the hub (their Drop).
        if std::env::var_os("TAPMESH_KEEP_DIR").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Drops every packet in and out of `ifname` in `ns` (an nft table), until
/// [`heal_ns`]. For a member, or a switch's link to etcd (the interface
/// [`EtcdCluster::attach`] made).
pub fn partition_ns(ns: &Netns, ifname: &str) {
    ns.nft(&format!(
        "table inet {PARTITION_TABLE} {{\n\
           chain out {{ type filter hook output priority 0; oifname \"{ifname}\" drop; }}\n\
           chain in {{ type filter hook input priority 0; iifname \"{ifname}\" drop; }}\n\
         }}\n"
    ));
}

/// Removes what [`partition_ns`] added.
pub fn heal_ns(ns: &Netns) {
    ns.nft(&format!("delete table inet {PARTITION_TABLE}\n"));
}
