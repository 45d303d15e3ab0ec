//! Who may use a VM port: the peer's credentials, as the kernel reports them,
//! against the uids and gids the port allows (`allow-uid`, `allow-gid`).
//!
//! Socket permissions (0660, the node's user and group) decide who can reach
//! a VM socket at all, but anyone who can reach it could take the port over:
//! a new stream connection replaces the VM's, and a datagram from a new
//! address becomes the port's peer. So the node asks the kernel who is on
//! the other end: `SO_PEERCRED` on a stream (the process that connected, or
//! for a port that connects, the one that listens), `SCM_CREDENTIALS` on
//! every datagram (`SO_PASSCRED` on the socket). Both are what the sender
//! was when it connected or sent: a process cannot claim another user's
//! credentials without `CAP_SETUID`/`CAP_SETGID`.
//!
//! The default allows root and the node's own user (the setup where the
//! node and QEMU run as one user). QEMU running as its own user (libvirt's
//! `libvirt-qemu`, say) needs that uid in `allow-uid`, or its primary group
//! in `allow-gid` (the kernel reports the primary group only, not
//! supplementary groups).
//!
//! A refused connection is closed at once, a refused datagram dropped; both
//! are counted (`vm_peer_refused`) and logged at most once per
//! [`LOG_INTERVAL`] per port, with how many were refused since.
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

/// The highest valid uid or gid (`(uid_t)-1` means "none" to the kernel).
const MAX_ID: i64 = u32::MAX as i64 - 1;

/// Refusals on one port are logged at most this often.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The uids and gids a port accepts peers from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAllow {
    /// A peer with one of these uids is accepted.
    pub uids: Vec<u32>,
    /// A peer whose (primary) gid is one of these is accepted.
    pub gids: Vec<u32>,
}

/// A peer's credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    /// Its process id (for the log; 0 if the kernel did not say).
    pub pid: i32,
    /// Its effective uid.
    pub uid: u32,
    /// Its effective gid.
    pub gid: u32,
}

impl PeerAllow {
    /// The `allow-uid` and `allow-gid` values of a port (`None`: the key is
    /// absent). On error: the key (`allow-uid` or `allow-gid`) and the
    /// problem.
    pub fn from_config(
        uids: Option<&[i64]>,
        gids: &[i64],
    ) -> Result<PeerAllow, (&'static str, String)> {
        let ids = |key: &'static str, v: &[i64]| {
            v.iter()
                .map(|&id| match u32::try_from(id) {
                    Ok(id) if i64::from(id) <= MAX_ID => Ok(id),
                    _ => Err((key, format!("{id} is out of range 0..={MAX_ID}"))),
                })
                .collect::<Result<Vec<u32>, _>>()
        };
        let uids = match uids {
            Some(u) => ids("allow-uid", u)?,
            None => vec![0, own_uid()],
        };
        let gids = ids("allow-gid", gids)?;
        if uids.is_empty() && gids.is_empty() {
            return Err((
                "allow-uid",
                "allows no one (allow-uid and allow-gid are both empty)".into(),
            ));
        }
        Ok(PeerAllow { uids, gids })
    }

    /// Whether a peer with these credentials may use the port.
    pub fn allows(&self, c: PeerCred) -> bool {
        self.uids.contains(&c.uid) || self.gids.contains(&c.gid)
    }
}

/// The node's effective uid.
pub fn own_uid() -> u32 {
    // SAFETY: geteuid has no arguments, touches no memory and cannot fail.
    unsafe { libc::geteuid() }
}

/// The credentials of a stream's peer (`SO_PEERCRED`).
pub fn stream_peer(s: &tokio::net::UnixStream) -> io::Result<PeerCred> {
    let c = s.peer_cred()?;
    Ok(PeerCred {
        pid: c.pid().unwrap_or(0),
        uid: c.uid(),
        gid: c.gid(),
    })
}

/// Ask the kernel to attach the sender's credentials to every datagram
/// `sock` receives (`SO_PASSCRED`). Set before the socket is served, so no
/// datagram arrives without them.
pub fn pass_credentials(sock: &impl AsFd) -> io::Result<()> {
    socket2::SockRef::from(sock).set_passcred(true)
}

/// Control buffer for one `SCM_CREDENTIALS` message (16-byte header and a
/// 12-byte `ucred`, aligned), with room to spare.
const CONTROL_LEN: usize = 64;

/// The credentials the next datagram waiting on `sock` carries, without
/// taking it off the queue (`recvmsg` with `MSG_PEEK` and no data buffer).
/// `Ok(None)`: it carries none. `WouldBlock` when no datagram waits.
pub fn peek_dgram_sender(sock: &impl AsFd) -> io::Result<Option<PeerCred>> {
    let mut control = [0u8; CONTROL_LEN];
    let n = {
        // SAFETY: `[u8]` and `[MaybeUninit<u8>]` have the same layout, and
        // the kernel writes only initialized bytes, so `control` stays
        // initialized for the reads below.
        let uninit = unsafe { &mut *(&mut control[..] as *mut [u8] as *mut [MaybeUninit<u8>]) };
        let mut msg = socket2::MsgHdrMut::new().with_control(uninit);
        socket2::SockRef::from(sock).recvmsg(&mut msg, libc::MSG_PEEK | libc::MSG_DONTWAIT)?;
        msg.control_len()
    };
    Ok(parse_credentials(&control[..n.min(CONTROL_LEN)]))
}

/// The `SCM_CREDENTIALS` in a control buffer, if any: a walk over
/// `cmsghdr`s (`cmsg_len` a `usize`, then level and type as `c_int`, data
/// aligned to `usize`), read with bounds checks only.
fn parse_credentials(control: &[u8]) -> Option<PeerCred> {
    const WORD: usize = std::mem::size_of::<usize>();
    const HEADER: usize = WORD + 8;
    let align = |n: usize| n.div_ceil(WORD) * WORD;
    let int = |b: &[u8], at: usize| -> Option<[u8; 4]> { b.get(at..at + 4)?.try_into().ok() };
    let mut off = 0;
    while off + HEADER <= control.len() {
        let len = usize::from_ne_bytes(control[off..off + WORD].try_into().ok()?);
        let level = i32::from_ne_bytes(int(control, off + WORD)?);
        let kind = i32::from_ne_bytes(int(control, off + WORD + 4)?);
        if len < HEADER || off + len > control.len() {
            return None;
        }
        let data = off + align(HEADER);
        if level == libc::SOL_SOCKET && kind == libc::SCM_CREDENTIALS && off + len >= data + 12 {
            return Some(PeerCred {
                pid: i32::from_ne_bytes(int(control, data)?),
                uid: u32::from_ne_bytes(int(control, data + 4)?),
                gid: u32::from_ne_bytes(int(control, data + 8)?),
            });
        }
        off += align(len);
    }
    None
}

/// Refusals on one port: counted, logged at most once per [`LOG_INTERVAL`].
#[derive(Debug, Default)]
pub struct Refusals {
    last_log: Option<Instant>,
    since_log: u64,
}

impl Refusals {
    /// A peer was refused; logs (rate-limited) and returns.
    pub fn refused(&mut self, now: Instant, port: &std::path::Path, who: Option<PeerCred>) {
        self.since_log += 1;
        if self
            .last_log
            .is_some_and(|t| now.saturating_duration_since(t) < LOG_INTERVAL)
        {
            return;
        }
        let (pid, uid, gid) = who.map_or((None, None, None), |c| {
            (Some(c.pid), Some(c.uid), Some(c.gid))
        });
        tracing::warn!(
            port = %port.display(),
            pid,
            uid,
            gid,
            refused = self.since_log,
            "refused a VM port peer: its uid and gid are not allowed (allow-uid, allow-gid)"
        );
        self.last_log = Some(now);
        self.since_log = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_bad_ids() {
        let d = PeerAllow::from_config(None, &[]).unwrap();
        assert_eq!(d.uids, vec![0, own_uid()]);
        assert!(d.gids.is_empty());
        let c = |uid, gid| PeerCred { pid: 1, uid, gid };
        assert!(d.allows(c(0, 5)));
        assert!(d.allows(c(own_uid(), 5)));
        assert!(!d.allows(c(own_uid().wrapping_add(12345), 0)));
        let g = PeerAllow::from_config(Some(&[]), &[107]).unwrap();
        assert!(g.allows(c(1000, 107)) && !g.allows(c(0, 0)));
        for bad in [-1, 4294967295, 1 << 40] {
            let e = PeerAllow::from_config(Some(&[bad]), &[]).unwrap_err();
            assert_eq!(e.0, "allow-uid");
            assert_eq!(e.1, format!("{bad} is out of range 0..=4294967294"));
            assert_eq!(
                PeerAllow::from_config(None, &[bad]).unwrap_err().0,
                "allow-gid"
            );
        }
        assert_eq!(
            PeerAllow::from_config(Some(&[]), &[]).unwrap_err().1,
            "allows no one (allow-uid and allow-gid are both empty)"
        );
    }

    #[test]
    fn credentials_of_a_datagram_are_peeked_not_taken() {
        let dir = std::env::temp_dir().join(format!("tm-vmpeer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("port.sock");
        let _ = std::fs::remove_file(&path);
        let rx = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        rx.set_nonblocking(true).unwrap();
        assert_eq!(
            peek_dgram_sender(&rx).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        pass_credentials(&rx).unwrap();
        let tx = std::os::unix::net::UnixDatagram::unbound().unwrap();
        tx.send_to(b"frame", &path).unwrap();
        let c = peek_dgram_sender(&rx)
            .unwrap()
            .expect("credentials attached");
        assert_eq!(c.uid, own_uid());
        assert_eq!(c.pid, std::process::id() as i32);
        // Still queued.
        let mut buf = [0u8; 16];
        assert_eq!(rx.recv(&mut buf).unwrap(), 5);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn control_messages_are_parsed_with_bounds_checks() {
        let mut b = Vec::new();
        b.extend_from_slice(&(std::mem::size_of::<usize>() + 8 + 12).to_ne_bytes());
        b.extend_from_slice(&libc::SOL_SOCKET.to_ne_bytes());
        b.extend_from_slice(&libc::SCM_CREDENTIALS.to_ne_bytes());
        for v in [42i32, 1000, 100] {
            b.extend_from_slice(&v.to_ne_bytes());
        }
        let c = parse_credentials(&b).unwrap();
        assert_eq!((c.pid, c.uid, c.gid), (42, 1000, 100));
        for n in 0..b.len() {
            assert_eq!(parse_credentials(&b[..n]), None, "{n} bytes");
        }
    }
}
