//! The switch task's end of the etcd store: owns the [`Outbox`], hands the
//! store one batch at a time, and turns the store's reports into
//! [`ClusterUpdate`]s for the engine. Nothing here waits: the switch's task
//! calls [`EtcdLink::handle_local_change`] as the engine reports changes,
//! [`EtcdLink::handle_report`] for each report it received,
//! [`EtcdLink::handle_timeout`] when [`EtcdLink::poll_timeout`] is due, and
//! drains [`EtcdLink::poll_update`] into the engine.
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use tokio::sync::mpsc::error::TrySendError;

use crate::cluster::{ClusterConfig, ClusterUpdate, LocalChange, StoreState};
use crate::networks::Networks;

use super::bridge;
use super::outbox::Outbox;
use super::status::{Connection, EtcdStatus};
use super::store::{self, Report, Settings};

/// The etcd side of a switch in a cluster.
#[derive(Debug)]
pub struct EtcdLink {
    me: String,
    outbox: Outbox,
    store: store::Handle,
    updates: VecDeque<ClusterUpdate>,
    told: StoreState,
}

impl EtcdLink {
    /// Starts the store task (on the current runtime) if `cluster` names
    /// etcd endpoints; this switch serves `networks` and listens at
    /// `listen` (its `switch` keys).
    pub fn start<'a>(
        now: Instant,
        cluster: &ClusterConfig,
        networks: impl IntoIterator<Item = &'a str>,
        listen: SocketAddr,
    ) -> Option<EtcdLink> {
        if cluster.etcd_endpoints.is_empty() {
            return None;
        }
        let store = store::spawn(Settings {
            endpoints: cluster.etcd_endpoints.clone(),
            credentials: cluster.etcd_credentials.clone(),
            prefix: cluster.prefix.clone(),
            lease_ttl: cluster.lease_ttl,
        });
        let mut outbox = Outbox::new();
        for network in networks {
            let (key, value) = bridge::switch_key(&cluster.name, network, listen);
            outbox.set(now, key, value);
        }
        Some(EtcdLink {
            me: cluster.name.to_string(),
            outbox,
            store,
            updates: VecDeque::new(),
            told: StoreState::default(),
        })
    }

    /// The engine reports a change of what this switch owns.
    pub fn handle_local_change(&mut self, now: Instant, change: &LocalChange) {
        match bridge::local_op(&self.me, change) {
            (key, Some(value)) => self.outbox.set(now, key, value),
            (key, None) => self.outbox.remove(now, &key),
        }
    }

    /// The next report of the store (cancel-safe: for `select!`).
    pub async fn report(&mut self) -> Option<Report> {
        self.store.reports.recv().await
    }

    /// Another report, if one is waiting.
    pub fn try_report(&mut self) -> Option<Report> {
        self.store.reports.try_recv().ok()
    }

    /// Takes in a report of the store.
    pub fn handle_report(&mut self, now: Instant, report: Report) {
        match &report {
            Report::Written(batch) => self.outbox.written(now, batch),
            Report::WriteFailed => self.outbox.failed(now),
            Report::LeaseGranted => self.outbox.lease_lost(now),
            _ => {
                let mut out = Vec::new();
                bridge::updates(&self.me, &report, &mut out);
                self.updates.extend(out);
            }
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.outbox.poll_timeout()
    }

    /// Hands the store the next batch, if one is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(batch) = self.outbox.poll_batch(now) else {
            return;
        };
        match self.store.batches.try_send(batch) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Closed(_)) => self.outbox.failed(now),
        }
    }

    /// The next update for the engine: what other switches own, and the
    /// store's state when it changed.
    pub fn poll_update(&mut self) -> Option<ClusterUpdate> {
        if let Some(u) = self.updates.pop_front() {
            return Some(u);
        }
        let s = self.store.status.borrow();
        let now = StoreState {
            connected: s.connection == Connection::Connected,
            revision: s.revision,
        };
        drop(s);
        (now != self.told).then(|| {
            self.told = now;
            ClusterUpdate::Store(now)
        })
    }

    /// The store's status, with the outbox's counts.
    pub fn status(&self) -> EtcdStatus {
        EtcdStatus {
            owned: self.outbox.owned() as u64,
            pending: self.outbox.pending() as u64,
            ..self.store.status.borrow().clone()
        }
    }
}

/// At most this many reports are taken per wakeup (then the datagrams get
/// their turn again).
const REPORTS_PER_WAKEUP: usize = 256;

/// Takes `first` and the reports waiting behind it, up to
/// [`REPORTS_PER_WAKEUP`].
pub fn take_reports(link: &mut EtcdLink, first: Report, now: Instant) {
    link.handle_report(now, first);
    for _ in 1..REPORTS_PER_WAKEUP {
        let Some(r) = link.try_report() else { break };
        link.handle_report(now, r);
    }
}

/// One exchange between the engine and the store, after the engine's
/// timers: its local changes into the outbox, a due batch to the store,
/// the store's updates into the engine.
pub fn exchange(link: &mut EtcdLink, core: &mut Networks, now: Instant) {
    while let Some(c) = core.poll_local_change() {
        link.handle_local_change(now, &c);
    }
    link.handle_timeout(now);
    while let Some(u) = link.poll_update() {
        core.handle_cluster_update(now, &u);
    }
}
