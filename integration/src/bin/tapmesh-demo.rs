//! `tapmesh-demo [HOSTS]`: builds a switch and HOSTS (default 3) hosts in
//! network namespaces, starts the real binaries, shows every pair pinging,
//! and keeps it all running until Ctrl-C (SIGINT) or SIGTERM, then removes
//! everything it made. Needs root, `ip` and `ping`: without one it stops
//! with one line naming what to install, before it builds or creates
//! anything. Finds the binaries beside itself (or in `TAPMESH_BIN_DIR`).
use std::time::Duration;

use integration::topology::{overlay_v4, overlay_v6};
use integration::{Topology, bins, stop, tools};

fn main() {
    let hosts: usize = match std::env::args().nth(1) {
        None => 3,
        Some(arg) => match arg.parse() {
            Ok(n) if (2..=50).contains(&n) => n,
            _ => {
                eprintln!("usage: tapmesh-demo [HOSTS]   (2..=50, default 3)");
                std::process::exit(2);
            }
        },
    };
    // Before the build, so a machine that lacks a tool learns it at once.
    tools::preflight("tapmesh-demo", tools::DEMO);
    if std::env::var_os("CARGO").is_some() {
        println!("building tapmesh-switch and tapmesh-node ...");
    }
    if let Err(e) = bins::build_if_run_by_cargo(&["tapmesh-switch", "tapmesh-node"]) {
        eprintln!("tapmesh-demo: {e}");
        std::process::exit(1);
    }
    // Before anything is built, so an early Ctrl-C still cleans up.
    stop::install_handlers();

    let mut topo = Topology::central(hosts);
    println!("built:\n{}", topo.describe());
    println!("starting tapmesh-switch and {hosts} tapmesh-node processes ...");
    if let Err(e) = topo.try_start_all(Duration::from_secs(30)) {
        topo.print_logs();
        eprintln!("tapmesh-demo: {e}");
        println!("tearing down {} ...", topo.prefix());
        drop(topo);
        std::process::exit(1);
    }
    println!("overlay is up.\n");

    for a in 1..=hosts {
        for b in (1..=hosts).filter(|&b| b != a) {
            for ip in [overlay_v4(b).to_string(), overlay_v6(b).to_string()] {
                if stop::requested() {
                    break;
                }
                println!("$ ip netns exec {} ping -c 3 {ip}", topo.ns(a).name());
                let out = topo
                    .ns(a)
                    .exec("ping", &["-n", "-c", "3", "-i", "0.2", &ip]);
                print!("{}", String::from_utf8_lossy(&out.stdout));
                println!();
            }
        }
    }

    let status_cmd = format!(
        "{} status --macs --socket {}",
        integration::bins::bin("tapmesh-switch").display(),
        topo.admin_socket().display()
    );
    println!("$ {status_cmd}");
    if let Ok(out) = std::process::Command::new("sh")
        .args(["-c", &status_cmd])
        .output()
    {
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
    println!(
        "\nrunning. Try:\n  ip netns exec {} ping {}\n  {status_cmd}\nCtrl-C tears everything down.",
        topo.ns(1).name(),
        overlay_v4(2)
    );
    while !stop::requested() {
        std::thread::sleep(Duration::from_millis(200));
        if !topo.switch_running() {
            eprintln!("the switch exited; tearing down");
            break;
        }
    }
    println!("tearing down {} ...", topo.prefix());
    drop(topo);
    println!("done.");
}
