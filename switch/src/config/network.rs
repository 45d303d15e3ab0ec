//! `[[network]]` and `[[node]]`: the networks this switch hosts and the
//! nodes admitted to each. Node names and keys are unique over all networks.
use std::path::{Path, PathBuf};

use overlay_proto::keys::{Psk, PublicKey};
use serde::Deserialize;
use tapmesh_shell::config::ConfigError;

use super::impair::{ImpairSection, link_impair};
use super::mirror::MirrorEntry;
use super::{DEFAULT_NETWORK, KeyProblem, network_secret};
use crate::fabric::NodeSpec;
use crate::impair::LinkImpair;
use crate::vlan::{DEFAULT_VLAN, PortVlan, Vid};

/// `[[network]]`: one more isolated network on this switch.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct NetworkEntry {
    pub(super) name: String,
    pub(super) id: u32,
    #[serde(default)]
    pub(super) mode: crate::mesh::Mode,
    pub(super) network_secret_file: Option<PathBuf>,
    #[serde(default)]
    pub(super) node: Vec<NodeEntry>,
    #[serde(default)]
    pub(super) mirror: Vec<MirrorEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct NodeEntry {
    pub(super) name: String,
    pub(super) public_key: String,
    pub(super) vlan: Option<u16>,
    pub(super) trunk: Option<Vec<u16>>,
    #[serde(default)]
    pub(super) fast_leave: bool,
    pub(super) impair: Option<ImpairSection>,
}

/// One network's entries before its nodes are validated; `prefix` is the
/// key prefix for its errors (`network[1].`, or empty for the top level).
pub(super) struct NetworkDraft<'a> {
    pub(super) prefix: String,
    pub(super) name: String,
    pub(super) id: u32,
    pub(super) mode: crate::mesh::Mode,
    pub(super) psk: Psk,
    pub(super) nodes: &'a [NodeEntry],
    pub(super) mirrors: &'a [MirrorEntry],
}

/// The networks in the order their cores are built: the top-level nodes
/// (network 0, "default", which exists unless the file lists only
/// `[[network]]`s), then each `[[network]]`, with its secret (the top-level
/// one unless it names its own). Top-level `[[mirror]]`s belong to network 0.
pub(super) fn drafts<'a>(
    path: &Path,
    top_nodes: &'a [NodeEntry],
    top_mirrors: &'a [MirrorEntry],
    top_mode: crate::mesh::Mode,
    psk: &Psk,
    networks: &'a [NetworkEntry],
) -> Result<Vec<NetworkDraft<'a>>, ConfigError> {
    let err = |key: &str, problem: String| ConfigError::new(path, key, problem);
    let mut entries: Vec<NetworkDraft> = Vec::new();
    if networks.is_empty() || !top_nodes.is_empty() {
        entries.push(NetworkDraft {
            prefix: String::new(),
            name: DEFAULT_NETWORK.into(),
            id: 0,
            mode: top_mode,
            psk: psk.clone(),
            nodes: top_nodes,
            mirrors: top_mirrors,
        });
    } else if !top_mirrors.is_empty() {
        return Err(err(
            "mirror",
            "needs top-level nodes (a [[network]]'s sessions go in its [[network.mirror]])".into(),
        ));
    }
    for (i, n) in networks.iter().enumerate() {
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
            Some(p) => {
                network_secret(path, Some(p)).map_err(|p| err(&key("network-secret-file"), p))?
            }
        };
        entries.push(NetworkDraft {
            prefix: format!("network[{i}]."),
            name: n.name.clone(),
            id: n.id,
            mode: n.mode,
            psk,
            nodes: &n.node,
            mirrors: &n.mirror,
        });
    }
    Ok(entries)
}

/// Node names and keys already taken, over all networks.
#[derive(Default)]
pub(super) struct Seen<'a> {
    names: Vec<&'a str>,
    keys: Vec<PublicKey>,
}

/// The links a network's config impairs: node name and impairment.
type ImpairedLinks = Vec<(String, LinkImpair)>;

/// One network's nodes, validated, and the impaired links among them.
pub(super) fn nodes<'a>(
    path: &Path,
    draft: &NetworkDraft<'a>,
    seen: &mut Seen<'a>,
) -> Result<(Vec<NodeSpec>, ImpairedLinks), ConfigError> {
    let err = |key: &str, problem: String| ConfigError::new(path, key, problem);
    let prefix = &draft.prefix;
    let entries = draft.nodes;
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
        if seen.names.contains(&n.name.as_str()) {
            return Err(err(
                &key("name"),
                format!("duplicate node name {:?}", n.name),
            ));
        }
        if seen.keys.contains(&public_key) {
            return Err(err(
                &key("public-key"),
                "the same key is listed twice (a node belongs to one network)".into(),
            ));
        }
        seen.names.push(&n.name);
        seen.keys.push(public_key);
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
    Ok((nodes, impair))
}

fn vid(v: u16) -> Result<Vid, String> {
    if (1..=4094).contains(&v) {
        Ok(v)
    } else {
        Err(format!("VLAN {v} is out of range 1..=4094"))
    }
}

pub(super) fn port_vlan(n: &NodeEntry, aware: bool) -> Result<PortVlan, KeyProblem> {
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
