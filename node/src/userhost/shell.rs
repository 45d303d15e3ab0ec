//! The tokio side of a userspace host: one task owns the [`UserHost`],
//! takes frames from the node's `to_host` channel ([`HostPort`]) and sends
//! what it emits into a channel the node gives it; each forwarded
//! connection gets a task that owns its local `TcpStream`.
//!
//! Bounded everywhere: frames wait in channels of [`FRAME_QUEUE`]; towards
//! the local side at most [`WRITES_IN_FLIGHT`] chunks of [`CHUNK`] bytes per
//! connection are queued (beyond that the client's bytes stay in smoltcp's
//! receive buffer and its window closes); from the local side a chunk is
//! read only when the smoltcp send buffer has room for it.
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::host::{ConnId, FRAME_QUEUE, HostEvent, HostStatus, Recv, UserHost};

/// Bytes moved per read or write between a local stream and the host.
pub const CHUNK: usize = 16 * 1024;
/// Chunks queued towards one local stream.
pub const WRITES_IN_FLIGHT: usize = 2;
/// How long opening the local side may take (below the core's
/// `ACCEPT_TIMEOUT`, so the shell answers first).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Messages from connection tasks waiting for the host task.
const MESSAGES: usize = 256;
/// Frames taken from the node per wakeup before timers and connections get
/// a turn.
const FRAME_BATCH: usize = 64;
/// How often the status snapshot is refreshed.
const STATUS_EVERY: Duration = Duration::from_millis(250);

/// The node's end of a running host: frames to it, its status.
#[derive(Debug)]
pub struct HostPort {
    /// Frames for the host (`try_send`: a full queue is a dropped frame).
    pub to_host: mpsc::Sender<Vec<u8>>,
    /// The latest status, refreshed a few times a second.
    pub status: watch::Receiver<HostStatus>,
    /// The host task; it ends when `to_host` is dropped.
    pub task: JoinHandle<()>,
}

/// Start a task running `host`; each frame it sends goes into `out` as
/// `wrap(frame)` (so the node can tag it with the host's port). Must be
/// called inside a tokio runtime.
pub fn spawn<T: Send + 'static>(
    host: UserHost,
    out: mpsc::Sender<T>,
    wrap: impl Fn(Vec<u8>) -> T + Send + 'static,
) -> HostPort {
    let (to_host, frames_in) = mpsc::channel(FRAME_QUEUE);
    let (status_tx, status) = watch::channel(host.status());
    let task = tokio::spawn(run(host, frames_in, out, wrap, status_tx));
    HostPort {
        to_host,
        status,
        task,
    }
}

/// Commands to a connection task's writer.
#[derive(Debug)]
enum Cmd {
    Write(Vec<u8>),
    /// The client sent FIN: shut down the write half.
    Shutdown,
}

/// Messages from connection tasks.
#[derive(Debug)]
enum Msg {
    Connected(ConnId, bool),
    Data(ConnId, Vec<u8>),
    Eof(ConnId),
    Failed(ConnId),
    Wrote,
}

#[derive(Debug)]
struct LocalConn {
    cmds: mpsc::Sender<Cmd>,
    /// One permit to read one chunk.
    credit: mpsc::Sender<()>,
    task: JoinHandle<()>,
    connected: bool,
    /// A read was allowed and its result has not come back.
    reading: bool,
    local_eof: bool,
    /// The client's FIN was passed on.
    shutdown_sent: bool,
}

/// The host task: runs until the node drops its `to_host` sender.
async fn run<T>(
    mut host: UserHost,
    mut frames_in: mpsc::Receiver<Vec<u8>>,
    frames_out: mpsc::Sender<T>,
    wrap: impl Fn(Vec<u8>) -> T,
    status: watch::Sender<HostStatus>,
) {
    let (msg_tx, mut msgs) = mpsc::channel::<Msg>(MESSAGES);
    let mut conns: HashMap<ConnId, LocalConn> = HashMap::new();
    let mut buf = vec![0u8; CHUNK];
    let mut last_status = Instant::now();
    // Something happened since the last status snapshot.
    let mut dirty = false;
    loop {
        // Move bytes, then hand out what that produced, until quiet.
        loop {
            pump(&mut host, &mut conns, &mut buf);
            let mut busy = false;
            while let Some(f) = host.poll_frame() {
                busy = true;
                if frames_out.send(wrap(f)).await.is_err() {
                    return stop(conns);
                }
            }
            while let Some(ev) = host.poll_event() {
                busy = true;
                handle_event(ev, &mut conns, &msg_tx);
            }
            if !busy {
                break;
            }
        }
        let now = Instant::now();
        if dirty && now.duration_since(last_status) >= STATUS_EVERY {
            last_status = now;
            dirty = false;
            status.send_replace(host.status());
        }
        // An idle host sleeps until a frame, a message or a stack timer;
        // after activity it wakes once more to publish the snapshot.
        let refresh = dirty.then_some(last_status + STATUS_EVERY);
        let deadline = [host.poll_timeout(), refresh].into_iter().flatten().min();
        tokio::select! {
            f = frames_in.recv() => {
                let Some(f) = f else { return stop(conns) };
                host.handle_frame(Instant::now(), &f);
                for _ in 1..FRAME_BATCH {
                    match frames_in.try_recv() {
                        Ok(f) => host.handle_frame(Instant::now(), &f),
                        Err(_) => break,
                    }
                }
            }
            Some(m) = msgs.recv() => handle_msg(m, &mut host, &mut conns),
            _ = sleep_until(deadline) => {}
        }
        dirty = true;
        let now = Instant::now();
        if host.poll_timeout().is_some_and(|d| d <= now) {
            host.handle_timeout(now);
        }
    }
}

/// Sleep until `deadline`, or forever if there is none.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

fn stop(conns: HashMap<ConnId, LocalConn>) {
    for c in conns.into_values() {
        c.task.abort();
    }
}

fn handle_event(ev: HostEvent, conns: &mut HashMap<ConnId, LocalConn>, msg_tx: &mpsc::Sender<Msg>) {
    match ev {
        HostEvent::Connect { conn, to } => {
            let (cmds, cmd_rx) = mpsc::channel(WRITES_IN_FLIGHT);
            let (credit, credit_rx) = mpsc::channel(1);
            let task = tokio::spawn(conn_task(conn, to, msg_tx.clone(), cmd_rx, credit_rx));
            tracing::debug!(%conn, %to, "forwarding a connection");
            conns.insert(
                conn,
                LocalConn {
                    cmds,
                    credit,
                    task,
                    connected: false,
                    reading: false,
                    local_eof: false,
                    shutdown_sent: false,
                },
            );
        }
        HostEvent::Closed { conn, reset } => {
            if let Some(c) = conns.remove(&conn) {
                tracing::debug!(%conn, reset, "connection closed");
                if reset {
                    c.task.abort();
                }
                // Otherwise dropping the senders lets the writer finish what
                // is queued; then the task ends and closes the stream.
            }
        }
    }
}

fn handle_msg(m: Msg, host: &mut UserHost, conns: &mut HashMap<ConnId, LocalConn>) {
    let now = Instant::now();
    match m {
        Msg::Connected(id, ok) => {
            if let Some(c) = conns.get_mut(&id) {
                c.connected = ok;
            }
            if ok {
                host.accept(now, id);
            } else {
                host.refuse(now, id);
            }
        }
        Msg::Data(id, data) => {
            if let Some(c) = conns.get_mut(&id) {
                c.reading = false;
            }
            // Fits: the read was allowed only with CHUNK bytes of room.
            host.send(now, id, &data);
        }
        Msg::Eof(id) => {
            if let Some(c) = conns.get_mut(&id) {
                c.reading = false;
                c.local_eof = true;
            }
            host.close(now, id);
        }
        Msg::Failed(id) => host.abort(now, id),
        Msg::Wrote => {}
    }
}

/// Move what can move without waiting: client bytes to local writers with
/// room, and read permits to local readers whose data has room in smoltcp.
fn pump(host: &mut UserHost, conns: &mut HashMap<ConnId, LocalConn>, buf: &mut [u8]) {
    let now = Instant::now();
    for (&id, c) in conns.iter_mut() {
        if !c.connected {
            continue;
        }
        while !c.shutdown_sent && c.cmds.capacity() > 0 {
            match host.recv(now, id, buf) {
                Recv::Data(n) => {
                    // Cannot fail: capacity checked, this is the only sender.
                    let _ = c.cmds.try_send(Cmd::Write(buf[..n].to_vec()));
                }
                Recv::Finished => {
                    let _ = c.cmds.try_send(Cmd::Shutdown);
                    c.shutdown_sent = true;
                }
                Recv::Empty | Recv::Closed => break,
            }
        }
        if !c.reading && !c.local_eof && host.send_space(id) >= CHUNK {
            c.reading = c.credit.try_send(()).is_ok();
        }
    }
}

/// Open the local side, report, then copy both ways until told to stop.
async fn conn_task(
    id: ConnId,
    to: SocketAddr,
    msgs: mpsc::Sender<Msg>,
    cmds: mpsc::Receiver<Cmd>,
    credit: mpsc::Receiver<()>,
) {
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(to)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(conn = %id, %to, error = %e, "local connect failed");
            let _ = msgs.send(Msg::Connected(id, false)).await;
            return;
        }
        Err(_) => {
            tracing::debug!(conn = %id, %to, "local connect timed out");
            let _ = msgs.send(Msg::Connected(id, false)).await;
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    if msgs.send(Msg::Connected(id, true)).await.is_err() {
        return;
    }
    let (rd, wr) = stream.into_split();
    // Both directions at once: a local service that writes before it reads
    // must not stall the other direction.
    tokio::join!(
        writer(id, wr, cmds, msgs.clone()),
        reader(id, rd, credit, msgs)
    );
}

async fn writer(
    id: ConnId,
    mut wr: OwnedWriteHalf,
    mut cmds: mpsc::Receiver<Cmd>,
    msgs: mpsc::Sender<Msg>,
) {
    while let Some(cmd) = cmds.recv().await {
        match cmd {
            Cmd::Write(d) => {
                if wr.write_all(&d).await.is_err() {
                    let _ = msgs.send(Msg::Failed(id)).await;
                    return;
                }
                let _ = msgs.send(Msg::Wrote).await;
            }
            Cmd::Shutdown => {
                let _ = wr.shutdown().await;
            }
        }
    }
}

async fn reader(
    id: ConnId,
    mut rd: OwnedReadHalf,
    mut credit: mpsc::Receiver<()>,
    msgs: mpsc::Sender<Msg>,
) {
    let mut buf = vec![0u8; CHUNK];
    while credit.recv().await.is_some() {
        let m = match rd.read(&mut buf).await {
            Ok(0) => Msg::Eof(id),
            Ok(n) => Msg::Data(id, buf[..n].to_vec()),
            Err(_) => Msg::Failed(id),
        };
        let done = !matches!(m, Msg::Data(..));
        if msgs.send(m).await.is_err() || done {
            return;
        }
    }
}
