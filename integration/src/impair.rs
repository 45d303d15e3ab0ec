//! An impaired underlay in userspace: a UDP relay that loses, delays (and
//! so reorders) and duplicates datagrams, like `tc qdisc … netem loss 5%
//! delay 10ms 5ms duplicate 1%`.
//!
//! Why not netem: kernels built without `sch_netem` (small VM kernels, some
//! CI runners) answer "Specified qdisc kind is unknown", and the tests must
//! run there. The relay sits in the switch's namespace on its own address;
//! nodes pointed at it ([`Topology::set_node_switch_addr`]) reach the switch
//! only through it. Like a NAT it gives each node its own upstream socket,
//! so the switch sees one endpoint per node.
//!
//! [`Topology::set_node_switch_addr`]: crate::Topology::set_node_switch_addr
use std::collections::{BinaryHeap, HashMap};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::Netns;
use crate::traffic::Rng;

/// What happens to each datagram, in each direction.
#[derive(Debug, Clone, Copy)]
pub struct Impairment {
    /// Probability a datagram is lost.
    pub loss: f64,
    /// Base one-way delay.
    pub delay: Duration,
    /// Each datagram's delay is `delay ± jitter`, uniformly: datagrams sent
    /// closer together than the spread are reordered.
    pub jitter: Duration,
    /// Probability a datagram is delivered twice (the copy with its own
    /// delay, so it may arrive first).
    pub duplicate: f64,
}

impl Impairment {
    /// `netem loss 5% delay 10ms 5ms duplicate 1%`.
    pub const ISSUE_8: Impairment = Impairment {
        loss: 0.05,
        delay: Duration::from_millis(10),
        jitter: Duration::from_millis(5),
        duplicate: 0.01,
    };
}

/// What a relay did, per direction (to the switch, from the switch).
#[derive(Debug, Clone, Copy, Default)]
pub struct RelayStats {
    /// Datagrams received.
    pub received: [u64; 2],
    /// Datagrams dropped as loss.
    pub lost: [u64; 2],
    /// Extra copies sent.
    pub duplicated: [u64; 2],
    /// Datagrams that left after one received later (reordered).
    pub reordered: [u64; 2],
}

/// A running relay; stopped and joined on drop.
#[derive(Debug)]
pub struct Relay {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<RelayStats>>,
    addr: SocketAddr,
}

impl Relay {
    /// Binds `listen` in `ns` (the address must exist there) and relays to
    /// `target`, applying `imp` in both directions.
    pub fn start(ns: &Netns, listen: SocketAddr, target: SocketAddr, imp: Impairment) -> Relay {
        let ns_path = format!("/run/netns/{}", ns.name());
        let sock = ns
            .enter(|| UdpSocket::bind(listen))
            .unwrap_or_else(|e| panic!("relay bind {listen} in {}: {e}", ns.name()));
        sock.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            // Upstream sockets are made later, so this thread lives in `ns`.
            let file = std::fs::File::open(&ns_path).expect("netns file");
            // SAFETY: setns on an open namespace fd changes only this thread.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert!(rc == 0, "setns: {}", std::io::Error::last_os_error());
            run(sock, listen, target, imp, &stop2)
        });
        Relay {
            stop,
            thread: Some(thread),
            addr: listen,
        }
    }

    /// The address nodes send to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the relay and returns what it did.
    pub fn finish(mut self) -> RelayStats {
        self.stop.store(true, Ordering::Relaxed);
        let t = self.thread.take().expect("relay finished twice");
        t.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A datagram waiting for its delivery time. Ordered by `due`, earliest
/// first in the (max-)heap; `seq` is its arrival order.
#[derive(PartialEq, Eq)]
struct Pending {
    due: Instant,
    seq: u64,
    /// 0: to the switch through upstream socket `peer`; 1: to client `peer`.
    dir: usize,
    peer: usize,
    data: Vec<u8>,
}

impl Ord for Pending {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.due.cmp(&self.due).then(other.seq.cmp(&self.seq))
    }
}

impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Draws each datagram's fate.
struct Fate {
    imp: Impairment,
    rng: Rng,
}

impl Fate {
    /// A uniform number in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn delay(&mut self) -> Duration {
        let spread = 2.0 * self.imp.jitter.as_secs_f64();
        let d = self.imp.delay.as_secs_f64() - self.imp.jitter.as_secs_f64() + spread * self.unit();
        Duration::from_secs_f64(d.max(0.0))
    }

    /// The delays of the copies to deliver: none (lost), one, or two
    /// (duplicated).
    fn copies(&mut self) -> Vec<Duration> {
        if self.unit() < self.imp.loss {
            return Vec::new();
        }
        let mut v = vec![self.delay()];
        if self.unit() < self.imp.duplicate {
            v.push(self.delay());
        }
        v
    }
}

fn run(
    listen: UdpSocket,
    listen_addr: SocketAddr,
    target: SocketAddr,
    imp: Impairment,
    stop: &AtomicBool,
) -> RelayStats {
    let mut fate = Fate {
        imp,
        rng: Rng::new(0x1e1a_7e57),
    };
    let mut clients: Vec<(SocketAddr, UdpSocket)> = Vec::new();
    let mut by_addr: HashMap<SocketAddr, usize> = HashMap::new();
    let mut heap = BinaryHeap::new();
    let mut stats = RelayStats::default();
    let mut seq = 0u64;
    let mut last_sent_seq = [0u64; 2];
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        // Deliver what is due.
        let now = Instant::now();
        while heap.peek().is_some_and(|p: &Pending| p.due <= now) {
            let p = heap.pop().expect("peeked");
            if p.seq < last_sent_seq[p.dir] {
                stats.reordered[p.dir] += 1;
            }
            last_sent_seq[p.dir] = last_sent_seq[p.dir].max(p.seq);
            let _ = if p.dir == 0 {
                clients[p.peer].1.send(&p.data)
            } else {
                listen.send_to(&p.data, clients[p.peer].0)
            };
        }
        let wait_ms = heap.peek().map_or(20, |p: &Pending| {
            p.due
                .saturating_duration_since(Instant::now())
                .as_millis()
                .min(20) as i32
        });
        let mut fds: Vec<libc::pollfd> = std::iter::once(listen.as_raw_fd())
            .chain(clients.iter().map(|(_, s)| s.as_raw_fd()))
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: fds is a valid array of pollfd for the call's duration.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait_ms) };
        let now = Instant::now();
        let mut arrived = Vec::new();
        while let Ok((n, from)) = listen.recv_from(&mut buf) {
            let peer = match by_addr.get(&from) {
                Some(&k) => k,
                None => {
                    let up = UdpSocket::bind(SocketAddr::new(listen_addr.ip(), 0))
                        .and_then(|s| s.connect(target).map(|()| s))
                        .expect("relay upstream socket");
                    up.set_nonblocking(true).expect("nonblocking");
                    clients.push((from, up));
                    by_addr.insert(from, clients.len() - 1);
                    clients.len() - 1
                }
            };
            arrived.push((0, peer, buf[..n].to_vec()));
        }
        for (peer, (_, up)) in clients.iter().enumerate() {
            while let Ok(n) = up.recv(&mut buf) {
                arrived.push((1, peer, buf[..n].to_vec()));
            }
        }
        for (dir, peer, data) in arrived {
            stats.received[dir] += 1;
            let copies = fate.copies();
            if copies.is_empty() {
                stats.lost[dir] += 1;
            }
            stats.duplicated[dir] += copies.len().saturating_sub(1) as u64;
            for d in copies {
                seq += 1;
                heap.push(Pending {
                    due: now + d,
                    seq,
                    dir,
                    peer,
                    data: data.clone(),
                });
            }
        }
    }
    stats
}
