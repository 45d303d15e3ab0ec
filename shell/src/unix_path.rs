//! Binding unix sockets at a path safely: the directory is created if
//! missing, a stale socket left by a previous run is replaced (anything else
//! at the path is refused, never deleted), and the socket gets its mode from
//! the moment it exists, so there is no window in which others could connect.
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

/// Bind a unix socket at `path` with `bind`, with permissions `mode` (e.g.
/// 0o600 for root-only, 0o660 for the owner's group too). A missing parent
/// directory is created with `dir_mode`.
pub fn bind_at<T>(
    path: &Path,
    mode: u32,
    dir_mode: u32,
    bind: impl FnOnce(&Path) -> io::Result<T>,
) -> io::Result<T> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
        && !dir.exists()
    {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(dir_mode))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        Err(_) => {}
    }
    let old = umask(!mode & 0o777);
    let s = bind(path);
    umask(old);
    let s = s?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(s)
}

fn umask(mask: u32) -> u32 {
    // SAFETY: umask only swaps the process's file mode mask; it cannot fail.
    unsafe { libc::umask(mask as libc::mode_t) as u32 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_stale_sockets_only() {
        let dir = std::env::temp_dir().join(format!("tm-unix-path-{}", std::process::id()));
        let p = dir.join("sub").join("s.sock");
        let bind = |p: &Path| std::os::unix::net::UnixDatagram::bind(p);
        let s = bind_at(&p, 0o660, 0o750, bind).unwrap();
        drop(s);
        // Stale socket from an earlier run: replaced.
        let _s = bind_at(&p, 0o660, 0o750, bind).unwrap();
        let m = std::fs::metadata(&p).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o660);
        // A regular file is never deleted.
        let f = dir.join("file");
        std::fs::write(&f, "x").unwrap();
        assert!(bind_at(&f, 0o660, 0o750, bind).is_err());
        assert!(f.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
