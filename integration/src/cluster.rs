//! [`Cluster`]: several switches serving one LAN on a real etcd, with nodes
//! spread over them, every piece the real binary.
//!
//! ```text
//!   EtcdCluster::three(): e1 e2 e3 on 198.18.50.0/24 (see `etcd`)
//!        | etcd0 198.18.50.(100+k)
//!   {prefix}-swK: eth0 198.18.0.(4+K)/24 fd00:18::(4+K)/64, tapmesh-switch swK on :7777
//!        |  vsK                   (K = 1..=3, each in its own namespace)
//!   {prefix}-sw: br0, the underlay bridge (the topology's; no switch runs there)
//!        |  vhI
//!   {prefix}-hI: the topology's hosts; node hI lists every switch, its home first
//! ```
//!
//! Each switch has `[cluster]` with the etcd endpoints, a short lease TTL
//! ([`LEASE_TTL_SECS`]) and a `[[cluster.switch]]` for each other switch, and
//! admits every host. Dropping the cluster stops the nodes, then the
//! switches, then etcd (each by PID), prints the switches' logs if the
//! thread is panicking, and removes every namespace and directory.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;

use crate::config::{EtcdSettings, KeyPair, SwitchRef, cluster_section, write_file};
use crate::etcd::{self, EtcdCluster};
use crate::process::tail;
use crate::topology::{READY_TIMEOUT, SWITCH_PORT, overlay_v4, overlay_v6, status_json};
use crate::{Netns, Process, Topology, bins, wait_until};

/// Each switch's etcd lease TTL: short, so a dead or cut-off switch's keys
/// go soon.
pub const LEASE_TTL_SECS: u64 = 3;
/// Each switch's link to the etcd subnet.
pub const ETCD_LINK: &str = "etcd0";
/// The nft table [`Cluster::partition_switch`] adds.
const PARTITION_TABLE: &str = "tapmesh_cluster_partition";
/// Lines of each switch log printed when a test fails.
const LOG_TAIL_LINES: usize = 60;

/// Switch `k`'s underlay IPv4 address (1-based): `198.18.0.(4+k)`.
pub fn switch_v4(k: usize) -> Ipv4Addr {
    assert!((1..=5).contains(&k), "switch index {k} out of range 1..=5");
    Ipv4Addr::new(198, 18, 0, 4 + k as u8)
}

/// Switch `k`'s underlay IPv6 address: `fd00:18::(4+k)`.
pub fn switch_v6(k: usize) -> Ipv6Addr {
    assert!((1..=5).contains(&k), "switch index {k} out of range 1..=5");
    Ipv6Addr::new(0xfd00, 0x18, 0, 0, 0, 0, 0, 4 + k as u16)
}

#[derive(Debug)]
struct ClusterSwitch {
    name: String,
    key: KeyPair,
    /// Declared before `ns`: the process stops before its namespace goes.
    /// In a mutex so that a test can kill the switch while other threads
    /// use the cluster (a transfer running through it).
    process: Mutex<Option<Process>>,
    runs: u32,
    ns: Netns,
}

/// A running cluster: etcd, switches `sw1..`, and a topology whose hosts are
/// the nodes. Hosts and switches are numbered from 1.
#[derive(Debug)]
pub struct Cluster {
    /// Declared first: its nodes stop before the switches and etcd.
    topo: Topology,
    switches: Vec<ClusterSwitch>,
    logs: Vec<PathBuf>,
    etcd: EtcdCluster,
    settings: EtcdSettings,
    /// Lines before `[cluster]` in every switch.toml (`mode = "mesh"`).
    head: String,
}

impl Cluster {
    /// Three etcd members (healthy), `switches` switches (running, each
    /// attached to etcd), and one admitted host per entry of `homes`, host
    /// `i` homed on switch `homes[i-1]` (its node lists the others after
    /// it, in cyclic order). Starts no node.
    pub fn new(switches: usize, homes: &[usize]) -> Cluster {
        Cluster::with_head(switches, homes, "")
    }

    /// [`new`](Self::new) with every switch in mesh mode (`mode = "mesh"`).
    pub fn mesh(switches: usize, homes: &[usize]) -> Cluster {
        Cluster::with_head(switches, homes, "mode = \"mesh\"\n")
    }

    fn with_head(switches: usize, homes: &[usize], head: &str) -> Cluster {
        assert!(
            homes.iter().all(|h| (1..=switches).contains(h)),
            "homes {homes:?} name a switch outside 1..={switches}"
        );
        let mut etcd = EtcdCluster::three();
        let topo = Topology::central(homes.len());
        let settings = EtcdSettings {
            endpoints: etcd.endpoint_list(),
            lease_ttl_secs: LEASE_TTL_SECS,
        };
        let mut list = Vec::new();
        for k in 1..=switches {
            let name = format!("sw{k}");
            let ns = Netns::new(&format!("{}-{name}", topo.prefix()));
            topo.plug_into_underlay(&ns, &format!("vs{k}"), switch_v4(k), switch_v6(k));
            etcd.attach(&ns, ETCD_LINK);
            let key = KeyPair::generate(
                &bins::bin(bins::SWITCH),
                &topo.dir().join(format!("{name}.key")),
            );
            list.push(ClusterSwitch {
                name,
                key,
                process: Mutex::new(None),
                runs: 0,
                ns,
            });
        }
        let mut c = Cluster {
            topo,
            switches: list,
            logs: Vec::new(),
            etcd,
            settings,
            head: head.to_string(),
        };
        for i in 1..=homes.len() {
            c.set_home(i, homes[i - 1]);
        }
        // Every host's key exists before the switches' configs list them.
        for i in 1..=homes.len() {
            c.topo.node_public_key(i);
        }
        for k in 1..=switches {
            c.write_switch_config(k, &[]);
            c.start_switch(k);
        }
        c
    }

    /// [`new`](Self::new) with three switches and `homes`, every node
    /// started, and every pair pinging over IPv4 and IPv6.
    pub fn start(homes: &[usize], up: Duration) -> Cluster {
        let mut c = Cluster::new(3, homes);
        let all: Vec<usize> = (1..=homes.len()).collect();
        for &i in &all {
            c.topo.start_node(i);
        }
        c.wait_pairs(&all, up)
            .unwrap_or_else(|e| panic!("overlay did not come up within {up:?}: {e}"));
        c
    }

    /// The switches as nodes list them.
    fn switch_ref(&self, k: usize) -> SwitchRef {
        SwitchRef {
            name: self.switch(k).name.clone(),
            public_key: self.switch(k).key.public_key.clone(),
            endpoint: self.switch_addr(k),
        }
    }

    /// Homes host `i` on switch `k` from its node's next start: it lists
    /// `k` first, then the others in cyclic order.
    pub fn set_home(&mut self, i: usize, k: usize) {
        let n = self.switches.len();
        let list = (0..n)
            .map(|d| self.switch_ref((k - 1 + d) % n + 1))
            .collect();
        self.topo.set_node_switches(i, list);
    }

    /// Writes switch `k`'s config admitting every host but those in
    /// `without`.
    fn write_switch_config(&mut self, k: usize, without: &[usize]) {
        let others: Vec<SwitchRef> = (1..=self.switches.len())
            .filter(|&j| j != k)
            .map(|j| self.switch_ref(j))
            .collect();
        let s = self.switch(k);
        let dir = self.topo.dir();
        let mut cfg = self.topo.switch_config();
        cfg.listen = self.switch_addr(k).to_string();
        cfg.private_key_file = s.key.private_key_file.clone();
        cfg.admin_socket = self.admin_socket(k);
        cfg.state_file = dir.join(format!("{}.state", s.name));
        cfg.extra = self.head.clone() + &cluster_section(&s.name, Some(&self.settings), &others);
        let names: Vec<&str> = without.iter().map(|&i| self.topo.host_name(i)).collect();
        cfg.nodes.retain(|n| !names.contains(&n.name.as_str()));
        write_file(&self.config_path(k), &cfg.render());
    }

    /// Removes the hosts in `without` from switch `k`'s config and runs
    /// `tapmesh-switch reload` on it.
    pub fn reload_switch_without(&mut self, k: usize, without: &[usize]) -> crate::reload::Reply {
        self.write_switch_config(k, without);
        crate::reload::run_switch(&self.admin_socket(k))
    }

    fn config_path(&self, k: usize) -> PathBuf {
        self.topo
            .dir()
            .join(format!("{}.toml", self.switch(k).name))
    }

    /// Starts switch `k` (again) with its config and waits until it answers
    /// `status`.
    pub fn start_switch(&mut self, k: usize) {
        let config = self.config_path(k).to_string_lossy().into_owned();
        let s = &mut self.switches[k - 1];
        let process = s.process.get_mut().expect("switch process lock");
        assert!(process.is_none(), "{} already running", s.name);
        s.runs += 1;
        let log = self.topo.dir().join(format!("{}.{}.log", s.name, s.runs));
        let p = Process::spawn(
            &s.name,
            &s.ns,
            &bins::bin(bins::SWITCH),
            &["run", "--config", &config],
            &log,
        );
        *process = Some(p);
        self.logs.push(log);
        let ready = wait_until(READY_TIMEOUT, || self.switch_status(k).is_ok());
        assert!(
            ready,
            "sw{k} did not answer status within {READY_TIMEOUT:?}: {:?}",
            self.switch_status(k).err()
        );
    }

    /// `kill -9` of switch `k`, as a crash; it stays down.
    pub fn kill9_switch(&self, k: usize) {
        let taken = self.switch(k).process.lock().expect("lock").take();
        if let Some(mut p) = taken {
            p.kill9();
        }
    }

    fn switch(&self, k: usize) -> &ClusterSwitch {
        assert!(
            (1..=self.switches.len()).contains(&k),
            "no switch sw{k} (have {})",
            self.switches.len()
        );
        &self.switches[k - 1]
    }

    /// Switch `k`'s UDP address.
    pub fn switch_addr(&self, k: usize) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(switch_v4(k)), SWITCH_PORT)
    }

    /// Switch `k`'s namespace.
    pub fn switch_ns(&self, k: usize) -> &Netns {
        &self.switch(k).ns
    }

    /// Switch `k`'s name, `sw{k}`.
    pub fn switch_name(&self, k: usize) -> &str {
        &self.switch(k).name
    }

    /// Number of switches.
    pub fn switch_count(&self) -> usize {
        self.switches.len()
    }

    fn admin_socket(&self, k: usize) -> PathBuf {
        self.topo.dir().join(format!("sw{k}.sock"))
    }

    /// `tapmesh-switch status --json` of switch `k`, or why it failed.
    pub fn switch_status(&self, k: usize) -> Result<Value, String> {
        status_json(&bins::bin(bins::SWITCH), &self.admin_socket(k))
    }

    /// Switch `k`'s MAC table (`status --json --macs`): (MAC, the node or
    /// switch it is behind), for VLAN 0.
    pub fn switch_macs(&self, k: usize) -> Vec<(String, String)> {
        let out = std::process::Command::new(bins::bin(bins::SWITCH))
            .args(["status", "--json", "--macs", "--socket"])
            .arg(self.admin_socket(k))
            .output()
            .unwrap_or_else(|e| panic!("cannot run status of sw{k}: {e}"));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        v["macs"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|m| {
                        let s = |k: &str| m[k].as_str().unwrap_or("").to_string();
                        (s("mac"), s("node"))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The switch host `i` is homed on now per its node's status (`None`
    /// while it has no session).
    pub fn node_home(&self, i: usize) -> Option<String> {
        let s = self.topo.try_node_status(i).ok()?;
        if s["session"] != "established" {
            return None;
        }
        let home = s["homes"]["home"].as_u64()? as usize;
        s["homes"]["switches"][home]["name"]
            .as_str()
            .map(str::to_string)
    }

    /// Cuts switch `k` off the other switches (every packet to or from
    /// their addresses dropped by nft in its namespace) and off etcd; its
    /// own nodes still reach it. Until [`heal_switch`](Self::heal_switch).
    pub fn partition_switch(&self, k: usize) {
        let others: Vec<String> = (1..=self.switches.len())
            .filter(|&j| j != k)
            .map(|j| switch_v4(j).to_string())
            .collect();
        let others = others.join(", ");
        self.switch_ns(k).nft(&format!(
            "table inet {PARTITION_TABLE} {{\n\
               chain out {{ type filter hook output priority 0; ip daddr {{ {others} }} drop; }}\n\
               chain in {{ type filter hook input priority 0; ip saddr {{ {others} }} drop; }}\n\
             }}\n"
        ));
        etcd::partition_ns(self.switch_ns(k), ETCD_LINK);
    }

    /// Undoes [`partition_switch`](Self::partition_switch).
    pub fn heal_switch(&self, k: usize) {
        self.switch_ns(k)
            .nft(&format!("delete table inet {PARTITION_TABLE}\n"));
        etcd::heal_ns(self.switch_ns(k));
    }

    /// Waits until every ordered pair of `hosts` pings over IPv4 and IPv6,
    /// each source's pings in a thread of their own. Returns the pairs that
    /// still failed at the deadline.
    pub fn wait_pairs(&self, hosts: &[usize], timeout: Duration) -> Result<(), String> {
        let topo = &self.topo;
        let failed: Vec<String> = std::thread::scope(|s| {
            let threads: Vec<_> = hosts
                .iter()
                .map(|&a| {
                    s.spawn(move || {
                        let deadline = std::time::Instant::now() + timeout;
                        let mut failed = Vec::new();
                        for &b in hosts.iter().filter(|&&b| b != a) {
                            for ip in [IpAddr::from(overlay_v4(b)), IpAddr::from(overlay_v6(b))] {
                                let left =
                                    deadline.saturating_duration_since(std::time::Instant::now());
                                if !topo.ping_ok_within(a, ip, left) {
                                    failed.push(format!("h{a} -> {ip}"));
                                }
                            }
                        }
                        failed
                    })
                })
                .collect();
            threads
                .into_iter()
                .flat_map(|t| t.join().expect("ping thread"))
                .collect()
        });
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed.join(", "))
        }
    }

    /// The topology holding the nodes.
    pub fn topo(&self) -> &Topology {
        &self.topo
    }

    /// The topology holding the nodes, to start and stop them.
    pub fn topo_mut(&mut self) -> &mut Topology {
        &mut self.topo
    }

    /// The etcd cluster.
    pub fn etcd(&self) -> &EtcdCluster {
        &self.etcd
    }

    /// The etcd cluster, to kill and restart members.
    pub fn etcd_mut(&mut self) -> &mut EtcdCluster {
        &mut self.etcd
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for log in &self.logs {
                eprintln!("---- tail of {} ----", log.display());
                eprintln!("{}", tail(log, LOG_TAIL_LINES));
            }
        }
        // The fields drop in order: the topology (nodes), the switches (each
        // process, then its namespace), etcd.
    }
}
