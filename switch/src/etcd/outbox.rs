//! What this switch owns in etcd and what it still has to write: coalesced,
//! batched, sans-IO.
//!
//! The engine reports changes (`set` a key to a value, or `remove` it) as
//! they happen; MAC churn can bring many per second. The outbox keeps only
//! the latest state per key ([`Outbox::set`], [`Outbox::remove`]), so a MAC
//! that flaps a hundred times between two batches costs one write, and the
//! queue can never hold more than one entry per key this switch owns or
//! has written: it is bounded by the engine's own tables, also while etcd
//! is unreachable. The shell writes a batch (one etcd transaction) when
//! [`Outbox::poll_timeout`] is due, at most [`BATCH_INTERVAL`] after the
//! first change, and reports the result ([`Outbox::written`],
//! [`Outbox::failed`]). When its lease was lost (expired during an outage)
//! every key went with it: [`Outbox::lease_lost`] queues all it owns again.
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::keys::{Key, Value};

/// How long changes gather before they are written in one transaction.
pub const BATCH_INTERVAL: Duration = Duration::from_millis(150);
/// At most this many operations per transaction (etcd refuses more than
/// `--max-txn-ops`, 128 by default; a guarded delete counts twice).
pub const MAX_BATCH_OPS: usize = 64;
/// After a failed write, the next attempt waits this long.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// One write: a put of the value, or a delete (`None`).
pub type Op = (Key, Option<Value>);

/// What this switch owns and what is not yet in etcd.
#[derive(Debug, Default)]
pub struct Outbox {
    /// What the engine says this switch owns now.
    owned: BTreeMap<Key, Value>,
    /// Keys whose state in etcd differs from `owned` (latest wins).
    dirty: BTreeSet<Key>,
    /// Keys written under the current lease (so a removal of a key never
    /// written needs no delete).
    written: BTreeSet<Key>,
    /// When the oldest unwritten change came, or when to retry.
    due: Option<Instant>,
    /// A batch is being written: no other until it is acknowledged.
    in_flight: bool,
}

impl Outbox {
    /// An empty outbox.
    pub fn new() -> Outbox {
        Outbox::default()
    }

    /// This switch now owns `key` with `value`. A no-op if that is already
    /// so.
    pub fn set(&mut self, now: Instant, key: Key, value: Value) {
        if self.owned.get(&key) == Some(&value) {
            return;
        }
        self.owned.insert(key.clone(), value);
        self.mark(now, key);
    }

    /// This switch no longer owns `key`.
    pub fn remove(&mut self, now: Instant, key: &Key) {
        if self.owned.remove(key).is_none() {
            return;
        }
        if self.written.contains(key) {
            self.mark(now, key.clone());
        } else {
            self.dirty.remove(key);
        }
    }

    fn mark(&mut self, now: Instant, key: Key) {
        self.dirty.insert(key);
        if self.due.is_none() {
            self.due = Some(now + BATCH_INTERVAL);
        }
    }

    /// The lease under which the keys were written is gone (expired, or
    /// revoked): nothing of ours is in etcd any more; write all we own again.
    pub fn lease_lost(&mut self, now: Instant) {
        self.written.clear();
        self.dirty = self.owned.keys().cloned().collect();
        self.due = (!self.dirty.is_empty()).then_some(now);
    }

    /// When the next batch is due, if anything waits and none is in flight.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.in_flight { None } else { self.due }
    }

    /// The next batch to write, if one is due at `now`: at most
    /// [`MAX_BATCH_OPS`] operations, each key's latest state. Call
    /// [`written`](Self::written) or [`failed`](Self::failed) with it.
    pub fn poll_batch(&mut self, now: Instant) -> Option<Vec<Op>> {
        if self.in_flight || self.due.is_none_or(|d| now < d) {
            return None;
        }
        let batch: Vec<Op> = self
            .dirty
            .iter()
            .take(MAX_BATCH_OPS)
            .map(|k| (k.clone(), self.owned.get(k).cloned()))
            .collect();
        if batch.is_empty() {
            self.due = None;
            return None;
        }
        self.in_flight = true;
        Some(batch)
    }

    /// `batch` is in etcd. Keys that changed again since stay queued.
    pub fn written(&mut self, now: Instant, batch: &[Op]) {
        self.in_flight = false;
        for (key, value) in batch {
            match value {
                Some(_) => self.written.insert(key.clone()),
                None => self.written.remove(key),
            };
            if self.owned.get(key) == value.as_ref() {
                self.dirty.remove(key);
            }
        }
        // The rest goes out right away, not one interval per batch.
        self.due = (!self.dirty.is_empty()).then_some(now);
    }

    /// Writing the batch failed (etcd unreachable, no quorum): everything
    /// stays queued, the next attempt after [`RETRY_INTERVAL`].
    pub fn failed(&mut self, now: Instant) {
        self.in_flight = false;
        self.due = Some(now + RETRY_INTERVAL);
    }

    /// Keys waiting to be written.
    pub fn pending(&self) -> usize {
        self.dirty.len()
    }

    /// Keys this switch owns.
    pub fn owned(&self) -> usize {
        self.owned.len()
    }

    /// Whether `key` is ours, with this value.
    pub fn owns(&self, key: &Key, value: &Value) -> bool {
        self.owned.get(key) == Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac_key(n: u8) -> Key {
        Key::Mac {
            network: "default".into(),
            vlan: 1,
            mac: [2, 0, 0, 0, 0, n].into(),
        }
    }

    fn owner(s: &str) -> Value {
        Value {
            switch: Some(s.into()),
            ..Value::default()
        }
    }

    #[test]
    fn churn_coalesces_to_the_latest_state_per_key() {
        let t0 = Instant::now();
        let mut o = Outbox::new();
        for i in 0..100 {
            let v = if i % 2 == 0 { "s1" } else { "s2" };
            o.set(t0, mac_key(1), owner(v));
        }
        o.set(t0, mac_key(2), owner("s1"));
        o.remove(t0, &mac_key(2)); // never written: no delete needed
        assert_eq!(o.pending(), 1);
        assert_eq!(o.poll_timeout(), Some(t0 + BATCH_INTERVAL));
        assert_eq!(o.poll_batch(t0), None, "not due yet");
        let b = o.poll_batch(t0 + BATCH_INTERVAL).expect("due");
        assert_eq!(b, vec![(mac_key(1), Some(owner("s2")))]);
        assert_eq!(o.poll_timeout(), None, "one batch in flight at a time");
        o.written(t0 + BATCH_INTERVAL, &b);
        assert_eq!(o.pending(), 0);
        assert_eq!(o.poll_timeout(), None);

        // Now written: removing it needs a delete.
        o.remove(t0 + BATCH_INTERVAL, &mac_key(1));
        let t1 = t0 + 2 * BATCH_INTERVAL;
        assert_eq!(o.poll_batch(t1), Some(vec![(mac_key(1), None)]));
    }

    #[test]
    fn a_failed_batch_stays_queued_and_newer_changes_win() {
        let t0 = Instant::now();
        let mut o = Outbox::new();
        o.set(t0, mac_key(1), owner("s1"));
        let b = o.poll_batch(t0 + BATCH_INTERVAL).unwrap();
        // A change arrives while the batch is in flight; the batch fails.
        o.set(t0, mac_key(1), owner("s3"));
        o.failed(t0 + BATCH_INTERVAL);
        assert_eq!(o.poll_timeout(), Some(t0 + BATCH_INTERVAL + RETRY_INTERVAL));
        let t1 = t0 + BATCH_INTERVAL + RETRY_INTERVAL;
        let b2 = o.poll_batch(t1).unwrap();
        assert_eq!(b2, vec![(mac_key(1), Some(owner("s3")))]);
        // An older batch acknowledged late does not clear the newer change.
        o.written(t1, &b);
        assert_eq!(o.pending(), 1);
    }

    #[test]
    fn big_changes_go_in_bounded_batches_back_to_back() {
        let t0 = Instant::now();
        let mut o = Outbox::new();
        for n in 0..150 {
            o.set(t0, mac_key(n), owner("s1"));
        }
        let t1 = t0 + BATCH_INTERVAL;
        let mut batches = 0;
        while let Some(b) = o.poll_batch(t1) {
            assert!(b.len() <= MAX_BATCH_OPS);
            o.written(t1, &b);
            batches += 1;
        }
        assert_eq!(batches, 3);
        assert_eq!(o.pending(), 0);
        assert_eq!(o.owned(), 150);
    }

    #[test]
    fn a_lost_lease_rewrites_everything_owned() {
        let t0 = Instant::now();
        let mut o = Outbox::new();
        o.set(t0, mac_key(1), owner("s1"));
        o.set(t0, mac_key(2), owner("s1"));
        let b = o.poll_batch(t0 + BATCH_INTERVAL).unwrap();
        o.written(t0 + BATCH_INTERVAL, &b);
        o.remove(t0, &mac_key(2));
        let t1 = t0 + Duration::from_secs(30);
        o.lease_lost(t1);
        assert_eq!(o.poll_timeout(), Some(t1), "rewrite right away");
        let b = o.poll_batch(t1).unwrap();
        assert_eq!(
            b,
            vec![(mac_key(1), Some(owner("s1")))],
            "no delete: the lease took it"
        );
        assert!(o.owns(&mac_key(1), &owner("s1")));
    }
}
