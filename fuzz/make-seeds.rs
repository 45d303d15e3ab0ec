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

use overlay_proto::control::Control;
use overlay_proto::cookie::CookieMinter;
use overlay_proto::ethernet::MacAddr;
use overlay_proto::handshake::{self, Timestamp, read_init};
use overlay_proto::keys::{Psk, StaticSecret};
use overlay_proto::notice::NoticeKey;
use overlay_proto::vlan::PortVlan;
use overlay_proto::vnet::{self, VNET_HDR_LEN, VnetHdr};
use overlay_proto::wire::{
    COOKIE_REPLY_LEN, DATA_HEADER_LEN, DATA_OVERHEAD, HS_INIT_LEN, HS_RESP_LEN, Header,
    MessageType, RESTART_NOTICE_LEN,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tapmesh_fuzz::{NETWORK_ID, SWITCH_SEED, keys, node_addr, now, session_pair, switch_config};
use tapmesh_switch::fabric::Switch;
use tapmesh_switch::snooping::wire::{QuerySpec, igmp_query, mld_query};

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
    let mut minter = CookieMinter::with_rng(&keys().0.public_key(), StdRng::seed_from_u64(5));
    let mut out = [0u8; COOKIE_REPLY_LEN];
    minter.write_reply(
        now(),
        node_addr(),
        &Header::new_checked(init).unwrap(),
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
    let mut n = tapmesh_node::engine::Node::new(
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
             switch-public-key = \"{s_pub}\"\nnetwork-secret-file = \"net.psk\"\nadmin-socket = \"/run/tapmesh/node-h1.sock\"\nrekey-after-secs = 30\n\n\
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

fn control_seeds() {
    let d = dir("control");
    let eps: Vec<std::net::SocketAddr> = vec![
        "198.18.0.11:40000".parse().unwrap(),
        "[fd00::11]:7777".parse().unwrap(),
    ];
    let msgs = [
        (
            "mesh",
            Control::Mesh {
                vlan: PortVlan::Transparent,
            },
        ),
        (
            "mesh-vlans",
            Control::Mesh {
                vlan: PortVlan::Member {
                    native: Some(1),
                    tagged: vec![10, 20],
                },
            },
        ),
        (
            "peer-update",
            Control::PeerUpdate {
                key: keys().1.public_key(),
                name: "h1".into(),
                endpoints: eps.clone(),
                vlan: PortVlan::Transparent,
            },
        ),
        (
            "peer-update-vlans",
            Control::PeerUpdate {
                key: keys().1.public_key(),
                name: "h1".into(),
                endpoints: eps.clone(),
                vlan: PortVlan::Member {
                    native: Some(10),
                    tagged: vec![],
                },
            },
        ),
        (
            "peer-gone",
            Control::PeerGone {
                key: keys().2.public_key(),
            },
        ),
        ("local-addrs", Control::LocalAddrs(eps)),
        (
            "mac-announce",
            Control::MacAnnounce {
                caps: handshake::CAP_VNET,
                macs: vec![
                    MacAddr([0x02, 0, 0, 0, 0, 1]),
                    MacAddr([0x02, 0, 0, 0, 0, 2]),
                ],
            },
        ),
        ("ping", Control::Ping(0x0102_0304_0506_0708)),
        ("pong", Control::Pong(u64::MAX)),
    ];
    for (name, m) in msgs {
        let mut b = Vec::new();
        m.emit(&mut b);
        write(&d, &format!("seed-{name}"), &b);
    }
    write(&d, "seed-unknown-type-99", &[99, 1, 2, 3]);
    let mut parts = Vec::new();
    let groups = [
        (10, "239.1.2.3".parse().unwrap()),
        (10, "0.0.0.0".parse().unwrap()),
        (20, "ff0e::1".parse().unwrap()),
    ];
    overlay_proto::announce::emit(7, 3, &[10, 20], &groups, false, &mut parts);
    write(&d, "seed-trunk-announce", &parts[0]);
    write(
        &d,
        "seed-local-addrs-bad-family",
        &[4, 1, 5, 1, 2, 3, 4, 0, 1],
    );
}

/// One record of the `reassembly` target: frame `id` (0..8), a fragment at
/// `offset` of `len_32 * 32` bytes of a `total`-byte frame, `dt_100ms`
/// after the previous one.
fn frag_rec(id: u8, dt_100ms: u8, offset: u32, total: u32, len_32: u8) -> [u8; 8] {
    let o = offset.to_be_bytes();
    let t = total.to_be_bytes();
    [
        0x80 | (dt_100ms & 0x0f) << 3 | (id & 7),
        o[1],
        o[2],
        o[3],
        t[1],
        t[2],
        t[3],
        len_32,
    ]
}

fn reassembly_seeds() {
    let d = dir("reassembly");
    // (frame id, 100 ms steps since the previous, offset, total, 32-byte units)
    let fixed: [(&str, &[(u8, u8, u32, u32, u8)]); 4] = [
        // 3 x 1 KiB, last first.
        (
            "three-reversed",
            &[
                (1, 0, 2048, 3072, 32),
                (1, 0, 0, 3072, 32),
                (1, 0, 1024, 3072, 32),
            ],
        ),
        // Two frames interleaved, then one that completes in one piece.
        (
            "interleaved",
            &[
                (2, 0, 0, 2048, 32),
                (3, 0, 1024, 2048, 32),
                (2, 1, 1024, 2048, 32),
                (3, 0, 0, 2048, 32),
                (4, 0, 0, 256, 8),
            ],
        ),
        // An overlap drops the frame; a different total too.
        (
            "overlap-and-total",
            &[
                (1, 0, 0, 4096, 64),
                (1, 0, 1024, 4096, 64),
                (2, 0, 0, 4096, 32),
                (2, 0, 1024, 4000, 32),
            ],
        ),
        // A frame that times out half done, and is then sent again.
        (
            "timeout",
            &[
                (5, 0, 0, 2048, 32),
                (5, 15, 1024, 2048, 32),
                (5, 0, 0, 2048, 32),
            ],
        ),
    ];
    for (name, recs) in fixed {
        let seq: Vec<_> = recs
            .iter()
            .map(|&(i, t, o, n, l)| frag_rec(i, t, o, n, l))
            .collect();
        write(&d, &format!("seed-{name}"), &seq.concat());
    }
    // More frames in flight than there are slots: the oldest give way.
    let seq: Vec<_> = (0..7)
        .map(|i| frag_rec(i, 0, 0, 65536, 255))
        .chain([frag_rec(6, 0, 8160, 65536, 255)])
        .collect();
    write(&d, "seed-eviction", &seq.concat());
    // Largest frame: 64 KiB + 256 in 8 KiB pieces.
    let total = overlay_proto::frag::MAX_TOTAL as u32;
    let seq: Vec<_> = (0..8)
        .map(|i| frag_rec(0, 0, i * 8160, total, 255))
        .chain([frag_rec(0, 0, 8 * 8160, total, 8)])
        .collect();
    write(&d, "seed-max-total", &seq.concat());
}

/// An Ethernet + IPv4 (or IPv6) + TCP super-frame with `payload` bytes
/// after a virtio header asking for GSO with `mss`.
fn superframe(
    v6: bool,
    vlan: bool,
    ip_opts: usize,
    tcp_opts: usize,
    payload: usize,
    mss: u16,
) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
    if vlan {
        f.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
    }
    let l2 = f.len() + 2;
    if v6 {
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        f.extend_from_slice(&((20 + tcp_opts + payload) as u16).to_be_bytes());
        f.extend_from_slice(&[6, 64]);
        f.extend_from_slice(&[0xfd, 0, 0, 0x19, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        f.extend_from_slice(&[0xfd, 0, 0, 0x19, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    } else {
        f.extend_from_slice(&[0x08, 0x00, 0x45 + (ip_opts / 4) as u8, 0]);
        f.extend_from_slice(&((20 + ip_opts + 20 + tcp_opts + payload) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 100, 0x40, 0, 64, 6, 0, 0, 198, 19, 0, 1, 198, 19, 0, 2]);
        f.extend(std::iter::repeat_n(1u8, ip_opts)); // NOPs
    }
    let tcp = f.len();
    f.extend_from_slice(&[0x9c, 0x40, 0x00, 0x50, 0, 0, 0x03, 0xe8, 0, 0, 0, 0]);
    f.push(((20 + tcp_opts) / 4) as u8 * 16);
    f.extend_from_slice(&[0x19, 0x01, 0xf5, 0, 0, 0, 0]); // FIN PSH ACK
    f.extend(std::iter::repeat_n(1u8, tcp_opts));
    f.extend((0..payload).map(|i| (i * 7) as u8));
    let h = VnetHdr {
        flags: vnet::F_NEEDS_CSUM,
        gso_type: if v6 { vnet::GSO_TCPV6 } else { vnet::GSO_TCPV4 },
        hdr_len: (f.len() - payload) as u16,
        gso_size: mss,
        csum_start: tcp as u16,
        csum_offset: 16,
    };
    let _ = l2;
    let mut out = vec![0u8; VNET_HDR_LEN];
    h.emit(&mut out);
    out.extend_from_slice(&f);
    out
}

fn vnet_seeds() {
    let d = dir("vnet");
    write(
        &d,
        "seed-tcp4-gso",
        &superframe(false, false, 0, 0, 3000, 1000),
    );
    write(
        &d,
        "seed-tcp4-vlan-options",
        &superframe(false, true, 4, 12, 2000, 536),
    );
    write(
        &d,
        "seed-tcp6-gso",
        &superframe(true, false, 0, 12, 2900, 1440),
    );
    write(
        &d,
        "seed-tcp4-no-payload",
        &superframe(false, false, 0, 0, 0, 1000),
    );
    let mut v = superframe(false, false, 0, 0, 500, 1000);
    v[1] = vnet::GSO_NONE; // checksum only
    write(&d, "seed-csum-only", &v);
    v[0] = 0; // plain
    write(&d, "seed-plain", &v);
    let mut v = superframe(false, false, 0, 0, 500, 100);
    v[1] = vnet::GSO_TCPV4 | vnet::GSO_ECN;
    write(&d, "seed-tcp4-ecn", &v);
    v[1] = 5; // UDP GSO: not ours to segment
    write(&d, "seed-udp-gso", &v);
}

fn handshake_seeds() {
    let d = dir("handshake");
    let (sw, h1, _) = keys();
    let with = |which: u8, b: &[u8]| {
        let mut v = vec![which];
        v.extend_from_slice(b);
        v
    };
    let init = real_init(h1, &Psk::default(), NETWORK_ID, 0x0102_0304);
    write(&d, "seed-0-init-valid", &with(0, &init));
    write(
        &d,
        "seed-0-init-garbage",
        &with(0, &raw_init(NETWORK_ID, 1, 0xa5)),
    );
    // A real response, to another initiation than the target's.
    let hs = read_init(
        sw,
        &Psk::default(),
        &Header::new_checked(&init[..]).unwrap(),
    )
    .unwrap();
    let mut resp = [0u8; HS_RESP_LEN];
    hs.accept(NETWORK_ID, 0x0506_0708, &mut resp).unwrap();
    write(&d, "seed-1-resp-other-initiation", &with(1, &resp));
    let mut reply = [0u8; COOKIE_REPLY_LEN];
    tapmesh_fuzz::cookie_minter(&mut reply);
    write(&d, "seed-2-cookie-reply-valid", &with(2, &reply));
    let mut bad = reply;
    bad[40] ^= 1;
    write(&d, "seed-2-cookie-reply-forged", &with(2, &bad));
    write(&d, "seed-3-notice-valid", &with(3, &notice(60)));
    let mut bad = notice(60);
    bad[12] ^= 1;
    write(&d, "seed-3-notice-forged", &with(3, &bad));
}

fn guard_seeds() {
    let d = dir("guard");
    let init = tapmesh_fuzz::stamped_init();
    let rec = |instr: u8| {
        let mut v = vec![instr];
        v.extend_from_slice(&init);
        v
    };
    // Under load after the first: a cookie, then mac2 with it, from here and
    // from the other address; then a second later.
    let seq = [rec(1), rec(1), rec(3), rec(3 | 4), rec(1 | 16 << 3), rec(3)];
    write(&d, "seed-cookie-dance", &seq.concat());
    // Many without a cookie: the reply limit.
    let seq: Vec<_> = (0..10).map(|_| rec(1)).collect();
    write(&d, "seed-reply-limit", &seq.concat());
    // Mac2 burst from one address: the per-source limit.
    let seq: Vec<_> = [rec(1), rec(1)]
        .into_iter()
        .chain((0..10).map(|_| rec(3)))
        .collect();
    write(&d, "seed-per-source-limit", &seq.concat());
    let mut bad = rec(0);
    bad[20] ^= 1;
    write(&d, "seed-bad-mac1", &bad);
}

/// IPv4 packet `proto`, from `s` to `d`, with `payload` (checksum fixed up).
fn ip4(proto: u8, s: [u8; 4], d: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x46, 0xc0, 0, 0, 0, 0, 0, 0, 1, proto, 0, 0];
    p.extend_from_slice(&s);
    p.extend_from_slice(&d);
    p.extend_from_slice(&[0x94, 0x04, 0, 0]); // Router Alert
    p.extend_from_slice(payload);
    let len = p.len() as u16;
    p[2..4].copy_from_slice(&len.to_be_bytes());
    if proto == 2 {
        tapmesh_fuzz::ip::fix_v4(&mut p).unwrap();
    }
    p
}

/// IPv6 packet from fe80::1 to `d` with a Hop-by-Hop Router Alert before
/// `next` and `payload` (ICMPv6 checksum fixed up).
fn ip6(next: u8, d: &str, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&((payload.len() + 8) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 1]);
    p.extend_from_slice(&"fe80::1".parse::<std::net::Ipv6Addr>().unwrap().octets());
    p.extend_from_slice(&d.parse::<std::net::Ipv6Addr>().unwrap().octets());
    p.extend_from_slice(&[next, 0, 5, 2, 0, 0, 1, 0]);
    p.extend_from_slice(payload);
    if next == 58 {
        tapmesh_fuzz::ip::fix_v6(&mut p).unwrap();
    }
    p
}

fn snooping_seeds() {
    let d = dir("snooping");
    let me = [198, 19, 0, 1];
    let g = [239, 1, 2, 3];
    write(
        &d,
        "seed-igmp2-report",
        &ip4(2, me, g, &[0x16, 0, 0, 0, 239, 1, 2, 3]),
    );
    write(
        &d,
        "seed-igmp1-report",
        &ip4(2, me, g, &[0x12, 0, 0, 0, 239, 1, 2, 3]),
    );
    write(
        &d,
        "seed-igmp2-leave",
        &ip4(2, me, [224, 0, 0, 2], &[0x17, 0, 0, 0, 239, 1, 2, 3]),
    );
    write(
        &d,
        "seed-igmp2-query",
        &ip4(2, me, [224, 0, 0, 1], &[0x11, 100, 0, 0, 0, 0, 0, 0]),
    );
    // IGMPv3 report: three records (include with 2 sources, exclude none with
    // 1 aux word, block with 1 source).
    let mut m = vec![0x22, 0, 0, 0, 0, 0, 0, 3];
    m.extend_from_slice(&[1, 0, 0, 2, 239, 1, 2, 3, 198, 19, 0, 5, 198, 19, 0, 6]);
    m.extend_from_slice(&[2, 1, 0, 0, 239, 1, 2, 4, 0xaa, 0xbb, 0xcc, 0xdd]);
    m.extend_from_slice(&[6, 0, 0, 1, 239, 1, 2, 5, 198, 19, 0, 7]);
    write(&d, "seed-igmp3-report", &ip4(2, me, [224, 0, 0, 22], &m));
    // The switch's own IGMPv3 and MLDv2 queries, without their Ethernet header.
    let spec = QuerySpec {
        mac: MacAddr([0x02, 0, 0, 0, 0, 0x10]),
        group: Some("239.1.2.3".parse().unwrap()),
        max_response: std::time::Duration::from_secs(10),
        interval: std::time::Duration::from_secs(125),
    };
    write(
        &d,
        "seed-igmp3-query",
        &igmp_query(&spec, [198, 19, 0, 1].into())[14..],
    );
    let spec = QuerySpec {
        group: None,
        ..spec
    };
    write(
        &d,
        "seed-mld2-query",
        &mld_query(&spec, "fe80::1".parse().unwrap())[14..],
    );
    let mut m = vec![131, 0, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(&"ff05::1:3".parse::<std::net::Ipv6Addr>().unwrap().octets());
    write(&d, "seed-mld1-report", &ip6(58, "ff05::1:3", &m));
    m[0] = 132;
    write(&d, "seed-mld1-done", &ip6(58, "ff02::2", &m));
    // MLDv2 report: two records, one with a source and an aux word.
    let mut m = vec![143, 0, 0, 0, 0, 0, 0, 2];
    m.extend_from_slice(&[4, 0, 0, 0]);
    m.extend_from_slice(&"ff05::1:3".parse::<std::net::Ipv6Addr>().unwrap().octets());
    m.extend_from_slice(&[3, 1, 0, 1]);
    m.extend_from_slice(&"ff05::1:4".parse::<std::net::Ipv6Addr>().unwrap().octets());
    m.extend_from_slice(&"fd00:19::5".parse::<std::net::Ipv6Addr>().unwrap().octets());
    m.extend_from_slice(&[0, 0, 0, 0]);
    write(&d, "seed-mld2-report", &ip6(58, "ff02::16", &m));
    write(
        &d,
        "seed-pim4",
        &ip4(103, me, [224, 0, 0, 13], &[0x20, 0, 0, 0]),
    );
    write(&d, "seed-pim6", &ip6(103, "ff02::d", &[0x20, 0, 0, 0]));
    write(
        &d,
        "seed-udp4-data",
        &ip4(17, me, g, &[0x30, 0x39, 0x30, 0x39, 0, 8, 0, 0]),
    );
    write(
        &d,
        "seed-udp6-data",
        &ip6(17, "ff05::1:3", &[0, 1, 0, 2, 0, 8, 0, 0]),
    );
}

/// A `vm_stream` input: frames of at most `(m + 4) * 16` bytes, pushed in
/// reads of `read` bytes, then the stream.
fn vm_stream(m: u8, read: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut v = vec![m, read - 1];
    for p in parts {
        v.extend_from_slice(&(p.len() as u32).to_be_bytes());
        v.extend_from_slice(p);
    }
    v
}

fn vm_stream_seeds() {
    let d = dir("vm_stream");
    let arp = arp_frame();
    let big = vec![0x5a; 1500];
    write(&d, "seed-two-frames", &vm_stream(96, 200, &[&arp, &big]));
    write(&d, "seed-byte-by-byte", &vm_stream(96, 1, &[&arp, &arp]));
    // A runt and a frame over the port's 256 bytes, each skipped.
    write(
        &d,
        "seed-runt-and-oversize",
        &vm_stream(12, 7, &[&arp[..10], &big, &arp]),
    );
    // A length no QEMU sends.
    let mut v = vm_stream(96, 64, &[&arp]);
    v.extend_from_slice(&[0x7f, 0xff, 0xff, 0xff, 1, 2, 3]);
    write(&d, "seed-garbage-length", &v);
    // A frame whose body never arrives.
    let mut v = vm_stream(96, 5, &[&arp]);
    v.extend_from_slice(&[0, 0, 0x05, 0xdc, 1, 2, 3]);
    write(&d, "seed-truncated", &v);
}

/// An Ethernet frame, padded to 60 bytes.
fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f.resize(f.len().max(60), 0);
    f
}

/// One record of the `forwarding` target: `bytes` read from the TAP of
/// node `sel` (0..3), or sealed by the rogue h4 with `flags` if `sel` is 3.
fn fwd_rec(sel: u8, flags: u8, bytes: &[u8]) -> Vec<u8> {
    let mut r = vec![sel | flags << 2];
    r.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
    r.extend_from_slice(bytes);
    r
}

fn forwarding_seeds() {
    use overlay_proto::frag::{FRAG_HEADER_LEN, FragHeader};
    use overlay_proto::wire::{FLAG_CONTROL, FLAG_FRAGMENT, FLAG_VNET};
    let d = dir("forwarding");
    let mac = |n: u8| [0x02, 0, 0, 0, 0, n];
    // An offload TAP's read of an ordinary frame: an all-zero virtio header first.
    let plain = |f: &[u8]| [&[0u8; VNET_HDR_LEN][..], f].concat();
    let seeds: Vec<(&str, Vec<Vec<u8>>)> = vec![
        (
            // h1 asks, h3 answers by unicast, h1 replies by unicast.
            "arp-and-unicast",
            vec![
                fwd_rec(0, 0, &plain(&arp_frame())),
                fwd_rec(
                    2,
                    0,
                    &eth(mac(1), mac(3), 0x0806, &[0, 1, 8, 0, 6, 4, 0, 2]),
                ),
                fwd_rec(0, 0, &plain(&eth(mac(3), mac(1), 0x0800, &[0x45]))),
            ],
        ),
        (
            // h3 owns mac 2, so h1's TCP super-frame to it is cut for h3.
            "superframe-to-h3",
            vec![
                fwd_rec(2, 0, &eth([0xff; 6], mac(2), 0x0800, &[0x45])),
                fwd_rec(0, 0, &superframe(false, false, 0, 0, 3000, 1000)),
            ],
        ),
        (
            // VLAN 7 from the trunk h1 (tagged) and from the access port h2.
            "vlan-7",
            vec![
                fwd_rec(
                    0,
                    0,
                    &plain(&eth(
                        [0xff; 6],
                        mac(1),
                        0x8100,
                        &[0x00, 0x07, 0x08, 0x00, 0x45],
                    )),
                ),
                fwd_rec(1, 0, &plain(&eth(mac(1), mac(2), 0x0800, &[0x45]))),
                fwd_rec(0, 0, &superframe(false, true, 0, 0, 2000, 536)),
            ],
        ),
        (
            // h3 joins 239.1.2.3; h1 sends to it.
            "igmp-join-and-send",
            vec![
                fwd_rec(
                    2,
                    0,
                    &eth(
                        [0x01, 0, 0x5e, 1, 2, 3],
                        mac(3),
                        0x0800,
                        &ip4(
                            2,
                            [198, 19, 0, 3],
                            [239, 1, 2, 3],
                            &[0x16, 0, 0, 0, 239, 1, 2, 3],
                        ),
                    ),
                ),
                fwd_rec(
                    0,
                    0,
                    &plain(&eth([0x01, 0, 0x5e, 1, 2, 3], mac(1), 0x0800, &[0x45])),
                ),
            ],
        ),
        (
            // What the kernel writes into the checksum fields is partial, as
            // Linux leaves it; a virtio header aiming at the MAC is not.
            "rogue-vnet",
            vec![
                fwd_rec(3, FLAG_VNET, &superframe(false, false, 0, 0, 500, 1000)),
                fwd_rec(
                    3,
                    FLAG_VNET,
                    &[
                        &[1u8, 0, 0, 0, 0, 0, 0, 0, 8, 0][..],
                        &eth(mac(3), mac(4), 0, &[]),
                    ]
                    .concat(),
                ),
            ],
        ),
        (
            // An 802.1Q ethertype with no room for the tag.
            "truncated-tag",
            vec![fwd_rec(
                0,
                0,
                &plain(&[&mac(3)[..], &mac(1), &[0x81, 0x00, 0x00]].concat()),
            )],
        ),
        (
            "rogue-control",
            vec![fwd_rec(3, FLAG_CONTROL, &{
                let mut b = Vec::new();
                Control::Ping(7).emit(&mut b);
                b
            })],
        ),
    ];
    for (name, recs) in seeds {
        write(&d, &format!("seed-{name}"), &recs.concat());
    }
    // A 120-byte broadcast from the rogue in two fragments.
    let whole = eth([0xff; 6], mac(4), 0x88b5, &[7; 106]);
    let mut recs = Vec::new();
    for (offset, chunk) in [(0u32, &whole[..60]), (60, &whole[60..])] {
        let mut b = vec![0u8; FRAG_HEADER_LEN];
        FragHeader {
            frame_id: 1,
            offset,
            total: whole.len() as u32,
        }
        .emit(&mut b);
        b.extend_from_slice(chunk);
        recs.push(fwd_rec(3, FLAG_FRAGMENT, &b));
    }
    write(&d, "seed-rogue-fragments", &recs.concat());
}

fn mesh_peer_seeds() {
    let d = dir("mesh_peer");
    let mac = |n: u8| [0x02, 0, 0, 0, 0, n];
    // A valid initiation from h2 to h1, as a peer sends it.
    let mut init = [0u8; HS_INIT_LEN];
    handshake::initiate(
        &keys().2,
        &keys().1.public_key(),
        &Psk::default(),
        NETWORK_ID,
        0x2222_0002,
        Timestamp::from_unix(1_700_000_100, 0),
        0,
        None,
        &mut init,
    )
    .unwrap();
    let seeds: Vec<(&str, Vec<Vec<u8>>)> = vec![
        // h2 to h1 straight, then to everyone through the switch.
        (
            "direct-and-broadcast",
            vec![
                fwd_rec(2, 0, &eth(mac(1), mac(2), 0x0800, &[0x45])),
                fwd_rec(2, 0, &arp_frame()),
            ],
        ),
        // Larger than one datagram: fragments, straight to h3.
        (
            "fragmented",
            vec![fwd_rec(2, 0, &eth(mac(3), mac(2), 0x88b5, &[9; 1400]))],
        ),
        ("peer-initiation", vec![fwd_rec(0, 0, &init)]),
        (
            "stranger-initiation",
            vec![
                fwd_rec(1, 0, &init),
                fwd_rec(1, 0, &raw_init(NETWORK_ID, 5, 0)),
            ],
        ),
        (
            "forged-data",
            vec![
                fwd_rec(0, 0, &data(NETWORK_ID, 0x1234_5678, 0, &arp_frame())),
                fwd_rec(3, 0, &data(NETWORK_ID, 1, 7, &[0; 20])),
            ],
        ),
        ("cookie-reply", vec![fwd_rec(0, 0, &cookie_reply(&init))]),
    ];
    for (name, recs) in seeds {
        write(&d, &format!("seed-{name}"), &recs.concat());
    }
}

/// One record of the `peer_session` target: `sel` (0/7: h2 seals `bytes`
/// with `flags` for h1, 1: for h3, 2: for the switch; 3, 4: h3's and h1's
/// TAP reads; 5: replay; 6: `flags` x 10 ms pass).
fn peer_rec(sel: u8, flags: u8, bytes: &[u8]) -> Vec<u8> {
    let mut r = vec![sel, flags];
    r.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
    r.extend_from_slice(bytes);
    r
}

fn peer_session_seeds() {
    use overlay_proto::frag::{FRAG_HEADER_LEN, FragHeader};
    use overlay_proto::wire::{FLAG_CONTROL, FLAG_FRAGMENT, FLAG_RELAYED, FLAG_VNET};
    let d = dir("peer_session");
    let mac = |n: u8| [0x02, 0, 0, 0, 0, n];
    let tag = |vid: u8, ethertype: u16, rest: &[u8]| {
        [&[0x00, vid][..], &ethertype.to_be_bytes(), rest].concat()
    };
    let control = |c: Control| {
        let mut b = Vec::new();
        c.emit(&mut b);
        b
    };
    let h3 = StaticSecret::generate(&mut StdRng::seed_from_u64(0x0003_5eed)).public_key();
    let vlans = tapmesh_fuzz::peer_vlans();
    let plain = |f: &[u8]| [&[0u8; VNET_HDR_LEN][..], f].concat();
    // h2's TCP super-frame to h1, untagged (its native VLAN 7).
    let mut sf = superframe(false, false, 0, 0, 3000, 1000);
    sf[VNET_HDR_LEN..VNET_HDR_LEN + 12].copy_from_slice(&[mac(1), mac(2)].concat());
    let seeds: Vec<(&str, Vec<Vec<u8>>)> = vec![
        (
            // Untagged (VLAN 7, tagged at h1), tagged 8, and the VLANs h1
            // and h2 do not share (9: h2's only; 1: h1's native).
            "direct-vlans",
            vec![
                peer_rec(0, 0, &eth(mac(1), mac(2), 0x0800, &[0x45])),
                peer_rec(0, 0, &eth(mac(1), mac(2), 0x8100, &tag(8, 0x0800, &[0x45]))),
                peer_rec(0, 0, &eth(mac(1), mac(2), 0x8100, &tag(9, 0x0800, &[0x45]))),
                peer_rec(7, 0, &eth(mac(1), mac(2), 0x8100, &tag(1, 0x0800, &[0x45]))),
                peer_rec(1, 0, &eth(mac(3), mac(2), 0x8100, &tag(8, 0x0800, &[0x45]))),
            ],
        ),
        (
            // h2 claims h3's MAC in VLAN 8 and h1's own in VLAN 7; h1 then
            // sends to both.
            "mac-takeover",
            vec![
                peer_rec(0, 0, &eth(mac(1), mac(3), 0x8100, &tag(8, 0x88b5, &[1]))),
                peer_rec(
                    0,
                    FLAG_CONTROL,
                    &control(Control::MacAnnounce {
                        caps: 0,
                        macs: vec![MacAddr(mac(1)), MacAddr(mac(3))],
                    }),
                ),
                peer_rec(
                    4,
                    0,
                    &plain(&eth(mac(3), mac(1), 0x8100, &tag(8, 0x88b5, &[2]))),
                ),
                peer_rec(
                    4,
                    0,
                    &plain(&eth(mac(1), mac(1), 0x8100, &tag(7, 0x88b5, &[3]))),
                ),
            ],
        ),
        (
            // Messages only the switch may send, from h2 to h1.
            "switch-only-control",
            vec![
                peer_rec(
                    0,
                    FLAG_CONTROL,
                    &control(Control::Mesh {
                        vlan: vlans[1].clone(),
                    }),
                ),
                peer_rec(
                    0,
                    FLAG_CONTROL,
                    &control(Control::PeerUpdate {
                        key: h3,
                        name: "h3".into(),
                        endpoints: vec!["198.18.0.99:40000".parse().unwrap()],
                        vlan: vlans[1].clone(),
                    }),
                ),
                peer_rec(0, FLAG_CONTROL, &control(Control::PeerGone { key: h3 })),
                peer_rec(0, FLAG_CONTROL, &control(Control::PeerListEnd { count: 0 })),
                peer_rec(
                    0,
                    FLAG_CONTROL,
                    &control(Control::MacOwners {
                        key: keys().2.public_key(),
                        macs: vec![MacAddr(mac(1)), MacAddr(mac(3))],
                    }),
                ),
                peer_rec(0, 0, &eth(mac(1), mac(3), 0x8100, &tag(8, 0x88b5, &[1]))),
                peer_rec(
                    0,
                    FLAG_CONTROL,
                    &control(Control::LocalAddrs(vec![
                        "198.18.0.99:40000".parse().unwrap(),
                    ])),
                ),
            ],
        ),
        (
            "peer-control",
            vec![
                peer_rec(0, FLAG_CONTROL, &control(Control::Ping(1))),
                peer_rec(0, FLAG_CONTROL, &control(Control::Pong(1))),
                peer_rec(0, FLAG_CONTROL, &control(Control::Unknown(200))),
                peer_rec(1, FLAG_CONTROL | FLAG_RELAYED, &control(Control::Ping(2))),
            ],
        ),
        (
            // h2 tells the switch where else to find it; time passes.
            "local-addrs-and-time",
            vec![
                peer_rec(
                    2,
                    FLAG_CONTROL,
                    &control(Control::LocalAddrs(vec![
                        "198.18.0.77:40000".parse().unwrap(),
                        "127.0.0.1:1".parse().unwrap(),
                    ])),
                ),
                peer_rec(2, FLAG_CONTROL, &control(Control::PeerListEnd { count: 9 })),
                peer_rec(6, 250, &[]),
                peer_rec(6, 250, &[]),
                peer_rec(2, 0, &eth([0xff; 6], mac(2), 0x88b5, &[4])),
            ],
        ),
        (
            "vnet-superframe",
            vec![
                peer_rec(0, FLAG_VNET, &sf),
                peer_rec(1, FLAG_VNET, &sf),
                peer_rec(2, FLAG_VNET, &sf),
            ],
        ),
        (
            "relayed-unknown-flags-replay",
            vec![
                peer_rec(0, FLAG_RELAYED, &eth(mac(1), mac(2), 0x0800, &[0x45])),
                peer_rec(0, 0x80, &eth(mac(1), mac(2), 0x0800, &[0x45])),
                peer_rec(0, 0, &eth(mac(1), mac(2), 0x0800, &[0x46])),
                peer_rec(5, 0, &[]),
            ],
        ),
        (
            // Legitimate traffic: h3 and h1 to each other, both VLANs.
            "h1-h3",
            vec![
                peer_rec(3, 0, &eth(mac(1), mac(3), 0x0800, &[0x45])),
                peer_rec(3, 0, &eth(mac(1), mac(3), 0x8100, &tag(8, 0x0800, &[0x45]))),
                peer_rec(4, 0, &plain(&eth(mac(3), mac(1), 0x0800, &[0x45]))),
                peer_rec(
                    4,
                    0,
                    &plain(&eth([0xff; 6], mac(1), 0x8100, &tag(7, 0x0800, &[0x45]))),
                ),
            ],
        ),
    ];
    for (name, recs) in seeds {
        write(&d, &format!("seed-{name}"), &recs.concat());
    }
    // A 1500-byte frame from h2 in two fragments, to h1 directly; a
    // fragmented control message.
    let whole = eth(mac(1), mac(2), 0x88b5, &[7; 1486]);
    let mut recs = Vec::new();
    for (offset, chunk) in [(0u32, &whole[..800]), (800, &whole[800..])] {
        let mut b = vec![0u8; FRAG_HEADER_LEN];
        FragHeader {
            frame_id: 1,
            offset,
            total: whole.len() as u32,
        }
        .emit(&mut b);
        b.extend_from_slice(chunk);
        recs.push(peer_rec(0, FLAG_FRAGMENT, &b));
    }
    recs.push(peer_rec(0, FLAG_FRAGMENT | FLAG_CONTROL, &recs[0][4..]));
    write(&d, "seed-fragments", &recs.concat());
}

fn main() {
    header_seeds();
    session_seeds();
    switch_seeds();
    node_seeds();
    config_seeds();
    control_seeds();
    reassembly_seeds();
    vnet_seeds();
    handshake_seeds();
    guard_seeds();
    snooping_seeds();
    vm_stream_seeds();
    forwarding_seeds();
    mesh_peer_seeds();
    peer_session_seeds();
    for t in [
        "header",
        "session_open",
        "switch_datagram",
        "node_datagram",
        "config",
        "control",
        "reassembly",
        "vnet",
        "handshake",
        "guard",
        "snooping",
        "vm_stream",
        "forwarding",
        "mesh_peer",
        "peer_session",
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
