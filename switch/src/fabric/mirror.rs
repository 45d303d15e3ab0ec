//! Port mirroring (see [`crate::mirror`]): the hooks where frames pass a
//! port, the copies sent to the destinations, and the sessions set from the
//! config and the admin socket.

use std::time::Instant;

use overlay_proto::vnet::VnetHdr;

use super::{Port, Switch};
use crate::NodeId;
use crate::mirror::{self, MirrorSpec, MirrorStatus, Passage, Seen};
use crate::vlan::{self, Ingress};

impl Switch {
    /// Hook: node `from` sent the switch `frame`, of VLAN `ing.vid`.
    #[inline]
    pub(super) fn mirror_received(
        &mut self,
        now: Instant,
        from: NodeId,
        ing: Ingress,
        vnet: Option<VnetHdr>,
        frame: &[u8],
    ) {
        // HOT PATH: one branch without sessions.
        if !self.mirrors.is_empty() {
            let p = Passage {
                port: from,
                seen: Seen::Received,
                vid: ing.vid,
                origin: Some(from),
            };
            self.mirror_copies(now, p, ing, vnet, frame);
        }
    }

    /// Hook: the switch sends node `to` a copy of `frame` (of VLAN
    /// `ing.vid`, in the form it arrived in), which came from node `from`
    /// (`None`: the switch made it).
    #[inline]
    pub(super) fn mirror_sent(
        &mut self,
        now: Instant,
        from: Option<NodeId>,
        to: NodeId,
        ing: Ingress,
        vnet: Option<VnetHdr>,
        frame: &[u8],
    ) {
        // HOT PATH: one branch without sessions.
        if !self.mirrors.is_empty() {
            let p = Passage {
                port: to,
                seen: Seen::Sent,
                vid: ing.vid,
                origin: from,
            };
            self.mirror_copies(now, p, ing, vnet, frame);
        }
    }

    /// Send a copy of a frame that made passage `p` to each session's
    /// destination, in the form its port takes copies. Copies go out through
    /// `send_frame` (the destination's impairment, sealing), which has no
    /// hook: copies are never mirrored again.
    #[cold]
    fn mirror_copies(
        &mut self,
        now: Instant,
        p: Passage,
        ing: Ingress,
        vnet: Option<VnetHdr>,
        frame: &[u8],
    ) {
        let mut targets = std::mem::take(&mut self.mirrors.targets);
        targets.clear();
        let ports = &self.ports;
        let connected = |id: NodeId| ports.get(id.0 as usize).is_some_and(|p| p.is_connected());
        self.mirrors.select(now, p, connected, &mut targets);
        let mut other = std::mem::take(&mut self.mirrors.scratch);
        let mut other_vnet = None;
        let mut other_ready = false;
        for &to in &targets {
            let form = mirror::copy_form(&self.ports[to.0 as usize].spec.vlan, ing.vid);
            if form.keeps_form(ing) != Some(false) {
                self.send_frame(now, to, vnet, frame);
                continue;
            }
            if !other_ready {
                other_vnet = vlan::other_form(frame, ing, vnet, &mut other);
                other_ready = true;
            }
            self.send_frame(now, to, other_vnet, &other);
        }
        self.mirrors.scratch = other;
        self.mirrors.targets = targets;
    }

    /// Whether this network admits node `name`.
    pub fn has_node(&self, name: &str) -> bool {
        port_of(&self.ports, name).is_some()
    }

    /// Add mirror session `spec`, replacing one of the same name. Both
    /// nodes must be in this network.
    pub fn add_mirror(&mut self, spec: MirrorSpec) -> Result<(), String> {
        spec.check().map_err(|(k, p)| format!("{k}: {p}"))?;
        let node = |name: &str| {
            port_of(&self.ports, name)
                .ok_or_else(|| format!("no node {name:?} in the source's network"))
        };
        let (source, destination) = (node(&spec.source)?, node(&spec.destination)?);
        spec.check_vlan(&self.ports[source.0 as usize].spec.vlan)
            .map_err(|(k, p)| format!("{k}: {p}"))?;
        self.mirrors.add(spec, source, destination, false)
    }

    /// End mirror session `name`; false if this network has none.
    pub fn remove_mirror(&mut self, name: &str) -> bool {
        self.mirrors.remove(name)
    }

    /// The mirror sessions of `switch.toml` (validated against this
    /// network's nodes), at start or after a reload (see
    /// [`mirror::Mirrors::reload`]). Returns whether any session changed.
    pub fn set_configured_mirrors(&mut self, file: &[MirrorSpec]) -> bool {
        let ports = &self.ports;
        self.mirrors.reload(file, |name| port_of(ports, name))
    }

    /// The mirror sessions with their counters.
    pub fn mirror_status(&self) -> Vec<MirrorStatus> {
        self.mirrors.status()
    }
}

/// The port of admitted node `name`, if there is one.
fn port_of(ports: &[Port], name: &str) -> Option<NodeId> {
    ports
        .iter()
        .position(|p| !p.retired && p.spec.name == name)
        .map(|i| NodeId(i as u32))
}
