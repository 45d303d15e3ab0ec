//! One worker: read frames from its TAP queue, seal them for the switch
//! or a mesh peer, send them.
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use overlay_proto::ethernet::MacAddr;
use overlay_proto::session::Sender;
use overlay_proto::wire::{AEAD_TAG_LEN, DATA_HEADER_LEN, DATA_OVERHEAD};
use tapmesh_shell::udp::ThreadSender;
use tokio::sync::mpsc;

use super::Shared;
use super::coalesce::Coalesce;
use super::mesh::{Geometry, MeshPath, Route};
use super::stats::Stats;
use crate::counters::DropReason;
use crate::daemon::MAX_READ;
use crate::engine::tap::{split_checked, travel_form};

/// Frames read per wakeup before the fast path is looked up again.
const BATCH: usize = 64;
/// How long a worker waits for a frame before checking whether to stop.
const WAIT_MS: libc::c_int = 100;
/// The worker's own fragment ids: top bit set, its index in bits 24..31.
const OWN_IDS: u32 = 0x00ff_ffff;

pub(super) struct Worker {
    queue: Arc<OwnedFd>,
    shared: Arc<Shared>,
    stats: Arc<Stats>,
    udp: ThreadSender,
    fallback: mpsc::Sender<Vec<u8>>,
    /// Our source MACs due to be announced again, for the node task.
    announce: mpsc::Sender<MacAddr>,
    id_base: u32,
}

impl Worker {
    pub(super) fn new(
        index: usize,
        queue: Arc<OwnedFd>,
        shared: Arc<Shared>,
        stats: Arc<Stats>,
        udp: ThreadSender,
        (fallback, announce): (mpsc::Sender<Vec<u8>>, mpsc::Sender<MacAddr>),
    ) -> Worker {
        Worker {
            queue,
            shared,
            stats,
            udp,
            fallback,
            announce,
            id_base: 0x8000_0000 | ((index as u32 & 0x7f) << 24),
        }
    }

    /// Run until the node task stops the workers.
    pub(super) fn run(self) {
        let mut buf = vec![0u8; DATA_HEADER_LEN + MAX_READ + AEAD_TAG_LEN];
        let mut sends = Sends {
            out: Vec::new(),
            held: Coalesce::default(),
            frame_id: self.id_base,
        };
        while !self.shared.stop.load(Ordering::Relaxed) {
            if !self.wait() {
                continue;
            }
            let path = self.shared.path();
            let mesh = self.shared.mesh();
            for _ in 0..BATCH {
                let read = crate::tap::read(
                    &self.queue,
                    &mut buf[DATA_HEADER_LEN..DATA_HEADER_LEN + MAX_READ],
                );
                let n = match read {
                    Ok(n) => n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => {
                        tracing::trace!(error = %e, "TAP queue read failed");
                        break;
                    }
                };
                let now = Instant::now();
                let payload = &buf[DATA_HEADER_LEN..DATA_HEADER_LEN + n];
                if let Some(p) = path.as_deref().filter(|p| !p.sender.is_expired(now)) {
                    let to = (&p.sender, p.to, &p.geometry);
                    if let Err(r) = self.seal(to, &mut buf, n, &mut sends) {
                        self.stats.dropped(r);
                    }
                } else if let Some((m, r)) = mesh
                    .as_deref()
                    .and_then(|m| Some((m, m.route(now, payload)?)))
                {
                    if let Err(e) = self.seal_for_peer(m, &r, &mut buf, n, &mut sends) {
                        self.stats.dropped(e);
                    }
                } else {
                    let frame = payload.to_vec();
                    if self.fallback.try_send(frame).is_err() {
                        self.stats.dropped(DropReason::TxQueueFull);
                    }
                }
            }
            // The queue is empty (or a batch was read): send what is held.
            self.send_held(&mut sends.held);
        }
    }

    fn send_held(&self, held: &mut Coalesce) {
        let sent = held.flush(|to, d, segment| self.udp.send(to, d, segment));
        if let Some(Err(e)) = sent {
            tracing::trace!(error = %e, "send failed");
        }
    }

    /// Wait until the queue is readable (false after [`WAIT_MS`]).
    fn wait(&self) -> bool {
        let mut p = libc::pollfd {
            fd: self.queue.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one live pollfd, count 1.
        unsafe { libc::poll(&mut p, 1, WAIT_MS) > 0 }
    }

    /// Seal the `n` bytes read at `buf[DATA_HEADER_LEN..]` for the mesh
    /// peer of `r` (see [`seal`](Self::seal)), and tell the node task.
    fn seal_for_peer(
        &self,
        m: &MeshPath,
        r: &Route<'_>,
        buf: &mut [u8],
        n: usize,
        sends: &mut Sends,
    ) -> Result<(), DropReason> {
        // HOT PATH
        let p = r.peer;
        self.seal((&p.sender, p.to, &m.geometry), buf, n, sends)?;
        // A full queue: the MAC is asked for again under the next copy.
        let asked = r
            .announce
            .is_some_and(|mac| self.announce.try_send(mac).is_ok());
        if p.tx.sealed() || asked {
            self.shared.sealed.notify_one();
        }
        Ok(())
    }

    /// Seal the `n` bytes read at `buf[DATA_HEADER_LEN..]` with `sender`
    /// for `to`, as the node task would (`Node::handle_tap_frame`): in
    /// place if one datagram holds it, held in `sends` to go with the next
    /// ones of its size to `to`, else as fragments, sent at once in one GSO
    /// send after what was held.
    fn seal(
        &self,
        (sender, to, p): (&Sender, SocketAddr, &Geometry),
        buf: &mut [u8],
        n: usize,
        sends: &mut Sends,
    ) -> Result<(), DropReason> {
        // HOT PATH
        let payload = &buf[DATA_HEADER_LEN..DATA_HEADER_LEN + n];
        let (vnet, _) = split_checked(p.vnet, p.mtu, payload)?;
        let (flags, start) = travel_form(vnet);
        let plen = n - start;
        let datagrams = if plen + DATA_OVERHEAD <= p.max_datagram {
            let len = sender.seal(flags, &mut buf[start..], plen)?;
            if !sends.held.fits(to, len) {
                self.send_held(&mut sends.held);
            }
            sends.held.push(to, &buf[start..start + len]);
            1
        } else {
            let out = &mut sends.out;
            let parts = [&buf[DATA_HEADER_LEN + start..DATA_HEADER_LEN + n]];
            let stride =
                sender.seal_frame(flags, &parts, p.max_datagram, &mut sends.frame_id, out)?;
            sends.frame_id = self.id_base | (sends.frame_id & OWN_IDS);
            let count = out.len().div_ceil(stride.unwrap_or(out.len()).max(1));
            self.send_held(&mut sends.held);
            if let Err(e) = self.udp.send(to, out, stride) {
                tracing::trace!(error = %e, "send failed");
            }
            count
        };
        self.stats.sealed(n, datagrams);
        Ok(())
    }
}

/// A worker's send state: fragments of the frame being sent, datagrams
/// held for one GSO send, the next fragment id.
struct Sends {
    out: Vec<u8>,
    held: Coalesce,
    frame_id: u32,
}
