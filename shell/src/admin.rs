//! The local admin socket: a unix stream socket, mode 0600 in a 0700
//! directory, so only root (or the daemon's user) can ask. A client writes one
//! request line and reads one JSON document until EOF.
//!
//! Each daemon decides which request lines it answers (`status`, `status
//! macs`, `reload`). One request keeps its connection: `capture SPEC`
//! (see [`crate::capture`]) is answered with a stream of pcapng bytes until
//! the client closes, or with one JSON error.
use std::io::{Read, Write};
use std::time::Duration;

use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};

/// Create the admin socket's listener (mode 0600, in a 0700 directory if it
/// has to create it), replacing a stale socket file.
pub fn bind(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    let l = crate::unix_path::bind_at(path, 0o600, 0o700, |p| {
        std::os::unix::net::UnixListener::bind(p)
    })?;
    l.set_nonblocking(true)?;
    tokio::net::UnixListener::from_std(l)
}

/// Send one request and return the reply (blocking; for the `status` command).
pub fn request(path: &Path, req: &str) -> std::io::Result<String> {
    let mut s = std::os::unix::net::UnixStream::connect(path)?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    s.write_all(req.as_bytes())?;
    s.write_all(b"\n")?;
    s.shutdown(std::net::Shutdown::Write)?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// One request line from an admin client, relayed to the task that owns the
/// state; it answers through `reply`.
#[derive(Debug)]
pub struct AdminRequest {
    /// The request, trimmed.
    pub line: String,
    /// Where the answer goes.
    pub reply: oneshot::Sender<String>,
    /// For a `capture` request: the producer end of the capture (its filter
    /// compiled). The owner keeps it and answers `{"ok":...}`, or answers
    /// `{"error":...}`; this connection then streams the capture.
    pub capture: Option<crate::capture::Capture>,
}

/// The JSON answer to a request the daemon does not know.
pub fn unknown_request(line: &str) -> String {
    let shown: String = line.chars().take(32).collect();
    format!(
        "{{\"error\":\"unknown request {}\"}}",
        shown.escape_default()
    )
}

/// Accept admin clients forever, relaying each request line to `to_owner`.
pub async fn serve(listener: UnixListener, to_owner: mpsc::Sender<AdminRequest>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let to_owner = to_owner.clone();
        tokio::spawn(async move {
            let mut req = [0u8; 1024];
            let mut n = 0;
            // One short line; give up on slow or chatty clients.
            let read = tokio::time::timeout(Duration::from_secs(2), async {
                while n < req.len() {
                    match stream.read(&mut req[n..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(k) => {
                            n += k;
                            if req[..n].contains(&b'\n') {
                                break;
                            }
                        }
                    }
                }
            });
            let _ = read.await;
            let line = String::from_utf8_lossy(&req[..n]).trim().to_owned();
            let (capture, reader) = match crate::capture::start(&line) {
                Some(Ok((c, r))) => (Some(c), Some(r)),
                Some(Err(e)) => {
                    let _ = stream.write_all(error_reply(&e).as_bytes()).await;
                    let _ = stream.shutdown().await;
                    return;
                }
                None => (None, None),
            };
            let (tx, rx) = oneshot::channel();
            let request = AdminRequest {
                line,
                reply: tx,
                capture,
            };
            if to_owner.send(request).await.is_err() {
                return;
            }
            let reply = rx.await.unwrap_or_default();
            if let Some(reader) = reader
                && !reply.contains("\"error\"")
            {
                reader.stream(stream).await;
                return;
            }
            let _ = stream.write_all(reply.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

/// The JSON answer refusing a request, with a one-line reason.
pub fn error_reply(reason: &str) -> String {
    serde_json::json!({ "error": reason }).to_string()
}

/// The name a unit enum variant has in an admin reply (its serde name), for
/// the `status` tables.
pub fn variant_name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "?".into(),
    }
}

/// The `drops:` part of a `status` table: the reasons that dropped
/// anything, by name, or `none`.
pub fn drops_line<R: overlay_proto::counters::Reason>(
    drops: &overlay_proto::counters::DropCounters<R>,
) -> String {
    let mut nonzero: Vec<(&str, u64)> = drops
        .iter()
        .filter(|(_, c)| *c > 0)
        .map(|(r, c)| (r.name(), c))
        .collect();
    if nonzero.is_empty() {
        return "none".into();
    }
    nonzero.sort_unstable();
    let parts: Vec<String> = nonzero.iter().map(|(k, c)| format!("{k} {c}")).collect();
    parts.join(", ")
}
