//! Opening on several cores: a large receive batch from the switch or the
//! mesh peers is split, its parts opened at once by the node task and the
//! opening threads, then handled by the node task in the order it arrived.
//!
//! The switch sends everything for this node under one session, and a mesh
//! peer under one too, so there is no key to steer by that spreads one
//! flow (as the switch steers by receiver index): the batch itself is
//! shared out, as wireguard-go decrypts in parallel and delivers in order.
//! Datagrams of a published session (a data header of this network with
//! the receiver index of the uplink's current session or of a mesh peer's
//! current session, see [`Node::open_sessions`](crate::engine::Node::open_sessions))
//! are opened in place through that session's [`Receiver`] (its read-only
//! key and its replay window, taken to check and to update but never
//! across the cipher): the first part by the node task, each other part
//! posted to an opening thread ([`handoff`]). The node task then takes back
//! each part its thread has not started and opens it itself, and waits
//! only for the parts a thread is opening.
//! Everything else in the batch (handshakes, a pending or previous
//! session's datagrams, an unknown index) is left to the node task as
//! before. Then the node task handles the whole batch in order
//! ([`Node::handle_opened`](crate::engine::Node::handle_opened) for what
//! was opened, with the same counters and drop reasons): reassembly and
//! TAP writes see the datagrams as they arrived, so no flow is reordered.
//!
//! Whether a batch is split at all is the [`gate`]'s choice
//! (`worker-opening`): on a host whose cores are all busy the threads start
//! late (their parts come back to the node task) or are preempted halfway
//! (the node task, waiting, stops draining its socket); in `auto` it then
//! opens alone for a while.
//!
//! A batch holds at most 2,048 datagrams (32 buffers of up to 64 GRO
//! segments), far inside the replay window (8,128 counters), so opening
//! its parts in any order accepts exactly what opening it in order would;
//! two copies of one counter, in one part or two, are accepted once.
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::{Arc, Weak};
use std::time::Instant;

use overlay_proto::Error;
use overlay_proto::receiver::Receiver;
use overlay_proto::wire::{Header, MessageType};

pub mod gate;
mod handoff;

pub use gate::Opening;
use gate::SplitGate;
use handoff::{Back, Handoff};

/// The smallest batch (in bytes of datagrams) split over the threads.
/// Below it the node task opens the batch itself: waking a thread and
/// waiting for it costs some microseconds, about what AES-GCM takes for
/// 16 to 32 KiB on one core, so a ping or a few acknowledgements never
/// take a thread hop, and a batch worth splitting (a GRO batch of some two
/// dozen full-size datagrams or more) saves more than the hop costs.
pub const SPLIT_MIN_BYTES: usize = 32 * 1024;

/// The sessions whose datagrams the threads may open (the uplink's and
/// the mesh peers' current ones), published by the node task.
#[derive(Debug)]
pub(super) struct OpenPath {
    /// Weak: dropping a session revokes it. By receiver index.
    receivers: Vec<(u32, Weak<Receiver>)>,
    network_id: u32,
}

impl OpenPath {
    /// Publish `receivers`, the receive halves of sessions of network
    /// `network_id`.
    pub(super) fn new<'r>(
        network_id: u32,
        receivers: impl IntoIterator<Item = &'r Arc<Receiver>>,
    ) -> OpenPath {
        let mut receivers: Vec<_> = receivers
            .into_iter()
            .map(|r| (r.local_index(), Arc::downgrade(r)))
            .collect();
        receivers.sort_unstable_by_key(|(i, _)| *i);
        OpenPath {
            receivers,
            network_id,
        }
    }

    /// The published sessions still alive and unexpired, by receiver index.
    fn live(&self, now: Instant) -> Vec<Arc<Receiver>> {
        self.receivers
            .iter()
            .filter_map(|(_, r)| r.upgrade())
            .filter(|r| !r.is_expired(now))
            .collect()
    }
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
    threads: Vec<Handoff>,
    /// Whether to split the next batch.
    gate: SplitGate,
}

impl Openers {
    /// Start `threads` opening threads, sharing batches as `opening` says.
    pub fn start(threads: usize, opening: Opening) -> std::io::Result<Openers> {
        let threads = (1..=threads)
            .map(|i| Handoff::start(format!("tapmesh-open-{i}")))
            .collect::<std::io::Result<_>>()?;
        Ok(Openers {
            threads,
            gate: SplitGate::new(opening),
        })
    }

    /// Whether a batch arriving at `now` is to be split ([`gate`]).
    pub fn splits(&self, now: Instant) -> bool {
        self.gate.allows(now)
    }

    /// How many times splitting paused because it did not pay ([`gate`]).
    pub fn pauses(&self) -> u64 {
        self.gate.pauses()
    }

    /// Datagrams the threads opened.
    pub fn opened(&self) -> u64 {
        self.threads.iter().map(Handoff::opened).sum()
    }

    /// Open the uplink's datagrams of `batch` (see the module doc): the
    /// node task's part here, the others on the threads. Returns the batch
    /// in its order. Splits whatever [`splits`](Self::splits) says, and
    /// tells the gate how the split went.
    pub(super) fn open<'a>(
        &mut self,
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
        let live = path.live(now);
        if live.is_empty() {
            return items;
        }
        let nid = path.network_id;
        let threads = self.threads.len();
        let len = items.len();
        let per = len.div_ceil(threads + 1).max(1);
        let (mine, theirs) = items.split_at_mut(per.min(len));
        let rx = &live[..];
        // Timed with the clock, not `now`: how long the node task's part
        // took and how long it then waited for the threads'.
        let start = Instant::now();
        let parts: Vec<_> = theirs.chunks_mut(per).collect();
        let (own_done, back) = handoff::share(&self.threads, parts, rx, nid, || {
            open_part(rx, nid, mine);
            Instant::now()
        });
        let end = Instant::now();
        // A part no thread had started is the node task's again.
        let taken_back = back.contains(&Back::TakenBack);
        for (part, b) in theirs.chunks_mut(per).zip(&back) {
            if *b == Back::TakenBack {
                open_part(rx, nid, part);
            }
        }
        self.gate
            .note(end, own_done - start, end - own_done, threads, taken_back);
        items
    }
}

/// Open the datagrams of `part` that are under one of the sessions of
/// `rxs` (sorted by receiver index); returns how many were authentic.
fn open_part(rxs: &[Arc<Receiver>], network_id: u32, part: &mut [Datagram<'_>]) -> u64 {
    // HOT PATH
    let mut ok = 0;
    for d in part {
        let index = Header::new_checked(&d.buf[..])
            .ok()
            .filter(|h| h.message_type() == MessageType::Data && h.network_id() == network_id)
            .map(|h| h.receiver_index());
        let rx = index.and_then(|i| {
            rxs.binary_search_by_key(&i, |r| r.local_index())
                .ok()
                .map(|k| &rxs[k])
        });
        if let Some(rx) = rx {
            let r = rx.open(d.buf);
            ok += u64::from(r.is_ok());
            d.opened = Some(r);
        }
    }
    ok
}

#[cfg(test)]
mod tests;
