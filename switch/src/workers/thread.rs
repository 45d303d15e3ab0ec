//! A worker: its own socket in the switch's `SO_REUSEPORT` group, on its own
//! thread with a current-thread runtime. It receives a batch, opens what it
//! can (see the module doc of [`crate::workers`]), forwards what the fast
//! path allows and sends the rest of the batch (if any) to the core, waiting while the core's channel is full (the socket's buffer then
//! absorbs bursts, as the core's own does). It ends when the core's end of
//! the channel is gone.
use std::io::ErrorKind;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use overlay_proto::transmit::Transmit;
use overlay_proto::wire::{Header, MessageType};
use tapmesh_shell::udp::{RecvBuffers, SendBatch, UdpLink};
use tokio::sync::mpsc;

use super::batch::{Batch, Opening};
use super::fastpath::FastTable;
use super::forward::{Forwarder, Step};
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
    /// The fast paths the core published (see [`super::fastpath`]).
    pub fast: FastTable,
    /// Frames the workers forwarded themselves.
    pub forwarded: AtomicU64,
    /// Datagrams of those, and cookie replies, the kernel refused to send.
    pub send_failed: AtomicU64,
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

/// Run worker `worker` on `link` until the core hangs up.
pub async fn run(link: UdpLink, shared: Arc<Shared>, to_core: mpsc::Sender<Batch>, worker: usize) {
    let mut rx = RecvBuffers::default();
    let mut gate = super::gate::Gate::new(shared.gate.clone());
    let mut sends = SendBatch::default();
    let mut fwd = Forwarder::new(worker);
    // What `sends` had refused when last added to the shared count.
    let mut failed = 0;
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
        let (mut opened, mut passed, mut forwarded) = (0, 0, 0);
        for (from, d) in rx.datagrams(n) {
            let o = match gate.sort(now, from, d) {
                Gated::Stopped => continue,
                Gated::Admitted => Opening::Admitted,
                Gated::Pass => open(&shared.table, now, d),
            };
            match &o {
                Opening::Opened(_) => opened += 1,
                _ => passed += 1,
            }
            if let Opening::Opened(Ok(range)) = &o {
                match fwd.step(now, &shared.fast, from, d, range.clone()) {
                    Step::Core => {}
                    Step::Held => continue,
                    Step::Send { to, stride } => {
                        let t = Transmit {
                            destination: to,
                            contents: fwd.out(),
                            segment_size: stride,
                        };
                        sends.send(&link, &t).await;
                        forwarded += 1;
                        continue;
                    }
                    Step::CoreWhole => {
                        let (whole, at) = fwd.whole();
                        batch.push(from, whole, |_| Opening::Opened(Ok(at)));
                        continue;
                    }
                }
            }
            // Already opened in place: the batch takes it as it is.
            batch.push(from, d, |_| o);
        }
        let refused = gate.flush(&link).await;
        sends.flush(&link).await;
        if refused > 0 {
            shared.send_failed.fetch_add(refused, Ordering::Relaxed);
        }
        shared.opened.fetch_add(opened, Ordering::Relaxed);
        shared.passed.fetch_add(passed, Ordering::Relaxed);
        shared.forwarded.fetch_add(forwarded, Ordering::Relaxed);
        if sends.failed() != failed {
            let more = sends.failed() - failed;
            shared.send_failed.fetch_add(more, Ordering::Relaxed);
            failed = sends.failed();
        }
        // Nothing for the core (all stopped by the gate or forwarded): do
        // not wake it.
        if batch.is_empty() {
            shared.recycle(batch);
        } else if to_core.send(batch).await.is_err() {
            return;
        }
    }
}
