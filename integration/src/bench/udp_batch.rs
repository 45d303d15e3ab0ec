//! `sendmmsg` / `recvmmsg` on a connected UDP socket: up to [`MsgBatch::cap`]
//! datagrams per system call, in one preallocated slab. The load generator
//! uses this so that its own syscalls cost far less per frame than the
//! switch's, and it cannot be the bottleneck for that reason.
use std::io;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;

/// `cap` datagram buffers of `stride` bytes each, with their lengths.
#[derive(Debug)]
pub struct MsgBatch {
    slab: Vec<u8>,
    stride: usize,
    lens: Vec<usize>,
    iov: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers in `iov` and `hdrs` are rebuilt from `slab` before
// every system call and never dereferenced otherwise.
unsafe impl Send for MsgBatch {}

impl MsgBatch {
    /// `cap` buffers of `stride` bytes.
    pub fn new(cap: usize, stride: usize) -> MsgBatch {
        MsgBatch {
            slab: vec![0; cap * stride],
            stride,
            lens: vec![0; cap],
            // SAFETY: iovec and mmsghdr are plain C structs for which all
            // zero bytes are a valid value.
            iov: vec![unsafe { std::mem::zeroed() }; cap],
            hdrs: vec![unsafe { std::mem::zeroed() }; cap],
        }
    }

    /// How many datagrams fit.
    pub fn cap(&self) -> usize {
        self.lens.len()
    }

    /// Buffer `i`, all `stride` bytes.
    pub fn buf_mut(&mut self, i: usize) -> &mut [u8] {
        &mut self.slab[i * self.stride..(i + 1) * self.stride]
    }

    /// Datagram `i` as received or as set with [`MsgBatch::set_len`].
    pub fn datagram_mut(&mut self, i: usize) -> &mut [u8] {
        let start = i * self.stride;
        &mut self.slab[start..start + self.lens[i]]
    }

    /// Sets datagram `i`'s length.
    pub fn set_len(&mut self, i: usize, len: usize) {
        assert!(len <= self.stride);
        self.lens[i] = len;
    }

    fn prepare(&mut self, count: usize, full: bool) {
        let base = self.slab.as_mut_ptr();
        for i in 0..count {
            self.iov[i] = libc::iovec {
                // SAFETY: i < cap, so the offset stays inside the slab.
                iov_base: unsafe { base.add(i * self.stride) }.cast(),
                iov_len: if full { self.stride } else { self.lens[i] },
            };
            // SAFETY: all-zero is a valid mmsghdr (no name, no control).
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_iov = &mut self.iov[i];
            h.msg_hdr.msg_iovlen = 1;
            self.hdrs[i] = h;
        }
    }

    /// Sends datagrams `0..count` on the connected `sock`, retrying partial
    /// sends; returns how many went out (fewer only on an error after some).
    pub fn send(&mut self, sock: &UdpSocket, count: usize) -> io::Result<usize> {
        let count = count.min(self.cap());
        self.prepare(count, false);
        let mut done = 0;
        while done < count {
            // SAFETY: hdrs[done..count] point at live iovecs into our slab.
            let n = unsafe {
                libc::sendmmsg(
                    sock.as_raw_fd(),
                    self.hdrs.as_mut_ptr().add(done),
                    (count - done) as libc::c_uint,
                    0,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                if done > 0 {
                    return Ok(done);
                }
                return Err(e);
            }
            done += n as usize;
        }
        Ok(done)
    }

    /// Receives up to `cap` datagrams without blocking; returns how many (0 if
    /// none were waiting). Lengths are set for each.
    pub fn recv(&mut self, sock: &UdpSocket) -> io::Result<usize> {
        let cap = self.cap();
        self.prepare(cap, true);
        // SAFETY: hdrs[..cap] point at live iovecs of `stride` bytes each.
        let n = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                cap as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        let n = n as usize;
        for i in 0..n {
            self.lens[i] = self.hdrs[i].msg_len as usize;
        }
        Ok(n)
    }
}

/// Sets `SO_RCVBUFFORCE` / `SO_SNDBUFFORCE` (root) or the plain options to
/// `bytes`, so bursts are not dropped in our own socket.
pub fn set_buffers(sock: &UdpSocket, bytes: usize) {
    let v = bytes as libc::c_int;
    for (force, plain) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        for opt in [force, plain] {
            // SAFETY: setsockopt with a pointer to a live c_int of the size given.
            let rc = unsafe {
                libc::setsockopt(
                    sock.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    (&v as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc == 0 {
                break;
            }
        }
    }
}
