//! The switch's state file: the last known underlay endpoint of each node, so
//! that after a restart (crash, upgrade) the switch can send every node an
//! authenticated restart notice and the LAN is back in one round trip instead
//! of after the nodes' keepalive timers. It holds no keys, only names and
//! addresses; it is written atomically (temp file + rename) with mode 0600.
use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
struct StateFile {
    endpoints: BTreeMap<String, SocketAddr>,
}

/// Read the endpoints; a missing or unreadable file is an empty list.
pub fn load(path: &Path) -> Vec<(String, SocketAddr)> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<StateFile>(&b).ok())
        .map(|s| s.endpoints.into_iter().collect())
        .unwrap_or_default()
}

/// Write the endpoints atomically.
pub fn save(path: &Path, endpoints: &[(String, SocketAddr)]) -> std::io::Result<()> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    let state = StateFile {
        endpoints: endpoints.iter().cloned().collect(),
    };
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(&state).map_err(std::io::Error::other)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_missing_file() {
        let p = std::env::temp_dir().join(format!("tm-state-{}", std::process::id()));
        assert!(load(&p).is_empty());
        let e = vec![("h1".to_owned(), "198.18.0.11:4000".parse().unwrap())];
        save(&p, &e).unwrap();
        assert_eq!(load(&p), e);
        std::fs::write(&p, b"garbage").unwrap();
        assert!(load(&p).is_empty());
        std::fs::remove_file(&p).unwrap();
    }
}
