//! `tapmesh-loadgen`: the switch-only benchmark of issues #7 and #16. One real
//! `tapmesh-switch` process in a namespace of its own, and N simulated nodes
//! in this process speaking the real protocol over that namespace's loopback:
//! each is a `tapmesh_node::engine::Node` (real Noise handshakes, real AES-GCM
//! both ways), with only the TAP replaced by frames built here.
//!
//! Phase 1 (throughput): N nodes (default 1,000) connect and each learns one
//! MAC; then nodes send unicast frames to their pair partner (node k to node
//! k^1) as fast as the switch takes them, for 64-byte and for 1400-byte
//! frames. A frame counts only if it came back through the switch and the
//! receiving node's session opened it (authenticated); its payload carries the
//! send time, so latency is measured at receive. The generator keeps at most
//! `--window` frames in flight per socket, so the switch's socket does not
//! overflow and the latency is that of a saturated but not overrun switch.
//!
//! With `--switches 2`, phase 1 runs again with two switches peered by a
//! static `[cluster]`, every frame crossing the trunk once ([`cluster`]).
//!
//! Phase 2 (memory): a fresh switch admits M nodes (default 10,000); all
//! connect and learn K MACs each (default 10, so 100,000 MACs; the switch's
//! `mac-limit-per-node` is K); the switch's VmRSS is read from /proc.
//!
//! With `--mac-churn`, phase 3: what MAC churn costs a real etcd
//! ([`mac_churn`]).
//!
//! The generator sends with `sendmmsg` and receives with `recvmmsg` (batches of
//! 64), so its syscall cost per frame is a fraction of the switch's; its CPU
//! and the switch's are both reported, and frames/s per switch core is frames/s
//! divided by the switch's CPU use. Exits 1 if the switch did not come up,
//! nodes did not connect, no frame came back, or churn wrote nothing to etcd;
//! 130 on Ctrl-C.
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use integration::bench::cpu::{CpuSample, resident_memory};
use integration::bench::histogram::Histogram;
use integration::bench::udp_batch::{MsgBatch, set_buffers};
use integration::stop;
use integration::{Netns, Process, bins, wait_until};
use overlay_proto::keys::StaticSecret;
use overlay_proto::wire::{DATA_HEADER_LEN, DATA_OVERHEAD};
use serde_json::{Value, json};
use tapmesh_node::engine::{LinkState, Node, NodeConfig};
use tapmesh_sim::NodeSet;

mod cluster;
mod mac_churn;

const USAGE: &str = "usage: tapmesh-loadgen [--quick] [--nodes N] [--secs S] [--threads W] [--window F]\n\
                     \x20                      [--mem-nodes M] [--macs-per-node K] [--switches 1|2]\n\
                     \x20                      [--mac-churn R[,R...]] [--json PATH]\n\
  --nodes N          simulated nodes in the throughput phase (default 1000)\n\
  --secs S           seconds per frame size (default 5)\n\
  --threads W        generator threads, one socket each (default 1)\n\
  --window F         frames in flight per socket (default 512)\n\
  --mem-nodes M      nodes in the memory phase (default 10000; 0 skips it)\n\
  --macs-per-node K  MACs learned per node in the memory phase (default 10)\n\
  --switches 2       also run the throughput phase with two peered switches, half the\n\
                     nodes on each, every frame crossing the trunk once (default 1)\n\
  --mac-churn R,..   MAC churn phase: one switch on a real etcd; per rate R, R new source\n\
                     MACs/s (aging 1 s); then the highest R in moves/s between two nodes\n\
                     (default: skip)\n\
  --quick            CI smoke: 100 nodes, 1 s, memory phase with 1000 nodes, two switches,\n\
                     MAC churn at 500/s\n\
  --switch-workers N the switch's workers setting in the throughput phase with one switch
                     (default 1; see ARCHITECTURE.md); use with --no-pin to let it use every CPU\n\
  --no-pin           do not pin the switch to the last CPU and the generator to the others\n\
  --json PATH        default target/bench/loadgen.json";

/// The switch's UDP port inside the generator's namespace.
const SWITCH_PORT: u16 = 7777;
/// Datagrams per `sendmmsg` / `recvmmsg`.
const BATCH: usize = 64;
/// Buffer stride: the largest frame plus overhead, rounded up.
const STRIDE: usize = 2048;
/// Handshakes in flight at once (so the switch's socket is not flooded).
const HANDSHAKES_IN_FLIGHT: usize = 256;
/// EtherType of generated frames (IEEE 802 local experimental).
const ETHERTYPE: [u8; 2] = [0x88, 0xb5];
/// A run begins once no frame of the one before came for this long.
const STRAGGLERS: Duration = Duration::from_millis(250);
/// Marks a timed frame's payload.
const MAGIC: u32 = 0x746d_6c67;

#[derive(Debug)]
struct Args {
    nodes: usize,
    secs: f64,
    threads: usize,
    window: u64,
    mem_nodes: usize,
    macs_per_node: usize,
    json: PathBuf,
    pin: bool,
    switches: usize,
    switch_workers: usize,
    mac_churn: Vec<u64>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        nodes: 1000,
        secs: 5.0,
        threads: 1,
        window: 512,
        mem_nodes: 10_000,
        macs_per_node: 10,
        json: PathBuf::from("target/bench/loadgen.json"),
        pin: true,
        switches: 1,
        switch_workers: 1,
        mac_churn: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        let bad = |name: &str| format!("bad value for {name}");
        match arg.as_str() {
            "--quick" => {
                a.nodes = 100;
                a.secs = 1.0;
                a.mem_nodes = 1000;
                a.switches = 2;
                a.mac_churn = vec![500];
            }
            "--nodes" => a.nodes = value(&arg)?.parse().map_err(|_| bad(&arg))?,
            "--secs" => a.secs = value(&arg)?.parse().map_err(|_| bad(&arg))?,
            "--threads" => a.threads = value(&arg)?.parse().map_err(|_| bad(&arg))?,
            "--window" => a.window = value(&arg)?.parse().map_err(|_| bad(&arg))?,
            "--mem-nodes" => a.mem_nodes = value(&arg)?.parse().map_err(|_| bad(&arg))?,
            "--macs-per-node" => a.macs_per_node = value(&arg)?.parse().map_err(|_| bad(&arg))?,
            "--switches" => a.switches = value(&arg)?.parse().map_err(|_| bad(&arg))?,
            "--switch-workers" => a.switch_workers = value(&arg)?.parse().map_err(|_| bad(&arg))?,
            "--mac-churn" => {
                a.mac_churn = value(&arg)?
                    .split(',')
                    .map(|r| r.parse().ok().filter(|&r: &u64| r > 0))
                    .collect::<Option<_>>()
                    .ok_or_else(|| bad(&arg))?;
            }
            "--json" => a.json = value(&arg)?.into(),
            "--no-pin" => a.pin = false,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if a.nodes < 2 || a.threads == 0 || a.secs <= 0.0 || a.window == 0 || a.macs_per_node == 0 {
        return Err(
            "need --nodes >= 2, --threads >= 1, --secs > 0, --window >= 1, --macs-per-node >= 1"
                .into(),
        );
    }
    if !(1..=2).contains(&a.switches) {
        return Err("--switches must be 1 or 2".into());
    }
    if a.switches == 2 && !a.nodes.is_multiple_of(2 * a.threads) {
        return Err("with --switches 2, --nodes must be a multiple of 2 x --threads".into());
    }
    if a.mem_nodes == 1 {
        return Err("--mem-nodes must be 0 (skip) or >= 2".into());
    }
    Ok(a)
}

/// MAC `j` of node `k`: locally administered, unique.
fn mac(k: usize, j: usize) -> [u8; 6] {
    [
        0x02,
        (k >> 24) as u8,
        (k >> 16) as u8,
        (k >> 8) as u8,
        k as u8,
        j as u8,
    ]
}

/// What a switch under test is started with.
#[derive(Debug)]
struct SwitchConfig<'a> {
    /// Names its files.
    tag: &'a str,
    /// Its UDP port on the namespace's loopback.
    port: u16,
    key: &'a StaticSecret,
    /// The nodes it admits.
    nodes: &'a [StaticSecret],
    mac_limit_per_node: usize,
    mac_aging_secs: u64,
    /// Appended after the `[[node]]` tables (a `[cluster]` section).
    /// The switch's `workers`.
    workers: usize,
    tail: String,
}

impl<'a> SwitchConfig<'a> {
    /// A lone switch on [`SWITCH_PORT`] whose MACs do not age during a run.
    fn new(
        tag: &'a str,
        key: &'a StaticSecret,
        nodes: &'a [StaticSecret],
        mac_limit_per_node: usize,
    ) -> SwitchConfig<'a> {
        SwitchConfig {
            tag,
            port: SWITCH_PORT,
            key,
            nodes,
            mac_limit_per_node,
            mac_aging_secs: 3600,
            workers: 1,
            tail: String::new(),
        }
    }

    fn addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }
}

/// One running switch and the files it uses.
#[derive(Debug)]
struct SwitchUnderTest {
    process: Process,
    addr: SocketAddr,
    admin: PathBuf,
}

impl SwitchUnderTest {
    /// Writes the switch's key and its config, starts the switch in `ns` and
    /// waits until it answers `status`.
    fn start(ns: &Netns, dir: &Path, c: &SwitchConfig) -> Result<SwitchUnderTest, String> {
        use std::fmt::Write;
        let tag = c.tag;
        let key_file = dir.join(format!("switch-{tag}.key"));
        write_private(&key_file, &c.key.to_base64())?;
        let admin = dir.join(format!("switch-{tag}.sock"));
        let addr = c.addr();
        let mut cfg = format!(
            "listen = \"{addr}\"\nprivate-key-file = \"{}\"\nadmin-socket = \"{}\"\n\
             state-file = \"{}\"\nmac-aging-secs = {}\nnode-timeout-secs = 3600\nworkers = {}\n\
             mac-limit-per-node = {}\nmac-table-limit = {}\n",
            key_file.display(),
            admin.display(),
            dir.join(format!("switch-{tag}.state")).display(),
            c.mac_aging_secs,
            c.workers,
            c.mac_limit_per_node,
            c.nodes.len() * c.mac_limit_per_node + 1024,
        );
        for (i, k) in c.nodes.iter().enumerate() {
            let _ = write!(
                cfg,
                "\n[[node]]\nname = \"n{i}\"\npublic-key = \"{}\"\n",
                k.public_key().to_base64()
            );
        }
        cfg += &c.tail;
        let cfg_file = dir.join(format!("switch-{tag}.toml"));
        std::fs::write(&cfg_file, cfg).map_err(|e| format!("{}: {e}", cfg_file.display()))?;
        let cfg_s = cfg_file.to_string_lossy().into_owned();
        let mut process = Process::spawn(
            "switch",
            ns,
            &bins::bin(bins::SWITCH),
            &["run", "--config", &cfg_s],
            dir.join(format!("switch-{tag}.log")),
        );
        let ready = wait_until(Duration::from_secs(20), || {
            !process.is_running() || status(&admin).is_ok()
        });
        if !ready || !process.is_running() {
            return Err(format!(
                "switch did not come up; log {}:\n{}",
                process.log().display(),
                integration::process::tail(process.log(), 20)
            ));
        }
        Ok(SwitchUnderTest {
            process,
            addr,
            admin,
        })
    }

    fn pid(&self) -> u32 {
        self.process.pid()
    }

    fn status(&self) -> Result<Value, String> {
        status(&self.admin)
    }
}

fn write_private(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    writeln!(f, "{text}").map_err(|e| format!("{}: {e}", path.display()))
}

/// `tapmesh-switch status --json --socket PATH`.
fn status(admin: &Path) -> Result<Value, String> {
    let out = std::process::Command::new(bins::bin(bins::SWITCH))
        .args(["status", "--json", "--socket"])
        .arg(admin)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

/// Simulated nodes sharing one socket (so one endpoint; the switch tells
/// them apart by session index, and so do we).
#[derive(Debug)]
struct Worker {
    sock: UdpSocket,
    switch: SocketAddr,
    /// Global node number of `set.nodes[0]`.
    first: usize,
    /// Whom its nodes send to.
    pairing: Pairing,
    set: NodeSet,
    tx: MsgBatch,
    rx: MsgBatch,
    /// Authenticated frames received outside a measurement.
    stray: u64,
}

/// Whom a worker's nodes send to: each other in pairs (`k` and `k ^ 1`, one
/// switch), or the same slot of the partner worker, whose nodes are homed on
/// the other switch (so every frame crosses the trunk once).
#[derive(Debug, Clone, Copy)]
struct Pairing {
    /// Global number of the worker's first node.
    first: usize,
    /// The worker's nodes.
    n: usize,
    /// Global number of the partner worker's first node (`first` if none).
    partner_first: usize,
    /// The partner worker is on another switch.
    cross: bool,
}

impl Pairing {
    /// The global node that node `local` of this worker sends frames to.
    fn peer(&self, local: usize) -> usize {
        if self.cross {
            self.partner_first + local
        } else {
            self.first + (local ^ 1).min(self.n - 1)
        }
    }

    /// The global node whose MAC node `k` sends its learning frames to: on
    /// the other switch if there is one, so that both switches learn `k`.
    fn sink(&self, k: usize) -> usize {
        match (self.cross, k) {
            (true, _) => self.partner_first,
            (false, 0) => 1,
            (false, _) => 0,
        }
    }

    /// The sinks among this worker's own nodes, which broadcast once first
    /// so that every switch knows where they are.
    fn own_sinks(&self) -> &'static [usize] {
        match (self.cross, self.first) {
            (true, _) => &[0],
            (false, 0) => &[0, 1],
            (false, _) => &[],
        }
    }
}

/// What one pump run moved.
#[derive(Debug, Default, Clone)]
struct PumpStats {
    sent: u64,
    received: u64,
    bad: u64,
    stalls: u64,
}

impl Worker {
    fn new(
        ns: &Netns,
        switch: SocketAddr,
        first: usize,
        keys: &[StaticSecret],
        switch_key: &StaticSecret,
    ) -> Result<Worker, String> {
        let sock = ns
            .enter(|| -> std::io::Result<UdpSocket> {
                let s = UdpSocket::bind("127.0.0.1:0")?;
                s.connect(switch)?;
                Ok(s)
            })
            .map_err(|e| format!("generator socket: {e}"))?;
        set_buffers(&sock, 16 << 20);
        let now = Instant::now();
        let unix_now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let switch_pub = switch_key.public_key();
        let nodes = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                Node::new(
                    NodeConfig {
                        mtu: 1500,
                        ..tapmesh_sim::node_config(k.clone(), switch_pub, switch)
                    },
                    now,
                    unix_now,
                    rand::random::<u64>() ^ (first + i) as u64,
                )
            })
            .collect();
        Ok(Worker {
            sock,
            switch,
            first,
            pairing: Pairing {
                first,
                n: keys.len(),
                partner_first: first,
                cross: false,
            },
            set: NodeSet::new(nodes),
            tx: MsgBatch::new(BATCH, STRIDE),
            rx: MsgBatch::new(BATCH, STRIDE),
            stray: 0,
        })
    }

    /// Sends what node `i` queued (handshakes, keepalives, the keepalive
    /// that confirms a new session).
    fn flush_control(&mut self, i: usize) {
        let sock = &self.sock;
        self.set.flush(i, |d, _| {
            let _ = sock.send(d);
        });
    }

    /// Receives everything waiting and hands it to the addressed node.
    /// `on_frame(frame)` sees each authenticated frame.
    fn receive(&mut self, mut on_frame: impl FnMut(&[u8])) -> usize {
        let mut total = 0;
        loop {
            let n = self.rx.recv(&self.sock).unwrap_or_default();
            if n == 0 {
                return total;
            }
            total += n;
            let now = Instant::now();
            for d in 0..n {
                let dg = self.rx.datagram_mut(d);
                if let Some(i) = self.set.receive(now, self.switch, dg, &mut on_frame) {
                    self.flush_control(i);
                }
            }
        }
    }

    /// Receives until nothing came for `quiet`: frames of an earlier run
    /// that were still queued somewhere are counted as strays, not in the
    /// next run.
    fn drain(&mut self, quiet: Duration) {
        let mut last = Instant::now();
        while last.elapsed() < quiet {
            let mut stray = 0;
            if self.receive(|_| stray += 1) > 0 {
                last = Instant::now();
            } else {
                std::thread::sleep(Duration::from_millis(1));
            }
            self.stray += stray;
        }
    }

    /// Connects every node, at most [`HANDSHAKES_IN_FLIGHT`] at a time.
    fn connect_all(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let mut next = 0;
        let mut up = vec![false; self.set.nodes.len()];
        let mut n_up = 0;
        let mut last_timers = Instant::now();
        while n_up < self.set.nodes.len() {
            stop::check()?;
            let now = Instant::now();
            if now >= deadline {
                return Err(format!(
                    "only {n_up} of {} nodes connected within {timeout:?}",
                    self.set.nodes.len()
                ));
            }
            while next < self.set.nodes.len() && next - n_up.min(next) < HANDSHAKES_IN_FLIGHT {
                self.set.nodes[next].handle_timeout(now);
                self.flush_control(next);
                next += 1;
            }
            let mut stray = 0;
            let got = self.receive(|_| stray += 1);
            self.stray += stray;
            // Check who came up; run retry timers now and then.
            let run_timers = now >= last_timers + Duration::from_millis(50);
            for (i, up) in up.iter_mut().enumerate().take(next) {
                if *up {
                    continue;
                }
                if self.set.nodes[i].link_state() == LinkState::Established {
                    *up = true;
                    n_up += 1;
                } else if run_timers && self.set.nodes[i].poll_timeout().is_some_and(|t| t <= now) {
                    self.set.nodes[i].handle_timeout(now);
                    self.flush_control(i);
                }
            }
            if run_timers {
                last_timers = now;
            }
            if got == 0 {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        Ok(())
    }

    /// Pushes frames built by `plan(seq, buf) -> (node, frame_len)` (the frame
    /// written at `buf[..frame_len]`) until `until` or until `total` frames
    /// were sent, keeping at most `window` in flight; waits up to 200 ms after
    /// for stragglers. Timed frames (MAGIC) are recorded in `hist`.
    fn pump(
        &mut self,
        mut plan: impl FnMut(u64, &mut [u8]) -> (usize, usize),
        until: Option<Instant>,
        total: Option<u64>,
        window: u64,
        base: Instant,
        hist: &mut Histogram,
    ) -> PumpStats {
        let mut st = PumpStats::default();
        let mut seq = 0u64;
        let mut written_off = 0u64;
        let mut last_progress = Instant::now();
        loop {
            let now = Instant::now();
            let done = until.is_some_and(|u| now >= u)
                || total.is_some_and(|t| seq >= t)
                || stop::requested();
            let in_flight = st.sent.saturating_sub(st.received + written_off);
            if done && (in_flight == 0 || now >= last_progress + Duration::from_millis(200)) {
                break;
            }
            if !done && in_flight < window {
                let room = ((window - in_flight) as usize).min(BATCH);
                let room = total.map_or(room, |t| room.min((t - seq) as usize));
                let now_ns = now.duration_since(base).as_nanos() as u64;
                let mut n = 0;
                for _ in 0..room {
                    let buf = self.tx.buf_mut(n);
                    let (node, len) = plan(seq, &mut buf[DATA_HEADER_LEN..STRIDE - DATA_OVERHEAD]);
                    seq += 1;
                    let frame = &mut buf[DATA_HEADER_LEN..DATA_HEADER_LEN + len];
                    if frame.len() >= 26 && frame[14..18] == MAGIC.to_be_bytes() {
                        frame[18..26].copy_from_slice(&now_ns.to_be_bytes());
                    }
                    // Frames fit one datagram here, sealed in place from offset 0.
                    if let Ok(Some(r)) = self.set.nodes[node].handle_tap_frame(now, buf, len) {
                        debug_assert_eq!(r.start, 0);
                        self.tx.set_len(n, r.end);
                        n += 1;
                    }
                }
                if n > 0 {
                    st.sent += self.tx.send(&self.sock, n).unwrap_or(0) as u64;
                }
            }
            let mut got = 0u64;
            let mut bad = 0u64;
            let r = self.receive(|f| {
                got += 1;
                if f.len() >= 26 && f[14..18] == MAGIC.to_be_bytes() {
                    let sent_ns = u64::from_be_bytes(f[18..26].try_into().expect("8 bytes"));
                    let now_ns = base.elapsed().as_nanos() as u64;
                    hist.record_ns(now_ns.saturating_sub(sent_ns));
                } else if f.len() < 14 {
                    bad += 1;
                }
            });
            st.received += got;
            st.bad += bad;
            if got > 0 {
                last_progress = Instant::now();
            } else if st.sent.saturating_sub(st.received + written_off) >= window
                && now >= last_progress + Duration::from_millis(20)
            {
                // Lost in the switch (full queue or socket): write them off
                // so the window reopens.
                written_off = st.sent.saturating_sub(st.received);
                st.stalls += 1;
                last_progress = now;
            }
            if r == 0 && (done || st.sent.saturating_sub(st.received + written_off) >= window) {
                std::thread::yield_now();
            }
        }
        st
    }
}

/// Writes an Ethernet frame of `len` bytes: dst, src, EtherType, MAGIC and
/// room for the send time.
fn ether(buf: &mut [u8], dst: [u8; 6], src: [u8; 6], len: usize, timed: bool) -> usize {
    buf[0..6].copy_from_slice(&dst);
    buf[6..12].copy_from_slice(&src);
    buf[12..14].copy_from_slice(&ETHERTYPE);
    let tag = if timed { MAGIC } else { 0 };
    buf[14..18].copy_from_slice(&tag.to_be_bytes());
    len
}

/// Pins every thread of `pid` (0 = this process' calling thread only) to `cpu`.
/// With one core for the switch and the other for the generator they do not
/// steal each other's caches or time slices.
fn pin(pid: u32, cpu: usize) {
    // SAFETY: cpu_set_t is a plain bit array; zeroed is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: cpu is below CPU_SETSIZE (checked by the caller via nproc).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    let tids: Vec<i32> = if pid == 0 {
        vec![0]
    } else {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    for tid in tids {
        // SAFETY: a valid cpu_set_t of the size given; an unknown tid only
        // makes the call fail.
        unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    }
}

/// The CPU the switch is pinned to (the last one), if pinning is on.
fn switch_cpu(args: &Args) -> Option<usize> {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    (args.pin && n >= 2).then_some(n - 1)
}

fn gen_keys(n: usize) -> Vec<StaticSecret> {
    let mut rng = rand::rng();
    (0..n).map(|_| StaticSecret::generate(&mut rng)).collect()
}

/// Makes the workers over `keys`. One switch: `threads` workers, each an
/// even share. Two switches: `2 x threads` workers of equal size, worker `w`
/// homed on switch `w % 2` and paired with worker `w ^ 1` on the other.
fn make_workers(
    ns: &Netns,
    switches: &[(&SwitchUnderTest, &StaticSecret)],
    keys: &[StaticSecret],
    threads: usize,
) -> Result<Vec<Worker>, String> {
    let cross = switches.len() > 1;
    let per = if cross {
        keys.len() / (switches.len() * threads)
    } else {
        keys.len().div_ceil(threads).next_multiple_of(2)
    };
    keys.chunks(per)
        .enumerate()
        .map(|(w, chunk)| {
            let (sw, key) = switches[w % switches.len()];
            let mut worker = Worker::new(ns, sw.addr, w * per, chunk, key)?;
            if cross {
                worker.pairing.partner_first = (w ^ 1) * per;
                worker.pairing.cross = true;
            }
            Ok(worker)
        })
        .collect()
}

fn connect(workers: &mut [Worker]) -> Result<Duration, String> {
    let t0 = Instant::now();
    let results: Vec<Result<(), String>> = std::thread::scope(|s| {
        let hs: Vec<_> = workers
            .iter_mut()
            .map(|w| s.spawn(move || w.connect_all(Duration::from_secs(120))))
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap_or(Err("worker panicked".into())))
            .collect()
    });
    results.into_iter().collect::<Result<Vec<()>, String>>()?;
    Ok(t0.elapsed())
}

/// Every node's MACs learned: first the sink nodes broadcast (so their MACs
/// are known everywhere), then each node sends one unicast frame per MAC to
/// its sink ([`Pairing::sink`]: node 0's first MAC, node 1's for node 0
/// itself; with two switches a node on the other switch, so that both learn
/// it). Unicast to a known MAC is forwarded to one node only; a broadcast
/// from each would make the switch send N^2 copies. Repeats until every
/// switch's table holds them all.
fn learn(
    workers: &mut [Worker],
    switches: &[&SwitchUnderTest],
    macs_per_node: usize,
    total_nodes: usize,
) -> Result<u64, String> {
    let mut hist = Histogram::new();
    let base = Instant::now();
    for w in workers.iter_mut() {
        for &local in w.pairing.own_sinks() {
            let k = w.first + local;
            w.pump(
                |_, buf| (local, ether(buf, [0xff; 6], mac(k, 0), 64, false)),
                None,
                Some(1),
                1,
                base,
                &mut hist,
            );
        }
    }
    let expected = (total_nodes * macs_per_node) as u64;
    let mut entries = 0;
    for _round in 0..4 {
        stop::check()?;
        std::thread::scope(|s| {
            for w in workers.iter_mut() {
                let first = w.first;
                let n = w.set.nodes.len();
                let pairing = w.pairing;
                s.spawn(move || {
                    let mut hist = Histogram::new();
                    w.pump(
                        |seq, buf| {
                            let local = (seq as usize) % n;
                            let j = (seq as usize) / n;
                            let k = first + local;
                            let sink = mac(pairing.sink(k), 0);
                            (local, ether(buf, sink, mac(k, j), 64, false))
                        },
                        None,
                        Some((n * macs_per_node) as u64),
                        256,
                        base,
                        &mut hist,
                    )
                });
            }
        });
        entries = u64::MAX;
        for sw in switches {
            entries = entries.min(sw.status()?["mac_table"]["entries"].as_u64().unwrap_or(0));
        }
        if entries >= expected {
            break;
        }
    }
    if entries < expected {
        return Err(format!(
            "a switch learned {entries} MACs, expected {expected}"
        ));
    }
    Ok(entries)
}

/// One timed run of `frame_len`-byte frames between pairs.
fn blast(
    workers: &mut [Worker],
    frame_len: usize,
    secs: f64,
    window: u64,
    switch_pids: &[u32],
    switch_cpu: Option<usize>,
) -> Value {
    std::thread::scope(|s| {
        for w in workers.iter_mut() {
            s.spawn(|| w.drain(STRAGGLERS));
        }
    });
    let base = Instant::now();
    let until = base + Duration::from_secs_f64(secs);
    let me = std::process::id();
    let mut pids = switch_pids.to_vec();
    pids.push(me);
    let sample = CpuSample::start(&pids);
    let results: Vec<(PumpStats, Histogram)> = std::thread::scope(|s| {
        let hs: Vec<_> = workers
            .iter_mut()
            .enumerate()
            .map(|(i, w)| {
                let n = w.set.nodes.len();
                let first = w.first;
                let pairing = w.pairing;
                s.spawn(move || {
                    if let Some(c) = switch_cpu {
                        pin(0, i % c.max(1));
                    }
                    let mut hist = Histogram::new();
                    let st = w.pump(
                        |seq, buf| {
                            let local = (seq as usize) % n;
                            (
                                local,
                                ether(
                                    buf,
                                    mac(pairing.peer(local), 0),
                                    mac(first + local, 0),
                                    frame_len,
                                    true,
                                ),
                            )
                        },
                        Some(until),
                        None,
                        window,
                        base,
                        &mut hist,
                    );
                    (st, hist)
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("worker panicked"))
            .collect()
    });
    let usage = sample.finish();
    let mut hist = Histogram::new();
    let mut st = PumpStats::default();
    for (s, h) in &results {
        hist.merge(h);
        st.sent += s.sent;
        st.received += s.received;
        st.bad += s.bad;
        st.stalls += s.stalls;
    }
    let wall = usage.wall_secs;
    let each: Vec<f64> = switch_pids.iter().map(|&p| usage.cores(p)).collect();
    let switch_cores: f64 = each.iter().sum();
    let gen_cores = usage.cores(me);
    let fps = st.received as f64 / wall;
    let us = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1e6);
    json!({
        "frame_bytes": frame_len,
        "seconds": wall,
        "sent": st.sent,
        "received_authenticated": st.received,
        "lost": st.sent.saturating_sub(st.received),
        "stalls": st.stalls,
        "frames_per_sec": fps,
        "gbit_per_sec_frames": fps * frame_len as f64 * 8.0 / 1e9,
        "switch_cpu_cores": switch_cores,
        "switch_cpu_cores_each": each,
        "frames_per_sec_per_switch_core": if switch_cores > 0.0 { fps / switch_cores } else { 0.0 },
        "generator_cpu_cores": gen_cores,
        "machine_busy_fraction": usage.machine_busy_frac,
        "latency_us": {
            "mean": us(hist.mean()),
            "p50": us(hist.percentile(50.0)),
            "p99": us(hist.percentile(99.0)),
            "max": hist.max().as_secs_f64() * 1e6,
        },
    })
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn rss_json(pid: u32) -> Value {
    match resident_memory(pid) {
        Some((rss, hwm)) => json!({"vm_rss_mib": mib(rss), "vm_hwm_mib": mib(hwm)}),
        None => Value::Null,
    }
}

/// The throughput phase with `n_switches` switches (1, or 2 peered with a
/// static `[cluster]`): nodes connect, the switches learn one MAC per node,
/// then one timed run per frame size.
fn throughput_phase(
    ns: &Netns,
    dir: &Path,
    args: &Args,
    n_switches: usize,
) -> Result<Value, String> {
    println!(
        "== throughput: {} nodes, {n_switches} switch(es), {} generator thread(s) per switch",
        args.nodes, args.threads
    );
    let switch_keys = gen_keys(n_switches);
    let keys = gen_keys(args.nodes);
    let switches: Vec<SwitchUnderTest> = if n_switches == 1 {
        let c = SwitchConfig {
            workers: args.switch_workers,
            ..SwitchConfig::new("tput", &switch_keys[0], &keys, 16)
        };
        vec![SwitchUnderTest::start(ns, dir, &c)?]
    } else {
        cluster::start_peered(ns, dir, &switch_keys, &keys, 16)?
    };
    if let Some(c) = switch_cpu(args) {
        for sw in &switches {
            pin(sw.pid(), c);
        }
        println!("   switch(es) pinned to CPU {c}, generator threads to CPUs 0..{c}");
    }
    let pairs: Vec<(&SwitchUnderTest, &StaticSecret)> = switches.iter().zip(&switch_keys).collect();
    let mut workers = make_workers(ns, &pairs, &keys, args.threads)?;
    let t = connect(&mut workers)?;
    println!(
        "   {} nodes connected in {:.2} s",
        args.nodes,
        t.as_secs_f64()
    );
    let refs: Vec<&SwitchUnderTest> = switches.iter().collect();
    let macs = learn(&mut workers, &refs, 1, args.nodes)?;
    println!("   every switch learned {macs} MACs");
    let mut connected = Vec::new();
    for sw in &switches {
        connected.push(
            sw.status()?["nodes"]
                .as_array()
                .map_or(0, |a| a.iter().filter(|n| n["connected"] == true).count()),
        );
    }
    let pids: Vec<u32> = switches.iter().map(SwitchUnderTest::pid).collect();
    // As many frames in flight in all as with one switch: two switches have
    // twice the sockets, each gets half the window.
    let window = (args.window / n_switches as u64).max(1);
    let one = |v: Vec<Value>| {
        if n_switches == 1 {
            v.into_iter().next().unwrap_or(Value::Null)
        } else {
            Value::Array(v)
        }
    };
    let mut runs = Vec::new();
    for frame in [64usize, 1400] {
        stop::check()?;
        let trunk_before = cluster::trunk_frames(&switches)?;
        let carried_before = carried(&switches)?;
        let mut r = blast(
            &mut workers,
            frame,
            args.secs,
            window,
            &pids,
            switch_cpu(args),
        );
        if n_switches > 1 {
            // Every frame crosses the trunk once (keepalives add a few).
            let (tx, rx) = cluster::trunk_frames(&switches)?;
            let crossed = tx - trunk_before.0;
            r["trunk_frames"] = json!(crossed);
            r["trunk_frames_lost"] = json!(crossed.saturating_sub(rx - trunk_before.1));
            r["trunk_frames_per_frame_sent"] =
                json!(crossed as f64 / r["sent"].as_f64().unwrap_or(1.0).max(1.0));
        }
        println!(
            "   {frame:>4}-byte frames: {:>9.0} frames/s end to end ({:.0} per switch core; switch(es) {:.0} % CPU, generator {:.0} % CPU), \
             latency p50 {:.0} µs p99 {:.0} µs, sent {} received {}",
            r["frames_per_sec"].as_f64().unwrap_or(0.0),
            r["frames_per_sec_per_switch_core"].as_f64().unwrap_or(0.0),
            100.0 * r["switch_cpu_cores"].as_f64().unwrap_or(0.0),
            100.0 * r["generator_cpu_cores"].as_f64().unwrap_or(0.0),
            r["latency_us"]["p50"].as_f64().unwrap_or(0.0),
            r["latency_us"]["p99"].as_f64().unwrap_or(0.0),
            r["sent"],
            r["received_authenticated"],
        );
        let (statuses, after) = workers_after(&switches)?;
        r["switch_workers_status"] = one(statuses);
        let unicast = after.0 - carried_before.0;
        let by_workers = after.1 - carried_before.1;
        r["frames_forwarded_by_workers"] = json!(by_workers);
        r["unicast_frames_switched_by_core"] = json!(unicast.saturating_sub(by_workers));
        println!(
            "          the switch's workers forwarded {by_workers} frames themselves, the core switched {} unicast frames",
            unicast.saturating_sub(by_workers)
        );
        if let Some(crossed) = r["trunk_frames"].as_u64() {
            println!(
                "          the trunks carried {crossed} frames, {:.3} per frame sent; {} of them \
                 did not arrive at the other switch",
                r["trunk_frames_per_frame_sent"].as_f64().unwrap_or(0.0),
                r["trunk_frames_lost"],
            );
        }
        runs.push(r);
    }
    let mut drops = Vec::new();
    let mut trunks = Vec::new();
    for sw in &switches {
        let status = sw.status()?;
        drops.push(status["drops"].clone());
        trunks.push(status["switches"].clone());
    }
    let rss = one(switches.iter().map(|sw| rss_json(sw.pid())).collect());
    let mut doc = json!({
        "switches": n_switches,
        "switch_workers": args.switch_workers,
        "nodes": args.nodes,
        "nodes_connected_per_switch": one(connected.into_iter().map(Value::from).collect()),
        "generator_threads": workers.len(),
        "switch_pinned_to_cpu": switch_cpu(args),
        "window_per_socket": window,
        "connect_seconds": t.as_secs_f64(),
        "runs": runs,
        "switch_drops": one(drops),
        "switch_memory_after": rss,
    });
    if n_switches > 1 {
        doc["trunks"] = Value::Array(trunks);
    }
    Ok(doc)
}

/// Unicast frames the switches forwarded, and how many of them their
/// workers forwarded themselves (the fast path), summed over `switches`.
fn carried(switches: &[SwitchUnderTest]) -> Result<(u64, u64), String> {
    Ok(workers_after(switches)?.1)
}

/// Each switch's `workers` status object (null with one worker), and
/// [`carried`].
fn workers_after(switches: &[SwitchUnderTest]) -> Result<(Vec<Value>, (u64, u64)), String> {
    let (mut statuses, mut unicast, mut by_workers) = (Vec::new(), 0, 0);
    for sw in switches {
        let s = sw.status()?;
        unicast += s["forwarded"]["unicast"].as_u64().unwrap_or(0);
        by_workers += s["workers"]["forwarded"].as_u64().unwrap_or(0);
        statuses.push(s["workers"].clone());
    }
    Ok((statuses, (unicast, by_workers)))
}

fn memory_phase(ns: &Netns, dir: &Path, args: &Args) -> Result<Value, String> {
    let m = args.mem_nodes;
    let k = args.macs_per_node;
    println!("== memory: {m} nodes, {k} MACs each");
    let switch_key = gen_keys(1).pop().expect("one key");
    let keys = gen_keys(m);
    let sw = SwitchUnderTest::start(ns, dir, &SwitchConfig::new("mem", &switch_key, &keys, k))?;
    let idle = resident_memory(sw.pid()).unwrap_or((0, 0)).0;
    let mut workers = make_workers(ns, &[(&sw, &switch_key)], &keys, 1)?;
    let t = connect(&mut workers)?;
    let connected = resident_memory(sw.pid()).unwrap_or((0, 0)).0;
    println!("   {m} nodes connected in {:.2} s", t.as_secs_f64());
    let entries = learn(&mut workers, &[&sw], k, m)?;
    let (rss, hwm) = resident_memory(sw.pid()).unwrap_or((0, 0));
    println!(
        "   switch VmRSS: {:.1} MiB with the config loaded, {:.1} MiB with {m} sessions, \
         {:.1} MiB with {entries} MACs (VmHWM {:.1} MiB)",
        mib(idle),
        mib(connected),
        mib(rss),
        mib(hwm)
    );
    Ok(json!({
        "nodes": m,
        "macs_per_node": k,
        "mac_table_entries": entries,
        "connect_seconds": t.as_secs_f64(),
        "vm_rss_mib_config_loaded": mib(idle),
        "vm_rss_mib_sessions_up": mib(connected),
        "vm_rss_mib_with_macs": mib(rss),
        "vm_hwm_mib": mib(hwm),
        "vm_rss_mb_with_macs": rss as f64 / 1e6,
    }))
}

fn run(args: &Args) -> Result<Value, String> {
    let prefix = integration::netns::unique_prefix();
    let ns = Netns::new(&format!("{prefix}-lg"));
    let dir = std::env::temp_dir().join(&prefix);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let _dir_guard = DirGuard(dir.clone());
    println!("namespace {}; files in {}", ns.name(), dir.display());
    let tput = throughput_phase(&ns, &dir, args, 1)?;
    let two = if args.switches == 2 {
        let mut two = throughput_phase(&ns, &dir, args, 2)?;
        two["vs_one_switch"] = cluster::compare(&tput, &two);
        for c in two["vs_one_switch"].as_array().into_iter().flatten() {
            println!(
                "   two switches vs one, {:>4}-byte frames: {:.2}x frames/s end to end, {:.2}x per switch core",
                c["frame_bytes"],
                c["frames_per_sec_ratio"].as_f64().unwrap_or(0.0),
                c["frames_per_sec_per_switch_core_ratio"]
                    .as_f64()
                    .unwrap_or(0.0),
            );
        }
        two
    } else {
        Value::Null
    };
    let mem = if args.mem_nodes > 0 {
        memory_phase(&ns, &dir, args)?
    } else {
        Value::Null
    };
    let churn = if !args.mac_churn.is_empty() {
        mac_churn::phase(&ns, &dir, args)?
    } else {
        Value::Null
    };
    Ok(json!({ "throughput": tput, "two_switches": two, "memory": mem, "mac_churn": churn }))
}

/// Removes the temporary directory on drop (unless `TAPMESH_KEEP_DIR`).
#[derive(Debug)]
struct DirGuard(PathBuf);

impl Drop for DirGuard {
    fn drop(&mut self) {
        if std::env::var_os("TAPMESH_KEEP_DIR").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn targets(doc: &Value) -> Vec<Value> {
    let run = |bytes: u64| {
        doc["throughput"]["runs"]
            .as_array()
            .and_then(|a| a.iter().find(|r| r["frame_bytes"] == bytes))
            .and_then(|r| r["frames_per_sec_per_switch_core"].as_f64())
    };
    let mut out = Vec::new();
    for (bytes, want) in [(1400u64, 400_000.0), (64, 1_000_000.0)] {
        let got = run(bytes);
        out.push(json!({
            "target": format!("switch-only, {bytes}-byte frames: >= {want} frames/s per switch core"),
            "measured": got,
            "met": got.map(|g| g >= want),
        }));
    }
    let rss = doc["memory"]["vm_rss_mb_with_macs"].as_f64();
    let full = doc["memory"]["nodes"].as_u64() == Some(10_000)
        && doc["memory"]["mac_table_entries"].as_u64() >= Some(100_000);
    out.push(json!({
        "target": "switch resident memory <= 100 MB with 10,000 nodes and 100,000 MACs",
        "measured_mb": rss,
        "met": if full { json!(rss.map(|r| r <= 100.0)) } else { Value::Null },
        "note": if full { Value::Null } else { json!("not measured at full size in this run") },
    }));
    out
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("tapmesh-loadgen: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut tools = vec![integration::tools::IP];
    if !args.mac_churn.is_empty() {
        // The churn phase runs a real etcd and checks its health.
        tools.extend([integration::tools::ETCD, integration::tools::ETCDCTL]);
    }
    integration::tools::preflight("tapmesh-loadgen", &tools);
    if let Err(e) = integration::bins::build_if_run_by_cargo(&["tapmesh-switch"]) {
        eprintln!("tapmesh-loadgen: {e}");
        return ExitCode::from(1);
    }
    stop::install_handlers();
    let doc = match run(&args) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("tapmesh-loadgen: {e}");
            return ExitCode::from(if stop::requested() { 130 } else { 1 });
        }
    };
    let targets = targets(&doc);
    println!("\nissue #18 targets (this run):");
    for t in &targets {
        let met = match t["met"].as_bool() {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "n/a",
        };
        let fig = t["measured"].as_f64().or(t["measured_mb"].as_f64());
        println!(
            "  {:<72} {:>12}  {met}",
            t["target"].as_str().unwrap_or(""),
            fig.map_or("-".into(), |f| format!("{f:.1}"))
        );
    }
    let out = json!({
        "tool": "tapmesh-loadgen",
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "nproc": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "results": doc,
        "targets": targets,
    });
    integration::bench::write_json("tapmesh-loadgen", &args.json, &out);
    if let Some(e) = nothing_measured(&doc) {
        eprintln!("tapmesh-loadgen: {e}");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

/// Why the run measured nothing, if it did not: a throughput phase in which
/// some run got no frame back, or a MAC churn run of new MACs that wrote no
/// key to etcd (moves should write none).
fn nothing_measured(doc: &Value) -> Option<String> {
    let moved = |phase: &Value| {
        phase["runs"].as_array().is_some_and(|a| {
            !a.is_empty()
                && a.iter()
                    .all(|r| r["received_authenticated"].as_u64() > Some(0))
        })
    };
    if !moved(&doc["throughput"]) {
        return Some("no frames came back through the switch".into());
    }
    if !doc["two_switches"].is_null() && !moved(&doc["two_switches"]) {
        return Some("no frames came back through the two switches".into());
    }
    let churn = doc["mac_churn"]["runs"].as_array().into_iter().flatten();
    for r in churn.filter(|r| r["kind"] == "new_macs") {
        if r["switch_keys_written_per_sec"].as_f64() <= Some(0.0) {
            return Some(format!("{}: the switch wrote nothing to etcd", r["run"]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_that_moved_nothing_is_named() {
        let run = |received: u64| json!({"runs": [{"received_authenticated": received}]});
        let churn = |kind: &str, keys: f64| json!({"runs": [{"run": "r", "kind": kind, "switch_keys_written_per_sec": keys}]});
        let doc =
            |one, two, churn| json!({"throughput": one, "two_switches": two, "mac_churn": churn});
        assert_eq!(
            nothing_measured(&doc(run(5), Value::Null, Value::Null)),
            None
        );
        assert_eq!(
            nothing_measured(&doc(run(5), run(3), churn("new_macs", 300.0))),
            None
        );
        assert!(nothing_measured(&doc(run(0), Value::Null, Value::Null)).is_some());
        assert!(nothing_measured(&doc(json!({"runs": []}), Value::Null, Value::Null)).is_some());
        assert!(
            nothing_measured(&doc(run(5), run(0), Value::Null))
                .is_some_and(|e| e.contains("two switches"))
        );
        assert!(
            nothing_measured(&doc(run(5), Value::Null, churn("new_macs", 0.0)))
                .is_some_and(|e| e.contains("etcd"))
        );
        // A moves run should write nothing.
        assert_eq!(
            nothing_measured(&doc(run(5), Value::Null, churn("moves", 0.0))),
            None
        );
    }

    #[test]
    fn one_switch_pairs_neighbours_and_learns_through_node_0() {
        let p = Pairing {
            first: 4,
            n: 4,
            partner_first: 4,
            cross: false,
        };
        let peers: Vec<usize> = (0..4).map(|i| p.peer(i)).collect();
        assert_eq!(peers, [5, 4, 7, 6]);
        assert_eq!(p.sink(5), 0);
        assert_eq!(p.own_sinks(), &[] as &[usize]);
        let p0 = Pairing { first: 0, ..p };
        assert_eq!(p0.sink(0), 1);
        assert_eq!(p0.own_sinks(), &[0, 1]);
        // An odd last worker: its last node is paired with itself.
        let odd = Pairing { n: 3, ..p };
        assert_eq!(odd.peer(2), 6);
    }

    #[test]
    fn two_switches_pair_each_node_with_one_behind_the_other_switch() {
        // Worker 0 (switch 0) and worker 1 (switch 1), 3 nodes each.
        let w0 = Pairing {
            first: 0,
            n: 3,
            partner_first: 3,
            cross: true,
        };
        let w1 = Pairing {
            first: 3,
            n: 3,
            partner_first: 0,
            cross: true,
        };
        for i in 0..3 {
            assert_eq!(w0.peer(i), 3 + i);
            assert_eq!(w1.peer(i), i, "the pair answers back");
        }
        assert_eq!(w0.sink(1), 3, "learned through the other switch");
        assert_eq!(w1.sink(4), 0);
        assert_eq!(w0.own_sinks(), &[0]);
    }
}
