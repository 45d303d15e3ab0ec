//! VM ports, the I/O side: the unix sockets QEMU connects to, one tokio task
//! per `[[vm-port]]`.
//!
//! The node listens; QEMU is the client (`-netdev stream,server=off,...,
//! reconnect-ms=1000`, or `-netdev dgram` with the node's socket as its
//! `remote.path`). So either side can restart on its own: a restarted QEMU
//! connects again and replaces the old connection; a restarted node binds
//! the same path again (replacing its stale socket) and QEMU's reconnect
//! timer finds it, or for `dgram`, QEMU's next datagram does. QEMU before 8.0
//! cannot reconnect a stream netdev (8.0 added `reconnect`, 9.2 renamed it
//! `reconnect-ms`), so a port can also work the other way round (`connect =
//! true`): QEMU listens (`server=on`) and the node connects, and connects
//! again every second whenever the connection is gone.
//!
//! Only peers the port allows get in (see [`crate::vm_peer`]): a stream
//! connection from another uid and gid is closed before it replaces the
//! VM's, a datagram from one is dropped before it becomes the port's peer.
//!
//! Each task owns its socket and talks to the task that owns the cores
//! through channels: [`VmEvent`]s in (frames, port up/down, drops), frames
//! out through a bounded queue per port that the owner fills with
//! `try_send`, so a VM that stops reading costs drops on its own port
//! ([`DropReason::PortQueueFull`]) and never stalls the node. Frames on these
//! channels are `Vec`s: one allocation per frame on the VM path (the TAP and
//! underlay paths stay allocation-free).
use std::io;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixDatagram, UnixListener, UnixStream};
use tokio::sync::mpsc;

use crate::config::{VmPortConfig, VmSocket};
use crate::counters::DropReason;
use crate::local_switch::PortId;
use crate::vm_framing::{Decoded, LEN_PREFIX, StreamDecoder, bad_len};
use crate::vm_peer::{self, PeerAllow, PeerCred, Refusals};

/// Frames queued towards one VM before new ones are dropped.
pub const OUT_QUEUE: usize = 512;

/// Bytes in front of every outgoing frame (room for the stream length
/// prefix, so the frame and its prefix go out in one write).
pub const HEADROOM: usize = LEN_PREFIX;

/// Permissions of a VM socket: the node's user and group (QEMU runs as one
/// of them, e.g. in the group libvirt's QEMU runs in).
const SOCKET_MODE: u32 = 0o660;

/// What a VM port task tells the owner.
#[derive(Debug)]
pub enum VmEvent {
    /// A VM connected (or, for `dgram`, a new sender appeared).
    Up(PortId),
    /// The VM disconnected.
    Down(PortId),
    /// A frame from the VM (plain Ethernet, size-checked).
    Frame(PortId, Vec<u8>),
    /// Something was dropped at the port: count it.
    Dropped(DropReason),
}

/// Bind the port's socket (errors surface at start) and spawn its task.
/// Returns the queue for frames to the VM: each `Vec` has [`HEADROOM`]
/// bytes, then the frame.
pub fn start(
    port: PortId,
    cfg: &VmPortConfig,
    max_frame: usize,
    events: mpsc::Sender<VmEvent>,
) -> io::Result<mpsc::Sender<Vec<u8>>> {
    let (tx, out) = mpsc::channel(OUT_QUEUE);
    let io = PortIo {
        port,
        max_frame,
        events,
        out,
        buf: vec![0; 64 * 1024],
        path: cfg.path.clone(),
        allow: cfg.allow.clone(),
        refusals: Refusals::default(),
    };
    match cfg.socket {
        VmSocket::Stream if cfg.connect => {
            tokio::spawn(serve_stream(Source::Connect(cfg.path.clone()), io));
        }
        VmSocket::Stream => {
            let l = bind_socket(&cfg.path, |p| std::os::unix::net::UnixListener::bind(p))?;
            l.set_nonblocking(true)?;
            tokio::spawn(serve_stream(Source::Listen(UnixListener::from_std(l)?), io));
        }
        VmSocket::Dgram => {
            let s = bind_socket(&cfg.path, |p| std::os::unix::net::UnixDatagram::bind(p))?;
            s.set_nonblocking(true)?;
            vm_peer::pass_credentials(&s)?;
            tokio::spawn(serve_dgram(UnixDatagram::from_std(s)?, io));
        }
    }
    Ok(tx)
}

/// Bind at `path` with the VM sockets' permissions; errors name the path.
fn bind_socket<T>(path: &Path, bind: impl FnOnce(&Path) -> io::Result<T>) -> io::Result<T> {
    tapmesh_shell::unix_path::bind_at(path, SOCKET_MODE, 0o750, bind)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// Remove the sockets of `ports` the node made (at shutdown).
pub fn remove_sockets(ports: &[VmPortConfig]) {
    for p in ports.iter().filter(|p| !p.connect) {
        let _ = std::fs::remove_file(&p.path);
    }
}

struct Conn {
    stream: UnixStream,
    decoder: StreamDecoder,
}

async fn read_some(conn: &mut Option<Conn>, buf: &mut [u8]) -> io::Result<usize> {
    match conn {
        Some(c) => c.stream.read(buf).await,
        None => std::future::pending().await,
    }
}

/// What a port task holds besides its socket.
struct PortIo {
    port: PortId,
    max_frame: usize,
    events: mpsc::Sender<VmEvent>,
    out: mpsc::Receiver<Vec<u8>>,
    /// Receive buffer.
    buf: Vec<u8>,
    /// The socket's path (for the log).
    path: PathBuf,
    /// Whose connections and datagrams the port takes.
    allow: PeerAllow,
    refusals: Refusals,
}

impl PortIo {
    /// Tell the owner; `None` once it is gone (the node is stopping), which
    /// ends the task. Waiting here is the backpressure towards the VM.
    async fn emit(&self, ev: VmEvent) -> Option<()> {
        self.events.send(ev).await.ok()
    }

    /// Whether a peer with credentials `who` (`None`: unknown) may use the
    /// port; a refusal is counted and logged.
    async fn admit(&mut self, who: Option<PeerCred>) -> Option<bool> {
        if who.is_some_and(|c| self.allow.allows(c)) {
            return Some(true);
        }
        self.refusals
            .refused(std::time::Instant::now(), &self.path, who);
        self.emit(VmEvent::Dropped(DropReason::VmPeerRefused))
            .await?;
        Some(false)
    }

    /// The port went down (if it was up).
    async fn down(&self, was_up: bool) -> Option<()> {
        if was_up {
            self.emit(VmEvent::Down(self.port)).await?;
        }
        Some(())
    }
}

/// Where stream connections come from.
enum Source {
    /// The node listens; QEMU connects (`-netdev stream,server=off`).
    Listen(UnixListener),
    /// QEMU listens (`-netdev stream,server=on`); the node connects.
    Connect(PathBuf),
}

/// How long a connecting port waits between attempts.
const RECONNECT: std::time::Duration = std::time::Duration::from_secs(1);

impl Source {
    /// The next connection. A listening port takes new connections at any
    /// time (a restarted QEMU's replaces the old one); a connecting port
    /// connects only while it has none, one attempt per [`RECONNECT`].
    async fn next(&self, connected: bool) -> Option<UnixStream> {
        match self {
            Source::Listen(l) => l.accept().await.ok().map(|(s, _)| s),
            Source::Connect(_) if connected => std::future::pending().await,
            Source::Connect(path) => match UnixStream::connect(path).await {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::debug!(path = %path.display(), error = %e, "cannot connect to the VM yet");
                    tokio::time::sleep(RECONNECT).await;
                    None
                }
            },
        }
    }
}

async fn serve_stream(source: Source, mut io: PortIo) -> Option<()> {
    let port = io.port;
    let mut conn: Option<Conn> = None;
    loop {
        tokio::select! {
            a = source.next(conn.is_some()) => {
                let Some(stream) = a else { continue };
                if !io.admit(vm_peer::stream_peer(&stream).ok()).await? {
                    // Closed before it touches the VM's connection; a
                    // connecting port tries again after a pause.
                    drop(stream);
                    if matches!(source, Source::Connect(_)) {
                        tokio::time::sleep(RECONNECT).await;
                    }
                    continue;
                }
                // A new connection replaces the old one: the VM's QEMU
                // restarted (the old connection may not have noticed yet).
                io.down(conn.take().is_some()).await?;
                // Frames queued for the old connection are stale.
                while io.out.try_recv().is_ok() {}
                conn = Some(Conn { stream, decoder: StreamDecoder::new(io.max_frame) });
                io.emit(VmEvent::Up(port)).await?;
            }
            r = read_some(&mut conn, &mut io.buf) => {
                let Some(c) = conn.as_mut() else { continue };
                let n = match r {
                    Ok(n) if n > 0 => n,
                    _ => {
                        io.down(conn.take().is_some()).await?;
                        continue;
                    }
                };
                c.decoder.push(&io.buf[..n]);
                while let Some(d) = c.decoder.next() {
                    let ev = match d {
                        Decoded::Frame(f) => VmEvent::Frame(port, f.to_vec()),
                        Decoded::Dropped(r) => VmEvent::Dropped(r),
                        Decoded::Garbage => VmEvent::Dropped(DropReason::Framing),
                    };
                    io.emit(ev).await?;
                }
                if c.decoder.is_broken() {
                    tracing::warn!(port, "a VM connection sent garbage; closed it");
                    io.down(conn.take().is_some()).await?;
                }
            }
            f = io.out.recv() => {
                let mut f = f?;
                let Some(c) = conn.as_mut() else { continue };
                let len = f.len() - HEADROOM;
                f[..HEADROOM].copy_from_slice(&crate::vm_framing::prefix(len));
                if c.stream.write_all(&f).await.is_err() {
                    io.down(conn.take().is_some()).await?;
                }
            }
        }
    }
}

async fn serve_dgram(sock: UnixDatagram, mut io: PortIo) -> Option<()> {
    let mut peer: Option<PathBuf> = None;
    loop {
        tokio::select! {
            r = sock.readable() => {
                if r.is_err() {
                    continue;
                }
                // Who sent the datagram waiting, then the datagram.
                let who = match sock.try_io(tokio::io::Interest::READABLE, || {
                    vm_peer::peek_dgram_sender(&sock)
                }) {
                    Ok(who) => who,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(_) => None,
                };
                let Ok((n, from)) = sock.try_recv_from(&mut io.buf) else { continue };
                if !io.admit(who).await? {
                    continue;
                }
                // Answer the address the VM sends from (QEMU's local.path).
                if let Some(p) = from.as_pathname()
                    && peer.as_deref() != Some(p)
                {
                    io.down(peer.replace(p.to_owned()).is_some()).await?;
                    io.emit(VmEvent::Up(io.port)).await?;
                }
                let ev = match bad_len(n, io.max_frame) {
                    Some(reason) => VmEvent::Dropped(reason),
                    None => VmEvent::Frame(io.port, io.buf[..n].to_vec()),
                };
                io.emit(ev).await?;
            }
            f = io.out.recv() => {
                let f = f?;
                let Some(p) = peer.as_deref() else { continue };
                if let Err(e) = send_dgram(&sock, &f[HEADROOM..], p).await
                    && matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused)
                {
                    // The VM's socket is gone: QEMU stopped. It comes back
                    // by sending again.
                    io.down(peer.take().is_some()).await?;
                }
            }
        }
    }
}

async fn send_dgram(sock: &UnixDatagram, frame: &[u8], to: &Path) -> io::Result<usize> {
    sock.send_to(frame, to).await
}
