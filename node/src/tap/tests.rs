//! The real TAP, in a network namespace of the test thread's own (needs
//! root, as the namespace tests do).
use std::future::Future;
use std::net::Ipv4Addr;
use std::task::Poll;

use super::VnetTap;

/// Read system calls made by this thread so far (`syscr` in
/// `/proc/thread-self/io`).
fn reads() -> u64 {
    let io = std::fs::read_to_string("/proc/thread-self/io").expect("/proc/thread-self/io");
    io.lines()
        .find_map(|l| l.strip_prefix("syscr: "))
        .and_then(|n| n.trim().parse().ok())
        .expect("a syscr line")
}

fn ip(args: &[&str]) {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .expect("ip");
    assert!(out.status.success(), "ip {args:?}: {out:?}");
}

/// Run `test` on a thread of its own in a new network namespace (IPv6
/// off), on a current-thread runtime.
fn in_own_netns(test: impl Future<Output = ()> + Send + 'static) {
    std::thread::spawn(|| {
        // SAFETY: unshare(2) with a flag constant; affects this thread only.
        let r = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "unshare(CLONE_NEWNET) needs root");
        std::fs::write("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1").unwrap();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(test);
    })
    .join()
    .unwrap();
}

/// After `try_recv` found the TAP empty, the next `recv` waits for the
/// runtime instead of trying a read that fails again: one `read` per
/// wakeup saved on the node's TAP path.
#[test]
fn an_empty_try_recv_clears_readiness() {
    in_own_netns(async {
        let tap = VnetTap::open("tmtest0").unwrap();
        ip(&["link", "set", "dev", "tmtest0", "up"]);
        ip(&["addr", "add", "198.19.255.1/24", "dev", "tmtest0"]);
        let mut buf = vec![0u8; 65600];
        // An ARP request for the neighbour goes out on the TAP.
        let s = std::net::UdpSocket::bind("198.19.255.1:0").unwrap();
        s.send_to(b"x", (Ipv4Addr::new(198, 19, 255, 2), 9))
            .unwrap();
        let n = tap.recv(&mut buf).await.unwrap();
        assert!(n > 10, "a frame with its virtio header");
        while tap.try_recv(&mut buf).is_ok() {}
        let cost = {
            let a = reads();
            reads() - a
        };
        let before = reads();
        let mut recv = std::pin::pin!(tap.recv(&mut buf));
        let polled = std::future::poll_fn(|cx| Poll::Ready(recv.as_mut().poll(cx))).await;
        let after = reads();
        assert!(polled.is_pending(), "nothing more was sent: {polled:?}");
        assert_eq!(
            after - before,
            cost,
            "polling recv after an empty try_recv made a read system call"
        );
    });
}

/// An Ethernet + IPv4 + UDP frame (UDP checksum 0: none).
fn udp4(dst_mac: [u8; 6], src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 20 + 8 + 4];
    f[0..6].copy_from_slice(&dst_mac);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(32u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&dst);
    let sum = ip
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum::<u32>();
    let sum = !(((sum & 0xffff) + (sum >> 16)) as u16);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f[34..36].copy_from_slice(&sport.to_be_bytes());
    f[36..38].copy_from_slice(&dport.to_be_bytes());
    f[38..40].copy_from_slice(&12u16.to_be_bytes());
    f
}

/// What the sealing workers rely on: with several queues, the kernel sends
/// a flow's frames out of the queue the flow's frames were written to. Each
/// of eight flows is written to queue 0 or 1 in turn, and the kernel's
/// answer must come out of that same queue (by the hash alone, all eight
/// would match with a chance of 1 in 256).
#[test]
fn a_flow_leaves_by_the_queue_it_was_written_to() {
    in_own_netns(async {
        let (first, extra) = VnetTap::open_queues("tmtest1", false, 2).unwrap();
        assert!(!first.vnet);
        assert_eq!(extra.len(), 1);
        let mac = [2, 0, 0, 0, 0, 1];
        ip(&[
            "link",
            "set",
            "dev",
            "tmtest1",
            "address",
            "02:00:00:00:00:01",
            "up",
        ]);
        ip(&["addr", "add", "198.19.254.1/24", "dev", "tmtest1"]);
        ip(&[
            "neigh",
            "add",
            "198.19.254.2",
            "lladdr",
            "02:00:00:00:00:02",
            "dev",
            "tmtest1",
        ]);
        let s = std::net::UdpSocket::bind("198.19.254.1:9999").unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let q0 = first.fd.get_ref();
        let q1 = &*extra[0];
        let mut buf = vec![0u8; 2048];
        // Let the kernel's own first frames (IPv6 is off; nothing else) pass.
        std::thread::sleep(std::time::Duration::from_millis(100));
        while super::read(q0, &mut buf).is_ok() || super::read(q1, &mut buf).is_ok() {}
        for (i, sport) in (40000u16..40008).enumerate() {
            let (written, other) = if i % 2 == 0 { (q0, q1) } else { (q1, q0) };
            let f = udp4(mac, [198, 19, 254, 2], sport, [198, 19, 254, 1], 9999);
            super::write(written, &f).unwrap();
            let (_, from) = s.recv_from(&mut buf).unwrap();
            assert_eq!(from.port(), sport);
            s.send_to(b"back", from).unwrap();
            let mut got = None;
            for _ in 0..200 {
                if let Ok(n) = super::read(written, &mut buf) {
                    got = Some(n);
                    break;
                }
                assert!(
                    super::read(other, &mut buf).is_err(),
                    "flow {i}: the answer left by the other queue"
                );
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            let n = got.unwrap_or_else(|| panic!("flow {i}: no answer on its queue"));
            // The answer: UDP from 9999 to the flow's source port.
            assert_eq!(
                &buf[14 + 20..14 + 24],
                &[&9999u16.to_be_bytes()[..], &sport.to_be_bytes()[..]].concat()[..],
                "{n}"
            );
        }
    });
}
