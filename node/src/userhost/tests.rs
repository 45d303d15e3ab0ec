//! The userspace host against hand-made frames (ARP, neighbour discovery,
//! echo) and against a second smoltcp interface as the client (TCP), with
//! synthetic time: the clock only moves when a test says so.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use smoltcp::iface::{Config as IfaceConfig, Interface, SocketHandle, SocketSet};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::socket::tcp;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, Icmpv4Packet, Icmpv4Repr, Icmpv6Packet, Icmpv6Repr, IpCidr, IpProtocol, IpRepr,
    Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, NdiscRepr, TcpControl, TcpPacket, TcpRepr,
    TcpSeqNumber,
};

use super::config::{Forward, HostConfig};
use super::device::QueueDevice;
use super::host::{
    ACCEPT_TIMEOUT, HALF_OPEN_PER_FORWARD, HALF_OPEN_PER_HOST, HANDSHAKE_TIMEOUT, HostEvent, Recv,
    SOCKET_BUFFER, UserHost,
};
use crate::iface::IfAddr;

const HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x50];
const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const HOST_V4: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 50);
const PEER_V4: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);
const HOST_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x19, 0, 0, 0, 0, 0, 0x50);
const PEER_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x19, 0, 0, 0, 0, 0, 1);
const TO: &str = "127.0.0.1:8080";

fn host_config(max_connections: usize) -> HostConfig {
    HostConfig {
        addresses: vec![
            IfAddr {
                addr: HOST_V4.into(),
                prefix: 24,
            },
            IfAddr {
                addr: HOST_V6.into(),
                prefix: 64,
            },
        ],
        mac: HOST_MAC,
        mtu: 1400,
        forwards: vec![Forward {
            port: 80,
            to: TO.parse().unwrap(),
            max_connections,
        }],
    }
}

fn frames(host: &mut UserHost) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| host.poll_frame()).collect()
}

fn eth(dst: [u8; 6], ethertype: EthernetProtocol, payload_len: usize) -> (Vec<u8>, usize) {
    let repr = EthernetRepr {
        src_addr: EthernetAddress(PEER_MAC),
        dst_addr: EthernetAddress(dst),
        ethertype,
    };
    let mut buf = vec![0u8; repr.buffer_len() + payload_len];
    repr.emit(&mut EthernetFrame::new_unchecked(&mut buf));
    (buf, repr.buffer_len())
}

fn arp_request(target: Ipv4Addr) -> Vec<u8> {
    let arp = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: EthernetAddress(PEER_MAC),
        source_protocol_addr: PEER_V4,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: target,
    };
    let (mut buf, off) = eth([0xff; 6], EthernetProtocol::Arp, arp.buffer_len());
    arp.emit(&mut ArpPacket::new_unchecked(&mut buf[off..]));
    buf
}

/// An IP packet from the peer in a frame to `dst_mac`; `fill` writes the
/// `payload_len` bytes after the IP header.
fn ip_frame(
    dst_mac: [u8; 6],
    (src, dst): (IpAddr, IpAddr),
    protocol: IpProtocol,
    payload_len: usize,
    fill: impl FnOnce(&mut [u8]),
) -> Vec<u8> {
    let ip = IpRepr::new(src.into(), dst.into(), protocol, payload_len, 255);
    let ethertype = match ip {
        IpRepr::Ipv4(_) => EthernetProtocol::Ipv4,
        IpRepr::Ipv6(_) => EthernetProtocol::Ipv6,
    };
    let (mut buf, off) = eth(dst_mac, ethertype, ip.header_len() + payload_len);
    ip.emit(&mut buf[off..], &ChecksumCapabilities::default());
    fill(&mut buf[off + ip.header_len()..]);
    buf
}

fn echo_v4(seq_no: u16, data: &[u8]) -> Vec<u8> {
    let icmp = Icmpv4Repr::EchoRequest {
        ident: 7,
        seq_no,
        data,
    };
    let addrs = (PEER_V4.into(), HOST_V4.into());
    ip_frame(HOST_MAC, addrs, IpProtocol::Icmp, icmp.buffer_len(), |b| {
        icmp.emit(
            &mut Icmpv4Packet::new_unchecked(b),
            &ChecksumCapabilities::default(),
        )
    })
}

fn icmp_v6(dst_mac: [u8; 6], dst: Ipv6Addr, icmp: Icmpv6Repr<'_>) -> Vec<u8> {
    let addrs = (PEER_V6.into(), dst.into());
    ip_frame(dst_mac, addrs, IpProtocol::Icmpv6, icmp.buffer_len(), |b| {
        icmp.emit(
            &PEER_V6,
            &dst,
            &mut Icmpv6Packet::new_unchecked(b),
            &ChecksumCapabilities::default(),
        )
    })
}

fn solicited_node(a: Ipv6Addr) -> (Ipv6Addr, [u8; 6]) {
    let o = a.octets();
    let mut m = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 0];
    m[13..].copy_from_slice(&o[13..]);
    (Ipv6Addr::from(m), [0x33, 0x33, 0xff, o[13], o[14], o[15]])
}

#[test]
fn answers_arp_for_its_address_only() {
    let t0 = Instant::now();
    let mut host = UserHost::new(&host_config(4), t0, 1);
    host.handle_frame(t0, &arp_request(Ipv4Addr::new(198, 19, 0, 99)));
    assert!(
        frames(&mut host).is_empty(),
        "answered ARP for another address"
    );
    host.handle_frame(t0, &arp_request(HOST_V4));
    let out = frames(&mut host);
    assert_eq!(out.len(), 1);
    let f = EthernetFrame::new_checked(&out[0][..]).unwrap();
    assert_eq!(f.dst_addr(), EthernetAddress(PEER_MAC));
    assert_eq!(f.src_addr(), EthernetAddress(HOST_MAC));
    let arp = ArpRepr::parse(&ArpPacket::new_checked(f.payload()).unwrap()).unwrap();
    assert_eq!(
        arp,
        ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Reply,
            source_hardware_addr: EthernetAddress(HOST_MAC),
            source_protocol_addr: HOST_V4,
            target_hardware_addr: EthernetAddress(PEER_MAC),
            target_protocol_addr: PEER_V4,
        }
    );
}

#[test]
fn answers_ping_v4() {
    let t0 = Instant::now();
    let mut host = UserHost::new(&host_config(4), t0, 1);
    host.handle_frame(t0, &arp_request(HOST_V4));
    frames(&mut host);
    host.handle_frame(t0, &echo_v4(3, b"hello tapmesh"));
    let out = frames(&mut host);
    assert_eq!(out.len(), 1, "one echo reply");
    let f = EthernetFrame::new_checked(&out[0][..]).unwrap();
    assert_eq!(f.dst_addr(), EthernetAddress(PEER_MAC));
    let caps = ChecksumCapabilities::default();
    let p = Ipv4Packet::new_checked(f.payload()).unwrap();
    let ip = Ipv4Repr::parse(&p, &caps).unwrap();
    assert_eq!((ip.src_addr, ip.dst_addr), (HOST_V4, PEER_V4));
    let icmp = Icmpv4Repr::parse(&Icmpv4Packet::new_checked(p.payload()).unwrap(), &caps).unwrap();
    assert_eq!(
        icmp,
        Icmpv4Repr::EchoReply {
            ident: 7,
            seq_no: 3,
            data: b"hello tapmesh"
        }
    );
    assert_eq!(host.counters().rx_frames, 2);
    assert_eq!(host.counters().tx_frames, 2);
}

/// Parse an ICMPv6 frame from the host to the peer (checksums verified).
fn with_icmp_v6(frame: &[u8], check: impl FnOnce(Ipv6Repr, Icmpv6Repr<'_>)) {
    let f = EthernetFrame::new_checked(frame).unwrap();
    assert_eq!(f.dst_addr(), EthernetAddress(PEER_MAC));
    let p = Ipv6Packet::new_checked(f.payload()).unwrap();
    let ip = Ipv6Repr::parse(&p).unwrap();
    let icmp = Icmpv6Repr::parse(
        &ip.src_addr,
        &ip.dst_addr,
        &Icmpv6Packet::new_checked(p.payload()).unwrap(),
        &ChecksumCapabilities::default(),
    )
    .unwrap();
    check(ip, icmp);
}

#[test]
fn answers_neighbour_solicitation_and_ping_v6() {
    let t0 = Instant::now();
    let mut host = UserHost::new(&host_config(4), t0, 1);
    let (group, group_mac) = solicited_node(HOST_V6);
    let ns = Icmpv6Repr::Ndisc(NdiscRepr::NeighborSolicit {
        target_addr: HOST_V6,
        lladdr: Some(EthernetAddress(PEER_MAC).into()),
    });
    host.handle_frame(t0, &icmp_v6(group_mac, group, ns));
    let out = frames(&mut host);
    assert_eq!(out.len(), 1, "one neighbour advertisement");
    with_icmp_v6(&out[0], |_, icmp| match icmp {
        Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert {
            target_addr,
            lladdr,
            ..
        }) => {
            assert_eq!(target_addr, HOST_V6);
            assert_eq!(lladdr, Some(EthernetAddress(HOST_MAC).into()));
        }
        other => panic!("want a neighbour advertisement, got {other:?}"),
    });

    let echo = Icmpv6Repr::EchoRequest {
        ident: 9,
        seq_no: 1,
        data: b"v6",
    };
    host.handle_frame(t0, &icmp_v6(HOST_MAC, HOST_V6, echo));
    let out = frames(&mut host);
    assert_eq!(out.len(), 1, "one echo reply");
    with_icmp_v6(&out[0], |ip, icmp| {
        assert_eq!((ip.src_addr, ip.dst_addr), (HOST_V6, PEER_V6));
        assert_eq!(
            icmp,
            Icmpv6Repr::EchoReply {
                ident: 9,
                seq_no: 1,
                data: b"v6"
            }
        );
    });
}

#[test]
fn drops_oversize_frames_and_counts_them() {
    let t0 = Instant::now();
    let mut host = UserHost::new(&host_config(4), t0, 1);
    host.handle_frame(t0, &echo_v4(1, &[0u8; 1400]));
    assert!(frames(&mut host).is_empty());
    assert_eq!(host.counters().oversize_drops, 1);
    // Garbage is ignored without a panic.
    host.handle_frame(t0, &[0xff; 20]);
    host.handle_frame(t0, &[]);
    assert!(frames(&mut host).is_empty());
}

/// A client on the LAN: a second smoltcp interface wired to the host.
struct Lan {
    host: UserHost,
    iface: Interface,
    dev: QueueDevice,
    sockets: SocketSet<'static>,
    t0: Instant,
    now: Instant,
    events: Vec<HostEvent>,
}

impl Lan {
    fn new(max_connections: usize) -> Lan {
        let t0 = Instant::now();
        let host = UserHost::new(&host_config(max_connections), t0, 1);
        let mut dev = QueueDevice::new(1400, 256);
        let mut ic = IfaceConfig::new(EthernetAddress(PEER_MAC).into());
        ic.random_seed = 2;
        let mut iface = Interface::new(ic, &mut dev, smoltcp::time::Instant::ZERO);
        iface.update_ip_addrs(|a| {
            a.push(IpCidr::new(PEER_V4.into(), 24)).unwrap();
            a.push(IpCidr::new(PEER_V6.into(), 64)).unwrap();
        });
        Lan {
            host,
            iface,
            dev,
            sockets: SocketSet::new(Vec::new()),
            t0,
            now: t0,
            events: Vec::new(),
        }
    }

    fn smol_now(&self) -> smoltcp::time::Instant {
        smoltcp::time::Instant::from_micros((self.now - self.t0).as_micros() as i64)
    }

    /// Exchange frames until both sides are quiet.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            let t = self.smol_now();
            self.iface.poll(t, &mut self.dev, &mut self.sockets);
            let mut moved = false;
            while let Some(f) = self.dev.pop_tx() {
                self.host.handle_frame(self.now, &f);
                moved = true;
            }
            while let Some(f) = self.host.poll_frame() {
                assert!(self.dev.push_rx(&f), "client queue full");
                moved = true;
            }
            while let Some(e) = self.host.poll_event() {
                self.events.push(e);
            }
            if !moved {
                return;
            }
        }
        panic!("the LAN never went quiet");
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.host.handle_timeout(self.now);
        self.settle();
    }

    fn connect(&mut self, to: IpAddr, local_port: u16) -> SocketHandle {
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 256 * 1024]),
            tcp::SocketBuffer::new(vec![0; 256 * 1024]),
        );
        s.connect(self.iface.context(), (to, 80), local_port)
            .unwrap();
        let h = self.sockets.add(s);
        self.settle();
        h
    }

    fn client(&mut self, h: SocketHandle) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(h)
    }

    fn take_connect(&mut self) -> super::ConnId {
        let i = self
            .events
            .iter()
            .position(|e| matches!(e, HostEvent::Connect { .. }))
            .expect("a Connect event");
        match self.events.remove(i) {
            HostEvent::Connect { conn, to } => {
                assert_eq!(to, TO.parse::<SocketAddr>().unwrap());
                conn
            }
            HostEvent::Closed { .. } => unreachable!(),
        }
    }

    /// A client connection the host accepted at once.
    fn accepted(&mut self, local_port: u16) -> (SocketHandle, super::ConnId) {
        let c = self.connect(HOST_V4.into(), local_port);
        let conn = self.take_connect();
        self.host.accept(self.now, conn);
        self.settle();
        assert_eq!(self.client(c).state(), tcp::State::Established);
        (c, conn)
    }

    /// The client resets `c`; the host must report `conn` as reset.
    fn client_resets(&mut self, c: SocketHandle, conn: super::ConnId) {
        self.client(c).abort();
        self.settle();
        assert!(
            self.events
                .contains(&HostEvent::Closed { conn, reset: true }),
            "{:?}",
            self.events
        );
    }

    fn assert_no_new_connection(&self) {
        assert!(
            !self
                .events
                .iter()
                .any(|e| matches!(e, HostEvent::Connect { .. })),
            "an unexpected connection: {:?}",
            self.events
        );
    }

    fn recv_all(&mut self, conn: super::ConnId) -> (Vec<u8>, Recv) {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match self.host.recv(self.now, conn, &mut buf) {
                Recv::Data(n) => out.extend_from_slice(&buf[..n]),
                other => return (out, other),
            }
        }
    }
}

#[test]
fn tcp_through_a_forward_both_ways_and_graceful_close() {
    for server in [IpAddr::from(HOST_V4), IpAddr::from(HOST_V6)] {
        let mut lan = Lan::new(4);
        let c = lan.connect(server, 40000);
        let conn = lan.take_connect();
        // The SYN-ACK waits for the local side.
        assert_eq!(lan.client(c).state(), tcp::State::SynSent);
        lan.host.accept(lan.now, conn);
        lan.settle();
        assert_eq!(lan.client(c).state(), tcp::State::Established);

        lan.client(c).send_slice(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        lan.settle();
        let (got, r) = lan.recv_all(conn);
        assert_eq!(got, b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(r, Recv::Empty);

        assert!(lan.host.send_space(conn) >= 1024);
        assert_eq!(
            lan.host.send(lan.now, conn, b"HTTP/1.0 200 OK\r\n\r\nhi"),
            21
        );
        // The local side is done: FIN after the data.
        lan.host.close(lan.now, conn);
        lan.settle();
        let mut buf = [0u8; 64];
        let n = lan.client(c).recv_slice(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"HTTP/1.0 200 OK\r\n\r\nhi");
        assert!(!lan.client(c).may_recv(), "client saw the FIN");

        // Half-closed: the client may still send, then closes.
        lan.client(c).send_slice(b"bye").unwrap();
        lan.client(c).close();
        lan.settle();
        let (got, r) = lan.recv_all(conn);
        assert_eq!((got.as_slice(), r), (&b"bye"[..], Recv::Finished));
        lan.advance(Duration::from_millis(10));
        assert!(
            lan.events
                .contains(&HostEvent::Closed { conn, reset: false }),
            "{:?}",
            lan.events
        );
        assert_eq!(lan.host.connections(), 0);
        assert_eq!(lan.host.counters().connections_accepted, 1);
    }
}

#[test]
fn refused_and_timed_out_accepts_reset_the_client() {
    let mut lan = Lan::new(4);
    let c = lan.connect(HOST_V4.into(), 40001);
    let conn = lan.take_connect();
    lan.host.refuse(lan.now, conn);
    lan.settle();
    assert_eq!(
        lan.client(c).state(),
        tcp::State::Closed,
        "client got a RST"
    );
    assert!(
        lan.events
            .contains(&HostEvent::Closed { conn, reset: true })
    );

    // Nobody answers for the local side: refused after ACCEPT_TIMEOUT, and
    // the client's SYN retransmissions meanwhile make no second connection.
    let c = lan.connect(HOST_V4.into(), 40002);
    let conn = lan.take_connect();
    for _ in 0..10 {
        lan.advance(ACCEPT_TIMEOUT / 10);
    }
    lan.advance(Duration::from_millis(1));
    // The client's SYN retransmissions meanwhile made no second one.
    lan.assert_no_new_connection();
    assert!(
        lan.events
            .contains(&HostEvent::Closed { conn, reset: true })
    );
    assert_eq!(lan.client(c).state(), tcp::State::Closed);
    assert_eq!(lan.host.counters().connections_refused, 2);
    assert_eq!(lan.host.connections(), 0);
}

#[test]
fn connections_are_bounded_per_forward() {
    let mut lan = Lan::new(2);
    let a = lan.connect(HOST_V4.into(), 41000);
    let b = lan.connect(HOST_V4.into(), 41001);
    let c = lan.connect(HOST_V4.into(), 41002);
    let ca = lan.take_connect();
    let cb = lan.take_connect();
    assert!(
        lan.events.is_empty(),
        "a third connection: {:?}",
        lan.events
    );
    assert_eq!(lan.client(c).state(), tcp::State::Closed, "third got a RST");
    lan.host.accept(lan.now, ca);
    lan.host.accept(lan.now, cb);
    lan.settle();
    assert_eq!(lan.client(a).state(), tcp::State::Established);
    assert_eq!(lan.client(b).state(), tcp::State::Established);
    // One ends: its slot takes a new client.
    lan.client_resets(a, ca);
    lan.connect(HOST_V4.into(), 41003);
    lan.take_connect();
}

#[test]
fn an_unread_connection_buffers_at_most_its_window() {
    let mut lan = Lan::new(4);
    let (c, conn) = lan.accepted(42000);
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7) as u8).collect();
    let mut sent = lan.client(c).send_slice(&data).unwrap();
    for _ in 0..20 {
        lan.advance(Duration::from_millis(200));
    }
    // Nothing read on the host: the client is stuck at the window.
    assert!(lan.client(c).send_queue() > 0);
    let (got, _) = lan.recv_all(conn);
    assert!(
        got.len() <= SOCKET_BUFFER,
        "host buffered {} bytes",
        got.len()
    );
    let mut all = got;
    // Reading opens the window; everything arrives in order.
    while all.len() < data.len() {
        sent += lan.client(c).send_slice(&data[sent..]).unwrap();
        lan.advance(Duration::from_millis(5));
        let (more, r) = lan.recv_all(conn);
        assert_eq!(r, Recv::Empty);
        all.extend_from_slice(&more);
    }
    assert_eq!(all, data);
}

#[test]
fn a_retransmitted_syn_caught_by_a_spare_listener_is_not_a_second_connection() {
    let mut lan = Lan::new(8);
    let (a, ca) = lan.accepted(43000);
    // B waits for its local side; then A ends and C arrives: the listener
    // that replaces the one C took goes into A's old slot, before B's in
    // smoltcp's socket order.
    let b = lan.connect(HOST_V4.into(), 43001);
    let cb = lan.take_connect();
    lan.client_resets(a, ca);
    lan.connect(HOST_V4.into(), 43002);
    lan.take_connect();
    // B's SYN is retransmitted (the client's RTO is 1 s).
    lan.advance(Duration::from_millis(1500));
    assert!(lan.host.counters().duplicate_syns >= 1);
    lan.assert_no_new_connection();
    lan.host.accept(lan.now, cb);
    lan.settle();
    assert_eq!(lan.client(b).state(), tcp::State::Established);
    lan.client(b).send_slice(b"still one connection").unwrap();
    lan.settle();
    assert_eq!(lan.recv_all(cb).0, b"still one connection");
}

/// A SYN to the host's port `dst_port` from `src` (an address nobody on
/// the LAN has: spoofed).
fn spoofed_syn(src: Ipv4Addr, src_port: u16, dst_port: u16) -> Vec<u8> {
    let tcp = TcpRepr {
        src_port,
        dst_port,
        control: TcpControl::Syn,
        seq_number: TcpSeqNumber(i32::from(src_port) * 7919),
        ack_number: None,
        window_len: 64240,
        window_scale: None,
        max_seg_size: Some(1360),
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: &[],
    };
    let addrs = (IpAddr::from(src), IpAddr::from(HOST_V4));
    ip_frame(HOST_MAC, addrs, IpProtocol::Tcp, tcp.buffer_len(), |b| {
        tcp.emit(
            &mut TcpPacket::new_unchecked(b),
            &src.into(),
            &HOST_V4.into(),
            &ChecksumCapabilities::default(),
        )
    })
}

/// What the shell does when its local service answers at once: accept
/// every new connection. Returns how many it accepted.
fn accept_all(host: &mut UserHost, now: Instant, events: &mut Vec<HostEvent>) -> usize {
    events.extend(std::iter::from_fn(|| host.poll_event()));
    let mut n = 0;
    for e in std::mem::take(events) {
        if let HostEvent::Connect { conn, .. } = e {
            host.accept(now, conn);
            n += 1;
        }
    }
    events.extend(std::iter::from_fn(|| host.poll_event()));
    n
}

#[test]
fn spoofed_syns_hold_few_slots_briefly_and_a_real_client_still_connects() {
    let mut lan = Lan::new(64);
    // 200 SYNs from 100 addresses and 200 ports, none of which will ever
    // complete its handshake; the local service accepts each at once.
    for k in 0..200u16 {
        let src = Ipv4Addr::new(198, 19, 0, 100 + (k % 100) as u8);
        lan.host
            .handle_frame(lan.now, &spoofed_syn(src, 20000 + k, 80));
        lan.settle();
        accept_all(&mut lan.host, lan.now, &mut lan.events);
        lan.settle();
        assert!(
            lan.host.connections() <= HALF_OPEN_PER_FORWARD,
            "{} connections held after {} spoofed SYNs",
            lan.host.connections(),
            k + 1
        );
    }
    let c = lan.host.counters();
    assert_eq!(c.half_open_dropped, 200 - HALF_OPEN_PER_FORWARD as u64);
    // Meanwhile: a real client connects (displacing the oldest spoofed one).
    lan.events.clear();
    let (real, real_conn) = lan.accepted(44000);
    // The handshake deadline passes: the spoofed ones go, without a RST
    // (nothing but ARP requests for their addresses leaves the host); the
    // real one stays.
    lan.now += HANDSHAKE_TIMEOUT + Duration::from_millis(1);
    lan.host.handle_timeout(lan.now);
    let sent: Vec<Vec<u8>> = std::iter::from_fn(|| lan.host.poll_frame()).collect();
    for f in &sent {
        let e = EthernetFrame::new_checked(&f[..]).unwrap();
        if e.ethertype() == EthernetProtocol::Ipv4 {
            let ip = Ipv4Packet::new_checked(e.payload()).unwrap();
            let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
            assert!(!tcp.rst(), "a RST to a spoofed address {}", ip.dst_addr());
        }
    }
    lan.settle();
    assert_eq!(lan.host.connections(), 1, "the spoofed connections stay");
    assert_eq!(
        lan.host.counters().handshake_timeouts,
        HALF_OPEN_PER_FORWARD as u64 - 1
    );
    let closed = lan
        .events
        .iter()
        .filter(|e| matches!(e, HostEvent::Closed { reset: true, .. }))
        .count();
    assert!(closed >= HALF_OPEN_PER_FORWARD - 1, "{:?}", lan.events);
    assert_eq!(lan.client(real).state(), tcp::State::Established);
    lan.client(real).send_slice(b"still here").unwrap();
    lan.settle();
    assert_eq!(lan.recv_all(real_conn).0, b"still here");
    // Afterwards, a new client connects as well.
    lan.accepted(44001);
}

#[test]
fn connections_in_the_handshake_are_bounded_per_host() {
    let mut cfg = host_config(64);
    let forwards = HALF_OPEN_PER_HOST / HALF_OPEN_PER_FORWARD + 2;
    cfg.forwards = (0..forwards as u16)
        .map(|i| Forward {
            port: 80 + i,
            to: TO.parse().unwrap(),
            max_connections: 64,
        })
        .collect();
    let t0 = Instant::now();
    let mut host = UserHost::new(&cfg, t0, 1);
    let mut events = Vec::new();
    for k in 0..(forwards * HALF_OPEN_PER_FORWARD) as u16 {
        let src = Ipv4Addr::new(198, 19, 0, 100 + (k % 100) as u8);
        let port = 80 + k % forwards as u16;
        host.handle_frame(t0, &spoofed_syn(src, 30000 + k, port));
        accept_all(&mut host, t0, &mut events);
        while host.poll_frame().is_some() {}
        assert!(host.connections() <= HALF_OPEN_PER_HOST);
    }
    assert_eq!(host.connections(), HALF_OPEN_PER_HOST);
    assert_eq!(
        host.counters().half_open_dropped,
        (forwards * HALF_OPEN_PER_FORWARD - HALF_OPEN_PER_HOST) as u64
    );
}

/// The shell end to end, without root: the host task with a forward to a
/// local service `to`, and a smoltcp client on the other end of its frame
/// channels, in real time.
struct ShellLan {
    port: super::shell::HostPort,
    from_host: tokio::sync::mpsc::Receiver<Vec<u8>>,
    iface: Interface,
    dev: QueueDevice,
    sockets: SocketSet<'static>,
    t0: Instant,
    client: SocketHandle,
}

impl ShellLan {
    /// The host task, and a client connecting to its port 80.
    fn new(to: SocketAddr) -> ShellLan {
        let mut cfg = host_config(4);
        cfg.forwards[0].to = to;
        let t0 = Instant::now();
        let (out, from_host) = tokio::sync::mpsc::channel(64);
        let port = super::shell::spawn(UserHost::new(&cfg, t0, 5), out, |f| f);
        let mut dev = QueueDevice::new(1400, 256);
        let mut ic = IfaceConfig::new(EthernetAddress(PEER_MAC).into());
        ic.random_seed = 6;
        let mut iface = Interface::new(ic, &mut dev, smoltcp::time::Instant::ZERO);
        iface.update_ip_addrs(|a| a.push(IpCidr::new(PEER_V4.into(), 24)).unwrap());
        let mut sockets = SocketSet::new(Vec::new());
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 64 * 1024]),
            tcp::SocketBuffer::new(vec![0; 64 * 1024]),
        );
        s.connect(iface.context(), (IpAddr::from(HOST_V4), 80), 44000)
            .unwrap();
        let client = sockets.add(s);
        ShellLan {
            port,
            from_host,
            iface,
            dev,
            sockets,
            t0,
            client,
        }
    }

    /// Run the client's stack once and exchange frames (waits up to 5 ms
    /// for the host).
    async fn step(&mut self) {
        let t = smoltcp::time::Instant::from_micros((Instant::now() - self.t0).as_micros() as i64);
        self.iface.poll(t, &mut self.dev, &mut self.sockets);
        while let Some(f) = self.dev.pop_tx() {
            self.port.to_host.send(f).await.unwrap();
        }
        let wait = Duration::from_millis(5);
        if let Ok(Some(f)) = tokio::time::timeout(wait, self.from_host.recv()).await {
            self.dev.push_rx(&f);
            while let Ok(f) = self.from_host.try_recv() {
                self.dev.push_rx(&f);
            }
        }
    }

    fn client(&mut self) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(self.client)
    }

    /// Step until the host reports no open connection and `accepted`
    /// accepted ones.
    async fn until_closed(&mut self, accepted: u64) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            self.step().await;
            let st = self.port.status.borrow().clone();
            if st.connections == 0 && st.counters.connections_accepted == accepted {
                return;
            }
            assert!(Instant::now() < deadline, "connection never ended: {st:?}");
        }
    }

    async fn stop(self) {
        drop(self.port.to_host);
        self.port.task.await.unwrap();
    }
}

#[tokio::test]
async fn shell_splices_a_connection_to_a_local_service() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut lan = ShellLan::new(echo.local_addr().unwrap());
    tokio::spawn(async move {
        // Echo everything, then close: needs both directions at once.
        let (s, _) = echo.accept().await.unwrap();
        let (mut r, mut w) = s.into_split();
        tokio::io::copy(&mut r, &mut w).await.unwrap();
        w.shutdown().await.unwrap();
        let mut rest = Vec::new();
        let _ = r.read_to_end(&mut rest).await;
    });
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let (mut sent, mut back) = (0, Vec::new());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            Instant::now() < deadline,
            "stuck: sent {sent}, back {}",
            back.len()
        );
        lan.step().await;
        let sock = lan.client();
        if sock.may_send() && sent < data.len() {
            sent += sock.send_slice(&data[sent..]).unwrap();
            if sent == data.len() {
                sock.close();
            }
        }
        while sock.can_recv() {
            sock.recv(|b| {
                back.extend_from_slice(b);
                (b.len(), ())
            })
            .unwrap();
        }
        if sent == data.len() && !sock.may_recv() && back.len() == data.len() {
            break;
        }
    }
    assert!(back == data, "echo differs");
    // The connection ends on both sides and the host counts it.
    lan.until_closed(1).await;
    lan.stop().await;
}

#[tokio::test]
async fn a_local_reset_resets_the_client() {
    let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut lan = ShellLan::new(server.local_addr().unwrap());
    tokio::spawn(async move {
        // Close with the client's bytes unread: the kernel sends a RST.
        let (s, _) = server.accept().await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(s);
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut sent = false;
    while lan.client().state() != tcp::State::Closed {
        assert!(
            Instant::now() < deadline,
            "client not reset: {}",
            lan.client().state()
        );
        lan.step().await;
        if !sent && lan.client().may_send() {
            lan.client().send_slice(b"never read").unwrap();
            sent = true;
        }
    }
    assert!(sent);
    lan.until_closed(1).await;
    lan.stop().await;
}
