//! The shared state of the workers: one replay window for threads opening
//! under one session, revocation by dropping the session, batches in order.
use std::net::SocketAddr;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use overlay_proto::Error;
use overlay_proto::session::Session;
use overlay_proto::testing::{SessionPair, seal_datagram as datagram};
use overlay_proto::timers::REJECT_AFTER_TIME;
use overlay_proto::wire::{COOKIE_REPLY_LEN, HS_RESP_LEN};

use super::batch::{Batch, Opening};
use super::table::OpenTable;
use super::thread::open;

const NETWORK: u32 = 7;

/// Sessions A and B (indices 10 and 20) on [`NETWORK`].
fn pair(now: Instant) -> (Session, Session) {
    SessionPair {
        network_id: NETWORK,
        ..SessionPair::default()
    }
    .build(now)
}

#[test]
fn threads_opening_under_one_session_accept_each_counter_once() {
    let t0 = Instant::now();
    let (mut a, b) = pair(t0);
    let table = Arc::new(OpenTable::default());
    table.publish(NETWORK, b.receiver());
    // Every thread gets every datagram: each one races its copies on the
    // other threads through check, open and update.
    let frame = [0x5au8; 1400];
    let sent: Vec<Vec<u8>> = (0..5000).map(|_| datagram(&mut a, &frame)).collect();
    let threads = 3;
    let barrier = Arc::new(Barrier::new(threads));
    let accepted: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (table, barrier) = (table.clone(), barrier.clone());
                let mut mine = sent.clone();
                scope.spawn(move || {
                    barrier.wait();
                    let mut ok = 0;
                    for d in &mut mine {
                        if let Opening::Opened(Ok(r)) = open(&table, t0, d) {
                            assert_eq!(d[r], frame);
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
    let (new, _) = SessionPair {
        a_index: 30,
        b_index: 40,
        network_id: NETWORK,
        a_to_b: [3; 32],
        b_to_a: [4; 32],
    }
    .build(t0);
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
fn workers_are_one_to_the_cap_or_auto() {
    use super::WorkersKey::{Count, Word};
    let auto = Some(Word("auto".into()));
    assert_eq!(super::parse(None, 8), Ok(8));
    assert_eq!(super::parse(auto.clone(), 8), Ok(8));
    assert_eq!(super::parse(auto, 2), Ok(1));
    assert_eq!(super::parse(Some(Count(4)), 2), Ok(4));
    assert!(super::parse(Some(Count(0)), 8).is_err());
    assert!(super::parse(Some(Count(super::MAX_WORKERS as i64 + 1)), 8).is_err());
    assert!(super::parse(Some(Word("8".into())), 8).is_err());
}

#[test]
fn auto_workers_are_one_per_core_from_three_cores_up_to_sixteen() {
    let got = [1, 2, 3, 4, 8, 16, 17, 128].map(super::auto);
    assert_eq!(got, [1, 1, 3, 4, 8, 16, 16, 16]);
}

/// Runs a classic BPF program over `packet` as the kernel does for the
/// instructions [`super::steering::program`] uses (a load past the end
/// returns 0).
fn run_cbpf(prog: &[libc::sock_filter], packet: &[u8]) -> u32 {
    let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
    loop {
        let i = &prog[pc];
        pc += 1;
        let code = u32::from(i.code);
        match code {
            c if c == libc::BPF_LD | libc::BPF_B | libc::BPF_ABS => {
                let Some(b) = packet.get(i.k as usize) else {
                    return 0;
                };
                a = u32::from(*b);
            }
            c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS => {
                let at = i.k as usize;
                let Some(b) = packet.get(at..at + 4) else {
                    return 0;
                };
                a = u32::from_be_bytes(b.try_into().unwrap());
            }
            c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_LEN => a = packet.len() as u32,
            c if c == libc::BPF_MISC | libc::BPF_TAX => x = a,
            c if c == libc::BPF_MISC | libc::BPF_TXA => a = x,
            c if c == libc::BPF_ALU | libc::BPF_AND | libc::BPF_K => a &= i.k,
            c if c == libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K => a %= i.k,
            c if c == libc::BPF_ALU | libc::BPF_ADD | libc::BPF_K => a += i.k,
            c if c == libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K => {
                pc += usize::from(if a == i.k { i.jt } else { i.jf });
            }
            c if c == libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K => {
                pc += usize::from(if a >= i.k { i.jt } else { i.jf });
            }
            c if c == libc::BPF_RET | libc::BPF_K => return i.k,
            c if c == libc::BPF_RET | libc::BPF_A => return a,
            c => panic!("instruction {c:#x} not modelled"),
        }
    }
}

#[test]
fn steering_sends_data_by_session_initiations_to_the_gate_and_trunk_replies_to_the_core() {
    let t0 = Instant::now();
    for workers in [2usize, 3, 5] {
        let prog = super::steering::program(workers);
        let mut seen = std::collections::BTreeSet::new();
        for remote in 0..64u32 {
            let (mut s, _) = SessionPair {
                a_index: 1,
                b_index: remote,
                network_id: NETWORK,
                ..SessionPair::default()
            }
            .build(t0);
            let d = datagram(&mut s, b"frame");
            let keepalive = datagram(&mut s, b"");
            let to = run_cbpf(&prog, &d);
            assert_eq!(to, 1 + remote % (workers as u32 - 1), "{workers} workers");
            assert_eq!(run_cbpf(&prog, &keepalive), to, "same session, same worker");
            assert_eq!(super::steering::select(workers, &d), to);
            seen.insert(to);
        }
        assert_eq!(seen.len(), workers - 1, "every worker gets sessions");
        // Initiations, junk and runts: a worker's gate, never the core.
        let mut init = vec![0u8; 156];
        init[0] = 0x12; // version 1, type 2: a handshake initiation
        init[8..12].copy_from_slice(&7u32.to_be_bytes()); // sender index
        let gate = 1 + 7 % (workers as u32 - 1);
        assert_eq!(run_cbpf(&prog, &init), gate);
        assert_eq!(super::steering::select(workers, &init), gate);
        let mut junk = init.clone();
        junk[0] = 0xff;
        assert_eq!(run_cbpf(&prog, &junk), gate, "junk");
        for runt in [&[0x01u8, 0, 0][..], &[], &init[..11]] {
            assert_eq!(run_cbpf(&prog, runt), 1, "a runt");
            assert_eq!(super::steering::select(workers, runt), 1);
        }
        // A trunk's handshake response or cookie reply: the core; with
        // another length or version (random bytes), the gate.
        for (first, len) in [(0x13u8, HS_RESP_LEN), (0x15, COOKIE_REPLY_LEN)] {
            let mut reply = init[..len].to_vec();
            reply[0] = first;
            assert_eq!(run_cbpf(&prog, &reply), 0, "{first:#x}");
            assert_eq!(super::steering::select(workers, &reply), 0);
            for (f, l) in [(first, len + 1), (first, len - 1), (first | 0x20, len)] {
                let mut junk = init[..l].to_vec();
                junk[0] = f;
                assert_eq!(run_cbpf(&prog, &junk), gate, "{f:#x}, {l} bytes");
                assert_eq!(super::steering::select(workers, &junk), gate);
            }
        }
    }
}
