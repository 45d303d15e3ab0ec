//! Node cores behind one underlay endpoint, for a driver with a real socket.
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use overlay_proto::wire::{Header, MessageType};
use tapmesh_node::engine::Node;

/// Node cores sharing one endpoint: a datagram goes to the node whose
/// session (or handshake) index it names, learned from each node's
/// handshake initiations as they are sent.
#[derive(Debug)]
pub struct NodeSet {
    /// The nodes.
    pub nodes: Vec<Node>,
    /// Session (and handshake) index -> position in `nodes`.
    by_index: HashMap<u32, usize>,
}

impl NodeSet {
    /// `nodes` behind one endpoint.
    pub fn new(nodes: Vec<Node>) -> NodeSet {
        NodeSet {
            nodes,
            by_index: HashMap::new(),
        }
    }

    /// Hand what node `i` queued to `send` (contents, destination), noting
    /// the index each handshake initiation proposes; its log events are
    /// dropped.
    pub fn flush(&mut self, i: usize, mut send: impl FnMut(&[u8], SocketAddr)) {
        while let Some(t) = self.nodes[i].poll_transmit() {
            if let Ok(h) = Header::new_checked(t.contents)
                && h.message_type() == MessageType::HandshakeInit
            {
                self.by_index.insert(h.sender_index(), i);
            }
            send(t.contents, t.destination);
        }
        while self.nodes[i].poll_event().is_some() {}
    }

    /// Hand datagram `d` from `from` to the node it names; `on_frame` sees
    /// the frame that node writes to its TAP, if any. Returns the node, so
    /// the caller can [`flush`](Self::flush) what it answered.
    pub fn receive(
        &mut self,
        now: Instant,
        from: SocketAddr,
        d: &mut [u8],
        on_frame: impl FnOnce(&[u8]),
    ) -> Option<usize> {
        let i = *self
            .by_index
            .get(&Header::new_checked(&d[..]).ok()?.receiver_index())?;
        if let Some(f) = crate::node_receive(&mut self.nodes[i], now, from, d) {
            on_frame(f);
        }
        Some(i)
    }
}
