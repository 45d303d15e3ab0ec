//! Real QEMU VMs for the VM port tests: QEMU, a Linux kernel and a busybox
//! initramfs, all from Debian packages, prepared by the test itself.
//!
//! Why not `apt-get install qemu-system-x86`: on the machines these tests
//! run on it wants to remove packages it cannot put back, and KVM does not
//! work there (they are VMs themselves), so QEMU runs with TCG. Instead the
//! packages are fetched with `apt-get download` and unpacked with
//! `dpkg-deb -x` into a cache under the target directory (`target/qemu-cache/`, or
//! `TAPMESH_QEMU_CACHE`), once; later runs reuse it. The initramfs (static
//! busybox, the virtio-net modules, an `/init` that sets the address given on
//! the kernel command line and runs a shell on the serial port) is written
//! here as a `newc` cpio archive, so no `cpio` is needed.
//!
//! A [`Vm`]'s serial console is a unix socket the test drives: it types
//! commands and reads their output and exit status ([`Vm::run`]).
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::{Netns, Process, wait_until};

/// Debian packages with QEMU itself, its firmware, and busybox. The
/// libraries QEMU needs that the machine lacks are found by apt (below).
const PACKAGES: &[&str] = &[
    "qemu-system-x86",
    "qemu-system-common",
    "qemu-system-data",
    "seabios",
    "ipxe-qemu",
    "busybox-static",
];

/// The kernel modules virtio-net needs, in load order (Debian 6.1 kernels
/// build them as modules).
const MODULES: &[&str] = &[
    "virtio_ring",
    "virtio",
    "virtio_pci_modern_dev",
    "virtio_pci_legacy_dev",
    "virtio_pci",
    "failover",
    "net_failover",
    "virtio_net",
];

/// Bump when the layout of the cache changes.
const CACHE_VERSION: &str = "v2";

/// The VM's `/init`: busybox applets, the NIC modules, the address from
/// `tmaddr=` on the kernel command line, then a shell on the serial port.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /tmp
for m in MODULES; do insmod /lib/modules/$m.ko; done
for i in $(seq 100); do [ -e /sys/class/net/eth0 ] && break; sleep 0.1; done
addr=$(sed -n 's/.*tmaddr=\([^ ]*\).*/\1/p' /proc/cmdline)
ip link set lo up
ip link set eth0 up
ip addr add "$addr" dev eth0
echo "tapmesh-vm: eth0 $addr"
export PS1='vm# '
exec sh </dev/ttyS0 >/dev/ttyS0 2>&1
"#;

/// QEMU, a kernel and an initramfs, ready to boot.
#[derive(Debug, Clone)]
pub struct Kit {
    root: PathBuf,
    kernel: PathBuf,
    initrd: PathBuf,
}

impl Kit {
    /// The prepared kit, made on first use (downloads ~90 MB from the
    /// Debian mirrors the machine's apt uses; takes a few seconds on a fast
    /// mirror) and cached across runs.
    pub fn get() -> Kit {
        static KIT: OnceLock<Kit> = OnceLock::new();
        KIT.get_or_init(|| {
            let dir = std::env::var_os("TAPMESH_QEMU_CACHE")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    let bins = crate::bins::bin_dir();
                    bins.parent().unwrap_or(&bins).join("qemu-cache")
                })
                .join(CACHE_VERSION);
            Kit::prepare(&dir)
        })
        .clone()
    }

    fn at(dir: &Path) -> Option<Kit> {
        let kernel = dir.join("vmlinuz");
        let initrd = dir.join("initrd.cpio");
        let root = dir.join("root");
        (dir.join("ready").exists() && kernel.exists() && initrd.exists()).then_some(Kit {
            root,
            kernel,
            initrd,
        })
    }

    fn prepare(dir: &Path) -> Kit {
        if let Some(k) = Kit::at(dir) {
            return k;
        }
        let t0 = Instant::now();
        let tmp = dir.with_extension(format!("tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let debs = tmp.join("debs");
        let root = tmp.join("root");
        std::fs::create_dir_all(debs.join("partial")).expect("create qemu cache dir");
        std::fs::create_dir_all(&root).expect("create qemu cache dir");
        // What this machine lacks to run QEMU (apt resolves it; download
        // only, nothing is installed), then the packages themselves (also if
        // installed: QEMU runs from the cache) and the kernel.
        run(Command::new("apt-get")
            .args([
                "install",
                "-y",
                "-qq",
                "--download-only",
                "--no-install-recommends",
            ])
            .arg("-o")
            .arg(format!("Dir::Cache::archives={}", debs.display()))
            .args(PACKAGES));
        let kernel_pkg = kernel_package();
        let mut pkgs: Vec<&str> = PACKAGES.to_vec();
        pkgs.push(&kernel_pkg);
        run(Command::new("apt-get")
            .arg("download")
            .args(&pkgs)
            .current_dir(&debs));
        for e in std::fs::read_dir(&debs).expect("read debs") {
            let p = e.expect("dir entry").path();
            if p.extension().is_none_or(|x| x != "deb") {
                continue;
            }
            if p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("linux-image"))
            {
                // Only the kernel and the few modules the VM loads.
                let script = "dpkg-deb --fsys-tarfile \"$1\" | tar -x -C \"$2\" --wildcards \
                              './boot/vmlinuz-*' '*/virtio*.ko*' '*/failover.ko*' '*/net_failover.ko*'";
                run(Command::new("sh")
                    .args(["-c", script, "sh"])
                    .arg(&p)
                    .arg(&root));
            } else {
                run(Command::new("dpkg-deb").arg("-x").arg(&p).arg(&root));
            }
        }
        let boot = root.join("boot");
        let vmlinuz = std::fs::read_dir(&boot)
            .expect("kernel unpacked")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz"))
            })
            .expect("vmlinuz in the kernel package");
        std::fs::rename(&vmlinuz, tmp.join("vmlinuz")).expect("move kernel");
        std::fs::write(tmp.join("initrd.cpio"), initramfs(&root)).expect("write initramfs");
        let _ = std::fs::remove_dir_all(&debs);
        std::fs::write(tmp.join("ready"), "").expect("mark cache ready");
        // Another process may have won the race: then use theirs.
        if Kit::at(dir).is_none() {
            let _ = std::fs::remove_dir_all(dir);
        }
        if std::fs::rename(&tmp, dir).is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        println!(
            "qemu kit prepared in {} in {:?}",
            dir.display(),
            t0.elapsed()
        );
        Kit::at(dir).expect("qemu kit ready")
    }

    /// The QEMU binary.
    pub fn qemu(&self) -> PathBuf {
        self.root.join("usr/bin/qemu-system-x86_64")
    }

    /// The static busybox the VMs run (also usable on the host, e.g. its
    /// `httpd` in a namespace).
    pub fn busybox(&self) -> PathBuf {
        self.root.join("bin/busybox")
    }
}

/// The kernel package `linux-image-amd64` points at (e.g.
/// `linux-image-6.1.0-41-amd64`).
fn kernel_package() -> String {
    let out = Command::new("apt-cache")
        .args(["depends", "linux-image-amd64"])
        .output()
        .expect("run apt-cache");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-"))
        .map(str::to_owned)
        .expect("apt-cache depends linux-image-amd64 names no kernel (run apt-get update?)")
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Read a kernel module, decompressing `.ko.xz` / `.ko.zst` if the kernel
/// package ships them compressed.
fn module_bytes(root: &Path, name: &str) -> Option<Vec<u8>> {
    let dir = std::fs::read_dir(root.join("lib/modules"))
        .ok()?
        .next()?
        .ok()?
        .path();
    let found = walk(&dir).into_iter().find(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.split('.').next() == Some(name))
    })?;
    let ext = found.extension().and_then(|e| e.to_str()).unwrap_or("");
    match ext {
        "ko" => std::fs::read(&found).ok(),
        "xz" | "zst" => {
            let tool = if ext == "xz" { "xz" } else { "zstd" };
            let out = Command::new(tool).arg("-dc").arg(&found).output().ok()?;
            out.status.success().then_some(out.stdout)
        }
        _ => None,
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The initramfs as an uncompressed `newc` cpio archive (the kernel takes
/// it as is).
fn initramfs(root: &Path) -> Vec<u8> {
    let mut a = Cpio::default();
    for d in ["bin", "dev", "proc", "sys", "tmp", "lib", "lib/modules"] {
        a.dir(d);
    }
    a.char_dev("dev/console", 5, 1);
    let busybox = std::fs::read(root.join("bin/busybox")).expect("busybox from busybox-static");
    a.file("bin/busybox", 0o755, &busybox);
    for m in MODULES {
        if let Some(b) = module_bytes(root, m) {
            a.file(&format!("lib/modules/{m}.ko"), 0o644, &b);
        }
    }
    a.file(
        "init",
        0o755,
        INIT.replace("MODULES", &MODULES.join(" ")).as_bytes(),
    );
    a.finish()
}

/// A minimal writer of the `newc` cpio format (the kernel's
/// `Documentation/driver-api/early-userspace/buffer-format.rst`).
#[derive(Default)]
struct Cpio {
    out: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        self.ino += 1;
        let fields = [
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            data.len() as u32,
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0,
        ];
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    fn dir(&mut self, name: &str) {
        self.entry(name, 0o040755, (0, 0), &[]);
    }

    fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, 0o100000 | perm, (0, 0), data);
    }

    fn char_dev(&mut self, name: &str, major: u32, minor: u32) {
        self.entry(name, 0o020600, (major, minor), &[]);
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        self.out
    }
}

/// A running VM: its QEMU process and its serial console.
#[derive(Debug)]
pub struct Vm {
    name: String,
    /// QEMU, stopped by PID when the VM is dropped.
    process: Process,
    console: UnixStream,
    /// Everything the console printed so far (also appended to the log).
    output: Arc<Mutex<String>>,
    next_marker: u32,
}

/// How a VM's NIC connects to the node.
#[derive(Debug, Clone)]
pub enum NetdevSpec {
    /// `-netdev stream,server=off`: QEMU connects to the node's socket.
    /// (QEMU 7.2 has no `reconnect`: if the node restarts, the link stays
    /// down; see [`NetdevSpec::StreamServer`].)
    Stream(PathBuf),
    /// `-netdev stream,server=on`: QEMU listens at the path, the node
    /// connects (a `connect = true` port) and reconnects after a restart.
    StreamServer(PathBuf),
    /// `-netdev dgram` from `local` (created by QEMU) to the node's socket.
    Dgram {
        /// QEMU's own socket.
        local: PathBuf,
        /// The node's socket.
        node: PathBuf,
    },
}

impl Vm {
    /// Boot a VM in `ns` (QEMU runs there; the VM reaches the node only
    /// through the socket), with MAC `mac`, address `addr` (CIDR) on eth0,
    /// its console socket and logs in `dir`.
    pub fn start(
        kit: &Kit,
        ns: &Netns,
        name: &str,
        net: &NetdevSpec,
        mac: &str,
        addr: &str,
        dir: &Path,
    ) -> Vm {
        let console = dir.join(format!("{name}.console"));
        let _ = std::fs::remove_file(&console);
        let netdev = match net {
            NetdevSpec::Stream(p) => format!(
                "stream,id=n0,server=off,addr.type=unix,addr.path={}",
                p.display()
            ),
            NetdevSpec::StreamServer(p) => {
                let _ = std::fs::remove_file(p);
                format!(
                    "stream,id=n0,server=on,addr.type=unix,addr.path={}",
                    p.display()
                )
            }
            NetdevSpec::Dgram { local, node } => {
                let _ = std::fs::remove_file(local);
                format!(
                    "dgram,id=n0,local.type=unix,local.path={},remote.type=unix,remote.path={}",
                    local.display(),
                    node.display()
                )
            }
        };
        let r = &kit.root;
        let mut cmd = ns.command(kit.qemu());
        cmd.env(
            "LD_LIBRARY_PATH",
            format!(
                "{}:{}",
                r.join("usr/lib/x86_64-linux-gnu").display(),
                r.join("lib/x86_64-linux-gnu").display()
            ),
        )
        .env("QEMU_MODULE_DIR", r.join("usr/lib/x86_64-linux-gnu/qemu"))
        .arg("-L")
        .arg(r.join("usr/share/qemu"))
        .arg("-L")
        .arg(r.join("usr/share/seabios"))
        .arg("-L")
        .arg(r.join("usr/lib/ipxe/qemu"))
        .args(["-nodefaults", "-display", "none", "-no-reboot"])
        .args(["-accel", "tcg,tb-size=32", "-m", "128", "-smp", "1"])
        .arg("-kernel")
        .arg(&kit.kernel)
        .arg("-initrd")
        .arg(&kit.initrd)
        .arg("-append")
        .arg(format!(
            "console=ttyS0 quiet loglevel=3 panic=-1 tmaddr={addr}"
        ))
        .arg("-chardev")
        .arg(format!(
            "socket,id=con,path={},server=on,wait=off",
            console.display()
        ))
        .args(["-serial", "chardev:con", "-monitor", "none"])
        .args(["-netdev", &netdev])
        .args([
            "-device",
            &format!("virtio-net-pci,netdev=n0,romfile=,mac={mac}"),
        ]);
        let log = dir.join(format!("{name}.qemu.log"));
        let mut process = Process::spawn_command(name, cmd, &log);
        let mut stream = None;
        let up = wait_until(Duration::from_secs(20), || {
            assert!(
                process.is_running(),
                "{name}: QEMU exited:\n{}",
                crate::process::tail(&log, 30)
            );
            stream = UnixStream::connect(&console).ok();
            stream.is_some()
        });
        assert!(up, "{name}: QEMU's console socket did not appear");
        let console_stream = stream.expect("connected");
        let output = Arc::new(Mutex::new(String::new()));
        let (mut reader, out, log_path) = (
            console_stream.try_clone().expect("clone console"),
            output.clone(),
            dir.join(format!("{name}.console.log")),
        );
        std::thread::spawn(move || {
            let mut log = std::fs::File::create(log_path).ok();
            let mut b = [0u8; 4096];
            while let Ok(n) = reader.read(&mut b) {
                if n == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&b[..n]).replace('\r', "");
                if let Some(l) = log.as_mut() {
                    let _ = l.write_all(text.as_bytes());
                }
                out.lock().expect("console buffer").push_str(&text);
            }
        });
        Vm {
            name: name.to_owned(),
            process,
            console: console_stream,
            output,
            next_marker: 1,
        }
    }

    /// Wait until the VM's shell answers (booted, eth0 configured).
    pub fn wait_booted(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            assert!(
                self.process.is_running(),
                "{}: QEMU exited while booting",
                self.name
            );
            if self.try_run("true", Duration::from_secs(3)).is_some() {
                return;
            }
        }
        panic!(
            "{} did not boot within {timeout:?}; console:\n{}",
            self.name,
            self.console_tail()
        );
    }

    /// The last lines of the console.
    pub fn console_tail(&self) -> String {
        let o = self.output.lock().expect("console buffer");
        let lines: Vec<&str> = o.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Run a shell command in the VM; its output and exit status, or `None`
    /// if it did not finish within `timeout`.
    pub fn try_run(&mut self, cmd: &str, timeout: Duration) -> Option<(String, i32)> {
        let n = self.next_marker;
        self.next_marker += 1;
        // The terminal echoes what we type: the marker is built by the shell
        // (`@@"N"-$?@@` prints as `@@N-STATUS@@`), so the echo never matches.
        let start = format!("@@S{n}@@");
        let line = format!("echo @@\"S{n}\"@@; {cmd}; echo @@\"{n}\"-$?@@\n");
        let from = self.output.lock().expect("console buffer").len();
        self.console.write_all(line.as_bytes()).ok()?;
        let end = format!("@@{n}-");
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            {
                let o = self.output.lock().expect("console buffer");
                let seen = &o[from..];
                if let (Some(s), Some(e)) = (seen.find(&start), seen.rfind(&end)) {
                    let rest = &seen[e + end.len()..];
                    if let Some(close) = rest.find("@@") {
                        let status = rest[..close].trim().parse().unwrap_or(-1);
                        let body = &seen[s + start.len()..e];
                        return Some((body.trim().to_owned(), status));
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Like [`try_run`](Self::try_run), panicking (with the console) on a
    /// timeout.
    pub fn run(&mut self, cmd: &str, timeout: Duration) -> (String, i32) {
        self.try_run(cmd, timeout).unwrap_or_else(|| {
            panic!(
                "{}: `{cmd}` did not finish within {timeout:?}; console:\n{}",
                self.name,
                self.console_tail()
            )
        })
    }

    /// One ping (`ping -c 1 -W 1`) from the VM.
    pub fn ping(&mut self, to: &str) -> bool {
        self.try_run(
            &format!("ping -c 1 -W 1 {to} >/dev/null"),
            Duration::from_secs(5),
        )
        .is_some_and(|(_, rc)| rc == 0)
    }

    /// Ping until one answer comes or `timeout` passes.
    pub fn ping_within(&mut self, to: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.ping(to))
    }

    /// QEMU's PID.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}
