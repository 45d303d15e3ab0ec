//! `switch.toml`: parsed with serde (kebab-case keys, unknown keys refused),
//! then validated into a [`SwitchConfig`]. Every error names the file, the key
//! and the problem on one line, e.g.
//! `switch.toml: listen: invalid socket address "1.2.3.4"`.
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use overlay_proto::ethernet::MacAddr;
use overlay_proto::keys::{Psk, PublicKey, StaticSecret};
use serde::Deserialize;

use tapmesh_shell::config::{ConfigError, read_secret, read_toml};

use crate::core::{NodeSpec, SwitchConfig};
use crate::impair::{ImpairSpec, LinkImpair};
use crate::networks::NetworkConfig;
use crate::snooping::{SnoopConfig, link_local_from_mac};
use crate::storm::{Rate, StormConfig};
use crate::vlan::{DEFAULT_VLAN, PortVlan, Vid};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct File {
    listen: String,
    private_key_file: PathBuf,
    network_secret_file: Option<PathBuf>,
    #[serde(default = "defaults::mac_aging_secs")]
    mac_aging_secs: u64,
    #[serde(default = "defaults::node_timeout_secs")]
    node_timeout_secs: u64,
    #[serde(default = "defaults::mac_limit_per_node")]
    mac_limit_per_node: usize,
    #[serde(default = "defaults::mac_table_limit")]
    mac_table_limit: usize,
    #[serde(default = "defaults::admin_socket")]
    admin_socket: PathBuf,
    #[serde(default = "defaults::state_file")]
    state_file: PathBuf,
    #[serde(default = "defaults::underlay_mtu")]
    underlay_mtu: u32,
    #[serde(default = "defaults::handshake_load_threshold")]
    handshake_load_threshold: u32,
    #[serde(default = "defaults::cookie_replies_per_sec")]
    cookie_replies_per_sec: u32,
    metrics_listen: Option<String>,
    log_level: Option<String>,
    #[serde(default)]
    mode: crate::mesh::Mode,
    #[serde(default)]
    multicast: MulticastSection,
    #[serde(default)]
    storm_control: StormSection,
    #[serde(default)]
    node: Vec<NodeEntry>,
    #[serde(default)]
    network: Vec<NetworkEntry>,
}

/// `[[network]]`: one more isolated network on this switch.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct NetworkEntry {
    name: String,
    id: u32,
    #[serde(default)]
    mode: crate::mesh::Mode,
    network_secret_file: Option<PathBuf>,
    #[serde(default)]
    node: Vec<NodeEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct NodeEntry {
    name: String,
    public_key: String,
    vlan: Option<u16>,
    trunk: Option<Vec<u16>>,
    #[serde(default)]
    fast_leave: bool,
    impair: Option<ImpairSection>,
}

/// `[node.impair]`: the node's link for labs and chaos tests (see
/// [`crate::impair`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ImpairSection {
    #[serde(default)]
    link: LinkState,
    seed: Option<u64>,
    egress: Option<ImpairDirection>,
    ingress: Option<ImpairDirection>,
}

#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum LinkState {
    #[default]
    Up,
    Down,
}

/// `[node.impair.egress]` / `[node.impair.ingress]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
struct ImpairDirection {
    loss_percent: f64,
    burst_enter_percent: Option<f64>,
    burst_exit_percent: Option<f64>,
    burst_loss_percent: Option<f64>,
    delay_ms: f64,
    jitter_ms: f64,
    reorder_percent: f64,
    duplicate_percent: f64,
    corrupt_percent: f64,
    rate_bits_per_sec: Option<u64>,
    queue_frames: usize,
}

impl Default for ImpairDirection {
    fn default() -> Self {
        ImpairDirection {
            loss_percent: 0.0,
            burst_enter_percent: None,
            burst_exit_percent: None,
            burst_loss_percent: None,
            delay_ms: 0.0,
            jitter_ms: 0.0,
            reorder_percent: 0.0,
            duplicate_percent: 0.0,
            corrupt_percent: 0.0,
            rate_bits_per_sec: None,
            queue_frames: crate::impair::DEFAULT_QUEUE_FRAMES,
        }
    }
}

/// `[multicast]`: IGMP/MLD snooping and the built-in querier.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
struct MulticastSection {
    snooping: bool,
    flood_unregistered: bool,
    membership_secs: u64,
    querier: bool,
    querier_address: Option<String>,
    querier_address_v6: Option<String>,
    querier_mac: Option<String>,
    query_interval_secs: u64,
    query_response_secs: u64,
    last_member_query_ms: u64,
    last_member_query_count: u32,
    max_groups_per_node: usize,
    max_groups: usize,
    max_groups_total: usize,
    max_sources_per_group: usize,
    leaves_per_sec: u32,
}

impl Default for MulticastSection {
    fn default() -> Self {
        let d = SnoopConfig::default();
        MulticastSection {
            snooping: d.enabled,
            flood_unregistered: d.flood_unregistered,
            membership_secs: d.membership.as_secs(),
            querier: d.querier,
            querier_address: None,
            querier_address_v6: None,
            querier_mac: None,
            query_interval_secs: d.query_interval.as_secs(),
            query_response_secs: d.query_response.as_secs(),
            last_member_query_ms: d.last_member_interval.as_millis() as u64,
            last_member_query_count: d.last_member_count,
            max_groups_per_node: d.max_groups_per_node,
            max_groups: d.max_groups,
            max_groups_total: d.max_groups_total,
            max_sources_per_group: d.max_sources_per_group,
            leaves_per_sec: d.leaves_per_sec,
        }
    }
}

/// `[storm-control]`: per-node limits, off unless a rate is given.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
struct StormSection {
    broadcast_pps: Option<u32>,
    multicast_pps: Option<u32>,
    unknown_unicast_pps: Option<u32>,
    burst: Option<u32>,
    exempt_link_local: bool,
}

impl Default for StormSection {
    fn default() -> Self {
        StormSection {
            broadcast_pps: None,
            multicast_pps: None,
            unknown_unicast_pps: None,
            burst: None,
            exempt_link_local: true,
        }
    }
}

mod defaults {
    pub fn mac_aging_secs() -> u64 {
        300
    }
    pub fn node_timeout_secs() -> u64 {
        30
    }
    pub fn mac_limit_per_node() -> usize {
        1024
    }
    pub fn mac_table_limit() -> usize {
        1 << 20
    }
    pub fn admin_socket() -> std::path::PathBuf {
        "/run/tapmesh/switch.sock".into()
    }
    pub fn underlay_mtu() -> u32 {
        1500
    }
    pub fn handshake_load_threshold() -> u32 {
        overlay_proto::handshake_guard::GuardConfig::default().load_threshold
    }
    pub fn cookie_replies_per_sec() -> u32 {
        overlay_proto::handshake_guard::GuardConfig::default().cookie_replies_per_sec
    }
    pub fn state_file() -> std::path::PathBuf {
        "/var/lib/tapmesh/switch.state".into()
    }
}

/// The validated configuration of the switch process.
#[derive(Debug, Clone)]
pub struct Config {
    /// UDP address to listen on.
    pub listen: SocketAddr,
    /// Where the admin socket goes.
    pub admin_socket: PathBuf,
    /// Where the nodes' last endpoints are kept across restarts.
    pub state_file: PathBuf,
    /// Where to serve Prometheus metrics (`GET /metrics`), if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// The log filter (`log-level`), if set; see `tapmesh_shell::log_level`.
    pub log_level: Option<String>,
    /// The networks, each with its core's configuration: the top-level
    /// nodes (network `default`, id 0) unless only `[[network]]`s are given,
    /// then each `[[network]]`.
    pub networks: Vec<NetworkConfig>,
}

impl Config {
    /// Read and validate a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let err = |key: &str, problem: String| ConfigError::new(path, key, problem);
        let f: File = read_toml(path)?;
        let listen: SocketAddr = f.listen.parse().map_err(|_| {
            err(
                "listen",
                format!("invalid socket address {:?} (want IP:PORT)", f.listen),
            )
        })?;
        let private_key = read_secret(path, &f.private_key_file)
            .and_then(|t| {
                StaticSecret::from_base64(&t).map_err(|_| "not a base64 32-byte key".into())
            })
            .map_err(|p| err("private-key-file", p))?;
        let psk = network_secret(path, f.network_secret_file.as_deref())
            .map_err(|p| err("network-secret-file", p))?;
        let metrics_listen = tapmesh_shell::config::parse_listen(f.metrics_listen.as_deref())
            .map_err(|p| err("metrics-listen", p))?;
        let log_level = f.log_level;
        if let Some(l) = &log_level {
            tapmesh_shell::log_level::check(l).map_err(|p| err("log-level", p))?;
        }
        for (key, v) in [
            ("mac-aging-secs", f.mac_aging_secs),
            ("node-timeout-secs", f.node_timeout_secs),
            ("mac-limit-per-node", f.mac_limit_per_node as u64),
            ("mac-table-limit", f.mac_table_limit as u64),
            (
                "handshake-load-threshold",
                u64::from(f.handshake_load_threshold),
            ),
            (
                "cookie-replies-per-sec",
                u64::from(f.cookie_replies_per_sec),
            ),
        ] {
            if v == 0 {
                return Err(err(key, "must be greater than 0".into()));
            }
        }
        if !(576..=65535).contains(&f.underlay_mtu) {
            return Err(err(
                "underlay-mtu",
                format!("{} is out of range 576..=65535", f.underlay_mtu),
            ));
        }
        let multicast =
            multicast(&f.multicast).map_err(|(k, p)| err(&format!("multicast.{k}"), p))?;
        let storm =
            storm(&f.storm_control).map_err(|(k, p)| err(&format!("storm-control.{k}"), p))?;
        // The top-level nodes form network 0, "default"; it exists unless
        // the file lists only [[network]]s.
        let mut entries: Vec<NetworkDraft> = Vec::new();
        if f.network.is_empty() || !f.node.is_empty() {
            entries.push(NetworkDraft {
                prefix: String::new(),
                name: DEFAULT_NETWORK.into(),
                id: 0,
                mode: f.mode,
                psk: psk.clone(),
                nodes: &f.node,
            });
        }
        for (i, n) in f.network.iter().enumerate() {
            let key = |k: &str| format!("network[{i}].{k}");
            if n.name.is_empty() {
                return Err(err(&key("name"), "must not be empty".into()));
            }
            if entries.iter().any(|e| e.name == n.name) {
                return Err(err(
                    &key("name"),
                    format!("duplicate network name {:?}", n.name),
                ));
            }
            if let Some(e) = entries.iter().find(|e| e.id == n.id) {
                return Err(err(
                    &key("id"),
                    format!("{} is already network {:?}'s id", n.id, e.name),
                ));
            }
            let psk = match &n.network_secret_file {
                None => psk.clone(),
                Some(p) => network_secret(path, Some(p))
                    .map_err(|p| err(&key("network-secret-file"), p))?,
            };
            entries.push(NetworkDraft {
                prefix: format!("network[{i}]."),
                name: n.name.clone(),
                id: n.id,
                mode: n.mode,
                psk,
                nodes: &n.node,
            });
        }
        let mut names: Vec<&str> = Vec::new();
        let mut keys: Vec<PublicKey> = Vec::new();
        let mut networks = Vec::with_capacity(entries.len());
        for NetworkDraft {
            prefix,
            name,
            id,
            mode,
            psk,
            nodes: entries,
        } in entries
        {
            let vlan_aware = entries
                .iter()
                .any(|n| n.vlan.is_some() || n.trunk.is_some());
            let mut nodes: Vec<NodeSpec> = Vec::with_capacity(entries.len());
            for (i, n) in entries.iter().enumerate() {
                let key = |k: &str| format!("{prefix}node[{i}].{k}");
                if n.name.is_empty() {
                    return Err(err(&key("name"), "must not be empty".into()));
                }
                let public_key = PublicKey::from_base64(&n.public_key)
                    .map_err(|_| err(&key("public-key"), "not a base64 32-byte key".into()))?;
                // Names and keys are unique over all networks: a node belongs
                // to one network, and names label metrics and the state file.
                if names.contains(&n.name.as_str()) {
                    return Err(err(
                        &key("name"),
                        format!("duplicate node name {:?}", n.name),
                    ));
                }
                if keys.contains(&public_key) {
                    return Err(err(
                        &key("public-key"),
                        "the same key is listed twice (a node belongs to one network)".into(),
                    ));
                }
                names.push(&n.name);
                keys.push(public_key);
                let vlan = port_vlan(n, vlan_aware).map_err(|(k, p)| err(&key(k), p))?;
                nodes.push(NodeSpec {
                    name: n.name.clone(),
                    public_key,
                    vlan,
                    fast_leave: n.fast_leave,
                });
            }
            let mut impair = Vec::new();
            for (i, n) in entries.iter().enumerate() {
                if let Some(sec) = &n.impair {
                    let l = link_impair(sec)
                        .map_err(|(k, p)| err(&format!("{prefix}node[{i}].impair.{k}"), p))?;
                    impair.push((n.name.clone(), l));
                }
            }
            networks.push(NetworkConfig {
                name,
                mode,
                impair,
                core: SwitchConfig {
                    private_key: private_key.clone(),
                    psk,
                    network_id: id,
                    nodes,
                    mac_aging: Duration::from_secs(f.mac_aging_secs),
                    node_timeout: Duration::from_secs(f.node_timeout_secs),
                    mac_limit_per_node: f.mac_limit_per_node,
                    mac_table_limit: f.mac_table_limit,
                    underlay_mtu: f.underlay_mtu as usize,
                    multicast: multicast.clone(),
                    storm: storm.clone(),
                    handshake_guard: overlay_proto::handshake_guard::GuardConfig {
                        load_threshold: f.handshake_load_threshold,
                        cookie_replies_per_sec: f.cookie_replies_per_sec,
                    },
                },
            });
        }
        Ok(Config {
            listen,
            admin_socket: f.admin_socket,
            state_file: f.state_file,
            metrics_listen,
            log_level,
            networks,
        })
    }
}

/// One network's entries before its nodes are validated; `prefix` is the
/// key prefix for its errors (`network[1].`, or empty for the top level).
struct NetworkDraft<'a> {
    prefix: String,
    name: String,
    id: u32,
    mode: crate::mesh::Mode,
    psk: Psk,
    nodes: &'a [NodeEntry],
}

/// The name of the top-level nodes' network.
pub const DEFAULT_NETWORK: &str = "default";

/// A `network-secret-file`'s secret, or all zeros without one.
fn network_secret(config: &Path, file: Option<&Path>) -> Result<Psk, String> {
    match file {
        None => Ok(Psk::default()),
        Some(p) => read_secret(config, p)
            .and_then(|t| Psk::from_base64(&t).map_err(|_| "not a base64 32-byte secret".into())),
    }
}

type KeyProblem = (&'static str, String);

fn link_impair(sec: &ImpairSection) -> Result<LinkImpair, (String, String)> {
    let dir = |d: &Option<ImpairDirection>, name: &str| {
        d.as_ref().map_or(Ok(ImpairSpec::default()), |d| {
            impair_spec(d, sec.seed).map_err(|(k, p)| (format!("{name}.{k}"), p))
        })
    };
    Ok(LinkImpair {
        down: sec.link == LinkState::Down,
        egress: dir(&sec.egress, "egress")?,
        ingress: dir(&sec.ingress, "ingress")?,
    })
}

fn impair_spec(d: &ImpairDirection, seed: Option<u64>) -> Result<ImpairSpec, KeyProblem> {
    let fraction = |key: &'static str, v: f64| {
        if (0.0..=100.0).contains(&v) {
            Ok(v / 100.0)
        } else {
            Err((key, format!("{v} is out of range 0..=100")))
        }
    };
    let ms = |key: &'static str, v: f64| {
        Duration::try_from_secs_f64(v / 1000.0)
            .map_err(|_| (key, format!("{v} is not a duration in milliseconds")))
    };
    let opt = |key: &'static str, v: Option<f64>| v.map(|v| fraction(key, v)).transpose();
    let burst = crate::impair::burst(
        opt("burst-enter-percent", d.burst_enter_percent)?,
        opt("burst-exit-percent", d.burst_exit_percent)?,
        opt("burst-loss-percent", d.burst_loss_percent)?,
    )
    .map_err(|(k, p)| (config_key(k), p))?;
    let s = ImpairSpec {
        loss: fraction("loss-percent", d.loss_percent)?,
        burst,
        delay: ms("delay-ms", d.delay_ms)?,
        jitter: ms("jitter-ms", d.jitter_ms)?,
        reorder: fraction("reorder-percent", d.reorder_percent)?,
        duplicate: fraction("duplicate-percent", d.duplicate_percent)?,
        corrupt: fraction("corrupt-percent", d.corrupt_percent)?,
        rate: d.rate_bits_per_sec,
        queue: d.queue_frames,
        seed,
    };
    s.validate().map_err(|(k, p)| (config_key(k), p))?;
    Ok(s)
}

/// The config key of an impairment's command key.
fn config_key(k: &str) -> &'static str {
    match k {
        "burst-enter" => "burst-enter-percent",
        "burst-exit" => "burst-exit-percent",
        "burst-loss" => "burst-loss-percent",
        "delay" => "delay-ms",
        "jitter" => "jitter-ms",
        "rate" => "rate-bits-per-sec",
        "queue" => "queue-frames",
        "reorder" => "reorder-percent",
        "duplicate" => "duplicate-percent",
        "corrupt" => "corrupt-percent",
        _ => "loss-percent",
    }
}

fn vid(v: u16) -> Result<Vid, String> {
    if (1..=4094).contains(&v) {
        Ok(v)
    } else {
        Err(format!("VLAN {v} is out of range 1..=4094"))
    }
}

fn port_vlan(n: &NodeEntry, aware: bool) -> Result<PortVlan, KeyProblem> {
    if !aware {
        return Ok(PortVlan::Transparent);
    }
    let native = match (n.vlan, &n.trunk) {
        (Some(v), _) => Some(vid(v).map_err(|p| ("vlan", p))?),
        // A pure trunk has no native VLAN; a node that says nothing is an
        // access port of the default VLAN.
        (None, Some(_)) => None,
        (None, None) => Some(DEFAULT_VLAN),
    };
    let mut tagged = Vec::new();
    for &v in n.trunk.iter().flatten() {
        let v = vid(v).map_err(|p| ("trunk", p))?;
        if tagged.contains(&v) || native == Some(v) {
            return Err(("trunk", format!("VLAN {v} is listed twice")));
        }
        tagged.push(v);
    }
    tagged.sort_unstable();
    if native.is_none() && tagged.is_empty() {
        return Err(("trunk", "must list at least one VLAN".into()));
    }
    Ok(PortVlan::Member { native, tagged })
}

fn multicast(m: &MulticastSection) -> Result<SnoopConfig, KeyProblem> {
    for (key, v) in [
        ("membership-secs", m.membership_secs),
        ("query-interval-secs", m.query_interval_secs),
        ("query-response-secs", m.query_response_secs),
        ("last-member-query-ms", m.last_member_query_ms),
        (
            "last-member-query-count",
            u64::from(m.last_member_query_count),
        ),
        ("max-groups-per-node", m.max_groups_per_node as u64),
        ("max-groups", m.max_groups as u64),
        ("max-groups-total", m.max_groups_total as u64),
        ("max-sources-per-group", m.max_sources_per_group as u64),
        ("leaves-per-sec", u64::from(m.leaves_per_sec)),
    ] {
        if v == 0 {
            return Err((key, "must be greater than 0".into()));
        }
    }
    if m.query_response_secs >= m.query_interval_secs {
        return Err((
            "query-response-secs",
            format!(
                "must be less than query-interval-secs ({})",
                m.query_interval_secs
            ),
        ));
    }
    if m.query_interval_secs >= m.membership_secs {
        return Err((
            "query-interval-secs",
            format!(
                "must be less than membership-secs ({}), or memberships lapse between queries",
                m.membership_secs
            ),
        ));
    }
    let querier_mac = match &m.querier_mac {
        None => crate::snooping::DEFAULT_QUERIER_MAC,
        Some(s) => MacAddr::parse_unicast(s).map_err(|e| ("querier-mac", format!("{s:?} {e}")))?,
    };
    let querier_v4 = match &m.querier_address {
        None => Ipv4Addr::UNSPECIFIED,
        Some(s) => s
            .parse::<Ipv4Addr>()
            .map_err(|_| ("querier-address", format!("{s:?} is not an IPv4 address")))?,
    };
    let querier_v6 = match &m.querier_address_v6 {
        None => link_local_from_mac(&querier_mac),
        Some(s) => match s.parse::<IpAddr>() {
            Ok(IpAddr::V6(a)) if a.segments()[0] & 0xffc0 == 0xfe80 => a,
            _ => {
                return Err((
                    "querier-address-v6",
                    format!(
                        "{s:?} is not a link-local IPv6 address (MLD queries must come from fe80::/10)"
                    ),
                ));
            }
        },
    };
    Ok(SnoopConfig {
        enabled: m.snooping,
        flood_unregistered: m.flood_unregistered,
        membership: Duration::from_secs(m.membership_secs),
        querier: m.querier,
        querier_v4,
        querier_v6,
        querier_mac,
        query_interval: Duration::from_secs(m.query_interval_secs),
        query_response: Duration::from_secs(m.query_response_secs),
        last_member_interval: Duration::from_millis(m.last_member_query_ms),
        last_member_count: m.last_member_query_count,
        max_groups_per_node: m.max_groups_per_node,
        max_groups: m.max_groups,
        max_groups_total: m.max_groups_total,
        max_sources_per_group: m.max_sources_per_group,
        leaves_per_sec: m.leaves_per_sec,
    })
}

fn storm(s: &StormSection) -> Result<StormConfig, KeyProblem> {
    if s.burst == Some(0) {
        return Err(("burst", "must be greater than 0".into()));
    }
    let rate = |key: &'static str, v: Option<u32>| -> Result<Option<Rate>, KeyProblem> {
        match v {
            None => Ok(None),
            Some(0) => Err((
                key,
                "must be greater than 0 (leave it out for no limit)".into(),
            )),
            Some(per_sec) => Ok(Some(Rate {
                per_sec,
                burst: s.burst.unwrap_or(per_sec),
            })),
        }
    };
    Ok(StormConfig {
        broadcast: rate("broadcast-pps", s.broadcast_pps)?,
        multicast: rate("multicast-pps", s.multicast_pps)?,
        unknown_unicast: rate("unknown-unicast-pps", s.unknown_unicast_pps)?,
        exempt_link_local: s.exempt_link_local,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn setup(extra: &str) -> Result<Config, ConfigError> {
        setup_with(|_| extra.to_string())
    }

    /// Like `setup`; `extra` gets h1's public key.
    fn setup_with(extra: impl Fn(&str) -> String) -> Result<Config, ConfigError> {
        let dir = std::env::temp_dir().join(format!(
            "tm-cfg-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let k = StaticSecret::generate(&mut rand::rng());
        write(&dir, "s.key", &k.to_base64());
        let pk = k.public_key().to_base64();
        let extra = extra(&pk);
        let p = write(
            &dir,
            "switch.toml",
            &format!(
                "listen = \"198.18.0.3:7777\"\nprivate-key-file = \"s.key\"\n{extra}\n[[node]]\nname = \"h1\"\npublic-key = \"{pk}\"\n"
            ),
        );
        let r = Config::load(&p);
        std::fs::remove_dir_all(&dir).unwrap();
        r
    }

    #[test]
    fn good_config_with_defaults() {
        let c = setup("").unwrap();
        assert_eq!(c.listen, "198.18.0.3:7777".parse().unwrap());
        assert_eq!(c.networks[0].core.mac_aging, Duration::from_secs(300));
        assert_eq!(c.networks[0].core.node_timeout, Duration::from_secs(30));
        assert_eq!(c.networks[0].core.mac_limit_per_node, 1024);
        assert_eq!(c.networks[0].core.nodes.len(), 1);
        assert_eq!(c.metrics_listen, None);
        let c = setup("metrics-listen = \"127.0.0.1:9101\"").unwrap();
        assert_eq!(c.metrics_listen, Some("127.0.0.1:9101".parse().unwrap()));
        assert_eq!(c.log_level, None);
        let c = setup("log-level = \"debug\"").unwrap();
        assert_eq!(c.log_level.as_deref(), Some("debug"));
        let e = setup("log-level = \"info,tapmesh_switch=noisy\"").unwrap_err();
        assert_eq!(e.key, "log-level", "{e}");
        assert_eq!(c.networks[0].core.handshake_guard.load_threshold, 200);
        let c = setup("handshake-load-threshold = 5\ncookie-replies-per-sec = 7").unwrap();
        assert_eq!(c.networks[0].core.handshake_guard.load_threshold, 5);
        assert_eq!(c.networks[0].core.handshake_guard.cookie_replies_per_sec, 7);
        let e = setup("handshake-load-threshold = 0").unwrap_err();
        assert_eq!(e.key, "handshake-load-threshold", "{e}");
    }

    #[test]
    fn networks() {
        let other = StaticSecret::generate(&mut rand::rng())
            .public_key()
            .to_base64();
        let blue = |id: u32, name: &str, node: &str, pk: &str| {
            format!(
                "[[network]]\nname = \"{name}\"\nid = {id}\nmode = \"mesh\"\n[[network.node]]\nname = \"{node}\"\npublic-key = \"{pk}\"\n"
            )
        };
        let c = setup_with(|_| blue(2, "blue", "b1", &other)).unwrap();
        let n: Vec<_> = c
            .networks
            .iter()
            .map(|n| {
                (
                    n.name.as_str(),
                    n.core.network_id,
                    n.mode,
                    n.core.nodes.len(),
                )
            })
            .collect();
        assert_eq!(
            n,
            [
                ("default", 0, crate::mesh::Mode::Central, 1),
                ("blue", 2, crate::mesh::Mode::Mesh, 1)
            ]
        );
        assert_eq!(c.networks[1].core.nodes[0].name, "b1");
        for (extra, key) in [
            (blue(0, "blue", "b1", &other), "network[0].id"),
            (blue(2, "default", "b1", &other), "network[0].name"),
            (blue(2, "blue", "h1", &other), "network[0].node[0].name"),
            (blue(2, "", "b1", &other), "network[0].name"),
        ] {
            let e = setup_with(|_| extra.clone()).unwrap_err();
            assert_eq!(e.key, key, "{e}");
        }
        // A key admitted to two networks.
        let e = setup_with(|pk| blue(2, "blue", "b1", pk)).unwrap_err();
        assert_eq!(e.key, "network[0].node[0].public-key", "{e}");
        // Two [[network]]s with the same id.
        let e = setup_with(|_| blue(2, "blue", "b1", &other) + &blue(2, "green", "g1", "AAAA"))
            .unwrap_err();
        assert_eq!(e.key, "network[1].id", "{e}");
    }

    #[test]
    fn errors_name_the_key() {
        let e = setup("colour = \"blue\"").unwrap_err();
        assert_eq!(e.key, "colour", "{e}");
        let e = setup("mac-aging-secs = \"long\"").unwrap_err();
        assert_eq!(e.key, "mac-aging-secs", "{e}");
        let e = setup("mac-aging-secs = 0").unwrap_err();
        assert_eq!(e.key, "mac-aging-secs", "{e}");
        let e = setup("metrics-listen = \"localhost\"").unwrap_err();
        assert_eq!(e.key, "metrics-listen", "{e}");
        let e = setup("network-secret-file = \"/nonexistent/x\"").unwrap_err();
        assert_eq!(e.key, "network-secret-file", "{e}");
        assert!(!e.to_string().contains('\n'));
    }

    #[test]
    fn multicast_and_storm_sections() {
        let c = setup("").unwrap();
        assert_eq!(c.networks[0].core.multicast, SnoopConfig::default());
        assert_eq!(
            c.networks[0].core.storm,
            StormConfig {
                exempt_link_local: true,
                ..StormConfig::default()
            }
        );
        assert_eq!(c.networks[0].core.nodes[0].vlan, PortVlan::Transparent);
        let c = setup(
            "[multicast]\nsnooping = false\nmembership-secs = 8\nquery-interval-secs = 2\nquery-response-secs = 1\nquerier-address = \"198.19.0.254\"\n[storm-control]\nbroadcast-pps = 500\n",
        )
        .unwrap();
        assert!(!c.networks[0].core.multicast.enabled);
        assert_eq!(
            c.networks[0].core.multicast.membership,
            Duration::from_secs(8)
        );
        assert_eq!(
            c.networks[0].core.multicast.querier_v4,
            Ipv4Addr::new(198, 19, 0, 254)
        );
        let limits = setup("[multicast]\nmax-groups-per-node = 10\nmax-groups = 20\nmax-groups-total = 30\nmax-sources-per-group = 4\nleaves-per-sec = 5\n").unwrap();
        let m = &limits.networks[0].core.multicast;
        assert_eq!(
            (m.max_groups_per_node, m.max_groups, m.max_groups_total),
            (10, 20, 30)
        );
        assert_eq!((m.max_sources_per_group, m.leaves_per_sec), (4, 5));
        assert_eq!(
            c.networks[0].core.storm.broadcast,
            Some(Rate {
                per_sec: 500,
                burst: 500
            })
        );
        for (extra, key) in [
            (
                "[multicast]\nmembership-secs = 100\n",
                "multicast.query-interval-secs",
            ),
            (
                "[multicast]\nquerier-address-v6 = \"fd00::1\"\n",
                "multicast.querier-address-v6",
            ),
            (
                "[multicast]\nquerier-mac = \"01:00:5e:00:00:01\"\n",
                "multicast.querier-mac",
            ),
            ("[multicast]\nmax-groups = 0\n", "multicast.max-groups"),
            (
                "[multicast]\nmax-sources-per-group = -1\n",
                "max-sources-per-group",
            ),
            ("[multicast]\ncolour = 1\n", "colour"),
            (
                "[storm-control]\nbroadcast-pps = 0\n",
                "storm-control.broadcast-pps",
            ),
        ] {
            let e = setup(extra).unwrap_err();
            assert_eq!(e.key, key, "{e}");
        }
    }

    /// A config with node h1 followed by `node_extra` (its sub-tables).
    fn setup_node(node_extra: &str) -> Result<Config, ConfigError> {
        let dir = std::env::temp_dir().join(format!(
            "tm-cfg-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let k = StaticSecret::generate(&mut rand::rng());
        write(&dir, "s.key", &k.to_base64());
        let pk = k.public_key().to_base64();
        let p = write(
            &dir,
            "switch.toml",
            &format!(
                "listen = \"198.18.0.3:7777\"\nprivate-key-file = \"s.key\"\n[[node]]\nname = \"h1\"\npublic-key = \"{pk}\"\n{node_extra}\n"
            ),
        );
        let r = Config::load(&p);
        std::fs::remove_dir_all(&dir).unwrap();
        r
    }

    #[test]
    fn impair_section() {
        let c = setup_node("").unwrap();
        assert!(c.networks[0].impair.is_empty());
        let c = setup_node(
            "[node.impair]\nlink = \"down\"\nseed = 7\n[node.impair.egress]\nloss-percent = 5\ndelay-ms = 20\njitter-ms = 2.5\nrate-bits-per-sec = 1000000\n[node.impair.ingress]\nburst-enter-percent = 1\nburst-exit-percent = 30\n",
        )
        .unwrap();
        let (name, l) = &c.networks[0].impair[0];
        assert_eq!(name, "h1");
        assert!(l.down);
        assert_eq!(l.egress.loss, 0.05);
        assert_eq!(l.egress.delay, Duration::from_millis(20));
        assert_eq!(l.egress.jitter, Duration::from_micros(2500));
        assert_eq!(l.egress.rate, Some(1_000_000));
        assert_eq!(l.egress.seed, Some(7));
        let b = l.ingress.burst.unwrap();
        assert_eq!((b.enter, b.exit, b.loss_bad), (0.01, 0.3, 1.0));
        for (extra, key) in [
            (
                "[node.impair.egress]\nloss-percent = 150\n",
                "node[0].impair.egress.loss-percent",
            ),
            (
                "[node.impair.ingress]\ndelay-ms = -1\n",
                "node[0].impair.ingress.delay-ms",
            ),
            (
                "[node.impair.egress]\nburst-exit-percent = 10\n",
                "node[0].impair.egress.burst-enter-percent",
            ),
            (
                "[node.impair.egress]\nqueue-frames = 0\n",
                "node[0].impair.egress.queue-frames",
            ),
            (
                "[node.impair.egress]\nrate-bits-per-sec = 0\n",
                "node[0].impair.egress.rate-bits-per-sec",
            ),
            ("[node.impair]\nlink = \"sideways\"\n", "link"),
            ("[node.impair.egress]\nlos-percent = 1\n", "los-percent"),
        ] {
            let e = setup_node(extra).unwrap_err();
            assert!(e.key.ends_with(key), "{extra}: {e}");
            assert!(!e.to_string().contains('\n'));
        }
    }

    #[test]
    fn node_vlans() {
        let n = |vlan: Option<u16>, trunk: Option<Vec<u16>>| NodeEntry {
            name: "x".into(),
            public_key: String::new(),
            vlan,
            trunk,
            fast_leave: false,
            impair: None,
        };
        assert_eq!(
            port_vlan(&n(None, None), false).unwrap(),
            PortVlan::Transparent
        );
        assert_eq!(
            port_vlan(&n(None, None), true).unwrap(),
            PortVlan::Member {
                native: Some(1),
                tagged: vec![]
            }
        );
        assert_eq!(
            port_vlan(&n(None, Some(vec![20, 10])), true).unwrap(),
            PortVlan::Member {
                native: None,
                tagged: vec![10, 20]
            }
        );
        assert_eq!(port_vlan(&n(Some(4095), None), true).unwrap_err().0, "vlan");
        assert_eq!(
            port_vlan(&n(Some(10), Some(vec![10])), true).unwrap_err().0,
            "trunk"
        );
        assert_eq!(
            port_vlan(&n(None, Some(vec![])), true).unwrap_err().0,
            "trunk"
        );
    }
}
