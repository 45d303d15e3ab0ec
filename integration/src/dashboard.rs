//! The shipped Grafana dashboard (`grafana/dashboards/tapmesh.json`) as the
//! monitoring tests see it: every PromQL expression with its panel and the
//! row the panel sits in, and the check that each returns data from a real
//! Prometheus.
use std::path::Path;

use serde_json::Value;

use crate::prometheus::Prometheus;

/// The row of the panels about several switches: trunks and etcd. Their
/// queries have data only where switches run in a cluster with etcd.
pub const CLUSTER_ROW: &str = "Cluster: switches and etcd";

/// What the tests give `$__rate_interval` (Grafana computes it from the
/// scrape interval; the test Prometheus scrapes every second).
pub const RATE_INTERVAL: &str = "30s";

/// One PromQL expression of a panel.
#[derive(Debug, Clone)]
pub struct PanelExpr {
    /// The title of the row the panel is in ("" above the first row).
    pub row: String,
    /// The panel's title.
    pub title: String,
    /// The expression, as in the dashboard.
    pub expr: String,
}

fn str_of(v: &Value) -> String {
    v.as_str().unwrap_or("?").to_string()
}

fn push_targets(out: &mut Vec<PanelExpr>, row: &str, panel: &Value) {
    for t in panel["targets"].as_array().into_iter().flatten() {
        if let Some(e) = t["expr"].as_str() {
            out.push(PanelExpr {
                row: row.to_string(),
                title: str_of(&panel["title"]),
                expr: e.to_string(),
            });
        }
    }
}

/// Every PromQL expression in the dashboard. A panel belongs to the last
/// row above it (by grid position), or, in a collapsed row, to that row.
pub fn exprs() -> Vec<PanelExpr> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../grafana/dashboards/tapmesh.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let dash: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    let mut panels: Vec<&Value> = dash["panels"].as_array().into_iter().flatten().collect();
    let pos = |p: &Value, k: &str| p["gridPos"][k].as_u64().unwrap_or(0);
    panels.sort_by_key(|p| (pos(p, "y"), pos(p, "x")));
    let mut out = Vec::new();
    let mut row = String::new();
    for p in panels {
        if p["type"] == "row" {
            row = str_of(&p["title"]);
            for inner in p["panels"].as_array().into_iter().flatten() {
                push_targets(&mut out, &row, inner);
            }
        } else {
            push_targets(&mut out, &row, p);
        }
    }
    out
}

/// Panics, listing each one, unless every expression of `exprs` returns
/// data (`$__rate_interval` as [`RATE_INTERVAL`]).
pub fn assert_have_data(prom: &Prometheus, exprs: &[PanelExpr]) {
    let mut empty = Vec::new();
    for e in exprs {
        let q = e.expr.replace("$__rate_interval", RATE_INTERVAL);
        match prom.query(&q) {
            Ok(r) if !r.is_empty() => {}
            Ok(_) => empty.push(format!("{} / {}: {q} (no data)", e.row, e.title)),
            Err(err) => empty.push(format!("{} / {}: {err}", e.row, e.title)),
        }
    }
    assert!(
        empty.is_empty(),
        "dashboard expressions without data:\n{}",
        empty.join("\n")
    );
}
