//! Load the input as `switch.toml` and as `node.toml`. Must never panic,
//! whatever the text: every problem has to come back as a `ConfigError`.
//!
//! The file is written into a per-process scratch directory that also holds
//! key files (`s.key`, `h1.key`, `net.psk`, `bad.key`) so that the seeds can
//! get past key loading into validation. To keep the target hermetic and
//! fast, inputs that would make `load` read files outside that directory
//! (absolute paths, `..`: think `/dev/zero`) or resolve a host name through
//! DNS (node `switch = "name:port"`) are skipped; they exercise no parsing
//! code of ours that other inputs do not.
#![no_main]

use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn scratch() -> &'static PathBuf {
    static D: OnceLock<PathBuf> = OnceLock::new();
    D.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("tapmesh-fuzz-config-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let (sw, h1, _) = tapmesh_fuzz::keys();
        std::fs::write(d.join("s.key"), sw.to_base64() + "\n").unwrap();
        std::fs::write(d.join("h1.key"), h1.to_base64()).unwrap();
        std::fs::write(
            d.join("net.psk"),
            "  ".to_owned() + &h1.public_key().to_base64() + "\n",
        )
        .unwrap();
        std::fs::write(d.join("bad.key"), "not base64!").unwrap();
        d
    })
}

/// A secret-file path `load` would read: only plain relative paths inside the
/// scratch directory are allowed.
fn path_is_local(p: &str) -> bool {
    !p.contains('\0')
        && Path::new(p)
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// Would `ToSocketAddrs for str` go to the resolver with this?
fn needs_dns(s: &str) -> bool {
    s.parse::<SocketAddr>().is_err()
        && s.rsplit_once(':')
            .is_some_and(|(_, port)| port.parse::<u16>().is_ok())
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut load_node = true;
    // Same parser `load` uses; if it fails, `load` fails before any file or
    // name is looked at.
    if let Ok(t) = text.parse::<toml::Table>() {
        for key in ["private-key-file", "network-secret-file"] {
            if let Some(toml::Value::String(p)) = t.get(key)
                && !path_is_local(p)
            {
                return;
            }
        }
        if let Some(toml::Value::String(s)) = t.get("switch")
            && needs_dns(s)
        {
            load_node = false;
        }
    }
    let path = scratch().join("fuzz.toml");
    std::fs::write(&path, text).unwrap();

    if let Ok(c) = tapmesh_switch::config::Config::load(&path) {
        // Validation promises: at least one network, distinct ids and
        // names, and node names and keys unique over all networks.
        assert!(!c.networks.is_empty());
        let mut ids: Vec<u32> = c.networks.iter().map(|n| n.core.network_id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), c.networks.len());
        let mut names = Vec::new();
        let mut keys = Vec::new();
        for n in &c.networks {
            let core = &n.core;
            assert!(!n.name.is_empty());
            assert!(!core.mac_aging.is_zero());
            assert!(!core.node_timeout.is_zero());
            assert!(core.mac_limit_per_node > 0 && core.mac_table_limit > 0);
            for node in &core.nodes {
                assert!(!node.name.is_empty());
                assert!(!names.contains(&node.name) && !keys.contains(&node.public_key));
                names.push(node.name.clone());
                keys.push(node.public_key);
            }
        }
    }
    if load_node && let Ok(c) = tapmesh_node::config::Config::load(&path) {
        assert!(!c.name.is_empty() && c.name.len() <= 64);
        if let Some(tap) = &c.tap {
            assert!(!tap.name.is_empty() && tap.name.len() <= 15);
            assert!((576..=65000).contains(&tap.mtu));
        }
        // The core takes frames up to the largest local MTU.
        let largest = c.tap.iter().map(|t| t.mtu as usize);
        let largest = largest.chain(c.vm_ports.iter().map(|v| v.mtu as usize));
        let largest = largest.chain(c.hosts.iter().map(|h| h.mtu)).max();
        assert_eq!(
            Some(c.core.mtu),
            largest,
            "a [tap], [[vm-port]] or [[host]]"
        );
        let min_rekey = tapmesh_node::config::MIN_REKEY_AFTER_SECS;
        assert!((min_rekey..=120).contains(&c.core.rekey_after.as_secs()));
    }
});
