//! The IGMP/MLD parser the switch runs on every multicast frame from a node:
//! it must never panic, whatever the bytes, and every record it yields must
//! be readable to the end.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tapmesh_switch::snooping::wire::{self, ETHERTYPE_IPV4, ETHERTYPE_IPV6, Parsed};

fuzz_target!(|data: &[u8]| {
    for ethertype in [ETHERTYPE_IPV4, ETHERTYPE_IPV6] {
        if let Parsed::Report(records) = wire::parse(ethertype, data) {
            for r in records.flatten() {
                std::hint::black_box((r.kind, r.group, r.source_count()));
                for s in r.sources() {
                    std::hint::black_box(s);
                }
            }
        }
    }
});
