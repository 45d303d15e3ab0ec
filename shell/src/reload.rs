//! Live reload, as both daemons do it: the `reload` command (a request on
//! the admin socket) and the reload counters `status` and `/metrics` show.
//! What each daemon can change live is its own business (the switch's and
//! the node's `reload` modules); a reload also comes from SIGHUP.
use std::path::Path;

/// Config reloads (the `reload` command, SIGHUP).
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ReloadCounters {
    /// Reloads applied (including ones that changed nothing).
    pub ok: u64,
    /// Reloads refused: the file did not validate, or changed a setting
    /// that cannot change while running. The running config stayed.
    pub refused: u64,
}

impl ReloadCounters {
    /// Count one reload.
    pub fn count(&mut self, ok: bool) {
        if ok {
            self.ok += 1;
        } else {
            self.refused += 1;
        }
    }
}

/// The admin reply to `reload`: `{"ok":"SUMMARY"}` or `{"error":"LINE"}`.
pub fn reply(r: &Result<String, String>) -> String {
    match r {
        Ok(summary) => serde_json::json!({ "ok": summary }),
        Err(e) => serde_json::json!({ "error": e }),
    }
    .to_string()
}

/// SIGHUP, as a stream of reload requests.
pub fn hangups() -> std::io::Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
}

/// The `reload` command of both daemons: asks the daemon at `path` to
/// re-read its config. Prints what changed and returns 0; or prints the
/// daemon's one-line refusal (`PROGRAM: config error: FILE: KEY: PROBLEM`)
/// and returns 2; or 1 if the daemon cannot be reached.
pub fn command(program: &str, path: &Path) -> std::process::ExitCode {
    use std::process::ExitCode;
    let reply = match crate::admin::request(path, "reload") {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "{program}: cannot reach the daemon at {}: {e}",
                path.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let v: serde_json::Value = serde_json::from_str(&reply).unwrap_or_default();
    match (v["ok"].as_str(), v["error"].as_str()) {
        (Some(summary), _) => {
            println!("reloaded: {summary}");
            ExitCode::SUCCESS
        }
        (None, Some(e)) if e.starts_with("unknown request") => {
            eprintln!("{program}: this daemon does not support reload");
            ExitCode::FAILURE
        }
        (None, Some(e)) => {
            eprintln!("{program}: config error: {e}");
            ExitCode::from(crate::EXIT_CONFIG)
        }
        (None, None) => {
            eprintln!("{program}: unexpected reply to reload");
            ExitCode::FAILURE
        }
    }
}
