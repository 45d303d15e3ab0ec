//! The node's Prometheus metrics: the [`Status`] snapshot mapped to metric
//! families at scrape time (see `tapmesh_shell::metrics`). Names and labels
//! are a stable interface (the Grafana dashboard uses them). Every series
//! carries `node` (this node's configured name) so a dashboard can tell nodes
//! apart whatever the scrape config calls them; `peer` is `switch` for the
//! session with the switch, or a mesh peer's configured name.
use overlay_proto::counters::Reason;
use tapmesh_shell::metrics::{Def, Export, Exposition};

use crate::engine::{LinkState, Status};

const SESSION_UP: Def = Def::gauge(
    "tapmesh_node_session_up",
    &["node", "peer"],
    "1 if a session with the peer is established, 0 while handshaking.",
);
const SESSION_AGE: Def = Def::gauge(
    "tapmesh_node_session_age_seconds",
    &["node", "peer"],
    "Age of the current session (absent if none).",
);
const LAST_RX: Def = Def::gauge(
    "tapmesh_node_last_rx_seconds",
    &["node", "peer"],
    "Seconds since anything authentic arrived from the peer (absent if never).",
);
const RTT: Def = Def::summary(
    "tapmesh_node_rtt_seconds",
    &["node", "peer"],
    "Round-trip times to the peer, from answered keepalives.",
);
const RTT_LAST: Def = Def::gauge(
    "tapmesh_node_rtt_last_seconds",
    &["node", "peer"],
    "The latest round-trip time to the peer (absent before the first sample).",
);
const PEER_PATH: Def = Def::gauge(
    "tapmesh_node_peer_path",
    &["node", "peer", "path"],
    "Mesh mode: 1 for the path frames to the peer take now (direct or relayed), 0 for the other.",
);
const PEER_FRAMES: Def = Def::counter(
    "tapmesh_node_peer_frames_total",
    &["node", "peer", "direction"],
    "Mesh mode: frames exchanged with the peer over the direct path.",
);
const PEER_PATH_CHANGES: Def = Def::counter(
    "tapmesh_node_peer_path_changes_total",
    &["node", "peer"],
    "Mesh mode: times the path to the peer changed between direct and relayed.",
);
const PEER_MAC_REFUSED: Def = Def::counter(
    "tapmesh_node_peer_mac_refused_total",
    &["node", "reason"],
    "Mesh mode: MAC claims by peers refused (limit: the peer owns 1024; local: one of ours; owner: the switch placed it behind another member).",
);
const PEER_MAC_MOVES: Def = Def::counter(
    "tapmesh_node_peer_mac_moves_total",
    &["node"],
    "Mesh mode: MACs that moved from one peer to another.",
);
const PEERS_DROPPED: Def = Def::counter(
    "tapmesh_node_peers_dropped_total",
    &["node", "reason"],
    "Mesh mode: peers dropped for want of the switch's vouch (unlisted: missing from its list; expired: the switch unreachable for the vouch lifetime).",
);
const TAP_FRAMES: Def = Def::counter(
    "tapmesh_node_tap_frames_total",
    &["node", "direction"],
    "Frames read from (rx) or written to (tx) the TAP.",
);
const TAP_BYTES: Def = Def::counter(
    "tapmesh_node_tap_bytes_total",
    &["node", "direction"],
    "Bytes of frames read from (rx) or written to (tx) the TAP.",
);
const UNDERLAY_DATAGRAMS: Def = Def::counter(
    "tapmesh_node_underlay_datagrams_total",
    &["node", "direction"],
    "UDP datagrams received (rx) or sent (tx) on the underlay.",
);
const HANDSHAKE_INITIATIONS: Def = Def::counter(
    "tapmesh_node_handshake_initiations_total",
    &["node", "peer"],
    "Handshake initiations sent, retries included.",
);
const HANDSHAKES: Def = Def::counter(
    "tapmesh_node_handshakes_total",
    &["node", "peer"],
    "Handshakes completed (first sessions and rekeys).",
);
const REKEYS: Def = Def::counter(
    "tapmesh_node_rekeys_total",
    &["node", "peer"],
    "Handshakes that replaced a live session.",
);
const SESSIONS_LOST: Def = Def::counter(
    "tapmesh_node_sessions_lost_total",
    &["node", "peer"],
    "Sessions declared dead because the peer stopped answering (or restarted).",
);
const KEEPALIVES: Def = Def::counter(
    "tapmesh_node_keepalives_sent_total",
    &["node", "peer"],
    "Keepalives sent (idle keepalives and liveness probes).",
);
const RESTART_NOTICES: Def = Def::counter(
    "tapmesh_node_restart_notices_total",
    &["node"],
    "Authentic restart notices from the switch.",
);
const SWITCH_HOME: Def = Def::gauge(
    "tapmesh_node_switch_home",
    &["node", "switch"],
    "1 for the configured switch the node is homed on (or trying to be), 0 for the others.",
);
const FAILOVERS: Def = Def::counter(
    "tapmesh_node_failovers_total",
    &["node", "reason"],
    "Times the node turned to the next switch (lost: its home stopped answering; no_answer: the switch it turned to gave no session in time).",
);
const LAST_FAILOVER: Def = Def::gauge(
    "tapmesh_node_last_failover_seconds",
    &["node"],
    "Seconds since the last failover (absent if none).",
);
const ANNOUNCEMENTS: Def = Def::counter(
    "tapmesh_node_announcements_total",
    &["node"],
    "Local MACs announced to a new home switch after a failover.",
);
const WORKER_SEALED: Def = Def::counter(
    "tapmesh_node_worker_sealed_frames_total",
    &["node"],
    "Frames from the TAP sealed by a worker thread (workers > 1) rather than the node task; part of the TAP rx frames.",
);
const WORKER_OPENED: Def = Def::counter(
    "tapmesh_node_worker_opened_datagrams_total",
    &["node"],
    "Datagrams from the switch opened by an opening thread (workers > 1) rather than the node task; part of the UDP rx datagrams.",
);
const WORKER_OPEN_PAUSES: Def = Def::counter(
    "tapmesh_node_worker_open_pauses_total",
    &["node"],
    "Times the node stopped sharing receive batches with its opening threads for a while (worker-opening = auto), because sharing did not pay: waiting for them took longer than opening their parts alone, or eight splits in a row had a part no thread started in time.",
);
const HOST_CONNECTIONS: Def = Def::gauge(
    "tapmesh_node_host_connections",
    &["node", "host"],
    "Userspace host: TCP connections open through its forwards (host is its index in node.toml).",
);
const HOST_CONNECTIONS_TOTAL: Def = Def::counter(
    "tapmesh_node_host_connections_total",
    &["node", "host", "result"],
    "Userspace host: connections accepted (local side opened), refused (RST to the client), displaced in the handshake by newer SYNs (half_open_dropped) or never completed by the client (handshake_timeout).",
);
const HOST_FRAMES: Def = Def::counter(
    "tapmesh_node_host_frames_total",
    &["node", "host", "direction"],
    "Userspace host: frames it received (rx) or sent (tx).",
);
const PORT_UP: Def = Def::gauge(
    "tapmesh_node_port_up",
    &["node", "port", "kind"],
    "1 while the local switch port is up (a VM connected), 0 if not.",
);
const PORT_FRAMES: Def = Def::counter(
    "tapmesh_node_port_frames_total",
    &["node", "port", "kind", "direction"],
    "Frames that came in on (rx) or went out of (tx) a port of the node's local switch.",
);
const RELOADS: Def = Def::counter(
    "tapmesh_node_reloads_total",
    &["node", "result"],
    "Config reloads (reload command, SIGHUP): ok = applied, refused = invalid or not changeable live.",
);
const CAPTURES_ACTIVE: Def = Def::gauge(
    "tapmesh_node_captures_active",
    &["node"],
    "Live captures of the direct paths (tapmesh-node capture) running now.",
);
const CAPTURE_FRAMES: Def = Def::counter(
    "tapmesh_node_capture_frames_total",
    &["node", "result"],
    "Frames offered to live captures, by result: captured, dropped (the capture's reader was behind).",
);
const DROPS: Def = Def::counter(
    "tapmesh_node_drops_total",
    &["node", "reason"],
    "Frames or datagrams dropped, by reason.",
);

impl Export for Status {
    const METRICS: &'static [Def] = &[
        SESSION_UP,
        SESSION_AGE,
        LAST_RX,
        RTT,
        RTT_LAST,
        PEER_PATH,
        PEER_FRAMES,
        PEER_PATH_CHANGES,
        PEER_MAC_REFUSED,
        PEER_MAC_MOVES,
        PEERS_DROPPED,
        TAP_FRAMES,
        TAP_BYTES,
        UNDERLAY_DATAGRAMS,
        HANDSHAKE_INITIATIONS,
        HANDSHAKES,
        REKEYS,
        SESSIONS_LOST,
        KEEPALIVES,
        RESTART_NOTICES,
        SWITCH_HOME,
        FAILOVERS,
        LAST_FAILOVER,
        ANNOUNCEMENTS,
        WORKER_SEALED,
        WORKER_OPENED,
        WORKER_OPEN_PAUSES,
        HOST_CONNECTIONS,
        HOST_CONNECTIONS_TOTAL,
        HOST_FRAMES,
        PORT_UP,
        RELOADS,
        CAPTURES_ACTIVE,
        CAPTURE_FRAMES,
        PORT_FRAMES,
        DROPS,
    ];

    fn export(&self, out: &mut Exposition) {
        let node = self.name.as_str();
        let peer = [node, "switch"];
        let up = self.session == LinkState::Established;
        out.gauge(&SESSION_UP, &peer, f64::from(u8::from(up)));
        if let Some(s) = self.session_age_secs {
            out.gauge(&SESSION_AGE, &peer, s);
        }
        if let Some(s) = self.last_rx_secs_ago {
            out.gauge(&LAST_RX, &peer, s);
        }
        out.summary(&RTT, &peer, self.rtt_samples, self.rtt_sum_secs);
        if let Some(s) = self.rtt_secs {
            out.gauge(&RTT_LAST, &peer, s);
        }
        for p in &self.peers {
            let peer = [node, p.name.as_str()];
            let direct = p.path == crate::peers::Path::Direct;
            out.gauge(
                &PEER_PATH,
                &[node, &p.name, "direct"],
                f64::from(u8::from(direct)),
            );
            out.gauge(
                &PEER_PATH,
                &[node, &p.name, "relayed"],
                f64::from(u8::from(!direct)),
            );
            if let Some(s) = p.rtt_secs {
                out.gauge(&RTT_LAST, &peer, s);
            }
            out.counter(&PEER_FRAMES, &[node, &p.name, "rx"], p.rx_frames);
            out.counter(&PEER_FRAMES, &[node, &p.name, "tx"], p.tx_frames);
            out.counter(&PEER_PATH_CHANGES, &peer, p.path_changes);
        }
        let c = &self.counters;
        let m = &self.peer_macs;
        out.counter(&PEER_MAC_REFUSED, &[node, "limit"], m.refused_limit);
        out.counter(&PEER_MAC_REFUSED, &[node, "local"], m.refused_local);
        out.counter(&PEER_MAC_REFUSED, &[node, "owner"], m.refused_owner);
        out.counter(&PEER_MAC_MOVES, &[node], m.moves);
        out.counter(&PEERS_DROPPED, &[node, "unlisted"], m.peers_unlisted);
        out.counter(&PEERS_DROPPED, &[node, "expired"], m.peers_expired);
        out.counter(&TAP_FRAMES, &[node, "rx"], c.tap_rx_frames);
        out.counter(&TAP_FRAMES, &[node, "tx"], c.tap_tx_frames);
        out.counter(&TAP_BYTES, &[node, "rx"], c.tap_rx_bytes);
        out.counter(&TAP_BYTES, &[node, "tx"], c.tap_tx_bytes);
        out.counter(&UNDERLAY_DATAGRAMS, &[node, "rx"], c.udp_rx_datagrams);
        out.counter(&UNDERLAY_DATAGRAMS, &[node, "tx"], c.udp_tx_datagrams);
        out.counter(&HANDSHAKE_INITIATIONS, &peer, c.handshakes_sent);
        out.counter(&HANDSHAKES, &peer, c.handshakes_completed);
        out.counter(&REKEYS, &peer, c.rekeys);
        out.counter(&SESSIONS_LOST, &peer, c.sessions_lost);
        out.counter(&KEEPALIVES, &peer, c.keepalives_sent);
        out.counter(&RESTART_NOTICES, &[node], c.restart_notices);
        let h = &self.homes;
        for (i, s) in h.switches.iter().enumerate() {
            let home = f64::from(u8::from(i == h.home));
            out.gauge(&SWITCH_HOME, &[node, &s.name], home);
        }
        for (cause, n) in [
            ("lost", h.failovers_lost),
            ("no_answer", h.failovers_no_answer),
        ] {
            out.counter(&FAILOVERS, &[node, cause], n);
        }
        if let Some(s) = h.last_failover_secs_ago {
            out.gauge(&LAST_FAILOVER, &[node], s);
        }
        out.counter(&ANNOUNCEMENTS, &[node], c.announcements);
        out.counter(&WORKER_SEALED, &[node], c.worker_sealed_frames);
        out.counter(&WORKER_OPENED, &[node], c.worker_opened_datagrams);
        out.counter(&WORKER_OPEN_PAUSES, &[node], c.worker_open_pauses);
        for (i, h) in self.hosts.iter().enumerate() {
            let host = i.to_string();
            let c = &h.counters;
            out.gauge(&HOST_CONNECTIONS, &[node, &host], h.connections as f64);
            let total = [
                ("accepted", c.connections_accepted),
                ("refused", c.connections_refused),
                ("half_open_dropped", c.half_open_dropped),
                ("handshake_timeout", c.handshake_timeouts),
            ];
            for (result, n) in total {
                out.counter(&HOST_CONNECTIONS_TOTAL, &[node, &host, result], n);
            }
            out.counter(&HOST_FRAMES, &[node, &host, "rx"], c.rx_frames);
            out.counter(&HOST_FRAMES, &[node, &host, "tx"], c.tx_frames);
        }
        for p in self.local.iter().flat_map(|l| &l.ports) {
            let kind = p.kind.name();
            let (name, c) = (p.name.as_str(), &p.counters);
            out.gauge(&PORT_UP, &[node, name, kind], f64::from(u8::from(p.up)));
            out.counter(&PORT_FRAMES, &[node, name, kind, "rx"], c.rx_frames);
            out.counter(&PORT_FRAMES, &[node, name, kind, "tx"], c.tx_frames);
        }
        out.counter(&RELOADS, &[node, "ok"], self.reloads.ok);
        out.counter(&RELOADS, &[node, "refused"], self.reloads.refused);
        let c = &self.capture;
        out.gauge(&CAPTURES_ACTIVE, &[node], c.active as f64);
        out.counter(&CAPTURE_FRAMES, &[node, "captured"], c.captured);
        out.counter(&CAPTURE_FRAMES, &[node, "dropped"], c.dropped);
        for (reason, count) in self.drops.iter() {
            out.counter(&DROPS, &[node, reason.name()], count);
        }
    }
}
