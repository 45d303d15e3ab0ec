//! `iperf3` runs between two namespaces: a one-shot server (`iperf3 -s -B ADDR
//! -1`) held by a [`Process`] guard, and a client whose `-J` output is parsed.
use std::net::IpAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::{Netns, Process, wait_until};

/// The TCP port iperf3 uses here.
pub const PORT: u16 = 5201;

/// What one iperf3 run measured (the receiver's view).
#[derive(Debug, Clone, Default)]
pub struct IperfResult {
    /// Receiver goodput in bit/s.
    pub bits_per_sec: f64,
    /// Bytes the receiver got.
    pub bytes: u64,
    /// Seconds the receiver measured over.
    pub seconds: f64,
    /// TCP retransmits (sender side), 0 for UDP.
    pub retransmits: u64,
    /// UDP: datagrams the receiver got per second.
    pub rx_pps: f64,
    /// UDP: datagrams sent.
    pub packets: u64,
    /// UDP: lost percentage.
    pub lost_percent: f64,
}

/// The traffic of one client run.
#[derive(Debug, Clone, Copy)]
pub enum Load {
    /// TCP with this many parallel streams.
    Tcp {
        /// `-P`.
        streams: u32,
    },
    /// UDP, unlimited rate (`-b 0`), with this payload size (`-l`).
    Udp {
        /// `-l`, bytes.
        payload: u32,
    },
}

/// Starts `iperf3 -s -B addr -1` in `server_ns`, waits until it listens, and
/// runs the client in `client_ns` for `secs` seconds. `on_start` is called
/// just before the client starts (to begin CPU sampling). Logs go to `dir`.
pub fn run(
    server_ns: &Netns,
    client_ns: &Netns,
    addr: IpAddr,
    load: Load,
    secs: u32,
    dir: &Path,
    tag: &str,
) -> Result<IperfResult, String> {
    let addr_s = addr.to_string();
    let port = PORT.to_string();
    let server_log = dir.join(format!("iperf3-server-{tag}.log"));
    let iperf3 = Path::new("iperf3");
    let mut server = Process::spawn(
        "iperf3-server",
        server_ns,
        iperf3,
        &["-s", "-B", &addr_s, "-p", &port, "-1"],
        &server_log,
    );
    let listening = wait_until(Duration::from_secs(5), || {
        is_listening(server_ns, addr, PORT) || !server.is_running()
    });
    if !listening || !server.is_running() {
        return Err(format!(
            "iperf3 server on {addr_s} did not start listening; log {}",
            server_log.display()
        ));
    }
    let out_path = dir.join(format!("iperf3-client-{tag}.json"));
    let out = std::fs::File::create(&out_path)
        .map_err(|e| format!("cannot create {}: {e}", out_path.display()))?;
    let mut cmd = client_ns.command("iperf3");
    cmd.args(["-c", &addr_s, "-p", &port, "-t", &secs.to_string(), "-J"]);
    cmd.args(["-i", "0"]);
    match load {
        Load::Tcp { streams } => {
            cmd.args(["-P", &streams.to_string()]);
        }
        Load::Udp { payload } => {
            cmd.args(["-u", "-b", "0", "-l", &payload.to_string()]);
        }
    }
    use std::os::unix::process::CommandExt;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::null())
        .process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start iperf3 client: {e}"))?;
    let status = crate::stop::wait_child(
        &mut child,
        Duration::from_secs(u64::from(secs) + 30),
        "iperf3 client",
    )?;
    drop(server);
    let text = std::fs::read_to_string(&out_path).unwrap_or_default();
    let json: Value = serde_json::from_str(&text).map_err(|e| {
        format!(
            "iperf3 client ({status}) printed no JSON ({e}); see {}",
            out_path.display()
        )
    })?;
    if let Some(err) = json.get("error").and_then(Value::as_str) {
        return Err(format!("iperf3 client: {err}"));
    }
    parse(&json, load)
}

/// Whether some TCP socket in `ns` listens on `addr:port`.
fn is_listening(ns: &Netns, addr: IpAddr, port: u16) -> bool {
    let file = if addr.is_ipv4() { "tcp" } else { "tcp6" };
    let suffix = format!(":{port:04X}");
    ns.proc_net(file).lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 3 && f[1].ends_with(&suffix) && f[3] == "0A"
    })
}

fn num(v: &Value, path: &[&str]) -> Option<f64> {
    let mut v = v;
    for k in path {
        v = v.get(k)?;
    }
    v.as_f64()
}

/// Parses iperf3's `-J` output for `load`.
pub fn parse(json: &Value, load: Load) -> Result<IperfResult, String> {
    match load {
        Load::Tcp { .. } => {
            let bps = num(json, &["end", "sum_received", "bits_per_second"])
                .ok_or("iperf3 JSON has no end.sum_received.bits_per_second")?;
            Ok(IperfResult {
                bits_per_sec: bps,
                bytes: num(json, &["end", "sum_received", "bytes"]).unwrap_or(0.0) as u64,
                seconds: num(json, &["end", "sum_received", "seconds"]).unwrap_or(0.0),
                retransmits: num(json, &["end", "sum_sent", "retransmits"]).unwrap_or(0.0) as u64,
                ..IperfResult::default()
            })
        }
        Load::Udp { .. } => {
            // iperf3 3.12's client reports the server's count of received and
            // lost datagrams in end.sum (newer ones also in end.sum_received).
            let sum = json
                .get("end")
                .and_then(|e| e.get("sum_received").or_else(|| e.get("sum")))
                .ok_or("iperf3 JSON has no end.sum")?;
            let packets = num(sum, &["packets"]).ok_or("no end.sum.packets")?;
            let lost = num(sum, &["lost_packets"]).unwrap_or(0.0);
            let seconds = num(sum, &["seconds"]).unwrap_or(0.0).max(1e-9);
            Ok(IperfResult {
                bits_per_sec: num(sum, &["bits_per_second"]).unwrap_or(0.0),
                bytes: num(sum, &["bytes"]).unwrap_or(0.0) as u64,
                seconds,
                rx_pps: (packets - lost).max(0.0) / seconds,
                packets: packets as u64,
                lost_percent: num(sum, &["lost_percent"]).unwrap_or(0.0),
                ..IperfResult::default()
            })
        }
    }
}
