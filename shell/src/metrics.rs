//! The Prometheus exporter both daemons share: `GET /metrics` and
//! `GET /healthz` on the address given as `metrics-listen`.
//!
//! Why it looks like this: the cores keep their counters as plain integers and
//! must not pay for metrics per frame, so nothing here touches the data path.
//! The HTTP server runs on its own std thread. On each scrape it asks the task
//! that owns the core for a snapshot (the same `Status` that `status --json`
//! prints) through a channel, the owner answers from its `select!` loop with
//! one `status()` call, and this thread turns the snapshot into metric
//! families ([`Export`]) and encodes them with the `prometheus` crate, next
//! to the process metrics (CPU, memory, fds). So a scrape costs the data path
//! one snapshot, and no scrape costs nothing.
//!
//! The server answers up to [`MAX_CLIENTS`] connections at once, each on its
//! own thread and each within an overall deadline ([`REQUEST_DEADLINE`] to
//! send the request, as long again to take the answer), closes every
//! connection after one response, and is meant for a local or management
//! address (the example configs bind it to 127.0.0.1). So a client that
//! trickles its request a byte at a time holds one slot for at most the
//! deadline and never delays the others (Prometheus, a `/healthz` probe);
//! it takes [`MAX_CLIENTS`] such clients to make the next one wait, and no
//! longer than the deadline. It exposes no keys, MACs or IPs: labels are
//! node names, reasons, kinds, directions.
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::sync::mpsc;

/// How long a scrape waits for the owning task's snapshot.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a client gets to send its whole request (request line and
/// headers), however it paces the bytes; and again to take the response.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(2);
/// Connections served at once; more wait in the listen backlog until one
/// ends (within the deadlines).
pub const MAX_CLIENTS: usize = 4;
/// The most request bytes read (request line and headers).
const MAX_REQUEST: usize = 8192;

/// What kind of metric a [`Def`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (names end in `_total`).
    Counter,
    /// Goes up and down.
    Gauge,
    /// A count and a sum of observations (no quantiles).
    Summary,
}

/// One exported metric: its name, help text, kind and label names. Daemons
/// list theirs in [`Export::METRICS`]; the names are the stable interface.
#[derive(Debug)]
pub struct Def {
    /// Full name, e.g. `tapmesh_switch_drops_total`.
    pub name: &'static str,
    /// One line for `# HELP`.
    pub help: &'static str,
    /// Counter, gauge or summary.
    pub kind: Kind,
    /// Label names, in the order values are given to [`Exposition`].
    pub labels: &'static [&'static str],
}

impl Def {
    /// A counter (its name ends in `_total`).
    pub const fn counter(
        name: &'static str,
        labels: &'static [&'static str],
        help: &'static str,
    ) -> Def {
        Def {
            name,
            help,
            kind: Kind::Counter,
            labels,
        }
    }

    /// A gauge.
    pub const fn gauge(
        name: &'static str,
        labels: &'static [&'static str],
        help: &'static str,
    ) -> Def {
        Def {
            name,
            help,
            kind: Kind::Gauge,
            labels,
        }
    }

    /// A summary without quantiles (`_count` and `_sum`).
    pub const fn summary(
        name: &'static str,
        labels: &'static [&'static str],
        help: &'static str,
    ) -> Def {
        Def {
            name,
            help,
            kind: Kind::Summary,
            labels,
        }
    }
}

/// A snapshot type the exporter can turn into metrics.
pub trait Export: Send + 'static {
    /// Every metric [`Export::export`] may emit (the collector's
    /// descriptions; one missing here is still exported).
    const METRICS: &'static [Def];
    /// Add this snapshot's samples to `out`.
    fn export(&self, out: &mut Exposition);
}

/// The metric families of one scrape, filled by [`Export::export`].
#[derive(Debug)]
pub struct Exposition {
    families: Vec<MetricFamily>,
}

impl Exposition {
    fn new(defs: &'static [Def]) -> Exposition {
        let families = defs.iter().map(Exposition::empty_family).collect();
        Exposition { families }
    }

    fn empty_family(d: &Def) -> MetricFamily {
        let mut f = MetricFamily::default();
        f.set_name(d.name.to_owned());
        f.set_help(d.help.to_owned());
        f.set_field_type(match d.kind {
            Kind::Counter => MetricType::COUNTER,
            Kind::Gauge => MetricType::GAUGE,
            Kind::Summary => MetricType::SUMMARY,
        });
        f
    }

    fn family(
        &mut self,
        def: &Def,
        kind: Kind,
        labels: &[&str],
    ) -> (&mut MetricFamily, proto::Metric) {
        assert_eq!(def.kind, kind, "{} is not a {kind:?}", def.name);
        assert_eq!(
            def.labels.len(),
            labels.len(),
            "{} takes labels {:?}",
            def.name,
            def.labels
        );
        let pairs = def
            .labels
            .iter()
            .zip(labels)
            .map(|(n, v)| {
                let mut p = proto::LabelPair::default();
                p.set_name((*n).to_owned());
                p.set_value((*v).to_owned());
                p
            })
            .collect();
        // A family missing from `Export::METRICS` is exported all the same:
        // a scrape never fails over it.
        let i = match self.families.iter().position(|f| f.name() == def.name) {
            Some(i) => i,
            None => {
                self.families.push(Exposition::empty_family(def));
                self.families.len() - 1
            }
        };
        (&mut self.families[i], proto::Metric::from_label(pairs))
    }

    /// One counter sample.
    pub fn counter(&mut self, def: &Def, labels: &[&str], value: u64) {
        let (f, mut m) = self.family(def, Kind::Counter, labels);
        let mut c = proto::Counter::default();
        c.set_value(value as f64);
        m.set_counter(c);
        f.mut_metric().push(m);
    }

    /// One gauge sample.
    pub fn gauge(&mut self, def: &Def, labels: &[&str], value: f64) {
        let (f, mut m) = self.family(def, Kind::Gauge, labels);
        let mut g = proto::Gauge::default();
        g.set_value(value);
        m.set_gauge(g);
        f.mut_metric().push(m);
    }

    /// One summary sample: how many observations and their sum.
    pub fn summary(&mut self, def: &Def, labels: &[&str], count: u64, sum: f64) {
        let (f, mut m) = self.family(def, Kind::Summary, labels);
        let mut s = proto::Summary::default();
        s.set_sample_count(count);
        s.set_sample_sum(sum);
        m.set_summary(s);
        f.mut_metric().push(m);
    }
}

/// A scrape's request for a fresh snapshot; the owning task answers it.
#[derive(Debug)]
pub struct SnapshotRequest<S> {
    reply: std::sync::mpsc::SyncSender<S>,
}

impl<S> SnapshotRequest<S> {
    /// Hand the snapshot to the waiting scrape.
    pub fn answer(self, snapshot: S) {
        let _ = self.reply.send(snapshot);
    }
}

/// The owning task's end: yields a [`SnapshotRequest`] per scrape.
/// Dropping it stops the server and frees its address (a reload that moves
/// `metrics-listen` starts a new one).
#[derive(Debug)]
pub struct Exporter<S> {
    requests: Option<mpsc::Receiver<SnapshotRequest<S>>>,
    /// The bound address, the server's stop flag and its thread, if serving.
    serving: Option<(SocketAddr, Arc<AtomicBool>, std::thread::JoinHandle<()>)>,
}

impl<S> Drop for Exporter<S> {
    /// Stops the server and waits until its listener is closed, so the
    /// address can be bound again at once (within a client's deadline if
    /// every client slot is taken).
    fn drop(&mut self) {
        if let Some((addr, stop, thread)) = self.serving.take() {
            stop.store(true, Ordering::Relaxed);
            // Wake the blocking accept; the server sees the flag and returns.
            let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
            let _ = thread.join();
        }
    }
}

impl<S: Export> Exporter<S> {
    /// Bind `listen` (if given) and start serving on a new thread named after
    /// `program`. With `None` the exporter is off and [`Exporter::request`]
    /// never completes.
    pub fn start(listen: Option<SocketAddr>, program: &str) -> std::io::Result<Exporter<S>> {
        let Some(addr) = listen else {
            return Ok(Exporter::off());
        };
        let listener = TcpListener::bind(addr)
            .map_err(|e| std::io::Error::new(e.kind(), format!("metrics-listen {addr}: {e}")))?;
        let bound = listener.local_addr()?;
        let (tx, rx) = mpsc::channel(4);
        let server = Server::<S>::new(tx, program)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("{program}-metrics"))
            .spawn(move || server.run(listener, &flag))?;
        tracing::info!(%addr, "serving Prometheus metrics on /metrics");
        Ok(Exporter {
            requests: Some(rx),
            serving: Some((bound, stop, thread)),
        })
    }

    /// Serve at `to` instead of `from` (a reload moved `metrics-listen`).
    /// The old server stops first (the addresses may overlap); if `to`
    /// cannot be bound, it serves at `from` again (if that still binds) and
    /// the bind error is returned.
    pub fn move_to(
        &mut self,
        from: Option<SocketAddr>,
        to: Option<SocketAddr>,
        program: &str,
    ) -> std::io::Result<()> {
        *self = Exporter::off();
        match Exporter::start(to, program) {
            Ok(e) => {
                *self = e;
                Ok(())
            }
            Err(e) => {
                *self = Exporter::start(from, program).unwrap_or_else(|_| Exporter::off());
                Err(e)
            }
        }
    }

    /// An exporter that serves nothing ([`Exporter::request`] never completes).
    pub fn off() -> Exporter<S> {
        Exporter {
            requests: None,
            serving: None,
        }
    }

    /// The next scrape's request for a snapshot. Cancel-safe: use it as a
    /// `select!` branch.
    pub async fn request(&mut self) -> SnapshotRequest<S> {
        match &mut self.requests {
            Some(rx) => match rx.recv().await {
                Some(r) => r,
                None => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    }
}

/// The latest snapshot, shared between the HTTP thread and the collector.
struct Latest<S>(Arc<Mutex<Option<S>>>);

struct SnapshotCollector<S> {
    descs: Vec<Desc>,
    latest: Latest<S>,
}

impl<S: Export> Collector for SnapshotCollector<S> {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut out = Exposition::new(S::METRICS);
        if let Some(s) = self
            .latest
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            s.export(&mut out);
        }
        out.families
    }
}

struct Server<S> {
    to_owner: mpsc::Sender<SnapshotRequest<S>>,
    registry: Registry,
    latest: Arc<Mutex<Option<S>>>,
}

impl<S: Export> Server<S> {
    fn new(to_owner: mpsc::Sender<SnapshotRequest<S>>, program: &str) -> std::io::Result<Self> {
        let registry = Registry::new();
        let latest = Arc::new(Mutex::new(None));
        let descs = S::METRICS
            .iter()
            .map(|d| {
                Desc::new(
                    d.name.to_owned(),
                    d.help.to_owned(),
                    d.labels.iter().map(|l| (*l).to_owned()).collect(),
                    Default::default(),
                )
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(std::io::Error::other)?;
        let collector = SnapshotCollector {
            descs,
            latest: Latest(latest.clone()),
        };
        registry
            .register(Box::new(collector))
            .map_err(std::io::Error::other)?;
        let info = prometheus::IntGaugeVec::new(
            prometheus::Opts::new(
                "tapmesh_build_info",
                "The running program and its version (always 1).",
            ),
            &["program", "version"],
        )
        .map_err(std::io::Error::other)?;
        info.with_label_values(&[program, env!("CARGO_PKG_VERSION")])
            .set(1);
        registry
            .register(Box::new(info))
            .map_err(std::io::Error::other)?;
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .map_err(std::io::Error::other)?;
        Ok(Server {
            to_owner,
            registry,
            latest,
        })
    }

    /// Accept connections and serve each on its own thread, at most
    /// [`MAX_CLIENTS`] at once (a slot is a token in `slots`).
    /// Returns when `stop` is set (the [`Exporter`] was dropped).
    fn run(self, listener: TcpListener, stop: &AtomicBool) {
        let server = Arc::new(self);
        let (give_back, slots) = std::sync::mpsc::sync_channel(MAX_CLIENTS);
        for _ in 0..MAX_CLIENTS {
            let _ = give_back.send(());
        }
        for stream in listener.incoming() {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let Ok(stream) = stream else { continue };
            // Wait for a free slot (a client thread ends within the deadlines).
            if slots.recv().is_err() {
                return;
            }
            let (server, slot) = (server.clone(), give_back.clone());
            let spawned = std::thread::Builder::new()
                .name("metrics-client".into())
                .spawn(move || {
                    if let Err(e) = server.handle(stream) {
                        tracing::debug!(error = %e, "metrics connection failed");
                    }
                    let _ = slot.send(());
                });
            if spawned.is_err() {
                let _ = give_back.send(());
            }
        }
    }

    /// Ask the owning task for a snapshot and keep it for the collector.
    fn refresh(&self) -> bool {
        let (reply, rx) = std::sync::mpsc::sync_channel(1);
        if self
            .to_owner
            .blocking_send(SnapshotRequest { reply })
            .is_err()
        {
            return false;
        }
        match rx.recv_timeout(SNAPSHOT_TIMEOUT) {
            Ok(s) => {
                *self.latest.lock().unwrap_or_else(|e| e.into_inner()) = Some(s);
                true
            }
            Err(_) => false,
        }
    }

    fn handle(&self, mut stream: TcpStream) -> std::io::Result<()> {
        let head = read_head(&mut stream, Instant::now() + REQUEST_DEADLINE)?;
        let (status, content_type, body) = match parse_request_line(&head) {
            Some(("GET", "/metrics")) => {
                if self.refresh() {
                    let mut body = Vec::with_capacity(16 * 1024);
                    let encoder = TextEncoder::new();
                    encoder
                        .encode(&self.registry.gather(), &mut body)
                        .map_err(std::io::Error::other)?;
                    ("200 OK", "text/plain; version=0.0.4; charset=utf-8", body)
                } else {
                    (
                        "503 Service Unavailable",
                        "text/plain; charset=utf-8",
                        b"the daemon's main task did not answer\n".to_vec(),
                    )
                }
            }
            // Healthy means the task that owns the core answers.
            Some(("GET", "/healthz")) => {
                if self.refresh() {
                    ("200 OK", "text/plain; charset=utf-8", b"ok\n".to_vec())
                } else {
                    (
                        "503 Service Unavailable",
                        "text/plain; charset=utf-8",
                        b"the daemon's main task did not answer\n".to_vec(),
                    )
                }
            }
            Some(("GET", _)) => (
                "404 Not Found",
                "text/plain; charset=utf-8",
                b"try /metrics or /healthz\n".to_vec(),
            ),
            Some(_) => (
                "405 Method Not Allowed",
                "text/plain; charset=utf-8",
                b"only GET\n".to_vec(),
            ),
            None => (
                "400 Bad Request",
                "text/plain; charset=utf-8",
                b"bad request\n".to_vec(),
            ),
        };
        let header = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let deadline = Instant::now() + REQUEST_DEADLINE;
        for mut part in [header.as_bytes(), &body[..]] {
            while !part.is_empty() {
                stream.set_write_timeout(Some(left(deadline)?))?;
                match stream.write(part) {
                    Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                    Ok(n) => part = &part[n..],
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }
}

/// The time left until `deadline`, or `TimedOut` once it has passed.
fn left(deadline: Instant) -> std::io::Result<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| std::io::ErrorKind::TimedOut.into())
}

/// Read until the end of the headers (or [`MAX_REQUEST`] bytes), all of it
/// by `deadline`: each read may wait only for the time left.
fn read_head(stream: &mut TcpStream, deadline: Instant) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while head.len() < MAX_REQUEST && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        stream.set_read_timeout(Some(left(deadline)?))?;
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    Ok(head)
}

/// `GET /metrics?x=1 HTTP/1.1` → `("GET", "/metrics")` (the query is ignored).
fn parse_request_line(head: &[u8]) -> Option<(&str, &str)> {
    let line = head.split(|&b| b == b'\r' || b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    let method = parts.next()?;
    let target = parts.next()?;
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") || parts.next().is_some() {
        return None;
    }
    let path = target.split('?').next()?;
    Some((method, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Snap(u64);

    const FRAMES: Def = Def::counter(
        "tapmesh_test_frames_total",
        &["node", "direction"],
        "Frames.",
    );
    const UP: Def = Def::gauge("tapmesh_test_up", &[], "Up.");

    impl Export for Snap {
        const METRICS: &'static [Def] = &[FRAMES, UP];
        fn export(&self, out: &mut Exposition) {
            out.counter(&FRAMES, &["h1", "rx"], self.0);
            out.counter(&FRAMES, &["h1", "tx"], self.0 * 2);
            out.gauge(&UP, &[], 1.0);
        }
    }

    /// What [`Snap`] exports, and a family its list forgot.
    struct Unlisted;

    const FORGOTTEN: Def = Def::counter("tapmesh_test_forgotten_total", &["result"], "Forgotten.");

    impl Export for Unlisted {
        const METRICS: &'static [Def] = &[FRAMES, UP];
        fn export(&self, out: &mut Exposition) {
            Snap(3).export(out);
            out.counter(&FORGOTTEN, &["ok"], 7);
        }
    }

    #[test]
    fn a_family_missing_from_the_list_is_exported_not_panicked_on() {
        let mut out = Exposition::new(Unlisted::METRICS);
        Unlisted.export(&mut out);
        let mut text = Vec::new();
        TextEncoder::new().encode(&out.families, &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.contains("# TYPE tapmesh_test_forgotten_total counter"),
            "{text}"
        );
        assert!(
            text.contains("tapmesh_test_forgotten_total{result=\"ok\"} 7"),
            "{text}"
        );
        assert!(
            text.contains("tapmesh_test_frames_total{node=\"h1\",direction=\"tx\"} 6"),
            "{text}"
        );
    }

    #[test]
    fn request_lines() {
        assert_eq!(
            parse_request_line(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some(("GET", "/metrics"))
        );
        assert_eq!(
            parse_request_line(b"GET /healthz?x=1 HTTP/1.0\r\n\r\n"),
            Some(("GET", "/healthz"))
        );
        assert_eq!(parse_request_line(b"garbage\r\n\r\n"), None);
        assert_eq!(parse_request_line(b""), None);
    }

    #[test]
    fn a_dropped_exporter_frees_its_address_and_move_to_falls_back() {
        // A free port: bind, note it, let go.
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut e = Exporter::<Snap>::start(Some(addr), "test").unwrap();
        assert!(TcpListener::bind(addr).is_err(), "not serving");
        // Moving to an address that is taken keeps serving at the old one.
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let busy = taken.local_addr().unwrap();
        assert!(e.move_to(Some(addr), Some(busy), "test").is_err());
        assert!(e.serving.as_ref().is_some_and(|(a, _, _)| *a == addr));
        drop(e);
        assert!(
            TcpListener::bind(addr).is_ok(),
            "{addr} still bound after the exporter was dropped"
        );
    }

    #[test]
    fn serves_snapshots_from_the_owner() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let (tx, mut rx) = mpsc::channel(4);
            let server = Server::<Snap>::new(tx, "test").unwrap();
            std::thread::spawn(move || server.run(listener, &AtomicBool::new(false)));
            let get = |path: &'static str| {
                tokio::task::spawn_blocking(move || {
                    let mut s = TcpStream::connect(addr).unwrap();
                    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
                    let mut out = String::new();
                    s.read_to_string(&mut out).unwrap();
                    out
                })
            };
            let scrape = get("/metrics");
            let req: SnapshotRequest<Snap> = rx.recv().await.unwrap();
            req.answer(Snap(7));
            let text = scrape.await.unwrap();
            assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
            assert!(
                text.contains("tapmesh_test_frames_total{node=\"h1\",direction=\"rx\"} 7\n"),
                "{text}"
            );
            assert!(
                text.contains("tapmesh_test_frames_total{node=\"h1\",direction=\"tx\"} 14\n"),
                "{text}"
            );
            assert!(text.contains("# TYPE tapmesh_test_up gauge\n"), "{text}");
            assert!(
                text.contains("tapmesh_build_info{program=\"test\""),
                "{text}"
            );
            assert!(text.contains("process_resident_memory_bytes"), "{text}");
            let missing = get("/nope").await.unwrap();
            assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        });
    }

    /// A client that sends a never-ending header one byte every 200 ms, for
    /// up to `for_at_most`; returns how long until the server cut it off.
    fn trickle(addr: SocketAddr, for_at_most: Duration) -> Option<Duration> {
        let t0 = Instant::now();
        let mut s = TcpStream::connect(addr).unwrap();
        let request = b"GET /healthz HTTP/1.1\r\nX-Slow: ";
        for &b in request.iter().chain(std::iter::repeat(&b'a')) {
            if t0.elapsed() > for_at_most {
                return None;
            }
            if s.write_all(&[b]).is_err() {
                return Some(t0.elapsed());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        unreachable!()
    }

    #[test]
    fn a_trickling_client_neither_holds_healthz_hostage_nor_lasts() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let (tx, mut rx) = mpsc::channel(4);
            let server = Server::<Snap>::new(tx, "test").unwrap();
            std::thread::spawn(move || server.run(listener, &AtomicBool::new(false)));
            // The owner answers every snapshot request.
            tokio::spawn(async move {
                while let Some(r) = rx.recv().await {
                    r.answer(Snap(1));
                }
            });
            let trickler = Duration::from_secs(12);
            let slow = tokio::task::spawn_blocking(move || trickle(addr, trickler));
            // Let the trickler be the connection the server is busy with.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let t0 = Instant::now();
            let health = tokio::task::spawn_blocking(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                write!(s, "GET /healthz HTTP/1.1\r\n\r\n").unwrap();
                let mut out = String::new();
                let _ = s.read_to_string(&mut out);
                out
            })
            .await
            .unwrap();
            let waited = t0.elapsed();
            assert!(health.starts_with("HTTP/1.1 200 OK\r\n"), "{health}");
            // Without the fix it waits for the trickler (12 s); the bound is
            // the request deadline, which holds however busy the machine.
            assert!(
                waited < REQUEST_DEADLINE,
                "/healthz took {waited:?} behind a trickling client"
            );
            // And the trickler is cut off at its deadline, not served forever.
            let cut = slow.await.unwrap();
            assert!(
                cut.is_some_and(|c| c < REQUEST_DEADLINE + Duration::from_secs(3)),
                "the trickling client was not cut off: {cut:?}"
            );
        });
    }
}
