//! Nodes with several switches: which switch the node is homed on, when it
//! gives up on it and turns to the next, and how it tells the new one where
//! its MACs are.
//!
//! A node lists its switches in order of preference (`[[switch]]` in
//! `node.toml`) and is homed on one at a time: its uplink is one
//! [`Tunnel`](overlay_proto::tunnel::Tunnel) to that switch. With a single
//! switch nothing here changes the node's behaviour.
//!
//! # The failover budget
//! The "first lost keepalive" is the first packet the node sent to its home
//! switch after the switch's last answer (a keepalive, a probe or a data
//! frame: the tunnel's "awaiting" instant). With several switches the
//! uplink probes after [`PROBE_AFTER`] of silence since then and declares
//! the switch lost when the probe stays unanswered for [`PROBE_TIMEOUT`]
//! (or four round trips, if longer): 0.9 s. The node then starts a
//! handshake with the next switch at once (retried after 250 ms and 500 ms
//! if unanswered) and gives up on that one too after [`HANDSHAKE_TIMEOUT`]
//! without a session. So the node is homed on the next switch 0.9 s plus
//! one round trip after the first lost keepalive, within 1.5 s even if one
//! initiation is lost; a third switch is reached within 2 s if the
//! second is down too. The path is back before TCP's third
//! retransmission (about 1.4 s after the loss, Linux's timeouts doubling
//! from 200 ms), so a stream stalls about 1.4 s, not 3 s.
//!
//! # Failback
//! None: the node stays on the switch it failed over to while that switch
//! answers (no flapping between switches when the preferred one comes and
//! goes). It tries its switches in order again only when it loses the
//! current one, wrapping around the list; each full round without a
//! session doubles the time it waits on each switch, up to
//! [`HANDSHAKE_RETRY_MAX`].
//!
//! # Announcing
//! A new home switch knows none of the node's MACs. Once the session with
//! it is up after a failover, the node sends one broadcast RARP frame per
//! MAC that recently sent through the uplink ([`announce`]), as a
//! hypervisor does after a live migration (QEMU's `announce-self`): the
//! switch learns each MAC at once, floods the frame, and every other host
//! ignores it.
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use overlay_proto::keys::PublicKey;
use overlay_proto::timers::HANDSHAKE_RETRY_MAX;
use serde::Serialize;

pub mod announce;
pub mod config;

/// With several switches: probe after this long without an answer.
pub const PROBE_AFTER: Duration = Duration::from_millis(500);
/// With several switches: a probe unanswered this long loses the switch.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(400);
/// A switch the node turned to that gives no session within this long is
/// given up for the next (in the first round through the list).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(1);

/// One switch the node may be homed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchTarget {
    /// Its name (for status and logs; the address if none was given).
    pub name: String,
    /// Its static public key.
    pub key: PublicKey,
    /// Its underlay address.
    pub addr: SocketAddr,
}

/// Why the node left a switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailoverCause {
    /// The home switch stopped answering (probe unanswered).
    Lost,
    /// The switch turned to gave no session in time.
    NoAnswer,
}

impl FailoverCause {
    /// Every cause.
    pub const ALL: [FailoverCause; 2] = [FailoverCause::Lost, FailoverCause::NoAnswer];

    /// The stable name (status, metric label).
    pub fn name(self) -> &'static str {
        match self {
            FailoverCause::Lost => "lost",
            FailoverCause::NoAnswer => "no_answer",
        }
    }
}

/// The last failover.
#[derive(Debug, Clone, Copy)]
struct Failover {
    at: Instant,
    cause: FailoverCause,
    from: usize,
}

/// The node's switches and which one it is homed on.
#[derive(Debug)]
#[cfg_attr(fuzzing, derive(Clone))]
pub struct Homes {
    switches: Vec<SwitchTarget>,
    home: usize,
    /// Since when the node has been trying `home` without a session
    /// (`None` while a session is up).
    trying_since: Option<Instant>,
    /// How long it tries each switch this round.
    dwell: Duration,
    /// Switches tried this round without a session.
    tried: usize,
    /// Failovers by cause, in the order of [`FailoverCause::ALL`].
    failovers: [u64; 2],
    last: Option<Failover>,
    /// The MACs behind the node are to be announced to the new home.
    announce: bool,
}

impl Homes {
    /// `switches` in order of preference (at least one); the node starts
    /// on the first.
    pub fn new(now: Instant, switches: Vec<SwitchTarget>) -> Homes {
        assert!(!switches.is_empty(), "a node has at least one switch");
        Homes {
            switches,
            home: 0,
            trying_since: Some(now),
            dwell: HANDSHAKE_TIMEOUT,
            tried: 0,
            failovers: [0; 2],
            last: None,
            announce: false,
        }
    }

    /// More than one switch: failover is on.
    pub fn is_several(&self) -> bool {
        self.switches.len() > 1
    }

    /// The switch the node is homed on (or trying to be).
    pub fn home(&self) -> &SwitchTarget {
        &self.switches[self.home]
    }

    /// Its index in the configured list.
    pub fn home_index(&self) -> usize {
        self.home
    }

    /// Every configured switch, in order of preference.
    pub fn switches(&self) -> &[SwitchTarget] {
        &self.switches
    }

    /// Times the node turned from one switch to another.
    pub fn failovers(&self) -> u64 {
        self.failovers.iter().sum()
    }

    /// A session with the home switch is up.
    pub fn established(&mut self) {
        self.trying_since = None;
        self.tried = 0;
        self.dwell = HANDSHAKE_TIMEOUT;
    }

    /// The session with the home switch is gone; the node tries it (or
    /// the next) again from `now`.
    pub fn lost(&mut self, now: Instant) {
        self.trying_since.get_or_insert(now);
    }

    /// When the node gives up on a switch that gives no session
    /// (several switches only).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.is_several() {
            return None;
        }
        self.trying_since.map(|t| t + self.dwell)
    }

    /// The switch the node is trying gave no session in time.
    pub fn is_unanswered(&self, now: Instant) -> bool {
        self.poll_timeout().is_some_and(|t| now >= t)
    }

    /// Turn to the next switch in the list (wrapping around); returns it.
    pub fn next(&mut self, now: Instant, cause: FailoverCause) -> &SwitchTarget {
        let from = self.home;
        self.home = (self.home + 1) % self.switches.len();
        self.tried += 1;
        if self.tried >= self.switches.len() {
            // A whole round without a session: wait longer on each.
            self.tried = 0;
            self.dwell = (self.dwell * 2).min(HANDSHAKE_RETRY_MAX);
        }
        self.trying_since = Some(now);
        self.failovers[cause as usize] += 1;
        self.last = Some(Failover {
            at: now,
            cause,
            from,
        });
        self.announce = true;
        &self.switches[self.home]
    }

    /// Whether the MACs behind the node are due to be announced (once per
    /// failover, when the session with the new home is up).
    pub fn take_announce(&mut self) -> bool {
        std::mem::take(&mut self.announce)
    }

    /// For `status`.
    pub fn status(&self, now: Instant) -> HomeStatus {
        HomeStatus {
            switches: self
                .switches
                .iter()
                .map(|s| SwitchStatus {
                    name: s.name.clone(),
                    endpoint: s.addr.to_string(),
                })
                .collect(),
            home: self.home,
            failovers: self.failovers(),
            failovers_lost: self.failovers[FailoverCause::Lost as usize],
            failovers_no_answer: self.failovers[FailoverCause::NoAnswer as usize],
            last_failover_secs_ago: self
                .last
                .map(|f| now.saturating_duration_since(f.at).as_secs_f64()),
            last_failover_cause: self.last.map(|f| f.cause),
            last_failover_from: self.last.map(|f| self.switches[f.from].name.clone()),
        }
    }
}

/// One configured switch, in `status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct SwitchStatus {
    /// Its name (or address).
    pub name: String,
    /// Its underlay address.
    pub endpoint: String,
}

/// The node's switches in `status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct HomeStatus {
    /// Every configured switch, in order of preference.
    pub switches: Vec<SwitchStatus>,
    /// The index of the one the node is homed on (or trying to be).
    pub home: usize,
    /// Times the node turned from one switch to another.
    pub failovers: u64,
    /// ... because its home switch stopped answering.
    pub failovers_lost: u64,
    /// ... because the switch it turned to gave no session in time.
    pub failovers_no_answer: u64,
    /// Seconds since the last failover.
    pub last_failover_secs_ago: Option<f64>,
    /// Why the node left a switch the last time.
    pub last_failover_cause: Option<FailoverCause>,
    /// The switch it left the last time.
    pub last_failover_from: Option<String>,
}

#[cfg(test)]
mod tests;
