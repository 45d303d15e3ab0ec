//! `[node.impair]`: a node's link impairment for labs and chaos tests, in
//! the units a config file uses (percent, milliseconds).
use std::time::Duration;

use serde::Deserialize;

use super::KeyProblem;
use crate::impair::{ImpairSpec, LinkImpair};

/// `[node.impair]`: the node's link for labs and chaos tests (see
/// [`crate::impair`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct ImpairSection {
    #[serde(default)]
    link: LinkState,
    seed: Option<u64>,
    egress: Option<ImpairDirection>,
    ingress: Option<ImpairDirection>,
}

#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum LinkState {
    #[default]
    Up,
    Down,
}

/// `[node.impair.egress]` / `[node.impair.ingress]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
struct ImpairDirection {
    loss_percent: f64,
    burst_enter_percent: Option<f64>,
    burst_exit_percent: Option<f64>,
    burst_loss_percent: Option<f64>,
    delay_ms: f64,
    jitter_ms: f64,
    reorder_percent: f64,
    duplicate_percent: f64,
    corrupt_percent: f64,
    rate_bits_per_sec: Option<u64>,
    queue_frames: usize,
}

impl Default for ImpairDirection {
    fn default() -> Self {
        ImpairDirection {
            loss_percent: 0.0,
            burst_enter_percent: None,
            burst_exit_percent: None,
            burst_loss_percent: None,
            delay_ms: 0.0,
            jitter_ms: 0.0,
            reorder_percent: 0.0,
            duplicate_percent: 0.0,
            corrupt_percent: 0.0,
            rate_bits_per_sec: None,
            queue_frames: crate::impair::DEFAULT_QUEUE_FRAMES,
        }
    }
}

pub(super) fn link_impair(sec: &ImpairSection) -> Result<LinkImpair, (String, String)> {
    let dir = |d: &Option<ImpairDirection>, name: &str| {
        d.as_ref().map_or(Ok(ImpairSpec::default()), |d| {
            impair_spec(d, sec.seed).map_err(|(k, p)| (format!("{name}.{k}"), p))
        })
    };
    Ok(LinkImpair {
        down: sec.link == LinkState::Down,
        egress: dir(&sec.egress, "egress")?,
        ingress: dir(&sec.ingress, "ingress")?,
    })
}

fn impair_spec(d: &ImpairDirection, seed: Option<u64>) -> Result<ImpairSpec, KeyProblem> {
    let fraction = |key: &'static str, v: f64| {
        if (0.0..=100.0).contains(&v) {
            Ok(v / 100.0)
        } else {
            Err((key, format!("{v} is out of range 0..=100")))
        }
    };
    let ms = |key: &'static str, v: f64| {
        Duration::try_from_secs_f64(v / 1000.0)
            .map_err(|_| (key, format!("{v} is not a duration in milliseconds")))
    };
    let opt = |key: &'static str, v: Option<f64>| v.map(|v| fraction(key, v)).transpose();
    let burst = crate::impair::burst(
        opt("burst-enter-percent", d.burst_enter_percent)?,
        opt("burst-exit-percent", d.burst_exit_percent)?,
        opt("burst-loss-percent", d.burst_loss_percent)?,
    )
    .map_err(|(k, p)| (config_key(k), p))?;
    let s = ImpairSpec {
        loss: fraction("loss-percent", d.loss_percent)?,
        burst,
        delay: ms("delay-ms", d.delay_ms)?,
        jitter: ms("jitter-ms", d.jitter_ms)?,
        reorder: fraction("reorder-percent", d.reorder_percent)?,
        duplicate: fraction("duplicate-percent", d.duplicate_percent)?,
        corrupt: fraction("corrupt-percent", d.corrupt_percent)?,
        rate: d.rate_bits_per_sec,
        queue: d.queue_frames,
        seed,
    };
    s.validate().map_err(|(k, p)| (config_key(k), p))?;
    Ok(s)
}

/// The config key of an impairment's command key.
fn config_key(k: &str) -> &'static str {
    match k {
        "burst-enter" => "burst-enter-percent",
        "burst-exit" => "burst-exit-percent",
        "burst-loss" => "burst-loss-percent",
        "delay" => "delay-ms",
        "jitter" => "jitter-ms",
        "rate" => "rate-bits-per-sec",
        "queue" => "queue-frames",
        "reorder" => "reorder-percent",
        "duplicate" => "duplicate-percent",
        "corrupt" => "corrupt-percent",
        _ => "loss-percent",
    }
}
