//! `[cluster]` and `[[cluster.switch]]`: several switches serving the same
//! networks. Optional: without the section the switch runs alone, as before.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use overlay_proto::keys::PublicKey;
use serde::Deserialize;

use crate::cluster::{ClusterConfig, PeerSwitch};

mod etcd_credentials;

/// `[cluster]`: this switch's name, the etcd store (if any) and the other
/// switches it peers with.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct ClusterSection {
    name: String,
    #[serde(default)]
    etcd_endpoints: Vec<String>,
    etcd_ca_file: Option<PathBuf>,
    etcd_cert_file: Option<PathBuf>,
    etcd_key_file: Option<PathBuf>,
    etcd_username: Option<String>,
    etcd_password_file: Option<PathBuf>,
    #[serde(default = "default_lease_ttl_secs")]
    lease_ttl_secs: u64,
    #[serde(default = "default_prefix")]
    prefix: String,
    #[serde(default)]
    switch: Vec<SwitchEntry>,
}

/// `[[cluster.switch]]`: another switch of the cluster.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct SwitchEntry {
    name: String,
    public_key: String,
    endpoint: String,
}

fn default_lease_ttl_secs() -> u64 {
    5
}

fn default_prefix() -> String {
    "/tapmesh".into()
}

/// The lease TTLs etcd is asked for, in seconds.
const LEASE_TTL_SECS: std::ops::RangeInclusive<u64> = 2..=60;

/// A key of `[cluster]` (relative to the section) and what is wrong with it.
type Problem = (String, String);

/// Validate `[cluster]` of the config file `config` (files it names are
/// relative to it). `own_key` is this switch's public key and `node_keys`
/// every admitted node's: a switch's key must be neither.
pub(super) fn cluster(
    config: &Path,
    s: &ClusterSection,
    own_key: &PublicKey,
    node_keys: &[PublicKey],
) -> Result<ClusterConfig, Problem> {
    let p = |k: &str, problem: String| (k.to_string(), problem);
    check_name(&s.name).map_err(|e| p("name", e))?;
    let mut etcd_endpoints = Vec::with_capacity(s.etcd_endpoints.len());
    for (i, u) in s.etcd_endpoints.iter().enumerate() {
        check_url(u).map_err(|e| p(&format!("etcd-endpoints[{i}]"), e))?;
        if etcd_endpoints.contains(u) {
            return Err(p(
                &format!("etcd-endpoints[{i}]"),
                format!("{u:?} is listed twice"),
            ));
        }
        etcd_endpoints.push(u.clone());
    }
    let etcd_credentials = etcd_credentials::credentials(config, s)?;
    if !LEASE_TTL_SECS.contains(&s.lease_ttl_secs) {
        return Err(p(
            "lease-ttl-secs",
            format!(
                "{} is out of range {}..={}",
                s.lease_ttl_secs,
                LEASE_TTL_SECS.start(),
                LEASE_TTL_SECS.end()
            ),
        ));
    }
    check_prefix(&s.prefix).map_err(|e| p("prefix", e))?;
    let mut switches: Vec<PeerSwitch> = Vec::with_capacity(s.switch.len());
    for (i, e) in s.switch.iter().enumerate() {
        let key = |k: &str| format!("switch[{i}].{k}");
        check_name(&e.name).map_err(|m| p(&key("name"), m))?;
        if e.name == s.name || switches.iter().any(|o| *o.name == *e.name) {
            return Err(p(
                &key("name"),
                format!("duplicate switch name {:?}", e.name),
            ));
        }
        let public_key = PublicKey::from_base64(&e.public_key)
            .map_err(|_| p(&key("public-key"), "not a base64 32-byte key".into()))?;
        if public_key == *own_key {
            return Err(p(
                &key("public-key"),
                "is this switch's own key (list the other switches only)".into(),
            ));
        }
        if switches.iter().any(|o| o.public_key == public_key) {
            return Err(p(
                &key("public-key"),
                "the same key is listed for two switches".into(),
            ));
        }
        if node_keys.contains(&public_key) {
            return Err(p(
                &key("public-key"),
                "is also a node's key (a key is a node or a switch)".into(),
            ));
        }
        let endpoint: SocketAddr = e.endpoint.parse().map_err(|_| {
            p(
                &key("endpoint"),
                format!("invalid socket address {:?} (want IP:PORT)", e.endpoint),
            )
        })?;
        if endpoint.port() == 0 || endpoint.ip().is_unspecified() {
            return Err(p(
                &key("endpoint"),
                format!("{endpoint} is not an address another switch listens on"),
            ));
        }
        switches.push(PeerSwitch {
            name: e.name.as_str().into(),
            public_key,
            endpoint,
        });
    }
    Ok(ClusterConfig {
        name: Arc::from(s.name.as_str()),
        etcd_endpoints,
        etcd_credentials,
        lease_ttl: Duration::from_secs(s.lease_ttl_secs),
        prefix: s.prefix.clone(),
        switches,
    })
}

/// A switch name: it labels metrics and is part of the etcd keys, so it is
/// short and plain.
fn check_name(n: &str) -> Result<(), String> {
    if n.is_empty() {
        return Err("must not be empty".into());
    }
    if n.len() > 64 {
        return Err(format!("{n:?} is longer than 64 characters"));
    }
    if !n
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "{n:?} may hold only letters, digits, '-', '_' and '.'"
        ));
    }
    Ok(())
}

/// An etcd client URL: `http://HOST:PORT` or `https://HOST:PORT`.
fn check_url(u: &str) -> Result<(), String> {
    let want = || format!("{u:?} is not an etcd URL (want http://HOST:PORT or https://HOST:PORT)");
    let rest = u
        .strip_prefix("http://")
        .or_else(|| u.strip_prefix("https://"))
        .ok_or_else(want)?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = rest.rsplit_once(':').ok_or_else(want)?;
    let host_ok = !host.is_empty()
        && !host.contains(['/', '@', '?', '#', ' '])
        && (!host.contains(':') || (host.starts_with('[') && host.ends_with(']')));
    match port.parse::<u16>() {
        Ok(p) if p > 0 && host_ok => Ok(()),
        _ => Err(want()),
    }
}

/// The etcd key prefix: absolute, no trailing slash, no blanks.
fn check_prefix(p: &str) -> Result<(), String> {
    if !p.starts_with('/') || p.len() < 2 || p.ends_with('/') {
        return Err(format!(
            "{p:?} must start with '/', name something and not end with '/'"
        ));
    }
    if p.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{p:?} must not contain blanks"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        for good in [
            "http://198.18.0.1:2379",
            "https://etcd.example:2379",
            "http://[fd00::1]:2379/",
        ] {
            assert_eq!(check_url(good), Ok(()), "{good}");
        }
        for bad in [
            "198.18.0.1:2379",
            "http://198.18.0.1",
            "http://:2379",
            "http://198.18.0.1:0",
            "http://198.18.0.1:x",
            "ftp://198.18.0.1:2379",
            "http://fd00::1:2379",
            "http://u@h:1",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_and_prefixes() {
        assert!(check_name("sw-1.a_b").is_ok());
        for bad in ["", "a/b", "a b", "ä", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert!(check_prefix("/tapmesh").is_ok());
        assert!(check_prefix("/a/b").is_ok());
        for bad in ["", "/", "tapmesh", "/tapmesh/", "/a b"] {
            assert!(check_prefix(bad).is_err(), "{bad}");
        }
    }
}
