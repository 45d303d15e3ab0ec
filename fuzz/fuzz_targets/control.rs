//! `Control::parse`, the parser for the plaintext of control packets (mesh
//! membership, local addresses, MAC announcements, ping/pong). It runs on
//! authenticated bytes, but those come from any admitted node, so it must
//! never panic, must stay within its limits, and what it accepts must be
//! exactly what `emit` writes: parse, emit and parse again give the same
//! message and, for known types, the same bytes. The same for
//! `Announce::parse`, the trunk announcement between switches (type 10):
//! what it accepts is within its bounds, and a one-part announcement is
//! exactly what `announce::emit` writes for what it lists.
#![no_main]

use libfuzzer_sys::fuzz_target;
use overlay_proto::announce::{self, Announce, MAX_ANNOUNCE_LEN, MAX_PARTS};
use overlay_proto::control::{Control, MAX_ENDPOINTS, MAX_MACS, MAX_NAME};

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = Announce::parse(data) {
        assert!(data.len() <= MAX_ANNOUNCE_LEN);
        assert!(a.part < a.parts && a.parts as usize <= MAX_PARTS);
        let vlans: Vec<u16> = a.vlans().collect();
        let groups: Vec<_> = a.groups().collect();
        assert!(vlans.iter().chain(groups.iter().map(|(v, _)| v)).all(|v| *v <= 4094));
        assert!(groups.iter().all(|(_, g)| g.is_multicast() || g.is_unspecified()));
        if a.parts == 1 && !a.all_groups {
            let mut out = Vec::new();
            announce::emit(a.epoch, a.generation, &vlans, &groups, false, &mut out);
            assert_eq!(out, [data], "accepted bytes differ from their encoding");
        }
    }
    let Ok(m) = Control::parse(data) else {
        return;
    };
    match &m {
        Control::PeerUpdate {
            name, endpoints, ..
        } => {
            assert!(name.len() <= MAX_NAME);
            assert!(endpoints.len() <= MAX_ENDPOINTS);
        }
        Control::LocalAddrs(e) => assert!(e.len() <= MAX_ENDPOINTS),
        Control::MacAnnounce { macs, .. } => assert!(macs.len() <= MAX_MACS),
        _ => {}
    }
    let mut out = Vec::new();
    m.emit(&mut out);
    assert_eq!(out.len(), m.buffer_len(), "{m:?}");
    assert_eq!(Control::parse(&out).as_ref(), Ok(&m));
    match m {
        // An unknown type keeps only its type byte; its body is not ours.
        Control::Unknown(t) => assert_eq!(out, [t]),
        _ => assert_eq!(out, data, "accepted bytes differ from their encoding"),
    }
});
