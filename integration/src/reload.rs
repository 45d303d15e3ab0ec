//! Reloading a running daemon's config the two ways an operator can:
//! `reload` over the admin socket (the command's exit status and output),
//! or SIGHUP (then waiting for the `reloads` counter in `status`).
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::status::counter;
use crate::{Topology, bins, wait_until};

/// What `tapmesh-switch reload` / `tapmesh-node reload` said.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Exit status (0 applied, 2 refused).
    pub code: i32,
    /// Its stdout (`reloaded: SUMMARY`).
    pub stdout: String,
    /// Its stderr (the one-line refusal).
    pub stderr: String,
}

/// `tapmesh-switch reload --socket socket`, the config as it is on disk.
pub fn run_switch(socket: &Path) -> Reply {
    run(&bins::bin(bins::SWITCH), socket)
}

fn run(binary: &Path, socket: &Path) -> Reply {
    let out = Command::new(binary)
        .args(["reload", "--socket"])
        .arg(socket)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
    Reply {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Writes `switch.toml` as the topology is set now and runs
/// `tapmesh-switch reload`.
pub fn switch(topo: &mut Topology) -> Reply {
    topo.write_switch_config();
    run_switch(&topo.admin_socket())
}

/// Writes `h{i}.toml` as the topology is set now and runs
/// `tapmesh-node reload` for host `i`.
pub fn node(topo: &mut Topology, i: usize) -> Reply {
    topo.write_node_config(i);
    run(&bins::bin(bins::NODE), &topo.node_admin_socket_path(i))
}

/// `(ok, refused)` reloads in a `status --json`.
pub fn counts(status: &serde_json::Value) -> (u64, u64) {
    (
        counter(status, &["reloads", "ok"]),
        counter(status, &["reloads", "refused"]),
    )
}

/// Writes `switch.toml`, sends the switch SIGHUP and waits (5 s at most)
/// until its status counts one more reload, applied or refused. Returns the
/// counts after.
pub fn switch_sighup(topo: &mut Topology) -> (u64, u64) {
    topo.write_switch_config();
    let before = counts(&topo.switch_status());
    topo.signal_switch(libc::SIGHUP);
    let mut after = before;
    let done = wait_until(Duration::from_secs(5), || {
        after = counts(&topo.switch_status());
        after != before
    });
    assert!(done, "the switch did not count a reload after SIGHUP");
    after
}

/// Like [`switch_sighup`] for host `i`'s node.
pub fn node_sighup(topo: &mut Topology, i: usize) -> (u64, u64) {
    topo.write_node_config(i);
    let before = counts(&topo.node_status(i));
    topo.signal_node(i, libc::SIGHUP);
    let mut after = before;
    let done = wait_until(Duration::from_secs(5), || {
        after = counts(&topo.node_status(i));
        after != before
    });
    assert!(done, "h{i}'s node did not count a reload after SIGHUP");
    after
}
