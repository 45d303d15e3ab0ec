//! The admin socket's `impair` and `link` requests, and what a node's link
//! does now (for status and command replies).
use serde::{Deserialize, Serialize};

use super::{ImpairCounters, ImpairSpec, LinkImpair};

/// A change requested over the admin socket (`tapmesh-switch impair` and
/// `link`), one line:
/// `impair NODE egress|ingress|both KEY=VALUE...` (replaces what that
/// direction does), `impair NODE clear` (both directions, link up), or
/// `link NODE up|down`.
#[derive(Debug, Clone, PartialEq)]
pub struct Request<'a> {
    /// The node's name.
    pub node: &'a str,
    /// What to change.
    pub change: Change,
}

/// See [`Request`].
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // one per admin request
pub enum Change {
    /// Set the directions given (`None` leaves that direction as it is).
    Set {
        /// Frames to the node.
        egress: Option<ImpairSpec>,
        /// Frames from the node.
        ingress: Option<ImpairSpec>,
    },
    /// Nothing done to any frame, link up.
    Clear,
    /// Link down (true) or up.
    Down(bool),
}

impl<'a> Request<'a> {
    /// Parse a request line (without the newline).
    pub fn parse(line: &'a str) -> Result<Request<'a>, String> {
        let mut w = line.split_whitespace();
        let (verb, node) = (w.next(), w.next());
        let node = node.ok_or("want a node name")?;
        let change = match (verb, w.next()) {
            (Some("link"), Some("down")) => Change::Down(true),
            (Some("link"), Some("up")) => Change::Down(false),
            (Some("link"), _) => return Err("want link NODE up|down".into()),
            (Some("impair"), Some("clear")) => Change::Clear,
            (Some("impair"), Some(dir @ ("egress" | "ingress" | "both"))) => {
                let spec = ImpairSpec::parse(w.by_ref())?;
                Change::Set {
                    egress: (dir != "ingress").then(|| spec.clone()),
                    ingress: (dir != "egress").then_some(spec),
                }
            }
            (Some("impair"), _) => {
                return Err("want impair NODE egress|ingress|both KEY=VALUE... or clear".into());
            }
            _ => return Err("unknown request".into()),
        };
        if w.next().is_some() {
            return Err("too many words".into());
        }
        Ok(Request { node, change })
    }

    /// The setting after this change to `current`.
    pub fn apply(&self, current: LinkImpair) -> LinkImpair {
        match &self.change {
            Change::Clear => LinkImpair::default(),
            Change::Down(down) => LinkImpair {
                down: *down,
                ..current
            },
            Change::Set { egress, ingress } => LinkImpair {
                down: current.down,
                egress: egress.clone().unwrap_or(current.egress),
                ingress: ingress.clone().unwrap_or(current.ingress),
            },
        }
    }
}

/// What a node's link does now, for status and command replies.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ImpairStatus {
    /// `up` or `down`.
    pub link: String,
    /// Frames to the node: the command form (`none` if nothing).
    pub egress: String,
    /// Frames from the node.
    pub ingress: String,
    /// Frames held now, to the node.
    pub egress_held: usize,
    /// Frames held now, from the node.
    pub ingress_held: usize,
    /// What it did to frames to the node.
    pub egress_counters: ImpairCounters,
    /// What it did to frames from the node.
    pub ingress_counters: ImpairCounters,
}

impl ImpairStatus {
    /// The status of a link set to `l`, holding `held` frames, with counters `c`.
    pub fn new(l: &LinkImpair, held: [usize; 2], c: &[ImpairCounters; 2]) -> ImpairStatus {
        ImpairStatus {
            link: if l.down { "down" } else { "up" }.into(),
            egress: l.egress.to_string(),
            ingress: l.ingress.to_string(),
            egress_held: held[0],
            ingress_held: held[1],
            egress_counters: c[0].clone(),
            ingress_counters: c[1].clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn requests_parse_and_apply() {
        let r = Request::parse("impair h1 egress loss=5% delay=20ms").unwrap();
        assert_eq!(r.node, "h1");
        let l = r.apply(LinkImpair::default());
        assert_eq!(l.egress.loss, 0.05);
        assert!(l.ingress.is_none() && !l.down);
        let l = Request::parse("link h1 down").unwrap().apply(l);
        assert!(l.down && l.egress.loss == 0.05);
        let l = Request::parse("impair h1 both jitter=1ms")
            .unwrap()
            .apply(l);
        assert_eq!(l.egress.loss, 0.0, "a direction's setting is replaced");
        assert_eq!(l.ingress.jitter, Duration::from_millis(1));
        assert!(l.down, "the link state is kept");
        let l = Request::parse("impair h1 clear").unwrap().apply(l);
        assert!(l.is_none());
        for bad in [
            "impair",
            "impair h1",
            "impair h1 sideways",
            "impair h1 egress loss=200%",
            "link h1 wobbly",
            "link h1 up now",
        ] {
            assert!(Request::parse(bad).is_err(), "{bad}");
        }
    }
}
