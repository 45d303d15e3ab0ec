//! Live captures of the daemons (`tapmesh-switch capture`, `tapmesh-node
//! capture`) for the capture tests: the command run into a file, a reader
//! that never reads, and the pcapng read back packet by packet.
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;

use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgReader};

use crate::{Process, bins};

/// One captured packet, as the pcapng says.
#[derive(Debug, Clone)]
pub struct Packet {
    /// Its interface's `if_name` (the node or peer).
    pub interface: String,
    /// `Some(true)` inbound (from the node), `Some(false)` outbound.
    pub inbound: Option<bool>,
    /// Packets lost on its interface before it (`epb_dropcount`).
    pub dropped_before: u64,
    /// The frame.
    pub data: Vec<u8>,
}

impl Packet {
    /// The 802.1Q VLAN of the frame as captured, if tagged.
    pub fn vlan(&self) -> Option<u16> {
        (self.data.get(12..14) == Some(&[0x81, 0x00]))
            .then(|| u16::from_be_bytes([self.data[14], self.data[15]]) & 0x0fff)
    }

    /// The source MAC.
    pub fn src_mac(&self) -> Option<[u8; 6]> {
        self.data.get(6..12).map(|b| b.try_into().expect("6 bytes"))
    }

    /// The EtherType after any VLAN tag.
    pub fn ethertype(&self) -> Option<u16> {
        let at = if self.vlan().is_some() { 16 } else { 12 };
        self.data
            .get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    /// The IPv4 protocol number, for an IPv4 frame.
    pub fn ip_protocol(&self) -> Option<u8> {
        let at = if self.vlan().is_some() { 18 } else { 14 };
        (self.ethertype() == Some(0x0800))
            .then(|| self.data.get(at + 9).copied())
            .flatten()
    }
}

/// The packets of a pcapng stream; a block cut short at the end (the
/// capture was stopped mid-write) ends the list.
pub fn read_packets(bytes: &[u8]) -> Vec<Packet> {
    let Ok(mut r) = PcapNgReader::new(bytes) else {
        return Vec::new();
    };
    let mut names = Vec::new();
    let mut packets = Vec::new();
    while let Some(Ok(b)) = r.next_block() {
        match b {
            Block::InterfaceDescription(i) => names.push(
                i.options
                    .iter()
                    .find_map(|o| match o {
                        InterfaceDescriptionOption::IfName(n) => Some(n.to_string()),
                        _ => None,
                    })
                    .unwrap_or_default(),
            ),
            Block::EnhancedPacket(p) => {
                let mut inbound = None;
                let mut dropped_before = 0;
                for o in &p.options {
                    match o {
                        EnhancedPacketOption::Flags(f) => match f & 3 {
                            1 => inbound = Some(true),
                            2 => inbound = Some(false),
                            _ => {}
                        },
                        EnhancedPacketOption::DropCount(n) => dropped_before = *n,
                        _ => {}
                    }
                }
                packets.push(Packet {
                    interface: names
                        .get(p.interface_id as usize)
                        .cloned()
                        .unwrap_or_default(),
                    inbound,
                    dropped_before,
                    data: p.data.to_vec(),
                });
            }
            _ => {}
        }
    }
    packets
}

/// `PROGRAM capture --socket SOCKET --write FILE ARGS…` running in the
/// background (stopped by PID when dropped or by [`finish`](Self::finish)).
#[derive(Debug)]
pub struct CaptureCommand {
    process: Option<Process>,
    file: PathBuf,
}

impl CaptureCommand {
    /// Start `program` (`tapmesh-switch` or `tapmesh-node`) capturing from
    /// the daemon at `socket` into `file`; its output goes to `file.log`.
    pub fn start(program: &str, socket: &Path, file: PathBuf, args: &[&str]) -> CaptureCommand {
        let mut cmd = Command::new(bins::bin(program));
        cmd.arg("capture")
            .arg("--socket")
            .arg(socket)
            .arg("--write")
            .arg(&file)
            .args(args);
        let log = file.with_extension("log");
        let process = Process::spawn_command("capture", cmd, log);
        CaptureCommand {
            process: Some(process),
            file,
        }
    }

    /// Stop the command and return the file it wrote.
    pub fn finish(mut self) -> PathBuf {
        drop(self.process.take());
        self.file.clone()
    }
}

/// A capture client that sends its request and then never reads: the
/// slowest reader there is. Dropping it closes the connection.
#[derive(Debug)]
pub struct StalledReader {
    /// The connection (read it to drain the capture).
    pub conn: UnixStream,
}

impl StalledReader {
    /// Ask the daemon at `socket` for a capture (`spec`: the request's JSON).
    pub fn start(socket: &Path, spec: &str) -> StalledReader {
        let mut conn = UnixStream::connect(socket)
            .unwrap_or_else(|e| panic!("admin socket {}: {e}", socket.display()));
        writeln!(conn, "capture {spec}").expect("send the capture request");
        StalledReader { conn }
    }
}

/// What `tcpdump -r FILE -nn -e -v ARGS…` prints, one line per packet
/// (the extra lines of `-v` folded into their packet's line).
pub fn tcpdump(file: &Path, args: &[&str]) -> Vec<String> {
    let out = Command::new("tcpdump")
        .args(["-r"])
        .arg(file)
        .args(["-nn", "-e", "-v"])
        .args(args)
        .output()
        .expect("run tcpdump");
    assert!(
        out.status.success(),
        "tcpdump -r {} failed: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines: Vec<String> = Vec::new();
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        match lines.last_mut() {
            Some(last) if l.starts_with(char::is_whitespace) => last.push_str(l),
            _ => lines.push(l.to_string()),
        }
    }
    lines
}
