//! Every metric the shipped Grafana dashboard queries exists in the
//! daemon's `/metrics`.

use crate::support::{minimal_config, Daemon};
use std::collections::BTreeSet;

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_only_queries_metrics_that_exist() {
    let dashboard: serde_json::Value = serde_json::from_str(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/dashboards/release-guardian.json"
    )))
    .expect("valid JSON");
    let mut queried = BTreeSet::new();
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(
        exprs.len() >= 10,
        "the dashboard has {} queries",
        exprs.len()
    );
    for e in &exprs {
        for (i, _) in e.match_indices("rg_") {
            let name: String = e[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            queried.insert(name);
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let (config, listen) = minimal_config(dir.path());
    let d = Daemon::start(&config, &listen).await;
    let metrics = reqwest::get(format!("{}/metrics", d.api))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let families: BTreeSet<&str> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for name in &queried {
        let family = ["_total", "_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| families.contains(f)))
            .unwrap_or(name);
        assert!(
            families.contains(family),
            "the dashboard queries {name}, which /metrics does not have ({families:?})"
        );
    }
}

fn collect_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("expr" | "query", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => collect_exprs(x, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_exprs(x, out)),
        _ => {}
    }
}
