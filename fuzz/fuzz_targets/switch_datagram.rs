//! Feed one datagram to a fresh switch core (admitting nodes h1 and h2, no
//! sessions yet) and drain its output. Must never panic, and must send
//! nothing in reply to anything but a handshake initiation; to an initiation
//! it sends at most one well-formed response, to the sender. (A valid
//! initiation from h1 is in the seed corpus, so the accept path is covered.)
//!
//! The switch is rebuilt for every input from a config built once, so runs
//! are reproducible: no state leaks from one input to the next.
#![no_main]

use libfuzzer_sys::fuzz_target;
use overlay_proto::wire::{HS_INIT_LEN, HS_RESP_LEN, Header, MessageType};
use tapmesh_fuzz::{SWITCH_SEED, node_addr, now, switch_config};
use tapmesh_switch::fabric::Switch;

fuzz_target!(|data: &[u8]| {
    let now = now();
    let mut sw = Switch::new(switch_config().clone(), now, SWITCH_SEED);
    let mut buf = data.to_vec();
    sw.handle_datagram(now, node_addr(), &mut buf);

    let is_init = data.first() == Some(&0x12) && data.len() == HS_INIT_LEN;
    if !is_init {
        assert_eq!(
            sw.pending_transmits(),
            0,
            "switch answered a datagram that is not a handshake initiation"
        );
    }
    assert!(sw.pending_transmits() <= 1);
    while let Some(t) = sw.poll_transmit() {
        assert_eq!(t.destination, node_addr());
        let h = Header::new_checked(t.contents).expect("switch sends well-formed datagrams");
        assert_eq!(h.message_type(), MessageType::HandshakeResp);
        assert_eq!(t.contents.len(), HS_RESP_LEN);
        assert_eq!(
            h.receiver_index(),
            u32::from_be_bytes(data[8..12].try_into().unwrap())
        );
        assert_eq!(h.network_id(), switch_config().network_id);
    }
    // Nothing is "connected" by a handshake alone; that needs a data packet.
    while let Some(e) = sw.poll_event() {
        panic!("event from a single datagram: {e:?}");
    }
    let _ = sw.poll_timeout();
    sw.handle_timeout(now);
});
