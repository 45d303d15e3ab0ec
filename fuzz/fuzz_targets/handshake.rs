//! The handshake messages and the two session-less messages, parsed directly
//! (the `switch_datagram` and `node_datagram` targets reach them only behind
//! `mac1` or a matching index, which random mutations rarely keep valid).
//! The first input byte picks the parser, the rest is the datagram:
//!
//! - 0: Noise message 1 (`handshake::read_init`) as the fixture switch reads
//!   it. Accepted only if made for the switch's key; then answering it must
//!   give a well-formed response.
//! - 1: Noise message 2 (`Initiation::finish`) for a fresh initiation of
//!   node h1. Its ephemeral key is new on every run, so no response from the
//!   input can complete it: every one must be refused, and must leave the
//!   initiation in flight (the genuine response still completes it).
//! - 2: a cookie reply (`MacKeys::open_reply`) to the fixture initiation
//!   `stamped_init`. One that opens must carry the cookie the switch's
//!   minter would check `mac2` against.
//! - 3: a restart notice (`NoticeKey::open`) from the switch to h1. One that
//!   opens must be exactly what the switch would seal for its timestamp.
//!
//! All must refuse (never panic on) anything else.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use overlay_proto::cookie::MacKeys;
use overlay_proto::handshake::{self, Timestamp};
use overlay_proto::keys::Psk;
use overlay_proto::notice::NoticeKey;
use overlay_proto::wire::{
    COOKIE_REPLY_LEN, HS_INIT_LEN, HS_RESP_LEN, Header, MessageType, RESTART_NOTICE_LEN,
};
use tapmesh_fuzz::{NETWORK_ID, cookie_minter, keys, node_addr, now, stamped_init};

fuzz_target!(|data: &[u8]| {
    let Some((&which, msg)) = data.split_first() else {
        return;
    };
    let Ok(h) = Header::new_checked(msg) else {
        return;
    };
    let (sw, h1, _) = keys();
    match which % 4 {
        0 => {
            let Ok(init) = handshake::read_init(sw, &Psk::default(), &h) else {
                return;
            };
            assert_eq!(h.message_type(), MessageType::HandshakeInit);
            assert_eq!(init.initiator_index, h.sender_index());
            let mut out = [0u8; HS_RESP_LEN];
            init.accept(h.network_id(), 7, &mut out)
                .expect("accepting a read initiation");
            let r = Header::new_checked(&out[..]).expect("well-formed response");
            assert_eq!(r.message_type(), MessageType::HandshakeResp);
            assert_eq!(r.receiver_index(), h.sender_index());
        }
        1 => {
            let mut out = [0u8; HS_INIT_LEN];
            let mut i = handshake::initiate(
                h1,
                &sw.public_key(),
                &Psk::default(),
                NETWORK_ID,
                0x0102_0304,
                Timestamp::from_unix(1_700_000_000, 0),
                handshake::CAP_VNET,
                None,
                &mut out,
            )
            .expect("initiate");
            assert!(
                i.finish(&h).is_err(),
                "a response not made for this initiation completed it"
            );
            // The failed response left the initiation in flight: the
            // genuine one still completes it.
            let inc =
                handshake::read_init(sw, &Psk::default(), &Header::new_checked(&out[..]).unwrap())
                    .expect("the switch reads our initiation");
            let mut resp = [0u8; HS_RESP_LEN];
            inc.accept(NETWORK_ID, 9, &mut resp).expect("accept");
            assert!(
                i.finish(&Header::new_checked(&resp[..]).unwrap()).is_ok(),
                "a failed response spoiled the initiation"
            );
        }
        2 => {
            let init = stamped_init();
            let mac1: [u8; 16] = init[HS_INIT_LEN - 32..HS_INIT_LEN - 16].try_into().unwrap();
            let Ok(cookie) = MacKeys::new(&sw.public_key()).open_reply(&mac1, &h) else {
                return;
            };
            assert_eq!(msg.len(), COOKIE_REPLY_LEN);
            let mut reply = [0u8; COOKIE_REPLY_LEN];
            let minter = cookie_minter(&mut reply);
            let mut again = init;
            MacKeys::new(&sw.public_key()).stamp(Some(&cookie), &mut again);
            let ih = Header::new_checked(&again[..]).unwrap();
            assert!(
                minter.check_mac2(now(), node_addr(), &ih),
                "a cookie reply opened but its cookie is not the switch's"
            );
        }
        _ => {
            static KEY: OnceLock<NoticeKey> = OnceLock::new();
            let key = KEY.get_or_init(|| NoticeKey::derive(h1, &sw.public_key()).unwrap());
            let Ok(ts) = key.open(&h) else {
                return;
            };
            let mut again = [0u8; RESTART_NOTICE_LEN];
            NoticeKey::derive(sw, &h1.public_key())
                .unwrap()
                .seal(h.network_id(), ts, &mut again);
            assert_eq!(
                msg,
                &again[..],
                "a notice opened that the switch did not seal"
            );
        }
    }
});
