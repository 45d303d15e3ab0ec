//! Live capture at the switch (`tapmesh-switch capture`): every frame a
//! network's core forwards, in clear, offered to the captures that want it.
//!
//! Frames are taken at the switch's side of each node's port, as they are
//! on that port: received from the node (inbound, after its ingress
//! impairment, before any retagging) and sent to it (outbound, tagged or
//! untagged for that port, after its egress impairment). Each node is one
//! pcapng interface named after it; the pcapng writing, the bounded buffer
//! and the stream are `tapmesh_shell::capture`'s. Without a capture this
//! costs the data path one branch per frame.
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tapmesh_shell::capture::{Capture, CaptureSpec, Direction, Offered, Port};

use crate::NodeId;
use crate::fabric::NodeSpec;
use crate::networks::Networks;
use crate::vlan::Vid;

/// Capture counters (status and metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CaptureCounters {
    /// Captures running now.
    pub active: u64,
    /// Frames written to a capture (once per capture).
    pub captured: u64,
    /// Frames a capture lost because its reader was behind.
    pub dropped: u64,
}

/// What one capture wants from one network.
#[derive(Debug, Clone)]
pub struct Selection {
    /// Only these nodes (all if `None`).
    pub nodes: Option<Vec<NodeId>>,
    /// Only this VLAN, as classified on the node's port.
    pub vlan: Option<Vid>,
}

/// The captures one network's core feeds.
#[derive(Debug, Clone, Default)]
pub struct Captures {
    taps: Vec<Tap>,
    captured: u64,
    dropped: u64,
}

#[derive(Debug, Clone)]
struct Tap {
    capture: Capture,
    want: Selection,
    network_id: u32,
    /// The interfaces' description: the network's name.
    network: String,
}

impl Captures {
    /// Feed `capture` with this network's frames that `want` selects.
    pub fn add(&mut self, capture: Capture, network_id: u32, network: &str, want: Selection) {
        self.taps.push(Tap {
            capture,
            want,
            network_id,
            network: network.to_owned(),
        });
    }

    /// Whether any capture is running.
    #[inline]
    pub fn is_active(&self) -> bool {
        !self.taps.is_empty()
    }

    /// Offer a frame of node `id` (received from it or sent to it) to every
    /// capture that selects it; forget captures whose reader went away.
    pub fn offer(
        &mut self,
        now: Instant,
        id: NodeId,
        spec: &NodeSpec,
        dir: Direction,
        frame: &[u8],
    ) {
        let mut i = 0;
        while i < self.taps.len() {
            let t = &self.taps[i];
            if !t.selects(id, spec, frame) {
                i += 1;
                continue;
            }
            let port = Port {
                key: (u64::from(t.network_id) << 32) | u64::from(id.0),
                name: &spec.name,
                description: &t.network,
            };
            match t.capture.offer(now, port, dir, frame) {
                Offered::Captured => self.captured += 1,
                Offered::Dropped => self.dropped += 1,
                Offered::Filtered => {}
                Offered::Closed => {
                    self.taps.swap_remove(i);
                    continue;
                }
            }
            i += 1;
        }
    }

    /// Forget captures whose reader went away.
    pub fn sweep(&mut self) {
        self.taps.retain(|t| !t.capture.is_closed());
    }

    /// The counters, `active` counting this network's captures.
    pub fn counters(&self) -> CaptureCounters {
        CaptureCounters {
            active: self.taps.len() as u64,
            captured: self.captured,
            dropped: self.dropped,
        }
    }
}

impl Tap {
    fn selects(&self, id: NodeId, spec: &NodeSpec, frame: &[u8]) -> bool {
        if let Some(nodes) = &self.want.nodes
            && !nodes.contains(&id)
        {
            return false;
        }
        match self.want.vlan {
            None => true,
            Some(v) => spec.vlan.ingress(frame).is_some_and(|i| i.vid == v),
        }
    }
}

impl std::ops::AddAssign<&CaptureCounters> for CaptureCounters {
    fn add_assign(&mut self, o: &CaptureCounters) {
        self.active += o.active;
        self.captured += o.captured;
        self.dropped += o.dropped;
    }
}

/// Answer a `capture` admin request: start `capture` (built by the admin
/// task from the request's spec) on the networks it selects. The reply is
/// `{"ok":...}`, after which the connection streams pcapng, or
/// `{"error":"ONE LINE"}`.
pub fn answer(core: &mut Networks, line: &str, capture: Option<Capture>) -> String {
    let started = match (CaptureSpec::from_request(line), capture) {
        (Some(Ok(spec)), Some(c)) => core.add_capture(&spec, c),
        (Some(Err(e)), _) => Err(e),
        _ => Err("capture needs a stream".into()),
    };
    match started {
        Ok(n) => {
            tracing::info!(networks = n, request = %line, "capture started");
            serde_json::json!({ "ok": format!("capturing on {n} network(s)") }).to_string()
        }
        Err(e) => tapmesh_shell::admin::error_reply(&e),
    }
}
