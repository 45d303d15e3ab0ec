//! The receive half of a session: its key and its replay window, shareable.
//!
//! A [`Session`](crate::session::Session) keeps its receive half behind an
//! `Arc`, so a multi-core switch can open datagrams of an established session
//! on other threads while the core stays the session's one owner: the core
//! hands out the `Arc` (a weak reference is enough) and dropping the session
//! is what revokes it. The key is read-only after the handshake; the window
//! is the one shared state, behind a mutex held only to check and to update
//! (never across the AES-GCM open), so two threads opening under one session
//! still accept each counter at most once.
use std::ops::Range;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use crate::Error;
use crate::crypto::DataCipher;
use crate::replay::ReplayWindow;
use crate::timers::REJECT_AFTER_TIME;
use crate::wire::{AEAD_TAG_LEN, DATA_HEADER_LEN, Header};

/// One session's receive key and replay window.
#[derive(Debug)]
pub struct Receiver {
    local_index: u32,
    cipher: DataCipher,
    replay: Mutex<ReplayWindow>,
    created: Instant,
}

impl Receiver {
    /// The receive half of a session with index `local_index`, created at `now`.
    pub fn new(key: &[u8; 32], local_index: u32, now: Instant) -> Receiver {
        Receiver {
            local_index,
            cipher: DataCipher::new(key),
            replay: Mutex::new(ReplayWindow::default()),
            created: now,
        }
    }

    /// The index the peer puts in the datagrams it sends under this session.
    pub fn local_index(&self) -> u32 {
        self.local_index
    }

    /// Too old to receive on (the session's age limit; see
    /// [`Session::is_expired`](crate::session::Session::is_expired)).
    pub fn is_expired(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.created) >= REJECT_AFTER_TIME
    }

    /// Verify and decrypt a data datagram in place; see
    /// [`Session::open`](crate::session::Session::open).
    pub fn open(&self, buf: &mut [u8]) -> Result<Range<usize>, Error> {
        // HOT PATH
        if buf.len() < DATA_HEADER_LEN + AEAD_TAG_LEN {
            return Err(Error::Truncated);
        }
        let counter = Header::new_unchecked(&buf[..]).counter();
        if !self.window().check(counter) {
            return Err(Error::Replay);
        }
        let end = buf.len() - AEAD_TAG_LEN;
        let mut tag = [0u8; AEAD_TAG_LEN];
        tag.copy_from_slice(&buf[end..]);
        let (head, rest) = buf.split_at_mut(DATA_HEADER_LEN);
        self.cipher
            .open(counter, head, &mut rest[..end - DATA_HEADER_LEN], &tag)?;
        // Only an authentic packet moves the window; of two threads that
        // opened the same counter, the second is refused here.
        if !self.window().update(counter) {
            return Err(Error::Replay);
        }
        Ok(DATA_HEADER_LEN..end)
    }

    fn window(&self) -> std::sync::MutexGuard<'_, ReplayWindow> {
        // The window is consistent after every call; a panic elsewhere
        // while it was held cannot leave it half-updated.
        self.replay.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(fuzzing)]
impl Clone for Receiver {
    /// A deep copy: cloned cores do not share windows.
    fn clone(&self) -> Receiver {
        Receiver {
            local_index: self.local_index,
            cipher: self.cipher.clone(),
            replay: Mutex::new(self.window().clone()),
            created: self.created,
        }
    }
}
