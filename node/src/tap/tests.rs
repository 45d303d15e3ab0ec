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

/// After `try_recv` found the TAP empty, the next `recv` waits for the
/// runtime instead of trying a read that fails again: one `read` per
/// wakeup saved on the node's TAP path.
#[test]
fn an_empty_try_recv_clears_readiness() {
    std::thread::spawn(|| {
        // SAFETY: unshare(2) with a flag constant; affects this thread only.
        let r = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "unshare(CLONE_NEWNET) needs root");
        std::fs::write("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1").unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
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
    })
    .join()
    .unwrap();
}
