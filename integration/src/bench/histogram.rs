//! A latency histogram with 1 µs buckets up to [`Histogram::RANGE_US`] and one
//! overflow bucket: recording is an increment, so it costs nothing per frame
//! that would distort a throughput run.
use std::time::Duration;

/// Counts of latencies in 1 µs buckets.
#[derive(Debug, Clone)]
pub struct Histogram {
    buckets: Vec<u64>,
    overflow: u64,
    count: u64,
    sum_ns: u128,
    max_ns: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    /// Latencies at or above this many µs land in the overflow bucket.
    pub const RANGE_US: usize = 1_000_000;

    /// An empty histogram.
    pub fn new() -> Histogram {
        Histogram {
            buckets: vec![0; Self::RANGE_US],
            overflow: 0,
            count: 0,
            sum_ns: 0,
            max_ns: 0,
        }
    }

    /// Records one latency in nanoseconds.
    pub fn record_ns(&mut self, ns: u64) {
        let us = (ns / 1000) as usize;
        match self.buckets.get_mut(us) {
            Some(b) => *b += 1,
            None => self.overflow += 1,
        }
        self.count += 1;
        self.sum_ns += u128::from(ns);
        self.max_ns = self.max_ns.max(ns);
    }

    /// Adds `other`'s counts to this one.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.overflow += other.overflow;
        self.count += other.count;
        self.sum_ns += other.sum_ns;
        self.max_ns = self.max_ns.max(other.max_ns);
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The mean, if any samples.
    pub fn mean(&self) -> Option<Duration> {
        (self.count > 0)
            .then(|| Duration::from_nanos((self.sum_ns / u128::from(self.count)) as u64))
    }

    /// The largest sample.
    pub fn max(&self) -> Duration {
        Duration::from_nanos(self.max_ns)
    }

    /// The upper edge of the bucket holding the `p`-th percentile (0..=100),
    /// by nearest rank; the maximum if it falls in the overflow bucket.
    pub fn percentile(&self, p: f64) -> Option<Duration> {
        if self.count == 0 {
            return None;
        }
        let rank = ((p / 100.0) * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (us, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(Duration::from_micros(us as u64 + 1));
            }
        }
        Some(self.max())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_bucket() {
        let mut h = Histogram::new();
        for us in 1..=100u64 {
            h.record_ns(us * 1000 + 500);
        }
        assert_eq!(h.count(), 100);
        assert_eq!(h.percentile(99.0), Some(Duration::from_micros(100)));
        assert_eq!(h.percentile(50.0), Some(Duration::from_micros(51)));
        h.record_ns(5_000_000_000);
        assert_eq!(h.percentile(100.0), Some(Duration::from_secs(5)));
    }
}
