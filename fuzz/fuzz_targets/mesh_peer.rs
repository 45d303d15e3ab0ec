//! Mesh mode: nodes talk to each other directly, so a node's socket takes
//! datagrams from peers, from the switch and from anyone else. The network
//! (a mesh switch and h1, h2, h3 with direct sessions between every pair) is
//! built once per process and cloned for every input. Each input is a list
//! of records `[sel, len_lo, len_hi, bytes...]`; by `sel % 4`, `bytes` is
//! - 0: a datagram to h1 from h2's address (a peer, or someone forging it),
//! - 1: a datagram to h1 from an address nobody knows,
//! - 2: a frame h2 reads from its TAP (sent straight to a peer if its MAC is
//!   known, else through the switch),
//! - 3: a datagram to h1 from the switch's address.
//!
//! Must never panic, and:
//! - forged datagrams (0, 1, 3) put nothing on any TAP: the keys come from
//!   this process's random ephemerals, so no input can be authentic;
//! - to an unknown address h1 sends at most a handshake response or a
//!   cookie reply, once per datagram, and nobody else sends there at all;
//! - h2's frames reach other TAPs unchanged in their source MAC, never h2's,
//!   and never larger than the MTU allows.
#![no_main]

use std::net::SocketAddr;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use overlay_proto::wire::{Header, MessageType};
use tapmesh_fuzz::{mesh_net, switch_addr};

const MTU: usize = 1400;

fuzz_target!(|data: &[u8]| {
    let mut m = mesh_net().clone();
    let unknown: SocketAddr = "198.18.0.99:40000".parse().unwrap();
    let mut rest = data;
    let mut records = 0;
    while rest.len() >= 3 && records < 16 {
        records += 1;
        let sel = rest[0] % 4;
        let len = (u16::from_le_bytes([rest[1], rest[2]]) as usize).min(rest.len() - 3);
        let bytes = &rest[3..3 + len];
        rest = &rest[3 + len..];

        let before: Vec<usize> = m.tap.iter().map(Vec::len).collect();
        let stray = if sel == 2 {
            m.send(1, bytes);
            m.take_strays()
        } else {
            let from = match sel {
                0 => m.addrs[1],
                1 => unknown,
                _ => switch_addr(),
            };
            let mut d = bytes.to_vec();
            let now = m.now;
            let r = m.nodes[0].handle_datagram(now, from, &mut d);
            assert!(
                r.is_none(),
                "a forged datagram from {from} reached h1's TAP"
            );
            m.deliver();
            m.take_strays()
        };
        assert!(stray.len() <= 1, "{} datagrams to strangers", stray.len());
        for (i, to, d) in &stray {
            assert_eq!((*i, *to, sel), (0, unknown, 1), "a datagram to a stranger");
            let t = Header::new_checked(&d[..])
                .expect("well-formed")
                .message_type();
            assert!(
                matches!(t, MessageType::HandshakeResp | MessageType::CookieReply),
                "{t:?} to a stranger"
            );
        }
        for (i, writes) in m.tap.iter().enumerate() {
            for f in &writes[before[i]..] {
                assert_eq!(sel, 2, "a forged datagram reached the TAP of h{}", i + 1);
                assert_ne!(i, 1, "h2's frame came back to h2");
                assert!(f.len() >= 14);
                let tagged = f[12..14] == [0x81, 0x00];
                assert!(f.len() <= MTU + 14 + if tagged { 4 } else { 0 });
                assert_eq!(&f[6..12], &bytes[6..12], "source MAC changed");
            }
        }
    }
    // Timers over whatever state the records left: 2 s is enough to expire
    // reassemblies and probe peers, not to rekey (X25519, covered elsewhere).
    let later = m.now + Duration::from_secs(2);
    for n in &mut m.nodes {
        n.handle_timeout(later);
        let _ = n.status(later, "h");
    }
});
