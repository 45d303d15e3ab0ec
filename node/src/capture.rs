//! Live capture at a mesh node (`tapmesh-node capture`): the frames on its
//! direct paths, in clear, one pcapng interface per peer (named after it).
//!
//! Frames are taken as they are on the peer's side of the path: received
//! from the peer (inbound, before they are retagged for our port) and sent
//! to it (outbound). Frames through the switch are the switch's to capture
//! (`tapmesh-switch capture`). The pcapng writing, the bounded buffer, the
//! stream and the loop over captures are `tapmesh_shell::capture`'s.
use overlay_proto::vlan::{PortVlan, Vid};
use tapmesh_shell::capture::{Capture, CaptureSpec};

use crate::engine::Node;

/// What one capture wants.
#[derive(Debug, Clone)]
pub struct Selection {
    /// Only these peers, by name (all if empty).
    pub peers: Vec<String>,
    /// Only this VLAN, as classified on the peer's port.
    pub vlan: Option<Vid>,
}

/// The captures the node feeds.
pub type Captures = tapmesh_shell::capture::Taps<Selection>;

impl Selection {
    /// The interface description if a frame of peer `name` is wanted.
    pub fn selects(&self, name: &str, port: &PortVlan, frame: &[u8]) -> Option<&'static str> {
        if !self.peers.is_empty() && !self.peers.iter().any(|p| p == name) {
            return None;
        }
        if let Some(v) = self.vlan
            && port.ingress(frame).is_none_or(|i| i.vid != v)
        {
            return None;
        }
        Some("mesh peer")
    }
}

/// A peer's interface key in a capture: its name, hashed (FNV-1a), so a
/// peer keeps its interface when its slot changes.
pub fn peer_key(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Answer a `capture` admin request (see `tapmesh_shell::capture`):
/// `{"ok":...}`, after which the connection streams pcapng, or
/// `{"error":"ONE LINE"}`. Peers are named as the switch announces them;
/// one that is not a peer now is refused.
pub fn answer(core: &mut Node, line: &str, capture: Option<Capture>) -> String {
    let started = match (CaptureSpec::from_request(line), capture) {
        (Some(Ok(spec)), Some(c)) => start(core, &spec, c),
        (Some(Err(e)), _) => Err(e),
        _ => Err("capture needs a stream".into()),
    };
    match started {
        Ok(()) => {
            tracing::info!(request = %line, "capture started");
            serde_json::json!({ "ok": "capturing" }).to_string()
        }
        Err(e) => tapmesh_shell::admin::error_reply(&e),
    }
}

fn start(core: &mut Node, spec: &CaptureSpec, capture: Capture) -> Result<(), String> {
    if spec.network.is_some() {
        return Err("a node is in one network: no --network".into());
    }
    if let Some(v) = spec.vlan
        && !(1..=4094).contains(&v)
    {
        return Err(format!("bad VLAN {v}: must be 1 to 4094"));
    }
    let peers = core.peer_names();
    if let Some(missing) = spec.nodes.iter().find(|n| !peers.contains(n)) {
        return Err(format!("no peer {missing:?}"));
    }
    let want = Selection {
        peers: spec.nodes.clone(),
        vlan: spec.vlan,
    };
    core.add_capture(capture, want);
    Ok(())
}
