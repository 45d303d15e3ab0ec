//! The core's side of live capture: the hook the data path calls, and
//! starting a capture on this network (see [`crate::capture`]).

use std::time::Instant;

use tapmesh_shell::capture::{Capture, Direction};

use super::Switch;
use crate::NodeId;
use crate::capture::{CaptureCounters, Selection};
use crate::vlan::Vid;

impl Switch {
    /// Offer a frame received from (inbound) or sent to (outbound) node
    /// `id` to the running captures.
    #[inline]
    pub(super) fn capture(&mut self, now: Instant, id: NodeId, dir: Direction, frame: &[u8]) {
        // HOT PATH: one branch when nothing captures.
        if self.captures.is_active() {
            let spec = &self.ports[id.0 as usize].spec;
            let key = (u64::from(self.cfg.network_id) << 32) | u64::from(id.0);
            self.captures
                .offer(now, key, &spec.name, dir, frame, |want| {
                    want.selects(id, spec, frame)
                });
        }
    }

    /// Feed `capture` with this network's frames from and to `nodes` (all
    /// if empty; names this network does not have are ignored) in `vlan`
    /// (any if `None`). `network` names the network in the capture.
    pub fn add_capture(
        &mut self,
        capture: Capture,
        network: &str,
        nodes: &[String],
        vlan: Option<Vid>,
    ) {
        let nodes = (!nodes.is_empty()).then(|| {
            nodes
                .iter()
                .filter_map(|name| self.node_id(name))
                .collect::<Vec<_>>()
        });
        let want = Selection {
            nodes,
            vlan,
            network: network.to_owned(),
        };
        self.captures.add(capture, want);
    }

    /// The node called `name`, if this network admits it.
    pub fn node_id(&self, name: &str) -> Option<NodeId> {
        self.ports
            .iter()
            .position(|p| !p.retired && p.spec.name == name)
            .map(|i| NodeId(i as u32))
    }

    /// Capture counters of this network.
    pub fn capture_counters(&self) -> CaptureCounters {
        self.captures.counters()
    }
}
