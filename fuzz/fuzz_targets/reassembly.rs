//! The fragment reassembler, driven by a sequence of fragments from the
//! input. Fragments are authenticated before they reach it, but any admitted
//! node can send any sequence, so: it must never panic, its memory must stay
//! within `(SLOTS + 1) * MAX_TOTAL` bytes whatever arrives, and a frame it
//! completes must be exactly the bytes its fragments carried, never stale
//! bytes of an earlier frame.
//!
//! Each fragment is 8 input bytes:
//! `| frame_id:8 | offset:24 | total:24 (scaled) | len:8 | dt:8 |`, and its
//! chunk is a pattern derived from (frame_id, total, position), so the
//! target knows what every completed frame must contain.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use overlay_proto::frag::{FRAG_HEADER_LEN, FragError, FragHeader, MAX_TOTAL, Reassembler, SLOTS};

/// The byte at `pos` of frame `id` whose total length is `total`.
fn pattern(id: u32, total: u32, pos: usize) -> u8 {
    (pos as u32)
        .wrapping_mul(31)
        .wrapping_add(id.wrapping_mul(7))
        .wrapping_add(total) as u8
}

fuzz_target!(|data: &[u8]| {
    let mut now = tapmesh_fuzz::now();
    let mut r = Reassembler::default();
    let mut chunk = Vec::new();
    let mut plaintext = Vec::new();
    for rec in data.chunks_exact(8) {
        let frame_id = u32::from(rec[0] & 0x07);
        let offset = u32::from_be_bytes([0, rec[1], rec[2], rec[3]]) & 0x1_ffff;
        // Mostly totals up to MAX_TOTAL, sometimes just beyond it.
        let total = u32::from_be_bytes([0, rec[4], rec[5], rec[6]]) % (MAX_TOTAL as u32 + 64);
        // Chunks of up to 255 bytes, or up to 8 KiB when the high bit of
        // frame_id's byte is set (so frames complete with few fragments).
        let len = if rec[0] & 0x80 != 0 {
            usize::from(rec[7]) * 32
        } else {
            usize::from(rec[7])
        };
        now += Duration::from_millis(u64::from(rec[0] >> 3 & 0x0f) * 100);
        chunk.clear();
        chunk.extend((0..len).map(|i| pattern(frame_id, total, offset as usize + i)));

        // As the cores do: the header is parsed from the plaintext.
        let h = FragHeader {
            frame_id,
            offset,
            total,
        };
        plaintext.clear();
        plaintext.resize(FRAG_HEADER_LEN, 0);
        h.emit(&mut plaintext);
        plaintext.extend_from_slice(&chunk);
        let (parsed, c) = FragHeader::parse(&plaintext).expect("12 bytes of header");
        assert_eq!(parsed, h);
        assert_eq!(c, &chunk[..]);

        match r.push(now, parsed, c) {
            Ok(Some(payload)) => {
                assert_eq!(payload.len(), total as usize);
                for (pos, b) in payload.iter().enumerate() {
                    assert_eq!(*b, pattern(frame_id, total, pos), "stale byte at {pos}");
                }
            }
            Ok(None) => {}
            Err(FragError::Malformed) => {
                assert!(
                    c.is_empty()
                        || total as usize > MAX_TOTAL
                        || offset as usize + c.len() > total as usize
                        || r.memory() > 0,
                    "well-formed first fragment refused"
                );
            }
            Err(FragError::Overlap) | Err(FragError::TooMany) => {}
        }
        assert!(
            r.memory() <= (SLOTS + 1) * MAX_TOTAL,
            "reassembly holds {} bytes",
            r.memory()
        );
    }
    let _ = r.expire(now + overlay_proto::frag::REASSEMBLY_TIMEOUT);
    assert_eq!(r.expire(now + overlay_proto::frag::REASSEMBLY_TIMEOUT), 0);
});
