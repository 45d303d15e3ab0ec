//! Feed one datagram to a fresh node core that has just sent its first
//! handshake initiation (so a response naming its index reaches the Noise
//! code). Must never panic; with no session nothing can be delivered to the
//! TAP, and nothing may be sent in reply to anything but a handshake
//! response (which may confirm with a keepalive) or an authentic restart
//! notice (which starts a new handshake at once; a valid one is a seed).
//!
//! Starting the handshake costs three X25519 operations, and only a handshake
//! response (first byte 0x13) can get as far as looking at it, so other
//! inputs go to a node that has not started one: same code paths, ~50x the
//! executions per second.
#![no_main]

use libfuzzer_sys::fuzz_target;
use overlay_proto::wire::{Header, MessageType};
use tapmesh_fuzz::{
    NODE_SEED, UNIX_NOW, node_config, node_with_handshake_in_flight, now, switch_addr,
};
use tapmesh_node::engine::Node;

fuzz_target!(|data: &[u8]| {
    let now = now();
    let mut node = if data.first() == Some(&0x13) {
        node_with_handshake_in_flight().0
    } else {
        Node::new(node_config().clone(), now, UNIX_NOW, NODE_SEED)
    };
    let mut buf = data.to_vec();
    let r = node.handle_datagram(now, switch_addr(), &mut buf);
    assert_eq!(r, None, "node delivered a frame without a session");

    let mut sent = 0;
    while let Some(t) = node.poll_transmit() {
        assert_eq!(t.destination, switch_addr());
        let h = Header::new_checked(t.contents).expect("node sends well-formed datagrams");
        if data.first() == Some(&0x14) {
            assert_eq!(h.message_type(), MessageType::HandshakeInit);
        }
        sent += 1;
    }
    match data.first() {
        Some(0x13) | Some(0x14) => assert!(sent <= 1),
        _ => assert_eq!(
            sent, 0,
            "node answered something other than a handshake response or restart notice"
        ),
    }
    while node.poll_event().is_some() {}
    let _ = node.poll_timeout();
});
