//! A worker: its own socket in the switch's `SO_REUSEPORT` group, on its own
//! thread with a current-thread runtime. It receives a batch, opens what it
//! can (see the module doc of [`crate::workers`]) and sends the batch to the
//! core, waiting while the core's channel is full (the socket's buffer then
//! absorbs bursts, as the core's own does). It ends when the core's end of
//! the channel is gone.
use std::io::ErrorKind;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use overlay_proto::wire::{Header, MessageType};
use tapmesh_shell::udp::{RecvBuffers, UdpLink};
use tokio::sync::mpsc;

use super::batch::{Batch, Opening};
use super::gate::Gated;
use super::table::OpenTable;

/// At most this many empty batches wait for reuse.
const FREE_BATCHES: usize = 64;

/// What the workers share with each other and the core.
#[derive(Debug, Default)]
pub struct Shared {
    /// The sessions to open under.
    pub table: OpenTable,
    /// Datagrams the workers opened (authentic or not).
    pub opened: AtomicU64,
    /// Datagrams they handed on unopened.
    pub passed: AtomicU64,
    /// The handshake gate's shared part.
    pub gate: Arc<super::gate::GateShared>,
    /// Empty batches, back from the core.
    free: Mutex<Vec<Batch>>,
}

impl Shared {
    /// An empty batch, reused if one came back.
    fn batch(&self) -> Batch {
        self.free_list().pop().unwrap_or_default()
    }

    /// Give back a batch the core has taken in.
    pub fn recycle(&self, mut b: Batch) {
        b.clear();
        let mut free = self.free_list();
        if free.len() < FREE_BATCHES {
            free.push(b);
        }
    }

    fn free_list(&self) -> std::sync::MutexGuard<'_, Vec<Batch>> {
        self.free.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Open `d` if it is a data datagram under a published, live session.
pub fn open(table: &OpenTable, now: Instant, d: &mut [u8]) -> Opening {
    // HOT PATH
    let Ok(h) = Header::new_checked(&d[..]) else {
        return Opening::Sealed;
    };
    if h.message_type() != MessageType::Data {
        return Opening::Sealed;
    }
    match table.get(now, h.network_id(), h.receiver_index()) {
        Some(r) => Opening::Opened(r.open(d)),
        None => Opening::Sealed,
    }
}

/// Run one worker on `link` until the core hangs up.
pub async fn run(link: UdpLink, shared: Arc<Shared>, to_core: mpsc::Sender<Batch>) {
    let mut rx = RecvBuffers::default();
    let mut gate = super::gate::Gate::new(shared.gate.clone());
    loop {
        let n = tokio::select! {
            _ = to_core.closed() => return,
            r = rx.recv(&link, true) => match r {
                Ok(n) => n,
                // ICMP errors from earlier sends surface here on some kernels.
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "worker socket failed; its senders go unheard");
                    return;
                }
            },
        };
        let now = Instant::now();
        let mut batch = shared.batch();
        let (mut opened, mut passed) = (0, 0);
        for (from, d) in rx.datagrams(n) {
            let admitted = match gate.sort(now, from, d) {
                Gated::Stopped => continue,
                g => g == Gated::Admitted,
            };
            batch.push(from, d, |d| {
                let o = match admitted {
                    true => Opening::Admitted,
                    false => open(&shared.table, now, d),
                };
                match o {
                    Opening::Opened(_) => opened += 1,
                    _ => passed += 1,
                }
                o
            });
        }
        gate.flush(&link).await;
        shared.opened.fetch_add(opened, Ordering::Relaxed);
        shared.passed.fetch_add(passed, Ordering::Relaxed);
        if batch.is_empty() {
            // All stopped by the gate: the core is not woken.
            shared.recycle(batch);
            continue;
        }
        if to_core.send(batch).await.is_err() {
            return;
        }
    }
}
