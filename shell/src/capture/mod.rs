//! Live capture, shared by both daemons: frames a core forwards, copied into
//! a bounded pcapng buffer per capture and streamed over the admin socket.
//!
//! A capture is a pair: the [`Capture`] handle the core's owner keeps (the
//! producer: [`Capture::offer`] a frame, never waits) and the [`Reader`] the
//! admin connection's task drains onto the socket ([`Reader::stream`]). They
//! share one buffer of pcapng bytes, bounded by [`BUFFER_LIMIT`]: when the
//! reader falls behind, frames are dropped and counted, and the next packet
//! written on that interface carries the count (`epb_dropcount`). The buffer
//! sits behind a mutex that only the two ends take, each for one copy: it is
//! the channel between them, not a lock around the core.
//!
//! # Layout
//! - [`spec`]: the `capture` request (network, nodes, VLAN, filter).
//! - [`client`]: the `capture` command: request, then copy the stream out.
//! - [`filter`]: libpcap's filter language, compiled by libpcap.
//! - [`taps`]: the captures a core feeds, their selections and counters.
//! - [`pcapng`]: the pcapng writer (one interface per port, directions).
//! - this file: the producer and reader ends and the stream.
pub mod client;
pub mod filter;
pub mod pcapng;
pub mod spec;
pub mod taps;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

pub use filter::Filter;
pub use pcapng::Direction;
pub use spec::{CaptureSpec, REQUEST};
pub use taps::{CaptureCounters, Taps};

/// Bytes of pcapng one capture holds for a reader that has not taken them
/// yet; past that, frames are dropped (interface descriptions never are).
pub const BUFFER_LIMIT: usize = 4 << 20;

/// One port of the core, as a capture names it: `key` tells ports apart
/// (unique within the daemon), `name` becomes the pcapng interface's name.
#[derive(Debug, Clone, Copy)]
pub struct Port<'a> {
    /// Unique per port of the daemon (e.g. network and node index).
    pub key: u64,
    /// The interface's name in the capture (the node's or peer's name).
    pub name: &'a str,
    /// The interface's description (e.g. the network).
    pub description: &'a str,
}

/// What [`Capture::offer`] did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    /// Written to the capture.
    Captured,
    /// Not matched by the capture's filter.
    Filtered,
    /// Lost: the reader is behind.
    Dropped,
    /// The reader went away; forget this capture.
    Closed,
}

/// The producer end, kept by the task that owns the core.
#[derive(Debug, Clone)]
pub struct Capture {
    shared: Arc<Shared>,
}

/// The reader end: streams the capture to an admin client.
#[derive(Debug)]
pub struct Reader {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<pcapng::Writer>,
    ready: Notify,
}

/// A capture with its filter (already compiled), started at `now`.
pub fn open(filter: Option<Filter>, now: Instant) -> (Capture, Reader) {
    let writer = pcapng::Writer::new(filter, BUFFER_LIMIT, now, SystemTime::now());
    let shared = Arc::new(Shared {
        state: Mutex::new(writer),
        ready: Notify::new(),
    });
    (
        Capture {
            shared: shared.clone(),
        },
        Reader { shared },
    )
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, pcapng::Writer> {
        // A panic elsewhere cannot leave the buffer half-written in a way
        // that matters more than losing the capture: keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Capture {
    /// Offer a frame seen at `now` on `port`, in direction `dir`: filtered,
    /// then written if the buffer has room, else counted as dropped. Never
    /// waits for the reader.
    pub fn offer(&self, now: Instant, port: Port<'_>, dir: Direction, frame: &[u8]) -> Offered {
        let r = self.shared.lock().offer(now, port, dir, frame);
        if r == Offered::Captured {
            self.shared.ready.notify_one();
        }
        r
    }

    /// Whether the reader went away (the capture should be forgotten).
    pub fn is_closed(&self) -> bool {
        self.shared.lock().is_closed()
    }
}

impl Reader {
    /// Copy the capture onto `conn` until the client closes it (or a write
    /// fails); then the capture is closed, and the producer's next offer
    /// says so. Anything the client sends is ignored.
    pub async fn stream<S>(self, conn: S)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite,
    {
        let (mut rd, mut wr) = tokio::io::split(conn);
        let mut out = Vec::new();
        let mut scratch = [0u8; 64];
        loop {
            self.shared.lock().take(&mut out);
            if !out.is_empty() {
                // A stalled client blocks only this task; the producer
                // drops frames meanwhile.
                if wr.write_all(&out).await.is_err() {
                    break;
                }
                out.clear();
                continue;
            }
            tokio::select! {
                _ = self.shared.ready.notified() => {}
                r = rd.read(&mut scratch) => match r {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                },
            }
        }
        self.shared.lock().close();
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.shared.lock().close();
    }
}

/// For the admin socket: if `line` is a capture request, its spec checked
/// and its filter compiled, as a new capture's two ends.
pub fn start(line: &str) -> Option<Result<(Capture, Reader), String>> {
    let spec = match CaptureSpec::from_request(line)? {
        Ok(s) => s,
        Err(e) => return Some(Err(e)),
    };
    let filter = match spec.filter.as_deref().map(Filter::compile).transpose() {
        Ok(f) => f,
        Err(e) => return Some(Err(e)),
    };
    Some(Ok(open(filter, Instant::now())))
}
