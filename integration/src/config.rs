//! Keys and configuration files, made with the binaries' own `keygen` and
//! `pubkey` subcommands so the tests exercise them too.
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A private key written to a file (mode 0600) and its public key.
#[derive(Debug, Clone)]
pub struct KeyPair {
    /// The file holding the base64 private key.
    pub private_key_file: PathBuf,
    /// The base64 public key.
    pub public_key: String,
}

impl KeyPair {
    /// Runs `binary keygen`, writes the private key to `file`, and derives the
    /// public key with `binary pubkey`.
    pub fn generate(binary: &Path, file: &Path) -> KeyPair {
        let private = run_stdout(binary, &["keygen"], None);
        let public = run_stdout(binary, &["pubkey"], Some(&private));
        write_private(file, &private);
        KeyPair {
            private_key_file: file.to_path_buf(),
            public_key: public,
        }
    }
}

impl KeyPair {
    /// A fresh key pair made in this process, the private key written to
    /// `file` (for configs that are only checked, never run).
    pub fn random(file: &Path) -> KeyPair {
        let secret = overlay_proto::keys::StaticSecret::generate(&mut rand::rng());
        write_private(file, &secret.to_base64());
        KeyPair {
            private_key_file: file.to_path_buf(),
            public_key: secret.public_key().to_base64(),
        }
    }
}

fn write_private(path: &Path, key: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    writeln!(f, "{key}").expect("writing key file");
}

/// Runs `binary args…` with optional stdin and returns its trimmed single-line
/// stdout; panics with stderr on failure or on empty output.
fn run_stdout(binary: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new(binary)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {} {args:?}: {e}", binary.display()));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("piped stdin");
        writeln!(pipe, "{input}").expect("writing key to stdin");
    }
    let out = child.wait_with_output().expect("waiting for key command");
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success() && !text.is_empty() && !text.contains('\n'),
        "`{} {}` failed or printed no single line ({}): stdout {text:?}, stderr {}",
        binary.display(),
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// One `[[node]]` entry of the switch's config.
#[derive(Debug, Clone)]
pub struct AdmittedNode {
    /// The node's name.
    pub name: String,
    /// Its base64 public key.
    pub public_key: String,
    /// More lines for its `[[node]]` table (e.g. `vlan = 10`), or empty.
    pub entry_extra: String,
    /// The `[[network]]` it is listed under; `None`: the top-level nodes.
    pub network: Option<NetworkRef>,
}

/// A `[[network]]` of the switch's config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkRef {
    /// `name`.
    pub name: String,
    /// `id`, the network id its nodes put in every header.
    pub id: u32,
    /// `mode`: `central` or `mesh`.
    pub mode: String,
}

/// What `switch.toml` says.
#[derive(Debug, Clone)]
pub struct SwitchConfig {
    /// `listen`, e.g. `198.18.0.3:7777`.
    pub listen: String,
    /// `private-key-file`.
    pub private_key_file: PathBuf,
    /// `admin-socket`.
    pub admin_socket: PathBuf,
    /// `state-file`.
    pub state_file: PathBuf,
    /// `mac-aging-secs`.
    pub mac_aging_secs: u64,
    /// `node-timeout-secs`.
    pub node_timeout_secs: u64,
    /// Extra top-level lines (e.g. `metrics-listen = "…"`), written before
    /// the `[[node]]` tables.
    pub extra: String,
    /// The admitted nodes.
    pub nodes: Vec<AdmittedNode>,
}

impl SwitchConfig {
    /// The TOML text.
    pub fn render(&self) -> String {
        let mut s = format!(
            "listen = {}\nprivate-key-file = {}\nadmin-socket = {}\nstate-file = {}\nmac-aging-secs = {}\nnode-timeout-secs = {}\n",
            quote(&self.listen),
            quote_path(&self.private_key_file),
            quote_path(&self.admin_socket),
            quote_path(&self.state_file),
            self.mac_aging_secs,
            self.node_timeout_secs,
        );
        s += &self.extra;
        if !self.extra.is_empty() && !self.extra.ends_with('\n') {
            s.push('\n');
        }
        let entry = |s: &mut String, table: &str, node: &AdmittedNode| {
            *s += &format!(
                "\n[[{table}]]\nname = {}\npublic-key = {}\n",
                quote(&node.name),
                quote(&node.public_key)
            );
            if !node.entry_extra.is_empty() {
                *s += &format!("{}\n", node.entry_extra.trim_end());
            }
        };
        for node in self.nodes.iter().filter(|n| n.network.is_none()) {
            entry(&mut s, "node", node);
        }
        let mut networks: Vec<&NetworkRef> = Vec::new();
        for n in self.nodes.iter().filter_map(|n| n.network.as_ref()) {
            if !networks.contains(&n) {
                networks.push(n);
            }
        }
        for net in networks {
            s += &format!(
                "\n[[network]]\nname = {}\nid = {}\nmode = {}\n",
                quote(&net.name),
                net.id,
                quote(&net.mode)
            );
            for node in self
                .nodes
                .iter()
                .filter(|n| n.network.as_ref() == Some(net))
            {
                entry(&mut s, "network.node", node);
            }
        }
        s
    }
}

/// What `node.toml` says.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// `name`.
    pub name: String,
    /// `private-key-file`.
    pub private_key_file: PathBuf,
    /// `switch`, the switch's UDP address (empty: the switches are
    /// `[[switch]]` tables in [`tables`](Self::tables)).
    pub switch: String,
    /// `switch-public-key`.
    pub switch_public_key: String,
    /// `admin-socket`.
    pub admin_socket: PathBuf,
    /// `[tap] name`.
    pub tap_name: String,
    /// `[tap] mtu`.
    pub tap_mtu: u32,
    /// `[tap] address`, CIDR strings.
    pub tap_addresses: Vec<String>,
    /// `[tap] mac`, if set (else derived from the key).
    pub tap_mac: Option<String>,
    /// `network-id` (written when not 0).
    pub network_id: u32,
    /// Extra top-level lines (e.g. `metrics-listen = "…"`), written before
    /// the `[tap]` table.
    pub extra: String,
    /// Write the `[tap]` table (a node with only VM ports has none).
    pub with_tap: bool,
    /// Tables written last (e.g. `[[vm-port]]` entries).
    pub tables: String,
}

impl NodeConfig {
    /// The TOML text.
    pub fn render(&self) -> String {
        let mut s = self.render_without_tap();
        if self.with_tap {
            let addrs: Vec<String> = self.tap_addresses.iter().map(|a| quote(a)).collect();
            s += &format!(
                "[tap]\nname = {}\nmtu = {}\naddress = [{}]\n",
                quote(&self.tap_name),
                self.tap_mtu,
                addrs.join(", "),
            );
            if let Some(m) = &self.tap_mac {
                s += &format!("mac = {}\n", quote(m));
            }
        }
        s + &self.tables
    }

    /// The top-level keys only (no `[tap]` table, no [`tables`](Self::tables)).
    pub fn render_without_tap(&self) -> String {
        // No `switch`: the switches are `[[switch]]` tables.
        let switch = if self.switch.is_empty() {
            String::new()
        } else {
            format!(
                "switch = {}\nswitch-public-key = {}\n",
                quote(&self.switch),
                quote(&self.switch_public_key)
            )
        };
        let mut s = format!(
            "name = {}\nprivate-key-file = {}\n{switch}admin-socket = {}\n{}\n",
            quote(&self.name),
            quote_path(&self.private_key_file),
            quote_path(&self.admin_socket),
            self.extra.trim_end(),
        );
        if self.network_id != 0 {
            s = format!("network-id = {}\n{s}", self.network_id);
        }
        s
    }
}

/// A TOML basic string. Our values never hold quotes or backslashes, but
/// escape them anyway rather than write a broken file.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn quote_path(p: &Path) -> String {
    quote(&p.to_string_lossy())
}

/// Writes `text` to `path`, panicking with the path on failure.
pub fn write_file(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// A switch as another one or a node names it: `[[cluster.switch]]` in a
/// switch's config, `[[switch]]` in a node's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchRef {
    /// `name`.
    pub name: String,
    /// `public-key`, base64.
    pub public_key: String,
    /// `endpoint`, the switch's `listen` address.
    pub endpoint: std::net::SocketAddr,
}

impl SwitchRef {
    /// The node's `[[switch]]` table for this switch.
    pub fn node_table(&self) -> String {
        self.table("switch")
    }

    fn table(&self, header: &str) -> String {
        format!(
            "[[{header}]]\nname = {}\nendpoint = {}\npublic-key = {}\n",
            quote(&self.name),
            quote(&self.endpoint.to_string()),
            quote(&self.public_key)
        )
    }
}

/// etcd settings of a switch's `[cluster]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdSettings {
    /// `etcd-endpoints`, e.g. `http://198.18.50.11:2379`.
    pub endpoints: Vec<String>,
    /// `lease-ttl-secs`.
    pub lease_ttl_secs: u64,
}

/// A switch's `[cluster]` table named `own`, with etcd if given, and one
/// `[[cluster.switch]]` per other switch (for a switch config's extra
/// lines: it ends with a table, so top-level keys must come before it).
pub fn cluster_section(own: &str, etcd: Option<&EtcdSettings>, others: &[SwitchRef]) -> String {
    let mut s = format!("[cluster]\nname = {}\n", quote(own));
    if let Some(e) = etcd {
        let endpoints: Vec<String> = e.endpoints.iter().map(|e| quote(e)).collect();
        s += &format!(
            "etcd-endpoints = [{}]\nlease-ttl-secs = {}\n",
            endpoints.join(", "),
            e.lease_ttl_secs
        );
    }
    for o in others {
        s += "\n";
        s += &o.table("cluster.switch");
    }
    s
}
