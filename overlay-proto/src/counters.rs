//! Drop counters by reason: plain integers in the cores, named when exported.
//! Each core defines its own reason enum and implements [`Reason`] for it.
use std::marker::PhantomData;

/// The most reasons one enum may have.
pub const MAX_REASONS: usize = 32;

/// A drop reason: a field-less enum whose discriminants are 0..N.
pub trait Reason: Copy + 'static {
    /// Every reason, in discriminant order.
    const ALL: &'static [Self];
    /// The discriminant, below [`MAX_REASONS`].
    fn index(self) -> usize;
    /// The stable snake_case name used in status output and metric labels.
    fn name(self) -> &'static str;
}

/// One counter per reason.
#[derive(Debug, Clone)]
pub struct DropCounters<R: Reason> {
    counts: [u64; MAX_REASONS],
    reason: PhantomData<R>,
}

impl<R: Reason> Default for DropCounters<R> {
    fn default() -> Self {
        DropCounters {
            counts: [0; MAX_REASONS],
            reason: PhantomData,
        }
    }
}

impl<R: Reason> DropCounters<R> {
    /// Count one drop.
    pub fn add(&mut self, r: R) {
        // HOT PATH (on bad input)
        self.counts[r.index()] += 1;
    }

    /// Count `n` drops at once.
    pub fn add_n(&mut self, r: R, n: u64) {
        self.counts[r.index()] += n;
    }

    /// The count for one reason.
    pub fn get(&self, r: R) -> u64 {
        self.counts[r.index()]
    }

    /// All drops.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Every reason with its count, in a stable order.
    pub fn iter(&self) -> impl Iterator<Item = (R, u64)> + '_ {
        R::ALL.iter().map(|&r| (r, self.get(r)))
    }
}

impl<R: Reason> std::ops::AddAssign<&DropCounters<R>> for DropCounters<R> {
    /// Sum two sets of counters (several cores in one process).
    fn add_assign(&mut self, other: &DropCounters<R>) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
    }
}

impl<R: Reason> serde::Serialize for DropCounters<R> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(R::ALL.len()))?;
        for (r, c) in self.iter() {
            m.serialize_entry(r.name(), &c)?;
        }
        m.end()
    }
}
