//! Storm control: per-node limits on the frames a switch must copy to many
//! nodes (broadcast, multicast, unknown unicast), in frames per second.
//!
//! Why per node: the central switch concentrates every flood of the LAN; one
//! node in a loop or a broken application must not eat the fan-out everyone
//! else needs. Each node has its own bucket per class, so a storm from one
//! node is cut at that node's limit and the others' budgets are untouched.
//!
//! Each bucket is a GCRA ("virtual scheduling", ITU-T I.371): it keeps the
//! theoretical arrival time `tat` of the next conforming frame; a frame
//! conforms if `tat - now <= (burst - 1) * interval`, and then moves `tat` one
//! interval on. One `Instant` per bucket, no refill arithmetic, no floats.
//!
//! Off by default (no limits configured). Link-local control traffic
//! (224.0.0.0/24, ff02::/16: routing hellos, ND, IGMP/MLD) is exempt by
//! default, so a multicast storm does not take neighbour discovery down with it.
use std::time::{Duration, Instant};

use crate::NodeId;

/// The kinds of frames storm control limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StormClass {
    /// To ff:ff:ff:ff:ff:ff.
    Broadcast,
    /// To any other group MAC.
    Multicast,
    /// To a unicast MAC nobody has learned (flooded).
    UnknownUnicast,
}

/// One limit: frames per second and how many may come back to back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Frames per second, sustained (at least 1).
    pub per_sec: u32,
    /// Frames allowed in a burst above the rate (at least 1).
    pub burst: u32,
}

/// Storm control settings (`[storm-control]` in `switch.toml`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StormConfig {
    /// Broadcast limit per node, if any.
    pub broadcast: Option<Rate>,
    /// Multicast limit per node, if any.
    pub multicast: Option<Rate>,
    /// Unknown-unicast limit per node, if any.
    pub unknown_unicast: Option<Rate>,
    /// Link-local control multicast is never limited.
    pub exempt_link_local: bool,
}

/// One GCRA bucket (also used by snooping for leaves per node).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Bucket {
    tat: Option<Instant>,
}

impl Bucket {
    /// Does one more event at `now` conform to `rate`? If so, it is counted.
    pub(crate) fn allow(&mut self, now: Instant, rate: Rate) -> bool {
        let interval = Duration::from_secs(1) / rate.per_sec.max(1);
        let tolerance = interval * rate.burst.max(1).saturating_sub(1);
        let tat = self.tat.map_or(now, |t| t.max(now));
        if tat.saturating_duration_since(now) > tolerance {
            return false;
        }
        self.tat = Some(tat + interval);
        true
    }
}

/// The buckets of every node.
#[derive(Debug)]
#[cfg_attr(fuzzing, derive(Clone))]
pub struct StormControl {
    cfg: StormConfig,
    buckets: Vec<[Bucket; 3]>,
}

impl StormControl {
    /// Buckets for `nodes` nodes.
    pub fn new(cfg: StormConfig, nodes: usize) -> StormControl {
        StormControl {
            cfg,
            buckets: vec![[Bucket::default(); 3]; nodes],
        }
    }

    /// New limits (a reload), and buckets for `nodes` nodes (never fewer
    /// than now). Buckets keep their state: a node that was over a limit
    /// stays over it until the new rate lets it through.
    pub fn reconfigure(&mut self, cfg: StormConfig, nodes: usize) {
        self.cfg = cfg;
        if nodes > self.buckets.len() {
            self.buckets.resize(nodes, [Bucket::default(); 3]);
        }
    }

    /// Is any limit configured?
    pub fn is_enabled(&self) -> bool {
        self.cfg.broadcast.is_some()
            || self.cfg.multicast.is_some()
            || self.cfg.unknown_unicast.is_some()
    }

    /// May `node` flood one more frame of `class` now? `link_local` says the
    /// frame is link-local control multicast.
    pub fn allow(
        &mut self,
        now: Instant,
        node: NodeId,
        class: StormClass,
        link_local: bool,
    ) -> bool {
        // HOT PATH
        if link_local && self.cfg.exempt_link_local {
            return true;
        }
        let (rate, i) = match class {
            StormClass::Broadcast => (self.cfg.broadcast, 0),
            StormClass::Multicast => (self.cfg.multicast, 1),
            StormClass::UnknownUnicast => (self.cfg.unknown_unicast, 2),
        };
        let Some(rate) = rate else {
            return true;
        };
        match self.buckets.get_mut(node.0 as usize) {
            Some(b) => b[i].allow(now, rate),
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: NodeId = NodeId(0);
    const B: NodeId = NodeId(1);

    fn sc() -> StormControl {
        StormControl::new(
            StormConfig {
                broadcast: Some(Rate {
                    per_sec: 100,
                    burst: 10,
                }),
                multicast: None,
                unknown_unicast: None,
                exempt_link_local: true,
            },
            2,
        )
    }

    #[test]
    fn burst_then_rate() {
        let t0 = Instant::now();
        let mut s = sc();
        let ok = (0..50)
            .filter(|_| s.allow(t0, A, StormClass::Broadcast, false))
            .count();
        assert_eq!(ok, 10, "the burst, back to back");
        // One second later: 100 more at most (one every 10 ms), not a new burst on top.
        let mut ok = 0;
        for ms in 0..1000u64 {
            let now = t0 + Duration::from_millis(100 + ms);
            ok += (0..5)
                .filter(|_| s.allow(now, A, StormClass::Broadcast, false))
                .count();
        }
        assert!((100..=111).contains(&ok), "{ok}");
    }

    #[test]
    fn nodes_and_classes_are_independent_and_link_local_is_exempt() {
        let t0 = Instant::now();
        let mut s = sc();
        for _ in 0..100 {
            s.allow(t0, A, StormClass::Broadcast, false);
        }
        assert!(!s.allow(t0, A, StormClass::Broadcast, false));
        assert!(
            s.allow(t0, B, StormClass::Broadcast, false),
            "B has its own bucket"
        );
        assert!(
            s.allow(t0, A, StormClass::Multicast, false),
            "no multicast limit"
        );
        assert!(
            s.allow(t0, A, StormClass::Broadcast, true),
            "link-local exempt"
        );
        assert!(s.is_enabled());
        assert!(!StormControl::new(StormConfig::default(), 1).is_enabled());
    }
}
