//! The underlay socket's `sendmmsg` batching (`tapmesh_shell::udp::SendBatch`)
//! on real UDP sockets in a namespace of the test's own: single datagrams to
//! several places leave in one system call, a GSO batch between them keeps
//! its place in the order, and an IPv6 socket reaches IPv4 destinations.
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use integration::{Netns, netns};
use overlay_proto::transmit::Transmit;
use tapmesh_shell::udp::{SendBatch, UdpLink};

/// Every datagram waiting on `s`, as (length, first byte).
fn received(s: &UdpSocket) -> Vec<(usize, u8)> {
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while let Ok(n) = s.recv(&mut buf) {
        got.push((n, buf[0]));
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    }
    got
}

#[test]
fn send_batch_sends_many_datagrams_per_call_in_order() {
    let ns = Netns::new(&format!("{}-u", netns::unique_prefix()));
    ns.ip(&["addr", "add", "198.18.0.1/32", "dev", "lo"]);
    let (rx, tx4, tx6) = ns.enter(|| {
        let rx: Vec<UdpSocket> = (0..3)
            .map(|_| UdpSocket::bind("198.18.0.1:0").unwrap())
            .collect();
        let tx4 = UdpSocket::bind("198.18.0.1:0").unwrap();
        let tx6 = UdpSocket::bind("[::]:0").unwrap();
        (rx, tx4, tx6)
    });
    let to: Vec<SocketAddr> = rx.iter().map(|s| s.local_addr().unwrap()).collect();
    let one = |to: SocketAddr, contents: &'static [u8]| Transmit {
        destination: to,
        contents,
        segment_size: None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let link = UdpLink::new(tx4).unwrap();
        let mut batch = SendBatch::default();
        batch.send(&link, &one(to[0], &[0; 84])).await;
        batch.send(&link, &one(to[1], &[1; 84])).await;
        batch.send(&link, &one(to[2], &[2; 100])).await;
        batch.send(&link, &one(to[0], &[3; 60])).await;
        assert_eq!((batch.len(), batch.calls()), (4, 0), "collected, not sent");
        // A GSO batch of two 84-byte datagrams: what came before goes first.
        let gso = Transmit {
            destination: to[1],
            contents: &[4; 168],
            segment_size: Some(84),
        };
        batch.send(&link, &gso).await;
        assert_eq!((batch.len(), batch.calls()), (0, 1));
        // One datagram left: a plain send, not a sendmmsg.
        batch.send(&link, &one(to[2], &[5; 84])).await;
        batch.flush(&link).await;
        assert_eq!((batch.len(), batch.calls()), (0, 1));

        // IPv4 destinations from a dual-stack IPv6 socket (v4-mapped).
        let link6 = UdpLink::new(tx6).unwrap();
        let mut batch6 = SendBatch::default();
        batch6.send(&link6, &one(to[0], &[6; 84])).await;
        batch6.send(&link6, &one(to[1], &[7; 84])).await;
        batch6.flush(&link6).await;
        assert_eq!(batch6.calls(), 1);
    });
    assert_eq!(received(&rx[0]), [(84, 0), (60, 3), (84, 6)]);
    assert_eq!(received(&rx[1]), [(84, 1), (84, 4), (84, 4), (84, 7)]);
    assert_eq!(received(&rx[2]), [(100, 2), (84, 5)]);
}
