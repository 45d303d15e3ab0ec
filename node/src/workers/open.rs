//! Opening on several cores: a large receive batch from the switch is split,
//! its parts opened at once by the node task and the opening threads, then
//! handled by the node task in the order it arrived.
//!
//! The switch sends everything for this node under one session, so there is
//! no key to steer by (as the switch steers by receiver index): the batch
//! itself is shared out, as wireguard-go decrypts in parallel and delivers
//! in order. Datagrams of the uplink's current session (a data header of
//! this network with the session's receiver index) are opened in place
//! through the session's [`Receiver`] (its read-only key and its replay
//! window, taken to check and to update but never across the cipher): the
//! first part by the node task, each other part by an opening thread, in a
//! scope that ends when all parts are opened. Everything else in the batch
//! (handshakes, another session's datagrams) is left to the node task as
//! before. Then the node task handles the whole batch in order
//! ([`Node::handle_opened`](crate::engine::Node::handle_opened) for what
//! was opened, with the same counters and drop reasons): reassembly and
//! TAP writes see the datagrams as they arrived, so no flow is reordered.
//!
//! A batch holds at most 2,048 datagrams (32 buffers of up to 64 GRO
//! segments), far inside the replay window (8,128 counters), so opening
//! its parts in any order accepts exactly what opening it in order would;
//! two copies of one counter, in one part or two, are accepted once.
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

use overlay_proto::Error;
use overlay_proto::receiver::Receiver;
use overlay_proto::wire::{Header, MessageType};

/// The smallest batch (in bytes of datagrams) split over the threads.
/// Below it the node task opens the batch itself: waking a thread and
/// waiting for it costs some microseconds, about what AES-GCM takes for
/// 16 to 32 KiB on one core, so a ping or a few acknowledgements never
/// take a thread hop, and a batch worth splitting (a GRO batch of some two
/// dozen full-size datagrams or more) saves more than the hop costs.
pub const SPLIT_MIN_BYTES: usize = 32 * 1024;

/// The session whose datagrams the threads may open: published by the
/// node task with the sealing path.
#[derive(Debug)]
pub(super) struct OpenPath {
    /// Weak: dropping the session revokes it.
    pub(super) receiver: Weak<Receiver>,
    pub(super) network_id: u32,
}

/// One datagram of a split batch, with the result of its opening if it
/// was opened (`None`: left to the node task).
#[derive(Debug)]
pub struct Datagram<'a> {
    /// Its sender.
    pub from: SocketAddr,
    /// The datagram, in the receive buffers (opened in place).
    pub buf: &'a mut [u8],
    /// What opening it gave: the payload's range in `buf`, or why not.
    pub opened: Option<Result<Range<usize>, Error>>,
}

/// The opening threads.
#[derive(Debug)]
pub struct Openers {
    pool: rayon_core::ThreadPool,
    /// Datagrams the threads opened (authentic), for status.
    opened: Arc<AtomicU64>,
}

impl Openers {
    /// Start `threads` opening threads.
    pub fn start(threads: usize) -> std::io::Result<Openers> {
        let pool = rayon_core::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("tapmesh-open-{}", i + 1))
            .build()
            .map_err(std::io::Error::other)?;
        Ok(Openers {
            pool,
            opened: Arc::default(),
        })
    }

    /// Datagrams the threads opened.
    pub fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// Open the uplink's datagrams of `batch` (see the module doc): the
    /// node task's part here, the others on the threads. Returns the batch
    /// in its order.
    pub(super) fn open<'a>(
        &self,
        path: &OpenPath,
        now: Instant,
        batch: impl Iterator<Item = (SocketAddr, &'a mut [u8])>,
    ) -> Vec<Datagram<'a>> {
        // HOT PATH (once per large batch)
        let mut items: Vec<Datagram<'a>> = batch
            .map(|(from, buf)| Datagram {
                from,
                buf,
                opened: None,
            })
            .collect();
        let Some(rx) = path.receiver.upgrade().filter(|r| !r.is_expired(now)) else {
            return items;
        };
        let nid = path.network_id;
        let parts = self.pool.current_num_threads() + 1;
        let len = items.len();
        let per = len.div_ceil(parts).max(1);
        let (mine, theirs) = items.split_at_mut(per.min(len));
        let rx = &*rx;
        self.pool.in_place_scope(|s| {
            for part in theirs.chunks_mut(per) {
                let opened = &self.opened;
                s.spawn(move |_| {
                    opened.fetch_add(open_part(rx, nid, part), Ordering::Relaxed);
                });
            }
            open_part(rx, nid, mine);
        });
        items
    }
}

/// Open the datagrams of `part` that are under `rx`'s session; returns how
/// many were authentic.
fn open_part(rx: &Receiver, network_id: u32, part: &mut [Datagram<'_>]) -> u64 {
    // HOT PATH
    let mut ok = 0;
    for d in part {
        let ours = Header::new_checked(&d.buf[..]).is_ok_and(|h| {
            h.message_type() == MessageType::Data
                && h.network_id() == network_id
                && h.receiver_index() == rx.local_index()
        });
        if ours {
            let r = rx.open(d.buf);
            ok += u64::from(r.is_ok());
            d.opened = Some(r);
        }
    }
    ok
}

#[cfg(test)]
mod tests;
