//! The README's two commands on a machine that lacks a tool: the demo and the
//! namespace tests stop with one line naming what to install, a non-zero
//! status, and nothing left behind.
use std::path::Path;
use std::process::Command;

use integration::netns;

const DEMO: &str = env!("CARGO_BIN_EXE_tapmesh-demo");

/// A directory with a link to each of `tools` found in `PATH`, except
/// `ping`: the same machine, less one package. (Tools named by a full path
/// need no link.)
fn path_without_ping(dir: &Path, tools: &[integration::tools::Tool]) {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let in_path = tools.iter().filter(|t| !t.program.contains('/'));
    for t in in_path.filter(|t| t.program != "ping") {
        let found = integration::tools::find_in(t.program, &path)
            .unwrap_or_else(|| panic!("{} not found: apt-get install {}", t.program, t.package));
        std::os::unix::fs::symlink(&found, dir.join(t.program)).expect("symlink a tool");
    }
}

#[test]
fn the_demo_without_ping_names_the_package_in_one_line() {
    integration::require_root();
    let dir = std::env::temp_dir().join(format!("tm-demo-path-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    path_without_ping(&dir, integration::tools::DEMO);
    let child = Command::new(DEMO)
        .env("PATH", &dir)
        // Not under `cargo run`: the demo must not start a build here.
        .env_remove("CARGO")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the demo");
    let pid = child.id();
    let out = child.wait_with_output().expect("wait for the demo");
    std::fs::remove_dir_all(&dir).expect("remove the scratch dir");
    let err = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && out.status.code().is_some(),
        "exit status {}; stderr: {err}",
        out.status
    );
    assert_eq!(err.trim().lines().count(), 1, "not one line: {err}");
    assert!(
        err.contains("ping not found") && err.contains("apt-get install iputils-ping"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(stdout.trim().is_empty(), "the demo went on: {stdout}");
    let left = netns::list_with_prefix(&format!("{}{pid}x", netns::NAME_PREFIX));
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}

/// The namespace the next test makes in a child process that lacks `ping`.
#[test]
fn a_namespace_can_be_made() {
    let ns = integration::Netns::new(&format!("{}-t", netns::unique_prefix()));
    assert!(netns::exists(ns.name()));
}

/// `cargo test` on a machine without `ping`: the first namespace a test
/// process makes stops it with one line (this test binary again, running
/// only [`a_namespace_can_be_made`]).
#[test]
fn the_tests_without_ping_stop_with_one_line() {
    integration::require_root();
    let dir = std::env::temp_dir().join(format!("tm-tests-path-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    path_without_ping(&dir, integration::tools::TESTS);
    let out = Command::new(std::env::current_exe().expect("this test binary"))
        .args(["--exact", "a_namespace_can_be_made"])
        .env("PATH", &dir)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run this test binary");
    std::fs::remove_dir_all(&dir).expect("remove the scratch dir");
    let err = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}{err}");
    assert_eq!(
        err.trim(),
        "tapmesh namespace tests: ping not found: apt-get install iputils-ping"
    );
    assert!(!stdout.contains("panicked"), "{stdout}");
}
