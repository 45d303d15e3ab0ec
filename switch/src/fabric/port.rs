//! What the switch keeps per admitted node: its sessions, endpoint,
//! counters, reassembly and link impairment.

use std::net::SocketAddr;
use std::time::Instant;

use overlay_proto::frag::Reassembler;
use overlay_proto::handshake::Timestamp;
use overlay_proto::session::Session;

use super::NodeSpec;
use crate::impair::{self, ImpairCounters, LinkImpair, PortImpair};
use crate::stats::NodeCounters;

/// An admitted node's port.
#[derive(Debug)]
#[cfg_attr(fuzzing, derive(Clone))]
pub(super) struct Port {
    pub(super) spec: NodeSpec,
    pub(super) endpoint: Option<SocketAddr>,
    // Boxed: a session (keys, replay window) is ~2.5 KB, and most of the
    // three slots are empty; inline they cost every configured node 7.5 KB.
    pub(super) current: Option<Box<Session>>,
    pub(super) previous: Option<Box<Session>>,
    pub(super) pending: Option<Box<Session>>,
    pub(super) last_timestamp: Timestamp,
    pub(super) last_heard: Option<Instant>,
    pub(super) last_handshake: Option<Instant>,
    pub(super) counters: NodeCounters,
    /// The node accepts frames with a virtio-net header (handshake capability).
    pub(super) accepts_vnet: bool,
    /// Fragments from the node being put back together.
    pub(super) reassembly: Reassembler,
    /// Fragment ids for frames sent to the node.
    pub(super) next_frame_id: u32,
    /// Removed from the config by a reload: no sessions, not in status; the
    /// slot waits for the next added node (see `reload`).
    pub(super) retired: bool,
    /// Link impairment, while any is set or frames are held (see `impair`).
    pub(super) impair: Option<Box<PortImpair>>,
    /// What impairment did, egress and ingress (kept when it is cleared).
    pub(super) impair_counters: [ImpairCounters; 2],
}

impl Port {
    pub(super) fn new(spec: NodeSpec) -> Port {
        Port {
            spec,
            endpoint: None,
            current: None,
            previous: None,
            pending: None,
            last_timestamp: Timestamp::default(),
            last_heard: None,
            last_handshake: None,
            counters: NodeCounters::default(),
            accepts_vnet: false,
            reassembly: Reassembler::default(),
            next_frame_id: 0,
            retired: false,
            impair: None,
            impair_counters: Default::default(),
        }
    }

    /// Its link's impairment for status, if any was ever set.
    pub(super) fn impair_status(&self) -> Option<impair::ImpairStatus> {
        let c = &self.impair_counters;
        if self.impair.is_none() && c.iter().all(|c| c.frames == 0) {
            return None;
        }
        let (l, held) = match &self.impair {
            Some(p) => (p.setting(), [p.egress.held(), p.ingress.held()]),
            None => (LinkImpair::default(), [0, 0]),
        };
        Some(impair::ImpairStatus::new(&l, held, c))
    }

    pub(super) fn is_connected(&self) -> bool {
        self.current.is_some() && self.endpoint.is_some()
    }

    pub(super) fn indices(&self) -> impl Iterator<Item = u32> + '_ {
        [&self.current, &self.previous, &self.pending]
            .into_iter()
            .flatten()
            .map(|s| s.local_index())
    }
}
