//! Capture filters in libpcap's filter language (`icmp`, `vlan 20 and
//! igmp`, ...), compiled by libpcap itself through the `pcap` crate: the
//! language users know from tcpdump and Wireshark's capture filters, with
//! libpcap's own compiler rather than a reimplementation. Compiled once when
//! the capture starts; per frame only the BPF program runs.
use std::fmt;

use pcap::{BpfProgram, Capture, Linktype};

/// A compiled filter for Ethernet frames.
pub struct Filter {
    program: BpfProgram,
    expr: String,
}

impl Filter {
    /// Compile `expr`; the error is libpcap's one-line message.
    pub fn compile(expr: &str) -> Result<Filter, String> {
        let dead = Capture::dead(Linktype::ETHERNET).map_err(|e| e.to_string())?;
        let program = dead
            .compile(expr, true)
            .map_err(|e| format!("bad filter {expr:?}: {e}"))?;
        Ok(Filter {
            program,
            expr: expr.to_owned(),
        })
    }

    /// Whether the filter accepts `frame` (an Ethernet frame).
    pub fn matches(&self, frame: &[u8]) -> bool {
        self.program.filter(frame)
    }
}

impl fmt::Debug for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Filter").field(&self.expr).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Ethernet frame with IPv4 protocol `proto`.
    fn ipv4(proto: u8) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20];
        f[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
        f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 2]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[16..18].copy_from_slice(&20u16.to_be_bytes());
        f[22] = 64;
        f[23] = proto;
        f[26..30].copy_from_slice(&[198, 19, 0, 1]);
        f[30..34].copy_from_slice(&[198, 19, 0, 2]);
        f
    }

    #[test]
    fn icmp_matches_icmp_only() {
        let f = Filter::compile("icmp").expect("compiles");
        assert!(f.matches(&ipv4(1)));
        assert!(!f.matches(&ipv4(17)));
        assert!(!f.matches(&[0u8; 3]), "a runt matches nothing");
    }

    #[test]
    fn bad_expression_is_one_line() {
        let e = Filter::compile("icmp and and").expect_err("refused");
        assert!(e.contains("icmp and and"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }
}
