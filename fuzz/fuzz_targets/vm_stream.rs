//! The decoder of QEMU's `-netdev stream` framing (4-byte big-endian length,
//! then the frame), which a node runs on bytes from a VM: the VM may send
//! anything. Input: `| max_frame / 16 - 4 : 8 | read size - 1 : 8 | stream |`;
//! the stream is pushed in reads of that size.
//!
//! Must never panic, and must decode exactly what a plain reading of the
//! whole stream gives: frames of 14..=max_frame bytes in order, runts and
//! oversized frames skipped and reported (also when their body has not
//! arrived yet), and a length no QEMU sends ends the stream as garbage,
//! after which nothing more is decoded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tapmesh_node::counters::DropReason;
use tapmesh_node::vm_framing::{Decoded, LEN_PREFIX, MAX_SANE_LEN, StreamDecoder};

#[derive(Debug, PartialEq, Eq)]
enum Event {
    Frame(Vec<u8>),
    Dropped(DropReason),
    Garbage,
}

/// The whole stream, read the obvious way.
fn model(stream: &[u8], max_frame: usize) -> Vec<Event> {
    let mut out = Vec::new();
    let mut at = 0;
    while stream.len() - at >= LEN_PREFIX {
        let p = &stream[at..at + LEN_PREFIX];
        let len = u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize;
        let body = at + LEN_PREFIX;
        if len > MAX_SANE_LEN {
            out.push(Event::Garbage);
            break;
        }
        if len < 14 || len > max_frame {
            out.push(Event::Dropped(if len < 14 {
                DropReason::Runt
            } else {
                DropReason::Oversize
            }));
        } else if stream.len() - body >= len {
            out.push(Event::Frame(stream[body..body + len].to_vec()));
        } else {
            break;
        }
        at = body + len;
        if at > stream.len() {
            break;
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let [m, r, stream @ ..] = data else {
        return;
    };
    let max_frame = (usize::from(*m) + 4) * 16;
    let read = usize::from(*r) + 1;
    let mut d = StreamDecoder::new(max_frame);
    let mut got = Vec::new();
    for chunk in stream.chunks(read) {
        let was_broken = d.is_broken();
        d.push(chunk);
        while let Some(e) = d.next() {
            assert!(!was_broken, "decoded after garbage");
            got.push(match e {
                Decoded::Frame(f) => {
                    assert!((14..=max_frame).contains(&f.len()));
                    Event::Frame(f.to_vec())
                }
                Decoded::Dropped(r) => Event::Dropped(r),
                Decoded::Garbage => Event::Garbage,
            });
        }
    }
    assert_eq!(d.is_broken(), got.last() == Some(&Event::Garbage));
    assert_eq!(got, model(stream, max_frame));
});
