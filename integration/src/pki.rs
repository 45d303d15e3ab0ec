//! Certificates for tests, made with the `openssl` command-line tool in a
//! directory the caller owns (and removes): a [`TestCa`] and the
//! certificates it issues, ECDSA P-256, valid for a day.
//!
//! A leaf certificate is good for both TLS roles (`serverAuth`,
//! `clientAuth`): etcd members use one for clients and peers alike. Server
//! certificates carry their IP addresses in subjectAltName, which is what a
//! client connecting to `https://IP:PORT` checks.
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::netns::run_ok;

/// The `openssl` program (Debian's `openssl`).
pub const OPENSSL: &str = "openssl";

/// A certificate and its private key, as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The certificate.
    pub cert: PathBuf,
    /// Its private key (mode 0600).
    pub key: PathBuf,
}

/// A self-signed CA in `dir`.
#[derive(Debug, Clone)]
pub struct TestCa {
    dir: PathBuf,
    name: String,
    /// The CA's certificate (what clients and servers trust).
    pub cert: PathBuf,
    key: PathBuf,
}

impl TestCa {
    /// Makes a CA called `name` (its files `dir/name.crt` and
    /// `dir/name.key`).
    pub fn new(dir: &Path, name: &str) -> TestCa {
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            &path(&key),
            "-out",
            &path(&cert),
        ]);
        TestCa {
            dir: dir.to_owned(),
            name: name.to_string(),
            cert,
            key,
        }
    }

    /// Issues a certificate for `cn` (also the file names: `dir/cn.crt`,
    /// `dir/cn.key`), with `ips` in its subjectAltName.
    pub fn issue(&self, cn: &str, ips: &[IpAddr]) -> CertFiles {
        let cert = self.dir.join(format!("{cn}.crt"));
        let key = self.dir.join(format!("{cn}.key"));
        let csr = self.dir.join(format!("{cn}.csr"));
        let ext = self.dir.join(format!("{cn}.ext"));
        let mut lines = vec![
            "basicConstraints=CA:FALSE".to_string(),
            "keyUsage=critical,digitalSignature".to_string(),
            "extendedKeyUsage=serverAuth,clientAuth".to_string(),
        ];
        if !ips.is_empty() {
            let sans: Vec<String> = ips.iter().map(|ip| format!("IP:{ip}")).collect();
            lines.push(format!("subjectAltName={}", sans.join(",")));
        }
        std::fs::write(&ext, lines.join("\n") + "\n")
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", ext.display()));
        openssl(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            &format!("/CN={cn}"),
            "-keyout",
            &path(&key),
            "-out",
            &path(&csr),
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            &path(&csr),
            "-CA",
            &path(&self.cert),
            "-CAkey",
            &path(&self.key),
            "-CAcreateserial",
            "-CAserial",
            &path(&self.dir.join(format!("{}.srl", self.name))),
            "-days",
            "1",
            "-extfile",
            &path(&ext),
            "-out",
            &path(&cert),
        ]);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
            .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", key.display()));
        CertFiles { cert, key }
    }
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

fn openssl(args: &[&str]) {
    run_ok(OPENSSL, args);
}
