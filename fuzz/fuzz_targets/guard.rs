//! The switch's handshake guard (`mac1`, `mac2`, cookie replies, rate limits)
//! under load, driven by a sequence of initiations from the input. Each
//! record is one byte of instructions and 156 bytes of initiation:
//!
//! ```text
//! instr bit 0: re-stamp mac1 correctly (else keep the input's)
//!       bit 1: re-stamp mac2 with the last cookie the guard gave out
//!       bit 2: send from a second address (port + 1)
//!       bits 3-7: milliseconds * 16 since the previous record
//! ```
//!
//! What must hold: a wrong `mac1` is dropped as `bad_mac1`; under load an
//! initiation without a valid `mac2` never proceeds (it gets a cookie or is
//! dropped); a cookie made for one address does not admit the other; and
//! cookie replies to the one source prefix (both addresses share an IP)
//! never exceed its budget.
#![no_main]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use overlay_proto::cookie::{COOKIE_SECRET_LIFETIME, COOKIE_USE_FOR, Cookie, MacKeys};
use overlay_proto::handshake_guard::{
    GuardConfig, GuardDrop, GuardVerdict, HandshakeGuard, PER_SOURCE_BURST,
};
use overlay_proto::wire::{COOKIE_REPLY_LEN, HS_INIT_LEN, Header};
use tapmesh_fuzz::{keys, node_addr, now};

const REPLIES_PER_SEC: u32 = 3;

fuzz_target!(|data: &[u8]| {
    let (sw, _, _) = keys();
    let keys_for_sw = MacKeys::new(&sw.public_key());
    let cfg = GuardConfig {
        // Every initiation after the first puts the guard under load.
        load_threshold: 1,
        cookie_replies_per_sec: REPLIES_PER_SEC,
    };
    let mut t = now();
    let mut g = HandshakeGuard::new(cfg, &sw.public_key(), t);
    let a = node_addr();
    let b = SocketAddr::new(a.ip(), a.port().wrapping_add(1));
    // The last cookie handed out, to whom, and when.
    let mut cookie: Option<(Cookie, SocketAddr, Instant)> = None;
    // When the guard's cookie secret was made (at a reply, when none was
    // live), as `CookieMinter` documents.
    let mut secret_born: Option<Instant> = None;
    // When replies were sent, for the last second.
    let mut replies: VecDeque<Instant> = VecDeque::new();

    for rec in data.chunks_exact(1 + HS_INIT_LEN) {
        let instr = rec[0];
        t += Duration::from_millis(u64::from(instr >> 3) * 16);
        let from = if instr & 4 != 0 { b } else { a };
        let mut init: [u8; HS_INIT_LEN] = rec[1..].try_into().unwrap();
        if instr & 1 != 0 {
            let c = if instr & 2 != 0 {
                cookie.as_ref().map(|(c, _, _)| c)
            } else {
                None
            };
            keys_for_sw.stamp(c, &mut init);
        }
        let Ok(h) = Header::new_checked(&init[..]) else {
            continue;
        };
        let mac1_ok = keys_for_sw.check_mac1(&h);
        let verdict = g.check(t, from, &h);
        if !mac1_ok {
            assert_eq!(verdict, GuardVerdict::Drop(GuardDrop::BadMac1));
            continue;
        }
        // A valid mac2 needs a live cookie made for this address.
        let cookie_for_us = instr & 3 == 3
            && cookie.as_ref().is_some_and(|(_, to, at)| {
                *to == from && t.saturating_duration_since(*at) < COOKIE_USE_FOR
            })
            && secret_born.is_some_and(|b| t.saturating_duration_since(b) < COOKIE_SECRET_LIFETIME);
        if g.is_under_load(t) {
            if cookie_for_us {
                assert!(
                    matches!(
                        verdict,
                        GuardVerdict::Proceed | GuardVerdict::Drop(GuardDrop::RateLimited)
                    ),
                    "a valid cookie was refused: {verdict:?}"
                );
            } else {
                assert_ne!(
                    verdict,
                    GuardVerdict::Proceed,
                    "under load, an initiation without this address's cookie proceeded"
                );
            }
        }
        if verdict == GuardVerdict::SendCookie {
            // A token bucket: in any second at most its burst plus a
            // second's refill.
            replies.push_back(t);
            while replies
                .front()
                .is_some_and(|r| t.saturating_duration_since(*r) >= Duration::from_secs(1))
            {
                replies.pop_front();
            }
            assert!(
                replies.len() <= (PER_SOURCE_BURST + REPLIES_PER_SEC) as usize,
                "cookie replies over the limit"
            );
            let mut reply = [0u8; COOKIE_REPLY_LEN];
            g.write_cookie_reply(t, from, &h, &mut reply);
            let r = Header::new_checked(&reply[..]).expect("well-formed cookie reply");
            let mac1: [u8; 16] = init[HS_INIT_LEN - 32..HS_INIT_LEN - 16].try_into().unwrap();
            let c = keys_for_sw
                .open_reply(&mac1, &r)
                .expect("the initiator opens the guard's cookie reply");
            cookie = Some((c, from, t));
            if secret_born.is_none_or(|b| t.saturating_duration_since(b) >= COOKIE_SECRET_LIFETIME)
            {
                secret_born = Some(t);
            }
        }
        g.sweep(t);
    }
});
