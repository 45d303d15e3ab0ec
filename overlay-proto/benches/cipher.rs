//! The cipher comparison: AES-256-GCM seal and open, in place, with the data
//! path's nonce layout and a 20-byte header as associated data, on 64-, 1400-
//! and 65536-byte payloads, for every well-kept implementation we could use:
//! `DataCipher` (AWS-LC through `aws-lc-rs`, what the data path uses), `ring`,
//! `graviola` and the pure-Rust `aes-gcm` crate.
//!
//! Time is the benchmark thread's own CPU time (`CLOCK_THREAD_CPUTIME_ID`),
//! so other load on the machine changes the figures less than wall time
//! would. Each implementation runs five rounds, interleaved with the others;
//! the median round is printed, as nanoseconds per operation and GB/s.
//!
//! Run: `cargo bench -p overlay-proto --bench cipher`
use std::hint::black_box;
use std::time::Duration;

use overlay_proto::crypto::DataCipher;

const AAD: [u8; 20] = [0xa5; 20];
const KEY: [u8; 32] = [0x42; 32];
const ROUNDS: usize = 5;

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn nonce(counter: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_be_bytes());
    n
}

/// One implementation, seen through the data path's two operations.
trait Aead {
    fn seal(&self, counter: u64, payload: &mut [u8]) -> [u8; 16];
    fn open(&self, counter: u64, payload: &mut [u8], tag: &[u8; 16]) -> bool;
}

impl Aead for DataCipher {
    fn seal(&self, counter: u64, payload: &mut [u8]) -> [u8; 16] {
        DataCipher::seal(self, counter, &AAD, payload)
    }
    fn open(&self, counter: u64, payload: &mut [u8], tag: &[u8; 16]) -> bool {
        DataCipher::open(self, counter, &AAD, payload, tag).is_ok()
    }
}

struct RustCrypto(aes_gcm::Aes256Gcm);

impl Aead for RustCrypto {
    fn seal(&self, counter: u64, payload: &mut [u8]) -> [u8; 16] {
        use aes_gcm::aead::AeadInOut;
        self.0
            .encrypt_inout_detached(&nonce(counter).into(), &AAD, payload.into())
            .expect("seal")
            .into()
    }
    fn open(&self, counter: u64, payload: &mut [u8], tag: &[u8; 16]) -> bool {
        use aes_gcm::aead::AeadInOut;
        self.0
            .decrypt_inout_detached(&nonce(counter).into(), &AAD, payload.into(), &(*tag).into())
            .is_ok()
    }
}

struct Ring(ring::aead::LessSafeKey);

impl Aead for Ring {
    fn seal(&self, counter: u64, payload: &mut [u8]) -> [u8; 16] {
        use ring::aead::{Aad, Nonce};
        let tag = self
            .0
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce(counter)),
                Aad::from(&AAD),
                payload,
            )
            .expect("seal");
        tag.as_ref().try_into().expect("16-byte tag")
    }
    fn open(&self, counter: u64, payload: &mut [u8], tag: &[u8; 16]) -> bool {
        use ring::aead::{Aad, Nonce, Tag};
        self.0
            .open_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce(counter)),
                Aad::from(&AAD),
                Tag::from(*tag),
                payload,
                0..,
            )
            .is_ok()
    }
}

struct Graviola(graviola::aead::AesGcm);

impl Aead for Graviola {
    fn seal(&self, counter: u64, payload: &mut [u8]) -> [u8; 16] {
        let mut tag = [0u8; 16];
        self.0.encrypt(&nonce(counter), &AAD, payload, &mut tag);
        tag
    }
    fn open(&self, counter: u64, payload: &mut [u8], tag: &[u8; 16]) -> bool {
        self.0.decrypt(&nonce(counter), &AAD, payload, tag).is_ok()
    }
}

/// Nanoseconds per seal and per open of one round. Opening copies the
/// sealed payload back first (every implementation pays the same copy) and
/// must authenticate every time.
fn round(aead: &dyn Aead, size: usize, iters: u64) -> (f64, f64) {
    let mut buf = vec![0x5a_u8; size];
    let start = thread_cpu();
    let mut tag = [0u8; 16];
    for counter in 0..iters {
        tag = aead.seal(counter, black_box(&mut buf));
    }
    let seal = thread_cpu() - start;
    black_box(tag);
    let mut sealed = vec![0x5a_u8; size];
    let tag_last = aead.seal(iters, &mut sealed);
    let mut work = sealed.clone();
    let start = thread_cpu();
    for _ in 0..iters {
        work.copy_from_slice(&sealed);
        assert!(aead.open(iters, black_box(&mut work), &tag_last), "open");
    }
    let open = thread_cpu() - start;
    let per = |d: Duration| d.as_nanos() as f64 / iters as f64;
    (per(seal), per(open))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let aeads: Vec<(&str, Box<dyn Aead>)> = vec![
        ("aws-lc-rs (DataCipher)", Box::new(DataCipher::new(&KEY))),
        ("ring", {
            let key = ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &KEY).expect("key");
            Box::new(Ring(ring::aead::LessSafeKey::new(key)))
        }),
        (
            "graviola",
            Box::new(Graviola(graviola::aead::AesGcm::new(&KEY))),
        ),
        ("aes-gcm", {
            use aes_gcm::aead::KeyInit;
            Box::new(RustCrypto(aes_gcm::Aes256Gcm::new(&KEY.into())))
        }),
    ];
    println!(
        "AES-256-GCM, in place, 20-byte AAD; thread CPU time, median of {ROUNDS} interleaved rounds"
    );
    println!(
        "{:>6}  {:<24} {:>9} {:>9}  {:>9} {:>9}",
        "bytes", "implementation", "seal ns", "GB/s", "open ns", "GB/s"
    );
    for size in [64usize, 1400, 65536] {
        let iters = (400_000_000 / (size as u64 + 300)).max(1000);
        let mut results: Vec<(Vec<f64>, Vec<f64>)> = vec![(vec![], vec![]); aeads.len()];
        for _ in 0..ROUNDS {
            for (i, (_, aead)) in aeads.iter().enumerate() {
                let (s, o) = round(aead.as_ref(), size, iters);
                results[i].0.push(s);
                results[i].1.push(o);
            }
        }
        for ((name, _), (s, o)) in aeads.iter().zip(results) {
            let (s, o) = (median(s), median(o));
            println!(
                "{size:>6}  {name:<24} {s:>9.0} {:>9.2}  {o:>9.0} {:>9.2}",
                size as f64 / s,
                size as f64 / o
            );
        }
    }
}
