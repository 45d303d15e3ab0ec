//! `switch.toml`: parsed with serde (kebab-case keys, unknown keys refused),
//! then validated into a [`SwitchConfig`]. Every error names the file, the key
//! and the problem on one line, e.g.
//! `switch.toml: listen: invalid socket address "1.2.3.4"`.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use overlay_proto::keys::{Psk, PublicKey, StaticSecret};
use serde::Deserialize;

use tapmesh_shell::config::{ConfigError, read_secret, read_toml};

use crate::core::{NodeSpec, SwitchConfig};

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
    #[serde(default)]
    node: Vec<NodeEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct NodeEntry {
    name: String,
    public_key: String,
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
    /// The core's part.
    pub core: SwitchConfig,
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
        let psk = match &f.network_secret_file {
            None => Psk::default(),
            Some(p) => read_secret(path, p)
                .and_then(|t| {
                    Psk::from_base64(&t).map_err(|_| "not a base64 32-byte secret".into())
                })
                .map_err(|p| err("network-secret-file", p))?,
        };
        for (key, v) in [
            ("mac-aging-secs", f.mac_aging_secs),
            ("node-timeout-secs", f.node_timeout_secs),
            ("mac-limit-per-node", f.mac_limit_per_node as u64),
            ("mac-table-limit", f.mac_table_limit as u64),
        ] {
            if v == 0 {
                return Err(err(key, "must be greater than 0".into()));
            }
        }
        let mut nodes: Vec<NodeSpec> = Vec::with_capacity(f.node.len());
        for (i, n) in f.node.iter().enumerate() {
            let key = |k: &str| format!("node[{i}].{k}");
            if n.name.is_empty() {
                return Err(err(&key("name"), "must not be empty".into()));
            }
            let public_key = PublicKey::from_base64(&n.public_key)
                .map_err(|_| err(&key("public-key"), "not a base64 32-byte key".into()))?;
            if nodes.iter().any(|o| o.name == n.name) {
                return Err(err(
                    &key("name"),
                    format!("duplicate node name {:?}", n.name),
                ));
            }
            if nodes.iter().any(|o| o.public_key == public_key) {
                return Err(err(
                    &key("public-key"),
                    "the same key is listed twice".into(),
                ));
            }
            nodes.push(NodeSpec {
                name: n.name.clone(),
                public_key,
            });
        }
        Ok(Config {
            listen,
            admin_socket: f.admin_socket,
            state_file: f.state_file,
            core: SwitchConfig {
                private_key,
                psk,
                network_id: 0,
                nodes,
                mac_aging: Duration::from_secs(f.mac_aging_secs),
                node_timeout: Duration::from_secs(f.node_timeout_secs),
                mac_limit_per_node: f.mac_limit_per_node,
                mac_table_limit: f.mac_table_limit,
            },
        })
    }
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
        assert_eq!(c.core.mac_aging, Duration::from_secs(300));
        assert_eq!(c.core.node_timeout, Duration::from_secs(30));
        assert_eq!(c.core.mac_limit_per_node, 1024);
        assert_eq!(c.core.nodes.len(), 1);
    }

    #[test]
    fn errors_name_the_key() {
        let e = setup("colour = \"blue\"").unwrap_err();
        assert_eq!(e.key, "colour", "{e}");
        let e = setup("mac-aging-secs = \"long\"").unwrap_err();
        assert_eq!(e.key, "mac-aging-secs", "{e}");
        let e = setup("mac-aging-secs = 0").unwrap_err();
        assert_eq!(e.key, "mac-aging-secs", "{e}");
        let e = setup("network-secret-file = \"/nonexistent/x\"").unwrap_err();
        assert_eq!(e.key, "network-secret-file", "{e}");
        assert!(!e.to_string().contains('\n'));
    }
}
