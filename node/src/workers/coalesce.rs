//! Sealed datagrams a worker holds back to send together.
//!
//! The node task sends what one drain of the TAP sealed with one GSO or
//! `sendmmsg` call ([`crate::daemon`]'s outbox); a worker that sent each
//! frame as it sealed it paid a system call per frame, which for 64-byte
//! frames costs more than the sealing. [`Coalesce`] holds consecutive
//! datagrams to one destination while they have one size (the last may be
//! shorter, as UDP GSO allows), and the worker sends them with one GSO
//! send when the next does not fit and when its TAP queue is empty: it
//! never waits for a frame that has not come.
use std::net::SocketAddr;

/// Datagrams held for one GSO send.
#[derive(Debug, Default)]
pub(super) struct Coalesce {
    /// Where they go (`None`: nothing held).
    to: Option<SocketAddr>,
    /// The size of each (the first one's).
    segment: usize,
    /// A shorter one ended the run: nothing more may join.
    closed: bool,
    /// The datagrams, back to back.
    buf: Vec<u8>,
}

impl Coalesce {
    /// Whether a datagram of `len` bytes to `to` may join what is held
    /// (if not, [`flush`](Self::flush) first).
    pub(super) fn fits(&self, to: SocketAddr, len: usize) -> bool {
        match self.to {
            None => true,
            Some(t) => t == to && !self.closed && len <= self.segment && len > 0,
        }
    }

    /// Hold `datagram` to `to`; it must [`fit`](Self::fits).
    pub(super) fn push(&mut self, to: SocketAddr, datagram: &[u8]) {
        // HOT PATH
        debug_assert!(self.fits(to, datagram.len()));
        if self.to.is_none() {
            self.to = Some(to);
            self.segment = datagram.len();
        } else if datagram.len() < self.segment {
            self.closed = true;
        }
        self.buf.extend_from_slice(datagram);
    }

    /// Hand what is held to `send` as one send (destination, the
    /// datagrams back to back, their size if more than one), and hold
    /// nothing.
    pub(super) fn flush<R>(
        &mut self,
        send: impl FnOnce(SocketAddr, &[u8], Option<usize>) -> R,
    ) -> Option<R> {
        let to = self.to.take()?;
        let segment = (self.buf.len() > self.segment).then_some(self.segment);
        let r = send(to, &self.buf, segment);
        self.buf.clear();
        self.closed = false;
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flushed(c: &mut Coalesce) -> Option<(SocketAddr, Vec<u8>, Option<usize>)> {
        c.flush(|to, d, seg| (to, d.to_vec(), seg))
    }

    #[test]
    fn same_size_datagrams_to_one_place_go_as_one_send_and_a_shorter_one_ends_it() {
        let a: SocketAddr = "198.18.0.12:4800".parse().unwrap();
        let mut c = Coalesce::default();
        assert_eq!(flushed(&mut c), None, "nothing held, nothing sent");
        for k in 0..3u8 {
            assert!(c.fits(a, 4));
            c.push(a, &[k; 4]);
        }
        // Longer than those held: not in this send.
        assert!(!c.fits(a, 5));
        // Shorter: the last of this send.
        assert!(c.fits(a, 2));
        c.push(a, &[9; 2]);
        assert!(!c.fits(a, 2) && !c.fits(a, 1));
        let (to, d, seg) = flushed(&mut c).unwrap();
        assert_eq!((to, seg), (a, Some(4)));
        assert_eq!(d, [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 9, 9]);
        // After a flush the next run starts afresh, with its own size.
        assert!(c.fits(a, 6));
        c.push(a, &[7; 6]);
        assert_eq!(
            flushed(&mut c),
            Some((a, vec![7; 6], None)),
            "one datagram: no GSO"
        );
        assert_eq!(flushed(&mut c), None);
    }

    #[test]
    fn another_destination_does_not_join() {
        let a: SocketAddr = "198.18.0.12:4800".parse().unwrap();
        let b: SocketAddr = "198.18.0.13:4800".parse().unwrap();
        let mut c = Coalesce::default();
        c.push(a, &[1; 8]);
        assert!(!c.fits(b, 8));
        assert!(c.fits(a, 8));
        assert!(!c.fits(a, 0), "an empty datagram never joins");
    }
}
