//! Bringing a checked [`Lab`] up as a [`Topology`]: a switch namespace and
//! one namespace per host, the real binaries, keys and configs in a
//! temporary directory. Dropping the topology tears it all down.
use std::path::PathBuf;
use std::time::Duration;

use super::file::Lab;
use crate::topology::TAP;
use crate::{Topology, bins, wait_until};

/// How long the nodes get to connect to the switch once started.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The lab's namespaces that exist already (another run of the same lab,
/// or one that was killed): bringing it up would collide with them.
pub fn existing_namespaces(lab: &Lab) -> Vec<String> {
    lab.namespaces()
        .into_iter()
        .filter(|n| crate::netns::exists(n))
        .collect()
}

/// Where the lab's keys, configs and logs go while it runs.
pub fn lab_dir(lab: &Lab) -> PathBuf {
    std::env::temp_dir().join(format!("tapmesh-lab-{}", lab.name))
}

/// Builds the lab's namespaces, starts the switch and every host's node, and
/// waits until every node is connected. Checks `stop` between the steps and
/// returns `Ok(None)` once it says so (the part built so far is torn down).
/// Panics where the topology does (a namespace or link that cannot be made,
/// a daemon that exits); the part built so far is torn down then too.
pub fn bring_up(lab: &Lab, stop: impl Fn() -> bool) -> Result<Option<Topology>, String> {
    let names: Vec<&str> = lab.hosts.iter().map(|h| h.name.as_str()).collect();
    let mut topo = Topology::named(&lab.name, lab_dir(lab), &names);
    topo.set_switch_config_extra(&lab.switch_extra);
    for (k, h) in lab.hosts.iter().enumerate() {
        topo.set_switch_node_entry_extra(k + 1, &h.node_entry);
        topo.set_tap_addresses(k + 1, h.addresses.clone());
    }
    if stop() {
        return Ok(None);
    }
    topo.start_switch();
    for i in 1..=lab.hosts.len() {
        if stop() {
            return Ok(None);
        }
        topo.start_node(i);
    }
    let all = 1..=lab.hosts.len();
    let connected = wait_until(CONNECT_TIMEOUT, || {
        stop() || all.clone().all(|i| topo.is_connected(i))
    });
    if stop() {
        return Ok(None);
    }
    if !connected {
        let missing: Vec<&str> = all
            .filter(|&i| !topo.is_connected(i))
            .map(|i| lab.hosts[i - 1].name.as_str())
            .collect();
        topo.print_logs();
        return Err(format!(
            "not connected to the switch within {CONNECT_TIMEOUT:?}: {}",
            missing.join(", ")
        ));
    }
    Ok(Some(topo))
}

/// What to tell people once the lab is up: each host and how to enter it,
/// how to watch the switch, how to capture.
pub fn instructions(lab: &Lab, topo: &Topology) -> String {
    let switch = bins::bin_dir().join(bins::SWITCH);
    let socket = topo.admin_socket();
    let width = lab.hosts.iter().map(|h| h.name.len()).max().unwrap_or(0);
    let mut s = format!(
        "lab {} is up: tapmesh-switch in namespace {} on {}, keys, configs and logs in {}\n\n",
        lab.name,
        lab.ns_name("sw"),
        topo.switch_addr(),
        topo.dir().display()
    );
    for h in &lab.hosts {
        let mut about = vec![h.port.clone(), h.addresses.join(" ")];
        if h.impaired {
            about.push("impaired".into());
        }
        about.retain(|a| !a.is_empty());
        s += &format!(
            "  {:width$}  ip netns exec {} bash      # {TAP}: {}\n",
            h.name,
            lab.ns_name(&h.name),
            about.join(", ")
        );
    }
    let first = lab.ns_name(&lab.hosts[0].name);
    s += &format!(
        "\nwatch the switch:\n  {} status {}\n  {} status --json {}\n",
        switch.display(),
        sw_args(&socket),
        switch.display(),
        sw_args(&socket),
    );
    s += &format!(
        "capture inside a host (always there):\n  ip netns exec {first} tcpdump -ni {TAP}\n\
         capture at the switch, every node's frames in clear:\n  {} capture {} | wireshark -k -i -\n",
        switch.display(),
        sw_args(&socket),
    );
    s += &format!(
        "break a link live:\n  {} impair {} --egress loss=5% delay=20ms {}\n",
        switch.display(),
        lab.hosts[0].name,
        sw_args(&socket),
    );
    s += "\nCtrl-C (or SIGTERM) tears everything down.\n";
    s
}

fn sw_args(socket: &std::path::Path) -> String {
    format!("--socket {}", socket.display())
}

/// The environment a script run with the lab up gets: `TAPMESH_LAB_NAME`
/// (host `h`'s namespace is `$TAPMESH_LAB_NAME-h`), `TAPMESH_LAB_SOCKET`
/// (the switch's admin socket), `TAPMESH_LAB_DIR`, and `PATH` with the
/// tapmesh binaries first.
pub fn script_env(lab: &Lab, topo: &Topology) -> Vec<(String, std::ffi::OsString)> {
    let mut dirs = vec![bins::bin_dir()];
    if let Some(here) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(PathBuf::from))
    {
        dirs.push(here);
    }
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    let path = std::env::join_paths(dirs).unwrap_or_default();
    vec![
        ("TAPMESH_LAB_NAME".into(), lab.name.clone().into()),
        (
            "TAPMESH_LAB_SOCKET".into(),
            topo.admin_socket().into_os_string(),
        ),
        ("TAPMESH_LAB_DIR".into(), topo.dir().as_os_str().to_owned()),
        ("PATH".into(), path),
    ]
}
