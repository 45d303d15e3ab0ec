//! `Header::new_checked` is the only door for untrusted bytes: it must never
//! panic, and once it said yes no accessor may panic either. Also checks the
//! length rules it promises (docs/protocol.md).
#![no_main]

use libfuzzer_sys::fuzz_target;
use overlay_proto::wire::{
    COMMON_LEN, COOKIE_REPLY_LEN, DATA_OVERHEAD, HS_INIT_LEN, HS_RESP_LEN, Header, KNOWN_FLAGS,
    MessageType, NOISE_INIT_LEN, NOISE_RESP_LEN, RESTART_NOTICE_LEN, VERSION,
};

fuzz_target!(|data: &[u8]| {
    let Ok(h) = Header::new_checked(data) else {
        return;
    };
    let ty = h.message_type();
    let flags = h.flags();
    let hops = h.hops();
    let network_id = h.network_id();
    let receiver_index = h.receiver_index();
    let sender_index = h.sender_index();
    let counter = h.counter();
    let noise = h.noise_message();
    std::hint::black_box((
        flags,
        hops,
        network_id,
        receiver_index,
        sender_index,
        counter,
        noise,
    ));

    // What acceptance promises.
    assert!(data.len() >= COMMON_LEN);
    assert_eq!(data[0] >> 4, VERSION);
    assert_eq!(flags & !KNOWN_FLAGS, 0, "unknown flag bits accepted");
    assert_eq!(data[3], 0, "reserved byte accepted non-zero");
    assert_eq!(
        network_id,
        u32::from_be_bytes(data[4..8].try_into().unwrap())
    );
    match ty {
        MessageType::Data => {
            assert!(data.len() >= DATA_OVERHEAD);
            assert!(noise.is_empty());
            assert_eq!(
                receiver_index,
                u32::from_be_bytes(data[8..12].try_into().unwrap())
            );
            assert_eq!(
                counter,
                u64::from_be_bytes(data[12..20].try_into().unwrap())
            );
        }
        MessageType::HandshakeInit => {
            assert_eq!(data.len(), HS_INIT_LEN);
            assert_eq!(noise.len(), NOISE_INIT_LEN);
            assert_eq!(
                sender_index,
                u32::from_be_bytes(data[8..12].try_into().unwrap())
            );
        }
        MessageType::HandshakeResp => {
            assert_eq!(data.len(), HS_RESP_LEN);
            assert_eq!(noise.len(), NOISE_RESP_LEN);
            assert_eq!(
                sender_index,
                u32::from_be_bytes(data[8..12].try_into().unwrap())
            );
            assert_eq!(
                receiver_index,
                u32::from_be_bytes(data[12..16].try_into().unwrap())
            );
        }
        MessageType::RestartNotice => {
            assert_eq!(data.len(), RESTART_NOTICE_LEN);
            assert!(noise.is_empty());
        }
        MessageType::CookieReply => {
            assert_eq!(data.len(), COOKIE_REPLY_LEN);
            assert!(noise.is_empty());
            assert_eq!(
                receiver_index,
                u32::from_be_bytes(data[8..12].try_into().unwrap())
            );
        }
        MessageType::Unknown(t) => panic!("unknown type {t} accepted"),
    }
    // The type survives a round trip through its wire value.
    assert_eq!(MessageType::from(u8::from(ty)), ty);
    assert_eq!(u8::from(ty), data[0] & 0x0f);
    let _ = h.into_inner();
});
