//! One opening thread and the node task share a part of a batch, so that
//! the node task never waits for a thread that has not started.
//!
//! The node task posts the part (pointers into its batch and its list of
//! receivers), wakes the thread and opens its own part. Then it takes the
//! posted part back if the thread has not claimed it yet, and opens it
//! itself; only a part the thread has claimed is waited for, and the
//! thread works on it without stopping. A fork-join scope (as rayon's)
//! waits for every part it handed out, started or not: on a host whose
//! cores are all busy the thread is often not running, and the node task
//! slept until it was, without draining its socket.
//!
//! The part lives in the node task's batch, so the node task returns only
//! once the part is back in its hands: taken back, or done. [`share`]
//! makes that hold also when the node task unwinds, and the thread says
//! it is done also when it does.
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{JoinHandle, Thread};

use overlay_proto::receiver::Receiver;

use super::{Datagram, open_part};

/// Nothing posted.
const IDLE: u8 = 0;
/// A part posted, not claimed yet: the node task may take it back.
const POSTED: u8 = 1;
/// The thread is opening the part.
const CLAIMED: u8 = 2;
/// The thread is done with the part.
const DONE: u8 = 3;

/// What the thread is to open: raw parts of borrows the node task holds
/// until the part is back ([`Posted`]).
#[derive(Clone, Copy)]
struct Job {
    part: *mut Datagram<'static>,
    len: usize,
    rxs: *const Arc<Receiver>,
    rxs_len: usize,
    network_id: u32,
}

const NO_JOB: Job = Job {
    part: std::ptr::null_mut(),
    len: 0,
    rxs: std::ptr::null(),
    rxs_len: 0,
    network_id: 0,
};

/// What the node task and one thread share.
struct Slot {
    state: AtomicU8,
    /// Written by the node task while `IDLE`, read by the thread once it
    /// has moved `POSTED` to `CLAIMED`.
    job: UnsafeCell<Job>,
    /// The node task, while it waits for a claimed part.
    waiter: Mutex<Option<Thread>>,
    /// Datagrams this thread opened (authentic), for status.
    opened: AtomicU64,
    stop: AtomicBool,
    /// Tests: the thread claims nothing while set.
    #[cfg(test)]
    held: AtomicBool,
    /// Tests: the thread sleeps this long (ms) in each part it claims.
    #[cfg(test)]
    slow_ms: AtomicU64,
    /// Tests: the node task lets the thread claim each part first.
    #[cfg(test)]
    claim_first: AtomicBool,
}

// SAFETY: `job` is written only by the node task while the state is IDLE
// (the thread does not read it then), published by the Release store of
// POSTED and read by the thread only after its Acquire CAS to CLAIMED;
// the node task writes it again only after it has seen DONE (Acquire) or
// taken it back (CAS from POSTED). The pointers in it are used only while
// CLAIMED, and the node task keeps what they point to alive until then.
unsafe impl Sync for Slot {}
unsafe impl Send for Slot {}

/// One opening thread.
pub(super) struct Handoff {
    slot: Arc<Slot>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Handoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handoff")
            .field("state", &self.slot.state.load(Ordering::Relaxed))
            .field("opened", &self.slot.opened.load(Ordering::Relaxed))
            .finish()
    }
}

impl Handoff {
    /// Start the thread, named `name`.
    pub(super) fn start(name: String) -> std::io::Result<Handoff> {
        let slot = Arc::new(Slot {
            state: AtomicU8::new(IDLE),
            job: UnsafeCell::new(NO_JOB),
            waiter: Mutex::new(None),
            opened: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            #[cfg(test)]
            held: AtomicBool::new(false),
            #[cfg(test)]
            slow_ms: AtomicU64::new(0),
            #[cfg(test)]
            claim_first: AtomicBool::new(false),
        });
        let s = Arc::clone(&slot);
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || run(&s))?;
        Ok(Handoff {
            slot,
            thread: Some(thread),
        })
    }

    /// Datagrams this thread opened.
    pub(super) fn opened(&self) -> u64 {
        self.slot.opened.load(Ordering::Relaxed)
    }

    /// Post `part` (opened under `rxs`) to the thread and wake it. The
    /// guard gets the part back; until then `part` and `rxs` stay
    /// borrowed.
    fn post<'p>(
        &'p self,
        part: &'p mut [Datagram<'_>],
        rxs: &'p [Arc<Receiver>],
        network_id: u32,
    ) -> Posted<'p> {
        debug_assert_eq!(self.slot.state.load(Ordering::Relaxed), IDLE);
        let job = Job {
            part: part.as_mut_ptr().cast::<Datagram<'static>>(),
            len: part.len(),
            rxs: rxs.as_ptr(),
            rxs_len: rxs.len(),
            network_id,
        };
        // SAFETY: IDLE, so the thread does not read `job` (see `Slot`).
        unsafe { *self.slot.job.get() = job };
        self.slot.state.store(POSTED, Ordering::Release);
        self.unpark();
        Posted {
            handoff: self,
            back: false,
            _part: std::marker::PhantomData,
        }
    }

    /// Tests: keep the thread from claiming anything for `ms`.
    #[cfg(test)]
    pub(super) fn hold_for(&self, ms: u64) {
        self.slot.held.store(true, Ordering::Relaxed);
        let slot = Arc::clone(&self.slot);
        let thread = self.thread.as_ref().map(|t| t.thread().clone());
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(ms));
            slot.held.store(false, Ordering::Relaxed);
            if let Some(t) = thread {
                t.unpark();
            }
        });
    }

    #[cfg(test)]
    pub(super) fn slow(&self, ms: u64) {
        self.slot.slow_ms.store(ms, Ordering::Relaxed);
    }

    /// Tests: let the thread claim each part before the node task opens
    /// its own, so that the thread's part is the thread's.
    #[cfg(test)]
    pub(super) fn claim_first(&self) {
        self.slot.claim_first.store(true, Ordering::Relaxed);
    }

    fn unpark(&self) {
        if let Some(t) = &self.thread {
            t.thread().unpark();
        }
    }
}

impl Drop for Handoff {
    fn drop(&mut self) {
        self.slot.stop.store(true, Ordering::Relaxed);
        self.unpark();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How a posted part came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Back {
    /// The thread had not claimed it: the node task is to open it.
    TakenBack,
    /// The thread opened it.
    Opened,
}

/// Share `parts` with `handoffs` (the k-th part to the k-th thread) while
/// the node task runs `own` (its own part), then get every part back:
/// a part no thread had claimed is returned as [`Back::TakenBack`], for
/// the node task to open; one a thread claimed is waited for. Every part
/// is back when this returns, also if `own` panics.
pub(super) fn share<'a, R>(
    handoffs: &[Handoff],
    parts: Vec<&mut [Datagram<'a>]>,
    rxs: &[Arc<Receiver>],
    network_id: u32,
    own: impl FnOnce() -> R,
) -> (R, Vec<Back>) {
    let posted: Vec<Posted<'_>> = handoffs
        .iter()
        .zip(parts)
        .map(|(h, part)| h.post(part, rxs, network_id))
        .collect();
    #[cfg(test)]
    for p in &posted {
        let slot = &p.handoff.slot;
        while slot.claim_first.load(Ordering::Relaxed)
            && slot.state.load(Ordering::Acquire) == POSTED
        {
            std::thread::yield_now();
        }
    }
    let r = own();
    (r, posted.into_iter().map(Posted::back).collect())
}

/// A part posted to a thread, until it is back.
struct Posted<'p> {
    handoff: &'p Handoff,
    back: bool,
    /// The part stays borrowed.
    _part: std::marker::PhantomData<&'p mut ()>,
}

impl Posted<'_> {
    /// Take the part back if the thread has not claimed it, else wait until
    /// the thread is done with it.
    fn back(mut self) -> Back {
        self.back = true;
        self.get_back()
    }

    fn get_back(&self) -> Back {
        let slot = &self.handoff.slot;
        let r = match slot
            .state
            .compare_exchange(POSTED, IDLE, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => return Back::TakenBack,
            Err(DONE) => Back::Opened,
            Err(_) => {
                wait_done(slot);
                Back::Opened
            }
        };
        slot.state.store(IDLE, Ordering::Relaxed);
        r
    }
}

impl Drop for Posted<'_> {
    fn drop(&mut self) {
        // Also when unwinding: the part must not be freed under the thread.
        if !self.back {
            self.get_back();
        }
    }
}

/// Until the thread has stored DONE: a short spin (it is running, and a
/// part is some microseconds of work), then park until it wakes us.
fn wait_done(slot: &Slot) {
    for _ in 0..256 {
        if slot.state.load(Ordering::Acquire) == DONE {
            return;
        }
        std::hint::spin_loop();
    }
    *slot.waiter.lock().unwrap_or_else(PoisonError::into_inner) = Some(std::thread::current());
    while slot.state.load(Ordering::Acquire) != DONE {
        std::thread::park();
    }
    *slot.waiter.lock().unwrap_or_else(PoisonError::into_inner) = None;
}

/// The thread: claim each posted part, open it, say it is done.
fn run(slot: &Slot) {
    loop {
        if slot.stop.load(Ordering::Relaxed) {
            return;
        }
        #[cfg(test)]
        if slot.held.load(Ordering::Relaxed) {
            std::thread::park();
            continue;
        }
        if slot
            .state
            .compare_exchange(POSTED, CLAIMED, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::thread::park();
            continue;
        }
        // DONE when the part is opened, or if opening it panics (the node
        // task is not left waiting; this thread is gone then, and each part
        // posted to it later is taken back).
        let _done = Done(slot);
        // SAFETY: CLAIMED: the node task waits for DONE before it touches
        // the part, `rxs` or `job` again (see `Slot`).
        let job = unsafe { *slot.job.get() };
        let part = unsafe { std::slice::from_raw_parts_mut(job.part, job.len) };
        let rxs = unsafe { std::slice::from_raw_parts(job.rxs, job.rxs_len) };
        #[cfg(test)]
        std::thread::sleep(std::time::Duration::from_millis(
            slot.slow_ms.load(Ordering::Relaxed),
        ));
        let n = open_part(rxs, job.network_id, part);
        slot.opened.fetch_add(n, Ordering::Relaxed);
    }
}

/// Stores DONE and wakes a waiting node task when dropped.
struct Done<'s>(&'s Slot);

impl Drop for Done<'_> {
    fn drop(&mut self) {
        self.0.state.store(DONE, Ordering::Release);
        if let Some(t) = &*self.0.waiter.lock().unwrap_or_else(PoisonError::into_inner) {
            t.unpark();
        }
    }
}
