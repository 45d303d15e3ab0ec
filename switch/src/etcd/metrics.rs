//! The etcd store's metrics (part of the switch's `/metrics`): connection
//! state, revision, lease, writes, watch events, resyncs. Labels are
//! bounded: `state`, `cause`.
use tapmesh_shell::metrics::{Def, Exposition};

use super::status::{Connection, EtcdStatus};

pub const CONNECTION: Def = Def::gauge(
    "tapmesh_switch_etcd_connection",
    &["state"],
    "1 for the etcd store's state now (connecting, connected, down), 0 for the others.",
);
pub const REVISION: Def = Def::gauge(
    "tapmesh_switch_etcd_revision",
    &[],
    "The last etcd revision the switch has seen.",
);
pub const LEASE_TTL: Def = Def::gauge(
    "tapmesh_switch_etcd_lease_ttl_seconds",
    &[],
    "Seconds left on the switch's etcd lease at the last keep-alive answer.",
);
pub const LEASES: Def = Def::counter(
    "tapmesh_switch_etcd_leases_granted_total",
    &[],
    "etcd leases granted: the first, and one after each expiry (everything owned is then written again).",
);
pub const KEYS: Def = Def::gauge(
    "tapmesh_switch_etcd_keys",
    &["state"],
    "Keys this switch owns (owned), and of those not yet written (pending).",
);
pub const CONNECT_FAILURES: Def = Def::counter(
    "tapmesh_switch_etcd_connect_failures_total",
    &[],
    "Connection attempts to etcd that failed (unreachable, TLS refused, authentication failed); the reason is logged once per outage.",
);
pub const TXNS: Def = Def::counter(
    "tapmesh_switch_etcd_txns_total",
    &["result"],
    "etcd transactions (batches of writes): ok, failed (retried).",
);
pub const WRITES: Def = Def::counter(
    "tapmesh_switch_etcd_writes_total",
    &[],
    "Keys written or deleted in etcd (rate: the etcd load this switch makes).",
);
pub const WATCH_EVENTS: Def = Def::counter(
    "tapmesh_switch_etcd_watch_events_total",
    &[],
    "Watch events received from etcd (other switches' changes).",
);
pub const RESYNCS: Def = Def::counter(
    "tapmesh_switch_etcd_resyncs_total",
    &["cause"],
    "Whole re-reads of the prefix: the first connection (connect), or a watch cancelled by compaction (compaction).",
);
pub const IGNORED: Def = Def::counter(
    "tapmesh_switch_etcd_ignored_total",
    &[],
    "Keys or values under the prefix this version does not understand (ignored).",
);

/// Writes the store's metrics.
pub fn export(e: &EtcdStatus, out: &mut Exposition) {
    for c in [
        Connection::Connecting,
        Connection::Connected,
        Connection::Down,
    ] {
        out.gauge(
            &CONNECTION,
            &[c.as_str()],
            f64::from(u8::from(e.connection == c)),
        );
    }
    out.gauge(&REVISION, &[], e.revision as f64);
    out.gauge(&LEASE_TTL, &[], e.lease_ttl_left_secs as f64);
    out.counter(&LEASES, &[], e.leases_granted);
    out.counter(&CONNECT_FAILURES, &[], e.connect_failures);
    out.gauge(&KEYS, &["owned"], e.owned as f64);
    out.gauge(&KEYS, &["pending"], e.pending as f64);
    out.counter(&TXNS, &["ok"], e.txns);
    out.counter(&TXNS, &["failed"], e.write_failures);
    out.counter(&WRITES, &[], e.writes);
    out.counter(&WATCH_EVENTS, &[], e.watch_events);
    out.counter(
        &RESYNCS,
        &["connect"],
        e.resyncs.saturating_sub(e.compactions),
    );
    out.counter(&RESYNCS, &["compaction"], e.compactions);
    out.counter(&IGNORED, &[], e.ignored);
}
