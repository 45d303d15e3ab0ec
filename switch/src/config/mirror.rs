//! `[[mirror]]` (the top-level nodes' network) and `[[network.mirror]]`:
//! port mirroring sessions (see [`crate::mirror`]).
use std::path::Path;

use serde::Deserialize;
use tapmesh_shell::config::ConfigError;

use super::network::NetworkDraft;
use crate::fabric::NodeSpec;
use crate::mirror::{DEFAULT_RATE, MAX_SESSIONS, MirrorDirection, MirrorSpec};

/// `[[mirror]]` / `[[network.mirror]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct MirrorEntry {
    name: String,
    source: String,
    destination: String,
    #[serde(default)]
    direction: MirrorDirection,
    vlan: Option<u16>,
    #[serde(default = "default_rate")]
    rate: u32,
}

fn default_rate() -> u32 {
    DEFAULT_RATE
}

/// One network's mirror sessions, checked against its `nodes`. `names`
/// holds the session names of the networks before (names are unique over
/// all networks: they label metrics).
pub(super) fn mirrors(
    path: &Path,
    draft: &NetworkDraft,
    nodes: &[NodeSpec],
    names: &mut Vec<String>,
) -> Result<Vec<MirrorSpec>, ConfigError> {
    let prefix = &draft.prefix;
    if draft.mirrors.len() > MAX_SESSIONS {
        return Err(ConfigError::new(
            path,
            &format!("{prefix}mirror"),
            format!("a network has at most {MAX_SESSIONS} mirror sessions"),
        ));
    }
    let mut out = Vec::with_capacity(draft.mirrors.len());
    for (i, m) in draft.mirrors.iter().enumerate() {
        let err =
            |(k, p): (&str, String)| ConfigError::new(path, &format!("{prefix}mirror[{i}].{k}"), p);
        let spec = MirrorSpec {
            name: m.name.clone(),
            source: m.source.clone(),
            destination: m.destination.clone(),
            direction: m.direction,
            vlan: m.vlan,
            rate: m.rate,
        };
        spec.check().map_err(err)?;
        if names.contains(&spec.name) {
            return Err(err((
                "name",
                format!("duplicate mirror session name {:?}", spec.name),
            )));
        }
        let node = |key: &'static str, name: &str| {
            nodes
                .iter()
                .find(|n| n.name == name)
                .ok_or_else(|| err((key, format!("no node {name:?} in network {:?}", draft.name))))
        };
        let source = node("source", &spec.source)?;
        node("destination", &spec.destination)?;
        spec.check_vlan(&source.vlan).map_err(err)?;
        names.push(spec.name.clone());
        out.push(spec);
    }
    Ok(out)
}
