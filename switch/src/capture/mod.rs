//! Live capture at the switch (`tapmesh-switch capture`): every frame a
//! network's core forwards, in clear, offered to the captures that want it.
//!
//! Frames are taken at the switch's side of each node's port, as they are
//! on that port: received from the node (inbound, after its ingress
//! impairment, before any retagging) and sent to it (outbound, tagged or
//! untagged for that port, after its egress impairment). Each node is one
//! pcapng interface named after it; the pcapng writing, the bounded buffer,
//! the stream and the loop over captures are `tapmesh_shell::capture`'s.
//! Without a capture this costs the data path one branch per frame.
use tapmesh_shell::capture::{Capture, CaptureSpec};

use crate::NodeId;
use crate::fabric::NodeSpec;
use crate::networks::Networks;
use crate::vlan::Vid;

pub use tapmesh_shell::capture::CaptureCounters;

/// What one capture wants from one network.
#[derive(Debug, Clone)]
pub struct Selection {
    /// Only these nodes (all if `None`).
    pub nodes: Option<Vec<NodeId>>,
    /// Only this VLAN, as classified on the node's port.
    pub vlan: Option<Vid>,
    /// The network's name: the description of its nodes' interfaces.
    pub network: String,
}

/// The captures one network's core feeds.
pub type Captures = tapmesh_shell::capture::Taps<Selection>;

impl Selection {
    /// The interface description if the frame of node `id` is wanted.
    pub fn selects(&self, id: NodeId, spec: &NodeSpec, frame: &[u8]) -> Option<&str> {
        if let Some(nodes) = &self.nodes
            && !nodes.contains(&id)
        {
            return None;
        }
        if let Some(v) = self.vlan
            && spec.vlan.ingress(frame).is_none_or(|i| i.vid != v)
        {
            return None;
        }
        Some(&self.network)
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
