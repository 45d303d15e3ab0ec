//! The `switch` key of `node.toml`: one switch (`switch = "HOST:PORT"` with
//! `switch-public-key`), or several (`[[switch]]` tables with `endpoint`,
//! `public-key` and an optional `name`, in order of preference).
use std::net::{SocketAddr, ToSocketAddrs};

use overlay_proto::keys::PublicKey;
use serde::Deserialize;
use tapmesh_shell::config::ConfigError;

use super::SwitchTarget;

/// The most switches one node lists.
pub const MAX_SWITCHES: usize = 16;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct SwitchFile {
    endpoint: String,
    public_key: String,
    name: Option<String>,
}

/// Validate `switch` (a string or an array of tables) and
/// `switch-public-key` into the node's switches, in order of preference.
pub fn switches(
    switch: toml::Value,
    switch_public_key: Option<&str>,
    err: &impl Fn(&str, String) -> ConfigError,
) -> Result<Vec<SwitchTarget>, ConfigError> {
    match switch {
        toml::Value::String(endpoint) => {
            let key = switch_public_key.ok_or_else(|| {
                err(
                    "switch-public-key",
                    "missing (required with switch = \"HOST:PORT\")".into(),
                )
            })?;
            let addr = resolve(&endpoint).ok_or_else(|| {
                err(
                    "switch",
                    format!("cannot resolve {endpoint:?} (want HOST:PORT)"),
                )
            })?;
            let key = PublicKey::from_base64(key)
                .map_err(|_| err("switch-public-key", "not a base64 32-byte key".into()))?;
            Ok(vec![SwitchTarget {
                name: endpoint,
                key,
                addr,
            }])
        }
        toml::Value::Array(entries) => {
            if switch_public_key.is_some() {
                return Err(err(
                    "switch-public-key",
                    "not allowed with [[switch]] tables (give each its public-key)".into(),
                ));
            }
            if entries.is_empty() || entries.len() > MAX_SWITCHES {
                return Err(err("switch", format!("list 1 to {MAX_SWITCHES} switches")));
            }
            let mut out: Vec<SwitchTarget> = Vec::with_capacity(entries.len());
            for (i, v) in entries.into_iter().enumerate() {
                let at = |k: &str| format!("switch[{i}].{k}");
                let f = SwitchFile::deserialize(v).map_err(|e| {
                    let msg = e.message().trim().replace('\n', " ");
                    let key = msg
                        .split('`')
                        .nth(1)
                        .filter(|_| msg.contains("field"))
                        .map_or(format!("switch[{i}]"), &at);
                    err(&key, msg)
                })?;
                let addr = resolve(&f.endpoint).ok_or_else(|| {
                    err(
                        &at("endpoint"),
                        format!("cannot resolve {:?} (want HOST:PORT)", f.endpoint),
                    )
                })?;
                let key = PublicKey::from_base64(&f.public_key)
                    .map_err(|_| err(&at("public-key"), "not a base64 32-byte key".into()))?;
                let name = f.name.unwrap_or_else(|| f.endpoint.clone());
                if name.is_empty() || name.len() > 64 {
                    return Err(err(&at("name"), "must be 1 to 64 characters".into()));
                }
                if let Some(first) = out.first()
                    && first.addr.is_ipv4() != addr.is_ipv4()
                {
                    return Err(err(
                        &at("endpoint"),
                        format!(
                            "{addr} is not of the first switch's address family ({})",
                            first.addr
                        ),
                    ));
                }
                if let Some(j) = out.iter().position(|s| s.key == key || s.name == name) {
                    return Err(err(
                        &at("public-key"),
                        format!("switch[{j}] has the same key or name"),
                    ));
                }
                out.push(SwitchTarget { name, key, addr });
            }
            Ok(out)
        }
        other => Err(err(
            "switch",
            format!(
                "want \"HOST:PORT\" or [[switch]] tables, not a {}",
                other.type_str()
            ),
        )),
    }
}

/// `HOST:PORT` as an address (a name is resolved once, at start).
fn resolve(endpoint: &str) -> Option<SocketAddr> {
    endpoint
        .parse()
        .ok()
        .or_else(|| endpoint.to_socket_addrs().ok()?.next())
}
