//! The lab's topology file: parsed with serde (kebab-case keys, unknown keys
//! refused), then checked. The sections the switch already knows
//! (`[multicast]`, a host's `impair`, `[[mirror]]`) are passed into the
//! generated `switch.toml` as written, and [`load`] checks them with the
//! switch's own validation, so the lab accepts exactly what `switch.toml`
//! accepts. Every error is one line naming the lab file, the key and the
//! problem.
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tapmesh_shell::config::{ConfigError, read_toml};

use crate::config::{AdmittedNode, KeyPair, SwitchConfig};

/// The most hosts one lab may have (the topology numbers underlay addresses
/// 198.18.0.11 to .210).
pub const MAX_HOSTS: usize = 200;
/// The longest lab or host name: `{lab}-{host}` names a namespace, and
/// people type it.
pub const MAX_NAME: usize = 12;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct File {
    name: Option<String>,
    mode: Option<String>,
    multicast: Option<toml::Table>,
    #[serde(default)]
    mirror: Vec<toml::Table>,
    #[serde(default)]
    host: Vec<HostEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct HostEntry {
    name: String,
    vlan: Option<u16>,
    trunk: Option<Vec<u16>>,
    #[serde(default)]
    address: Vec<String>,
    impair: Option<toml::Table>,
}

/// A checked lab.
#[derive(Debug, Clone)]
pub struct Lab {
    /// The file it came from.
    pub file: PathBuf,
    /// `name`: the prefix of its namespaces (default: the file's stem).
    pub name: String,
    /// The hosts, in file order.
    pub hosts: Vec<LabHost>,
    /// Top-level lines for `switch.toml` (`mode`, `[multicast]`, `[[mirror]]`).
    pub switch_extra: String,
}

/// One `[[host]]`: a namespace with a TAP, and its node.
#[derive(Debug, Clone)]
pub struct LabHost {
    /// `name`, also its node's name at the switch.
    pub name: String,
    /// Its TAP's addresses (CIDR).
    pub addresses: Vec<String>,
    /// `vlan = N` / `trunk = [...]` / `impair....` lines for its `[[node]]`.
    pub node_entry: String,
    /// Its port, for people: `VLAN 10`, `trunk 10, 20`, or empty.
    pub port: String,
    /// Whether it has an `impair` table.
    pub impaired: bool,
}

impl Lab {
    /// The namespace of host `name` (or `sw`, the switch's).
    pub fn ns_name(&self, host: &str) -> String {
        format!("{}-{host}", self.name)
    }

    /// Every namespace the lab makes: the switch's, then each host's.
    pub fn namespaces(&self) -> Vec<String> {
        std::iter::once(self.ns_name("sw"))
            .chain(self.hosts.iter().map(|h| self.ns_name(&h.name)))
            .collect()
    }
}

/// Reads and checks a lab file; `name` overrides its `name` key.
pub fn load(path: &Path, name: Option<&str>) -> Result<Lab, ConfigError> {
    let err = |key: &str, problem: String| ConfigError::new(path, key, problem);
    let f: File = read_toml(path)?;
    let name = match (name, f.name.as_deref()) {
        (Some(n), _) | (None, Some(n)) => n.to_string(),
        (None, None) => {
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            check_name(&stem).map_err(|p| {
                err(
                    "name",
                    format!("not set, and the file's name will not do: {p}"),
                )
            })?;
            stem
        }
    };
    check_name(&name).map_err(|p| err("name", p))?;
    if f.host.is_empty() {
        return Err(err("host", "a lab needs at least one [[host]]".into()));
    }
    if f.host.len() > MAX_HOSTS {
        return Err(err("host", format!("at most {MAX_HOSTS} hosts")));
    }
    let mut hosts: Vec<LabHost> = Vec::with_capacity(f.host.len());
    for (i, h) in f.host.iter().enumerate() {
        let key = |k: &str| format!("host[{i}].{k}");
        check_name(&h.name).map_err(|p| err(&key("name"), p))?;
        if h.name == "sw" {
            return Err(err(&key("name"), "\"sw\" is the switch's namespace".into()));
        }
        if hosts.iter().any(|o| o.name == h.name) {
            return Err(err(&key("name"), format!("duplicate host {:?}", h.name)));
        }
        for a in &h.address {
            check_address(a).map_err(|p| err(&key("address"), p))?;
        }
        hosts.push(LabHost {
            name: h.name.clone(),
            addresses: h.address.clone(),
            node_entry: node_entry(h),
            port: port(h),
            impaired: h.impair.is_some(),
        });
    }
    let lab = Lab {
        file: path.to_path_buf(),
        name,
        hosts,
        switch_extra: switch_extra(&f),
    };
    check_with_switch(&lab)?;
    Ok(lab)
}

fn check_name(n: &str) -> Result<(), String> {
    let mut chars = n.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && n.len() <= MAX_NAME;
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{n:?}: want a lowercase letter, then letters and digits, at most {MAX_NAME}"
        ))
    }
}

/// A TAP address: `ADDRESS/PREFIX` inside the overlay ranges the lab may
/// use, 198.19.0.0/16 and fd00::/8, so a lab never claims anyone's real
/// addresses.
fn check_address(a: &str) -> Result<(), String> {
    let want = "want ADDRESS/PREFIX in 198.19.0.0/16 or fd00::/8, e.g. \"198.19.10.1/24\"";
    let Some((ip, len)) = a.split_once('/') else {
        return Err(format!("{a:?}: {want}"));
    };
    let (Ok(ip), Ok(len)) = (ip.parse::<IpAddr>(), len.parse::<u8>()) else {
        return Err(format!("{a:?}: {want}"));
    };
    let inside = match ip {
        IpAddr::V4(v) => v.octets()[..2] == [198, 19] && (16..=32).contains(&len),
        IpAddr::V6(v) => v.segments()[0] >> 8 == 0xfd && (8..=128).contains(&len),
    };
    if inside {
        Ok(())
    } else {
        Err(format!(
            "{a:?} is outside the lab's ranges: {want} (prefix at least /16, /8)"
        ))
    }
}

fn port(h: &HostEntry) -> String {
    let trunk = |t: &[u16]| {
        let v: Vec<String> = t.iter().map(u16::to_string).collect();
        format!("trunk {}", v.join(", "))
    };
    match (h.vlan, &h.trunk) {
        (Some(v), Some(t)) => format!("VLAN {v} untagged, {}", trunk(t)),
        (Some(v), None) => format!("VLAN {v}"),
        (None, Some(t)) => trunk(t),
        (None, None) => String::new(),
    }
}

/// The host's lines in its `[[node]]` table of `switch.toml`.
fn node_entry(h: &HostEntry) -> String {
    let mut s = String::new();
    if let Some(v) = h.vlan {
        let _ = writeln!(s, "vlan = {v}");
    }
    if let Some(t) = &h.trunk {
        let v: Vec<String> = t.iter().map(u16::to_string).collect();
        let _ = writeln!(s, "trunk = [{}]", v.join(", "));
    }
    if let Some(t) = &h.impair {
        dotted("impair", t, &mut s);
    }
    s
}

/// `table` as dotted keys under `prefix` (`impair.egress.loss-percent = 5`):
/// the form that stays inside the `[[node]]` table it is written in.
fn dotted(prefix: &str, table: &toml::Table, out: &mut String) {
    for (k, v) in table {
        let bare = !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        let key = if bare {
            format!("{prefix}.{k}")
        } else {
            format!("{prefix}.{}", toml::Value::from(k.as_str()))
        };
        match v {
            toml::Value::Table(t) => dotted(&key, t, out),
            v => {
                let _ = writeln!(out, "{key} = {v}");
            }
        }
    }
}

/// `mode`, `[multicast]` and `[[mirror]]` as `switch.toml` spells them.
fn switch_extra(f: &File) -> String {
    let mut t = toml::Table::new();
    if let Some(m) = &f.mode {
        t.insert("mode".into(), m.clone().into());
    }
    if let Some(m) = &f.multicast {
        t.insert("multicast".into(), m.clone().into());
    }
    if !f.mirror.is_empty() {
        let a: Vec<toml::Value> = f.mirror.iter().cloned().map(Into::into).collect();
        t.insert("mirror".into(), a.into());
    }
    toml::to_string(&t).expect("a TOML table always serializes")
}

/// Writes the `switch.toml` this lab would run, with throwaway keys, into a
/// scratch directory and loads it as the switch does; maps its error back
/// to the lab file (`node[i]` is `host[i]`).
fn check_with_switch(lab: &Lab) -> Result<(), ConfigError> {
    let dir = Scratch::new("check");
    let nodes = lab
        .hosts
        .iter()
        .map(|h| AdmittedNode {
            name: h.name.clone(),
            public_key: KeyPair::random(&dir.0.join(format!("{}.key", h.name))).public_key,
            entry_extra: h.node_entry.clone(),
            network: None,
        })
        .collect();
    let config = SwitchConfig {
        listen: "198.18.0.3:7777".into(),
        private_key_file: KeyPair::random(&dir.0.join("switch.key")).private_key_file,
        admin_socket: dir.0.join("switch.sock"),
        state_file: dir.0.join("switch.state"),
        mac_aging_secs: 300,
        node_timeout_secs: 30,
        extra: lab.switch_extra.clone(),
        nodes,
    };
    let file = dir.0.join("switch.toml");
    crate::config::write_file(&file, &config.render());
    tapmesh_switch::config::Config::load(&file)
        .map(drop)
        .map_err(|e| {
            let key = match e.key.strip_prefix("node[") {
                Some(rest) => format!("host[{rest}"),
                None => e.key,
            };
            ConfigError::new(&lab.file, &key, e.problem)
        })
}

/// A directory under the system's temp dir, removed on drop.
#[derive(Debug)]
struct Scratch(PathBuf);

impl Scratch {
    fn new(what: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("tapmesh-lab-{what}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_outside_the_lab_ranges_are_refused() {
        for ok in [
            "198.19.10.1/24",
            "198.19.0.1/16",
            "fd00:19:10::1/64",
            "fd12::1/8",
        ] {
            assert_eq!(check_address(ok), Ok(()), "{ok}");
        }
        for bad in [
            "10.0.0.1/24",
            "198.18.0.1/24",
            "198.19.0.1/8",
            "2001:db8::1/64",
            "fe80::1/64",
            "fd00::1/7",
            "198.19.0.1",
            "198.19.0.1/33",
        ] {
            assert!(check_address(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn impairment_stays_in_its_node_table() {
        let t: toml::Table =
            toml::from_str("link = \"down\"\n[egress]\nloss-percent = 5\ndelay-ms = 2.5\n")
                .unwrap();
        let mut s = String::new();
        dotted("impair", &t, &mut s);
        assert_eq!(
            s,
            "impair.egress.delay-ms = 2.5\nimpair.egress.loss-percent = 5\nimpair.link = \"down\"\n"
        );
    }

    #[test]
    fn mode_multicast_and_mirrors_reach_switch_toml_as_written() {
        let f: File = toml::from_str(
            "mode = \"mesh\"\n[multicast]\nquerier = false\n\
             [[mirror]]\nname = \"m\"\nsource = \"a\"\ndestination = \"b\"\n\
             [[host]]\nname = \"a\"\n",
        )
        .unwrap();
        assert_eq!(
            switch_extra(&f),
            "mode = \"mesh\"\n\n[[mirror]]\ndestination = \"b\"\nname = \"m\"\nsource = \"a\"\n\n\
             [multicast]\nquerier = false\n"
        );
    }

    #[test]
    fn names_must_be_short_lowercase_words() {
        assert!(check_name("rx1").is_ok());
        for bad in ["", "1rx", "Rx", "rx-1", "a-very-long-name"] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
    }
}
