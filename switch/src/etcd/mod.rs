//! Shared state of several switches in etcd (HA, see `docs/ha.md`).
//!
//! # Layout
//! - [`keys`]: the key space (`PREFIX/NETWORK/switch|node|mac|mcast/…`),
//!   encoding and parsing, sans-IO.
//! - [`outbox`]: what this switch owns and has still to write, coalesced
//!   per key and batched, sans-IO; the switch's task owns it.
//! - [`credentials`]: TLS and etcd's user towards the store, checked when
//!   the config is loaded.
//! - [`store`]: the I/O side, its own task: lease and keep-alive, batched
//!   transactions, the watch, resyncs, reconnection.
//! - [`bridge`]: the engine's `LocalChange`s as keys to write, the store's
//!   reports as `ClusterUpdate`s, sans-IO.
//! - [`link`]: the switch task's end of the store: the outbox, one batch in
//!   flight, reports in, updates out; never waits.
//! - [`status`]: what the store reports (status, the table's lines);
//!   [`metrics`] its metric families.
pub mod bridge;
pub mod credentials;
pub mod keys;
pub mod link;
pub mod metrics;
pub mod outbox;
pub mod status;
pub mod store;
