//! The IGMP/MLD parser the switch runs on every multicast frame from a node:
//! it must never panic, whatever the bytes, and every record it yields must
//! be readable to the end.
//!
//! The parser verifies checksums, which random mutations almost never keep
//! right, so each input is parsed twice: as it is, and with the IGMP or
//! ICMPv6 checksum fixed up where the parser will look for it. The second
//! pass lets the fuzzer explore queries, reports and their records.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tapmesh_fuzz::ip::{fix_v4, fix_v6};
use tapmesh_switch::snooping::wire::{self, ETHERTYPE_IPV4, ETHERTYPE_IPV6, Parsed};

fn parse_all(ethertype: u16, data: &[u8]) {
    match wire::parse(ethertype, data) {
        Parsed::Report(records) => {
            for r in records.flatten() {
                std::hint::black_box((r.kind, r.group, r.source_count()));
                let n = r.sources().inspect(|s| {
                    std::hint::black_box(s);
                });
                assert!(n.count() <= r.source_count());
            }
        }
        other => {
            std::hint::black_box(other);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    for ethertype in [ETHERTYPE_IPV4, ETHERTYPE_IPV6] {
        parse_all(ethertype, data);
    }
    let mut fixed = data.to_vec();
    if fix_v4(&mut fixed).is_some() {
        parse_all(ETHERTYPE_IPV4, &fixed);
    }
    let mut fixed = data.to_vec();
    if fix_v6(&mut fixed).is_some() {
        parse_all(ETHERTYPE_IPV6, &fixed);
    }
});
