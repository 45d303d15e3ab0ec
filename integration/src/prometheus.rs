//! A real Prometheus server (Debian's `prometheus` package) started inside a
//! test namespace, with its own config and storage directory, scraping the
//! daemons' `/metrics` every second; queried through its HTTP API.
//!
//! The [`Prometheus`] guard stops the server (it is a [`Process`]) and removes
//! its directory on drop.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::http::{self, urlencode};
use crate::{Netns, Process, wait_until};

/// Where Debian installs the server.
pub const PROMETHEUS: &str = "/usr/bin/prometheus";
/// Where Debian installs `promtool`.
pub const PROMTOOL: &str = "/usr/bin/promtool";
/// The web UI and API address inside the namespace.
pub const WEB: &str = "127.0.0.1:9090";

/// One scrape job: its name and `host:port` targets.
#[derive(Debug, Clone)]
pub struct Job {
    /// `job_name`.
    pub name: String,
    /// `host:port` of each target.
    pub targets: Vec<SocketAddr>,
}

/// A running Prometheus server in a namespace.
#[derive(Debug)]
pub struct Prometheus<'a> {
    ns: &'a Netns,
    dir: PathBuf,
    process: Option<Process>,
}

/// Panics with what to install unless Debian's `prometheus` package is there.
pub fn require_installed() {
    for bin in [PROMETHEUS, PROMTOOL] {
        assert!(
            Path::new(bin).exists(),
            "{bin} not found: install Debian's prometheus package \
             (`apt-get install -y --no-install-recommends prometheus`; .ci/run does)"
        );
    }
}

impl<'a> Prometheus<'a> {
    /// Writes a config scraping `jobs` every second into `dir` (created), and
    /// starts the server in `ns`, listening on [`WEB`]. Waits until it is ready.
    pub fn start(ns: &'a Netns, dir: &Path, jobs: &[Job]) -> Prometheus<'a> {
        require_installed();
        std::fs::create_dir_all(dir.join("data"))
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let mut cfg = String::from(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nscrape_configs:\n",
        );
        for j in jobs {
            let targets: Vec<String> = j.targets.iter().map(|t| format!("'{t}'")).collect();
            cfg += &format!(
                "  - job_name: '{}'\n    static_configs:\n      - targets: [{}]\n",
                j.name,
                targets.join(", ")
            );
        }
        let config = dir.join("prometheus.yml");
        crate::config::write_file(&config, &cfg);
        let out = std::process::Command::new(PROMTOOL)
            .args(["check", "config"])
            .arg(&config)
            .output()
            .expect("running promtool check config");
        assert!(
            out.status.success(),
            "promtool rejects {}: {}{}",
            config.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let args = [
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", dir.join("data").display()),
            format!("--web.listen-address={WEB}"),
            "--log.level=warn".to_string(),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let process = Process::spawn(
            "prometheus",
            ns,
            Path::new(PROMETHEUS),
            &args,
            dir.join("prometheus.log"),
        );
        let mut p = Prometheus {
            ns,
            dir: dir.to_path_buf(),
            process: Some(process),
        };
        let ready = wait_until(Duration::from_secs(30), || {
            p.assert_running();
            p.get("/-/ready").is_ok_and(|r| r.status == 200)
        });
        assert!(ready, "prometheus not ready within 30 s; {}", p.log_tail());
        p
    }

    fn assert_running(&mut self) {
        let p = self.process.as_mut().expect("running");
        if let Some(status) = p.try_exit() {
            panic!("prometheus exited ({status}); {}", self.log_tail());
        }
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        format!(
            "log {}:\n{}",
            self.dir.join("prometheus.log").display(),
            crate::process::tail(&self.dir.join("prometheus.log"), 30)
        )
    }

    fn get(&self, target: &str) -> Result<http::Response, String> {
        http::get(self.ns, WEB.parse().expect("literal"), target)
    }

    /// Runs an instant PromQL query; returns the result vector (may be empty),
    /// or the API's error.
    pub fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let r = self.get(&format!("/api/v1/query?query={}", urlencode(expr)))?;
        let v: Value = serde_json::from_str(&r.body)
            .map_err(|e| format!("bad JSON from the query API ({e}): {}", r.body))?;
        if v["status"] != "success" {
            return Err(format!("query {expr:?} failed: {}", r.body));
        }
        Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
    }

    /// The first sample value of `expr`, if it has one.
    pub fn value(&self, expr: &str) -> Option<f64> {
        let r = self.query(expr).ok()?;
        r.first()?["value"][1].as_str()?.parse().ok()
    }

    /// Waits until `expr` returns something, for up to `timeout`.
    pub fn wait_for(&self, expr: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.query(expr).is_ok_and(|r| !r.is_empty()))
    }
}

impl Drop for Prometheus<'_> {
    fn drop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.stop();
        }
        if std::thread::panicking() {
            eprintln!("---- prometheus ----\n{}", self.log_tail());
        }
        if std::env::var_os("TAPMESH_KEEP_DIR").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
