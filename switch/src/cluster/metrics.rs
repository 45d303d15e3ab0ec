//! The metrics of the trunks to the other switches (from
//! [`Status::switches`]); labels: the network and the other switch's name,
//! both bounded by the config. With etcd, also what the store says each
//! other switch owns (`kind`: macs, nodes, groups).
use tapmesh_shell::metrics::{Def, Exposition};

use crate::status::Status;

pub(crate) const PEER_UP: Def = Def::gauge(
    "tapmesh_switch_peer_up",
    &["network", "switch"],
    "1 if the trunk to the other switch is up (keepalives answered), else 0.",
);
pub(crate) const PEER_LAST_HEARD: Def = Def::gauge(
    "tapmesh_switch_peer_last_heard_seconds",
    &["network", "switch"],
    "Seconds since anything authentic arrived from the other switch (absent if never).",
);
pub(crate) const PEER_FRAMES: Def = Def::counter(
    "tapmesh_switch_peer_frames_total",
    &["network", "switch", "direction"],
    "Ethernet frames received from (rx) or sent to (tx) the other switch.",
);
pub(crate) const PEER_BYTES: Def = Def::counter(
    "tapmesh_switch_peer_bytes_total",
    &["network", "switch", "direction"],
    "Bytes of Ethernet frames received from (rx) or sent to (tx) the other switch.",
);
pub(crate) const PEER_DOWNS: Def = Def::counter(
    "tapmesh_switch_peer_downs_total",
    &["network", "switch"],
    "Times the trunk to the other switch went down (it stopped answering).",
);
pub(crate) const PEER_HANDSHAKES: Def = Def::counter(
    "tapmesh_switch_peer_handshakes_total",
    &["network", "switch"],
    "Handshakes completed with the other switch.",
);
pub(crate) const PEER_MACS: Def = Def::gauge(
    "tapmesh_switch_peer_mac_entries",
    &["network", "switch"],
    "MAC table entries behind the other switch.",
);

pub(crate) const PEER_STORE_UP: Def = Def::gauge(
    "tapmesh_switch_peer_store_up",
    &["network", "switch"],
    "1 if etcd says the other switch is up (it holds its lease), else 0 (only with etcd).",
);
pub(crate) const PEER_OWNED: Def = Def::gauge(
    "tapmesh_switch_peer_owned",
    &["network", "switch", "kind"],
    "What the other switch owns per etcd: MACs (macs), nodes homed on it (nodes), groups with members or routers behind it (groups) (only with etcd).",
);
pub(crate) const PEER_ANNOUNCED: Def = Def::gauge(
    "tapmesh_switch_peer_announced",
    &["network", "switch", "what"],
    "What the other switch announced over the trunk: VLANs it serves (vlans), groups it wants (groups), the generation (absent until it announced).",
);
pub(crate) const PEER_PRUNED: Def = Def::counter(
    "tapmesh_switch_peer_pruned_frames_total",
    &["network", "switch"],
    "Frames not sent to the other switch: floods of VLANs it does not serve, groups it does not want.",
);

/// The trunks' metrics.
pub(crate) fn export(s: &Status, out: &mut Exposition) {
    for t in &s.switches {
        let l = [t.network.as_str(), t.name.as_str()];
        out.gauge(&PEER_UP, &l, f64::from(u8::from(t.up)));
        if let Some(s) = t.last_heard_secs_ago {
            out.gauge(&PEER_LAST_HEARD, &l, s);
        }
        for (dir, frames, bytes) in [
            ("rx", t.rx_frames, t.rx_bytes),
            ("tx", t.tx_frames, t.tx_bytes),
        ] {
            out.counter(&PEER_FRAMES, &[l[0], l[1], dir], frames);
            out.counter(&PEER_BYTES, &[l[0], l[1], dir], bytes);
        }
        out.counter(&PEER_DOWNS, &l, t.downs);
        out.counter(&PEER_HANDSHAKES, &l, t.handshakes);
        out.gauge(&PEER_MACS, &l, t.macs as f64);
        if s.etcd.is_some() {
            out.gauge(&PEER_STORE_UP, &l, f64::from(u8::from(t.store_up)));
            for (kind, n) in [
                ("macs", t.store_macs),
                ("nodes", t.store_nodes),
                ("groups", t.store_groups),
            ] {
                out.gauge(&PEER_OWNED, &[l[0], l[1], kind], n as f64);
            }
        }
        if let Some(a) = &t.announced {
            for (what, v) in [
                ("vlans", a.vlans as f64),
                ("groups", a.groups as f64),
                ("generation", a.generation as f64),
            ] {
                out.gauge(&PEER_ANNOUNCED, &[l[0], l[1], what], v);
            }
        }
        out.counter(&PEER_PRUNED, &l, t.pruned_frames);
    }
}
