//! A second, independent switch for nodes with several switches: another
//! `tapmesh-switch` in the switch namespace at `198.18.0.4:7777`
//! (`fd00:18::4`), with its own key, state and admin socket, admitting the
//! same nodes. Once it exists every node started lists both switches as
//! `[[switch]]` tables, `sw1` (the topology's switch) first.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use serde_json::Value;

use super::{READY_TIMEOUT, SWITCH_PORT, Topology, Underlay, status_json};
use crate::config::{KeyPair, NodeConfig, SwitchRef, write_file};
use crate::{Process, bins, wait_until};

/// The second switch: its key and, while it runs, its process.
#[derive(Debug)]
pub(super) struct SecondSwitch {
    key: KeyPair,
    process: Option<Process>,
    runs: u32,
}

impl Topology {
    /// The second switch's UDP address for the chosen underlay.
    pub fn second_switch_addr(&self) -> SocketAddr {
        let ip: IpAddr = match self.underlay {
            Underlay::V4 => Ipv4Addr::new(198, 18, 0, 4).into(),
            Underlay::V6 => "fd00:18::4".parse::<Ipv6Addr>().expect("literal").into(),
        };
        SocketAddr::new(ip, SWITCH_PORT)
    }

    /// The second switch's admin socket.
    pub fn second_switch_admin_socket(&self) -> PathBuf {
        self.dir.join("switch2.sock")
    }

    /// Starts the second switch (adding its address to the switch
    /// namespace the first time) and waits until its admin socket answers.
    /// Nodes started from now on list both switches.
    pub fn start_second_switch(&mut self) {
        self.ensure_keys();
        if self.second_switch.is_none() {
            let (v4, v6) = ("198.18.0.4/24", "fd00:18::4/64");
            self.sw.ip(&["addr", "add", v4, "dev", "br0"]);
            self.sw.ip(&["addr", "add", v6, "dev", "br0", "nodad"]);
            let key = KeyPair::generate(&bins::bin(bins::SWITCH), &self.dir.join("switch2.key"));
            self.second_switch = Some(SecondSwitch {
                key,
                process: None,
                runs: 0,
            });
        }
        let mut cfg = self.switch_config();
        cfg.listen = self.second_switch_addr().to_string();
        cfg.private_key_file = self.dir.join("switch2.key");
        cfg.admin_socket = self.second_switch_admin_socket();
        cfg.state_file = self.dir.join("switch2.state");
        let path = self.dir.join("switch2.toml");
        write_file(&path, &cfg.render());
        let second = self.second_switch.as_mut().expect("made above");
        assert!(second.process.is_none(), "second switch already running");
        second.runs += 1;
        let log = self.dir.join(format!("switch2.{}.log", second.runs));
        self.logs.push(log.clone());
        let path = path.to_string_lossy().into_owned();
        let process = Process::spawn(
            "switch2",
            &self.sw,
            &bins::bin(bins::SWITCH),
            &self.run_args(&path),
            log,
        );
        self.second_switch.as_mut().expect("made above").process = Some(process);
        let ready = wait_until(READY_TIMEOUT, || self.try_second_switch_status().is_ok());
        assert!(
            ready,
            "second switch did not answer status within {READY_TIMEOUT:?}: {:?}",
            self.try_second_switch_status().err()
        );
    }

    /// `tapmesh-switch status --json` of the second switch, or why it failed.
    pub fn try_second_switch_status(&self) -> Result<Value, String> {
        status_json(&bins::bin(bins::SWITCH), &self.second_switch_admin_socket())
    }

    /// With a second switch, `cfg` lists both switches as `[[switch]]`
    /// tables instead of the one `switch`.
    pub(super) fn with_second_switch(&self, cfg: NodeConfig) -> NodeConfig {
        let Some(second) = &self.second_switch else {
            return cfg;
        };
        let first = SwitchRef {
            name: "sw1".into(),
            endpoint: self.switch_addr(),
            public_key: cfg.switch_public_key.clone(),
        };
        let other = SwitchRef {
            name: "sw2".into(),
            endpoint: self.second_switch_addr(),
            public_key: second.key.public_key.clone(),
        };
        super::with_switch_list(cfg, &[first, other])
    }

    /// Stops the second switch (SIGTERM by PID, then SIGKILL).
    pub(super) fn stop_second_switch(&mut self) {
        if let Some(s) = self.second_switch.as_mut() {
            drop(s.process.take());
        }
    }
}
