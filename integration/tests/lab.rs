//! `tapmesh-lab` on the shipped multicast lab (`labs/multicast.toml`): it
//! comes up from its file with one command, passes its scripted multicast
//! check, and leaves nothing behind (namespaces, links in this namespace,
//! processes, its directory), whether it ends after the script, on SIGINT,
//! on SIGTERM halfway up, or on a daemon failing halfway; a bad topology
//! file gives one line naming file, key and problem, and exit status 2.
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use integration::wait_until;

const LAB: &str = env!("CARGO_BIN_EXE_tapmesh-lab");
const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../labs/multicast.toml");
const CHECK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../labs/multicast-check.sh");
/// The example's hosts, and the switch.
const NAMESPACES: [&str; 5] = ["sw", "src", "rx1", "rx2", "rx3"];
/// Bring-up (five namespaces, five daemons) on two busy cores.
const UP: Duration = Duration::from_secs(90);
/// Teardown: every daemon gets SIGTERM, then SIGKILL after 3 s.
const DOWN: Duration = Duration::from_secs(60);

/// A lab name of its own per test (`--name`), so tests run in parallel.
fn unique_name() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("lt{}x{n}", std::process::id() % 1_000_000)
}

/// What a lab named `name` makes, and what was there before it.
struct Footprint {
    name: String,
    links_before: BTreeSet<String>,
    pids: BTreeSet<u32>,
}

impl Footprint {
    fn new(name: &str) -> Footprint {
        Footprint {
            name: name.to_string(),
            links_before: root_links(),
            pids: BTreeSet::new(),
        }
    }

    fn dir(&self) -> PathBuf {
        std::env::temp_dir().join(format!("tapmesh-lab-{}", self.name))
    }

    fn namespaces(&self) -> Vec<String> {
        NAMESPACES
            .iter()
            .map(|h| format!("{}-{h}", self.name))
            .filter(|n| integration::netns::exists(n))
            .collect()
    }

    /// Adds the daemons running with the lab's configs; returns how many
    /// there are now.
    fn note_daemons(&mut self) -> usize {
        let now = processes_mentioning(&self.dir());
        self.pids.extend(&now);
        now.len()
    }

    /// Panics with what is left: namespaces, new links here, daemons (the
    /// ones seen, and any mentioning the lab's directory), the directory.
    fn assert_nothing_left(&self) {
        assert!(
            self.namespaces().is_empty(),
            "namespaces left: {:?}",
            self.namespaces()
        );
        let new: Vec<String> = root_links()
            .difference(&self.links_before)
            .cloned()
            .collect();
        assert!(new.is_empty(), "links left in this namespace: {new:?}");
        let alive: Vec<&u32> = self
            .pids
            .iter()
            .filter(|p| Path::new(&format!("/proc/{p}")).exists())
            .collect();
        assert!(alive.is_empty(), "lab processes left: {alive:?}");
        let others = processes_mentioning(&self.dir());
        assert!(others.is_empty(), "lab processes left: {others:?}");
        assert!(!self.dir().exists(), "{} left", self.dir().display());
    }
}

/// Interface names in this (the test's) network namespace.
fn root_links() -> BTreeSet<String> {
    let out = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .expect("ip link");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or_default().to_string())
        .collect()
}

/// PIDs of processes whose command line mentions `dir` (the lab's daemons
/// run with `--config DIR/...`).
fn processes_mentioning(dir: &Path) -> BTreeSet<u32> {
    let needle = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&needle))
        })
        .collect()
}

fn lab(args: &[&str]) -> Command {
    let mut c = Command::new(LAB);
    c.args(args).env_remove("CARGO").stdin(Stdio::null());
    c
}

/// Starts the launcher with its stdout piped.
fn start(cmd: &mut Command) -> Child {
    cmd.stdout(Stdio::piped())
        .spawn()
        .expect("start tapmesh-lab")
}

/// Waits up to `timeout` for `child` to exit; kills it (by PID) if not.
fn wait_exit(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let mut status = None;
    wait_until(timeout, || {
        status = child.try_wait().expect("try_wait");
        status.is_some()
    });
    status.unwrap_or_else(|| {
        let _ = child.kill();
        panic!("tapmesh-lab did not exit within {timeout:?}");
    })
}

/// What an exited child wrote to its piped stdout and stderr.
fn output_of(child: &mut Child) -> String {
    use std::io::Read;
    let mut text = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut text);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut text);
    }
    text
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: kill has no memory-safety preconditions; the child is ours
    // and not yet reaped.
    unsafe { libc::kill(child.id() as libc::pid_t, sig) };
}

#[test]
fn the_multicast_lab_passes_its_scripted_check_and_leaves_nothing_behind() {
    integration::require_root();
    let name = unique_name();
    let mut fp = Footprint::new(&name);
    let mut child =
        start(lab(&["run", EXAMPLE, "--name", &name, "--", CHECK]).stderr(Stdio::piped()));
    // The daemons, while the check runs: a switch and four nodes.
    let all_seen = wait_until(UP, || {
        fp.note_daemons() == 5 || child.try_wait().is_ok_and(|s| s.is_some())
    });
    let status = wait_exit(&mut child, UP + DOWN);
    let text = output_of(&mut child);
    assert!(status.success(), "{status}: {text}");
    assert!(text.contains("multicast check passed"), "{text}");
    assert!(
        all_seen && fp.pids.len() >= 5,
        "saw daemons {:?}: {text}",
        fp.pids
    );
    fp.assert_nothing_left();
}

/// Reads the launcher's stdout until a line containing `marker`; returns
/// what it read (panics if the launcher ends first).
fn read_until(out: &mut impl BufRead, marker: &str) -> String {
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let n = out.read_line(&mut line).expect("read tapmesh-lab's stdout");
        assert!(n > 0, "tapmesh-lab ended before {marker:?}:\n{seen}");
        seen += &line;
        if line.contains(marker) {
            return seen;
        }
    }
}

#[test]
fn sigint_to_the_launcher_tears_the_running_lab_down() {
    integration::require_root();
    let name = unique_name();
    let mut fp = Footprint::new(&name);
    let mut child = start(lab(&["up", EXAMPLE, "--name", &name]).stderr(Stdio::inherit()));
    let mut out = BufReader::new(child.stdout.take().expect("piped"));
    let printed = read_until(&mut out, "tears everything down");
    // It says how to enter each host, and the hosts are really there.
    for h in ["src", "rx1", "rx2", "rx3"] {
        let enter = format!("ip netns exec {name}-{h} bash");
        assert!(printed.contains(&enter), "no {enter:?} in:\n{printed}");
    }
    assert!(printed.contains("tcpdump -ni tapmesh0"), "{printed}");
    assert_eq!(fp.namespaces().len(), 5, "{:?}", fp.namespaces());
    assert_eq!(fp.note_daemons(), 5, "daemons {:?}", fp.pids);
    // src and rx1 share VLAN 10: the overlay carries their ping.
    let ping = Command::new("ip")
        .args(["netns", "exec", &format!("{name}-src")])
        .args(["ping", "-n", "-c", "1", "-W", "5", "198.19.10.2"])
        .output()
        .expect("ping");
    assert!(
        ping.status.success(),
        "{}",
        String::from_utf8_lossy(&ping.stdout)
    );

    signal(&child, libc::SIGINT);
    let status = wait_exit(&mut child, DOWN);
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut out, &mut rest);
    assert!(status.success(), "{status}: {rest}");
    assert!(rest.contains("torn down"), "{rest}");
    fp.assert_nothing_left();
}

#[test]
fn sigterm_halfway_up_tears_down_what_was_built() {
    integration::require_root();
    let name = unique_name();
    let mut fp = Footprint::new(&name);
    let mut child = start(lab(&["up", EXAMPLE, "--name", &name]).stderr(Stdio::piped()));
    // As soon as the switch runs: the nodes are still to come.
    let switch_seen = wait_until(UP, || {
        fp.note_daemons() >= 1 || child.try_wait().is_ok_and(|s| s.is_some())
    });
    signal(&child, libc::SIGTERM);
    let status = wait_exit(&mut child, DOWN);
    let text = output_of(&mut child);
    assert!(switch_seen && !fp.pids.is_empty(), "no daemon seen: {text}");
    assert!(!status.success(), "a lab stopped halfway says so: {text}");
    assert!(text.contains("torn down"), "{text}");
    fp.assert_nothing_left();
}

#[test]
fn a_node_failing_halfway_up_leaves_nothing_behind() {
    integration::require_root();
    use std::os::unix::fs::PermissionsExt;
    let name = unique_name();
    let fp = Footprint::new(&name);
    // The real switch, and a node that makes keys but will not run.
    let bins = std::env::temp_dir().join(format!("{name}-bins"));
    let _ = std::fs::remove_dir_all(&bins);
    std::fs::create_dir_all(&bins).expect("bin dir");
    let real = integration::bins::bin(integration::bins::NODE);
    std::os::unix::fs::symlink(
        integration::bins::bin(integration::bins::SWITCH),
        bins.join("tapmesh-switch"),
    )
    .expect("link the switch");
    let fake = bins.join("tapmesh-node");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\ncase \"$1\" in run) echo 'node: broken on purpose' >&2; exit 1;; esac\nexec {} \"$@\"\n",
            real.display()
        ),
    )
    .expect("write the fake node");
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut child = start(
        lab(&["up", EXAMPLE, "--name", &name])
            .env("TAPMESH_BIN_DIR", &bins)
            .stderr(Stdio::piped()),
    );
    let status = wait_exit(&mut child, UP + DOWN);
    let text = output_of(&mut child);
    std::fs::remove_dir_all(&bins).expect("remove the bin dir");
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(text.contains("exited unexpectedly"), "{text}");
    assert!(text.contains("torn down"), "{text}");
    fp.assert_nothing_left();
}

/// Each bad file: what it says, the key the one line must name.
const BAD: &[(&str, &str)] = &[
    (
        "[[host]]\nname = \"a\"\naddress = [\"10.0.0.1/24\"]\n",
        "host[0].address",
    ),
    (
        "[[host]]\nname = \"a\"\naddress = [\"2001:db8::1/64\"]\n",
        "host[0].address",
    ),
    ("[[host]]\nname = \"a\"\ncolour = \"red\"\n", "colour"),
    (
        "[[host]]\nname = \"a\"\n[[host]]\nname = \"b\"\nvlan = 10\n[host.impair.egress]\nloss-percent = 150\n",
        "host[1].impair.egress.loss-percent",
    ),
    (
        "[multicast]\nquery-interval-secs = 0\n[[host]]\nname = \"a\"\n",
        "multicast.query-interval-secs",
    ),
    ("[[host]]\nname = \"a\"\nvlan = 5000\n", "host[0].vlan"),
    ("[[host]]\nname = \"A-1\"\n", "host[0].name"),
    ("name = \"x\"\n", "host"),
    ("mode = \"ring\"\n[[host]]\nname = \"a\"\n", "mode"),
];

#[test]
fn a_bad_topology_file_gives_one_line_and_exit_2() {
    let dir = std::env::temp_dir().join(format!("tapmesh-lab-bad-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    for (n, (text, key)) in BAD.iter().enumerate() {
        let file = dir.join(format!("bad{n}.toml"));
        std::fs::write(&file, text).expect("write a bad file");
        for cmd in ["check", "up"] {
            let out = lab(&[cmd, &file.to_string_lossy()])
                .output()
                .expect("run tapmesh-lab");
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{cmd} {text}: {err}");
            assert_eq!(
                err.trim().lines().count(),
                1,
                "{cmd} {text}: not one line: {err}"
            );
            assert!(
                err.contains(&format!("{}: {key}: ", file.display())),
                "{cmd} {text}: want file and key {key}: {err}"
            );
            assert!(
                String::from_utf8_lossy(&out.stdout).trim().is_empty(),
                "{cmd}: went on"
            );
            assert!(
                !integration::netns::exists(&format!("bad{n}-sw")),
                "{cmd} made a namespace"
            );
        }
    }
    std::fs::remove_dir_all(&dir).expect("remove the scratch dir");
}

#[test]
fn the_example_lab_checks_ok() {
    let out = lab(&["check", EXAMPLE]).output().expect("run tapmesh-lab");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{EXAMPLE}: ok")
    );
}
