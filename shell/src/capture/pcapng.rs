//! The pcapng side of a capture, written with the `pcap-file` crate into a
//! bounded byte buffer: a section header first, an Interface Description
//! Block the first time a port is seen (named after the node or peer, with
//! nanosecond timestamps), then one Enhanced Packet Block per frame with its
//! direction (`epb_flags`) and, after losses on that interface, the number
//! lost (`epb_dropcount`).
use std::borrow::Cow;
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use pcap_file::DataLink;
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};

use super::{Filter, Offered, Port};

/// Which way a frame went, seen from the core: the `epb_flags` direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Received from the node (or peer).
    Inbound,
    /// Sent to the node (or peer).
    Outbound,
}

impl Direction {
    /// The `epb_flags` value: bits 0-1 are the direction.
    fn epb_flags(self) -> u32 {
        match self {
            Direction::Inbound => 0b01,
            Direction::Outbound => 0b10,
        }
    }
}

/// The snapshot length announced per interface; frames are never cut (the
/// largest is an offloaded 64 KiB super-frame).
const SNAPLEN: u32 = 0x4_0000;

/// Extra room for interface descriptions past the buffer's limit: they are
/// never dropped, or the packets after them could not name their interface.
const IDB_SLACK: usize = 64 << 10;

/// Bytes of an Enhanced Packet Block besides the frame: block header and
/// trailer, fixed fields, padding, flags and drop count options, end of
/// options.
const EPB_OVERHEAD: usize = 12 + 20 + 3 + 8 + 12 + 4;

/// One capture's pcapng bytes not yet taken by the reader.
pub struct Writer {
    pcapng: PcapNgWriter<Vec<u8>>,
    limit: usize,
    filter: Option<Filter>,
    /// Port key to interface id.
    interfaces: HashMap<u64, u32>,
    /// Frames lost per interface since its last written packet.
    lost: Vec<u64>,
    started: Instant,
    wall: SystemTime,
    closed: bool,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("buffered", &self.pcapng.get_ref().len())
            .field("interfaces", &self.interfaces.len())
            .field("filter", &self.filter)
            .field("closed", &self.closed)
            .finish()
    }
}

impl Writer {
    /// An empty capture (the section header written) holding at most
    /// `limit` bytes; `now` is the core's time at wall-clock time `wall`.
    pub fn new(filter: Option<Filter>, limit: usize, now: Instant, wall: SystemTime) -> Writer {
        let pcapng =
            PcapNgWriter::new(Vec::with_capacity(limit)).expect("writing to a Vec cannot fail");
        Writer {
            pcapng,
            limit,
            filter,
            interfaces: HashMap::new(),
            lost: Vec::new(),
            started: now,
            wall,
            closed: false,
        }
    }

    /// Filter and write one frame (see [`super::Capture::offer`]).
    pub fn offer(&mut self, now: Instant, port: Port<'_>, dir: Direction, frame: &[u8]) -> Offered {
        if self.closed {
            return Offered::Closed;
        }
        if self.filter.as_ref().is_some_and(|f| !f.matches(frame)) {
            return Offered::Filtered;
        }
        let id = self.interface(port);
        if self.pcapng.get_ref().len() + frame.len() + EPB_OVERHEAD > self.limit {
            self.lost[id as usize] += 1;
            return Offered::Dropped;
        }
        let mut options = Vec::with_capacity(2);
        options.push(EnhancedPacketOption::Flags(dir.epb_flags()));
        let lost = std::mem::take(&mut self.lost[id as usize]);
        if lost > 0 {
            options.push(EnhancedPacketOption::DropCount(lost));
        }
        let since = now.saturating_duration_since(self.started);
        let epb = EnhancedPacketBlock {
            interface_id: id,
            timestamp: self.timestamp(since),
            original_len: frame.len() as u32,
            data: Cow::Borrowed(frame),
            options,
        };
        self.pcapng
            .write_pcapng_block(epb)
            .expect("writing to a Vec cannot fail");
        Offered::Captured
    }

    /// The interface of `port`, described in the capture the first time.
    fn interface(&mut self, port: Port<'_>) -> u32 {
        if let Some(&id) = self.interfaces.get(&port.key) {
            return id;
        }
        let id = self.interfaces.len() as u32;
        let mut options = vec![
            InterfaceDescriptionOption::IfName(Cow::Borrowed(port.name)),
            // Timestamps in nanoseconds.
            InterfaceDescriptionOption::IfTsResol(9),
        ];
        if !port.description.is_empty() {
            options.push(InterfaceDescriptionOption::IfDescription(Cow::Borrowed(
                port.description,
            )));
        }
        let idb = InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen: SNAPLEN,
            options,
        };
        // Interface descriptions may pass the limit a little, never by much.
        if self.pcapng.get_ref().len() < self.limit + IDB_SLACK {
            self.pcapng
                .write_pcapng_block(idb)
                .expect("writing to a Vec cannot fail");
        }
        self.interfaces.insert(port.key, id);
        self.lost.push(0);
        id
    }

    fn timestamp(&self, since_start: Duration) -> Duration {
        (self.wall + since_start)
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
    }

    /// Move the bytes written so far into `out` (which must be empty); the
    /// writer keeps `out`'s old buffer for the next bytes.
    pub fn take(&mut self, out: &mut Vec<u8>) {
        std::mem::swap(self.pcapng.get_mut(), out);
    }

    /// The reader went away.
    pub fn close(&mut self) {
        self.closed = true;
    }

    /// Whether the reader went away.
    pub fn is_closed(&self) -> bool {
        self.closed
    }
}

#[cfg(test)]
mod tests {
    use pcap_file::pcapng::{Block, PcapNgReader};

    use super::*;

    const A: Port = Port {
        key: 1,
        name: "alpha",
        description: "lab",
    };
    const B: Port = Port {
        key: 2,
        name: "bravo",
        description: "lab",
    };

    fn blocks(bytes: &[u8]) -> Vec<Block<'static>> {
        let mut r = PcapNgReader::new(bytes).expect("section header");
        let mut v = Vec::new();
        while let Some(b) = r.next_block() {
            v.push(b.expect("valid block").into_owned());
        }
        v
    }

    #[test]
    fn interfaces_directions_and_drop_counts() {
        let t0 = Instant::now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let frame = [0x5au8; 60];
        // Room for the header, two interfaces and about two packets.
        let mut w = Writer::new(None, 400, t0, wall);
        let t1 = t0 + Duration::from_millis(5);
        assert_eq!(
            w.offer(t1, A, Direction::Inbound, &frame),
            Offered::Captured
        );
        assert_eq!(
            w.offer(t1, B, Direction::Outbound, &frame),
            Offered::Captured
        );
        // Full: lost, counted on A's interface.
        assert_eq!(w.offer(t1, A, Direction::Inbound, &frame), Offered::Dropped);
        assert_eq!(w.offer(t1, A, Direction::Inbound, &frame), Offered::Dropped);
        let mut out = Vec::new();
        w.take(&mut out);
        assert_eq!(
            w.offer(t1, A, Direction::Inbound, &frame),
            Offered::Captured
        );
        let mut rest = Vec::new();
        w.take(&mut rest);
        out.extend_from_slice(&rest);

        let blocks = blocks(&out);
        let names: Vec<String> = blocks
            .iter()
            .filter_map(|b| match b {
                Block::InterfaceDescription(i) => i.options.iter().find_map(|o| match o {
                    InterfaceDescriptionOption::IfName(n) => Some(n.to_string()),
                    _ => None,
                }),
                _ => None,
            })
            .collect();
        assert_eq!(names, ["alpha", "bravo"]);
        let packets: Vec<&EnhancedPacketBlock> = blocks
            .iter()
            .filter_map(|b| match b {
                Block::EnhancedPacket(p) => Some(p),
                _ => None,
            })
            .collect();
        assert_eq!(packets.len(), 3);
        let flags = |p: &EnhancedPacketBlock| {
            p.options.iter().find_map(|o| match o {
                EnhancedPacketOption::Flags(f) => Some(*f),
                _ => None,
            })
        };
        let dropped = |p: &EnhancedPacketBlock| {
            p.options.iter().find_map(|o| match o {
                EnhancedPacketOption::DropCount(n) => Some(*n),
                _ => None,
            })
        };
        assert_eq!((packets[0].interface_id, flags(packets[0])), (0, Some(1)));
        assert_eq!((packets[1].interface_id, flags(packets[1])), (1, Some(2)));
        assert_eq!(dropped(packets[0]), None);
        assert_eq!(dropped(packets[2]), Some(2), "the losses are marked");
        assert_eq!(&packets[0].data[..], &frame[..]);
        assert_eq!(
            packets[0].timestamp,
            Duration::from_secs(1_700_000_000) + Duration::from_millis(5)
        );
    }

    #[test]
    fn filtered_and_closed() {
        let t0 = Instant::now();
        let f = Filter::compile("icmp").expect("compiles");
        let mut w = Writer::new(Some(f), 1 << 20, t0, SystemTime::now());
        let arp = [0u8; 60];
        assert_eq!(w.offer(t0, A, Direction::Inbound, &arp), Offered::Filtered);
        w.close();
        assert!(w.is_closed());
        assert_eq!(w.offer(t0, A, Direction::Inbound, &arp), Offered::Closed);
    }
}
