//! `[[host]]` and `[[host.forward]]` in `node.toml`: parsed with the rest of
//! the file, validated here. Errors name the key as `host[i].address[j]` or
//! `host[i].forward[j].to`.
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;

use overlay_proto::ethernet::MacAddr;
use serde::Deserialize;
use tapmesh_shell::config::ConfigError;

use crate::iface::{IfAddr, parse_ifaddr};

/// Addresses per host: smoltcp is built with room for 4
/// (`iface-max-addr-count-4` in the workspace `Cargo.toml`).
pub const MAX_ADDRESSES: usize = 4;
/// Userspace hosts per node (each needs its own derived MAC).
pub const MAX_HOSTS: usize = 4;
/// Forwarded ports per host.
pub const MAX_FORWARDS: usize = 64;
/// Default and upper bound of concurrent connections per forward.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;
const MAX_CONNECTIONS_LIMIT: usize = 1024;

/// `[[host]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HostFile {
    address: Vec<String>,
    mac: Option<String>,
    mtu: Option<u32>,
    #[serde(default)]
    forward: Vec<ForwardFile>,
}

/// `[[host.forward]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ForwardFile {
    port: u16,
    to: String,
    max_connections: Option<usize>,
}

/// One userspace host, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostConfig {
    /// Its addresses (IPv4 and IPv6), with prefix lengths.
    pub addresses: Vec<IfAddr>,
    /// Its MAC: configured, or derived from the node's public key.
    pub mac: [u8; 6],
    /// Its IP MTU (default: the TAP's, else 1400).
    pub mtu: usize,
    /// TCP ports it forwards to local services.
    pub forwards: Vec<Forward>,
}

/// A TCP port of the host spliced to a local address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward {
    /// The port on the host's addresses.
    pub port: u16,
    /// Where each connection is opened from the node's machine.
    pub to: SocketAddr,
    /// Concurrent connections; further SYNs are answered with RST.
    pub max_connections: usize,
}

/// A stable MAC for the node's `index`-th host, from bytes of the node's
/// public key that the TAP's MAC ([`crate::iface::mac_from_key`], bytes
/// 0..6) does not use. Locally administered unicast.
pub fn host_mac_from_key(public: &[u8; 32], index: usize) -> [u8; 6] {
    let start = 6 + 6 * (index % MAX_HOSTS);
    let mut m = [0u8; 6];
    m.copy_from_slice(&public[start..start + 6]);
    m[0] = (m[0] & 0xfc) | 0x02;
    m
}

/// Validate the `[[host]]` tables. `default_mtu` is a host's MTU unless it
/// sets one (the TAP's, if the node has one), `public` the node's public
/// key, `taken` MACs already used on this node (the TAP's).
pub fn validate(
    path: &Path,
    hosts: Vec<HostFile>,
    default_mtu: u32,
    public: &[u8; 32],
    taken: &[[u8; 6]],
) -> Result<Vec<HostConfig>, ConfigError> {
    let err = |key: String, problem: String| ConfigError::new(path, &key, problem);
    if hosts.len() > MAX_HOSTS {
        return Err(err(
            "host".into(),
            format!("{} hosts; at most {MAX_HOSTS} per node", hosts.len()),
        ));
    }
    let mut macs: Vec<[u8; 6]> = taken.to_vec();
    let mut seen_addrs = HashSet::new();
    let mut out = Vec::new();
    for (i, h) in hosts.into_iter().enumerate() {
        let key = |k: &str| format!("host[{i}].{k}");
        if h.address.is_empty() || h.address.len() > MAX_ADDRESSES {
            return Err(err(
                key("address"),
                format!("needs 1 to {MAX_ADDRESSES} addresses"),
            ));
        }
        let mut addresses = Vec::new();
        for (j, a) in h.address.iter().enumerate() {
            let v = parse_ifaddr(a)
                .filter(|v| !v.addr.is_unspecified() && !v.addr.is_multicast() && v.prefix > 0)
                .ok_or_else(|| {
                    err(
                        key(&format!("address[{j}]")),
                        format!("{a:?} is not a unicast ADDRESS/PREFIX"),
                    )
                })?;
            if !seen_addrs.insert(v.addr) {
                return Err(err(
                    key(&format!("address[{j}]")),
                    format!("{} is used twice", v.addr),
                ));
            }
            addresses.push(v);
        }
        let mac = match &h.mac {
            Some(t) => {
                MacAddr::parse_unicast(t)
                    .map_err(|e| err(key("mac"), format!("{t:?} {e}")))?
                    .0
            }
            None => host_mac_from_key(public, i),
        };
        if macs.contains(&mac) {
            return Err(err(
                key("mac"),
                "is the MAC of the TAP or of another host on this node".into(),
            ));
        }
        macs.push(mac);
        let mtu = h.mtu.unwrap_or(default_mtu);
        if !(576..=65000).contains(&mtu) {
            return Err(err(
                key("mtu"),
                format!("{mtu} is out of range 576..=65000"),
            ));
        }
        if h.forward.len() > MAX_FORWARDS {
            return Err(err(
                key("forward"),
                format!("{} forwards; at most {MAX_FORWARDS}", h.forward.len()),
            ));
        }
        let mut forwards: Vec<Forward> = Vec::new();
        for (j, f) in h.forward.iter().enumerate() {
            let fkey = |k: &str| key(&format!("forward[{j}].{k}"));
            if f.port == 0 {
                return Err(err(fkey("port"), "must be 1..=65535".into()));
            }
            if forwards.iter().any(|o| o.port == f.port) {
                return Err(err(
                    fkey("port"),
                    format!("port {} is forwarded twice", f.port),
                ));
            }
            let to: SocketAddr = f.to.parse().map_err(|_| {
                err(
                    fkey("to"),
                    format!(
                        "{:?} is not IP:PORT (e.g. \"127.0.0.1:8080\" or \"[::1]:8080\")",
                        f.to
                    ),
                )
            })?;
            if to.port() == 0 || to.ip().is_unspecified() || to.ip().is_multicast() {
                return Err(err(
                    fkey("to"),
                    format!("{to} is not an address a connection can be opened to"),
                ));
            }
            let max_connections = f.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
            if !(1..=MAX_CONNECTIONS_LIMIT).contains(&max_connections) {
                return Err(err(
                    fkey("max-connections"),
                    format!("{max_connections} is out of range 1..={MAX_CONNECTIONS_LIMIT}"),
                ));
            }
            forwards.push(Forward {
                port: f.port,
                to,
                max_connections,
            });
        }
        out.push(HostConfig {
            addresses,
            mac,
            mtu: mtu as usize,
            forwards,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Doc {
        #[serde(default)]
        host: Vec<HostFile>,
    }

    const TAP_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const KEY: [u8; 32] = [0x5a; 32];

    fn load(text: &str) -> Result<Vec<HostConfig>, ConfigError> {
        let path = std::env::temp_dir().join(format!(
            "tm-hostcfg-{}-{}.toml",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::write(&path, text).unwrap();
        let r = tapmesh_shell::config::read_toml::<Doc>(&path)
            .and_then(|d| validate(&path, d.host, 1400, &KEY, &[TAP_MAC]));
        std::fs::remove_file(&path).unwrap();
        r
    }

    fn key(text: &str) -> String {
        load(text).unwrap_err().key
    }

    fn fwd(f: &str) -> String {
        key(&format!(
            "[[host]]\naddress = [\"198.19.0.50/24\"]\n[[host.forward]]\n{f}"
        ))
    }

    #[test]
    fn hosts_and_forwards() {
        let hosts = load(
            "[[host]]\naddress = [\"198.19.0.50/24\", \"fd00:19::50/64\"]\n\
             [[host.forward]]\nport = 80\nto = \"127.0.0.1:8080\"\n\
             [[host.forward]]\nport = 22\nto = \"[::1]:22\"\nmax-connections = 2\n\
             [[host]]\naddress = [\"198.19.0.51/24\"]\nmac = \"02:00:00:00:00:51\"\nmtu = 1280\n",
        )
        .unwrap();
        assert_eq!(hosts.len(), 2);
        let h = &hosts[0];
        assert_eq!(h.addresses[1].to_string(), "fd00:19::50/64");
        assert_eq!(h.mtu, 1400, "the default given");
        assert_eq!(h.forwards[0].to, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(h.forwards[0].max_connections, DEFAULT_MAX_CONNECTIONS);
        assert_eq!(h.forwards[1].max_connections, 2);
        // Derived MAC: stable, locally administered unicast, not the TAP's.
        assert_eq!(h.mac, host_mac_from_key(&KEY, 0));
        assert_eq!(h.mac[0] & 3, 2);
        assert_ne!(h.mac, TAP_MAC);
        assert_eq!(hosts[1].mac, [2, 0, 0, 0, 0, 0x51]);
        assert_eq!(hosts[1].mtu, 1280);
        assert!(load("").unwrap().is_empty());
    }

    #[test]
    fn errors_name_the_key() {
        assert_eq!(key("[[host]]\naddress = []"), "host[0].address");
        assert_eq!(
            key("[[host]]\naddress = [\"198.19.0.50\"]"),
            "host[0].address[0]"
        );
        assert_eq!(
            key("[[host]]\naddress = [\"224.0.0.1/4\"]"),
            "host[0].address[0]"
        );
        assert_eq!(
            key("[[host]]\naddress = [\"198.19.0.50/24\", \"198.19.0.50/24\"]"),
            "host[0].address[1]"
        );
        assert_eq!(
            key("[[host]]\naddress = [\"198.19.0.50/24\"]\nmtu = 70000"),
            "host[0].mtu"
        );
        assert_eq!(
            key("[[host]]\naddress = [\"198.19.0.50/24\"]\nmac = \"ff:ff:ff:ff:ff:ff\""),
            "host[0].mac"
        );
        assert_eq!(
            key("[[host]]\naddress = [\"198.19.0.50/24\"]\nmac = \"02:00:00:00:00:01\""),
            "host[0].mac",
            "the TAP's MAC"
        );
        assert_eq!(
            key("[[host]]\naddress = [\"198.19.0.50/24\"]\nbogus = 1"),
            "bogus"
        );
        assert_eq!(
            fwd("port = 80\nto = \"localhost:8080\""),
            "host[0].forward[0].to"
        );
        assert_eq!(
            fwd("port = 80\nto = \"0.0.0.0:8080\""),
            "host[0].forward[0].to"
        );
        assert_eq!(
            fwd("port = 0\nto = \"127.0.0.1:8080\""),
            "host[0].forward[0].port"
        );
        assert_eq!(fwd("port = 70000\nto = \"127.0.0.1:8080\""), "port");
        assert_eq!(
            fwd("port = 80\nto = \"127.0.0.1:8080\"\nmax-connections = 0"),
            "host[0].forward[0].max-connections"
        );
        assert_eq!(
            fwd(
                "port = 80\nto = \"127.0.0.1:1\"\n[[host.forward]]\nport = 80\nto = \"127.0.0.1:2\""
            ),
            "host[0].forward[1].port"
        );
        let e = load(
            "[[host]]\naddress = [\"198.19.0.50/24\"]\n[[host.forward]]\nport = 80\nto = \"nope\"",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains(": host[0].forward[0].to: \"nope\" is not IP:PORT"),
            "{e}"
        );
    }
}
