//! The underlay UDP socket with batched I/O, via quinn-udp: sends a batch of
//! same-destination datagrams (the fragments of one super-frame) with one UDP
//! GSO `sendmsg`, and receives with `recvmmsg` and UDP GRO, many datagrams per
//! system call. Where the kernel lacks GSO/GRO, quinn-udp falls back to one
//! datagram per call, and so do we. Single datagrams to many places go out
//! many per system call through [`SendBatch`] (`sendmmsg`).
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;

use quinn_udp::{RecvMeta, UdpSockRef, UdpSocketState};
use tokio::io::Interest;

/// `contents` cut into the GSO sends it takes, each with its segment size:
/// one send carries at most 64 KiB in all (the kernel builds it as one UDP
/// datagram before cutting it), and at most what the kernel supports in
/// segments.
fn gso_batches<'c>(
    state: &UdpSocketState,
    contents: &'c [u8],
    segment_size: Option<usize>,
) -> impl Iterator<Item = (&'c [u8], Option<usize>)> {
    let (chunk, seg) = match segment_size {
        Some(s) if s > 0 && contents.len() > s => {
            let max_segments = state
                .max_gso_segments()
                .clamp(1, (GSO_MAX_BYTES / s).max(1));
            (s * max_segments, Some(s))
        }
        _ => (contents.len().max(1), None),
    };
    contents
        .chunks(chunk)
        .map(move |b| (b, seg.filter(|&s| b.len() > s)))
        // An empty datagram is still one send.
        .chain(contents.is_empty().then_some((contents, None)))
}

/// Sends on a [`UdpLink`]'s socket from a thread of its own (a sealing
/// worker); the descriptor stays non-blocking, a full socket buffer is
/// waited out with `poll(2)`.
#[derive(Debug)]
pub struct ThreadSender {
    socket: std::net::UdpSocket,
    state: UdpSocketState,
}

impl ThreadSender {
    /// As [`UdpLink::send`], blocking this thread.
    pub fn send(
        &self,
        to: SocketAddr,
        contents: &[u8],
        segment_size: Option<usize>,
    ) -> io::Result<()> {
        // HOT PATH
        for (batch, seg) in gso_batches(&self.state, contents, segment_size) {
            let t = quinn_udp::Transmit {
                destination: to,
                ecn: None,
                contents: batch,
                segment_size: seg,
                src_ip: None,
            };
            loop {
                match self.state.try_send(UdpSockRef::from(&self.socket), &t) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        use std::os::fd::AsRawFd;
                        let mut p = libc::pollfd {
                            fd: self.socket.as_raw_fd(),
                            events: libc::POLLOUT,
                            revents: 0,
                        };
                        // SAFETY: one live pollfd, count 1.
                        unsafe { libc::poll(&mut p, 1, 100) };
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }
}
mod batch;
pub mod buffers;
pub use batch::{MAX_MESSAGES, Plan, SLOT, SendBatch, plan};

/// Receive buffers per `recv` call (quinn-udp's batch size on this platform).
pub const RECV_BATCH: usize = quinn_udp::BATCH_SIZE;
/// Size of one receive buffer: room for a full GRO batch of 64 segments of
/// up to 1500 bytes.
pub const RECV_BUF: usize = 64 * 1500;
/// The most payload bytes one UDP GSO send may carry (65535 minus the IPv6
/// and UDP headers, so that it holds for both families).
const GSO_MAX_BYTES: usize = 65535 - 40 - 8;
/// Socket buffer size asked for (the kernel may cap it).
const SOCKET_BUFFER: usize = 4 << 20;

/// A UDP socket for tapmesh datagrams.
#[derive(Debug)]
pub struct UdpLink {
    io: tokio::net::UdpSocket,
    state: UdpSocketState,
    /// Bound to an IPv6 address (IPv4 destinations are sent v4-mapped).
    is_ipv6: bool,
}

impl UdpLink {
    /// Wrap a bound socket (made non-blocking here).
    pub fn new(socket: std::net::UdpSocket) -> io::Result<UdpLink> {
        socket.set_nonblocking(true)?;
        let is_ipv6 = socket.local_addr()?.is_ipv6();
        let state = UdpSocketState::new(UdpSockRef::from(&socket))?;
        // Larger buffers absorb bursts; a smaller one is not fatal.
        match buffers::set(&socket, SOCKET_BUFFER) {
            Ok(got) if got.receive < SOCKET_BUFFER || got.send < SOCKET_BUFFER => tracing::warn!(
                receive_kib = got.receive / 1024,
                send_kib = got.send / 1024,
                asked_kib = SOCKET_BUFFER / 1024,
                "UDP socket buffers are smaller than asked: net.core.rmem_max and wmem_max \
                 cap them without CAP_NET_ADMIN; bursts past them are dropped by the kernel \
                 (UDP InErrors)"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "UDP socket buffers left as they are"),
        }
        Ok(UdpLink {
            io: tokio::net::UdpSocket::from_std(socket)?,
            state,
            is_ipv6,
        })
    }

    /// The socket's descriptor (to poll it, `crate::busy_poll`).
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.io.as_raw_fd()
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    /// Send `contents` to `to`: one datagram, or with `segment_size` a batch of
    /// datagrams of that size back to back (the last may be shorter).
    pub async fn send(
        &self,
        to: SocketAddr,
        contents: &[u8],
        segment_size: Option<usize>,
    ) -> io::Result<()> {
        // HOT PATH
        for (batch, seg) in gso_batches(&self.state, contents, segment_size) {
            self.send_one(to, batch, seg).await?;
        }
        Ok(())
    }

    /// A sender on the same socket (same local port) for a thread outside
    /// the runtime: [`ThreadSender::send`] waits with `poll(2)`.
    pub fn thread_sender(&self) -> io::Result<ThreadSender> {
        use std::os::fd::AsFd;
        let socket = std::net::UdpSocket::from(self.io.as_fd().try_clone_to_owned()?);
        let state = UdpSocketState::new(UdpSockRef::from(&socket))?;
        Ok(ThreadSender { socket, state })
    }

    async fn send_one(
        &self,
        to: SocketAddr,
        contents: &[u8],
        segment_size: Option<usize>,
    ) -> io::Result<()> {
        let t = quinn_udp::Transmit {
            destination: to,
            ecn: None,
            contents,
            segment_size,
            src_ip: None,
        };
        loop {
            self.io.writable().await?;
            match self.io.try_io(Interest::WRITABLE, || {
                self.state.try_send(UdpSockRef::from(&self.io), &t)
            }) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Wait for and receive datagrams into `bufs`; returns how many of `meta`
    /// are filled. A filled buffer may hold several datagrams of `stride` bytes.
    pub async fn recv(
        &self,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> io::Result<usize> {
        loop {
            self.io.readable().await?;
            match self.try_recv(bufs, meta) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return r,
            }
        }
    }

    /// Receive without waiting (`WouldBlock` if nothing is there).
    pub fn try_recv(
        &self,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> io::Result<usize> {
        self.io.try_io(Interest::READABLE, || {
            self.state.recv(UdpSockRef::from(&self.io), bufs, meta)
        })
    }
}

/// Receive buffers and their metadata, allocated once.
#[derive(Debug)]
pub struct RecvBuffers {
    bufs: Vec<Vec<u8>>,
    meta: Vec<RecvMeta>,
}

impl Default for RecvBuffers {
    fn default() -> Self {
        RecvBuffers {
            bufs: (0..RECV_BATCH).map(|_| vec![0u8; RECV_BUF]).collect(),
            meta: vec![RecvMeta::default(); RECV_BATCH],
        }
    }
}

impl RecvBuffers {
    /// Receive a batch (waiting if `wait`): returns how many buffers were
    /// filled (pass it to [`datagrams`](Self::datagrams)), or `WouldBlock`
    /// when not waiting and nothing is there.
    pub async fn recv(&mut self, link: &UdpLink, wait: bool) -> io::Result<usize> {
        let mut slices: Vec<IoSliceMut<'_>> =
            self.bufs.iter_mut().map(|b| IoSliceMut::new(b)).collect();
        if wait {
            link.recv(&mut slices, &mut self.meta).await
        } else {
            link.try_recv(&mut slices, &mut self.meta)
        }
    }

    /// Every datagram of the first `n` buffers, with its sender.
    pub fn datagrams(&mut self, n: usize) -> impl Iterator<Item = (SocketAddr, &mut [u8])> {
        self.bufs
            .iter_mut()
            .zip(&self.meta)
            .take(n)
            .flat_map(|(buf, meta)| {
                let addr = meta.addr;
                // An empty datagram is still a datagram (and bad input to count);
                // chunks_mut would yield nothing for it.
                let stride = if meta.len == 0 { 1 } else { meta.stride.max(1) };
                let (data, empty) = buf.split_at_mut(meta.len);
                let empty = (meta.len == 0).then(|| &mut empty[..0]);
                data.chunks_mut(stride).chain(empty).map(move |d| (addr, d))
            })
    }
}
