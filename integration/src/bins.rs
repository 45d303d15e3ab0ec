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
