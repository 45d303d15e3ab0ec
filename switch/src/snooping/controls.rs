//! Snooping controls for labs: the built-in querier changed while the switch
//! runs (`tapmesh-switch querier`), and static router ports
//! (`multicast-router = true` on a node).
//!
//! Why: a multicast lab tests how hosts and routers behave when the querier
//! goes away, comes back, changes version or speeds up, and it wants a
//! monitoring host or a router that gets every group without speaking PIM
//! or querying (a Linux bridge port's `multicast_router 2`). Restarting the
//! switch for each step would end every session.
//!
//! A change from the command holds until the file's `[multicast]` section
//! changes; then a reload applies the file (the same rule as link
//! impairment: the file says how things start, the command what they are
//! now). The querier turned on starts as at boot: a query at once and a
//! second a quarter interval later; a shorter query interval takes effect
//! at once (the next query is moved up), a longer one after the next query.
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{SnoopConfig, Snooping};
use crate::NodeId;
use crate::vlan::Vid;

/// A change to the built-in querier, from the admin socket's `querier`
/// request: every field not given stays as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuerierChange {
    /// On or off.
    pub enabled: Option<bool>,
    /// IGMP version of its queries (2 or 3).
    pub igmp_version: Option<u8>,
    /// MLD version of its queries (1 or 2).
    pub mld_version: Option<u8>,
    /// Time between general queries.
    pub interval: Option<Duration>,
    /// Max response time of general queries.
    pub response: Option<Duration>,
    /// Time between group-specific queries after a leave.
    pub last_member_interval: Option<Duration>,
    /// Group-specific queries after a leave.
    pub last_member_count: Option<u32>,
}

/// An admin request `querier [network=NAME] [on|off] [KEY=VALUE]...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuerierRequest<'a> {
    /// Only this network (else every network).
    pub network: Option<&'a str>,
    /// What to change (nothing: just report).
    pub change: QuerierChange,
}

/// The keys `tapmesh-switch querier` takes, for its help and errors.
pub const QUERIER_KEYS: &str = "version=2|3 igmp-version=2|3 mld-version=1|2 interval=125s \
     response=10s last-member-interval=1s last-member-count=2";

impl<'a> QuerierRequest<'a> {
    /// Parse a request line (without the newline).
    pub fn parse(line: &'a str) -> Result<QuerierRequest<'a>, String> {
        let mut w = line.split_whitespace();
        if w.next() != Some("querier") {
            return Err("unknown request".into());
        }
        let mut network = None;
        let mut c = QuerierChange::default();
        for word in w {
            match word {
                "on" => c.enabled = Some(true),
                "off" => c.enabled = Some(false),
                _ => {
                    let (k, v) = word
                        .split_once('=')
                        .ok_or_else(|| format!("{word:?}: want on, off or KEY=VALUE"))?;
                    let bad = |what: &str| format!("{k}: {v:?} {what}");
                    match k {
                        "network" => network = Some(v),
                        "version" => {
                            let (igmp, mld) = match v {
                                "2" => (2, 1),
                                "3" => (3, 2),
                                _ => {
                                    return Err(bad(
                                        "is not 2 (IGMPv2, MLDv1) or 3 (IGMPv3, MLDv2)",
                                    ));
                                }
                            };
                            c.igmp_version = Some(igmp);
                            c.mld_version = Some(mld);
                        }
                        "igmp-version" => {
                            c.igmp_version =
                                Some(version(v, &[2, 3]).ok_or_else(|| bad("is not 2 or 3"))?);
                        }
                        "mld-version" => {
                            c.mld_version =
                                Some(version(v, &[1, 2]).ok_or_else(|| bad("is not 1 or 2"))?);
                        }
                        "interval" => c.interval = Some(positive(k, v)?),
                        "response" => c.response = Some(positive(k, v)?),
                        "last-member-interval" => c.last_member_interval = Some(positive(k, v)?),
                        "last-member-count" => {
                            c.last_member_count = Some(
                                v.parse()
                                    .ok()
                                    .filter(|n| *n > 0)
                                    .ok_or_else(|| bad("is not a whole number above 0"))?,
                            );
                        }
                        _ => return Err(format!("unknown key {k:?} (want {QUERIER_KEYS})")),
                    }
                }
            }
        }
        Ok(QuerierRequest { network, change: c })
    }
}

fn version(v: &str, allowed: &[u8]) -> Option<u8> {
    v.parse().ok().filter(|n| allowed.contains(n))
}

fn positive(k: &str, v: &str) -> Result<Duration, String> {
    let d = crate::impair::spec::duration(v).map_err(|e| format!("{k}: {e}"))?;
    if d.is_zero() {
        return Err(format!("{k}: must be greater than 0"));
    }
    Ok(d)
}

/// Why a querier's timers do not fit together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimingProblem {
    /// The response time is not shorter than the query interval.
    ResponseNotBelowInterval,
    /// The query interval is not shorter than the membership interval, so
    /// memberships lapse between queries.
    IntervalNotBelowMembership,
}

impl SnoopConfig {
    /// Whether the querier's timers fit together (checked for the file and
    /// for the `querier` command alike).
    pub fn timing_problem(&self) -> Option<TimingProblem> {
        if self.query_response >= self.query_interval {
            Some(TimingProblem::ResponseNotBelowInterval)
        } else if self.query_interval >= self.membership {
            Some(TimingProblem::IntervalNotBelowMembership)
        } else {
            None
        }
    }

    /// These settings with `c` applied, if the timers still fit together.
    pub fn with_querier_change(&self, c: &QuerierChange) -> Result<SnoopConfig, String> {
        let mut n = self.clone();
        n.querier = c.enabled.unwrap_or(n.querier);
        n.igmp_version = c.igmp_version.unwrap_or(n.igmp_version);
        n.mld_version = c.mld_version.unwrap_or(n.mld_version);
        n.query_interval = c.interval.unwrap_or(n.query_interval);
        n.query_response = c.response.unwrap_or(n.query_response);
        n.last_member_interval = c.last_member_interval.unwrap_or(n.last_member_interval);
        n.last_member_count = c.last_member_count.unwrap_or(n.last_member_count);
        match n.timing_problem() {
            None => Ok(n),
            Some(TimingProblem::ResponseNotBelowInterval) => Err(format!(
                "response ({:?}) must be less than interval ({:?})",
                n.query_response, n.query_interval
            )),
            Some(TimingProblem::IntervalNotBelowMembership) => Err(format!(
                "interval ({:?}) must be less than the membership interval ({:?}, \
                 [multicast] membership-secs), or memberships lapse between queries",
                n.query_interval, n.membership
            )),
        }
    }
}

/// The querier's settings now, for the `querier` reply and `groups`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct QuerierSettings {
    /// The network (filled in by the caller that knows its name).
    pub network: String,
    /// The built-in querier runs (it still yields to a lower address).
    pub enabled: bool,
    /// IGMP version of its queries.
    pub igmp_version: u8,
    /// MLD version of its queries.
    pub mld_version: u8,
    /// Time between general queries.
    pub query_interval_secs: f64,
    /// Max response time of general queries.
    pub query_response_secs: f64,
    /// Time between group-specific queries after a leave.
    pub last_member_interval_secs: f64,
    /// Group-specific queries after a leave.
    pub last_member_count: u32,
}

impl QuerierSettings {
    /// The querier part of `cfg`.
    pub fn of(cfg: &SnoopConfig) -> QuerierSettings {
        QuerierSettings {
            network: String::new(),
            enabled: cfg.enabled && cfg.querier,
            igmp_version: cfg.igmp_version,
            mld_version: cfg.mld_version,
            query_interval_secs: cfg.query_interval.as_secs_f64(),
            query_response_secs: cfg.query_response.as_secs_f64(),
            last_member_interval_secs: cfg.last_member_interval.as_secs_f64(),
            last_member_count: cfg.last_member_count,
        }
    }

    /// One line: `on, IGMPv3/MLDv2, interval 125s, response 10s, last member 1s x 2`.
    pub fn describe(&self) -> String {
        format!(
            "{}, IGMPv{}/MLDv{}, interval {}s, response {}s, last member {}s x {}",
            if self.enabled { "on" } else { "off" },
            self.igmp_version,
            self.mld_version,
            self.query_interval_secs,
            self.query_response_secs,
            self.last_member_interval_secs,
            self.last_member_count
        )
    }
}

/// The admin reply to a `querier` request: `{"networks":[SETTINGS...]}` or
/// `{"error":"..."}`.
pub fn reply(r: Result<Vec<QuerierSettings>, String>) -> String {
    match r {
        Ok(networks) => serde_json::json!({ "networks": networks }).to_string(),
        Err(e) => serde_json::json!({ "error": e }).to_string(),
    }
}

impl Snooping {
    /// The settings in force (the file's, or as the `querier` command changed them).
    pub fn config(&self) -> &SnoopConfig {
        &self.cfg
    }

    /// Change the built-in querier now; refused (nothing changed) if the
    /// timers would not fit together.
    pub fn set_querier(&mut self, now: Instant, c: &QuerierChange) -> Result<(), String> {
        let new = self.cfg.with_querier_change(c)?;
        let old = std::mem::replace(&mut self.cfg, new);
        self.retime_queriers(now, &old);
        Ok(())
    }

    /// After the settings changed from `old`: a querier turned on starts as
    /// at boot; a shorter interval moves the next query up.
    pub(super) fn retime_queriers(&mut self, now: Instant, old: &SnoopConfig) {
        let started = self.cfg.querier && !old.querier;
        let interval = self.cfg.query_interval;
        for q in &mut self.queriers {
            if started {
                q.next_query = now;
                q.startup_left = 1;
            } else if interval < old.query_interval {
                q.next_query = q.next_query.min(now + interval);
            }
        }
        if !self.cfg.querier {
            // No group-specific queries from a querier that is off.
            for g in self.groups.values_mut() {
                g.queries_left = 0;
            }
        }
    }

    /// The static router ports: every multicast frame of VLAN `vid` goes to
    /// `node` (registered or not), as do reports and leaves.
    pub fn set_static_routers(&mut self, ports: Vec<(Vid, NodeId)>) {
        self.static_routers = ports;
    }
}
