//! The shared state of the workers: one replay window for threads opening
//! under one session, revocation by dropping the session, batches in order.
use std::net::SocketAddr;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use overlay_proto::Error;
use overlay_proto::handshake::SessionKeys;
use overlay_proto::session::Session;
use overlay_proto::timers::REJECT_AFTER_TIME;
use overlay_proto::wire::{AEAD_TAG_LEN, DATA_HEADER_LEN};

use super::batch::{Batch, Opening};
use super::table::OpenTable;
use super::thread::open;

const NETWORK: u32 = 7;

fn pair(now: Instant) -> (Session, Session) {
    let a = SessionKeys {
        send: [1; 32],
        recv: [2; 32],
    };
    let b = SessionKeys {
        send: [2; 32],
        recv: [1; 32],
    };
    (
        Session::new(a, 10, 20, NETWORK, now),
        Session::new(b, 20, 10, NETWORK, now),
    )
}

fn datagram(s: &mut Session, frame: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; DATA_HEADER_LEN + frame.len() + AEAD_TAG_LEN];
    buf[DATA_HEADER_LEN..DATA_HEADER_LEN + frame.len()].copy_from_slice(frame);
    let n = s.seal(0, &mut buf, frame.len()).unwrap();
    buf.truncate(n);
    buf
}

#[test]
fn threads_opening_under_one_session_accept_each_counter_once() {
    let t0 = Instant::now();
    let (mut a, b) = pair(t0);
    let table = Arc::new(OpenTable::default());
    table.publish(NETWORK, b.receiver());
    // Every datagram twice: a replay racing its original on another thread.
    let sent: Vec<Vec<u8>> = (0..2000u32)
        .map(|i| datagram(&mut a, &i.to_be_bytes()))
        .collect();
    let threads = 4;
    let barrier = Arc::new(Barrier::new(threads));
    let accepted: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (table, barrier, sent) = (table.clone(), barrier.clone(), &sent);
                scope.spawn(move || {
                    barrier.wait();
                    let mut ok = 0;
                    // Threads 0 and 1 take the same half, 2 and 3 the other.
                    for d in sent.iter().skip(t / 2).step_by(2) {
                        let mut d = d.clone();
                        if let Opening::Opened(Ok(r)) = open(&table, t0, &mut d) {
                            assert_eq!(d[r].len(), 4);
                            ok += 1;
                        }
                    }
                    ok
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(accepted, sent.len(), "each datagram exactly once");
    // The core, opening under the same session, sees the same window.
    let mut b = b;
    let mut again = sent[0].clone();
    assert_eq!(b.open(&mut again), Err(Error::Replay));
}

#[test]
fn a_dropped_session_is_revoked_and_pruned() {
    let t0 = Instant::now();
    let (mut a, b) = pair(t0);
    let table = OpenTable::default();
    table.publish(NETWORK, b.receiver());
    assert!(table.get(t0, NETWORK, 20).is_some());
    assert!(table.get(t0, NETWORK + 1, 20).is_none(), "another network");
    assert!(table.get(t0, NETWORK, 21).is_none(), "another index");
    drop(b);
    assert!(table.get(t0, NETWORK, 20).is_none());
    let mut d = datagram(&mut a, b"frame");
    let before = d.clone();
    assert!(matches!(open(&table, t0, &mut d), Opening::Sealed));
    assert_eq!(d, before, "handed on untouched");
    assert_eq!(table.len(), 1);
    table.prune();
    assert!(table.is_empty());
}

#[test]
fn an_expired_session_is_left_to_the_core() {
    let t0 = Instant::now();
    let (mut a, b) = pair(t0);
    let table = OpenTable::default();
    table.publish(NETWORK, b.receiver());
    let mut d = datagram(&mut a, b"frame");
    let late = t0 + REJECT_AFTER_TIME;
    assert!(matches!(open(&table, late, &mut d), Opening::Sealed));
    let early = late - Duration::from_secs(1);
    assert!(matches!(
        open(&table, early, &mut d),
        Opening::Opened(Ok(_))
    ));
}

#[test]
fn a_rekey_publishes_the_new_session_beside_the_old() {
    let t0 = Instant::now();
    let (_, old) = pair(t0);
    let keys = SessionKeys {
        send: [3; 32],
        recv: [4; 32],
    };
    let new = Session::new(keys, 30, 40, NETWORK, t0);
    let table = OpenTable::default();
    table.publish(NETWORK, old.receiver());
    table.publish(NETWORK, new.receiver());
    table.publish(NETWORK, new.receiver());
    assert_eq!(table.len(), 2);
    assert!(table.get(t0, NETWORK, 20).is_some());
    assert!(table.get(t0, NETWORK, 30).is_some());
}

#[test]
fn a_batch_gives_back_its_datagrams_in_order() {
    let from: SocketAddr = "198.18.0.1:4000".parse().unwrap();
    let mut b = Batch::default();
    for (i, d) in [&b"first"[..], b"", b"third datagram"].iter().enumerate() {
        b.push(from, d, |_| {
            if i == 1 {
                Opening::Opened(Err(Error::Replay))
            } else {
                Opening::Sealed
            }
        });
    }
    assert_eq!(b.len(), 3);
    let got: Vec<(Vec<u8>, bool)> = b
        .datagrams()
        .map(|(f, d, o)| {
            assert_eq!(f, from);
            (d.to_vec(), matches!(o, Opening::Opened(Err(Error::Replay))))
        })
        .collect();
    assert_eq!(
        got,
        [
            (b"first".to_vec(), false),
            (Vec::new(), true),
            (b"third datagram".to_vec(), false)
        ]
    );
    b.clear();
    assert!(b.is_empty());
}

#[test]
fn workers_are_one_to_the_cap() {
    assert_eq!(super::parse(None), Ok(1));
    assert_eq!(super::parse(Some(4)), Ok(4));
    assert!(super::parse(Some(0)).is_err());
    assert!(super::parse(Some(super::MAX_WORKERS as u64 + 1)).is_err());
}
