//! [`UnprivilegedNode`]: a `tapmesh-node` without a TAP, run as `nobody`
//! inside one of a [`Topology`]'s host namespaces (a node whose ports are
//! only VM sockets and userspace hosts needs no privileges).
//!
//! It runs with uid and gid 65534, no supplementary groups and no
//! capabilities (`setpriv`, which execs like `ip netns exec`, so the PID is
//! the node's). What it must read or create is handed to `nobody`: its key
//! file and the topology directory (for its admin and VM sockets); the
//! binary runs from a copy in that directory, so no root-only path on the
//! way to the build directory can hide it.
use std::os::unix::fs::chown;
use std::path::Path;

use crate::config::{NodeConfig, write_file};
use crate::process::tail;
use crate::topology::{READY_TIMEOUT, TAP, TAP_MTU};
use crate::{Process, Topology, bins, wait_until};

/// The user and group the node runs as (`nobody` and `nogroup` on Debian).
pub const NOBODY: u32 = 65534;
/// Lines of its log printed when a test fails.
const LOG_TAIL_LINES: usize = 60;

/// The running node; stopped (SIGTERM, then SIGKILL) on drop, with the tail
/// of its log printed if the test is failing. Declare it after the
/// [`Topology`], so it stops before the namespaces go.
#[derive(Debug)]
pub struct UnprivilegedNode {
    process: Process,
}

impl UnprivilegedNode {
    /// Starts host `i`'s node (name `h{i}`, the topology's key for it and
    /// its admin socket) with no `[tap]` and with `tables` after the
    /// topology's top-level keys (more top-level keys first, then e.g.
    /// `[[host]]` and `[[vm-port]]` tables), and waits until its admin
    /// socket answers. Host `i`'s own node must not be started.
    pub fn start(topo: &mut Topology, i: usize, tables: &str) -> UnprivilegedNode {
        let name = topo.host_name(i).to_string();
        // Makes every key, this host's included.
        let switch_public_key = topo.switch_public_key();
        let dir = topo.dir().to_path_buf();
        let key = dir.join(format!("{name}.key"));
        let config = NodeConfig {
            name: name.clone(),
            private_key_file: key.clone(),
            switch: topo.switch_addr().to_string(),
            switch_public_key,
            admin_socket: topo.node_admin_socket_path(i),
            tap_name: TAP.to_string(),
            tap_mtu: TAP_MTU,
            tap_addresses: Vec::new(),
            tap_mac: None,
            network_id: 0,
            extra: String::new(),
            with_tap: false,
            tables: String::new(),
        };
        let path = dir.join(format!("{name}-unprivileged.toml"));
        write_file(&path, &format!("{}\n{tables}", config.render_without_tap()));
        for p in [dir.as_path(), key.as_path()] {
            chown(p, Some(NOBODY), Some(NOBODY))
                .unwrap_or_else(|e| panic!("chown {}: {e}", p.display()));
        }
        let bin = dir.join(bins::NODE);
        std::fs::copy(bins::bin(bins::NODE), &bin)
            .unwrap_or_else(|e| panic!("copying {} to {}: {e}", bins::NODE, bin.display()));
        let mut cmd = topo.ns(i).command("setpriv");
        let id = NOBODY.to_string();
        cmd.args([
            &format!("--reuid={id}"),
            &format!("--regid={id}"),
            "--clear-groups",
            "--inh-caps=-all",
            "--",
        ])
        .arg(&bin)
        .arg("run")
        .arg("--config")
        .arg(&path);
        let log = dir.join(format!("{name}-unprivileged.log"));
        let mut node = UnprivilegedNode {
            process: Process::spawn_command(&name, cmd, log),
        };
        let ready = wait_until(READY_TIMEOUT, || {
            node.assert_running();
            topo.try_node_status(i).is_ok()
        });
        assert!(
            ready,
            "{name}: the unprivileged node did not answer on its admin socket within {READY_TIMEOUT:?}"
        );
        node
    }

    /// Its PID.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Panics, with its log, if it has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.process.try_exit() {
            panic!(
                "{}'s unprivileged node exited unexpectedly ({status}):\n{}",
                self.process.name(),
                tail(self.process.log(), LOG_TAIL_LINES)
            );
        }
    }

    fn log(&self) -> &Path {
        self.process.log()
    }
}

impl Drop for UnprivilegedNode {
    fn drop(&mut self) {
        self.process.stop();
        if std::thread::panicking() {
            eprintln!("---- tail of {} ----", self.log().display());
            eprintln!("{}", tail(self.log(), LOG_TAIL_LINES));
        }
    }
}
