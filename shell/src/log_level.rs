//! Logging to stderr with a filter that can change while the daemon runs:
//! the `log-level` key of both daemons' configs, applied at start and again
//! by `reload` and SIGHUP.
//!
//! Which filter is used, first match wins:
//! 1. `--log-level` on the command line: fixed for the whole run (a reload
//!    that changes `log-level` says it was not applied);
//! 2. the config's `log-level` key;
//! 3. `RUST_LOG`; else `info`.
//!
//! A value is an `EnvFilter` directive string, as `RUST_LOG` takes
//! (`debug`, `warn,tapmesh_node=debug`); the config loaders check it with
//! [`check`], so a bad one is a config error naming the key.
use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

/// The running filter, set once by [`init`].
struct Control {
    handle: reload::Handle<EnvFilter, Registry>,
    /// `--log-level` was given: the config's key is not applied.
    from_flag: bool,
}

static CONTROL: OnceLock<Control> = OnceLock::new();

/// Checks a `log-level` value: the problem, for the config error.
pub fn check(directives: &str) -> Result<(), String> {
    if directives.trim().is_empty() {
        return Err("empty; give a level such as \"info\" or \"debug\"".into());
    }
    EnvFilter::try_new(directives).map(|_| ()).map_err(|e| {
        format!("not a log filter ({e}); e.g. \"info\" or \"warn,tapmesh_node=debug\"")
    })
}

/// The filter when neither `--log-level` nor the config's key sets one.
fn default_filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Log to stderr. `flag` is `--log-level`, `file` the config's `log-level`
/// (already [`check`]ed); see the module doc for which wins.
pub fn init(flag: Option<&str>, file: Option<&str>) {
    let filter = match (flag, file) {
        (Some(l), _) | (None, Some(l)) => EnvFilter::new(l),
        (None, None) => default_filter(),
    };
    let (filter, handle) = reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    tracing_subscriber::registry().with(filter).with(fmt).init();
    let _ = CONTROL.set(Control {
        handle,
        from_flag: flag.is_some(),
    });
}

/// Whether `--log-level` was given: the config's key is then not applied.
fn from_flag() -> bool {
    CONTROL.get().is_some_and(|c| c.from_flag)
}

/// The part of a reload's summary line for the config's `log-level`
/// changed to `new` (`None`: the key was removed, back to `RUST_LOG` or
/// `info`), saying so if [`apply`] will not apply it.
pub fn describe(new: Option<&str>) -> String {
    let what = match new {
        Some(l) => format!("log-level {l}"),
        None => "log-level default".to_owned(),
    };
    if from_flag() {
        format!("{what} (not applied: --log-level was given at start)")
    } else {
        what
    }
}

/// On reload, the config's `log-level` changed to `new` (see [`describe`]):
/// the filter is replaced at once, unless `--log-level` was given.
pub fn apply(new: Option<&str>) {
    let Some(control) = CONTROL.get().filter(|c| !c.from_flag) else {
        return;
    };
    let filter = new.map_or_else(default_filter, EnvFilter::new);
    if let Err(e) = control.handle.reload(filter) {
        tracing::warn!("cannot change the log filter: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_takes_filters_and_names_bad_ones() {
        for good in [
            "info",
            "debug",
            "warn,tapmesh_node=debug",
            "tapmesh_switch=trace",
        ] {
            assert_eq!(check(good), Ok(()), "{good}");
        }
        for bad in ["", " ", "tapmesh_node=loud", "info,[x"] {
            assert!(check(bad).is_err(), "{bad:?} was taken");
        }
    }
}
