//! The real TAP device.
//!
//! Two openers: with `offload = true` (the default) our own, because tokio-tun
//! cannot set `IFF_VNET_HDR`, which must be given when the device is attached:
//! it opens `/dev/net/tun` with `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`, sets a
//! 10-byte virtio-net header (`TUNSETVNETHDRSZ`) and enables checksum and TCP
//! segmentation offload (`TUNSETOFFLOAD` with `TUN_F_CSUM | TUN_F_TSO4 |
//! TUN_F_TSO6`), so that the kernel hands us TCP super-frames of up to 64 KB
//! (see `overlay_proto::vnet`). With `offload = false`, or if that fails
//! (an existing persistent TAP made without the flag), tokio-tun opens a plain
//! TAP. Either way MTU and link state are set, and addresses are added, with
//! iproute2 (tokio-tun sets neither IPv6 addresses nor prefix lengths).
//!
//! With `workers` above one the TAP is opened with `IFF_MULTI_QUEUE` and one
//! queue per worker, always by our opener (with or without the virtio
//! header): queue 0 is the [`Tap`] the node task reads, the others
//! ([`FrameDevice::extra_queues`]) are read by the sealing workers
//! ([`crate::workers`]). The kernel sends each flow out of the queue the
//! flow's frames were last written to, else the one its hash picks.
//!
//! A TAP this process created is not persistent, so the kernel removes it when
//! the process exits, however it exits.
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::sync::Arc;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio_tun::Tun;

use crate::config::TapConfig;
use crate::device::FrameDevice;

/// Errors from setting up the TAP.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// Creating or opening the device failed.
    #[error("cannot create TAP {name}: {detail}")]
    Create {
        /// Interface name.
        name: String,
        /// Cause.
        detail: String,
    },
    /// `ip` failed.
    #[error("cannot configure {name} ({what}): {detail}")]
    Configure {
        /// Interface name.
        name: String,
        /// What we tried.
        what: String,
        /// What `ip` said.
        detail: String,
    },
}

/// An open TAP, plain or with the virtio-net header.
pub struct Tap {
    io: TapIo,
    name: String,
    mtu: usize,
    /// Queues 1.. of a multi-queue TAP (non-blocking descriptors).
    extra: Vec<Arc<OwnedFd>>,
}

enum TapIo {
    /// Frames as they are (tokio-tun).
    Plain(Tun),
    /// Every frame preceded by a virtio-net header, offloads on.
    Offload(VnetTap),
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.has_vnet() {
            "Tap(offload)"
        } else {
            "Tap(plain)"
        })
    }
}

impl FrameDevice for Tap {
    fn name(&self) -> &str {
        &self.name
    }

    fn mtu(&self) -> usize {
        self.mtu
    }

    fn has_vnet(&self) -> bool {
        matches!(&self.io, TapIo::Offload(t) if t.vnet)
    }

    async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        match &self.io {
            TapIo::Plain(t) => t.recv(buf).await,
            TapIo::Offload(t) => t.recv(buf).await,
        }
    }

    fn try_recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        match &self.io {
            TapIo::Plain(t) => t.try_recv(buf),
            TapIo::Offload(t) => t.try_recv(buf),
        }
    }

    async fn send(&self, frame: &[u8]) -> io::Result<usize> {
        match &self.io {
            TapIo::Plain(t) => t.send(frame).await,
            TapIo::Offload(t) => t.send(frame).await,
        }
    }

    fn raw_fd(&self) -> std::os::fd::RawFd {
        match &self.io {
            TapIo::Plain(t) => t.as_raw_fd(),
            TapIo::Offload(t) => t.fd.get_ref().as_raw_fd(),
        }
    }

    fn extra_queues(&self) -> &[Arc<OwnedFd>] {
        &self.extra
    }
}

/// A TAP opened with `IFF_VNET_HDR` and offloads.
#[derive(Debug)]
pub struct VnetTap {
    fd: AsyncFd<OwnedFd>,
    /// Frames carry the virtio-net header (offloads on).
    vnet: bool,
}

// From <linux/if_tun.h>.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_MULTI_QUEUE: libc::c_short = 0x0100;
const IFF_VNET_HDR: libc::c_short = 0x4000;
const TUN_F_CSUM: libc::c_uint = 0x01;
const TUN_F_TSO4: libc::c_uint = 0x02;
const TUN_F_TSO6: libc::c_uint = 0x04;

#[repr(C)]
struct IfReq {
    name: [u8; 16],
    flags: libc::c_short,
    _pad: [u8; 22],
}

impl VnetTap {
    /// Create (or attach to) TAP `name` with the virtio-net header and offloads.
    pub fn open(name: &str) -> io::Result<VnetTap> {
        let fd = attach(name, IFF_VNET_HDR)?;
        VnetTap::register(fd, true)
    }

    /// Create TAP `name` with `queues` queues (`IFF_MULTI_QUEUE`), with the
    /// virtio-net header and offloads if `vnet`: the first queue to read
    /// with the runtime, and the others' non-blocking descriptors.
    pub fn open_queues(
        name: &str,
        vnet: bool,
        queues: usize,
    ) -> io::Result<(VnetTap, Vec<Arc<OwnedFd>>)> {
        let flags = IFF_MULTI_QUEUE | if vnet { IFF_VNET_HDR } else { 0 };
        let first = attach(name, flags)?;
        let extra = (1..queues)
            .map(|_| attach(name, flags).map(Arc::new))
            .collect::<io::Result<Vec<_>>>()?;
        Ok((VnetTap::register(first, vnet)?, extra))
    }

    fn register(fd: OwnedFd, vnet: bool) -> io::Result<VnetTap> {
        // SAFETY: `fd` is an open descriptor that the AsyncFd takes ownership
        // of; nothing else closes or replaces it while it is registered.
        let fd =
            unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE | Interest::WRITABLE) }
                .map_err(io::Error::from)?;
        Ok(VnetTap { fd, vnet })
    }

    /// Wait for and read one virtio header + frame.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| read(fd.get_ref(), buf)) {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }

    /// Read without waiting. A `WouldBlock` clears the descriptor's
    /// readiness, so the next [`recv`](Self::recv) waits for the runtime
    /// instead of trying a read that would fail again.
    pub fn try_recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.fd.try_io(Interest::READABLE, |fd| read(fd, buf))
    }

    /// Write one virtio header + frame.
    pub async fn send(&self, buf: &[u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|fd| write(fd.get_ref(), buf)) {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }
}

/// Open `/dev/net/tun` and attach to TAP `name` with `extra` flags
/// (`IFF_VNET_HDR`, `IFF_MULTI_QUEUE`); with the virtio header, set its size
/// and turn the offloads on.
fn attach(name: &str, extra: libc::c_short) -> io::Result<OwnedFd> {
    if name.len() >= 16 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface name too long",
        ));
    }
    // SAFETY: a plain open(2) of a NUL-terminated path; the result is checked.
    let raw = unsafe {
        libc::open(
            c"/dev/net/tun".as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a file descriptor we just opened and own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut req = IfReq {
        name: [0; 16],
        flags: IFF_TAP | IFF_NO_PI | extra,
        _pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    let hdr_len: libc::c_int = overlay_proto::vnet::VNET_HDR_LEN as libc::c_int;
    let offloads = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
    // SAFETY: the three ioctls take, in order, a pointer to a live `ifreq`,
    // a pointer to an int, and an integer argument, as <linux/if_tun.h> says.
    unsafe {
        if libc::ioctl(fd.as_raw_fd(), TUNSETIFF, &mut req as *mut IfReq) < 0 {
            return Err(io::Error::last_os_error());
        }
        if extra & IFF_VNET_HDR != 0
            && (libc::ioctl(
                fd.as_raw_fd(),
                TUNSETVNETHDRSZ,
                &hdr_len as *const libc::c_int,
            ) < 0
                || libc::ioctl(fd.as_raw_fd(), TUNSETOFFLOAD, offloads as libc::c_ulong) < 0)
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(fd)
}

/// One `read(2)` (non-blocking descriptors give `WouldBlock`).
pub(crate) fn read(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for `buf.len()` bytes of writes.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// One `write(2)`.
pub(crate) fn write(fd: &OwnedFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for `buf.len()` bytes of reads.
    let n = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn ip(name: &str, what: &str, args: &[&str]) -> Result<(), TapError> {
    let detail = match Command::new("ip").args(args).output() {
        Ok(o) if o.status.success() => return Ok(()),
        Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_owned(),
        Err(e) => e.to_string(),
    };
    Err(TapError::Configure {
        name: name.to_owned(),
        what: what.to_owned(),
        detail,
    })
}

/// Create the TAP (with offloads if `cfg.offload` and possible) with
/// `queues` queues, set MTU, bring it up, add addresses.
pub fn open(cfg: &TapConfig, queues: usize) -> Result<Tap, TapError> {
    if queues > 1 {
        let create = |e: io::Error| TapError::Create {
            name: cfg.name.clone(),
            detail: e.to_string(),
        };
        let (t, more) = match cfg
            .offload
            .then(|| VnetTap::open_queues(&cfg.name, true, queues))
        {
            Some(Ok(x)) => x,
            other => {
                if let Some(Err(e)) = other {
                    tracing::warn!(tap = %cfg.name, error = %e, "cannot open the TAP with offloads; using a plain TAP");
                }
                VnetTap::open_queues(&cfg.name, false, queues).map_err(create)?
            }
        };
        return configure(cfg, TapIo::Offload(t), more);
    }
    let io = match cfg.offload.then(|| VnetTap::open(&cfg.name)) {
        Some(Ok(t)) => TapIo::Offload(t),
        other => {
            if let Some(Err(e)) = other {
                tracing::warn!(tap = %cfg.name, error = %e, "cannot open the TAP with offloads; using a plain TAP");
            }
            let mut tuns =
                Tun::builder()
                    .name(&cfg.name)
                    .tap()
                    .build()
                    .map_err(|e| TapError::Create {
                        name: cfg.name.clone(),
                        detail: e.to_string(),
                    })?;
            TapIo::Plain(tuns.remove(0))
        }
    };
    configure(cfg, io, Vec::new())
}

/// Set the TAP's MAC, MTU and addresses and bring it up.
fn configure(cfg: &TapConfig, io: TapIo, extra: Vec<Arc<OwnedFd>>) -> Result<Tap, TapError> {
    let mtu = cfg.mtu.to_string();
    let m = cfg.mac;
    let mac = format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    );
    ip(
        &cfg.name,
        "address, mtu and up",
        &[
            "link", "set", "dev", &cfg.name, "address", &mac, "mtu", &mtu, "up",
        ],
    )?;
    for a in &cfg.addresses {
        let a = a.to_string();
        ip(
            &cfg.name,
            &format!("address {a}"),
            &["addr", "replace", &a, "dev", &cfg.name],
        )?;
    }
    Ok(Tap {
        io,
        name: cfg.name.clone(),
        mtu: cfg.mtu as usize,
        extra,
    })
}

#[cfg(test)]
mod tests;
