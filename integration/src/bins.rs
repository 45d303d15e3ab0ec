//! Finding the `tapmesh-switch` and `tapmesh-node` binaries.
//!
//! Tests never run cargo: the binaries must already be built into the same
//! profile directory as the test executable (`cargo build --release --bins`
//! before `cargo test --release`), or `TAPMESH_BIN_DIR` names their directory.
use std::path::{Path, PathBuf};

/// The switch binary's file name.
pub const SWITCH: &str = "tapmesh-switch";
/// The node binary's file name.
pub const NODE: &str = "tapmesh-node";

/// The directory holding the binaries: `TAPMESH_BIN_DIR` if set, else the
/// directory of the running executable, one level up if that is `deps/`
/// (test executables live in `target/<profile>/deps/`, binaries in
/// `target/<profile>/`).
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TAPMESH_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("cannot find the running executable's path");
    let mut dir = exe
        .parent()
        .expect("the running executable has no parent directory")
        .to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    dir
}

/// The path of binary `name`; panics with a clear message if it is missing.
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        is_executable(&path),
        "{name} not found at {}: build the binaries into the same profile as the tests \
         (e.g. `cargo build --release --bins` before `cargo test --release -p integration`), \
         or set TAPMESH_BIN_DIR to their directory",
        path.display()
    );
    path
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Variables `cargo run` sets for the program it runs, describing that
/// program's package. A `cargo build` started from there must not inherit
/// them: build scripts that watch one (ring's watches `CARGO_MANIFEST_DIR`)
/// would see it change and rebuild their crate and everything above it, and
/// the user's next `cargo run` would rebuild it all again.
const CARGO_RUN_VARS: &[&str] = &[
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_CRATE_NAME",
    "CARGO_BIN_NAME",
    "CARGO_PRIMARY_PACKAGE",
];

/// Under `cargo run` (`CARGO` set), builds `packages` into the profile this
/// program runs from, so the README's one command is enough on a fresh
/// checkout; otherwise does nothing. Cargo releases its build lock before it
/// runs the program. The build is a no-op when `cargo run` just built them
/// (same features, same environment).
pub fn build_if_run_by_cargo(packages: &[&str]) -> Result<(), String> {
    let Some(cargo) = std::env::var_os("CARGO") else {
        return Ok(());
    };
    let release = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.ends_with("release")))
        .unwrap_or(false);
    let mut cmd = std::process::Command::new(cargo);
    cmd.arg("build");
    for p in packages {
        cmd.args(["-p", p]);
    }
    if release {
        cmd.arg("--release");
    }
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if CARGO_RUN_VARS.contains(&k.as_ref()) || k.starts_with("CARGO_PKG_") {
            cmd.env_remove(k.as_ref());
        }
    }
    match cmd.status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("building {} failed ({s})", packages.join(", "))),
        Err(e) => Err(format!(
            "cannot run cargo to build {}: {e}",
            packages.join(", ")
        )),
    }
}
