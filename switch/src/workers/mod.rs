//! The switch on several cores: `workers = N` receive sockets, one per
//! thread, that open data datagrams before the core sees them.
//!
//! The expensive part of switching a datagram is AES-GCM: opening what a node
//! sent and sealing each copy for its receivers. With `workers = N` (N > 1)
//! the switch binds N UDP sockets to its `listen` address with
//! `SO_REUSEPORT`: the core's own and one per worker thread. A BPF program on
//! the group ([`steering`]) sends each session's data datagrams to one
//! worker, by receiver index, so one node's datagrams reach one socket, in
//! order; handshake initiations and junk to the workers' handshake gate
//! ([`gate`]), and only trunk replies to the core's socket. A worker checks each datagram's header and, for
//! a data datagram under a session the core published ([`OpenTable`]), opens
//! it in place with that session's shared receive half
//! ([`overlay_proto::receiver::Receiver`]: the read-only key and the replay
//! window, shared under a mutex never held across the cipher). A plain
//! unicast frame between ports the core published as eligible it forwards
//! itself ([`fastpath`], [`forward`]): sealed under the destination's shared
//! send half and sent from its own socket. Handshake initiations and junk
//! its gate ([`gate`]) checks, statelessly, as the core would. The rest of
//! its batch it hands, in order, to the core over a bounded channel:
//! initiations the gate admitted, sessions not yet confirmed, trunk control,
//! data the fast path leaves to the core. The core takes each datagram through the same code
//! as one it received itself (`Switch::handle_opened`): learning, forwarding,
//! snooping, counters and drops by reason are the core's, unchanged.
//!
//! The core stays the sessions' owner: it publishes each port's current
//! session after a connect or a rekey (a weak reference), and dropping a
//! session is what revokes it: a worker that cannot upgrade the reference
//! hands the datagram on unopened, and the core drops it as today.
//!
//! # Layout
//! - [`steering`]: which socket of the group gets a datagram.
//! - [`table`]: the published sessions, by network and index.
//! - [`batch`]: one worker batch: datagrams back to back, each with whether
//!   and how it was opened.
//! - [`gate`]: the handshake gate: initiations and junk checked on the
//!   workers, so a handshake flood does not wake the core.
//! - [`fastpath`]: what the core publishes for the fast path, and the
//!   counters the workers add to.
//! - [`forward`]: a worker forwarding a unicast frame itself.
//! - [`thread`]: a worker's socket and loop.
//! - [`pool`]: the workers the shell owns: start, next batch, publish.
//! - [`status`]: their part of `status` and `/metrics`.
pub mod batch;
pub mod fastpath;
pub mod forward;
pub mod gate;
pub mod pool;
pub mod status;
pub mod steering;
pub mod table;
pub mod thread;

pub use batch::Batch;
pub use pool::Workers;
pub use table::OpenTable;

/// The most `workers` a switch takes: beyond this, receive queues and
/// the core's own share of the work (sealing, switching) bound it anyway.
pub const MAX_WORKERS: usize = 64;

/// The most workers `"auto"` picks: past this the core's own share (the
/// handshakes, flooding, learning) is what bounds a switch.
pub const AUTO_MAX: usize = 16;

/// The `workers` key as written: a number, or `"auto"`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(untagged, expecting = "a number of workers (1 to 64) or \"auto\"")]
pub enum WorkersKey {
    /// `workers = N`.
    Count(i64),
    /// `workers = "auto"` (or a word that is not).
    Word(String),
}

/// What `workers = "auto"` (the default) gives on a host with `cores`
/// CPUs: one per core, at most [`AUTO_MAX`]; but one below three cores.
/// With two, the one data worker only moves the work off the core (data go
/// to workers 1 to N-1), and on a 2-core host it measured slower than the
/// core alone (BENCHMARKS.md, "The switch on two workers").
pub fn auto(cores: usize) -> usize {
    if cores < 3 { 1 } else { cores.min(AUTO_MAX) }
}

/// The CPUs this process may run on (its affinity and cgroup quota).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Validate the `workers` key on a host with `cores` CPUs: `None` is
/// `"auto"` ([`auto`]).
pub fn parse(workers: Option<WorkersKey>, cores: usize) -> Result<usize, String> {
    match workers {
        None => Ok(auto(cores)),
        Some(WorkersKey::Word(w)) if w == "auto" => Ok(auto(cores)),
        Some(WorkersKey::Word(w)) => Err(format!(
            "{w:?} is neither a number of workers (1 to {MAX_WORKERS}) nor \"auto\""
        )),
        Some(WorkersKey::Count(n)) if (1..=MAX_WORKERS as i64).contains(&n) => Ok(n as usize),
        Some(WorkersKey::Count(n)) => Err(format!("{n} is not between 1 and {MAX_WORKERS}")),
    }
}

/// A UDP socket bound to `addr`, with `SO_REUSEPORT` when `shared` (so the
/// workers' sockets can bind the same address).
pub fn bind(addr: std::net::SocketAddr, shared: bool) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if shared {
        s.set_reuse_port(true)?;
    }
    s.bind(&addr.into())?;
    Ok(s.into())
}

#[cfg(test)]
mod tests;
