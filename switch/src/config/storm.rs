//! `[storm-control]`: per-node rate limits on broadcast, multicast and
//! unknown unicast.
use serde::Deserialize;

use super::KeyProblem;
use crate::storm::{Rate, StormConfig};

/// `[storm-control]`: per-node limits, off unless a rate is given.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub(super) struct StormSection {
    broadcast_pps: Option<u32>,
    multicast_pps: Option<u32>,
    unknown_unicast_pps: Option<u32>,
    burst: Option<u32>,
    exempt_link_local: bool,
}

impl Default for StormSection {
    fn default() -> Self {
        StormSection {
            broadcast_pps: None,
            multicast_pps: None,
            unknown_unicast_pps: None,
            burst: None,
            exempt_link_local: true,
        }
    }
}

pub(super) fn storm(s: &StormSection) -> Result<StormConfig, KeyProblem> {
    if s.burst == Some(0) {
        return Err(("burst", "must be greater than 0".into()));
    }
    let rate = |key: &'static str, v: Option<u32>| -> Result<Option<Rate>, KeyProblem> {
        match v {
            None => Ok(None),
            Some(0) => Err((
                key,
                "must be greater than 0 (leave it out for no limit)".into(),
            )),
            Some(per_sec) => Ok(Some(Rate {
                per_sec,
                burst: s.burst.unwrap_or(per_sec),
            })),
        }
    };
    Ok(StormConfig {
        broadcast: rate("broadcast-pps", s.broadcast_pps)?,
        multicast: rate("multicast-pps", s.multicast_pps)?,
        unknown_unicast: rate("unknown-unicast-pps", s.unknown_unicast_pps)?,
        exempt_link_local: s.exempt_link_local,
    })
}
