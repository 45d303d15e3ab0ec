//! Puts the git commit into `TAPMESH_COMMIT` for `--version` (see
//! `tapmesh_shell::VERSION`).
//!
//! The commit is `$TAPMESH_COMMIT` if set (a build from a source tarball or a
//! Debian source package can pass it), else `git rev-parse --short HEAD` when
//! this crate sits in the root of a git checkout of tapmesh, else "unknown".
//! The script reruns only when HEAD or the branch it points to moves, so an
//! ordinary rebuild costs no git call.
use std::path::{Path, PathBuf};
use std::process::Command;

fn git(root: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!s.is_empty()).then_some(s)
}

/// The short commit of the checkout at `root`, and marks the files that
/// change when HEAD moves as inputs of this script.
fn commit_of_checkout(root: &Path) -> Option<String> {
    // Only tapmesh's own checkout: a source tree unpacked inside some other
    // repository must not report that repository's commit.
    let top = PathBuf::from(git(root, &["rev-parse", "--show-toplevel"])?);
    if top.canonicalize().ok()? != root.canonicalize().ok()? {
        return None;
    }
    let abs =
        |what: &str| git(root, &["rev-parse", "--path-format=absolute", what]).map(PathBuf::from);
    let git_dir = abs("--git-dir")?;
    let common_dir = abs("--git-common-dir")?;
    // HEAD (per worktree); the branch's loose ref if there is one, else
    // packed-refs and the directory where git writes the loose ref on the
    // next commit. Only existing paths: cargo reruns for a missing one.
    let mut inputs = vec![git_dir.join("HEAD"), common_dir.join("packed-refs")];
    if let Some(branch) = git(root, &["symbolic-ref", "-q", "HEAD"]) {
        let loose = common_dir.join(&branch);
        match loose.exists() {
            true => inputs.push(loose),
            false => inputs.extend(loose.parent().map(Path::to_path_buf)),
        }
    }
    for p in inputs.iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    git(root, &["rev-parse", "--short=12", "HEAD"])
}

fn main() {
    println!("cargo:rerun-if-env-changed=TAPMESH_COMMIT");
    println!("cargo:rerun-if-changed=build.rs");
    let commit = std::env::var("TAPMESH_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| {
            let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?);
            commit_of_checkout(manifest.parent()?)
        })
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=TAPMESH_COMMIT={commit}");
}
