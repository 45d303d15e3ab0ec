//! The MAC table every learning switch in tapmesh uses: the switch (ports
//! are nodes), a node's local switch (its TAP, VMs and uplink) and a mesh
//! node (the peers behind which MACs live). Which port each source MAC was
//! last seen behind, per VLAN: the key is `(vlan, mac)`, as the same MAC may
//! live in two VLANs.
//!
//! Rules (STYLE.md practice 7, and the lessons of VpnCloud issues #13/#255):
//! - the owner learns only from frames that authenticated as coming from
//!   that port, never from frames it flooded; the table itself never learns
//!   a group (multicast/broadcast) or all-zero source;
//! - entries age out (`aging`, [`MAC_AGING`] like a Linux bridge) and a MAC
//!   seen behind another port moves at once (counted unless the old entry
//!   had aged out: then it is a new entry);
//! - a port may own at most `per_port_limit` MACs and the table at most
//!   `table_limit`; hitting either is counted;
//! - learning and lookup are O(1): aging happens in [`MacTable::expire`],
//!   which the owner calls from its timer, and which costs nothing until
//!   [`MacTable::next_expiry`];
//! - the hasher is keyed per process (`foldhash` random state): tenants choose
//!   MACs, so an attacker must not be able to aim them at one bucket.
//!
//! One owner: others read snapshots the owner builds. The entries live in a
//! [`MacMap`] backend: a plain `HashMap` ([`MacHashMap`], the default) or a
//! sharded concurrent `DashMap` ([`MacDashMap`]); the table's rules above are
//! written once, over either.
use std::collections::HashMap;
use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::ethernet::MacAddr;
use crate::vlan::Vid;

/// How long a learned MAC stays without traffic from it (a Linux bridge's
/// default `ageing_time`, 300 s).
pub const MAC_AGING: Duration = Duration::from_secs(300);
/// The most MACs a node's tables (its local switch, the MACs behind its mesh
/// peers) hold; beyond it new sources are not learned (their frames still
/// flow, flooded or relayed).
pub const MAC_LIMIT: usize = 4096;

/// A port of a table: anything that numbers its ports from 0.
pub trait PortIndex: Copy + Eq {
    /// The port's number, for per-port counts.
    fn index(self) -> usize;
}

impl PortIndex for usize {
    fn index(self) -> usize {
        self
    }
}

/// One learned MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MacEntry<P> {
    /// The port the MAC was last seen behind.
    pub port: P,
    /// When the entry ages out unless seen again.
    pub expires_at: Instant,
}

/// What [`MacTable::learn`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned<P> {
    /// A new entry.
    New,
    /// Already known behind this port; its age was reset.
    Refreshed,
    /// Was behind another port; now behind this one.
    Moved {
        /// Where it was.
        from: P,
    },
    /// A group or all-zero source: never learned.
    Invalid,
    /// The port already owns its limit of MACs; nothing learned.
    PortLimit,
    /// The table is full; nothing learned.
    TableFull,
}

/// What a table did since it was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MacTableCounters {
    /// New entries.
    pub learned: u64,
    /// Entries that moved to another port.
    pub moves: u64,
    /// Entries removed by aging.
    pub aged_out: u64,
    /// Entries removed because their port went away.
    pub flushed: u64,
    /// Per-port limit hits.
    pub port_limit_hits: u64,
    /// Table limit hits.
    pub table_limit_hits: u64,
}

/// What a table is keyed by: the VLAN and the MAC.
pub type MacKey = (Vid, MacAddr);

/// The map a [`MacTable`] keeps its entries in: the few operations the
/// table needs, so that its rules are written once over every backend.
/// Methods that change the map take `&mut self`, so a concurrent backend
/// holds no guard beyond one call.
pub trait MacMap<P> {
    /// An empty map hashing with a per-process random key.
    fn empty() -> Self;
    /// The entry for `key`.
    fn get(&self, key: &MacKey) -> Option<MacEntry<P>>;
    /// Run `f` on the entry for `key`, if there is one (one lookup).
    fn update<R>(&mut self, key: &MacKey, f: impl FnOnce(&mut MacEntry<P>) -> R) -> Option<R>;
    /// Add the entry for a `key` that has none.
    fn insert(&mut self, key: MacKey, entry: MacEntry<P>);
    /// Keep only the entries `keep` says yes to.
    fn retain(&mut self, keep: impl FnMut(&MacKey, &mut MacEntry<P>) -> bool);
    /// Every entry, in no particular order.
    fn entries(&self) -> impl Iterator<Item = (MacKey, MacEntry<P>)> + '_;
}

/// The default backend: a `HashMap`, for tables with one owner.
pub type MacHashMap<P> = HashMap<MacKey, MacEntry<P>, foldhash::fast::RandomState>;

/// A sharded concurrent backend: a `DashMap`, for a table that several
/// threads may come to share.
pub type MacDashMap<P> = DashMap<MacKey, MacEntry<P>, foldhash::fast::RandomState>;

impl<P: Copy> MacMap<P> for MacHashMap<P> {
    fn empty() -> Self {
        HashMap::with_hasher(foldhash::fast::RandomState::default())
    }

    fn get(&self, key: &MacKey) -> Option<MacEntry<P>> {
        HashMap::get(self, key).copied()
    }

    fn update<R>(&mut self, key: &MacKey, f: impl FnOnce(&mut MacEntry<P>) -> R) -> Option<R> {
        self.get_mut(key).map(f)
    }

    fn insert(&mut self, key: MacKey, entry: MacEntry<P>) {
        HashMap::insert(self, key, entry);
    }

    fn retain(&mut self, mut keep: impl FnMut(&MacKey, &mut MacEntry<P>) -> bool) {
        HashMap::retain(self, |k, e| keep(k, e));
    }

    fn entries(&self) -> impl Iterator<Item = (MacKey, MacEntry<P>)> + '_ {
        self.iter().map(|(&k, &e)| (k, e))
    }
}

impl<P: Copy> MacMap<P> for MacDashMap<P> {
    fn empty() -> Self {
        DashMap::with_hasher(foldhash::fast::RandomState::default())
    }

    fn get(&self, key: &MacKey) -> Option<MacEntry<P>> {
        DashMap::get(self, key).map(|e| *e)
    }

    fn update<R>(&mut self, key: &MacKey, f: impl FnOnce(&mut MacEntry<P>) -> R) -> Option<R> {
        // The shard's guard is dropped before this returns.
        self.get_mut(key).map(|mut e| f(&mut e))
    }

    fn insert(&mut self, key: MacKey, entry: MacEntry<P>) {
        DashMap::insert(self, key, entry);
    }

    fn retain(&mut self, mut keep: impl FnMut(&MacKey, &mut MacEntry<P>) -> bool) {
        DashMap::retain(self, |k, e| keep(k, e));
    }

    fn entries(&self) -> impl Iterator<Item = (MacKey, MacEntry<P>)> + '_ {
        self.iter().map(|r| (*r.key(), *r.value()))
    }
}

/// A `DashMap` behind an `Arc`: the owner learns through the table while
/// other threads hold the same map and read it (a multi-core switch's
/// workers).
impl<P: Copy> MacMap<P> for std::sync::Arc<MacDashMap<P>> {
    fn empty() -> Self {
        std::sync::Arc::new(<MacDashMap<P> as MacMap<P>>::empty())
    }

    fn get(&self, key: &MacKey) -> Option<MacEntry<P>> {
        <MacDashMap<P> as MacMap<P>>::get(self, key)
    }

    fn update<R>(&mut self, key: &MacKey, f: impl FnOnce(&mut MacEntry<P>) -> R) -> Option<R> {
        // `DashMap` takes its shard's lock: `&self` is enough.
        DashMap::get_mut(&**self, key).map(|mut e| f(&mut e))
    }

    fn insert(&mut self, key: MacKey, entry: MacEntry<P>) {
        DashMap::insert(&**self, key, entry);
    }

    fn retain(&mut self, mut keep: impl FnMut(&MacKey, &mut MacEntry<P>) -> bool) {
        DashMap::retain(&**self, |k, e| keep(k, e));
    }

    fn entries(&self) -> impl Iterator<Item = (MacKey, MacEntry<P>)> + '_ {
        self.iter().map(|r| (*r.key(), *r.value()))
    }
}

/// A MAC table keyed by VLAN and MAC, with aging and limits, its entries in
/// the backend `M`.
#[derive(Debug, Clone)]
pub struct MacTable<P, M = MacHashMap<P>> {
    map: M,
    /// Entries in `map`, kept here so that counting them is O(1) with every
    /// backend (a `DashMap` counts shard by shard).
    len: usize,
    per_port: Vec<usize>,
    /// Ports `per_port_limit` does not apply to (by index): a switch's
    /// trunk to another switch carries that switch's every MAC.
    exempt: Vec<bool>,
    aging: Duration,
    per_port_limit: usize,
    table_limit: usize,
    /// No entry expires before this (a lower bound; `None` when empty).
    next_expiry: Option<Instant>,
    counters: MacTableCounters,
    _port: std::marker::PhantomData<P>,
}

impl<P: PortIndex, M: MacMap<P>> MacTable<P, M> {
    /// An empty table.
    pub fn new(aging: Duration, per_port_limit: usize, table_limit: usize) -> Self {
        MacTable {
            map: M::empty(),
            len: 0,
            per_port: Vec::new(),
            exempt: Vec::new(),
            aging,
            per_port_limit,
            table_limit,
            next_expiry: None,
            counters: MacTableCounters::default(),
            _port: std::marker::PhantomData,
        }
    }

    /// New settings (a reload): the aging time for what is learned from now
    /// on, and limits that bound new learning (entries beyond a lowered
    /// limit stay until they age out or their port is flushed).
    pub fn reconfigure(&mut self, aging: Duration, per_port_limit: usize, table_limit: usize) {
        self.aging = aging;
        self.per_port_limit = per_port_limit;
        self.table_limit = table_limit;
    }

    /// Entries in the table (including ones whose time is up but that the
    /// next [`expire`](Self::expire) has not removed yet).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if no MAC is known.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Let `port` own any number of MACs (the table limit still holds).
    pub fn exempt_port(&mut self, port: P) {
        let i = port.index();
        if i >= self.exempt.len() {
            self.exempt.resize(i + 1, false);
        }
        self.exempt[i] = true;
    }

    /// MACs currently owned by `port`.
    pub fn count_for(&self, port: P) -> usize {
        self.per_port.get(port.index()).copied().unwrap_or(0)
    }

    /// The aging time.
    pub fn aging(&self) -> Duration {
        self.aging
    }

    /// The backend, for readers on other threads (see the `Arc` backend).
    pub fn map(&self) -> &M {
        &self.map
    }

    /// What the table did so far.
    pub fn counters(&self) -> &MacTableCounters {
        &self.counters
    }

    /// Record that `mac` was the source of an authenticated frame from
    /// `port` in VLAN `vlan`.
    pub fn learn(&mut self, now: Instant, vlan: Vid, mac: MacAddr, port: P) -> Learned<P> {
        // HOT PATH: the common case is a refresh of a known entry.
        if !mac.is_valid_source() {
            return Learned::Invalid;
        }
        let expires_at = now + self.aging;
        let i = port.index();
        if i >= self.per_port.len() {
            self.per_port.resize(i + 1, 0);
        }
        let per_port = &mut self.per_port;
        let counters = &mut self.counters;
        let limit = if self.exempt.get(i).copied().unwrap_or(false) {
            usize::MAX
        } else {
            self.per_port_limit
        };
        let known = self.map.update(&(vlan, mac), |e| {
            if e.port == port {
                e.expires_at = expires_at;
                return Learned::Refreshed;
            }
            if per_port[i] >= limit {
                counters.port_limit_hits += 1;
                return Learned::PortLimit;
            }
            let from = e.port;
            let live = e.expires_at > now;
            *e = MacEntry { port, expires_at };
            per_port[from.index()] -= 1;
            per_port[i] += 1;
            if live {
                counters.moves += 1;
                Learned::Moved { from }
            } else {
                counters.learned += 1;
                Learned::New
            }
        });
        let learned = match known {
            Some(Learned::PortLimit) => return Learned::PortLimit,
            Some(learned) => learned,
            None if self.per_port[i] >= limit => {
                self.counters.port_limit_hits += 1;
                return Learned::PortLimit;
            }
            None if self.len >= self.table_limit => {
                self.counters.table_limit_hits += 1;
                return Learned::TableFull;
            }
            None => {
                self.map.insert((vlan, mac), MacEntry { port, expires_at });
                self.len += 1;
                self.per_port[i] += 1;
                self.counters.learned += 1;
                Learned::New
            }
        };
        self.next_expiry = Some(self.next_expiry.map_or(expires_at, |t| t.min(expires_at)));
        learned
    }

    /// Reset the age of `mac` in VLAN `vlan` if it is behind `port` (aged
    /// out or not): what [`learn`](Self::learn) does when it says
    /// [`Learned::Refreshed`]. False if it is not behind `port`, for owners
    /// that check more than the table does before they learn.
    pub fn refresh(&mut self, now: Instant, vlan: Vid, mac: MacAddr, port: P) -> bool {
        // HOT PATH
        let t = now + self.aging;
        let refreshed = self.map.update(&(vlan, mac), |e| {
            let mine = e.port == port;
            if mine {
                e.expires_at = t;
            }
            mine
        });
        if refreshed != Some(true) {
            return false;
        }
        self.next_expiry = Some(self.next_expiry.map_or(t, |n| n.min(t)));
        true
    }

    /// Age `mac` in VLAN `vlan` out now if it is behind `port` (someone
    /// said it left): lookups miss it at once, the next
    /// [`expire`](Self::expire) removes it. Whether it was behind `port`.
    pub fn release(&mut self, now: Instant, vlan: Vid, mac: MacAddr, port: P) -> bool {
        let released = self.map.update(&(vlan, mac), |e| {
            let mine = e.port == port && e.expires_at > now;
            if mine {
                e.expires_at = now;
            }
            mine
        });
        if released != Some(true) {
            return false;
        }
        self.next_expiry = Some(self.next_expiry.map_or(now, |n| n.min(now)));
        true
    }

    /// The port behind `mac` in VLAN `vlan`, if known and not aged out.
    pub fn lookup(&self, now: Instant, vlan: Vid, mac: &MacAddr) -> Option<P> {
        // HOT PATH
        self.map
            .get(&(vlan, *mac))
            .filter(|e| e.expires_at > now)
            .map(|e| e.port)
    }

    /// Every entry, in no particular order (status snapshots, announcements).
    pub fn iter(&self) -> impl Iterator<Item = (Vid, MacAddr, MacEntry<P>)> + '_ {
        self.map.entries().map(|((v, m), e)| (v, m, e))
    }

    /// Keep only the entries `keep` says yes to. Returns how many went.
    pub fn retain(&mut self, mut keep: impl FnMut(Vid, MacAddr, &MacEntry<P>) -> bool) -> usize {
        let per_port = &mut self.per_port;
        let mut gone = 0;
        self.map.retain(|&(v, m), e| {
            let k = keep(v, m, e);
            if !k {
                per_port[e.port.index()] -= 1;
                gone += 1;
            }
            k
        });
        self.len -= gone;
        gone
    }

    /// Forget every MAC behind `port` (it left or went down). Returns how many.
    pub fn flush_port(&mut self, port: P) -> usize {
        if self.count_for(port) == 0 {
            return 0;
        }
        let n = self.retain(|_, _, e| e.port != port);
        self.counters.flushed += n as u64;
        n
    }

    /// Remove entries whose time is up. Returns how many. Costs nothing
    /// before [`next_expiry`](Self::next_expiry).
    pub fn expire(&mut self, now: Instant) -> usize {
        if self.next_expiry.is_none_or(|t| t > now) {
            return 0;
        }
        let n = self.retain(|_, _, e| e.expires_at > now);
        self.counters.aged_out += n as u64;
        self.next_expiry = self.map.entries().map(|(_, e)| e.expires_at).min();
        n
    }

    /// No entry ages out before this (`None` if the table is empty): when an
    /// [`expire`](Self::expire) may have work.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.next_expiry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: usize = 0;
    const B: usize = 1;
    const V: Vid = 1;

    fn mac(n: u32) -> MacAddr {
        let b = n.to_be_bytes();
        MacAddr([2, 0, b[0], b[1], b[2], b[3]])
    }

    fn table<M: MacMap<usize>>(per_port: usize, total: usize) -> MacTable<usize, M> {
        MacTable::new(Duration::from_secs(300), per_port, total)
    }

    /// Every test below, run against each backend: the same assertions prove
    /// both.
    macro_rules! each_backend {
        ($($name:ident),* $(,)?) => {
            mod hash_map {
                use super::super::MacHashMap;
                $(#[test]
                fn $name() {
                    super::$name::<MacHashMap<usize>>();
                })*
            }
            mod dash_map {
                use super::super::MacDashMap;
                $(#[test]
                fn $name() {
                    super::$name::<MacDashMap<usize>>();
                })*
            }
            mod shared_dash_map {
                use super::super::MacDashMap;
                $(#[test]
                fn $name() {
                    super::$name::<std::sync::Arc<MacDashMap<usize>>>();
                })*
            }
        };
    }

    each_backend!(
        learn_refresh_and_age_out,
        next_expiry_follows_the_oldest_entry,
        group_and_zero_sources_are_never_learned,
        move_takes_effect_at_once,
        an_aged_out_entry_is_not_a_move,
        per_port_limit_and_table_limit,
        vlans_are_separate_tables,
        retain_keeps_per_port_counts,
        exempt_ports_and_release,
    );

    fn exempt_ports_and_release<M: MacMap<usize>>() {
        let t0 = Instant::now();
        let mut t = table::<M>(2, 100);
        t.exempt_port(B);
        for i in 0..10 {
            assert_eq!(t.learn(t0, V, mac(i), B), Learned::New);
        }
        assert_eq!(t.learn(t0, V, mac(20), A), Learned::New);
        assert_eq!(t.learn(t0, V, mac(21), A), Learned::New);
        assert_eq!(t.learn(t0, V, mac(22), A), Learned::PortLimit);
        // Released by another port: nothing; by its own: gone at once.
        assert!(!t.release(t0, V, mac(1), A));
        assert_eq!(t.lookup(t0, V, &mac(1)), Some(B));
        assert!(t.release(t0, V, mac(1), B));
        assert!(!t.release(t0, V, mac(1), B), "already released");
        assert_eq!(t.lookup(t0, V, &mac(1)), None);
        assert_eq!(t.expire(t0), 1);
        assert_eq!(t.count_for(B), 9);
    }

    fn learn_refresh_and_age_out<M: MacMap<usize>>() {
        let t0 = Instant::now();
        let mut t = table::<M>(10, 100);
        assert_eq!(t.learn(t0, V, mac(1), A), Learned::New);
        assert_eq!(t.lookup(t0, V, &mac(1)), Some(A));
        let t1 = t0 + Duration::from_secs(200);
        assert_eq!(t.learn(t1, V, mac(1), A), Learned::Refreshed);
        // Refreshed at t1, so still there at t0 + 400 s, gone at t1 + 300 s.
        assert_eq!(t.lookup(t0 + Duration::from_secs(400), V, &mac(1)), Some(A));
        assert_eq!(t.lookup(t1 + Duration::from_secs(300), V, &mac(1)), None);
        assert_eq!(t.expire(t1 + Duration::from_secs(299)), 0);
        assert_eq!(t.expire(t1 + Duration::from_secs(300)), 1);
        assert!(t.is_empty());
        assert_eq!(t.count_for(A), 0);
        assert_eq!(t.next_expiry(), None);
        assert_eq!((t.counters().learned, t.counters().aged_out), (1, 1));
    }

    fn next_expiry_follows_the_oldest_entry<M: MacMap<usize>>() {
        let t0 = Instant::now();
        let mut t = table::<M>(10, 100);
        assert_eq!(t.next_expiry(), None);
        t.learn(t0, V, mac(1), A);
        let t1 = t0 + Duration::from_secs(100);
        t.learn(t1, V, mac(2), A);
        assert_eq!(t.next_expiry(), Some(t0 + t.aging()));
        assert_eq!(t.expire(t0 + t.aging()), 1);
        assert_eq!(t.next_expiry(), Some(t1 + t.aging()));
        assert_eq!(t.lookup(t1, V, &mac(2)), Some(A));
    }

    fn group_and_zero_sources_are_never_learned<M: MacMap<usize>>() {
        let t0 = Instant::now();
        let mut t = table::<M>(10, 100);
        for m in [
            MacAddr::ZERO,
            MacAddr::BROADCAST,
            MacAddr([1, 0, 0x5e, 0, 0, 1]),
        ] {
            assert_eq!(t.learn(t0, V, m, A), Learned::Invalid);
            assert_eq!(t.lookup(t0, V, &m), None);
        }
        assert!(t.is_empty());
        assert_eq!(t.counters().learned, 0);
    }

    fn move_takes_effect_at_once<M: MacMap<usize>>() {
        let t0 = Instant::now();
        let mut t = table::<M>(10, 100);
        t.learn(t0, V, mac(1), A);
        assert_eq!(t.learn(t0, V, mac(1), B), Learned::Moved { from: A });
        assert_eq!(t.lookup(t0, V, &mac(1)), Some(B));
        assert_eq!((t.count_for(A), t.count_for(B)), (0, 1));
        assert_eq!(t.counters().moves, 1);
    }

    fn an_aged_out_entry_is_not_a_move<M: MacMap<usize>>() {
        let t0 = Instant::now();
        let mut t = table::<M>(10, 100);
        t.learn(t0, V, mac(1), A);
        let later = t0 + t.aging();
        assert_eq!(t.learn(later, V, mac(1), B), Learned::New);
        assert_eq!((t.count_for(A), t.count_for(B)), (0, 1));
        assert_eq!((t.counters().moves, t.counters().learned), (0, 2));
        assert_eq!(t.len(), 1);
    }

    fn per_port_limit_and_table_limit<M: MacMap<usize>>() {
        let t0 = Instant::now();
        let mut t = table::<M>(3, 5);
        for i in 0..3 {
            assert_eq!(t.learn(t0, V, mac(i), A), Learned::New);
        }
        assert_eq!(t.learn(t0, V, mac(3), A), Learned::PortLimit);
        assert_eq!(t.lookup(t0, V, &mac(3)), None);
        // Known MACs of a full port still refresh.
        assert_eq!(t.learn(t0, V, mac(0), A), Learned::Refreshed);
        // A move into a full port is refused too.
        t.learn(t0, V, mac(10), B);
        assert_eq!(t.learn(t0, V, mac(10), A), Learned::PortLimit);
        t.learn(t0, V, mac(11), B);
        assert_eq!(t.len(), 5);
        assert_eq!(t.learn(t0, V, mac(12), B), Learned::TableFull);
        assert_eq!(
            (t.counters().port_limit_hits, t.counters().table_limit_hits),
            (2, 1)
        );
        assert_eq!(t.flush_port(A), 3);
        assert_eq!(t.counters().flushed, 3);
        assert_eq!(t.learn(t0, V, mac(12), B), Learned::New);
    }

    fn vlans_are_separate_tables<M: MacMap<usize>>() {
        let t0 = Instant::now();
        let mut t = table::<M>(10, 100);
        assert_eq!(t.learn(t0, 10, mac(1), A), Learned::New);
        assert_eq!(
            t.learn(t0, 20, mac(1), B),
            Learned::New,
            "same MAC, other VLAN: no move"
        );
        assert_eq!(t.lookup(t0, 10, &mac(1)), Some(A));
        assert_eq!(t.lookup(t0, 20, &mac(1)), Some(B));
        assert_eq!(t.lookup(t0, 30, &mac(1)), None);
    }

    fn retain_keeps_per_port_counts<M: MacMap<usize>>() {
        let t0 = Instant::now();
        let mut t = table::<M>(10, 100);
        t.learn(t0, V, mac(1), A);
        t.learn(t0, V, mac(2), A);
        t.learn(t0, V, mac(3), B);
        assert_eq!(t.retain(|_, m, _| m != mac(2)), 1);
        assert_eq!((t.count_for(A), t.count_for(B)), (1, 1));
        assert_eq!(t.iter().count(), 2);
        assert_eq!(t.len(), 2);
    }
}
