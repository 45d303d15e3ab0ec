//! The workers as the shell sees them: started with the switch's socket
//! address, drained one batch at a time, told which sessions to open under.
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;

use tapmesh_shell::udp::UdpLink;
use tokio::sync::mpsc;

use super::batch::Batch;
use super::status::WorkersStatus;
use super::thread::{self, Shared};
use crate::networks::Networks;

/// Batches in flight from the workers to the core.
const CHANNEL: usize = 32;

/// The worker threads and the core's end of their channel.
#[derive(Debug)]
pub struct Workers {
    shared: Arc<Shared>,
    from: mpsc::Receiver<Batch>,
    threads: Vec<JoinHandle<()>>,
}

impl Workers {
    /// With `workers` > 1, start `workers - 1` threads, each with a socket
    /// bound to the address of `core` (the core's socket, bound with
    /// `SO_REUSEPORT`, the first of the group; see [`super::steering`]).
    /// `None` for one worker: the core alone.
    pub fn start(workers: usize, core: &UdpLink) -> std::io::Result<Option<Workers>> {
        if workers <= 1 {
            return Ok(None);
        }
        let addr = core.local_addr()?;
        super::steering::attach(core.raw_fd(), workers)?;
        let shared = Arc::new(Shared::default());
        let (tx, from) = mpsc::channel(CHANNEL);
        let mut threads = Vec::with_capacity(workers - 1);
        for i in 1..workers {
            // Bound here, so a failure is the caller's error at start.
            let socket = super::bind(addr, true)?;
            let (shared, tx) = (shared.clone(), tx.clone());
            let t = std::thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || {
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => return tracing::warn!(error = %e, "worker cannot start"),
                    };
                    rt.block_on(async move {
                        match UdpLink::new(socket) {
                            Ok(link) => thread::run(link, shared, tx, i).await,
                            Err(e) => tracing::warn!(error = %e, "worker cannot use its socket"),
                        }
                    });
                })?;
            threads.push(t);
        }
        Ok(Some(Workers {
            shared,
            from,
            threads,
        }))
    }

    /// The next batch from any worker; never without workers.
    pub async fn next(workers: &mut Option<Workers>) -> Option<Batch> {
        match workers {
            Some(w) => w.from.recv().await,
            None => std::future::pending().await,
        }
    }

    /// What the gate dropped, by the core's reasons (added to its drops).
    pub fn gate_drops(&self) -> crate::counters::Drops {
        self.shared.gate.drops.snapshot()
    }

    /// Count `n` datagrams the core's own socket received.
    pub fn count_core(&self, n: usize) {
        self.shared
            .gate
            .core_received
            .fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Give back a batch the core has taken in.
    pub fn recycle(&self, b: Batch) {
        self.shared.recycle(b);
    }

    /// Publish every port's current session to the workers and reclaim the
    /// entries of sessions the core dropped. Call after a session was
    /// established or rekeyed, and now and then.
    pub fn publish(&self, core: &Networks) {
        let table = &self.shared.table;
        table.prune();
        for (network, r) in core.receivers() {
            table.publish(network, r);
        }
        self.shared.gate.publish(core.guards());
        let fast = &self.shared.fast;
        fast.retain(|id| core.cores_by_id().any(|(n, _)| n == id));
        let now = std::time::Instant::now();
        for (network, switch) in core.cores_by_id() {
            // The epoch first: a revocation meanwhile makes this stale.
            let epoch = switch.fast_epoch();
            fast.publish(network, epoch, switch.fast_path(now));
        }
    }

    /// A network's fast path was revoked (or a network added) and not
    /// published again yet.
    pub fn fast_path_stale(&self, core: &Networks) -> bool {
        let fast = &self.shared.fast;
        core.cores_by_id()
            .any(|(network, switch)| fast.epoch(network) != Some(switch.fast_epoch()))
    }

    /// Their part of `status`.
    pub fn status(&self) -> WorkersStatus {
        WorkersStatus {
            count: self.threads.len() + 1,
            opened: self.shared.opened.load(Ordering::Relaxed),
            passed: self.shared.passed.load(Ordering::Relaxed),
            gate: super::gate::status(&self.shared.gate),
            forwarded: self.shared.forwarded.load(Ordering::Relaxed),
            send_failed: self.shared.send_failed.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        // The workers see the channel closed and return.
        self.from.close();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
