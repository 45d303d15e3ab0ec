//! One worker batch: the datagrams of one receive, back to back in one
//! buffer, each with its sender and, if the worker opened it, the result.
//! Batches go to the core and come back empty, so steady state allocates
//! nothing.
use std::net::SocketAddr;
use std::ops::Range;

use overlay_proto::Error;

/// How a worker left one datagram.
#[derive(Debug, Clone)]
pub enum Opening {
    /// Untouched: the core takes it as if it had received it.
    Sealed,
    /// Opened in place under a published session, with this result.
    Opened(Result<Range<usize>, Error>),
    /// A handshake initiation the gate admitted (see `super::gate`).
    Admitted,
}

#[derive(Debug)]
struct Entry {
    from: SocketAddr,
    len: usize,
    opening: Opening,
}

/// Datagrams in receive order.
#[derive(Debug, Default)]
pub struct Batch {
    data: Vec<u8>,
    entries: Vec<Entry>,
}

impl Batch {
    /// Append a datagram; `open` may open it in place and says how.
    pub fn push(
        &mut self,
        from: SocketAddr,
        datagram: &[u8],
        open: impl FnOnce(&mut [u8]) -> Opening,
    ) {
        let start = self.data.len();
        self.data.extend_from_slice(datagram);
        let opening = open(&mut self.data[start..]);
        self.entries.push(Entry {
            from,
            len: datagram.len(),
            opening,
        });
    }

    /// Datagrams held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No datagrams.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Each datagram in order, with its sender and how it was left.
    pub fn datagrams(&mut self) -> impl Iterator<Item = (SocketAddr, &mut [u8], Opening)> {
        // Entries are back to back: cut each off the front.
        let mut rest: &mut [u8] = &mut self.data;
        self.entries.iter().map(move |e| {
            let (d, tail) = std::mem::take(&mut rest).split_at_mut(e.len);
            rest = tail;
            (e.from, d, e.opening.clone())
        })
    }

    /// Empty it for reuse (keeps the allocations).
    pub fn clear(&mut self) {
        self.data.clear();
        self.entries.clear();
    }
}
