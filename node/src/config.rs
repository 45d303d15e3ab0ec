//! `node.toml`: parsed with serde (kebab-case keys, unknown keys refused),
//! then validated. Every error names the file, the key and the problem.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use overlay_proto::ethernet::MacAddr;
use overlay_proto::keys::{Psk, StaticSecret};
use overlay_proto::timers::REKEY_AFTER_TIME;
use serde::Deserialize;
use tapmesh_shell::config::{ConfigError, read_secret, read_toml};

use crate::engine::NodeConfig;
use crate::iface::{IfAddr, mac_from_key, parse_ifaddr};
use crate::userhost::config::{HostConfig, HostFile};
use crate::vm_peer::PeerAllow;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct File {
    name: String,
    private_key_file: PathBuf,
    /// `"HOST:PORT"`, or `[[switch]]` tables ([`crate::failover::config`]).
    switch: toml::Value,
    switch_public_key: Option<String>,
    network_secret_file: Option<PathBuf>,
    #[serde(default)]
    network_id: u32,
    #[serde(default = "default_underlay_mtu")]
    underlay_mtu: u32,
    admin_socket: Option<PathBuf>,
    metrics_listen: Option<String>,
    log_level: Option<String>,
    busy_poll_us: Option<u64>,
    workers: Option<u64>,
    #[serde(default)]
    worker_opening: crate::workers::open::Opening,
    rekey_after_secs: Option<u64>,
    vouch_lifetime_secs: Option<u64>,
    tap: Option<TapFile>,
    #[serde(default)]
    vm_port: Vec<VmPortFile>,
    #[serde(default)]
    host: Vec<HostFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct VmPortFile {
    path: PathBuf,
    #[serde(default)]
    socket: VmSocket,
    #[serde(default = "default_vm_mtu")]
    mtu: u32,
    #[serde(default)]
    connect: bool,
    allow_uid: Option<Vec<i64>>,
    #[serde(default)]
    allow_gid: Vec<i64>,
}

/// How a VM connects to a `[[vm-port]]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VmSocket {
    /// A unix stream socket, frames with a 4-byte length prefix (QEMU
    /// `-netdev stream`); the node listens, QEMU connects.
    #[default]
    Stream,
    /// A unix datagram socket, one frame per datagram (QEMU `-netdev dgram`);
    /// the node answers the address the VM sends from.
    Dgram,
}

/// A VM's default MTU.
fn default_vm_mtu() -> u32 {
    1500
}

/// The most VM ports one node has.
pub const MAX_VM_PORTS: usize = 64;

/// A socket a VM connects to: one port of the node's local switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmPortConfig {
    /// The socket's path.
    pub path: PathBuf,
    /// Stream or datagram.
    pub socket: VmSocket,
    /// The VM's MTU: longer frames are not sent to it.
    pub mtu: u32,
    /// The node connects to a socket QEMU listens on (`-netdev
    /// stream,server=on`) and connects again, every second, whenever the
    /// connection is gone; for QEMU before 8.0, which cannot reconnect.
    pub connect: bool,
    /// Whose connections and datagrams the port takes (by the peer's
    /// credentials); see [`crate::vm_peer`].
    pub allow: PeerAllow,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct TapFile {
    #[serde(default = "default_tap_name")]
    name: String,
    #[serde(default = "default_mtu")]
    mtu: u32,
    #[serde(default)]
    address: Vec<String>,
    #[serde(default = "default_offload")]
    offload: bool,
    mac: Option<String>,
}

fn default_offload() -> bool {
    true
}

fn default_underlay_mtu() -> u32 {
    1500
}

fn default_tap_name() -> String {
    "tapmesh0".into()
}

/// The default TAP MTU: a 1500-byte IPv6 underlay minus 98 bytes of
/// encapsulation (docs/protocol.md, "MTU"), rounded down with margin.
pub const DEFAULT_MTU: u32 = 1400;

fn default_mtu() -> u32 {
    DEFAULT_MTU
}

/// The shortest `rekey-after-secs`: every rekey costs the switch a
/// handshake (four X25519 operations), so 1000 nodes at this interval make
/// 100 handshakes per second, half the switch's default
/// `handshake-load-threshold`.
pub const MIN_REKEY_AFTER_SECS: u64 = 10;

/// The range of `vouch-lifetime-secs`: at least the keepalive interval (the
/// switch renews vouches with its answers to keepalives, every 10 s), at
/// most a day (a revoked node must lose its peers some day even if the
/// switch never comes back).
pub const VOUCH_LIFETIME_SECS: std::ops::RangeInclusive<u64> = 20..=86_400;

/// The TAP device settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapConfig {
    /// Interface name (at most 15 bytes).
    pub name: String,
    /// MTU.
    pub mtu: u32,
    /// Addresses to add.
    pub addresses: Vec<IfAddr>,
    /// Open with the virtio-net header and offloads (TCP super-frames).
    pub offload: bool,
    /// The TAP's MAC address: configured, or derived from the node's public
    /// key, so it survives restarts (neighbours' ARP caches and the switch's
    /// MAC table stay right; a random MAC per start would strand the host
    /// until every neighbour's cache entry expired).
    pub mac: [u8; 6],
}

/// The validated configuration of the node process.
#[derive(Debug, Clone)]
pub struct Config {
    /// The node's name (for logs and status).
    pub name: String,
    /// The admin socket path.
    pub admin_socket: PathBuf,
    /// Where to serve Prometheus metrics (`GET /metrics`), if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// The log filter (`log-level`), if set; see `tapmesh_shell::log_level`.
    pub log_level: Option<String>,
    /// `busy-poll-us`: how long to keep polling the socket and the TAP after
    /// the last datagram or frame before parking
    /// (`tapmesh_shell::busy_poll`); `None`: off.
    pub busy_poll: Option<Duration>,
    /// `workers`: threads that seal frames from the TAP, one TAP queue
    /// each ([`crate::workers`]); 1 (the default): the node task alone.
    pub workers: usize,
    /// `worker-opening`: whether the opening threads of `workers > 1` share
    /// large receive batches ([`crate::workers::open::gate`]).
    pub worker_opening: crate::workers::open::Opening,
    /// The TAP, if the node has one.
    pub tap: Option<TapConfig>,
    /// Sockets VMs connect to.
    pub vm_ports: Vec<VmPortConfig>,
    /// Userspace hosts (`[[host]]`).
    pub hosts: Vec<HostConfig>,
    /// The core's part.
    pub core: NodeConfig,
}

impl Config {
    /// Read and validate a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let err = |key: &str, problem: String| ConfigError::new(path, key, problem);
        let f: File = read_toml(path)?;
        if f.name.is_empty() || f.name.len() > 64 {
            return Err(err("name", "must be 1 to 64 characters".into()));
        }
        let private_key = read_secret(path, &f.private_key_file)
            .and_then(|t| {
                StaticSecret::from_base64(&t).map_err(|_| "not a base64 32-byte key".into())
            })
            .map_err(|p| err("private-key-file", p))?;
        let switches =
            crate::failover::config::switches(f.switch, f.switch_public_key.as_deref(), &err)?;
        let psk = match &f.network_secret_file {
            None => Psk::default(),
            Some(p) => read_secret(path, p)
                .and_then(|t| {
                    Psk::from_base64(&t).map_err(|_| "not a base64 32-byte secret".into())
                })
                .map_err(|p| err("network-secret-file", p))?,
        };
        let tap = f
            .tap
            .map(|t| tap_config(t, &private_key, &err))
            .transpose()?;
        let vm_ports = vm_ports(path, f.vm_port, &err)?;
        let hosts = crate::userhost::config::validate(
            path,
            f.host,
            tap.as_ref().map_or(DEFAULT_MTU, |t| t.mtu),
            &private_key.public_key().0,
            &tap.iter().map(|t| t.mac).collect::<Vec<_>>(),
        )?;
        if tap.is_none() && vm_ports.is_empty() && hosts.is_empty() {
            return Err(err(
                "tap",
                "the node needs a [tap], a [[vm-port]] or a [[host]]".into(),
            ));
        }
        if !(576..=65535).contains(&f.underlay_mtu) {
            return Err(err(
                "underlay-mtu",
                format!("{} is out of range 576..=65535", f.underlay_mtu),
            ));
        }
        let metrics_listen = tapmesh_shell::config::parse_listen(f.metrics_listen.as_deref())
            .map_err(|p| err("metrics-listen", p))?;
        let log_level = f.log_level;
        if let Some(l) = &log_level {
            tapmesh_shell::log_level::check(l).map_err(|p| err("log-level", p))?;
        }
        let busy_poll =
            tapmesh_shell::busy_poll::parse(f.busy_poll_us).map_err(|p| err("busy-poll-us", p))?;
        let workers = crate::workers::config::parse(f.workers, tap.is_some())
            .map_err(|p| err("workers", p))?;
        let max_rekey = REKEY_AFTER_TIME.as_secs();
        let rekey_after = match f.rekey_after_secs {
            None => REKEY_AFTER_TIME,
            Some(v) if (MIN_REKEY_AFTER_SECS..=max_rekey).contains(&v) => Duration::from_secs(v),
            Some(v) => {
                return Err(err(
                    "rekey-after-secs",
                    format!("{v} is out of range {MIN_REKEY_AFTER_SECS}..={max_rekey}"),
                ));
            }
        };
        let vouch_lifetime = match f.vouch_lifetime_secs {
            None => crate::peers::DEFAULT_VOUCH_LIFETIME,
            Some(v) if VOUCH_LIFETIME_SECS.contains(&v) => Duration::from_secs(v),
            Some(v) => {
                return Err(err(
                    "vouch-lifetime-secs",
                    format!(
                        "{v} is out of range {}..={}",
                        VOUCH_LIFETIME_SECS.start(),
                        VOUCH_LIFETIME_SECS.end()
                    ),
                ));
            }
        };
        // The core checks frames against the largest local MTU; each port
        // is held to its own by the local switch.
        let mtu = tap
            .iter()
            .map(|t| t.mtu)
            .chain(vm_ports.iter().map(|v| v.mtu))
            .chain(hosts.iter().map(|h| h.mtu as u32))
            .max()
            .unwrap_or(DEFAULT_MTU);
        let admin_socket = f
            .admin_socket
            .unwrap_or_else(|| PathBuf::from(format!("/run/tapmesh/node-{}.sock", f.name)));
        Ok(Config {
            name: f.name,
            admin_socket,
            metrics_listen,
            log_level,
            busy_poll,
            workers,
            worker_opening: f.worker_opening,
            core: NodeConfig {
                private_key,
                switch_key: switches[0].key,
                switch_addr: switches[0].addr,
                switches,
                psk,
                network_id: f.network_id,
                mtu: mtu as usize,
                offload: tap.as_ref().is_some_and(|t| t.offload),
                underlay_mtu: f.underlay_mtu as usize,
                rekey_after,
                vouch_lifetime,
            },
            tap,
            vm_ports,
            hosts,
        })
    }
}

fn tap_config(
    t: TapFile,
    private_key: &StaticSecret,
    err: &impl Fn(&str, String) -> ConfigError,
) -> Result<TapConfig, ConfigError> {
    if t.name.is_empty() || t.name.len() > 15 || t.name.contains(['/', ' ']) {
        return Err(err(
            "tap.name",
            format!(
                "{:?} is not a valid interface name (1 to 15 characters)",
                t.name
            ),
        ));
    }
    if !(576..=65000).contains(&t.mtu) {
        return Err(err(
            "tap.mtu",
            format!("{} is out of range 576..=65000", t.mtu),
        ));
    }
    let mac = match &t.mac {
        Some(m) => {
            MacAddr::parse_unicast(m)
                .map_err(|e| err("tap.mac", format!("{m:?} {e}")))?
                .0
        }
        None => mac_from_key(&private_key.public_key().0),
    };
    let mut addresses = Vec::new();
    for (i, a) in t.address.iter().enumerate() {
        let v = parse_ifaddr(a).ok_or_else(|| {
            err(
                &format!("tap.address[{i}]"),
                format!("{a:?} is not ADDRESS/PREFIX"),
            )
        })?;
        addresses.push(v);
    }
    Ok(TapConfig {
        name: t.name,
        mtu: t.mtu,
        addresses,
        offload: t.offload,
        mac,
    })
}

fn vm_ports(
    config: &Path,
    ports: Vec<VmPortFile>,
    err: &impl Fn(&str, String) -> ConfigError,
) -> Result<Vec<VmPortConfig>, ConfigError> {
    if ports.len() > MAX_VM_PORTS {
        return Err(err(
            "vm-port",
            format!("{} ports; at most {MAX_VM_PORTS}", ports.len()),
        ));
    }
    let base = config.parent().unwrap_or(Path::new("."));
    let mut out: Vec<VmPortConfig> = Vec::new();
    for (i, p) in ports.into_iter().enumerate() {
        let key = |k: &str| format!("vm-port[{i}].{k}");
        // Relative paths are relative to the config file, like key files.
        let path = base.join(&p.path);
        // sun_path holds 108 bytes with the terminating NUL.
        if p.path.as_os_str().is_empty() || path.as_os_str().len() > 107 {
            return Err(err(
                &key("path"),
                format!("{:?} is empty or longer than 107 bytes", path),
            ));
        }
        if out.iter().any(|o| o.path == path) {
            return Err(err(&key("path"), format!("{path:?} is used twice")));
        }
        if !(576..=65000).contains(&p.mtu) {
            return Err(err(
                &key("mtu"),
                format!("{} is out of range 576..=65000", p.mtu),
            ));
        }
        if p.connect && p.socket != VmSocket::Stream {
            return Err(err(
                &key("connect"),
                "only a stream port can connect (a dgram port answers its sender)".into(),
            ));
        }
        let allow = PeerAllow::from_config(p.allow_uid.as_deref(), &p.allow_gid)
            .map_err(|(k, problem)| err(&key(k), problem))?;
        out.push(VmPortConfig {
            path,
            socket: p.socket,
            mtu: p.mtu,
            connect: p.connect,
            allow,
        });
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn load(tap: &str) -> Result<Config, ConfigError> {
        load_with("", tap)
    }

    fn load_top(top: &str) -> Result<Config, ConfigError> {
        load_with(top, "")
    }

    fn load_with(top: &str, tap: &str) -> Result<Config, ConfigError> {
        load_raw(&format!("{top}\n[tap]\n{tap}\n"))
    }

    /// A config with `tail` after the required top-level keys.
    fn load_raw(tail: &str) -> Result<Config, ConfigError> {
        let k = StaticSecret::generate(&mut rand::rng());
        load_switches(&format!(
            "switch = \"198.18.0.3:7777\"\nswitch-public-key = \"{}\"\n{tail}",
            k.public_key()
        ))
    }

    /// A config with `rest` after `name` and `private-key-file` (so it
    /// names its switches itself).
    pub(crate) fn load_switches(rest: &str) -> Result<Config, ConfigError> {
        let dir = std::env::temp_dir().join(format!(
            "tm-ncfg-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let k = StaticSecret::generate(&mut rand::rng());
        std::fs::write(dir.join("h1.key"), k.to_base64()).unwrap();
        let p = dir.join("node.toml");
        std::fs::write(
            &p,
            format!("name = \"h1\"\nprivate-key-file = \"h1.key\"\n{rest}"),
        )
        .unwrap();
        let r = Config::load(&p);
        std::fs::remove_dir_all(&dir).unwrap();
        r
    }

    #[test]
    fn defaults_and_addresses() {
        let c = load("address = [\"198.19.0.1/24\", \"fd00:19::1/64\"]").unwrap();
        let tap = c.tap.as_ref().unwrap();
        assert_eq!(tap.name, "tapmesh0");
        assert_eq!(tap.mtu, 1400);
        assert_eq!(tap.addresses.len(), 2);
        assert_eq!(tap.addresses[1].to_string(), "fd00:19::1/64");
        assert_eq!(c.core.switch_addr, "198.18.0.3:7777".parse().unwrap());
        // No MAC configured: derived from the key, locally administered unicast.
        assert_eq!(tap.mac[0] & 3, 2);
        assert_eq!(tap.mac, mac_from_key(&c.core.private_key.public_key().0));
        assert!(c.vm_ports.is_empty());
        assert!(c.core.offload);
        assert_eq!(c.core.network_id, 0);
        assert_eq!(load_top("network-id = 7").unwrap().core.network_id, 7);
        assert_eq!(load_top("network-id = -1").unwrap_err().key, "network-id");
    }

    #[test]
    fn vm_ports_without_a_tap() {
        let c = load_raw(
            "[[vm-port]]\npath = \"/run/vm1.sock\"\n\
             [[vm-port]]\npath = \"vm2.sock\"\nsocket = \"dgram\"\nmtu = 9000\n",
        )
        .unwrap();
        assert!(c.tap.is_none());
        assert_eq!(c.vm_ports.len(), 2);
        assert_eq!(c.vm_ports[0].path, Path::new("/run/vm1.sock"));
        assert_eq!(c.vm_ports[0].socket, VmSocket::Stream);
        assert_eq!(c.vm_ports[0].mtu, 1500);
        // Relative to the config file's directory.
        assert!(c.vm_ports[1].path.is_absolute() && c.vm_ports[1].path.ends_with("vm2.sock"));
        assert_eq!(c.vm_ports[1].socket, VmSocket::Dgram);
        // No TAP: no offload; the core takes frames up to the largest MTU.
        assert!(!c.core.offload);
        assert_eq!(c.core.mtu, 9000);
        // Neither a TAP nor a VM port; bad values name the port.
        assert_eq!(load_raw("").unwrap_err().key, "tap");
        let dup = "[[vm-port]]\npath = \"/a\"\n[[vm-port]]\npath = \"/a\"\n";
        assert_eq!(load_raw(dup).unwrap_err().key, "vm-port[1].path");
        let e = load_raw("[[vm-port]]\npath = \"/a\"\nsocket = \"tcp\"\n").unwrap_err();
        assert_eq!(e.key, "socket");
        let e = load_raw("[[vm-port]]\npath = \"/a\"\nmtu = 100\n").unwrap_err();
        assert_eq!(e.key, "vm-port[0].mtu");
        let e = load_raw("[[vm-port]]\npath = \"/a\"\nsocket = \"dgram\"\nconnect = true\n");
        assert_eq!(e.unwrap_err().key, "vm-port[0].connect");
        let c = load_raw("[[vm-port]]\npath = \"/a\"\nconnect = true\n").unwrap();
        assert!(c.vm_ports[0].connect);
        // Root and the node's user by default; bad ids name the key.
        assert_eq!(c.vm_ports[0].allow.uids, [0, crate::vm_peer::own_uid()]);
        let c = load_raw("[[vm-port]]\npath = \"/a\"\nallow-uid = [64055]\nallow-gid = [108]\n");
        let allow = c.unwrap().vm_ports[0].allow.clone();
        assert_eq!((allow.uids, allow.gids), (vec![64055], vec![108]));
        let e = load_raw("[[vm-port]]\npath = \"/a\"\nallow-gid = [-1]\n").unwrap_err();
        assert_eq!(e.key, "vm-port[0].allow-gid");
    }

    #[test]
    fn vouch_lifetime_defaults_to_10_min_and_is_bounded() {
        assert_eq!(
            load("").unwrap().core.vouch_lifetime,
            crate::peers::DEFAULT_VOUCH_LIFETIME
        );
        let c = load_top("vouch-lifetime-secs = 60").unwrap();
        assert_eq!(c.core.vouch_lifetime, Duration::from_secs(60));
        for bad in [0, 19, 86_401] {
            let e = load_top(&format!("vouch-lifetime-secs = {bad}")).unwrap_err();
            assert_eq!(e.key, "vouch-lifetime-secs");
        }
    }

    #[test]
    fn rekey_after_defaults_to_120_s_and_is_bounded() {
        assert_eq!(load("").unwrap().core.rekey_after, REKEY_AFTER_TIME);
        let c = load_top("rekey-after-secs = 10").unwrap();
        assert_eq!(c.core.rekey_after, Duration::from_secs(10));
        for bad in ["9", "121", "0"] {
            let e = load_top(&format!("rekey-after-secs = {bad}")).unwrap_err();
            assert_eq!(e.key, "rekey-after-secs");
            assert_eq!(e.problem, format!("{bad} is out of range 10..=120"));
        }
    }

    #[test]
    fn workers_default_to_one_and_are_bounded() {
        assert_eq!(load("").unwrap().workers, 1);
        assert_eq!(load_top("workers = 4").unwrap().workers, 4);
        for bad in ["0", "17"] {
            let e = load_top(&format!("workers = {bad}")).unwrap_err();
            assert_eq!(e.key, "workers");
            assert_eq!(e.problem, format!("{bad} is out of range 1..=16"));
        }
        assert_eq!(load_top("workers = -2").unwrap_err().key, "workers");
    }

    #[test]
    fn worker_opening_is_auto_by_default_and_one_of_three() {
        use crate::workers::open::Opening;
        assert_eq!(load("").unwrap().worker_opening, Opening::Auto);
        for (v, want) in [
            ("auto", Opening::Auto),
            ("always", Opening::Always),
            ("off", Opening::Off),
        ] {
            let c = load_top(&format!("worker-opening = \"{v}\"")).unwrap();
            assert_eq!(c.worker_opening, want);
        }
        for bad in ["\"never\"", "true", "2"] {
            let e = load_top(&format!("worker-opening = {bad}")).unwrap_err();
            assert_eq!(e.key, "worker-opening", "{bad}: {e}");
        }
        let e = load_top("worker-opening = \"never\"").unwrap_err();
        assert!(e.problem.contains("auto"), "{e}");
    }

    #[test]
    fn busy_poll_is_off_by_default_and_bounded() {
        assert_eq!(load("").unwrap().busy_poll, None);
        assert_eq!(load_top("busy-poll-us = 0").unwrap().busy_poll, None);
        let c = load_top("busy-poll-us = 50").unwrap();
        assert_eq!(c.busy_poll, Some(Duration::from_micros(50)));
        let e = load_top("busy-poll-us = 1001").unwrap_err();
        assert_eq!(e.key, "busy-poll-us");
        assert!(e.problem.contains("out of range 0..=1000"), "{e}");
        assert_eq!(
            load_top("busy-poll-us = -1").unwrap_err().key,
            "busy-poll-us"
        );
        assert_eq!(
            load_top("busy-poll-us = \"fast\"").unwrap_err().key,
            "busy-poll-us"
        );
    }

    #[test]
    fn errors_name_the_key() {
        assert_eq!(load("mtu = 10").unwrap_err().key, "tap.mtu");
        assert_eq!(
            load("address = [\"198.19.0.1\"]").unwrap_err().key,
            "tap.address[0]"
        );
        assert_eq!(
            load("name = \"a-very-long-interface-name\"")
                .unwrap_err()
                .key,
            "tap.name"
        );
        assert_eq!(load("bogus = 1").unwrap_err().key, "bogus");
        assert_eq!(
            load("mac = \"01:00:5e:00:00:01\"").unwrap_err().key,
            "tap.mac"
        );
        assert_eq!(load("mac = \"02:00:00:00:01\"").unwrap_err().key, "tap.mac");
        assert_eq!(
            load("mac = \"02:00:00:00:00:0a\"")
                .unwrap()
                .tap
                .unwrap()
                .mac,
            [2, 0, 0, 0, 0, 10]
        );
        assert_eq!(
            load_top("metrics-listen = \"9101\"").unwrap_err().key,
            "metrics-listen"
        );
        assert_eq!(
            load_top("metrics-listen = \"127.0.0.1:9102\"")
                .unwrap()
                .metrics_listen,
            Some("127.0.0.1:9102".parse().unwrap())
        );
        assert_eq!(load_top("").unwrap().log_level, None);
        assert_eq!(
            load_top("log-level = \"warn,tapmesh_node=debug\"")
                .unwrap()
                .log_level
                .as_deref(),
            Some("warn,tapmesh_node=debug")
        );
        let e = load_top("log-level = \"tapmesh_node=loud\"").unwrap_err();
        assert_eq!(e.key, "log-level", "{e}");
        assert!(!e.to_string().contains('\n'), "{e}");
    }

    #[test]
    fn a_node_with_only_a_userspace_host() {
        let c = load_raw(
            "[[host]]\naddress = [\"198.19.0.50/24\"]\nmtu = 1500\n\
             [[host.forward]]\nport = 80\nto = \"127.0.0.1:8080\"\n",
        )
        .unwrap();
        assert!(c.tap.is_none() && c.vm_ports.is_empty());
        assert_eq!(c.hosts.len(), 1);
        assert_eq!(c.hosts[0].forwards[0].port, 80);
        // Derived from the key (bytes the TAP's MAC does not use).
        let public = c.core.private_key.public_key().0;
        assert_eq!(
            c.hosts[0].mac,
            crate::userhost::config::host_mac_from_key(&public, 0)
        );
        assert_ne!(c.hosts[0].mac, mac_from_key(&public));
        // The core takes frames up to the largest local MTU.
        assert_eq!(c.core.mtu, 1500);
        // With a TAP, a host takes the TAP's MTU and may not take its MAC.
        let c = load("mtu = 1300\n[[host]]\naddress = [\"198.19.0.50/24\"]").unwrap();
        assert_eq!(c.hosts[0].mtu, 1300);
        let e = load("mac = \"02:00:00:00:00:07\"\n[[host]]\naddress = [\"198.19.0.50/24\"]\nmac = \"02:00:00:00:00:07\"")
            .unwrap_err();
        assert_eq!(e.key, "host[0].mac");
    }
}
