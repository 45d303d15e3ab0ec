//! `tapmesh-switch reload` and SIGHUP: the re-read `switch.toml` applied to
//! the running switch.
//!
//! The shell reads and validates the file with [`Config::load`], exactly as
//! at start; a file that does not validate is refused with the same one-line
//! error. Then [`apply`] checks what cannot change while running and, if
//! nothing of that changed, hands each network's part to
//! [`Networks::apply`] (nodes added, removed and changed; see
//! `fabric::reload`). A refusal changes nothing.
//!
//! Settings that cannot change live, and why:
//! - `listen`: the UDP socket every node's session points at;
//! - `admin-socket`: the socket this very request came through;
//! - `state-file`: where the endpoints of the running nodes are kept;
//! - `private-key-file`, `network-secret-file`: sessions and handshakes in
//!   flight are bound to them, and every node would have to change too;
//! - a network's `id` and `mode`: each node's sessions carry the id, and
//!   mesh nodes hold direct sessions the switch cannot take back;
//! - `[cluster]`: the trunks to the other switches and the store's lease
//!   are set up once, at start;
//! - `busy-poll-us`: read once by the shell's loop;
//! - `workers`: the worker sockets and threads are started once.
//!
//! Networks may be added (a new core) or removed (its sessions end).
//! `log-level` may change (unless `--log-level` was given; see
//! `tapmesh_shell::log_level`). `metrics-listen` may change: the shell moves the exporter first (its
//! bind can fail, which refuses the reload) and back if the rest is refused.
use std::path::Path;
use std::time::Instant;

use tapmesh_shell::config::ConfigError;

use crate::config::{Config, DEFAULT_NETWORK};
use crate::networks::{Networks, Reloaded};

/// Apply `new` (from `path`, already validated) to `nets`, which runs
/// `running`. On success `running` becomes `new` (without its networks,
/// which the cores now hold). On refusal nothing changed, and the error
/// names every setting that cannot change while running.
pub fn apply(
    path: &Path,
    running: &mut Config,
    mut new: Config,
    nets: &mut Networks,
    now: Instant,
) -> Result<Reloaded, ConfigError> {
    let mut fixed: Vec<String> = [
        ("listen", running.listen != new.listen),
        ("admin-socket", running.admin_socket != new.admin_socket),
        ("state-file", running.state_file != new.state_file),
        ("cluster", running.cluster != new.cluster),
        ("busy-poll-us", running.busy_poll != new.busy_poll),
        ("workers", running.workers != new.workers),
    ]
    .into_iter()
    .filter(|(_, differs)| *differs)
    .map(|(key, _)| key.to_string())
    .collect();
    let prefixes: Vec<String> = (0..new.networks.len())
        .map(|k| key_prefix(&new, k))
        .collect();
    let networks = std::mem::take(&mut new.networks);
    if fixed.is_empty() {
        match nets.apply(now, networks) {
            Ok(r) => {
                *running = new;
                return Ok(r);
            }
            Err(refused) => {
                fixed.extend(
                    refused
                        .into_iter()
                        .map(|(k, u)| format!("{}{}", prefixes[k], u.0)),
                );
            }
        }
    }
    Err(ConfigError::new(
        path,
        &fixed.join(", "),
        "cannot change while the switch runs (restart it to apply); nothing was changed",
    ))
}

/// The key prefix of network `k` of `cfg`, as [`Config::load`] names its
/// keys: none for the top-level nodes' network, `network[i].` for the i-th
/// `[[network]]`.
fn key_prefix(cfg: &Config, k: usize) -> String {
    let top_level = cfg
        .networks
        .first()
        .is_some_and(|n| n.name == DEFAULT_NETWORK && n.core.network_id == 0);
    match (top_level, k) {
        (true, 0) => String::new(),
        (true, k) => format!("network[{}].", k - 1),
        (false, k) => format!("network[{k}]."),
    }
}

/// One line for the log and the `reload` command: what changed, by network,
/// and the new `log-level` if it changed (`Some(None)`: the key is gone).
pub fn summary(r: &Reloaded, log_level: Option<Option<&str>>) -> String {
    let mut parts = Vec::new();
    if let Some(l) = log_level {
        parts.push(tapmesh_shell::log_level::describe(l));
    }
    if r.is_empty() && parts.is_empty() {
        return "no changes".into();
    }
    for (net, c) in r {
        let mut p = Vec::new();
        for (what, names) in [
            ("added", &c.added),
            ("removed", &c.removed),
            ("changed", &c.changed),
        ] {
            if !names.is_empty() {
                p.push(format!("{what} {}", names.join(",")));
            }
        }
        if c.settings {
            p.push("settings changed".into());
        }
        parts.push(format!("network {net}: {}", p.join("; ")));
    }
    parts.join(" | ")
}
