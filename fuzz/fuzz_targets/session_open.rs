//! `Session::open` on arbitrary (header-checked) data packets must never
//! panic; and a frame sealed by the peer session must open to exactly the
//! same bytes, once (a replay is refused), while any single bit flipped
//! anywhere in the datagram is refused without disturbing the replay window.
#![no_main]

use libfuzzer_sys::fuzz_target;
use overlay_proto::Error;
use overlay_proto::wire::{AEAD_TAG_LEN, DATA_HEADER_LEN, DATA_OVERHEAD, Header, MessageType};
use tapmesh_fuzz::{NETWORK_ID, SESSION_B_INDEX, session_pair as pair};

fuzz_target!(|data: &[u8]| {
    let now = tapmesh_fuzz::now();
    // 1. The raw input, as B would receive it. Only the seed sealed with A's
    //    key (make-seeds) can open; anything else must fail, cleanly.
    if let Ok(h) = Header::new_checked(data)
        && h.message_type() == MessageType::Data
    {
        let (_, mut b) = pair(now);
        let mut buf = data.to_vec();
        if let Ok(r) = b.open(&mut buf) {
            assert_eq!(r, DATA_HEADER_LEN..data.len() - AEAD_TAG_LEN);
            // Opening again is a replay.
            let mut again = data.to_vec();
            assert_eq!(b.open(&mut again), Err(Error::Replay));
        }
    }

    // 2. Round trip of a frame derived from the input. The first byte picks
    //    which bit to flip in the tampered copy; the rest is the frame.
    let (sel, frame) = match data.split_first() {
        Some((s, f)) => (*s as usize, f),
        None => (0, &[][..]),
    };
    // A fresh pair, so step 1 cannot have touched the window.
    let (mut a, mut b) = pair(now);

    let mut buf = vec![0u8; frame.len() + DATA_OVERHEAD];
    buf[DATA_HEADER_LEN..DATA_HEADER_LEN + frame.len()].copy_from_slice(frame);
    let n = a
        .seal(0, &mut buf, frame.len())
        .expect("seal into a big enough buffer");
    assert_eq!(n, buf.len());
    assert_eq!(a.sent(), 1);
    {
        let h = Header::new_checked(&buf[..]).expect("sealed packet passes new_checked");
        assert_eq!(h.message_type(), MessageType::Data);
        assert_eq!(h.receiver_index(), SESSION_B_INDEX);
        assert_eq!(h.network_id(), NETWORK_ID);
        assert_eq!(h.counter(), 0);
        assert_eq!(h.flags(), 0);
    }

    // A tampered copy: one bit flipped anywhere (header, ciphertext or tag).
    let bit = (sel * 131 + frame.len()) % (buf.len() * 8);
    let mut bad = buf.clone();
    bad[bit / 8] ^= 1 << (bit % 8);
    assert!(
        b.open(&mut bad).is_err(),
        "tampered packet opened (bit {bit})"
    );

    // The genuine one still opens, to exactly the frame.
    let mut good = buf.clone();
    let range = b
        .open(&mut good)
        .expect("genuine packet opens after a forgery");
    assert_eq!(range, DATA_HEADER_LEN..buf.len() - AEAD_TAG_LEN);
    assert_eq!(&good[range], frame);

    // And only once.
    let mut again = buf.clone();
    assert_eq!(b.open(&mut again), Err(Error::Replay));
});
