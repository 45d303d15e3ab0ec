//! `switch.toml`: parsed with serde (kebab-case keys, unknown keys refused),
//! then validated into a [`SwitchConfig`]. Every error names the file, the key
//! and the problem on one line, e.g.
//! `switch.toml: listen: invalid socket address "1.2.3.4"`.
//!
//! This file holds the top-level keys; each section is validated in its own
//! module: [`network`] (`[[network]]` and `[[node]]`), [`impair`]
//! (`[node.impair]`), [`multicast`] (`[multicast]`), [`storm`]
//! (`[storm-control]`), [`mirror`] (`[[mirror]]`, `[[network.mirror]]`),
//! [`cluster`] (`[cluster]`).
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use overlay_proto::keys::{Psk, StaticSecret};
use serde::Deserialize;

use tapmesh_shell::config::{ConfigError, read_secret, read_toml};

use crate::cluster::ClusterConfig;
use crate::fabric::SwitchConfig;
use crate::networks::NetworkConfig;

mod cluster;
mod impair;
mod mirror;
mod multicast;
mod network;
mod storm;
#[cfg(test)]
mod tests;

use multicast::MulticastSection;
use network::{NetworkEntry, NodeEntry};
use storm::StormSection;

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
    busy_poll_us: Option<u64>,
    workers: Option<crate::workers::WorkersKey>,
    #[serde(default)]
    mode: crate::mesh::Mode,
    #[serde(default)]
    multicast: MulticastSection,
    #[serde(default)]
    storm_control: StormSection,
    cluster: Option<cluster::ClusterSection>,
    #[serde(default)]
    node: Vec<NodeEntry>,
    #[serde(default)]
    network: Vec<NetworkEntry>,
    #[serde(default)]
    mirror: Vec<mirror::MirrorEntry>,
}

mod defaults {
    pub fn mac_aging_secs() -> u64 {
        overlay_proto::mac_table::MAC_AGING.as_secs()
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
    /// `busy-poll-us`: how long to keep polling the socket after the last
    /// datagram before parking (`tapmesh_shell::busy_poll`); `None`: off.
    pub busy_poll: Option<Duration>,
    /// `workers`: receive sockets and threads, the core's own included
    /// (1..=[`crate::workers::MAX_WORKERS`]; `"auto"`, the default, is
    /// [`crate::workers::auto`] of this host's cores; see [`crate::workers`]).
    pub workers: usize,
    /// The networks, each with its core's configuration: the top-level
    /// nodes (network `default`, id 0) unless only `[[network]]`s are given,
    /// then each `[[network]]`.
    pub networks: Vec<NetworkConfig>,
    /// `[cluster]`: the other switches serving these networks, if any.
    pub cluster: Option<ClusterConfig>,
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
        if let Some(l) = &f.log_level {
            tapmesh_shell::log_level::check(l).map_err(|p| err("log-level", p))?;
        }
        f.check_limits().map_err(|(k, p)| err(k, p))?;
        let busy_poll =
            tapmesh_shell::busy_poll::parse(f.busy_poll_us).map_err(|p| err("busy-poll-us", p))?;
        let workers = crate::workers::parse(f.workers.clone(), crate::workers::cores())
            .map_err(|p| err("workers", p))?;
        let own_key = private_key.public_key();
        let template = f.core_template(path, private_key)?;
        let drafts = network::drafts(path, &f.node, &f.mirror, f.mode, &psk, &f.network)?;
        let mut seen = network::Seen::default();
        let mut mirror_names = Vec::new();
        let mut networks = Vec::with_capacity(drafts.len());
        for draft in drafts {
            let (nodes, impair) = network::nodes(path, &draft, &mut seen)?;
            let mirrors = mirror::mirrors(path, &draft, &nodes, &mut mirror_names)?;
            networks.push(NetworkConfig {
                name: draft.name,
                mode: draft.mode,
                impair,
                mirrors,
                core: SwitchConfig {
                    psk: draft.psk,
                    network_id: draft.id,
                    nodes,
                    ..template.clone()
                },
            });
        }
        let cluster = match &f.cluster {
            None => None,
            Some(c) => {
                let node_keys: Vec<_> = (networks.iter())
                    .flat_map(|n| n.core.nodes.iter().map(|s| s.public_key))
                    .collect();
                let c = cluster::cluster(path, c, &own_key, &node_keys)
                    .map_err(|(k, p)| err(&format!("cluster.{k}"), p))?;
                Some(c)
            }
        };
        Ok(Config {
            cluster,
            listen,
            admin_socket: f.admin_socket,
            state_file: f.state_file,
            metrics_listen,
            log_level: f.log_level,
            busy_poll,
            workers,
            networks,
        })
    }
}

impl File {
    /// The top-level numbers: counts and times above 0, a usable MTU.
    fn check_limits(&self) -> Result<(), KeyProblem> {
        for (key, v) in [
            ("mac-aging-secs", self.mac_aging_secs),
            ("node-timeout-secs", self.node_timeout_secs),
            ("mac-limit-per-node", self.mac_limit_per_node as u64),
            ("mac-table-limit", self.mac_table_limit as u64),
            (
                "handshake-load-threshold",
                u64::from(self.handshake_load_threshold),
            ),
            (
                "cookie-replies-per-sec",
                u64::from(self.cookie_replies_per_sec),
            ),
        ] {
            if v == 0 {
                return Err((key, "must be greater than 0".into()));
            }
        }
        if !(576..=65535).contains(&self.underlay_mtu) {
            return Err((
                "underlay-mtu",
                format!("{} is out of range 576..=65535", self.underlay_mtu),
            ));
        }
        Ok(())
    }

    /// What every network's core shares: the switch's key, the limits and
    /// the `[multicast]` and `[storm-control]` sections (validated here).
    /// Each network fills in its secret, id and nodes.
    fn core_template(
        &self,
        path: &Path,
        private_key: StaticSecret,
    ) -> Result<SwitchConfig, ConfigError> {
        let err = |section: &str, (k, p): KeyProblem| {
            ConfigError::new(path, &format!("{section}.{k}"), p)
        };
        let multicast = multicast::multicast(&self.multicast).map_err(|e| err("multicast", e))?;
        let storm = storm::storm(&self.storm_control).map_err(|e| err("storm-control", e))?;
        Ok(SwitchConfig {
            private_key,
            psk: Psk::default(),
            network_id: 0,
            nodes: Vec::new(),
            mac_aging: Duration::from_secs(self.mac_aging_secs),
            node_timeout: Duration::from_secs(self.node_timeout_secs),
            mac_limit_per_node: self.mac_limit_per_node,
            mac_table_limit: self.mac_table_limit,
            underlay_mtu: self.underlay_mtu as usize,
            multicast,
            storm,
            handshake_guard: overlay_proto::handshake_guard::GuardConfig {
                load_threshold: self.handshake_load_threshold,
                cookie_replies_per_sec: self.cookie_replies_per_sec,
            },
        })
    }
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

/// A key within a section and what is wrong with it.
pub(super) type KeyProblem = (&'static str, String);
