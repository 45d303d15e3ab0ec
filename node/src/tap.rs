//! The real TAP device: created (or opened, if it exists and is persistent)
//! with tokio-tun, brought up with the configured MTU; addresses are added with
//! iproute2, since tokio-tun sets neither IPv6 addresses nor prefix lengths.
//!
//! A TAP this process created is not persistent, so the kernel removes it when
//! the process exits, however it exits.
use std::process::Command;

use tokio_tun::Tun;

use crate::config::TapConfig;

/// Errors from setting up the TAP.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// Creating or opening the device failed.
    #[error("cannot create TAP {name}: {source}")]
    Create {
        /// Interface name.
        name: String,
        /// Cause.
        #[source]
        source: tokio_tun::Error,
    },
    /// `ip addr add` failed.
    #[error("cannot add address {addr} to {name}: {detail}")]
    Address {
        /// Interface name.
        name: String,
        /// The address.
        addr: String,
        /// What `ip` said.
        detail: String,
    },
}

/// Create the TAP, set MTU, bring it up, add addresses.
pub fn open(cfg: &TapConfig) -> Result<Tun, TapError> {
    let mut tuns = Tun::builder()
        .name(&cfg.name)
        .tap()
        .mtu(cfg.mtu as i32)
        .up()
        .build()
        .map_err(|source| TapError::Create {
            name: cfg.name.clone(),
            source,
        })?;
    let tun = tuns.remove(0);
    for a in &cfg.addresses {
        let out = Command::new("ip")
            .args(["addr", "replace", &a.to_string(), "dev", tun.name()])
            .output();
        let detail = match out {
            Ok(o) if o.status.success() => continue,
            Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_owned(),
            Err(e) => e.to_string(),
        };
        return Err(TapError::Address {
            name: cfg.name.clone(),
            addr: a.to_string(),
            detail,
        });
    }
    Ok(tun)
}
