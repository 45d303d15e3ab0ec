//! Writes the named seed inputs under `fuzz/corpus/<target>/seed-*`.
//!
//!     cargo run --manifest-path fuzz/Cargo.toml --example make-seeds
//!
//! Names start with `seed-` because the root .gitignore ignores corpus files
//! whose names start with a hex digit (libFuzzer's SHA-1-named outputs).
//! Handshake seeds that must be *valid* (an initiation from an admitted node)
//! are made with the same fixed keys the targets use (`tapmesh_fuzz`); Noise
//! ephemerals are random, so their bytes differ on each run, which is fine.
use std::path::{Path, PathBuf};

use overlay_proto::cookie::CookieMinter;
use overlay_proto::handshake::{self, Timestamp};
use overlay_proto::keys::{Psk, StaticSecret};
use overlay_proto::notice::NoticeKey;
use overlay_proto::wire::{
    COOKIE_REPLY_LEN, DATA_HEADER_LEN, DATA_OVERHEAD, HS_INIT_LEN, HS_RESP_LEN, Header,
    MessageType, RESTART_NOTICE_LEN,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tapmesh_fuzz::{NETWORK_ID, SWITCH_SEED, keys, node_addr, now, session_pair, switch_config};
use tapmesh_switch::core::Switch;

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    assert!(name.starts_with("seed-"));
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn dir(target: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A data datagram with an all-zero (so: wrong) tag.
fn data(network_id: u32, receiver_index: u32, counter: u64, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; payload.len() + DATA_OVERHEAD];
    let mut h = Header::new_unchecked(&mut b[..]);
    h.set_common(MessageType::Data, 0, 0, network_id);
    h.set_data_fields(receiver_index, counter);
    b[DATA_HEADER_LEN..DATA_HEADER_LEN + payload.len()].copy_from_slice(payload);
    b
}

/// `0x12 0 0 0 | network_id | sender_index | 144 bytes` (Noise message,
/// `mac1`, `mac2`: `mac1` is wrong, so the switch drops it as `bad_mac1`).
fn raw_init(network_id: u32, sender_index: u32, fill: u8) -> Vec<u8> {
    let mut b = vec![fill; HS_INIT_LEN];
    let mut h = Header::new_unchecked(&mut b[..]);
    h.set_common(MessageType::HandshakeInit, 0, 0, network_id);
    h.set_handshake_indices(sender_index, None);
    b
}

/// `0x13 0 0 0 | network_id | sender_index | receiver_index | 48 bytes`.
fn raw_resp(network_id: u32, sender_index: u32, receiver_index: u32, fill: u8) -> Vec<u8> {
    let mut b = vec![fill; HS_RESP_LEN];
    let mut h = Header::new_unchecked(&mut b[..]);
    h.set_common(MessageType::HandshakeResp, 0, 0, network_id);
    h.set_handshake_indices(sender_index, Some(receiver_index));
    b
}

/// A real initiation from `from` to the fixture switch.
fn real_init(from: &StaticSecret, psk: &Psk, network_id: u32, sender_index: u32) -> Vec<u8> {
    let mut out = [0u8; HS_INIT_LEN];
    handshake::initiate(
        from,
        &keys().0.public_key(),
        psk,
        network_id,
        sender_index,
        Timestamp::from_unix(1_700_000_000, 0),
        handshake::CAP_VNET,
        None,
        &mut out,
    )
    .unwrap();
    out.to_vec()
}

/// A broadcast ARP request from 02:00:00:00:00:01 (60 bytes, padded).
fn arp_frame() -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01, 0x08, 0x06]);
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01, 10, 0, 0, 1]);
    f.extend_from_slice(&[0, 0, 0, 0, 0, 0, 10, 0, 0, 2]);
    f.resize(60, 0);
    f
}

/// An authentic restart notice from the fixture switch to node h1, dated
/// `secs_after` seconds after the node core's start.
fn notice(secs_after: u64) -> Vec<u8> {
    let (sw, h1, _) = keys();
    let key = NoticeKey::derive(sw, &h1.public_key()).unwrap();
    let mut out = [0u8; RESTART_NOTICE_LEN];
    let t = tapmesh_fuzz::UNIX_NOW.as_secs() + secs_after;
    key.seal(NETWORK_ID, Timestamp::from_unix(t, 0), &mut out);
    out.to_vec()
}

/// A cookie reply from the fixture switch to the initiation `init`.
fn cookie_reply(init: &[u8]) -> Vec<u8> {
    let mut minter = CookieMinter::new(&keys().0.public_key());
    let mut out = [0u8; COOKIE_REPLY_LEN];
    minter.write_reply(
        now(),
        node_addr(),
        &Header::new_checked(init).unwrap(),
        &mut StdRng::seed_from_u64(5),
        &mut out,
    );
    out.to_vec()
}

fn header_seeds() {
    let d = dir("header");
    write(
        &d,
        "seed-cookie-reply",
        &cookie_reply(&real_init(&keys().1, &Psk::default(), NETWORK_ID, 9)),
    );
    write(
        &d,
        "seed-data-keepalive",
        &data(NETWORK_ID, 0x0102_0304, 0, &[]),
    );
    write(
        &d,
        "seed-data-frame",
        &data(
            0xdead_beef,
            0x0102_0304,
            0x1122_3344_5566_7788,
            &arp_frame(),
        ),
    );
    write(&d, "seed-hs-init", &raw_init(NETWORK_ID, 0x0102_0304, 0xa5));
    write(
        &d,
        "seed-hs-resp",
        &raw_resp(NETWORK_ID, 0x0506_0708, 0x0102_0304, 0x5a),
    );
    write(&d, "seed-restart-notice", &notice(60));
    write(&d, "seed-truncated-7", &data(NETWORK_ID, 1, 0, &[])[..7]);
    write(
        &d,
        "seed-truncated-data-35",
        &data(NETWORK_ID, 1, 0, &[])[..35],
    );
    let mut v = raw_init(NETWORK_ID, 1, 0);
    v.push(0);
    write(&d, "seed-hs-init-long-121", &v);
    write(
        &d,
        "seed-hs-resp-short-63",
        &raw_resp(NETWORK_ID, 1, 2, 0)[..63],
    );
    let mut v = data(NETWORK_ID, 1, 0, &[]);
    v[0] = 0x21;
    write(&d, "seed-bad-version", &v);
    v[0] = 0x14;
    write(&d, "seed-unknown-type-4", &v);
    let mut v = data(NETWORK_ID, 1, 0, &[]);
    v[1] = 0x80;
    write(&d, "seed-bad-flags", &v);
    let mut v = data(NETWORK_ID, 1, 0, &[]);
    v[3] = 1;
    write(&d, "seed-reserved-nonzero", &v);
}

fn session_seeds() {
    let d = dir("session_open");
    let (mut a, _) = session_pair(now());
    // Genuine packets from A to B: the target's B opens these.
    let mut b = vec![0u8; DATA_OVERHEAD];
    let n = a.seal(0, &mut b, 0).unwrap();
    write(&d, "seed-sealed-keepalive", &b[..n]);
    let f = arp_frame();
    let mut b = vec![0u8; f.len() + DATA_OVERHEAD];
    b[DATA_HEADER_LEN..DATA_HEADER_LEN + f.len()].copy_from_slice(&f);
    let n = a.seal(0, &mut b, f.len()).unwrap();
    write(&d, "seed-sealed-arp-counter-1", &b[..n]);
    write(
        &d,
        "seed-data-forged-counter-5000",
        &data(NETWORK_ID, tapmesh_fuzz::SESSION_B_INDEX, 5000, &f),
    );
    write(
        &d,
        "seed-data-counter-max",
        &data(NETWORK_ID, tapmesh_fuzz::SESSION_B_INDEX, u64::MAX, &[]),
    );
    write(&d, "seed-truncated-7", &data(NETWORK_ID, 1, 0, &[])[..7]);
    let mut jumbo = vec![0x42u8];
    jumbo.extend(std::iter::repeat_n(0x5a, 9000));
    write(&d, "seed-jumbo-frame", &jumbo);
}

fn switch_seeds() {
    let d = dir("switch_datagram");
    let (_, h1, _) = keys();
    let valid = real_init(h1, &Psk::default(), NETWORK_ID, 0x0102_0304);
    // Check it really is accepted, so this seed covers the accept path.
    let mut sw = Switch::new(switch_config().clone(), now(), SWITCH_SEED);
    sw.handle_datagram(now(), node_addr(), &mut valid.clone());
    assert_eq!(sw.pending_transmits(), 1, "valid initiation not answered");
    write(&d, "seed-hs-init-h1-valid", &valid);
    let stranger = StaticSecret::generate(&mut StdRng::seed_from_u64(99));
    write(
        &d,
        "seed-hs-init-unknown-key",
        &real_init(&stranger, &Psk::default(), NETWORK_ID, 7),
    );
    let wrong_psk = Psk::from_base64(&h1.public_key().to_base64()).unwrap();
    write(
        &d,
        "seed-hs-init-wrong-psk",
        &real_init(h1, &wrong_psk, NETWORK_ID, 8),
    );
    write(
        &d,
        "seed-hs-init-other-network",
        &real_init(h1, &Psk::default(), 1, 9),
    );
    write(
        &d,
        "seed-hs-init-garbage",
        &raw_init(NETWORK_ID, 0x0102_0304, 0xa5),
    );
    write(
        &d,
        "seed-hs-resp-unexpected",
        &raw_resp(NETWORK_ID, 1, 2, 0x5a),
    );
    write(
        &d,
        "seed-data-keepalive-unknown-index",
        &data(NETWORK_ID, 0x0102_0304, 0, &[]),
    );
    write(
        &d,
        "seed-data-arp-unknown-index",
        &data(NETWORK_ID, 0x0102_0304, 3, &arp_frame()),
    );
    write(&d, "seed-restart-notice-unexpected", &notice(60));
    write(
        &d,
        "seed-cookie-reply-unexpected",
        &cookie_reply(&real_init(&keys().1, &Psk::default(), NETWORK_ID, 9)),
    );
    write(&d, "seed-truncated-7", &data(NETWORK_ID, 1, 0, &[])[..7]);
}

fn node_seeds() {
    let d = dir("node_datagram");
    let (node, init) = tapmesh_fuzz::node_with_handshake_in_flight();
    drop(node);
    let index = Header::new_checked(&init[..]).unwrap().sender_index();
    write(
        &d,
        "seed-hs-resp-matching-index-garbage",
        &raw_resp(NETWORK_ID, 0x0506_0708, index, 0x5a),
    );
    write(
        &d,
        "seed-hs-resp-wrong-index",
        &raw_resp(NETWORK_ID, 0x0506_0708, index ^ 1, 0x5a),
    );
    // A genuine response from the switch to this node's initiation. The
    // target's node picks a new ephemeral each run, so it will not verify,
    // but it is structurally perfect.
    let mut sw = Switch::new(switch_config().clone(), now(), SWITCH_SEED);
    sw.handle_datagram(now(), tapmesh_fuzz::switch_addr(), &mut init.clone());
    let resp = sw
        .poll_transmit()
        .expect("switch answers the node")
        .contents
        .to_vec();
    write(&d, "seed-hs-resp-from-switch", &resp);
    write(&d, "seed-hs-init-unexpected", &init);
    // A cookie reply to this node's initiation (the target's node picks a
    // new ephemeral, so mac1 and with it the associated data differ).
    write(&d, "seed-cookie-reply-matching-index", &cookie_reply(&init));
    // Authentic and newer than the node's start: it must start a handshake.
    let valid = notice(60);
    let mut n = tapmesh_node::core::Node::new(
        tapmesh_fuzz::node_config().clone(),
        now(),
        tapmesh_fuzz::UNIX_NOW,
        tapmesh_fuzz::NODE_SEED,
    );
    n.handle_datagram(now(), tapmesh_fuzz::switch_addr(), &mut valid.clone());
    assert!(n.poll_transmit().is_some(), "valid restart notice ignored");
    write(&d, "seed-restart-notice-valid", &valid);
    write(&d, "seed-restart-notice-stale", &notice(0));
    write(
        &d,
        "seed-data-keepalive-unknown-index",
        &data(NETWORK_ID, index, 0, &[]),
    );
    write(
        &d,
        "seed-data-arp-other-network",
        &data(7, index, 0, &arp_frame()),
    );
    write(&d, "seed-truncated-7", &data(NETWORK_ID, 1, 0, &[])[..7]);
}

fn config_seeds() {
    let d = dir("config");
    let (_, h1, h2) = keys();
    let (p1, p2) = (h1.public_key().to_base64(), h2.public_key().to_base64());
    let s_pub = keys().0.public_key().to_base64();
    write(
        &d,
        "seed-switch-minimal",
        b"listen = \"0.0.0.0:7777\"\nprivate-key-file = \"s.key\"\n",
    );
    write(
        &d,
        "seed-switch-full",
        format!(
            "# switch.toml\nlisten = \"[::]:7777\"\nprivate-key-file = \"s.key\"\nnetwork-secret-file = \"net.psk\"\n\
             mac-aging-secs = 300\nnode-timeout-secs = 30\nmac-limit-per-node = 1024\nmac-table-limit = 1048576\n\
             admin-socket = \"/run/tapmesh/switch.sock\"\n\n\
             [[node]]\nname = \"h1\"\npublic-key = \"{p1}\"\n\n[[node]]\nname = \"h2\"\npublic-key = \"{p2}\"\n"
        )
        .as_bytes(),
    );
    write(
        &d,
        "seed-switch-duplicate-node",
        format!(
            "listen = \"198.18.0.3:7777\"\nprivate-key-file = \"s.key\"\n\
             [[node]]\nname = \"h1\"\npublic-key = \"{p1}\"\n[[node]]\nname = \"h1\"\npublic-key = \"{p1}\"\n"
        )
        .as_bytes(),
    );
    write(
        &d,
        "seed-switch-bad-values",
        b"listen = \"1.2.3.4\"\nprivate-key-file = \"bad.key\"\nmac-aging-secs = 0\nmac-table-limit = -1\ncolour = \"blue\"\n",
    );
    write(
        &d,
        "seed-node-minimal",
        format!(
            "name = \"h1\"\nprivate-key-file = \"h1.key\"\nswitch = \"198.18.0.3:7777\"\nswitch-public-key = \"{s_pub}\"\n[tap]\n"
        )
        .as_bytes(),
    );
    write(
        &d,
        "seed-node-full",
        format!(
            "# node.toml\nname = \"h1\"\nprivate-key-file = \"./h1.key\"\nswitch = \"[2001:db8::3]:7777\"\n\
             switch-public-key = \"{s_pub}\"\nnetwork-secret-file = \"net.psk\"\nadmin-socket = \"/run/tapmesh/node-h1.sock\"\n\n\
             [tap]\nname = \"tapmesh0\"\nmtu = 1400\naddress = [\"10.0.0.1/24\", \"fd00::1/64\"]\n"
        )
        .as_bytes(),
    );
    write(
        &d,
        "seed-node-bad-values",
        format!(
            "name = \"\"\nprivate-key-file = \"h1.key\"\nswitch = \"no-port\"\nswitch-public-key = \"AAAA\"\n\
             [tap]\nname = \"this-name-is-too-long\"\nmtu = 70000\naddress = [\"10.0.0.1/33\", \"fd00::1\"]\n"
        )
        .as_bytes(),
    );
    write(
        &d,
        "seed-syntax-error",
        b"listen = \"0.0.0.0:7777\nprivate-key-file = [\n[[node]\n",
    );
}

fn main() {
    header_seeds();
    session_seeds();
    switch_seeds();
    node_seeds();
    config_seeds();
    for t in [
        "header",
        "session_open",
        "switch_datagram",
        "node_datagram",
        "config",
    ] {
        let n = std::fs::read_dir(dir(t))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("seed-")
            })
            .count();
        println!("corpus/{t}: {n} seeds");
    }
}
