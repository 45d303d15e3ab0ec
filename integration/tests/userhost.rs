//! The "localhost tunnel" (issue 6, acceptance 5): a node with no TAP,
//! running as `nobody`, whose ports are a userspace host (smoltcp) at
//! 198.19.0.50 forwarding port 80 to an HTTP server on 127.0.0.1:8080 of its
//! own namespace, and a VM socket. A host with a real TAP in another
//! namespace pings it (IPv4 and IPv6) and fetches the page with curl; a
//! "VM" on the socket resolves the host's address with ARP.
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, TcpListener};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use integration::bench::cpu::process_cpu_secs;
use integration::status::counter;
use integration::topology::TAP;
use integration::unprivileged::{NOBODY, UnprivilegedNode};
use integration::{Netns, Topology};

const HOST_V4: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 50);
const HOST_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x19, 0, 0, 0, 0, 0, 0x50);
const UP: Duration = Duration::from_secs(20);

/// A tiny HTTP/1.0 server on 127.0.0.1:8080 inside a namespace, answering
/// `GET /big` with [`big_body`], a `PUT` with the length and [`digest`] of
/// its body, and every other request with `BODY`; stopped and joined on
/// drop.
struct HttpServer {
    stop: Arc<AtomicBool>,
    served: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

const BODY: &str = "hello from 127.0.0.1:8080 behind a userspace host\n";
/// Size of `GET /big`.
const BIG: usize = 16 << 20;

fn big_body() -> Vec<u8> {
    (0..BIG as u32).map(|i| (i % 251) as u8).collect()
}

/// FNV-1a over the bytes: enough to tell an upload arrived unchanged.
fn digest(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl HttpServer {
    fn start(ns: &Netns) -> HttpServer {
        let listener = ns
            .enter(|| TcpListener::bind("127.0.0.1:8080"))
            .expect("binding 127.0.0.1:8080 in the host's namespace");
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));
        let (st, sv) = (stop.clone(), served.clone());
        let thread = std::thread::spawn(move || {
            let big = big_body();
            while !st.load(Ordering::Relaxed) {
                let Ok((s, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut r = BufReader::new(s);
                let mut request = String::new();
                let _ = r.read_line(&mut request);
                let mut line = String::new();
                let mut length = 0;
                // The headers, up to the empty line.
                while r.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    if let Some((k, v)) = line.split_once(':')
                        && k.eq_ignore_ascii_case("content-length")
                    {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    line.clear();
                }
                let upload;
                let body = if request.starts_with("GET /big ") {
                    &big[..]
                } else if request.starts_with("PUT ") {
                    let mut data = vec![0u8; length];
                    let _ = r.read_exact(&mut data);
                    upload = format!("{} {:x}\n", data.len(), digest(&data));
                    upload.as_bytes()
                } else {
                    BODY.as_bytes()
                };
                let mut s = r.into_inner();
                let _ = write!(
                    s,
                    "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )
                .and_then(|()| s.write_all(body));
                sv.fetch_add(1, Ordering::Relaxed);
            }
        });
        HttpServer {
            stop,
            served,
            thread: Some(thread),
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// PUTs 16 MiB to `url` with curl from `ns` and checks that the server got
/// them unchanged.
fn upload(ns: &Netns, dir: &std::path::Path, url: &str) {
    let file = dir.join("upload.bin");
    let data: Vec<u8> = big_body().iter().rev().copied().collect();
    std::fs::write(&file, &data).unwrap();
    let file = file.to_string_lossy();
    // No `Expect: 100-continue`: curl would wait a second for an answer
    // our server never sends.
    let args = [
        "-sS",
        "--max-time",
        "20",
        "--noproxy",
        "*",
        "-H",
        "Expect:",
        "-T",
        &file,
        url,
    ];
    let out = ns.exec("curl", &args);
    assert!(out.status.success(), "curl -T {url}: {out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{} {:x}\n", data.len(), digest(&data)),
        "the upload to {url} arrived changed"
    );
}

/// Print a 16 MiB transfer's time and rate (for BENCHMARKS.md).
fn report(what: &str, elapsed: Duration) {
    let mbit = (BIG * 8) as f64 / elapsed.as_secs_f64() / 1e6;
    eprintln!("userspace host: 16 MiB {what} in {elapsed:.2?} ({mbit:.0} Mbit/s)");
}

/// Over a VM socket (QEMU's `-netdev stream` framing), ARP for `target`
/// from a made-up VM and return the MAC in the reply.
fn arp_over_vm_socket(path: &std::path::Path, target: Ipv4Addr) -> [u8; 6] {
    const VM_MAC: [u8; 6] = [2, 0, 0, 0, 0x0e, 0x01];
    let mut s = UnixStream::connect(path)
        .unwrap_or_else(|e| panic!("connecting to the VM socket {}: {e}", path.display()));
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut f = Vec::new();
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&VM_MAC);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&VM_MAC);
    f.extend_from_slice(&[198, 19, 0, 99]);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    let mut tries = 20;
    loop {
        // Until the node has taken the connection up, a request may be lost:
        // ask again after every frame read or timeout.
        s.write_all(&(f.len() as u32).to_be_bytes()).unwrap();
        s.write_all(&f).unwrap();
        let mut len = [0u8; 4];
        if s.read_exact(&mut len).is_ok() {
            let mut frame = vec![0u8; u32::from_be_bytes(len) as usize];
            s.read_exact(&mut frame).unwrap();
            let is_reply = frame.len() >= 42
                && frame[12..14] == [0x08, 0x06]
                && frame[20..22] == [0, 2]
                && frame[28..32] == target.octets()
                && frame[0..6] == VM_MAC;
            if is_reply {
                return frame[22..28].try_into().unwrap();
            }
        }
        tries -= 1;
        assert!(tries > 0, "no ARP reply for {target} on the VM socket");
    }
}

fn curl(ns: &Netns, url: &str) -> std::process::Output {
    ns.exec(
        "curl",
        &["-sS", "-g", "--max-time", "10", "--noproxy", "*", url],
    )
}

#[test]
fn rootless_node_with_a_userspace_host_serves_http_and_answers_ping() {
    let mut topo = Topology::central(2);
    let server = HttpServer::start(topo.ns(2));
    topo.start_switch();
    topo.start_node(1);
    let vm_socket = topo.dir().join("vm1.sock");
    let mut node = UnprivilegedNode::start(
        &mut topo,
        2,
        &format!(
            "metrics-listen = \"127.0.0.1:9102\"\n\
             [[vm-port]]\npath = \"{}\"\n\
             [[host]]\naddress = [\"{HOST_V4}/24\", \"{HOST_V6}/64\"]\n\
             [[host.forward]]\nport = 80\nto = \"127.0.0.1:8080\"\n\
             [[host.forward]]\nport = 81\nto = \"127.0.0.1:1\"\n",
            vm_socket.display()
        ),
    );

    // It really runs as nobody, and h2 has no TAP.
    let proc_status = std::fs::read_to_string(format!("/proc/{}/status", node.pid()))
        .expect("reading the node's /proc status");
    let uids = proc_status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .expect("a Uid line");
    assert!(
        uids.split_whitespace()
            .skip(1)
            .all(|u| u == NOBODY.to_string()),
        "node is not running as nobody: {uids}"
    );
    assert!(!topo.ns(2).has_link(TAP), "h2 has a TAP");

    // A VM on the same node reaches the host through the node's local switch.
    let host_mac = arp_over_vm_socket(&vm_socket, HOST_V4);
    let mac = topo.node_status(2)["hosts"][0]["mac"].clone();
    let want: Vec<String> = host_mac.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(mac.as_str(), Some(want.join(":").as_str()));

    assert!(
        topo.ping_ok_within(1, HOST_V4, UP),
        "h1 cannot ping the userspace host at {HOST_V4}"
    );
    assert!(
        topo.ping_ok_within(1, HOST_V6, UP),
        "h1 cannot ping the userspace host at {HOST_V6}"
    );

    for url in [format!("http://{HOST_V4}/"), format!("http://[{HOST_V6}]/")] {
        let out = curl(topo.ns(1), &url);
        assert!(
            out.status.success(),
            "curl {url} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), BODY, "curl {url}");
    }
    assert_eq!(server.served.load(Ordering::Relaxed), 2);

    // 16 MiB from the local service to h1, byte for byte, timed.
    let t = std::time::Instant::now();
    let out = curl(topo.ns(1), &format!("http://{HOST_V4}/big"));
    let elapsed = t.elapsed();
    assert!(out.status.success(), "curl /big: {out:?}");
    assert!(
        out.stdout == big_body(),
        "/big arrived changed ({} bytes)",
        out.stdout.len()
    );
    report("download", elapsed);
    // And 16 MiB the other way.
    let t = std::time::Instant::now();
    upload(topo.ns(1), topo.dir(), &format!("http://{HOST_V4}/sink"));
    report("upload", t.elapsed());

    // Nothing listens on the forward's target: refused, as by a real host.
    let out = curl(topo.ns(1), &format!("http://{HOST_V4}:81/"));
    assert_eq!(
        out.status.code(),
        Some(7),
        "curl to a forward whose service is down: want 'connection refused' (exit 7), got {} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // A port that is not forwarded at all: refused too.
    let out = curl(topo.ns(1), &format!("http://{HOST_V4}:82/"));
    assert_eq!(out.status.code(), Some(7), "{out:?}");

    // The host's counters (a snapshot refreshed every 250 ms): four
    // connections accepted, one refused, all of them over (curl closed its
    // side, the server its own).
    let host = || topo.node_status(2)["hosts"][0].clone();
    let done = |h: &serde_json::Value| {
        counter(h, &["connections_accepted"]) == 4
            && counter(h, &["connections_refused"]) == 1
            && h["connections"].as_u64() == Some(0)
    };
    integration::wait_until(Duration::from_secs(5), || done(&host()));
    let h = host();
    assert!(done(&h), "{h}");
    assert_eq!(
        h["addresses"][0].as_str(),
        Some(format!("{HOST_V4}/24").as_str())
    );
    let metrics = integration::http::get(topo.ns(2), "127.0.0.1:9102".parse().unwrap(), "/metrics")
        .expect("scraping h2's metrics");
    for line in [
        "tapmesh_node_host_connections_total{node=\"h2\",host=\"0\",result=\"accepted\"} 4\n",
        "tapmesh_node_host_connections_total{node=\"h2\",host=\"0\",result=\"refused\"} 1\n",
        "tapmesh_node_host_connections{node=\"h2\",host=\"0\"} 0\n",
    ] {
        assert!(metrics.body.contains(line), "no {line:?} in h2's metrics");
    }
    // Idle, the node sleeps: both nodes use well under 10% of a core over
    // 2 s (a loop that spins on a closed channel would use 100%).
    let pids = [node.pid(), topo.node_pid(1)];
    let cpu_secs = |p: u32| process_cpu_secs(p).expect("the node is running");
    let before: Vec<f64> = pids.iter().map(|&p| cpu_secs(p)).collect();
    std::thread::sleep(Duration::from_secs(2));
    for (k, &p) in pids.iter().enumerate() {
        let used = cpu_secs(p) - before[k];
        assert!(
            used < 0.2,
            "node pid {p} used {used:.2} s of CPU in 2 s idle"
        );
    }
    node.assert_running();
    topo.assert_all_running();
}

/// A host beside a TAP on the same node: frames between them never leave
/// the node (the local switch), and the kernel's offloaded TCP super-frames
/// and partial checksums are turned into plain frames for smoltcp.
#[test]
fn a_host_beside_a_tap_on_the_same_node() {
    const LOCAL: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 60);
    let mut topo = Topology::central(1);
    let _server = HttpServer::start(topo.ns(1));
    topo.set_node_config_extra(
        1,
        &format!(
            "[[host]]\naddress = [\"{LOCAL}/24\"]\n\
             [[host.forward]]\nport = 80\nto = \"127.0.0.1:8080\"\n"
        ),
    );
    topo.start_switch();
    topo.start_node(1);
    assert!(
        topo.ping_ok_within(1, LOCAL, UP),
        "h1 cannot ping its own node's host"
    );
    let out = curl(topo.ns(1), &format!("http://{LOCAL}/big"));
    assert!(out.status.success(), "curl /big: {out:?}");
    assert!(
        out.stdout == big_body(),
        "/big arrived changed ({} bytes)",
        out.stdout.len()
    );
    // Upload: the kernel's TSO super-frames, cut into segments for smoltcp.
    let t = std::time::Instant::now();
    upload(topo.ns(1), topo.dir(), &format!("http://{LOCAL}/sink"));
    report("upload from a TAP on the same node", t.elapsed());
    let status = topo.node_status(1);
    assert!(
        counter(&status, &["udp_tx_datagrams"]) < 100,
        "the local transfers went to the switch: {status}"
    );
    topo.assert_all_running();
}
