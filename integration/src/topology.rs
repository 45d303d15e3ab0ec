//! [`Topology::central`]: one switch namespace and N host namespaces on a
//! bridge, running the real binaries.
//!
//! ```text
//!   {prefix}-sw: br0 198.18.0.3/24 fd00:18::3/64, tapmesh-switch on :7777
//!        |  vh1      |  vh2      |  vhN        (veth pairs, made inside the namespaces)
//!   {prefix}-h1   {prefix}-h2   {prefix}-hN
//!   eth0 198.18.0.(10+i)/24  fd00:18::(10+i)/64      underlay
//!   tapmesh0 198.19.0.i/24   fd00:19::i/64            overlay, made by tapmesh-node
//! ```
//!
//! Keys and configs are written to `/tmp/{prefix}/`, with one log file per
//! process run. Dropping the topology stops every process (nodes first), prints
//! the tail of every log if the thread is panicking, and removes the
//! namespaces and the directory (kept if `TAPMESH_KEEP_DIR` is set).
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::config::{
    AdmittedNode, KeyPair, NetworkRef, NodeConfig, SwitchConfig, SwitchRef, write_file,
};
use crate::process::tail;
use crate::traffic::{TransferReport, tcp_transfer};
use crate::{Netns, Process, bins, status, wait_until};

mod second_switch;

/// The switch's UDP port.
pub const SWITCH_PORT: u16 = 7777;
/// The TAP device name every node uses.
pub const TAP: &str = "tapmesh0";
/// The TAP MTU every node uses (leaves room for 36 B of tapmesh overhead and
/// an IPv6 + UDP header inside the veths' 1500).
pub const TAP_MTU: u32 = 1400;
/// How long a process gets to become ready (socket bound, TAP made).
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines of each log printed when a test fails.
const LOG_TAIL_LINES: usize = 60;

/// Which address family the nodes use to reach the switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Underlay {
    /// `198.18.0.3:7777`.
    V4,
    /// `[fd00:18::3]:7777`.
    V6,
}

/// How a node attaches locally besides (or instead of) its TAP.
#[derive(Debug, Clone, Default)]
struct LocalPorts {
    /// No `[tap]`: the node has only VM ports.
    no_tap: bool,
    /// `[[vm-port]]` socket kinds (`stream`, `dgram`), in order.
    vm_ports: Vec<String>,
    /// Run the node as this uid and gid (not root).
    user: Option<(u32, u32)>,
    /// More tables after the `[[vm-port]]`s (e.g. `[[host]]`).
    tables: String,
}

#[derive(Debug)]
struct Host {
    name: String,
    ns: Netns,
    admitted: bool,
    config_extra: String,
    /// Extra lines for its `[[node]]` entry in `switch.toml`.
    switch_entry_extra: String,
    key: Option<KeyPair>,
    node: Option<Process>,
    runs: u32,
    /// Where its node sends to instead of the switch (e.g. an impairing relay).
    switch_addr_override: Option<SocketAddr>,
    /// The key its node expects instead of the switch's (another switch).
    switch_key_override: Option<String>,
    /// The switches its node lists as `[[switch]]` tables instead (empty:
    /// the topology's).
    switch_list: Vec<SwitchRef>,
    /// The `[[network]]` it belongs to; `None`: the top-level nodes.
    network: Option<NetworkRef>,
    /// Its node's VM ports and user ([`Topology::set_node_vm_ports`]).
    local: LocalPorts,
    /// Its TAP takes host `.0`'s overlay addresses and the MAC `.1`.
    tap_identity: Option<(usize, String)>,
    /// Its TAP's addresses (CIDR) instead of the numbered ones.
    tap_addresses: Option<Vec<String>>,
}

/// A switch and hosts in namespaces. Hosts are numbered from 1 (`h1`).
#[derive(Debug)]
pub struct Topology {
    prefix: String,
    dir: PathBuf,
    underlay: Underlay,
    switch_key: Option<KeyPair>,
    switch: Option<Process>,
    switch_runs: u32,
    logs: Vec<PathBuf>,
    hosts: Vec<Host>,
    sw: Netns,
    switch_config_extra: String,
    tap_mtu: u32,
    /// `--log-level` for the daemons started from now on (default: theirs).
    log_level: Option<String>,
    /// NAT router namespaces ([`Topology::mesh_behind_nats`]).
    routers: Vec<Netns>,
    /// A second switch ([`Topology::start_second_switch`]).
    second_switch: Option<second_switch::SecondSwitch>,
}

impl Topology {
    /// Builds the namespaces for a switch and `n_hosts` admitted hosts, with
    /// an IPv4 underlay. Starts nothing.
    pub fn central(n_hosts: usize) -> Topology {
        Self::central_with(n_hosts, Underlay::V4)
    }

    /// The TAP MTU nodes started from now on get (default 1400).
    pub fn set_tap_mtu(&mut self, mtu: u32) {
        self.tap_mtu = mtu;
    }

    /// Like [`Topology::central`], choosing the underlay address family.
    pub fn central_with(n_hosts: usize, underlay: Underlay) -> Topology {
        let prefix = crate::netns::unique_prefix();
        let dir = std::env::temp_dir().join(&prefix);
        let mut topo = Self::switch_only(prefix, dir, underlay);
        for _ in 0..n_hosts {
            topo.add_host(true);
        }
        topo
    }

    /// A switch and one admitted host per name in `hosts`, in namespaces
    /// `{prefix}-sw` and `{prefix}-{name}`, the host's node also called
    /// `name`; keys, configs and logs in `dir` (emptied first). IPv4
    /// underlay. Starts nothing. For the lab launcher, whose users type
    /// these names.
    pub fn named(prefix: &str, dir: PathBuf, hosts: &[&str]) -> Topology {
        let mut topo = Self::switch_only(prefix.to_string(), dir, Underlay::V4);
        for name in hosts {
            topo.add_named_host(name, true);
        }
        topo
    }

    /// The switch namespace with its bridge, and no hosts.
    fn switch_only(prefix: String, dir: PathBuf, underlay: Underlay) -> Topology {
        crate::require_root();
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let sw = Netns::new(&format!("{prefix}-sw"));
        let topo = Topology {
            prefix,
            dir,
            underlay,
            switch_key: None,
            switch: None,
            switch_runs: 0,
            logs: Vec::new(),
            hosts: Vec::new(),
            sw,
            switch_config_extra: String::new(),
            tap_mtu: TAP_MTU,
            log_level: None,
            routers: Vec::new(),
            second_switch: None,
        };
        topo.sw.ip(&[
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ]);
        topo.sw.ip(&["addr", "add", "198.18.0.3/24", "dev", "br0"]);
        topo.sw
            .ip(&["addr", "add", "fd00:18::3/64", "dev", "br0", "nodad"]);
        topo.sw.ip(&["link", "set", "br0", "up"]);
        topo
    }

    fn add_host(&mut self, admitted: bool) -> usize {
        let name = format!("h{}", self.hosts.len() + 1);
        self.add_named_host(&name, admitted)
    }

    fn add_named_host(&mut self, name: &str, admitted: bool) -> usize {
        let i = self.hosts.len() + 1;
        let name = name.to_string();
        let ns = Netns::new(&format!("{}-{name}", self.prefix));
        self.plug_into_underlay(&ns, &format!("vh{i}"), underlay_v4(i), underlay_v6(i));
        self.hosts.push(Host {
            name,
            ns,
            admitted,
            config_extra: String::new(),
            switch_entry_extra: String::new(),
            key: None,
            node: None,
            runs: 0,
            switch_addr_override: None,
            switch_key_override: None,
            switch_list: Vec::new(),
            network: None,
            tap_identity: None,
            tap_addresses: None,
            local: LocalPorts::default(),
        });
        i
    }

    /// Connects namespace `ns` to the underlay: a veth from the switch
    /// namespace's bridge (port `port` there) to `eth0` in `ns`, with `v4/24`
    /// and `v6/64`, up.
    pub fn plug_into_underlay(&self, ns: &Netns, port: &str, v4: Ipv4Addr, v6: Ipv6Addr) {
        self.sw.ip(&[
            "link",
            "add",
            port,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            ns.name(),
        ]);
        self.sw.ip(&["link", "set", port, "master", "br0"]);
        self.sw.ip(&["link", "set", port, "up"]);
        ns.ip(&["addr", "add", &format!("{v4}/24"), "dev", "eth0"]);
        ns.ip(&["addr", "add", &format!("{v6}/64"), "dev", "eth0", "nodad"]);
        ns.ip(&["link", "set", "eth0", "up"]);
    }

    /// Adds a host whose key is *not* in the switch's config (a switch started
    /// earlier or later never admits it). Returns its index.
    pub fn add_unadmitted_node(&mut self) -> usize {
        self.add_host(false)
    }

    /// Removes host `i` from the switch's config from the next
    /// [`start_switch`](Self::start_switch) on (its node keeps running).
    pub fn revoke(&mut self, i: usize) {
        self.host_mut(i).admitted = false;
    }

    /// The namespace prefix, `tmi{pid}x{n}`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The directory with keys, configs and logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of hosts (admitted or not).
    pub fn host_count(&self) -> usize {
        self.hosts.len()
    }

    /// The switch's namespace.
    pub fn switch_ns(&self) -> &Netns {
        &self.sw
    }

    /// Host `i`'s namespace.
    pub fn ns(&self, i: usize) -> &Netns {
        &self.host(i).ns
    }

    /// Host `i`'s name (`h{i}`), also its node name.
    pub fn host_name(&self, i: usize) -> &str {
        &self.host(i).name
    }

    fn host(&self, i: usize) -> &Host {
        &self.hosts[crate::one_based(self.hosts.len(), i, "host h")]
    }

    fn host_mut(&mut self, i: usize) -> &mut Host {
        let k = crate::one_based(self.hosts.len(), i, "host h");
        &mut self.hosts[k]
    }

    /// The switch's UDP address for the chosen underlay.
    pub fn switch_addr(&self) -> SocketAddr {
        let ip: IpAddr = match self.underlay {
            Underlay::V4 => Ipv4Addr::new(198, 18, 0, 3).into(),
            Underlay::V6 => "fd00:18::3".parse::<Ipv6Addr>().expect("literal").into(),
        };
        SocketAddr::new(ip, SWITCH_PORT)
    }

    /// The switch's public key (base64), generating keys if not yet made.
    pub fn switch_public_key(&mut self) -> String {
        self.ensure_keys();
        self.switch_key
            .as_ref()
            .expect("keys made")
            .public_key
            .clone()
    }

    /// Host `i`'s public key (base64), generating keys if not yet made.
    pub fn node_public_key(&mut self, i: usize) -> String {
        self.ensure_keys();
        self.host(i)
            .key
            .as_ref()
            .expect("keys made")
            .public_key
            .clone()
    }

    /// The switch's admin socket (for `tapmesh-switch status --socket`).
    pub fn admin_socket(&self) -> PathBuf {
        self.dir.join("switch.sock")
    }

    fn node_admin_socket(&self, i: usize) -> PathBuf {
        if self.host(i).local.user.is_some() {
            self.node_run_dir(i).join("admin.sock")
        } else {
            self.dir.join(format!("h{i}.sock"))
        }
    }

    /// Host `i`'s run directory, where its VM sockets are (and, for a node
    /// running as another user, its admin socket; it owns the directory).
    pub fn node_run_dir(&self, i: usize) -> PathBuf {
        self.dir.join(format!("h{i}-run"))
    }

    /// Gives host `i`'s node one `[[vm-port]]` per entry of `sockets`
    /// (`"stream"`, `"dgram"`, or `"stream-connect"`: the node connects to
    /// a socket QEMU listens on), from the next [`start_node`](Self::start_node)
    /// on; `tap: false` leaves it without a TAP. Returns the socket paths (in
    /// [`node_run_dir`](Self::node_run_dir)).
    pub fn set_node_vm_ports(&mut self, i: usize, sockets: &[&str], tap: bool) -> Vec<PathBuf> {
        let dir = self.node_run_dir(i);
        let h = self.host_mut(i);
        h.local.no_tap = !tap;
        h.local.vm_ports = sockets.iter().map(|s| s.to_string()).collect();
        (1..=sockets.len())
            .map(|n| dir.join(format!("vm{n}.sock")))
            .collect()
    }

    /// Tables appended to host `i`'s `h{i}.toml` after its `[[vm-port]]`s
    /// (e.g. `[[host]]` with its forwards), from the next config written on.
    pub fn set_node_tables(&mut self, i: usize, toml: &str) {
        self.host_mut(i).local.tables = toml.to_string();
    }

    /// Runs host `i`'s node as `uid`/`gid` (not root), from the next
    /// [`start_node`](Self::start_node) on: it gets a copy of the node binary
    /// it can execute, and owns its key file and run directory.
    pub fn set_node_user(&mut self, i: usize, uid: u32, gid: u32) {
        self.host_mut(i).local.user = Some((uid, gid));
    }

    /// Generates any keys not yet made (switch and every host).
    fn ensure_keys(&mut self) {
        if self.switch_key.is_none() {
            let file = self.dir.join("switch.key");
            self.switch_key = Some(KeyPair::generate(&bins::bin(bins::SWITCH), &file));
        }
        for h in &mut self.hosts {
            if h.key.is_none() {
                let file = self.dir.join(format!("{}.key", h.name));
                h.key = Some(KeyPair::generate(&bins::bin(bins::NODE), &file));
            }
        }
    }

    /// `switch.toml` as the settings are now: the topology's switch
    /// admitting every admitted host.
    pub(crate) fn switch_config(&self) -> SwitchConfig {
        SwitchConfig {
            listen: self.switch_addr().to_string(),
            private_key_file: self.dir.join("switch.key"),
            admin_socket: self.admin_socket(),
            state_file: self.dir.join("switch.state"),
            mac_aging_secs: 300,
            node_timeout_secs: 30,
            extra: self.switch_config_extra.clone(),
            nodes: self
                .hosts
                .iter()
                .filter(|h| h.admitted)
                .map(|h| AdmittedNode {
                    name: h.name.clone(),
                    public_key: h.key.as_ref().expect("keys made").public_key.clone(),
                    entry_extra: h.switch_entry_extra.clone(),
                    network: h.network.clone(),
                })
                .collect(),
        }
    }

    /// Like [`central`](Self::central), with the switch in mesh mode
    /// (`mode = "mesh"`): nodes talk directly, the switch coordinates and
    /// relays. [`set_switch_config_extra`](Self::set_switch_config_extra)
    /// replaces this line, so callers adding more must repeat it.
    pub fn mesh(n_hosts: usize) -> Topology {
        let mut t = Topology::central(n_hosts);
        t.set_switch_config_extra("mode = \"mesh\"\n");
        t
    }

    /// A mesh (`mode = "mesh"`) whose `n_hosts` hosts each sit behind their
    /// own NAT router, the switch on the public side. Starts nothing.
    ///
    /// ```text
    ///   {prefix}-sw: br0 198.18.0.3/24, tapmesh-switch on :7777
    ///        | vr1                      | vrN
    ///   {prefix}-r1: wan 198.18.0.21/24 ...   {prefix}-rN: wan 198.18.0.(20+N)/24
    ///                lan 198.18.1.1/24              lan 198.18.N.1/24
    ///        |  (nft masquerade out of wan, ip_forward on; from wan only
    ///        |   replies get in, as on any NAT router)
    ///   {prefix}-h1: eth0 198.18.1.2/24, default via 198.18.1.1
    /// ```
    ///
    /// The hosts have no IPv6 underlay (the overlay still carries IPv6), and
    /// [`underlay_v4`] does not apply to them: see [`nat_host_v4`] and
    /// [`nat_router_wan_v4`].
    pub fn mesh_behind_nats(n_hosts: usize) -> Topology {
        assert!(
            (1..=200).contains(&n_hosts),
            "1..=200 hosts behind NATs, not {n_hosts}"
        );
        let mut topo = Topology::central_with(0, Underlay::V4);
        topo.set_switch_config_extra("mode = \"mesh\"\n");
        for i in 1..=n_hosts {
            let r = Netns::new(&format!("{}-r{i}", topo.prefix));
            let port = format!("vr{i}");
            topo.sw.ip(&[
                "link",
                "add",
                &port,
                "type",
                "veth",
                "peer",
                "name",
                "wan",
                "netns",
                r.name(),
            ]);
            topo.sw.ip(&["link", "set", &port, "master", "br0"]);
            topo.sw.ip(&["link", "set", &port, "up"]);
            let wan = format!("{}/24", nat_router_wan_v4(i));
            r.ip(&["addr", "add", &wan, "dev", "wan"]);
            r.ip(&["link", "set", "wan", "up"]);
            let name = format!("h{i}");
            let ns = Netns::new(&format!("{}-{name}", topo.prefix));
            r.ip(&[
                "link",
                "add",
                "lan",
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                ns.name(),
            ]);
            let lan_gw = Ipv4Addr::new(198, 18, host_octet(i), 1).to_string();
            r.ip(&["addr", "add", &format!("{lan_gw}/24"), "dev", "lan"]);
            r.ip(&["link", "set", "lan", "up"]);
            r.exec_ok("sysctl", &["-q", "-w", "net.ipv4.ip_forward=1"]);
            // Masquerade out of wan, and the stateful firewall every NAT
            // router has: from wan, only replies get in (to the router
            // itself or forwarded). Without it a punch packet that arrives
            // before the local host's own outbound packet would leave a
            // conntrack entry for the router itself, and masquerade would
            // then move the host's flow to another port (see
            // docs/protocol.md, "NAT traversal").
            let rules = topo.dir.join(format!("r{i}.nft"));
            write_file(&rules, NAT_ROUTER_RULES);
            r.exec_ok("nft", &["-f", &rules.to_string_lossy()]);
            let addr = format!("{}/24", nat_host_v4(i));
            ns.ip(&["addr", "add", &addr, "dev", "eth0"]);
            ns.ip(&["link", "set", "eth0", "up"]);
            ns.ip(&["route", "add", "default", "via", &lan_gw]);
            topo.routers.push(r);
            topo.hosts.push(Host {
                name,
                ns,
                admitted: true,
                config_extra: String::new(),
                switch_entry_extra: String::new(),
                key: None,
                node: None,
                runs: 0,
                switch_addr_override: None,
                switch_key_override: None,
                switch_list: Vec::new(),
                network: None,
                tap_identity: None,
                tap_addresses: None,
                local: LocalPorts::default(),
            });
        }
        topo
    }

    /// NAT router `i`'s namespace (only in [`Topology::mesh_behind_nats`]).
    pub fn router_ns(&self, i: usize) -> &Netns {
        assert!(
            (1..=self.routers.len()).contains(&i),
            "no router r{i} (have {})",
            self.routers.len()
        );
        &self.routers[i - 1]
    }

    /// Kills the switch with SIGKILL (like a crash) and leaves it down.
    pub fn kill9_switch(&mut self) {
        if let Some(mut s) = self.switch.take() {
            s.kill9();
        }
    }

    /// Runs the daemons started from now on with `--log-level level` (e.g.
    /// `trace`).
    pub fn set_log_level(&mut self, level: &str) {
        self.log_level = Some(level.to_string());
    }

    /// `run --config config`, with `--log-level` if set.
    fn run_args<'a>(&'a self, config: &'a str) -> Vec<&'a str> {
        let mut args = vec!["run", "--config", config];
        if let Some(l) = &self.log_level {
            args.extend(["--log-level", l.as_str()]);
        }
        args
    }

    /// Extra top-level lines for `switch.toml` (e.g. `metrics-listen = "…"`),
    /// used from the next [`start_switch`](Self::start_switch) on.
    pub fn set_switch_config_extra(&mut self, toml: &str) {
        self.switch_config_extra = toml.to_string();
    }

    /// Extra lines for host `i`'s `[[node]]` entry in `switch.toml` (e.g.
    /// `vlan = 10`), used from the next [`start_switch`](Self::start_switch) on.
    pub fn set_switch_node_entry_extra(&mut self, i: usize, toml: &str) {
        self.host_mut(i).switch_entry_extra = toml.to_string();
    }

    /// Host `i`'s extra `[[node]]` lines (see
    /// [`set_switch_node_entry_extra`](Self::set_switch_node_entry_extra)),
    /// for other switches admitting the same node.
    pub fn switch_node_entry_extra(&self, i: usize) -> &str {
        &self.host(i).switch_entry_extra
    }

    /// Extra top-level lines for host `i`'s `h{i}.toml`, used from the next
    /// [`start_node`](Self::start_node) on.
    pub fn set_node_config_extra(&mut self, i: usize, toml: &str) {
        self.host_mut(i).config_extra = toml.to_string();
    }

    /// Stops host `i`'s node, gives it `toml` as its extra top-level lines
    /// ([`set_node_config_extra`](Self::set_node_config_extra)) and starts
    /// it again.
    pub fn restart_node_with(&mut self, i: usize, toml: &str) {
        self.stop_node(i);
        self.set_node_config_extra(i, toml);
        self.start_node(i);
    }

    /// Lists host `i` under the switch's `[[network]]` `net` (and sets its
    /// node's `network-id`), from the next start of the switch and the node on.
    pub fn set_network(&mut self, i: usize, net: NetworkRef) {
        self.host_mut(i).network = Some(net);
    }

    /// Gives host `i`'s TAP host `as_host`'s overlay addresses and the MAC
    /// `mac` (`[tap] mac`), from the next [`start_node`](Self::start_node)
    /// on: for hosts in different networks that look the same.
    pub fn set_tap_identity(&mut self, i: usize, as_host: usize, mac: &str) {
        self.host_mut(i).tap_identity = Some((as_host, mac.to_string()));
    }

    /// Gives host `i`'s TAP these addresses (CIDR, e.g. `198.19.10.1/24`)
    /// instead of [`overlay_v4`] and [`overlay_v6`], from the next
    /// [`start_node`](Self::start_node) on.
    pub fn set_tap_addresses(&mut self, i: usize, addresses: Vec<String>) {
        self.host_mut(i).tap_addresses = Some(addresses);
    }

    /// Points host `i`'s node at `addr` instead of the switch (e.g. a relay
    /// from [`crate::impair`]), from the next [`start_node`](Self::start_node)
    /// on; `None` restores the switch.
    pub fn set_node_switch_addr(&mut self, i: usize, addr: Option<SocketAddr>) {
        self.host_mut(i).switch_addr_override = addr;
    }

    /// Homes host `i`'s node on another switch (of a cluster): its address
    /// and public key, from the next [`start_node`](Self::start_node) on.
    pub fn set_node_switch(&mut self, i: usize, addr: SocketAddr, public_key: &str) {
        let h = self.host_mut(i);
        h.switch_addr_override = Some(addr);
        h.switch_key_override = Some(public_key.to_string());
    }

    /// Has host `i`'s node list `switches` as `[[switch]]` tables, in order
    /// of preference, instead of the topology's switch, from the next
    /// [`start_node`](Self::start_node) on.
    pub fn set_node_switches(&mut self, i: usize, switches: Vec<SwitchRef>) {
        self.host_mut(i).switch_list = switches;
    }

    /// Admits host `i` in `switch.toml` or not, from the next
    /// [`write_switch_config`](Self::write_switch_config) on.
    pub fn set_admitted(&mut self, i: usize, admitted: bool) {
        self.host_mut(i).admitted = admitted;
    }

    /// Writes `switch.toml` as the settings are now (for a reload; the
    /// switch reads it at start too). Returns its path.
    pub fn write_switch_config(&mut self) -> PathBuf {
        self.ensure_keys();
        let config = self.dir.join("switch.toml");
        write_file(&config, &self.switch_config().render());
        config
    }

    /// Writes `switch.toml`, starts the switch, and waits until its UDP port is
    /// bound and its admin socket answers `status`.
    pub fn start_switch(&mut self) {
        assert!(self.switch.is_none(), "switch already running");
        let config = self.write_switch_config();
        self.switch_runs += 1;
        let log = self.dir.join(format!("switch.{}.log", self.switch_runs));
        self.logs.push(log.clone());
        let config = config.to_string_lossy().into_owned();
        let process = Process::spawn(
            "switch",
            &self.sw,
            &bins::bin(bins::SWITCH),
            &self.run_args(&config),
            log,
        );
        self.switch = Some(process);
        let ready = wait_until(READY_TIMEOUT, || {
            self.assert_switch_running();
            self.switch_udp_bound() && self.try_switch_status().is_ok()
        });
        assert!(
            ready,
            "switch did not become ready (UDP {} bound and admin socket answering) within {READY_TIMEOUT:?}; last status error: {:?}",
            self.switch_addr(),
            self.try_switch_status().err()
        );
    }

    /// Whether some UDP socket in the switch namespace is bound to port 7777.
    pub fn switch_udp_bound(&self) -> bool {
        let port = format!(":{SWITCH_PORT:04X}");
        let file = match self.underlay {
            Underlay::V4 => "udp",
            Underlay::V6 => "udp6",
        };
        self.sw.proc_net(file).lines().skip(1).any(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|local| local.ends_with(&port))
        })
    }

    fn assert_switch_running(&mut self) {
        let sw = self.switch.as_mut().expect("switch not started");
        if let Some(status) = sw.try_exit() {
            panic!(
                "switch exited unexpectedly ({status}); log {}:\n{}",
                sw.log().display(),
                tail(sw.log(), LOG_TAIL_LINES)
            );
        }
    }

    /// The switch's PID.
    pub fn switch_pid(&self) -> u32 {
        self.switch.as_ref().expect("switch not started").pid()
    }

    /// Sends `signal` (e.g. `libc::SIGHUP`) to the switch.
    pub fn signal_switch(&mut self, signal: libc::c_int) {
        self.switch
            .as_mut()
            .expect("switch not started")
            .signal(signal);
    }

    /// Sends `signal` (e.g. `libc::SIGHUP`) to host `i`'s node.
    pub fn signal_node(&mut self, i: usize, signal: libc::c_int) {
        self.host_mut(i)
            .node
            .as_mut()
            .expect("node not started")
            .signal(signal);
    }

    /// Whether the switch process is running.
    pub fn switch_running(&mut self) -> bool {
        self.switch.as_mut().is_some_and(Process::is_running)
    }

    /// Stops the switch with SIGTERM (SIGKILL after a grace period) and returns
    /// its exit status.
    pub fn stop_switch(&mut self) -> ExitStatus {
        self.switch.take().expect("switch not started").stop()
    }

    /// Kills the switch with SIGKILL (no cleanup, like a crash) and starts a
    /// new one with the same config. The nodes are left alone.
    pub fn restart_switch_kill9(&mut self) {
        let mut old = self.switch.take().expect("switch not started");
        old.kill9();
        drop(old);
        self.start_switch();
    }

    /// `tapmesh-switch status --json`, or why it failed.
    pub fn try_switch_status(&self) -> Result<Value, String> {
        let socket = self.admin_socket();
        status_json(&bins::bin(bins::SWITCH), &socket)
    }

    /// `tapmesh-switch status --json`; panics if it fails.
    pub fn switch_status(&self) -> Value {
        self.try_switch_status()
            .unwrap_or_else(|e| panic!("switch status failed: {e}"))
    }

    /// `tapmesh-node status --json` for host `i`, or why it failed.
    pub fn try_node_status(&self, i: usize) -> Result<Value, String> {
        status_json(&bins::bin(bins::NODE), &self.node_admin_socket(i))
    }

    /// `tapmesh-node status --json` for host `i`; panics if it fails.
    pub fn node_status(&self, i: usize) -> Value {
        status_json(&bins::bin(bins::NODE), &self.node_admin_socket(i))
            .unwrap_or_else(|e| panic!("h{i} status failed: {e}"))
    }

    /// Writes `h{i}.toml`, starts the node in host `i`, and waits until its TAP
    /// exists.
    pub fn start_node(&mut self, i: usize) {
        assert!(self.host(i).node.is_none(), "h{i} already running");
        let path = self.write_node_config(i);
        let runs = {
            let h = self.host_mut(i);
            h.runs += 1;
            h.runs
        };
        let log = self.dir.join(format!("h{i}.{runs}.log"));
        self.logs.push(log.clone());
        let path = path.to_string_lossy().into_owned();
        let run_dir = self.node_run_dir(i);
        std::fs::create_dir_all(&run_dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", run_dir.display()));
        let local = self.host(i).local.clone();
        let process = match local.user {
            None => Process::spawn(
                &format!("h{i}"),
                &self.host(i).ns,
                &bins::bin(bins::NODE),
                &self.run_args(&path),
                log,
            ),
            Some((uid, gid)) => {
                let key = self.host(i).key.as_ref().expect("keys made");
                let bin = self.user_copy_of_node_binary();
                for p in [&run_dir, &key.private_key_file] {
                    std::os::unix::fs::chown(p, Some(uid), Some(gid))
                        .unwrap_or_else(|e| panic!("cannot chown {}: {e}", p.display()));
                }
                // setpriv execs, so the PID is the node's own.
                let mut cmd = self.host(i).ns.command("setpriv");
                cmd.args(["--reuid", &uid.to_string(), "--regid", &gid.to_string()])
                    .args(["--clear-groups", "--"])
                    .arg(&bin)
                    .args(self.run_args(&path));
                Process::spawn_command(&format!("h{i}"), cmd, log)
            }
        };
        self.host_mut(i).node = Some(process);
        let ready = wait_until(READY_TIMEOUT, || {
            self.assert_node_running(i);
            if local.no_tap {
                self.try_node_status(i).is_ok()
            } else {
                self.host(i).ns.has_link(TAP)
            }
        });
        assert!(
            ready,
            "h{i}: not ready ({TAP} made or status answered) within {READY_TIMEOUT:?}"
        );
    }

    /// Writes `h{i}.toml` as the settings are now (for a reload; the node
    /// reads it at start too). Returns its path.
    pub fn write_node_config(&mut self, i: usize) -> PathBuf {
        self.ensure_keys();
        let switch_public_key = self
            .switch_key
            .as_ref()
            .expect("keys made")
            .public_key
            .clone();
        let host = self.host(i);
        let switch_public_key = host
            .switch_key_override
            .clone()
            .unwrap_or(switch_public_key);
        let config = NodeConfig {
            name: host.name.clone(),
            private_key_file: host
                .key
                .as_ref()
                .expect("keys made")
                .private_key_file
                .clone(),
            switch: host
                .switch_addr_override
                .unwrap_or_else(|| self.switch_addr())
                .to_string(),
            switch_public_key,
            admin_socket: self.node_admin_socket(i),
            tap_name: TAP.to_string(),
            tap_mtu: self.tap_mtu,
            tap_addresses: host.tap_addresses.clone().unwrap_or_else(|| {
                let j = host.tap_identity.as_ref().map_or(i, |t| t.0);
                vec![
                    format!("{}/24", overlay_v4(j)),
                    format!("{}/64", overlay_v6(j)),
                ]
            }),
            tap_mac: host.tap_identity.as_ref().map(|t| t.1.clone()),
            network_id: host.network.as_ref().map_or(0, |n| n.id),
            extra: host.config_extra.clone(),
            with_tap: !host.local.no_tap,
            tables: host
                .local
                .vm_ports
                .iter()
                .enumerate()
                .map(|(n, kind)| {
                    let path = self.node_run_dir(i).join(format!("vm{}.sock", n + 1));
                    let (socket, connect) = match kind.strip_suffix("-connect") {
                        Some(k) => (k, "connect = true\n"),
                        None => (kind.as_str(), ""),
                    };
                    format!(
                        "[[vm-port]]\npath = \"{}\"\nsocket = \"{socket}\"\n{connect}",
                        path.display()
                    )
                })
                .chain(std::iter::once(host.local.tables.clone()))
                .collect(),
        };
        let config = self.with_second_switch(config);
        let config = with_switch_list(config, &self.host(i).switch_list);
        let path = self.dir.join(format!("h{i}.toml"));
        write_file(&path, &config.render());
        path
    }

    /// A copy of the node binary in the topology's directory, which any user
    /// can execute (the build directory may not be reachable for them).
    fn user_copy_of_node_binary(&self) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let copy = self.dir.join(bins::NODE);
        if !copy.exists() {
            std::fs::copy(bins::bin(bins::NODE), &copy)
                .unwrap_or_else(|e| panic!("cannot copy the node binary: {e}"));
            std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o755))
                .expect("chmod topology dir");
        }
        copy
    }

    fn assert_node_running(&mut self, i: usize) {
        let node = self.host_mut(i).node.as_mut().expect("node not started");
        if let Some(status) = node.try_exit() {
            panic!(
                "h{i}'s node exited unexpectedly ({status}); log {}:\n{}",
                node.log().display(),
                tail(node.log(), LOG_TAIL_LINES)
            );
        }
    }

    /// Starts the switch and every admitted host's node, and waits until every
    /// pair of them pings over IPv4 and IPv6 (panics with the failures if not
    /// within `timeout`).
    pub fn start_all(&mut self, timeout: Duration) {
        if let Err(e) = self.try_start_all(timeout) {
            panic!("{e}");
        }
    }

    /// [`start_all`](Self::start_all), returning the failure as one line
    /// instead of panicking (for the demo).
    pub fn try_start_all(&mut self, timeout: Duration) -> Result<(), String> {
        self.start_switch();
        let admitted: Vec<usize> = (1..=self.hosts.len())
            .filter(|&i| self.host(i).admitted)
            .collect();
        for &i in &admitted {
            self.start_node(i);
        }
        self.wait_mesh(&admitted, timeout)
            .map_err(|e| format!("overlay did not come up within {timeout:?}: {e}"))
    }

    /// Waits until every ordered pair of `hosts` pings over the overlay, IPv4
    /// and IPv6. Returns the pairs that still failed at the deadline.
    pub fn wait_mesh(&self, hosts: &[usize], timeout: Duration) -> Result<(), String> {
        let mut failed = Vec::new();
        let deadline = std::time::Instant::now() + timeout;
        for &a in hosts {
            for &b in hosts {
                if a == b {
                    continue;
                }
                for ip in [IpAddr::from(overlay_v4(b)), IpAddr::from(overlay_v6(b))] {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    if !self.ping_ok_within(a, ip, left) {
                        failed.push(format!("h{a} -> {ip}"));
                    }
                }
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed.join(", "))
        }
    }

    /// Whether the switch lists host `i` as connected.
    pub fn is_connected(&self, i: usize) -> bool {
        self.try_switch_status()
            .is_ok_and(|s| status::switch_node_connected(&s, self.host_name(i)))
    }

    /// Restarts host `i`'s node ([`Topology::stop_node`],
    /// [`Topology::start_node`]) and waits up to `within` for its status to
    /// report an established session: how long that took from the start,
    /// or `None` if it did not come.
    pub fn restart_node_until_established(
        &mut self,
        i: usize,
        within: Duration,
    ) -> Option<Duration> {
        self.stop_node(i);
        self.start_node(i);
        let t = Instant::now();
        let connected = wait_until(within, || {
            self.try_node_status(i)
                .is_ok_and(|s| s["session"] == "established")
        });
        connected.then(|| t.elapsed())
    }

    /// The node PID of host `i`.
    pub fn node_pid(&self, i: usize) -> u32 {
        self.host(i).node.as_ref().expect("node not started").pid()
    }

    /// Whether host `i`'s node is running.
    pub fn node_running(&mut self, i: usize) -> bool {
        self.host_mut(i)
            .node
            .as_mut()
            .is_some_and(Process::is_running)
    }

    /// Stops host `i`'s node with SIGTERM (SIGKILL after a grace period) and
    /// returns its exit status.
    pub fn stop_node(&mut self, i: usize) -> ExitStatus {
        self.host_mut(i)
            .node
            .take()
            .expect("node not started")
            .stop()
    }

    /// Kills host `i`'s node with SIGKILL (no cleanup, like a crash), reaps
    /// it, and leaves it down; [`start_node`](Self::start_node) restarts it.
    pub fn kill9_node(&mut self, i: usize) {
        let mut node = self.host_mut(i).node.take().expect("node not started");
        node.kill9();
    }

    /// Host `i`'s admin socket path (may be left behind by a crash).
    pub fn node_admin_socket_path(&self, i: usize) -> PathBuf {
        self.node_admin_socket(i)
    }

    /// Panics, with its log, if the switch or any started node has exited.
    pub fn assert_all_running(&mut self) {
        if self.switch.is_some() {
            self.assert_switch_running();
        }
        for i in 1..=self.hosts.len() {
            if self.host(i).node.is_some() {
                self.assert_node_running(i);
            }
        }
    }

    /// Host `i`'s TAP MAC address.
    pub fn tap_mac(&self, i: usize) -> String {
        self.ns(i).mac(TAP)
    }

    /// One ping (`ping -c 1 -W 1`) from host `from` to `to`.
    pub fn ping(&self, from: usize, to: impl Into<IpAddr>) -> bool {
        let to = to.into().to_string();
        self.ns(from)
            .exec("ping", &["-n", "-q", "-c", "1", "-W", "1", &to])
            .status
            .success()
    }

    /// Pings until one succeeds or `timeout` has passed.
    pub fn ping_ok_within(&self, from: usize, to: impl Into<IpAddr>, timeout: Duration) -> bool {
        let to = to.into();
        wait_until(timeout, || self.ping(from, to))
    }

    /// Sends `bytes` bytes over TCP from host `from` to `to_ip` in host `to`
    /// and checks they arrive unchanged (see [`crate::traffic::tcp_transfer`]).
    pub fn tcp_transfer(
        &self,
        from: usize,
        to: usize,
        to_ip: impl Into<IpAddr>,
        bytes: u64,
    ) -> Result<TransferReport, String> {
        tcp_transfer(
            self.ns(from),
            self.ns(to),
            to_ip.into(),
            bytes,
            Duration::from_secs(20),
        )
    }

    /// A human-readable summary of what was built (used by the demo).
    pub fn describe(&self) -> String {
        let mut s = format!(
            "switch namespace {}: br0 198.18.0.3/24 fd00:18::3/64, tapmesh-switch on {}\n",
            self.sw.name(),
            self.switch_addr()
        );
        for (k, h) in self.hosts.iter().enumerate() {
            let i = k + 1;
            s += &format!(
                "host {} ({}): eth0 {}/24 {}/64, {TAP} {}/24 {}/64{}\n",
                h.ns.name(),
                h.name,
                underlay_v4(i),
                underlay_v6(i),
                overlay_v4(i),
                overlay_v6(i),
                if h.admitted { "" } else { " (not admitted)" }
            );
        }
        s += &format!("keys, configs and logs: {}\n", self.dir.display());
        s += &format!(
            "switch status: {} status --json --socket {}\n",
            bins::bin_dir().join(bins::SWITCH).display(),
            self.admin_socket().display()
        );
        s
    }

    /// Prints the tail of every process's log to stderr (done on drop when
    /// the thread is panicking).
    pub fn print_logs(&self) {
        eprintln!(
            "---- tapmesh topology {} failed; logs in {} ----",
            self.prefix,
            self.dir.display()
        );
        for log in &self.logs {
            eprintln!("---- tail of {} ----", log.display());
            eprintln!("{}", tail(log, LOG_TAIL_LINES));
        }
        eprintln!("---- end of logs ----");
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        // Nodes first, so they do not log a vanished switch; each stop is
        // SIGTERM by PID, then SIGKILL.
        for h in &mut self.hosts {
            drop(h.node.take());
        }
        drop(self.switch.take());
        self.stop_second_switch();
        if failed {
            self.print_logs();
        }
        if std::env::var_os("TAPMESH_KEEP_DIR").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        // The Netns fields drop after this, deleting the namespaces (and with
        // them the veths, the bridge and any TAP left behind).
    }
}

/// `cfg` listing `switches` as `[[switch]]` tables instead of its one
/// `switch`, unless `switches` is empty.
fn with_switch_list(mut cfg: NodeConfig, switches: &[SwitchRef]) -> NodeConfig {
    if switches.is_empty() {
        return cfg;
    }
    let tables: String = switches.iter().map(SwitchRef::node_table).collect();
    cfg.tables = format!("{tables}{}", cfg.tables);
    cfg.switch.clear();
    cfg.switch_public_key.clear();
    cfg
}

/// Runs `binary status --json --socket PATH` and parses its output.
pub fn status_json(binary: &Path, socket: &Path) -> Result<Value, String> {
    let out = Command::new(binary)
        .args(["status", "--json", "--socket"])
        .arg(socket)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} status: {}: {}",
            binary.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "bad JSON from status ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Host `i`'s underlay IPv4 address, 198.18.0.(10+i).
pub fn underlay_v4(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, 10 + host_octet(i))
}

/// In [`Topology::mesh_behind_nats`], host `i`'s private underlay address,
/// 198.18.i.2 (behind router `i`, 198.18.i.1).
pub fn nat_host_v4(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, host_octet(i), 2)
}

/// In [`Topology::mesh_behind_nats`], router `i`'s public (wan) address,
/// 198.18.0.(20+i), the address its hosts are masqueraded to.
pub fn nat_router_wan_v4(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, 20 + host_octet(i))
}

/// Host `i`'s underlay IPv6 address, `fd00:18::(10+i)`.
pub fn underlay_v6(i: usize) -> Ipv6Addr {
    format!("fd00:18::{}", 10 + host_octet(i) as u16)
        .parse()
        .expect("valid IPv6")
}

/// The ruleset of every NAT router in [`Topology::mesh_behind_nats`].
const NAT_ROUTER_RULES: &str = "\
table ip nat {
    chain post {
        type nat hook postrouting priority 100;
        oifname \"wan\" masquerade
    }
}
table ip filter {
    chain input {
        type filter hook input priority 0; policy accept;
        iifname \"wan\" ct state established,related accept
        iifname \"wan\" drop
    }
    chain forward {
        type filter hook forward priority 0; policy accept;
        iifname \"wan\" ct state established,related accept
        iifname \"wan\" drop
    }
}
";

/// Host `i`'s overlay IPv4 address, 198.19.0.i.
pub fn overlay_v4(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 19, 0, host_octet(i))
}

/// Host `i`'s overlay IPv6 address, `fd00:19::i`.
pub fn overlay_v6(i: usize) -> Ipv6Addr {
    format!("fd00:19::{}", host_octet(i))
        .parse()
        .expect("valid IPv6")
}

fn host_octet(i: usize) -> u8 {
    assert!(
        (1..=200).contains(&i),
        "host index {i} out of range 1..=200"
    );
    i as u8
}
