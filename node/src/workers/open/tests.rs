//! Splitting a receive batch over the opening threads: every datagram of the
//! session opened once, the batch kept in its order, and bad datagrams in a
//! thread's part refused as the node task would refuse them.
use std::net::SocketAddr;
use std::time::Instant;

use overlay_proto::Error;
use overlay_proto::session::Session;
use overlay_proto::testing::{SessionPair, seal_datagram as datagram};

use super::{OpenPath, Openers, Opening, gate};

const NETWORK: u32 = 7;

/// The node's session (receiver index 10) and the switch's (sealing for 10).
fn pair(now: Instant) -> (Session, Session) {
    SessionPair {
        network_id: NETWORK,
        ..SessionPair::default()
    }
    .build(now)
}

/// The payload of the `i`-th datagram: its number, then filler.
fn payload(i: u32) -> Vec<u8> {
    let mut p = i.to_be_bytes().to_vec();
    p.resize(1200, i as u8);
    p
}

fn path(node: &Session) -> OpenPath {
    OpenPath::new(NETWORK, [node.receiver()])
}

/// One opening thread that takes each part posted to it before the node
/// task opens its own (in these tests the thread's part is the thread's).
fn claiming() -> Openers {
    let openers = Openers::start(1, Opening::Always).unwrap();
    openers.threads[0].claim_first();
    openers
}

fn from() -> SocketAddr {
    "198.18.0.1:7777".parse().unwrap()
}

#[test]
fn a_split_batch_is_opened_once_each_and_kept_in_order() {
    let now = Instant::now();
    let (node, mut switch) = pair(now);
    let mut openers = claiming();
    // 200 datagrams of the session, and every 50th place something the
    // threads must leave to the node task: a datagram of another session.
    let (mut other_switch, _) = SessionPair {
        a_index: 21,
        b_index: 11,
        network_id: NETWORK,
        a_to_b: [3; 32],
        b_to_a: [4; 32],
    }
    .build(now);
    let mut sent = Vec::new();
    for i in 0..200u32 {
        if i % 50 == 25 {
            sent.push(datagram(&mut other_switch, &payload(i)));
        } else {
            sent.push(datagram(&mut switch, &payload(i)));
        }
    }
    let mut bufs = sent.clone();
    let batch = openers.open(
        &path(&node),
        now,
        bufs.iter_mut().map(|b| (from(), &mut b[..])),
    );
    assert_eq!(batch.len(), 200);
    let mut opened_by_thread = 0;
    for (i, d) in batch.iter().enumerate() {
        if i % 50 == 25 {
            assert!(d.opened.is_none(), "{i}: another session's datagram opened");
            assert_eq!(d.buf, &sent[i][..], "{i}: left to the node task, untouched");
            continue;
        }
        let r = d.opened.clone().unwrap_or_else(|| panic!("{i} not opened"));
        let r = r.unwrap_or_else(|e| panic!("{i}: {e:?}"));
        // In order: the i-th place holds the i-th payload.
        assert_eq!(&d.buf[r], &payload(i as u32)[..], "{i}");
        opened_by_thread += usize::from(i >= 100);
    }
    // The thread opened the second half (the node task the first).
    assert_eq!(openers.opened(), opened_by_thread as u64);
    assert_eq!(opened_by_thread, 98);
    // Each was accepted into the window exactly once: a copy now is a replay.
    for (i, s) in sent.iter().enumerate().filter(|(i, _)| i % 50 != 25) {
        let mut again = s.clone();
        assert_eq!(node.receiver().open(&mut again), Err(Error::Replay), "{i}");
    }
}

#[test]
fn forged_and_replayed_datagrams_in_a_threads_part_are_refused() {
    let now = Instant::now();
    let (node, mut switch) = pair(now);
    let mut openers = claiming();
    let mut sent: Vec<Vec<u8>> = (0..100)
        .map(|i| datagram(&mut switch, &payload(i)))
        .collect();
    // In the thread's part (the second half): a copy of a datagram from
    // the node task's part, a copy of one from its own, and a forgery.
    sent[60] = sent[10].clone();
    sent[80] = sent[70].clone();
    let last = sent[90].len() - 1;
    sent[90][last] ^= 1;
    let mut bufs = sent.clone();
    let batch = openers.open(
        &path(&node),
        now,
        bufs.iter_mut().map(|b| (from(), &mut b[..])),
    );
    let result = |i: usize| batch[i].opened.clone().unwrap();
    // Of two copies in two parts, one is accepted (whichever was opened
    // first: the parts are opened at once), the other is a replay.
    let (first, second) = if result(10).is_ok() {
        (10, 60)
    } else {
        (60, 10)
    };
    assert!(result(first).is_ok());
    assert_eq!(result(second), Err(Error::Replay));
    // Of two copies in one part, the first is accepted.
    assert!(result(70).is_ok());
    assert_eq!(result(80), Err(Error::Replay));
    assert_eq!(result(90), Err(Error::BadTag));
    // Counted as opened by the thread: only the authentic ones of its part.
    assert_eq!(openers.opened(), 50 - 3 + u64::from(first == 60));
    // The forgery moved nothing: the genuine datagram is still accepted.
    let mut genuine = datagram_again(&sent[90]);
    assert!(node.receiver().open(&mut genuine).is_ok());
}

/// `bufs` opened as one batch under `node`'s session.
fn open_all<'a>(
    openers: &mut Openers,
    node: &Session,
    now: Instant,
    bufs: &'a mut [Vec<u8>],
) -> Vec<super::Datagram<'a>> {
    openers.open(
        &path(node),
        now,
        bufs.iter_mut().map(|b| (from(), &mut b[..])),
    )
}

/// 100 datagrams from the switch, their buffers, and the node's session.
fn batch_of_100(now: Instant) -> (Session, Vec<Vec<u8>>) {
    let (node, mut switch) = pair(now);
    let bufs = (0..100)
        .map(|i| datagram(&mut switch, &payload(i)))
        .collect();
    (node, bufs)
}

/// Every datagram of `batch` opened, in order.
fn assert_whole(batch: &[super::Datagram<'_>]) {
    assert_eq!(batch.len(), 100);
    for (i, d) in batch.iter().enumerate() {
        let r = d.opened.clone().unwrap().unwrap();
        assert_eq!(&d.buf[r], &payload(i as u32)[..], "{i}");
    }
}

#[test]
fn a_part_no_thread_has_started_is_opened_by_the_node_task_without_waiting() {
    let now = Instant::now();
    let (node, mut bufs) = batch_of_100(now);
    let mut openers = Openers::start(1, Opening::Always).unwrap();
    // The thread does not run for 300 ms (as when every core is busy): the
    // node task takes its part back instead of waiting for it (a node task
    // that waited would see the thread open its half once let go).
    openers.threads[0].hold_for(300);
    let batch = open_all(&mut openers, &node, now, &mut bufs);
    assert_whole(&batch);
    assert_eq!(openers.opened(), 0, "the thread opened nothing");
    // `always` goes on splitting.
    assert!(openers.splits(Instant::now()));
    assert_eq!(openers.pauses(), 0);
}

#[test]
fn auto_pauses_after_a_part_was_taken_back_or_waited_for() {
    let now = Instant::now();
    let mut openers = Openers::start(1, Opening::Auto).unwrap();
    assert!(openers.splits(now));
    // Not started: taken back; a pause after the eighth in a row.
    openers.threads[0].hold_for(200);
    for k in 1..=gate::TAKEN_BACK_RUN {
        assert_eq!(openers.pauses(), 0, "{k}");
        let (node, mut bufs) = batch_of_100(now);
        let batch = open_all(&mut openers, &node, now, &mut bufs);
        assert_whole(&batch);
    }
    assert_eq!(openers.opened(), 0);
    assert_eq!(openers.pauses(), 1);
    let later = Instant::now();
    assert!(!openers.splits(later));
    assert!(openers.splits(later + gate::PAUSE_MIN));
    // Started, then slow (100 ms in its part, as when it is preempted
    // halfway): the node task waits for it, far longer than its own half
    // took, and pauses again.
    std::thread::sleep(std::time::Duration::from_millis(300));
    openers.threads[0].claim_first();
    openers.threads[0].slow(100);
    let (node, mut bufs) = batch_of_100(now);
    let batch = open_all(&mut openers, &node, now, &mut bufs);
    assert_whole(&batch);
    assert_eq!(openers.opened(), 50, "the thread opened its half");
    assert_eq!(openers.pauses(), 2);
    assert!(!openers.splits(Instant::now()));
}

/// The forged datagram with its tag restored.
fn datagram_again(forged: &[u8]) -> Vec<u8> {
    let mut d = forged.to_vec();
    let last = d.len() - 1;
    d[last] ^= 1;
    d
}

#[test]
fn a_dropped_or_expired_session_leaves_the_batch_to_the_node_task() {
    let now = Instant::now();
    let (node, mut switch) = pair(now);
    let mut openers = claiming();
    let sent: Vec<Vec<u8>> = (0..10)
        .map(|i| datagram(&mut switch, &payload(i)))
        .collect();
    let published = path(&node);
    // Expired: nothing opened.
    let later = now + overlay_proto::timers::REJECT_AFTER_TIME;
    let mut bufs = sent.clone();
    let batch = openers.open(
        &published,
        later,
        bufs.iter_mut().map(|b| (from(), &mut b[..])),
    );
    assert!(batch.iter().all(|d| d.opened.is_none()));
    // Dropped: nothing opened either.
    drop(node);
    let mut bufs = sent.clone();
    let batch = openers.open(
        &published,
        now,
        bufs.iter_mut().map(|b| (from(), &mut b[..])),
    );
    assert!(batch.iter().all(|d| d.opened.is_none()));
    assert_eq!(openers.opened(), 0);
}

/// A mesh peer's session with this node (our receiver index `index`) and
/// the peer's side of it, keyed apart from the switch's by `key`.
fn peer_pair(now: Instant, index: u32, key: u8) -> (Session, Session) {
    SessionPair {
        a_index: index,
        b_index: index + 100,
        network_id: NETWORK,
        a_to_b: [key; 32],
        b_to_a: [key + 1; 32],
    }
    .build(now)
}

#[test]
fn a_batch_from_the_switch_and_two_peers_is_opened_once_each_in_order() {
    let now = Instant::now();
    let (node, mut switch) = pair(now);
    let (to_a, mut a) = peer_pair(now, 30, 5);
    let (to_b, mut b) = peer_pair(now, 40, 7);
    // A third peer whose session is not published (pending, say).
    let (_to_c, mut c) = peer_pair(now, 50, 9);
    let mut openers = claiming();
    let mut senders = [&mut switch, &mut a, &mut b, &mut c];
    let mut sent: Vec<Vec<u8>> = (0..240u32)
        .map(|i| datagram(&mut *senders[i as usize % 4], &payload(i)))
        .collect();
    // In the thread's part (the second half): a copy of peer a's datagram
    // from the node task's part, and a forgery of one of peer b's.
    sent[201] = sent[1].clone();
    let last = sent[202].len() - 1;
    sent[202][last] ^= 1;
    let mut bufs = sent.clone();
    let path = OpenPath::new(NETWORK, [node.receiver(), to_b.receiver(), to_a.receiver()]);
    let batch = openers.open(&path, now, bufs.iter_mut().map(|b| (from(), &mut b[..])));
    assert_eq!(batch.len(), 240);
    let mut opened_by_thread = 0;
    for (i, d) in batch.iter().enumerate() {
        if i % 4 == 3 {
            assert!(
                d.opened.is_none(),
                "{i}: an unpublished session's datagram opened"
            );
            assert_eq!(d.buf, &sent[i][..], "{i}: left to the node task, untouched");
            continue;
        }
        let r = d.opened.clone().unwrap_or_else(|| panic!("{i} not opened"));
        // Of the two copies (1, 201) one is accepted, the other a replay.
        let copy = if i == 1 {
            Some(201)
        } else if i == 201 {
            Some(1)
        } else {
            None
        };
        if let Some(other) = copy {
            match r {
                Err(e) => {
                    assert_eq!(e, Error::Replay, "{i}");
                    assert!(batch[other].opened.clone().unwrap().is_ok(), "{i}, {other}");
                }
                Ok(r) => {
                    assert_eq!(&d.buf[r], &payload(1)[..], "{i}");
                    opened_by_thread += usize::from(i >= 120);
                }
            }
            continue;
        }
        match i {
            202 => assert_eq!(r, Err(Error::BadTag)),
            _ => {
                let r = r.unwrap_or_else(|e| panic!("{i}: {e:?}"));
                assert_eq!(&d.buf[r], &payload(i as u32)[..], "{i}");
                opened_by_thread += usize::from(i >= 120);
            }
        }
    }
    // 90 of the thread's 120 are published sessions', two of them bad
    // (or one, if the copy in its part was opened first).
    let copy_here = batch[201].opened.clone().unwrap().is_ok();
    assert_eq!(opened_by_thread, 88 + usize::from(copy_here));
    assert_eq!(openers.opened(), opened_by_thread as u64);
    // Each was accepted into its session's window exactly once.
    let rx = [node.receiver(), to_a.receiver(), to_b.receiver()];
    for (i, s) in sent
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 4 != 3 && *i != 202)
    {
        let mut again = s.clone();
        assert_eq!(rx[i % 4].open(&mut again), Err(Error::Replay), "{i}");
    }
    // The forgery moved nothing: the genuine datagram is still accepted.
    let mut genuine = datagram_again(&sent[202]);
    assert!(to_b.receiver().open(&mut genuine).is_ok());
}

#[test]
fn a_dropped_peer_session_is_left_to_the_node_task_and_the_rest_opened() {
    let now = Instant::now();
    let (node, mut switch) = pair(now);
    let (to_a, mut a) = peer_pair(now, 30, 5);
    let mut openers = claiming();
    let sent: Vec<Vec<u8>> = (0..20u32)
        .map(|i| {
            let s = if i % 2 == 0 { &mut switch } else { &mut a };
            datagram(s, &payload(i))
        })
        .collect();
    let path = OpenPath::new(NETWORK, [node.receiver(), to_a.receiver()]);
    // Revoked: the peer's session dropped (the peer removed, or rekeyed
    // and its old session gone) before the node task published again.
    drop(to_a);
    let mut bufs = sent.clone();
    let batch = openers.open(&path, now, bufs.iter_mut().map(|b| (from(), &mut b[..])));
    for (i, d) in batch.iter().enumerate() {
        if i % 2 == 1 {
            assert!(
                d.opened.is_none(),
                "{i}: a dropped session's datagram opened"
            );
            assert_eq!(d.buf, &sent[i][..], "{i}: untouched");
        } else {
            assert!(matches!(d.opened, Some(Ok(_))), "{i}: {:?}", d.opened);
        }
    }
}
