//! `--mac-churn R[,R...]`: what MAC churn costs etcd. One switch with
//! `[cluster]` on a real one-member etcd (Debian's etcd in namespaces of its
//! own, [`integration::etcd`]) and [`NODES`] simulated nodes; runs of
//! `--secs` each:
//!
//! - **new MACs**, one run per rate R: R frames/s, each from a source MAC
//!   never seen before (nodes 2.. in turn, to node 0's MAC). With
//!   `mac-aging-secs = 1` as many age out once the first second is over: R
//!   MACs learned plus R aged out per second, and each is a key this switch
//!   puts or deletes in etcd.
//! - **moves**, at the highest R: R frames/s from [`FLAP_MACS`] MACs that
//!   alternate between nodes 2 and 3: every frame moves a MAC, but its key's
//!   value (this switch) does not change, so nothing should be written.
//!
//! Before each run the MACs of the one before have aged out, so a run counts
//! its own changes only.
//!
//! Nodes 0 and 1 send each other a frame every tick, so the sink MAC stays
//! learned through the aging. Measured per run: MAC changes/s (learned + aged
//! out + moves, from status), keys and transactions this switch wrote
//! (`etcd` in status), etcd's own puts, deletes, transactions and WAL fsyncs
//! (its `/metrics`), the CPU of etcd and of the switch, and the keys still
//! pending when the run ended with the time they took to drain.
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use integration::bench::cpu::CpuSample;
use integration::bench::histogram::Histogram;
use integration::etcd::{CLIENT_PORT, EtcdCluster, HEALTHY_TIMEOUT, member_v4};
use integration::{Netns, http, stop, wait_until};
use serde_json::{Value, json};
use tapmesh_switch::etcd::outbox::{BATCH_INTERVAL, MAX_BATCH_OPS};

use crate::{SwitchConfig, SwitchUnderTest, Worker, cluster, connect, ether, gen_keys, mac};

/// Simulated nodes: two sinks and the nodes that churn.
const NODES: usize = 32;
/// The switch's MAC aging (the smallest it takes).
const AGING_SECS: u64 = 1;
/// MACs that move back and forth in the moves run.
const FLAP_MACS: usize = 64;
/// Sending is paced in ticks of this length.
const TICK: Duration = Duration::from_millis(10);
/// How long the switch gets to write what is still pending after a run, and
/// to age out the MACs of the run before.
const DRAIN: Duration = Duration::from_secs(60);
/// The switch's link to the etcd subnet.
const ETCD_LINK: &str = "etcd0";
/// etcd's counters read before and after each run.
const ETCD_COUNTERS: [&str; 4] = [
    "etcd_mvcc_put_total",
    "etcd_mvcc_delete_total",
    "etcd_mvcc_txn_total",
    "etcd_disk_wal_fsync_duration_seconds_count",
];

/// Churning MAC `j` of node `k`: locally administered, apart from [`mac`]'s.
fn churn_mac(k: usize, j: usize) -> [u8; 6] {
    [
        0x06,
        (k >> 8) as u8,
        k as u8,
        (j >> 16) as u8,
        (j >> 8) as u8,
        j as u8,
    ]
}

/// Flapping MAC `m` (apart from every [`churn_mac`] a run of new MACs uses).
fn flap_mac(m: usize) -> [u8; 6] {
    churn_mac(0xffff, m)
}

/// The sum of the samples of metric `name` in a Prometheus text page.
fn metric(page: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in page.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        if let Some(v) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// What is counted before and after a run.
#[derive(Debug)]
struct Counts {
    switch: Value,
    etcd: Vec<Option<f64>>,
}

struct Churn<'a> {
    sw: &'a SwitchUnderTest,
    etcd: &'a EtcdCluster,
    metrics: SocketAddr,
}

impl Churn<'_> {
    /// Waits until the switch's status satisfies `ok` and nothing waits to
    /// be written.
    fn wait_written(&self, what: &str, ok: impl Fn(&Value) -> bool) -> Result<(), String> {
        self.wait_written_while(what, ok, || {})
    }

    /// [`Self::wait_written`], calling `between` before each look at the
    /// status (to keep MACs from aging out while it waits).
    fn wait_written_while(
        &self,
        what: &str,
        ok: impl Fn(&Value) -> bool,
        mut between: impl FnMut(),
    ) -> Result<(), String> {
        let done = wait_until(DRAIN, || {
            between();
            self.sw
                .status()
                .is_ok_and(|s| ok(&s) && s["etcd"]["pending"].as_u64() == Some(0))
        });
        if done {
            Ok(())
        } else {
            Err(format!(
                "not {what} with nothing pending within {DRAIN:?}: {}",
                self.sw.status().map_or(Value::Null, |s| s["etcd"].clone())
            ))
        }
    }

    /// Waits until the switch holds at most `macs` MACs (the run before's
    /// have aged out) and has written their removal.
    fn settle(&self, macs: usize) -> Result<(), String> {
        self.wait_written(&format!("down to {macs} MACs"), |s| {
            s["mac_table"]["entries"].as_u64() <= Some(macs as u64)
        })
    }

    fn counts(&self) -> Result<Counts, String> {
        let page = http::get(self.etcd.hub(), self.metrics, "/metrics")?.body;
        Ok(Counts {
            switch: self.sw.status()?,
            etcd: ETCD_COUNTERS.iter().map(|n| metric(&page, n)).collect(),
        })
    }

    /// Sends `rate` frames/s for `secs` built by `frame(i, buf)` (the
    /// `i`-th of the run: node and frame length), besides one frame each way
    /// between the sinks every tick; then waits for the switch to write what
    /// is pending. Returns the run's figures.
    fn run(
        &self,
        worker: &mut Worker,
        kind: &str,
        rate: u64,
        secs: f64,
        mut frame: impl FnMut(usize, &mut [u8]) -> (usize, usize),
    ) -> Result<Value, String> {
        let what = if kind == "new_macs" { "new MACs" } else { kind };
        let name = format!("{what} at {rate}/s");
        let etcd_pid = self.etcd.pid(1).unwrap_or(0);
        let before = self.counts()?;
        let sample = CpuSample::start(&[etcd_pid, self.sw.pid()]);
        let start = Instant::now();
        let end = start + Duration::from_secs_f64(secs);
        let mut hist = Histogram::new();
        let mut sent = 0usize;
        while Instant::now() < end {
            stop::check()?;
            let due = (start.elapsed().as_secs_f64() * rate as f64) as usize;
            let n = due.saturating_sub(sent);
            let base = sent;
            worker.pump(
                |seq, buf| match seq {
                    0 => (0, ether(buf, mac(1, 0), mac(0, 0), 64, false)),
                    1 => (1, ether(buf, mac(0, 0), mac(1, 0), 64, false)),
                    s => frame(base + s as usize - 2, buf),
                },
                None,
                Some(2 + n as u64),
                u64::MAX,
                start,
                &mut hist,
            );
            sent = due;
            let next =
                start + TICK.mul_f64((start.elapsed().as_secs_f64() / TICK.as_secs_f64()).ceil());
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
        let usage = sample.finish();
        let after = self.counts()?;
        let pending_at_end = after.switch["etcd"]["pending"].as_u64().unwrap_or(0);
        let drained = Instant::now();
        let drain = self.wait_written("drained", |_| true);
        let drain_secs = drained.elapsed().as_secs_f64();
        let wall = usage.wall_secs;
        let d = |path: [&str; 2]| {
            after.switch[path[0]][path[1]]
                .as_u64()
                .unwrap_or(0)
                .saturating_sub(before.switch[path[0]][path[1]].as_u64().unwrap_or(0))
        };
        let learned = d(["mac_table", "learned"]);
        let aged = d(["mac_table", "aged_out"]);
        let moves = d(["mac_table", "moves"]);
        let changes = learned + aged + moves;
        let writes = d(["etcd", "writes"]);
        let txns = d(["etcd", "txns"]);
        let per_sec = |v: u64| v as f64 / wall;
        let etcd_rate = |i: usize| match (before.etcd[i], after.etcd[i]) {
            (Some(a), Some(b)) => json!((b - a) / wall),
            _ => Value::Null,
        };
        let limit_hits = d(["mac_table", "node_limit_hits"]) + d(["mac_table", "table_limit_hits"]);
        let r = json!({
            "run": name,
            "kind": kind,
            "seconds": wall,
            "frames_sent": sent,
            "offered_per_sec": rate,
            "mac_learned": learned,
            "mac_aged_out": aged,
            "mac_moves": moves,
            "mac_limit_hits": limit_hits,
            "mac_changes_per_sec": per_sec(changes),
            "switch_keys_written_per_sec": per_sec(writes),
            "switch_txns_per_sec": per_sec(txns),
            "keys_per_txn": if txns > 0 { json!(writes as f64 / txns as f64) } else { Value::Null },
            "keys_written_per_mac_change": if changes > 0 { json!(writes as f64 / changes as f64) } else { Value::Null },
            "etcd_puts_per_sec": etcd_rate(0),
            "etcd_deletes_per_sec": etcd_rate(1),
            "etcd_txns_per_sec": etcd_rate(2),
            "etcd_wal_fsyncs_per_sec": etcd_rate(3),
            "etcd_cpu_cores": usage.cores(etcd_pid),
            "switch_cpu_cores": usage.cores(self.sw.pid()),
            "write_failures": d(["etcd", "write_failures"]),
            "pending_at_end": pending_at_end,
            "drain_seconds": if drain.is_ok() { json!(drain_secs) } else { Value::Null },
        });
        let f = |k: &str| r[k].as_f64().unwrap_or(0.0);
        println!(
            "   {name}: {:.0} MAC changes/s ({learned} learned, {aged} aged out, {moves} moves) -> \
             {:.0} keys/s in {:.1} txns/s ({:.1} keys/txn); etcd {:.0} puts/s {:.0} deletes/s \
             {:.1} txns/s {:.1} fsyncs/s, {:.0} % CPU; switch {:.0} % CPU; {pending_at_end} pending at the end, \
             drained in {drain_secs:.2} s",
            f("mac_changes_per_sec"),
            f("switch_keys_written_per_sec"),
            f("switch_txns_per_sec"),
            f("keys_per_txn"),
            f("etcd_puts_per_sec"),
            f("etcd_deletes_per_sec"),
            f("etcd_txns_per_sec"),
            f("etcd_wal_fsyncs_per_sec"),
            100.0 * f("etcd_cpu_cores"),
            100.0 * f("switch_cpu_cores"),
        );
        drain.map_err(|e| format!("{name}: {e}"))?;
        Ok(r)
    }
}

/// The MAC churn phase (see the module doc).
pub fn phase(ns: &Netns, dir: &Path, args: &crate::Args) -> Result<Value, String> {
    let rate = args.mac_churn.iter().copied().max().unwrap_or(1);
    println!(
        "== MAC churn: one switch on a one-member etcd, {NODES} nodes, {:?} MACs/s, aging {AGING_SECS} s",
        args.mac_churn
    );
    let mut etcd = EtcdCluster::start(1);
    etcd.wait_healthy(HEALTHY_TIMEOUT)?;
    etcd.attach(ns, ETCD_LINK);
    let switch_key = gen_keys(1).pop().expect("one key");
    let keys = gen_keys(NODES);
    // Room for every MAC learned within the aging time and the time the
    // table takes to sweep it, spread over the churning nodes.
    let per_node = (rate as usize * (AGING_SECS as usize + 2)).div_ceil(NODES - 2) + FLAP_MACS;
    let c = SwitchConfig {
        mac_aging_secs: AGING_SECS,
        tail: cluster::section(0, &etcd.endpoint_list()[..1], &[]),
        ..SwitchConfig::new("churn", &switch_key, &keys, per_node)
    };
    let sw = SwitchUnderTest::start(ns, dir, &c)?;
    let mut workers = crate::make_workers(ns, &[(&sw, &switch_key)], &keys, 1)?;
    // Only the sinks' MACs need to be known: each run's first frames
    // teach them (nothing else learned now that would age out in a run).
    connect(&mut workers)?;
    let settled = wait_until(HEALTHY_TIMEOUT, || {
        sw.status().is_ok_and(|s| {
            s["etcd"]["connection"] == "connected" && s["etcd"]["pending"].as_u64() == Some(0)
        })
    });
    if !settled {
        return Err(format!(
            "the switch did not connect to etcd and write its state within {HEALTHY_TIMEOUT:?}: {}",
            sw.status().map_or(Value::Null, |s| s["etcd"].clone())
        ));
    }
    let churn = Churn {
        sw: &sw,
        etcd: &etcd,
        metrics: SocketAddr::new(member_v4(1).into(), CLIENT_PORT),
    };
    let w = &mut workers[0];
    let churners = NODES - 2;
    let mut runs = Vec::new();
    for (n, &r) in args.mac_churn.iter().enumerate() {
        // Each run has MACs of its own, never seen before.
        let offset = n << 20;
        churn.settle(NODES)?;
        runs.push(churn.run(w, "new_macs", r, args.secs, |i, buf| {
            let k = 2 + i % churners;
            (
                k,
                ether(
                    buf,
                    mac(0, 0),
                    churn_mac(k, offset + i / churners),
                    64,
                    false,
                ),
            )
        })?);
    }
    // The flapping MACs are learned and written before the run: the switch
    // hands what it learned to the store at its next sweep, so wait until
    // it owns them. They are sent again before every look at the status:
    // sent once, they age out after AGING_SECS, and a busy machine can miss
    // the moment between their write and their removal.
    churn.settle(NODES)?;
    let owned = sw.status()?["etcd"]["owned"].as_u64().unwrap_or(0);
    let mut hist = Histogram::new();
    let start = Instant::now();
    churn.wait_written_while(
        "owning the flapping MACs",
        |s| s["etcd"]["owned"].as_u64() >= Some(owned + FLAP_MACS as u64),
        || {
            w.pump(
                |seq, buf| (2, ether(buf, mac(0, 0), flap_mac(seq as usize), 64, false)),
                None,
                Some(FLAP_MACS as u64),
                u64::MAX,
                start,
                &mut hist,
            );
        },
    )?;
    let moves = rate.max(FLAP_MACS as u64);
    runs.push(churn.run(w, "moves", moves, args.secs, |i, buf| {
        let node = 2 + (i / FLAP_MACS + 1) % 2;
        (
            node,
            ether(buf, mac(0, 0), flap_mac(i % FLAP_MACS), 64, false),
        )
    })?);
    let st = sw.status()?;
    Ok(json!({
        "nodes": NODES,
        "etcd_members": etcd.len(),
        "mac_aging_secs": AGING_SECS,
        "mac_limit_per_node": per_node,
        "batch": {
            "interval_ms": BATCH_INTERVAL.as_millis() as u64,
            "max_ops": MAX_BATCH_OPS,
        },
        "runs": runs,
        "switch_etcd_after": st["etcd"],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sums_the_samples_of_one_name_only() {
        let page = "# HELP etcd_mvcc_put_total Total number of puts.\n\
                    etcd_mvcc_put_total 12\n\
                    etcd_mvcc_put_total_other 5\n\
                    etcd_disk_wal_fsync_duration_seconds_count 3\n\
                    grpc_server_handled_total{grpc_method=\"Txn\",grpc_code=\"OK\"} 4\n\
                    grpc_server_handled_total{grpc_method=\"Range\",grpc_code=\"OK\"} 6\n";
        assert_eq!(metric(page, "etcd_mvcc_put_total"), Some(12.0));
        assert_eq!(
            metric(page, "etcd_disk_wal_fsync_duration_seconds_count"),
            Some(3.0)
        );
        assert_eq!(metric(page, "grpc_server_handled_total"), Some(10.0));
        assert_eq!(metric(page, "etcd_mvcc_delete_total"), None);
    }

    #[test]
    fn churning_macs_are_unicast_local_and_apart_from_the_nodes_and_flaps() {
        let mut seen = std::collections::BTreeSet::new();
        for k in 0..NODES {
            assert!(seen.insert(mac(k, 0)));
            for j in [0, 1, 1 << 20, (1 << 20) + 1] {
                let m = churn_mac(k, j);
                assert_eq!(m[0] & 0x03, 0x02, "locally administered unicast");
                assert!(seen.insert(m), "{m:?} twice");
            }
        }
        for m in 0..FLAP_MACS {
            assert!(seen.insert(flap_mac(m)));
        }
    }
}
