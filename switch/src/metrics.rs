//! The switch's Prometheus metrics: the [`Status`] snapshot mapped to metric
//! families at scrape time (see `tapmesh_shell::metrics`). The names and
//! labels below are a stable interface (the Grafana dashboard in `grafana/`
//! uses them); labels are bounded: node, network and switch names from the
//! config, drop reasons, frame kinds, directions, never a MAC or a host's IP.
//! The one address label is `group` on the per-group counters: a multicast
//! group address (not a host), exported for the busiest `metrics-top-groups`
//! groups only.
use overlay_proto::counters::Reason;
use tapmesh_shell::metrics::{Def, Export, Exposition};

use crate::cluster::metrics as cluster;
use crate::counters::DropReason;
use crate::etcd::metrics as etcd;
use crate::status::Status;
use crate::workers::status as workers;

const NODES_CONFIGURED: Def = Def::gauge(
    "tapmesh_switch_nodes_configured",
    &[],
    "Nodes listed in the switch's config.",
);
const NODES_CONNECTED: Def = Def::gauge(
    "tapmesh_switch_nodes_connected",
    &[],
    "Nodes with a confirmed session now.",
);
const NETWORK_NODES: Def = Def::gauge(
    "tapmesh_switch_network_nodes",
    &["network", "state"],
    "Nodes per network: configured, and connected now.",
);
const NODE_CONNECTED: Def = Def::gauge(
    "tapmesh_switch_node_connected",
    &["node"],
    "1 if the node has a confirmed session, else 0.",
);
const NODE_LAST_HEARD: Def = Def::gauge(
    "tapmesh_switch_node_last_heard_seconds",
    &["node"],
    "Seconds since anything authentic arrived from the node (absent if never).",
);
const NODE_SESSION_AGE: Def = Def::gauge(
    "tapmesh_switch_node_session_age_seconds",
    &["node"],
    "Age of the node's current session (absent if none).",
);
const NODE_FRAMES: Def = Def::counter(
    "tapmesh_switch_node_frames_total",
    &["node", "direction"],
    "Ethernet frames received from (rx) or sent to (tx) the node.",
);
const NODE_BYTES: Def = Def::counter(
    "tapmesh_switch_node_bytes_total",
    &["node", "direction"],
    "Bytes of Ethernet frames received from (rx) or sent to (tx) the node.",
);
const NODE_HANDSHAKES: Def = Def::counter(
    "tapmesh_switch_node_handshakes_total",
    &["node"],
    "Handshakes answered for the node (first sessions and rekeys).",
);
const NODE_MACS: Def = Def::gauge(
    "tapmesh_switch_node_mac_entries",
    &["node"],
    "MAC table entries learned behind the node.",
);
const FRAMES: Def = Def::counter(
    "tapmesh_switch_frames_total",
    &["kind"],
    "Frames received from nodes, by forwarding decision: unicast (to a learned MAC), flooded_unicast, broadcast, multicast, filtered (destination behind the sender).",
);
const FLOOD_COPIES: Def = Def::counter(
    "tapmesh_switch_flood_copies_total",
    &[],
    "Copies sent by floods (the fan-out, summed).",
);
const MAC_ENTRIES: Def = Def::gauge("tapmesh_switch_mac_entries", &[], "MAC table entries now.");
const MAC_LIMIT: Def = Def::gauge(
    "tapmesh_switch_mac_limit",
    &["scope"],
    "MAC table limits: the whole table (table) and per node (node).",
);
const MAC_LEARNED: Def = Def::counter(
    "tapmesh_switch_mac_learned_total",
    &[],
    "MAC addresses learned (new entries).",
);
const MAC_MOVES: Def = Def::counter(
    "tapmesh_switch_mac_moves_total",
    &[],
    "MAC addresses that moved to another node.",
);
const MAC_AGED_OUT: Def = Def::counter(
    "tapmesh_switch_mac_aged_out_total",
    &[],
    "MAC entries removed by aging.",
);
const MAC_FLUSHED: Def = Def::counter(
    "tapmesh_switch_mac_flushed_total",
    &[],
    "MAC entries removed because their node timed out.",
);
const MAC_LIMIT_HITS: Def = Def::counter(
    "tapmesh_switch_mac_limit_hits_total",
    &["scope"],
    "Frames dropped because a MAC limit was reached, per node limit (node) or table limit (table).",
);
const HANDSHAKES: Def = Def::counter(
    "tapmesh_switch_handshakes_total",
    &["result"],
    "Handshake initiations by result: ok (answered), failed (did not decrypt), unknown_key, replay.",
);
const SESSIONS_CONFIRMED: Def = Def::counter(
    "tapmesh_switch_sessions_confirmed_total",
    &[],
    "New sessions confirmed by the node's first packet (first sessions and rekeys).",
);
const REKEYS: Def = Def::counter(
    "tapmesh_switch_rekeys_total",
    &[],
    "Confirmed sessions that replaced a live one.",
);
const NODE_TIMEOUTS: Def = Def::counter(
    "tapmesh_switch_node_timeouts_total",
    &[],
    "Nodes forgotten after the silence timeout.",
);
const KEEPALIVES: Def = Def::counter(
    "tapmesh_switch_keepalives_total",
    &[],
    "Keepalives answered.",
);
const MCAST_GROUPS: Def = Def::gauge(
    "tapmesh_switch_multicast_groups",
    &[],
    "Multicast groups in the snooping table, over all networks.",
);
const MCAST_LIMIT: Def = Def::gauge(
    "tapmesh_switch_multicast_limit",
    &["scope"],
    "Snooping limits: memberships per node (node), groups per network (network), groups in all (total), sources per node and group (sources).",
);
const MCAST_REFUSED: Def = Def::counter(
    "tapmesh_switch_multicast_refused_total",
    &["reason"],
    "Snooping state refused at a limit: node_limit, network_limit, total_limit (memberships or groups), sources (sources; the membership takes every source).",
);
const MCAST_SUPPRESSED: Def = Def::counter(
    "tapmesh_switch_multicast_suppressed_total",
    &["kind"],
    "Leaves ignored over a node's rate (leave), and leaves whose group-specific query waited for the group's running one (group_query).",
);
const MCAST_GROUP_FRAMES: Def = Def::counter(
    "tapmesh_switch_multicast_group_frames_total",
    &["network", "vlan", "group"],
    "Data frames forwarded to a registered multicast group, for the busiest groups by bytes only ([multicast] metrics-top-groups, default 20). The group label is a multicast group address, never a host's, and at most that many are exported.",
);
const MCAST_GROUP_BYTES: Def = Def::counter(
    "tapmesh_switch_multicast_group_bytes_total",
    &["network", "vlan", "group"],
    "Bytes of those frames, for the same groups.",
);
const RELOADS: Def = Def::counter(
    "tapmesh_switch_reloads_total",
    &["result"],
    "Config reloads (reload command, SIGHUP): ok = applied, refused = invalid or not changeable live.",
);
const IMPAIR_LINK_UP: Def = Def::gauge(
    "tapmesh_switch_impair_link_up",
    &["node"],
    "1 if the node's impaired link is up, 0 if it is set down (absent if never impaired).",
);
const IMPAIR_DROPPED: Def = Def::counter(
    "tapmesh_switch_impair_dropped_total",
    &["node", "direction", "reason"],
    "Frames dropped by link impairment, per direction (egress: to the node, ingress: from it), by reason: loss, link_down, queue_full.",
);
const IMPAIR_FRAMES: Def = Def::counter(
    "tapmesh_switch_impair_frames_total",
    &["node", "direction", "action"],
    "Frames link impairment acted on, by action: delayed, reordered (sent ahead of delayed ones), duplicated (extra copies), corrupted.",
);
const IMPAIR_HELD: Def = Def::gauge(
    "tapmesh_switch_impair_held_frames",
    &["node", "direction"],
    "Frames held now by link impairment (delay or rate limit).",
);
const MIRROR_FRAMES: Def = Def::counter(
    "tapmesh_switch_mirror_frames_total",
    &["mirror", "result"],
    "Copies of port mirroring sessions (named in the config or added at runtime): mirrored (sent to the destination), dropped_rate (over the session's rate).",
);
const CAPTURES_ACTIVE: Def = Def::gauge(
    "tapmesh_switch_captures_active",
    &[],
    "Live captures (tapmesh-switch capture) running now.",
);
const CAPTURE_FRAMES: Def = Def::counter(
    "tapmesh_switch_capture_frames_total",
    &["result"],
    "Frames offered to live captures, by result: captured, dropped (the capture's reader was behind).",
);
const DROPS: Def = Def::counter(
    "tapmesh_switch_drops_total",
    &["reason"],
    "Datagrams or frames dropped, by reason.",
);

impl Export for Status {
    const METRICS: &'static [Def] = &[
        NODES_CONFIGURED,
        NODES_CONNECTED,
        NETWORK_NODES,
        NODE_CONNECTED,
        NODE_LAST_HEARD,
        NODE_SESSION_AGE,
        NODE_FRAMES,
        NODE_BYTES,
        NODE_HANDSHAKES,
        NODE_MACS,
        FRAMES,
        FLOOD_COPIES,
        MAC_ENTRIES,
        MAC_LIMIT,
        MAC_LEARNED,
        MAC_MOVES,
        MAC_AGED_OUT,
        MAC_FLUSHED,
        MAC_LIMIT_HITS,
        HANDSHAKES,
        SESSIONS_CONFIRMED,
        REKEYS,
        NODE_TIMEOUTS,
        KEEPALIVES,
        MCAST_GROUPS,
        MCAST_LIMIT,
        MCAST_REFUSED,
        MCAST_SUPPRESSED,
        MCAST_GROUP_FRAMES,
        MCAST_GROUP_BYTES,
        RELOADS,
        IMPAIR_LINK_UP,
        IMPAIR_DROPPED,
        IMPAIR_FRAMES,
        IMPAIR_HELD,
        MIRROR_FRAMES,
        CAPTURES_ACTIVE,
        CAPTURE_FRAMES,
        DROPS,
        cluster::PEER_UP,
        cluster::PEER_LAST_HEARD,
        cluster::PEER_FRAMES,
        cluster::PEER_BYTES,
        cluster::PEER_DOWNS,
        cluster::PEER_HANDSHAKES,
        cluster::PEER_MACS,
        cluster::PEER_STORE_UP,
        cluster::PEER_OWNED,
        cluster::PEER_ANNOUNCED,
        cluster::PEER_PRUNED,
        etcd::CONNECTION,
        etcd::REVISION,
        etcd::LEASE_TTL,
        etcd::LEASES,
        etcd::CONNECT_FAILURES,
        etcd::KEYS,
        etcd::TXNS,
        etcd::WRITES,
        etcd::WATCH_EVENTS,
        etcd::RESYNCS,
        etcd::IGNORED,
        workers::WORKERS,
        workers::DATAGRAMS,
        workers::GATE,
    ];

    fn export(&self, out: &mut Exposition) {
        cluster::export(self, out);
        out.gauge(&NODES_CONFIGURED, &[], self.nodes.len() as f64);
        let connected = self.nodes.iter().filter(|n| n.connected).count();
        out.gauge(&NODES_CONNECTED, &[], connected as f64);
        for n in &self.networks {
            out.gauge(&NETWORK_NODES, &[&n.name, "configured"], n.nodes as f64);
            out.gauge(&NETWORK_NODES, &[&n.name, "connected"], n.connected as f64);
        }
        for n in &self.nodes {
            let node = n.name.as_str();
            out.gauge(&NODE_CONNECTED, &[node], f64::from(u8::from(n.connected)));
            if let Some(s) = n.last_heard_secs_ago {
                out.gauge(&NODE_LAST_HEARD, &[node], s);
            }
            if let Some(s) = n.session_age_secs {
                out.gauge(&NODE_SESSION_AGE, &[node], s);
            }
            let c = &n.counters;
            out.counter(&NODE_FRAMES, &[node, "rx"], c.rx_frames);
            out.counter(&NODE_FRAMES, &[node, "tx"], c.tx_frames);
            out.counter(&NODE_BYTES, &[node, "rx"], c.rx_bytes);
            out.counter(&NODE_BYTES, &[node, "tx"], c.tx_bytes);
            out.counter(&NODE_HANDSHAKES, &[node], c.handshakes);
            out.gauge(&NODE_MACS, &[node], n.macs as f64);
            if let Some(i) = &n.impair {
                out.gauge(
                    &IMPAIR_LINK_UP,
                    &[node],
                    f64::from(u8::from(i.link == "up")),
                );
                for (dir, c, held) in [
                    ("egress", &i.egress_counters, i.egress_held),
                    ("ingress", &i.ingress_counters, i.ingress_held),
                ] {
                    for (reason, v) in c.drops() {
                        out.counter(&IMPAIR_DROPPED, &[node, dir, reason], v);
                    }
                    for (action, v) in c.actions() {
                        out.counter(&IMPAIR_FRAMES, &[node, dir, action], v);
                    }
                    out.gauge(&IMPAIR_HELD, &[node, dir], held as f64);
                }
            }
        }
        let f = &self.forwarded;
        for (kind, v) in [
            ("unicast", f.unicast),
            ("flooded_unicast", f.flooded_unicast),
            ("broadcast", f.broadcast),
            ("multicast", f.multicast),
            ("filtered", f.filtered),
        ] {
            out.counter(&FRAMES, &[kind], v);
        }
        out.counter(&FLOOD_COPIES, &[], f.flood_copies);
        let m = &self.mac_table;
        out.gauge(&MAC_ENTRIES, &[], m.entries as f64);
        out.gauge(&MAC_LIMIT, &["table"], m.limit as f64);
        out.gauge(&MAC_LIMIT, &["node"], m.limit_per_node as f64);
        out.counter(&MAC_LEARNED, &[], m.counters.learned);
        out.counter(&MAC_MOVES, &[], m.counters.moves);
        out.counter(&MAC_AGED_OUT, &[], m.counters.aged_out);
        out.counter(&MAC_FLUSHED, &[], m.counters.flushed);
        out.counter(&MAC_LIMIT_HITS, &["node"], m.counters.node_limit_hits);
        out.counter(&MAC_LIMIT_HITS, &["table"], m.counters.table_limit_hits);
        let s = &self.sessions;
        out.counter(&HANDSHAKES, &["ok"], s.handshakes);
        for (result, reason) in [
            ("failed", DropReason::HandshakeFailed),
            ("unknown_key", DropReason::UnknownKey),
            ("replay", DropReason::HandshakeReplay),
        ] {
            out.counter(&HANDSHAKES, &[result], self.drops.get(reason));
        }
        out.counter(&SESSIONS_CONFIRMED, &[], s.confirmed);
        out.counter(&REKEYS, &[], s.rekeys);
        out.counter(&NODE_TIMEOUTS, &[], s.node_timeouts);
        out.counter(&KEEPALIVES, &[], s.keepalives);
        let mc = &self.multicast;
        let l = &mc.limits;
        out.gauge(&MCAST_GROUPS, &[], l.groups_total as f64);
        for (scope, v) in [
            ("node", l.max_groups_per_node),
            ("network", l.max_groups),
            ("total", l.max_groups_total),
            ("sources", l.max_sources_per_group),
        ] {
            out.gauge(&MCAST_LIMIT, &[scope], v as f64);
        }
        let c = &mc.counters;
        for (reason, v) in [
            ("node_limit", c.refused_node_limit),
            ("network_limit", c.refused_network_limit),
            ("total_limit", c.refused_total_limit),
            ("sources", c.refused_sources),
        ] {
            out.counter(&MCAST_REFUSED, &[reason], v);
        }
        out.counter(&MCAST_SUPPRESSED, &["leave"], c.leaves_rate_limited);
        out.counter(
            &MCAST_SUPPRESSED,
            &["group_query"],
            c.group_queries_deferred,
        );
        for g in crate::status::groups::busiest(&mc.groups, mc.metrics_top_groups) {
            let vlan = g.vlan.to_string();
            let labels = [g.network.as_str(), &vlan, &g.group];
            out.counter(&MCAST_GROUP_FRAMES, &labels, g.frames);
            out.counter(&MCAST_GROUP_BYTES, &labels, g.bytes);
        }
        out.gauge(&CAPTURES_ACTIVE, &[], self.capture.active as f64);
        out.counter(&CAPTURE_FRAMES, &["captured"], self.capture.captured);
        out.counter(&CAPTURE_FRAMES, &["dropped"], self.capture.dropped);
        out.counter(&RELOADS, &["ok"], self.reloads.ok);
        out.counter(&RELOADS, &["refused"], self.reloads.refused);
        for m in &self.mirrors {
            let c = &m.counters;
            out.counter(&MIRROR_FRAMES, &[&m.name, "mirrored"], c.mirrored);
            out.counter(&MIRROR_FRAMES, &[&m.name, "dropped_rate"], c.dropped_rate);
        }
        for (reason, count) in self.drops.iter() {
            out.counter(&DROPS, &[reason.name()], count);
        }
        if let Some(e) = &self.etcd {
            etcd::export(e, out);
        }
        if let Some(w) = &self.workers {
            workers::export(w, out);
        }
    }
}
