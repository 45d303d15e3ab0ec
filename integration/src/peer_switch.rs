//! Another switch of a cluster beside a [`Topology`]'s own: a
//! `tapmesh-switch` in one host's namespace (that host is then no node),
//! listening on the host's underlay address at [`SWITCH_PORT`], with its own
//! key, config, state file and admin socket in the topology's directory.
//! The two switches peer through `[cluster]` sections
//! ([`cluster_section`](crate::config::cluster_section), naming each other
//! with [`PeerSwitch::switch_ref`]);
//! nodes are homed on it with [`Topology::set_node_switch`].
//!
//! The [`PeerSwitch`] guard stops the process (by PID) on drop: declare it
//! after the topology so it goes first.
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::config::{AdmittedNode, KeyPair, SwitchConfig, SwitchRef, write_file};
use crate::topology::{SWITCH_PORT, status_json, underlay_v4};
use crate::{Process, Topology, bins, wait_until};

/// How long a started switch gets to answer `status`.
const READY: Duration = Duration::from_secs(10);

/// Another switch in host `host`'s namespace (see the module doc).
#[derive(Debug)]
pub struct PeerSwitch {
    name: String,
    host: usize,
    dir: PathBuf,
    key: KeyPair,
    process: Option<Process>,
}

impl PeerSwitch {
    /// Switch `name` in host `host`'s namespace: generates its key and takes
    /// the host out of the topology's nodes. Not started yet: the other
    /// switch's config needs its key first.
    pub fn new(topo: &mut Topology, host: usize, name: &str) -> PeerSwitch {
        topo.set_admitted(host, false);
        let key = KeyPair::generate(
            &bins::bin(bins::SWITCH),
            &topo.dir().join(format!("{name}.key")),
        );
        PeerSwitch {
            name: name.to_string(),
            host,
            dir: topo.dir().to_path_buf(),
            key,
            process: None,
        }
    }

    /// Its UDP address: the host's underlay address, [`SWITCH_PORT`].
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::from(underlay_v4(self.host)), SWITCH_PORT)
    }

    /// Its public key.
    pub fn public_key(&self) -> &str {
        &self.key.public_key
    }

    /// How the other switches list it (`[[cluster.switch]]`) and nodes
    /// name it (`[[switch]]`).
    pub fn switch_ref(&self) -> SwitchRef {
        SwitchRef {
            name: self.name.clone(),
            public_key: self.key.public_key.clone(),
            endpoint: self.addr(),
        }
    }

    /// The host whose namespace it runs in.
    pub fn host(&self) -> usize {
        self.host
    }

    fn file(&self, ext: &str) -> PathBuf {
        self.dir.join(format!("{}.{ext}", self.name))
    }

    /// Writes its config (`listen`, key, admin socket, state file, the
    /// defaults' aging and timeout, top-level `extra` such as its
    /// `[cluster]` section, and a `[[node]]` for each of `nodes` with the
    /// topology's keys and entry lines, as the topology's switch has them) and starts it; waits until its admin socket answers.
    pub fn start(&mut self, topo: &mut Topology, nodes: &[usize], extra: &str) {
        assert!(self.process.is_none(), "{} already running", self.name);
        let cfg = SwitchConfig {
            listen: self.addr().to_string(),
            private_key_file: self.key.private_key_file.clone(),
            admin_socket: self.file("sock"),
            state_file: self.file("state"),
            mac_aging_secs: 300,
            node_timeout_secs: 30,
            extra: extra.to_string(),
            nodes: nodes
                .iter()
                .map(|&i| AdmittedNode {
                    name: topo.host_name(i).to_string(),
                    public_key: topo.node_public_key(i),
                    entry_extra: topo.switch_node_entry_extra(i).to_string(),
                    network: None,
                })
                .collect(),
        };
        let config = self.file("toml");
        write_file(&config, &cfg.render());
        let config = config.to_string_lossy().into_owned();
        self.process = Some(Process::spawn(
            &self.name,
            topo.ns(self.host),
            &bins::bin(bins::SWITCH),
            &["run", "--config", &config],
            self.file("log"),
        ));
        assert!(
            wait_until(READY, || self.status().is_ok()),
            "{} did not answer status within {READY:?}: {:?}",
            self.name,
            self.status().err()
        );
    }

    /// `tapmesh-switch status --json` of this switch, or why it failed.
    pub fn status(&self) -> Result<Value, String> {
        status_json(&bins::bin(bins::SWITCH), &self.file("sock"))
    }

    /// `kill -9`, as a crash.
    pub fn kill9(&mut self) {
        if let Some(p) = self.process.as_mut() {
            p.kill9();
        }
    }
}

impl Drop for PeerSwitch {
    fn drop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.stop();
            if std::thread::panicking() {
                eprintln!(
                    "----- {} -----\n{}",
                    p.log().display(),
                    crate::process::tail(p.log(), 40)
                );
            }
        }
    }
}
