//! What the etcd store reports about itself: connection, revision, lease,
//! writes, watch events, resyncs. The store task publishes it; the switch's
//! status snapshot and metrics read a copy.
use serde::{Deserialize, Serialize};

/// The store's link to etcd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Connection {
    /// Connecting, granting a lease, reading the prefix.
    #[default]
    Connecting,
    /// Lease kept alive, watch running.
    Connected,
    /// The last attempt failed; retrying. Forwarding goes on with the
    /// state known so far, local changes wait in the outbox.
    Down,
}

impl Connection {
    /// As in status and the `state` label: `connecting`, `connected`, `down`.
    pub fn as_str(self) -> &'static str {
        match self {
            Connection::Connecting => "connecting",
            Connection::Connected => "connected",
            Connection::Down => "down",
        }
    }
}

/// A snapshot of the store (`etcd` in `status --json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct EtcdStatus {
    /// The link to etcd now.
    pub connection: Connection,
    /// The last revision seen (read or watched); 0 before the first.
    pub revision: i64,
    /// The lease this switch writes under (0: none yet).
    pub lease_id: i64,
    /// The TTL the lease is granted with, seconds.
    pub lease_ttl_secs: u64,
    /// Seconds left on the lease at the last keep-alive answer.
    pub lease_ttl_left_secs: i64,
    /// Leases granted (the first, and one after each expiry).
    pub leases_granted: u64,
    /// Connections made (the first, and one after each outage).
    pub connects: u64,
    /// Connection attempts that failed before the store was connected
    /// (etcd unreachable, TLS refused either way, authentication failed).
    pub connect_failures: u64,
    /// Transactions written.
    pub txns: u64,
    /// Keys written or deleted in them.
    pub writes: u64,
    /// Transactions that failed (they are retried).
    pub write_failures: u64,
    /// Watch events received (other switches' changes).
    pub watch_events: u64,
    /// Whole re-reads of the prefix: the first connection, and after a
    /// compaction took the history a reconnecting watch needed.
    pub resyncs: u64,
    /// Of those, after the watch was cancelled by a compaction.
    pub compactions: u64,
    /// Keys or values under the prefix this version does not understand
    /// (ignored).
    pub ignored: u64,
    /// Keys this switch owns (filled in by the switch's task).
    pub owned: u64,
    /// Keys waiting to be written (filled in by the switch's task).
    pub pending: u64,
}

/// The etcd lines of `tapmesh-switch status` (the human table).
pub fn render(out: &mut String, e: &EtcdStatus) {
    use std::fmt::Write;
    let _ = writeln!(
        out,
        "\netcd: {} revision {} lease {:x} ({}s left of {}s, {} granted), connects {} ({} failed)",
        e.connection.as_str(),
        e.revision,
        e.lease_id,
        e.lease_ttl_left_secs,
        e.lease_ttl_secs,
        e.leases_granted,
        e.connects,
        e.connect_failures
    );
    let _ = writeln!(
        out,
        "etcd keys: owned {} pending {}; writes {} in {} txns ({} failed); watch events {}; resyncs {} ({} after compaction); ignored {}",
        e.owned,
        e.pending,
        e.writes,
        e.txns,
        e.write_failures,
        e.watch_events,
        e.resyncs,
        e.compactions,
        e.ignored
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_names_state_revision_lease_and_counters() {
        let e = EtcdStatus {
            connection: Connection::Down,
            revision: 42,
            lease_id: 0x1f,
            lease_ttl_secs: 5,
            lease_ttl_left_secs: 3,
            leases_granted: 2,
            connects: 3,
            connect_failures: 5,
            txns: 7,
            writes: 90,
            write_failures: 1,
            watch_events: 11,
            resyncs: 4,
            compactions: 1,
            ignored: 0,
            owned: 12,
            pending: 2,
        };
        let mut out = String::new();
        render(&mut out, &e);
        assert!(
            out.contains("etcd: down revision 42 lease 1f (3s left of 5s, 2 granted)"),
            "{out}"
        );
        assert!(
            out.contains("owned 12 pending 2; writes 90 in 7 txns (1 failed)"),
            "{out}"
        );
        assert!(out.contains("resyncs 4 (1 after compaction)"), "{out}");
        assert!(out.contains("connects 3 (5 failed)"), "{out}");
    }
}
