//! `tapmesh-node reload` and SIGHUP: what of a re-read `node.toml` a running
//! node applies, without recreating its TAP or touching its session.
//!
//! Live: `[[vm-port]]`s and `[[host]]`s (with their forwards) added or
//! removed, `metrics-listen` (the exporter moves; an address it cannot
//! bind refuses the reload) and `log-level` (unless `--log-level` was given;
//! see `tapmesh_shell::log_level`). A port or host is matched by its whole entry, so a changed one
//! is removed and added again: a VM on a changed port reconnects, and a
//! changed host's open forwarded connections end. Everything else is bound to
//! the TAP, the session or a socket the node holds, and is refused by key
//! (the running config stays): `name`, `private-key-file`, `switch`,
//! `switch-public-key`, `network-secret-file`, `network-id`, `underlay-mtu`,
//! `rekey-after-secs`, `admin-socket`, `busy-poll-us`, `workers` (the TAP's
//! queues), `worker-opening` and `[tap]`; and an
//! added port or host whose `mtu` is above the largest the node started
//! with (the core holds every frame to that).
use std::path::Path;

use tapmesh_shell::config::ConfigError;

use crate::config::{Config, VmPortConfig};
use crate::userhost::config::HostConfig;

/// What a reload changes in the node's local ports.
#[derive(Debug, Default)]
pub struct Plan {
    /// VM ports to open, as configured.
    pub vm_added: Vec<VmPortConfig>,
    /// Running VM ports to close (their indices in the running list).
    pub vm_removed: Vec<usize>,
    /// Userspace hosts to start.
    pub hosts_added: Vec<HostConfig>,
    /// Running hosts to stop (their indices in the running list).
    pub hosts_removed: Vec<usize>,
    /// The new `metrics-listen`, if it changed (`Some(None)`: stop serving).
    pub metrics_listen: Option<Option<std::net::SocketAddr>>,
    /// The new `log-level`, if it changed (`Some(None)`: the key is gone).
    pub log_level: Option<Option<String>>,
}

impl Plan {
    /// One line for the log and the `reload` command.
    pub fn summary(&self, running: &Config) -> String {
        let vm = |v: &VmPortConfig| v.path.display().to_string();
        let host = |h: &HostConfig| {
            h.addresses
                .first()
                .map_or_else(|| "host".to_owned(), |a| a.addr.to_string())
        };
        let mut parts = Vec::new();
        let mut list = |what: &str, names: Vec<String>| {
            if !names.is_empty() {
                parts.push(format!("{what} {}", names.join(",")));
            }
        };
        list("vm-ports added", self.vm_added.iter().map(vm).collect());
        list(
            "vm-ports removed",
            self.vm_removed
                .iter()
                .map(|&i| vm(&running.vm_ports[i]))
                .collect(),
        );
        list("hosts added", self.hosts_added.iter().map(host).collect());
        list(
            "hosts removed",
            self.hosts_removed
                .iter()
                .map(|&i| host(&running.hosts[i]))
                .collect(),
        );
        if let Some(m) = self.metrics_listen {
            parts.push(match m {
                Some(a) => format!("metrics-listen {a}"),
                None => "metrics-listen off".into(),
            });
        }
        if let Some(l) = &self.log_level {
            parts.push(tapmesh_shell::log_level::describe(l.as_deref()));
        }
        if parts.is_empty() {
            "no changes".into()
        } else {
            parts.join("; ")
        }
    }
}

/// Compare `new` (from `path`, validated) with the `running` config: the
/// plan, or an error naming every key that cannot change while running.
pub fn plan(path: &Path, running: &Config, new: &Config) -> Result<Plan, ConfigError> {
    let (a, b) = (&running.core, &new.core);
    let mut fixed: Vec<String> = [
        ("name", running.name != new.name),
        (
            "private-key-file",
            a.private_key.public_key() != b.private_key.public_key(),
        ),
        (
            "switch",
            a.switch_addr != b.switch_addr || a.switches != b.switches,
        ),
        ("switch-public-key", a.switch_key != b.switch_key),
        ("network-secret-file", a.psk != b.psk),
        ("network-id", a.network_id != b.network_id),
        ("underlay-mtu", a.underlay_mtu != b.underlay_mtu),
        ("rekey-after-secs", a.rekey_after != b.rekey_after),
        ("admin-socket", running.admin_socket != new.admin_socket),
        ("tap", running.tap != new.tap),
        ("busy-poll-us", running.busy_poll != new.busy_poll),
        ("workers", running.workers != new.workers),
        (
            "worker-opening",
            running.worker_opening != new.worker_opening,
        ),
    ]
    .into_iter()
    .filter_map(|(key, differs)| differs.then_some(key.to_owned()))
    .collect();
    // The core holds frames to the largest local MTU it started with: a new
    // port may not need more (each port is held to its own by the local
    // switch, so a smaller one is fine).
    let vm_ports = new
        .vm_ports
        .iter()
        .map(|v| (v.mtu as usize, running.vm_ports.contains(v)));
    let hosts = new.hosts.iter().map(|h| (h.mtu, running.hosts.contains(h)));
    let ports: [(&str, Vec<_>); 2] = [("vm-port", vm_ports.collect()), ("host", hosts.collect())];
    for (table, list) in ports {
        for (k, (mtu, is_running)) in list.into_iter().enumerate() {
            if !is_running && mtu > a.mtu {
                fixed.push(format!("{table}[{k}].mtu"));
            }
        }
    }
    if !fixed.is_empty() {
        return Err(ConfigError::new(
            path,
            &fixed.join(", "),
            "cannot change while the node runs (restart it to apply); nothing was changed",
        ));
    }
    Ok(Plan {
        vm_added: added(&running.vm_ports, &new.vm_ports),
        vm_removed: removed(&running.vm_ports, &new.vm_ports),
        hosts_added: added(&running.hosts, &new.hosts),
        hosts_removed: removed(&running.hosts, &new.hosts),
        metrics_listen: (running.metrics_listen != new.metrics_listen)
            .then_some(new.metrics_listen),
        log_level: (running.log_level != new.log_level).then(|| new.log_level.clone()),
    })
}

fn added<T: PartialEq + Clone>(running: &[T], new: &[T]) -> Vec<T> {
    new.iter()
        .filter(|n| !running.contains(n))
        .cloned()
        .collect()
}

fn removed<T: PartialEq>(running: &[T], new: &[T]) -> Vec<usize> {
    (0..running.len())
        .filter(|&i| !new.contains(&running[i]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> (std::path::PathBuf, Result<Config, ConfigError>) {
        let dir = std::env::temp_dir().join(format!(
            "tm-reload-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let key = overlay_proto::keys::StaticSecret::from_base64(
            "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=",
        )
        .unwrap();
        std::fs::write(dir.join("n.key"), key.to_base64()).unwrap();
        let p = dir.join("node.toml");
        std::fs::write(
            &p,
            format!(
                "name = \"h1\"\nprivate-key-file = \"n.key\"\nswitch = \"198.18.0.3:7777\"\nswitch-public-key = \"{}\"\n{extra}",
                key.public_key()
            ),
        )
        .unwrap();
        let c = Config::load(&p);
        std::fs::remove_dir_all(&dir).unwrap();
        (p, c)
    }

    const VM1: &str = "[[vm-port]]\npath = \"/run/t/vm1.sock\"\n";
    const VM2: &str = "[[vm-port]]\npath = \"/run/t/vm2.sock\"\n";
    const HOST: &str = "[[host]]\naddress = [\"198.19.0.50/24\"]\n[[host.forward]]\nport = 22\nto = \"127.0.0.1:22\"\n";

    #[test]
    fn ports_and_hosts_are_added_and_removed_by_entry() {
        let (p, old) = config(&format!("{VM1}{VM2}"));
        let old = old.unwrap();
        let (_, new) = config(&format!("{VM2}{HOST}"));
        let plan = plan(&p, &old, &new.unwrap()).unwrap();
        assert_eq!(plan.vm_removed, [0]);
        assert!(plan.vm_added.is_empty());
        assert_eq!(plan.hosts_added.len(), 1);
        assert!(plan.hosts_removed.is_empty());
        assert_eq!(
            plan.summary(&old),
            "vm-ports removed /run/t/vm1.sock; hosts added 198.19.0.50"
        );
        // Same file: nothing to do.
        let (_, same) = config(&format!("{VM1}{VM2}"));
        assert_eq!(plan_of(&p, &old, same).summary(&old), "no changes");
        // Only the log level: applied, not refused.
        let (_, louder) = config(&format!("log-level = \"debug\"\n{VM1}{VM2}"));
        let plan = plan_of(&p, &old, louder);
        assert_eq!(plan.log_level, Some(Some("debug".into())));
        assert_eq!(plan.summary(&old), "log-level debug");
    }

    fn plan_of(p: &Path, old: &Config, new: Result<Config, ConfigError>) -> Plan {
        plan(p, old, &new.unwrap()).unwrap()
    }

    #[test]
    fn what_cannot_change_is_named() {
        let (p, old) = config("underlay-mtu = 1500\n[tap]\nmtu = 1400\n");
        let old = old.unwrap();
        let (_, new) = config("underlay-mtu = 1400\nnetwork-id = 3\n[tap]\nmtu = 1300\n");
        let e = plan(&p, &old, &new.unwrap()).unwrap_err();
        assert_eq!(e.key, "network-id, underlay-mtu, tap", "{e}");
        assert!(e.to_string().contains("cannot change while the node runs"));
    }

    #[test]
    fn workers_cannot_change_live() {
        let (p, old) = config("[tap]\n");
        let (_, new) = config("workers = 2\n[tap]\n");
        let e = plan(&p, &old.unwrap(), &new.unwrap()).unwrap_err();
        assert_eq!(e.key, "workers", "{e}");
    }
}
