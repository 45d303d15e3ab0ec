//! The workers' part of `status` and `/metrics`: how many, and what they
//! did with the datagrams they received (their drops are the core's, counted
//! by reason with everyone else's).
use std::fmt::Write;

use serde::{Deserialize, Serialize};
use tapmesh_shell::metrics::{Def, Exposition};

/// `workers` in `status` (absent with one worker).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkersStatus {
    /// Receive sockets and threads, the core's own included (`workers`).
    pub count: usize,
    /// Datagrams the worker threads opened (authentic or not).
    pub opened: u64,
    /// Datagrams they handed to the core unopened (handshakes, sessions not
    /// yet published, bad headers).
    pub passed: u64,
    /// The handshake gate's counts.
    pub gate: super::gate::GateStatus,
    /// Frames they forwarded themselves (the fast path: sealed and sent
    /// without the core; also in the ports' and `forwarded` counters).
    pub forwarded: u64,
    /// Datagrams of those, and cookie replies, the kernel refused to send
    /// (dropped; a firewall, no route, a full buffer that failed).
    pub send_failed: u64,
}

pub const WORKERS: Def = Def::gauge(
    "tapmesh_switch_workers",
    &[],
    "Receive sockets and threads (the workers setting); absent with one.",
);
pub const DATAGRAMS: Def = Def::counter(
    "tapmesh_switch_worker_datagrams_total",
    &["result"],
    "Datagrams the worker threads received: opened there (opened), or handed to the core unopened (passed); frames they forwarded themselves (forwarded), and datagrams of those or cookie replies the kernel refused to send (send_failed).",
);

pub const GATE: Def = Def::counter(
    "tapmesh_switch_gate_datagrams_total",
    &["result"],
    "The workers' handshake gate: initiations passed to the core (admitted), datagrams it dropped or answered with a cookie reply (stopped); datagrams the core's own socket received (core_received).",
);

/// Writes the workers' metrics.
pub fn export(w: &WorkersStatus, out: &mut Exposition) {
    out.gauge(&WORKERS, &[], w.count as f64);
    out.counter(&DATAGRAMS, &["opened"], w.opened);
    out.counter(&DATAGRAMS, &["passed"], w.passed);
    out.counter(&GATE, &["admitted"], w.gate.admitted);
    out.counter(&GATE, &["stopped"], w.gate.stopped);
    out.counter(&GATE, &["core_received"], w.gate.core_received);
    out.counter(&DATAGRAMS, &["forwarded"], w.forwarded);
    out.counter(&DATAGRAMS, &["send_failed"], w.send_failed);
}

/// The status table's line.
pub fn render(out: &mut String, w: &WorkersStatus) {
    let _ = writeln!(
        out,
        "workers {}: opened {}, passed to the core {}, forwarded {} (send failed {}); gate: admitted {}, stopped {}, core socket received {}",
        w.count,
        w.opened,
        w.passed,
        w.forwarded,
        w.send_failed,
        w.gate.admitted,
        w.gate.stopped,
        w.gate.core_received
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_shows_the_refused_sends() {
        let w = WorkersStatus {
            count: 2,
            forwarded: 7,
            send_failed: 3,
            ..WorkersStatus::default()
        };
        let mut out = String::new();
        render(&mut out, &w);
        assert!(out.contains("forwarded 7 (send failed 3)"), "{out}");
    }
}
