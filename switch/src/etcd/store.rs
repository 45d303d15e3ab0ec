//! The etcd store: its own tokio task, the I/O side of the cluster state.
//!
//! It holds this switch's lease and keeps it alive, writes the batches the
//! switch's task hands it (one transaction each, every key under the lease),
//! reads the whole prefix once and then watches it from the revision read,
//! and reports other switches' keys back. It never blocks the data path:
//! the switch's task talks to it over two bounded channels, sends a batch
//! only when none is in flight ([`super::outbox::Outbox`] decides), and
//! drains the reports between datagram batches.
//!
//! Outages: every call has a deadline ([`CALL_TIMEOUT`]); a keep-alive
//! unanswered for [`LIVENESS`] or any failed call ends the session, the
//! connection goes `down`, batches are answered [`Report::WriteFailed`] (the
//! outbox keeps them), and the task reconnects every [`RECONNECT_INTERVAL`].
//! On reconnection it asks whether the lease still lives; if it expired
//! meanwhile (etcd then deleted everything written under it), it grants a
//! new one and reports [`Report::LeaseGranted`], so the switch writes all it
//! owns again. The first connection reads the whole prefix
//! ([`Report::Resync`]) and watches from the revision read; a reconnection
//! watches on from the last revision seen and so gets every change it
//! missed, unless etcd compacted that history meanwhile: then the watch is
//! cancelled with the compact revision, and the store reads the whole
//! prefix again (a resync) and watches from there.
//!
//! Deletes are guarded by the lease: a key another switch has taken over
//! since (a MAC that moved) is not deleted by the switch that lost it.
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, PutOptions, Txn, TxnOp,
    WatchOptions,
};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, timeout};

use super::credentials::Credentials;
use super::keys::{self, Key, Value};
use super::outbox::Op;
use super::status::{Connection, EtcdStatus};

/// Deadline of every call to etcd (connect, grant, read, write).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between connection attempts while etcd is unreachable.
pub const RECONNECT_INTERVAL: Duration = Duration::from_secs(1);
/// Reports waiting for the switch's task, at most.
pub const REPORT_QUEUE: usize = 1024;
/// Without a keep-alive answer for this long, the session is considered
/// lost (the lease may still live; the reconnection finds out).
pub const LIVENESS: Duration = Duration::from_secs(3);

/// Where and how the store works.
#[derive(Debug, Clone)]
pub struct Settings {
    /// etcd client URLs (`http://host:2379` or all `https://`).
    pub endpoints: Vec<String>,
    /// TLS and the user, as configured.
    pub credentials: Credentials,
    /// The key prefix of this cluster.
    pub prefix: String,
    /// TTL of this switch's lease.
    pub lease_ttl: Duration,
}

/// From the store to the switch's task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// This batch is in etcd.
    Written(Vec<Op>),
    /// The batch was not written; it is still queued.
    WriteFailed,
    /// A new lease: nothing of this switch is in etcd; write all again.
    LeaseGranted,
    /// `key` was written (by any switch, this one too), replacing `prev`.
    Put {
        key: Key,
        value: Value,
        prev: Option<Value>,
    },
    /// `key` is gone (deleted, or its lease expired); `prev` was its value.
    Delete { key: Key, prev: Option<Value> },
    /// Everything under the prefix as of `revision`; replaces what was
    /// known.
    Resync {
        revision: i64,
        entries: Vec<(Key, Value)>,
    },
}

/// The switch's end of the store.
#[derive(Debug)]
pub struct Handle {
    /// Batches to write (one in flight at a time).
    pub batches: mpsc::Sender<Vec<Op>>,
    /// What the store has to say.
    pub reports: mpsc::Receiver<Report>,
    /// The store's status, updated as it changes.
    pub status: watch::Receiver<EtcdStatus>,
}

/// Starts the store task on the current runtime.
pub fn spawn(settings: Settings) -> Handle {
    let (batch_tx, batch_rx) = mpsc::channel(2);
    let (report_tx, report_rx) = mpsc::channel(REPORT_QUEUE);
    let (status_tx, status_rx) = watch::channel(EtcdStatus {
        lease_ttl_secs: settings.lease_ttl.as_secs(),
        ..EtcdStatus::default()
    });
    let store = Store {
        settings,
        batches: batch_rx,
        reports: report_tx,
        status: status_tx,
        lease: None,
        seen: None,
    };
    tokio::spawn(store.run());
    Handle {
        batches: batch_tx,
        reports: report_rx,
        status: status_rx,
    }
}

/// Why a session ended.
#[derive(Debug)]
enum End {
    /// The switch's task is gone: stop.
    Shutdown,
    /// etcd failed us: reconnect.
    Lost(String),
}

impl<E: std::fmt::Display> From<E> for End {
    fn from(e: E) -> End {
        End::Lost(e.to_string())
    }
}

async fn deadline<T, E: std::fmt::Display>(
    what: &str,
    f: impl Future<Output = Result<T, E>>,
) -> Result<T, End> {
    match timeout(CALL_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(End::Lost(format!("{what}: {e}"))),
        Err(_) => Err(End::Lost(format!("{what}: no answer in {CALL_TIMEOUT:?}"))),
    }
}

struct Store {
    settings: Settings,
    batches: mpsc::Receiver<Vec<Op>>,
    reports: mpsc::Sender<Report>,
    status: watch::Sender<EtcdStatus>,
    /// The lease this switch's keys live under, as far as we know.
    lease: Option<i64>,
    /// The last revision seen, kept across sessions: a reconnection
    /// watches on from there (and gets what it missed), unless etcd has
    /// compacted that history away.
    seen: Option<i64>,
}

impl Store {
    async fn run(mut self) {
        let mut logged_down = false;
        loop {
            self.set(|s| s.connection = Connection::Connecting);
            match self.session().await {
                End::Shutdown => return,
                End::Lost(why) => {
                    if self.status.borrow().connection != Connection::Connected {
                        self.set(|s| s.connect_failures += 1);
                    }
                    if !logged_down {
                        tracing::warn!(error = %why, "etcd unreachable; forwarding goes on with the known state, local changes are queued");
                        logged_down = true;
                    } else {
                        tracing::debug!(error = %why, "etcd still unreachable");
                    }
                }
            }
            self.set(|s| s.connection = Connection::Down);
            // Refuse batches while down (the outbox keeps them), until the
            // next attempt.
            let until = Instant::now() + RECONNECT_INTERVAL;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => break,
                    b = self.batches.recv() => match b {
                        None => return,
                        Some(_) => {
                            self.set(|s| s.write_failures += 1);
                            if self.report(Report::WriteFailed).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            }
            if self.status.borrow().connection == Connection::Connected {
                logged_down = false;
            }
        }
    }

    fn saw(&mut self, rev: i64) {
        self.seen = Some(rev);
        self.set(|s| s.revision = rev);
    }

    fn set(&self, f: impl FnOnce(&mut EtcdStatus)) {
        self.status.send_modify(f);
    }

    async fn report(&self, r: Report) -> Result<(), End> {
        self.reports.send(r).await.map_err(|_| End::Shutdown)
    }

    /// One connection: lease, read, watch, write, until something fails.
    async fn session(&mut self) -> End {
        match self.session_inner().await {
            Ok(()) => End::Shutdown,
            Err(e) => e,
        }
    }

    async fn session_inner(&mut self) -> Result<(), End> {
        let opts = self.settings.credentials.connect_options(
            ConnectOptions::new()
                .with_connect_timeout(CALL_TIMEOUT)
                .with_timeout(CALL_TIMEOUT)
                .with_keep_alive(Duration::from_secs(1), CALL_TIMEOUT),
        );
        let mut client = deadline(
            "connect",
            Client::connect(&self.settings.endpoints, Some(opts)),
        )
        .await?;

        // The lease: the old one if it still lives, else a new one.
        let ttl = self.settings.lease_ttl.as_secs().max(1) as i64;
        let (mut keeper, mut alive) = match self.lease {
            // etcd-client's keep_alive sends the first keep-alive and reads
            // its answer: a lease that expired meanwhile is an error of its
            // own kind ("lease not found").
            Some(id) => match timeout(CALL_TIMEOUT, client.lease_keep_alive(id)).await {
                Ok(Ok(kept)) => kept,
                Ok(Err(etcd_client::Error::LeaseKeepAliveError(_))) => {
                    tracing::info!(
                        lease = id,
                        "the etcd lease expired during the outage; writing everything again"
                    );
                    self.lease = None;
                    self.grant(&mut client, ttl).await?
                }
                Ok(Err(e)) => return Err(End::Lost(format!("keep-alive: {e}"))),
                Err(_) => {
                    return Err(End::Lost(format!(
                        "keep-alive: no answer in {CALL_TIMEOUT:?}"
                    )));
                }
            },
            None => self.grant(&mut client, ttl).await?,
        };
        let lease = self.lease.expect("granted or kept");

        let prefix = format!("{}/", self.settings.prefix.trim_end_matches('/'));
        let mut rev = match self.seen {
            Some(r) => r,
            None => self.resync(&mut client, &prefix).await?,
        };
        let mut watcher = self.watch(&mut client, &prefix, rev).await?;
        self.set(|s| {
            s.connection = Connection::Connected;
            s.connects += 1;
        });
        tracing::info!(lease, revision = rev, "etcd connected");

        let tick = (self.settings.lease_ttl / 3).max(Duration::from_millis(500));
        let mut keepalive = tokio::time::interval(tick);
        let mut answered = Instant::now();
        loop {
            tokio::select! {
                _ = keepalive.tick() => {
                    if answered.elapsed() > LIVENESS.max(tick * 2) {
                        return Err(End::Lost("keep-alive unanswered".into()));
                    }
                    deadline("keep-alive", keeper.keep_alive()).await?;
                }
                m = alive.message() => {
                    let r = m?.ok_or_else(|| End::Lost("keep-alive stream ended".into()))?;
                    if r.ttl() <= 0 {
                        return Err(End::Lost("the lease expired".into()));
                    }
                    answered = Instant::now();
                    self.set(|s| s.lease_ttl_left_secs = r.ttl());
                }
                m = watcher.message() => {
                    let resp = m?.ok_or_else(|| End::Lost("watch stream ended".into()))?;
                    if resp.canceled() {
                        if resp.compact_revision() <= 0 {
                            return Err(End::Lost(format!("watch cancelled: {}", resp.cancel_reason())));
                        }
                        tracing::info!(compacted = resp.compact_revision(), "etcd watch fell behind a compaction; reading the prefix again");
                        self.set(|s| s.compactions += 1);
                        rev = self.resync(&mut client, &prefix).await?;
                        watcher = self.watch(&mut client, &prefix, rev).await?;
                        continue;
                    }
                    // Only events move the revision seen: a catching-up
                    // watch's header is already at the store's head.
                    for ev in resp.events() {
                        self.set(|s| s.watch_events += 1);
                        let Some(kv) = ev.kv() else { continue };
                        rev = rev.max(kv.mod_revision());
                        let prev = ev.prev_kv().and_then(|p| self.parse(p.key(), p.value())).map(|(_, v)| v);
                        let report = match ev.event_type() {
                            EventType::Put => self
                                .parse(kv.key(), kv.value())
                                .map(|(key, value)| Report::Put { key, value, prev }),
                            EventType::Delete => keys::parse_key(&self.settings.prefix, kv.key())
                                .map(|key| Report::Delete { key, prev }),
                        };
                        if let Some(r) = report {
                            self.report(r).await?;
                        }
                    }
                    self.saw(rev);
                }
                b = self.batches.recv() => {
                    let Some(batch) = b else { return Ok(()) };
                    match deadline("write", client.txn(txn(&self.settings.prefix, lease, &batch))).await {
                        Ok(_) => {
                            let n = batch.len() as u64;
                            self.set(|s| { s.txns += 1; s.writes += n; });
                            self.report(Report::Written(batch)).await?;
                        }
                        Err(e) => {
                            self.set(|s| s.write_failures += 1);
                            self.report(Report::WriteFailed).await?;
                            return Err(e);
                        }
                    }
                }
            }
        }
    }

    async fn grant(
        &mut self,
        client: &mut Client,
        ttl: i64,
    ) -> Result<(etcd_client::LeaseKeeper, etcd_client::LeaseKeepAliveStream), End> {
        let g = deadline("lease grant", client.lease_grant(ttl, None)).await?;
        let id = g.id();
        self.lease = Some(id);
        self.set(|s| {
            s.lease_id = id;
            s.leases_granted += 1;
            s.lease_ttl_left_secs = g.ttl();
        });
        self.report(Report::LeaseGranted).await?;
        deadline("keep-alive", client.lease_keep_alive(id)).await
    }

    /// Reads the whole prefix and reports it; returns its revision.
    async fn resync(&mut self, client: &mut Client, prefix: &str) -> Result<i64, End> {
        let resp = deadline(
            "read",
            client.get(prefix, Some(GetOptions::new().with_prefix())),
        )
        .await?;
        let rev = resp.header().map_or(0, |h| h.revision());
        let entries: Vec<(Key, Value)> = resp
            .kvs()
            .iter()
            .filter_map(|kv| self.parse(kv.key(), kv.value()))
            .collect();
        self.set(|s| s.resyncs += 1);
        self.saw(rev);
        self.report(Report::Resync {
            revision: rev,
            entries,
        })
        .await?;
        Ok(rev)
    }

    async fn watch(
        &mut self,
        client: &mut Client,
        prefix: &str,
        rev: i64,
    ) -> Result<etcd_client::WatchStream, End> {
        let opts = WatchOptions::new()
            .with_prefix()
            .with_prev_key()
            .with_start_revision(rev + 1);
        deadline("watch", client.watch(prefix, Some(opts))).await
    }

    /// A key and value under the prefix; `None` (counted) for what this
    /// version does not understand.
    fn parse(&self, key: &[u8], value: &[u8]) -> Option<(Key, Value)> {
        let parsed = keys::parse_key(&self.settings.prefix, key)
            .and_then(|k| keys::parse_value(value).map(|v| (k, v)));
        if parsed.is_none() {
            self.set(|s| s.ignored += 1);
        }
        parsed
    }
}

/// One transaction for a batch: puts under the lease; deletes only where
/// the key is still under our lease (another switch may have taken it).
fn txn(prefix: &str, lease: i64, batch: &[Op]) -> Txn {
    let ops: Vec<TxnOp> = batch
        .iter()
        .map(|(k, v)| {
            let key = keys::encode_key(prefix, k);
            match v {
                Some(v) => TxnOp::put(key, v.encode(), Some(PutOptions::new().with_lease(lease))),
                None => TxnOp::txn(
                    Txn::new()
                        .when([Compare::lease(key.clone(), CompareOp::Equal, lease)])
                        .and_then([TxnOp::delete(key, None)]),
                ),
            }
        })
        .collect();
    Txn::new().and_then(ops)
}
