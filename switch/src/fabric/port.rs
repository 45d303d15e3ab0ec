//! What the switch keeps per admitted node: its tunnel (sessions, endpoint,
//! reassembly), VLAN membership, counters and link impairment.

use std::time::Instant;

use overlay_proto::handshake::CAP_VNET;
use overlay_proto::tunnel::{Role, Tunnel, TunnelConfig, TunnelError};

use super::NodeSpec;
use crate::NodeId;
use crate::counters::{DropReason, NodeCounters};
use crate::impair::{self, ImpairCounters, LinkImpair, PortImpair};

/// An admitted node's port: the tunnel to the node (the switch answers its
/// handshakes) and what is the port's own.
#[derive(Debug)]
#[cfg_attr(fuzzing, derive(Clone))]
pub(super) struct Port {
    pub(super) spec: NodeSpec,
    /// Sessions, endpoint, reassembly: the switch takes the responder role.
    pub(super) tunnel: Tunnel<NodeId>,
    /// When the switch last answered the node's initiation (for status: the
    /// tunnel's own time is when the node confirmed a session).
    pub(super) last_handshake: Option<Instant>,
    pub(super) counters: NodeCounters,
    /// Removed from the config by a reload: no sessions, not in status; the
    /// slot waits for the next added node (see `reload`).
    pub(super) retired: bool,
    /// Link impairment, while any is set or frames are held (see `impair`).
    pub(super) impair: Option<Box<PortImpair>>,
    /// What impairment did, egress and ingress (kept when it is cleared).
    pub(super) impair_counters: [ImpairCounters; 2],
    /// Set if this port is a trunk to another switch (see `trunk`).
    pub(super) trunk: Option<Box<super::trunk::TrunkState>>,
    /// What the workers forwarded from and to it, and when they last heard
    /// it (see `fastpath`).
    pub(super) tally: std::sync::Arc<crate::workers::fastpath::PortTally>,
}

impl Port {
    pub(super) fn new(now: Instant, id: NodeId, spec: NodeSpec) -> Port {
        let cfg = TunnelConfig::new(Role::Responder);
        Port {
            tunnel: Tunnel::new(now, id, spec.public_key, cfg),
            spec,
            last_handshake: None,
            counters: NodeCounters::default(),
            retired: false,
            impair: None,
            impair_counters: Default::default(),
            trunk: None,
            tally: Default::default(),
        }
    }

    /// A port that is a trunk to another switch.
    pub(super) fn is_trunk(&self) -> bool {
        self.trunk.is_some()
    }

    /// Whether floods of VLAN `vid` go to this port: every node's do (its
    /// VLANs are checked on egress), a trunk's only if the other switch
    /// serves the VLAN or announced nothing yet (see `announce`).
    pub(super) fn serves(&self, vid: crate::vlan::Vid) -> bool {
        self.trunk.as_ref().is_none_or(|t| t.peer.serves(vid))
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

    /// Has a confirmed session and a known endpoint.
    pub(super) fn is_connected(&self) -> bool {
        self.tunnel.current().is_some() && self.tunnel.endpoint().is_some()
    }

    /// The node accepts frames with a virtio-net header (handshake capability).
    pub(super) fn accepts_vnet(&self) -> bool {
        // Every switch takes offloaded super-frames.
        self.tunnel.remote_caps() & CAP_VNET != 0 || self.is_trunk()
    }
}

/// Why the switch drops what the tunnel refused.
pub(super) fn drop_reason(e: TunnelError) -> DropReason {
    match e {
        TunnelError::UnknownSession | TunnelError::NoSession => DropReason::UnknownSession,
        TunnelError::Expired => DropReason::Expired,
        TunnelError::Crypto(e) => DropReason::from(e),
        TunnelError::StaleTimestamp => DropReason::HandshakeReplay,
        TunnelError::TxQueueFull => DropReason::TxQueueFull,
        // The switch answers handshakes only: it gets none of these.
        TunnelError::Handshake
        | TunnelError::NoInitiation
        | TunnelError::ForgedResponse
        | TunnelError::BadCookie => DropReason::HandshakeFailed,
    }
}
