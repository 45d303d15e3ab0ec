//! What one direction of an impaired link does, and its command form
//! (`loss=5% delay=20ms jitter=5ms`), shared by `switch.toml`'s
//! `[node.impair]`, the admin socket and status.
use std::fmt;
use std::time::Duration;

use serde::Serialize;

/// Frames held (delayed or queued by the rate limit) per direction when no
/// `queue` is set, as `netem`'s default `limit 1000`.
pub const DEFAULT_QUEUE_FRAMES: usize = 1000;
/// The largest `queue` accepted.
pub const MAX_QUEUE_FRAMES: usize = 100_000;
/// The largest delay or jitter accepted.
pub const MAX_DELAY: Duration = Duration::from_secs(10);

/// Gilbert-Elliott burst loss: a two-state chain stepped once per frame.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GilbertElliott {
    /// Probability of moving from the good to the bad state.
    pub enter: f64,
    /// Probability of moving from the bad back to the good state.
    pub exit: f64,
    /// Loss probability in the bad state (the good state uses `loss`).
    pub loss_bad: f64,
}

/// What one direction of a link does. Probabilities are fractions (0..=1).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImpairSpec {
    /// Random loss (in the good state when `burst` is set).
    pub loss: f64,
    /// Burst loss, if set.
    pub burst: Option<GilbertElliott>,
    /// Added one-way delay.
    pub delay: Duration,
    /// Each frame's delay is uniform in `delay ± jitter` (never below 0).
    pub jitter: Duration,
    /// Fraction of frames sent without the delay (overtaking held ones).
    pub reorder: f64,
    /// Fraction of frames sent twice (the copy with its own delay).
    pub duplicate: f64,
    /// Fraction of frames with one bit flipped in the Ethernet payload.
    pub corrupt: f64,
    /// Rate limit in bits per second (frame bytes × 8), if any.
    pub rate: Option<u64>,
    /// Frames held at most (delayed or waiting for the rate); more are
    /// dropped (tail drop).
    pub queue: usize,
    /// Seed of this direction's generator (mixed with the node's name).
    pub seed: Option<u64>,
}

impl Default for ImpairSpec {
    fn default() -> Self {
        ImpairSpec {
            loss: 0.0,
            burst: None,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            reorder: 0.0,
            duplicate: 0.0,
            corrupt: 0.0,
            rate: None,
            queue: DEFAULT_QUEUE_FRAMES,
            seed: None,
        }
    }
}

impl ImpairSpec {
    /// Does nothing to any frame.
    pub fn is_none(&self) -> bool {
        self.loss == 0.0
            && self.burst.is_none()
            && self.delay.is_zero()
            && self.jitter.is_zero()
            && self.duplicate == 0.0
            && self.corrupt == 0.0
            && self.rate.is_none()
    }

    /// Parse the command form, e.g. `loss=5% delay=20ms jitter=5ms`: one
    /// `key=value` per word. Keys: `loss`, `burst-enter`, `burst-exit`,
    /// `burst-loss` (percentages), `delay`, `jitter` (`us`, `ms`, `s`),
    /// `reorder`, `duplicate`, `corrupt` (percentages), `rate` (bits/s with
    /// `k`, `m`, `g` and an optional `bit` suffix), `queue` (frames), `seed`.
    /// Errors name the word and the problem in one line.
    pub fn parse<'a>(words: impl IntoIterator<Item = &'a str>) -> Result<ImpairSpec, String> {
        let mut s = ImpairSpec::default();
        let (mut enter, mut exit, mut loss_bad) = (None, None, None);
        for w in words {
            let (k, v) = w
                .split_once('=')
                .ok_or_else(|| format!("{w:?}: want key=value"))?;
            let bad = |p: String| format!("{k}: {p}");
            match k {
                "loss" => s.loss = percent(v).map_err(bad)?,
                "burst-enter" => enter = Some(percent(v).map_err(bad)?),
                "burst-exit" => exit = Some(percent(v).map_err(bad)?),
                "burst-loss" => loss_bad = Some(percent(v).map_err(bad)?),
                "delay" => s.delay = duration(v).map_err(bad)?,
                "jitter" => s.jitter = duration(v).map_err(bad)?,
                "reorder" => s.reorder = percent(v).map_err(bad)?,
                "duplicate" => s.duplicate = percent(v).map_err(bad)?,
                "corrupt" => s.corrupt = percent(v).map_err(bad)?,
                "rate" => s.rate = Some(rate(v).map_err(bad)?),
                "queue" => {
                    s.queue = v
                        .parse()
                        .map_err(|_| bad(format!("{v:?} is not a count")))?
                }
                "seed" => {
                    s.seed = Some(
                        v.parse()
                            .map_err(|_| bad(format!("{v:?} is not a number")))?,
                    )
                }
                _ => return Err(format!("{k}: unknown impairment")),
            }
        }
        s.burst = burst(enter, exit, loss_bad).map_err(|(k, p)| format!("{k}: {p}"))?;
        s.validate().map_err(|(k, p)| format!("{k}: {p}"))?;
        Ok(s)
    }

    /// Check ranges; the error is `(key, problem)` with the command's key.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        for (k, v) in [
            ("loss", self.loss),
            ("reorder", self.reorder),
            ("duplicate", self.duplicate),
            ("corrupt", self.corrupt),
        ] {
            check_fraction(v).map_err(|p| (k, p))?;
        }
        if let Some(b) = &self.burst {
            for (k, v) in [
                ("burst-enter", b.enter),
                ("burst-exit", b.exit),
                ("burst-loss", b.loss_bad),
            ] {
                check_fraction(v).map_err(|p| (k, p))?;
            }
        }
        for (k, v) in [("delay", self.delay), ("jitter", self.jitter)] {
            if v > MAX_DELAY {
                return Err((k, format!("{v:?} is more than {MAX_DELAY:?}")));
            }
        }
        if self.rate == Some(0) {
            return Err(("rate", "must be greater than 0".into()));
        }
        if !(1..=MAX_QUEUE_FRAMES).contains(&self.queue) {
            return Err((
                "queue",
                format!("{} is out of range 1..={MAX_QUEUE_FRAMES}", self.queue),
            ));
        }
        Ok(())
    }
}

/// Build the burst model from its three keys: `enter` and `exit` both or
/// neither; `loss_bad` defaults to 100 %.
pub fn burst(
    enter: Option<f64>,
    exit: Option<f64>,
    loss_bad: Option<f64>,
) -> Result<Option<GilbertElliott>, (&'static str, String)> {
    match (enter, exit) {
        (None, None) if loss_bad.is_none() => Ok(None),
        (Some(enter), Some(exit)) => Ok(Some(GilbertElliott {
            enter,
            exit,
            loss_bad: loss_bad.unwrap_or(1.0),
        })),
        (None, _) => Err(("burst-enter", "burst loss needs burst-enter".into())),
        (Some(_), None) => Err(("burst-exit", "burst loss needs burst-exit".into())),
    }
}

fn check_fraction(v: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(format!("{}% is out of range 0..=100%", v * 100.0))
    }
}

/// `5%` or `5` (percent) as a fraction.
fn percent(v: &str) -> Result<f64, String> {
    let n: f64 = v
        .strip_suffix('%')
        .unwrap_or(v)
        .parse()
        .map_err(|_| format!("{v:?} is not a percentage"))?;
    if !(0.0..=100.0).contains(&n) {
        return Err(format!("{v:?} is out of range 0..=100%"));
    }
    Ok(n / 100.0)
}

/// `20ms`, `500us`, `1.5s` (a bare number is milliseconds).
pub(crate) fn duration(v: &str) -> Result<Duration, String> {
    let (n, unit) = if let Some(n) = v.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1.0)
    } else {
        (v, 1e-3)
    };
    let n: f64 = n.parse().map_err(|_| format!("{v:?} is not a duration"))?;
    Duration::try_from_secs_f64(n * unit).map_err(|_| format!("{v:?} is not a duration"))
}

/// `10mbit`, `512k`, `1g`, `64000` (bits per second).
fn rate(v: &str) -> Result<u64, String> {
    let s = v.strip_suffix("bit").unwrap_or(v).to_ascii_lowercase();
    let (n, mult) = match s.as_bytes().last() {
        Some(b'k') => (&s[..s.len() - 1], 1e3),
        Some(b'm') => (&s[..s.len() - 1], 1e6),
        Some(b'g') => (&s[..s.len() - 1], 1e9),
        _ => (&s[..], 1.0),
    };
    let n: f64 = n.parse().map_err(|_| format!("{v:?} is not a rate"))?;
    if !(n * mult >= 1.0 && n * mult < 1e15) {
        return Err(format!("{v:?} is out of range"));
    }
    Ok((n * mult) as u64)
}

impl fmt::Display for ImpairSpec {
    /// The command form, only what is set (`none` if nothing).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_none() {
            return f.write_str("none");
        }
        let mut sep = "";
        let mut put = |f: &mut fmt::Formatter<'_>, s: fmt::Arguments<'_>| {
            let r = write!(f, "{sep}{s}");
            sep = " ";
            r
        };
        // Rounded: 0.1 % is shown as 0.1, not 0.10000000000000002.
        let pct = |v: f64| (v * 1e8).round() / 1e6;
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        if self.loss > 0.0 {
            put(f, format_args!("loss={}%", pct(self.loss)))?;
        }
        if let Some(b) = &self.burst {
            put(
                f,
                format_args!(
                    "burst-enter={}% burst-exit={}% burst-loss={}%",
                    pct(b.enter),
                    pct(b.exit),
                    pct(b.loss_bad)
                ),
            )?;
        }
        if !self.delay.is_zero() {
            put(f, format_args!("delay={}ms", ms(self.delay)))?;
        }
        if !self.jitter.is_zero() {
            put(f, format_args!("jitter={}ms", ms(self.jitter)))?;
        }
        for (k, v) in [
            ("reorder", self.reorder),
            ("duplicate", self.duplicate),
            ("corrupt", self.corrupt),
        ] {
            if v > 0.0 {
                put(f, format_args!("{k}={}%", pct(v)))?;
            }
        }
        if let Some(r) = self.rate {
            put(f, format_args!("rate={r}bit"))?;
        }
        if self.queue != DEFAULT_QUEUE_FRAMES {
            put(f, format_args!("queue={}", self.queue))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(words: &str) -> ImpairSpec {
        ImpairSpec::parse(words.split_whitespace()).unwrap()
    }

    #[test]
    fn parse_and_display_round_trip_and_errors_name_the_key() {
        let s = spec(
            "loss=5% delay=20ms jitter=500us reorder=10% duplicate=1% corrupt=0.5% rate=10mbit queue=50",
        );
        assert_eq!(s.rate, Some(10_000_000));
        assert_eq!(s.delay, Duration::from_millis(20));
        assert!(s.to_string().contains("jitter=0.5ms"), "{s}");
        let again = ImpairSpec::parse(s.to_string().split_whitespace()).unwrap();
        assert_eq!(again, s);
        assert_eq!(ImpairSpec::default().to_string(), "none");
        for (bad, key) in [
            ("loss=150%", "loss:"),
            ("delay=fast", "delay:"),
            ("rate=0", "rate:"),
            ("queue=0", "queue:"),
            ("burst-exit=5%", "burst-enter:"),
            ("colour=red", "colour:"),
            ("loss", "\"loss\""),
        ] {
            let e = ImpairSpec::parse([bad]).unwrap_err();
            assert!(e.starts_with(key), "{bad}: {e}");
        }
    }
}
