//! The status snapshot of one network.

use std::time::Instant;

use super::Switch;
use crate::NodeId;
use crate::status::{MacStatus, NodeStatus, Status};
use crate::vlan::PortVlan;

impl Switch {
    /// A snapshot for `status`. `with_macs` adds the MAC table.
    pub fn status(&self, now: Instant, with_macs: bool) -> Status {
        let ago = |t: Option<Instant>| t.map(|t| now.saturating_duration_since(t).as_secs_f64());
        let nodes = self
            .ports
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.retired && !p.is_trunk())
            .map(|(i, p)| NodeStatus {
                network: String::new(),
                name: p.spec.name.clone(),
                public_key: p.spec.public_key.to_base64(),
                connected: p.is_connected(),
                endpoint: p.tunnel.endpoint().map(|e| e.to_string()),
                session_age_secs: p.tunnel.current().map(|s| s.age(now).as_secs_f64()),
                last_handshake_secs_ago: ago(p.last_handshake),
                last_heard_secs_ago: ago(self.last_heard(p)),
                macs: self.macs.count_for(NodeId(i as u32)),
                vlan: match &p.spec.vlan {
                    PortVlan::Member { native, .. } => *native,
                    PortVlan::Transparent => None,
                },
                trunk: match &p.spec.vlan {
                    PortVlan::Member { tagged, .. } => tagged.clone(),
                    PortVlan::Transparent => Vec::new(),
                },
                counters: Switch::counters_with_fast(p),
                impair: p.impair_status(),
            })
            .collect();
        let macs = with_macs.then(|| {
            let mut v: Vec<MacStatus> = self
                .macs
                .iter()
                .map(|(vlan, mac, e)| MacStatus {
                    network: String::new(),
                    vlan,
                    mac: mac.to_string(),
                    node: self.ports[e.port.0 as usize].spec.name.clone(),
                    expires_in_secs: e.expires_at.saturating_duration_since(now).as_secs_f64(),
                })
                .collect();
            v.sort_by(|a, b| (a.vlan, &a.mac).cmp(&(b.vlan, &b.mac)));
            v
        });
        Status {
            uptime_secs: now.saturating_duration_since(self.started).as_secs_f64(),
            nodes,
            drops: self.drops.clone(),
            forwarded: self.forwarded(),
            mac_table: crate::status::MacTableStatus {
                entries: self.macs.len(),
                limit: self.cfg.mac_table_limit,
                limit_per_node: self.cfg.mac_limit_per_node,
                aging_secs: self.cfg.mac_aging.as_secs(),
                counters: self.mac_counters(),
            },
            sessions: self.sessions.clone(),
            handshake_guard: crate::workers::gate::lock(&self.guard).status(now),
            multicast: self
                .snoop
                .status(now, |id| self.ports[id.0 as usize].spec.name.clone()),
            networks: Vec::new(),
            reloads: Default::default(),
            mirrors: self.mirror_status(),
            capture: self.capture_counters(),
            etcd: None,
            workers: None,
            switches: self.trunk_status(now),
            macs,
        }
    }
}
