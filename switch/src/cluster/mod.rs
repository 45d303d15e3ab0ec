//! Several switches serving the same networks: what the forwarding engine
//! learns from the cluster and what it reports it owns. Sans-IO.
//!
//! A switch in a cluster (`[cluster]` in switch.toml) holds an encrypted
//! session with every other switch listed in `[[cluster.switch]]` (the
//! engine's trunk ports, see `fabric::trunk`) and, when etcd endpoints are
//! configured, shares what it owns through etcd. This module is the seam
//! between the two: the store side (the etcd client, a shell task) and the
//! engine side (one [`crate::fabric::Switch`] core per network) exchange
//! plain values only.
//!
//! # Into the engine: [`ClusterUpdate`]
//! The store turns what it watches into updates and hands each to
//! [`crate::networks::Networks::handle_cluster_update`], which gives it to
//! every network's core; each core keeps the part for its network in its
//! [`ClusterView`]. Facts are owned by one switch each:
//! - a switch is up (it holds its lease) or down (its lease ended: every
//!   fact it owned goes at once, and the engine forgets the MACs it learned
//!   behind it);
//! - a MAC ([`MacRef`]: network, VLAN, MAC) is owned by switch X (a node
//!   homed on X sent from it; the node's name too, if X said) or released;
//! - a group ([`GroupRef`]: network, VLAN, group address) has members behind
//!   switch X, or none any more. The unspecified address (`0.0.0.0`, `::`)
//!   stands for a multicast router behind X: X wants every group of that
//!   family in that VLAN;
//! - a node ([`NodeRef`]: network, node name) is homed on switch X at an
//!   underlay endpoint, or gone;
//! - [`ClusterUpdate::Resync`]: a full snapshot (after connecting, or after
//!   the watch fell behind a compaction) replaces everything known;
//! - [`ClusterUpdate::Store`]: the store's connection state and the last
//!   revision seen, for status, and whether the view can be trusted.
//!
//! # Out of the engine: [`LocalChange`]
//! Each core notes what this switch owns, as it changes: MACs learned from
//! its own nodes, groups its own nodes joined (or its router ports), nodes
//! connected to it. Changes are collected on the engine's sweep (every
//! [`crate::fabric::SWEEP_INTERVAL`]), so a MAC that comes and goes between
//! two sweeps costs no write, and each fact is reported once per change:
//! [`Networks::poll_local_change`](crate::networks::Networks::poll_local_change)
//! drains them for the store to write under this switch's lease.
//! [`Networks::local_snapshot`](crate::networks::Networks::local_snapshot)
//! gives everything this switch owns right now, for a store that must write
//! it all again (a new lease after an outage).
//!
//! # Without a store
//! With no etcd endpoints (static peering only) nothing calls
//! `handle_cluster_update`; the view stays unknown and the engine is safe
//! without it: it learns MACs behind other switches from their frames, and
//! what each other switch wants (VLANs, groups) from the announcements they
//! send over the trunks (`fabric::announce`).
//!
//! Names are `Arc<str>` ([`Name`]): switch names come from the config and
//! label metrics (bounded), network names are the config's.
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use overlay_proto::ethernet::MacAddr;
use overlay_proto::keys::PublicKey;

use crate::vlan::Vid;

pub(crate) mod metrics;
pub mod view;
pub use view::ClusterView;

/// A switch, network or node name.
pub type Name = Arc<str>;

/// `[cluster]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// This switch's name, unique in the cluster.
    pub name: Name,
    /// etcd client URLs; empty: no store, static peering only.
    pub etcd_endpoints: Vec<String>,
    /// TLS and user towards etcd (checked when loaded; secrets redacted
    /// from `Debug`).
    pub etcd_credentials: crate::etcd::credentials::Credentials,
    /// The TTL of this switch's etcd lease.
    pub lease_ttl: Duration,
    /// The etcd key prefix (absolute, no trailing `/`).
    pub prefix: String,
    /// The other switches.
    pub switches: Vec<PeerSwitch>,
}

/// `[[cluster.switch]]`: another switch, admitted by its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSwitch {
    /// Its name (its `[cluster] name`).
    pub name: Name,
    /// Its static public key.
    pub public_key: PublicKey,
    /// Its UDP listen address.
    pub endpoint: SocketAddr,
}

/// A MAC in one VLAN of one network.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacRef {
    /// The network's name.
    pub network: Name,
    /// The VLAN (`vlan::NO_VLAN` on a VLAN-unaware network).
    pub vlan: Vid,
    /// The MAC.
    pub mac: MacAddr,
}

/// A multicast group in one VLAN of one network; the unspecified address
/// stands for "every group of the family" (a multicast router).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupRef {
    /// The network's name.
    pub network: Name,
    /// The VLAN (`vlan::NO_VLAN` on a VLAN-unaware network).
    pub vlan: Vid,
    /// The group address, or `0.0.0.0`/`::` for a router port.
    pub group: IpAddr,
}

impl GroupRef {
    /// It stands for a multicast router (every group of its family).
    pub fn is_router(&self) -> bool {
        self.group.is_unspecified()
    }
}

/// A node of one network.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeRef {
    /// The network's name.
    pub network: Name,
    /// The node's configured name.
    pub node: Name,
}

/// Everything one switch owns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SwitchFacts {
    /// MACs learned from its nodes, each with the node's name if known.
    pub macs: Vec<(MacRef, Option<Name>)>,
    /// Groups with members (or routers) behind it.
    pub groups: Vec<GroupRef>,
    /// Nodes homed on it, with their underlay endpoints.
    pub nodes: Vec<(NodeRef, SocketAddr)>,
}

/// The whole cluster as the store has it at `revision`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The store revision the snapshot is at.
    pub revision: i64,
    /// Every switch that is up, with what it owns (this switch's own entry,
    /// if present, is ignored by the engine).
    pub switches: Vec<(Name, SwitchFacts)>,
}

/// The store's connection, as the store side sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreState {
    /// Connected, holding the lease, and the watch is current.
    pub connected: bool,
    /// The last revision seen (0: none yet).
    pub revision: i64,
}

/// What the store tells the engine (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterUpdate {
    /// Switch `0` holds its lease.
    SwitchUp(Name),
    /// Switch `0`'s lease ended: everything it owned is gone.
    SwitchDown(Name),
    /// `mac` is behind `switch`.
    MacOwned {
        /// The owner.
        switch: Name,
        /// The MAC.
        mac: MacRef,
        /// The node of `switch` it is behind, if the switch said.
        node: Option<Name>,
    },
    /// `switch` no longer has `mac`.
    MacReleased {
        /// The former owner.
        switch: Name,
        /// The MAC.
        mac: MacRef,
    },
    /// `group` has members (or a router) behind `switch`.
    GroupJoined {
        /// The switch with members.
        switch: Name,
        /// The group.
        group: GroupRef,
    },
    /// `group` has no member behind `switch` any more.
    GroupLeft {
        /// The switch.
        switch: Name,
        /// The group.
        group: GroupRef,
    },
    /// `node` is homed on `switch`, reachable at `endpoint`.
    NodeHomed {
        /// Its switch.
        switch: Name,
        /// The node.
        node: NodeRef,
        /// Its underlay endpoint as that switch sees it.
        endpoint: SocketAddr,
    },
    /// `node` is no longer homed on `switch`.
    NodeGone {
        /// The switch it was homed on.
        switch: Name,
        /// The node.
        node: NodeRef,
    },
    /// Everything, replacing what was known (see [`Snapshot`]).
    Resync(Snapshot),
    /// The store's connection state and last revision.
    Store(StoreState),
}

/// What this switch owns, as it changes: for the store to write under this
/// switch's lease (the switch is implied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalChange {
    /// A MAC learned from one of this switch's nodes (named), or moved to
    /// another of them.
    MacOwned(MacRef, Name),
    /// A MAC no longer behind this switch (aged out, moved, node gone).
    MacReleased(MacRef),
    /// The first member (or router) of a group behind this switch.
    GroupJoined(GroupRef),
    /// The last one left.
    GroupLeft(GroupRef),
    /// A node connected to this switch (or roamed to a new endpoint).
    NodeHomed(NodeRef, SocketAddr),
    /// A node left this switch (timed out, removed).
    NodeGone(NodeRef),
}
