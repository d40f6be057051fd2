//! Moving a store: `release-guardian export` and `import` (the real binary)
//! between a SQLite file and a real PostgreSQL (`support::postgres`).
//!
//! - A SQLite store filled by the real daemon (a release that failed its
//!   probe, was paged about and rolled back; one still watching, acked) is
//!   exported, imported into PostgreSQL, and a daemon started on PostgreSQL
//!   shows the same releases and timelines, resumes the running watch, and
//!   sends no page again. The leases the SQLite daemon held are not carried
//!   over. Exporting the PostgreSQL store gives the same rows back.
//! - A dump with a row in every table and every kind of value round-trips
//!   exactly through SQLite and PostgreSQL (files, and a pipe from
//!   `export`'s stdout to `import`'s stdin); a target that holds anything is
//!   refused (and `--force` replaces it); a truncated, cut or wrong dump is
//!   refused with its line named, and leaves the target as it was.

use crate::support::{bin, free_listen, free_port, postgres, serve, stdout_and_stderr};
use crate::support::{now_ms, Daemon, Receiver, Reply};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// Runs `release-guardian ARGS`.
fn cli(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .output()
        .expect("run the binary")
}

fn export(config: &Path, dump: &Path) -> Output {
    cli(&[
        "export",
        "--config",
        config.to_str().unwrap(),
        "--output",
        dump.to_str().unwrap(),
    ])
}

fn import(config: &Path, dump: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "import",
        "--config",
        config.to_str().unwrap(),
        "--input",
        dump.to_str().unwrap(),
    ];
    args.extend(extra);
    cli(&args)
}

fn assert_ok(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        stdout_and_stderr(out)
    );
}

/// A dump's lines after the header (which says when and from where).
fn rows(dump: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dump).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    assert!(
        lines[0].contains("\"format\":\"release-guardian-dump\""),
        "{}",
        lines[0]
    );
    lines.remove(0);
    lines
}

/// The config of the daemon: `[store]` is `store`; `checkout` probes a
/// port nobody listens on (it fails: critical at once, rollback at the
/// third failure), `search` probes `healthy` (it keeps watching); both
/// tick every 300 ms and page `slack`.
fn config(dir: &Path, name: &str, store: &str, healthy: u16, slack: &str) -> (PathBuf, String) {
    std::fs::write(
        dir.join("rules.yaml"),
        "checks:\n  - name: live\n    source: probe\n    probe: live\n    \
         critical: { failures: 1 }\n    rollback: { failures: 3 }\n",
    )
    .unwrap();
    let listen = free_listen();
    let dead = free_port();
    let text = format!(
        r#"[server]
listen = "{listen}"
shutdown_grace = "2s"

[store]
{store}

[cadence]
tiers = [ {{ until = "1h", every = "300ms" }} ]

[[services]]
name = "checkout"
rules = ["rules.yaml"]
notify = ["out"]
  [[services.probes]]
  name = "live"
  url = "http://127.0.0.1:{dead}/"
  timeout = "300ms"
  [services.rollback]
  command = ["/bin/true"]
  mode = "auto"

[[services]]
name = "search"
rules = ["rules.yaml"]
notify = ["out"]
  [[services.probes]]
  name = "live"
  url = "http://127.0.0.1:{healthy}/"
  timeout = "300ms"

[notifiers.out]
kind = "slack"
webhook_url = "{slack}"
min_severity = "warning"
"#
    );
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    (path, listen)
}

async fn register(d: &Daemon, service: &str) -> String {
    let (code, body) = d
        .post(
            "/v1/releases",
            json!({"service": service, "version": "v2", "previous_version": "v1"}),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    body["id"].as_str().unwrap().to_string()
}

fn decisions(release: &Value) -> Vec<Value> {
    release["decisions"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_store_moves_to_postgres_and_its_running_watch_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let healthy = serve(axum::Router::new().route("/", axum::routing::get(|| async { "ok" })))
        .await
        .port();
    let slack = Receiver::start(Reply::Ok).await;
    let server = postgres::server();
    let db = postgres::database();
    let (on_sqlite, listen) = config(
        dir.path(),
        "sqlite.toml",
        "path = \"guardian.db\"",
        healthy,
        &slack.slack_url(),
    );

    // Fill the SQLite store through the daemon.
    let mut d = Daemon::start(&on_sqlite, &listen).await;
    let failed = register(&d, "checkout").await;
    let running = register(&d, "search").await;
    let ended = d
        .release_until(&failed, "the rollback", Duration::from_secs(60), |r| {
            r["status"] == "rolled_back"
                && r["notifications"]
                    .as_array()
                    .is_some_and(|n| !n.is_empty() && n.iter().all(|n| n["status"] == "sent"))
        })
        .await;
    let (code, body) = d
        .post(&format!("/v1/releases/{running}/ack"), json!({}))
        .await;
    assert_eq!(code, 200, "{body}");
    d.release_until(&running, "a few ticks", Duration::from_secs(30), |r| {
        r["checks"][0]["state"] == "ok" && r["acked"] == true
    })
    .await;
    // What the running release has when the daemon stops (a healthy tick
    // adds no decision).
    let watched = d.get(&format!("/v1/releases/{running}")).await;
    let status = d.terminate(Duration::from_secs(20)).await;
    assert!(status.success(), "{}", d.log());
    let pages = slack.hits();
    assert!(pages > 0, "the failed release was paged about");
    let db_file = dir.path().join("guardian.db");
    let due: i64 = {
        let conn = rusqlite::Connection::open(&db_file).unwrap();
        let held: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM releases WHERE lease_owner IS NOT NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(held, 1, "the SQLite daemon held the running watch's lease");
        conn.query_row(
            "SELECT next_check_at FROM releases WHERE id = ?1",
            [&running],
            |r| r.get(0),
        )
        .unwrap()
    };
    // The move below must leave the running watch's tick overdue, so that
    // the new daemon records its resumption: on a fast machine the export
    // and imports take less than the 300 ms between ticks, so let the tick
    // come due first.
    let wait = (due + 1 - now_ms()).max(0) as u64;
    tokio::time::sleep(Duration::from_millis(wait)).await;

    // Export, then import into PostgreSQL.
    let from_sqlite = dir.path().join("sqlite.dump");
    let out = export(&on_sqlite, &from_sqlite);
    assert_ok("export", &out);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("exported 2 releases"),
        "{}",
        stdout_and_stderr(&out)
    );
    let store = format!(
        "url = \"{}\"\nowner = \"pg-a\"\nstate_dir = \"state\"",
        server.url(&db)
    );
    let (on_pg, pg_listen) = config(dir.path(), "pg.toml", &store, healthy, &slack.slack_url());
    let out = import(&on_pg, &from_sqlite, &[]);
    assert_ok("import", &out);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(said.starts_with("imported 2 releases, "), "{said}");
    assert!(said.contains(" 1 rollbacks, "), "{said}");
    assert_eq!(
        server.sql(
            &db,
            "SELECT COUNT(*) FROM releases WHERE lease_owner IS NOT NULL"
        ),
        "0",
        "no lease is carried over"
    );
    // The target is no longer empty: a second import is refused, and
    // changes nothing.
    let out = import(&on_pg, &from_sqlite, &[]);
    assert!(!out.status.success());
    let said = stdout_and_stderr(&out);
    assert!(
        said.contains("is not empty (2 releases, ") && said.contains("--force"),
        "{said}"
    );
    assert_eq!(server.sql(&db, "SELECT COUNT(*) FROM releases"), "2");
    // PostgreSQL gives the same rows back.
    let from_pg = dir.path().join("pg.dump");
    assert_ok("export from PostgreSQL", &export(&on_pg, &from_pg));
    assert_eq!(rows(&from_pg), rows(&from_sqlite));

    // A daemon on PostgreSQL: the same history, and the watch resumes.
    let d = Daemon::start(&on_pg, &pg_listen).await;
    let now_ended = d.get(&format!("/v1/releases/{failed}")).await;
    assert_eq!(now_ended, ended, "the ended release reads back the same");
    let r = d
        .release_until(
            &running,
            "the watch to resume",
            Duration::from_secs(30),
            |r| {
                decisions(r).iter().any(|d| {
                    d["action"] == "resumed"
                        && d["reason"]
                            .as_str()
                            .is_some_and(|r| r.contains("resumed after a restart"))
                })
            },
        )
        .await;
    assert_eq!(r["status"], "watching", "{r}");
    assert_eq!(r["acked"], true, "{r}");
    let (before, after) = (decisions(&watched), decisions(&r));
    assert_eq!(
        after[..before.len()],
        before[..],
        "the timeline goes on where it stopped"
    );
    assert_eq!(r["audit"], watched["audit"], "{r}");
    let list = d.get("/v1/releases").await;
    let ids: Vec<&str> = list
        .as_array()
        .unwrap_or_else(|| panic!("{list}"))
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [running.as_str(), failed.as_str()], "newest first");
    // The replica took the lease, and ticks again.
    let before = r["checks"][0]["updated_at"].clone();
    d.release_until(&running, "a new tick", Duration::from_secs(30), |r| {
        r["checks"][0]["updated_at"] != before
    })
    .await;
    assert_eq!(
        server.sql(
            &db,
            &format!("SELECT lease_owner FROM releases WHERE id = '{running}'")
        ),
        "pg-a"
    );
    assert_eq!(slack.hits(), pages, "no page is sent again after the move");
}

/// One row of `table`, as the dump writes it.
fn row(table: &str, row: Value) -> String {
    json!({ "table": table, "row": row }).to_string()
}

/// A dump with a row in every table and every kind of value: nulls, a
/// non-finite and an inexact real, text with quotes, newlines and
/// non-ASCII, an acked release.
fn full_dump() -> String {
    let r1 = "0191d3a0-0000-7000-8000-000000000001";
    let r2 = "0191d3a0-0000-7000-8000-000000000002";
    let release = |seq: i64, id: &str, status: &str, ended: Value, acked: bool| {
        row(
            "releases",
            json!({"seq": seq, "id": id, "service": "checkout", "environment": "production",
                   "version": format!("v{seq}"), "previous_version": if seq == 1 { Value::Null } else { json!("v1") },
                   "annotations": "{\"commit\":\"abc\"}", "status": status,
                   "started_at": 1_700_000_000_000i64 + seq, "next_check_at": if ended.is_null() { json!(1_800_000_000_000i64) } else { Value::Null },
                   "ended_at": ended, "acked": acked, "superseded_by": Value::Null,
                   "silence_note": if acked { json!("suppressed: acked by \"ops\"") } else { Value::Null }}),
        )
    };
    let lines = [
        json!({"format": "release-guardian-dump", "version": 1, "from": "test", "exported_at": "2026-01-01T00:00:00Z"}).to_string(),
        release(1, r1, "rolled_back", json!(1_700_000_100_000i64), false),
        release(2, r2, "watching", Value::Null, true),
        row("checks", json!({"release_id": r1, "name": "error_rate", "state": "breach", "level": "rollback",
            "value": 0.1 + 0.2, "tracker": "{\"since\":1}", "evaluated_until": 1_700_000_050_000i64,
            "updated_at": 1_700_000_050_000i64, "logs": "[\"línea 1\\nline 2\"]"})),
        row("checks", json!({"release_id": r2, "name": "live", "state": "inconclusive", "level": "none",
            "value": Value::Null, "tracker": "{}", "evaluated_until": Value::Null,
            "updated_at": 1_700_000_060_000i64, "logs": Value::Null})),
        row("check_points", json!({"release_id": r1, "check_name": "error_rate", "at": 1_700_000_040_000i64, "value": "Infinity"})),
        row("check_points", json!({"release_id": r1, "check_name": "error_rate", "at": 1_700_000_050_000i64, "value": 1e-300})),
        row("check_points", json!({"release_id": r2, "check_name": "live", "at": 1_700_000_060_000i64, "value": Value::Null})),
        row("decisions", json!({"id": 7, "release_id": r1, "at": 1_700_000_050_000i64, "check_name": "error_rate",
            "level": "rollback", "action": "rollback_requested", "reason": "error_rate 0.3 > 0.05 for 5m",
            "observed_at": 1_700_000_049_000i64, "evidence": "{\"query\":\"sum(rate(x[5m]))\"}"})),
        row("decisions", json!({"id": 9, "release_id": r2, "at": 1_700_000_060_000i64, "check_name": Value::Null,
            "level": Value::Null, "action": "acked", "reason": "acked", "observed_at": Value::Null, "evidence": Value::Null})),
        row("notifications", json!({"key": "r1/rollback", "release_id": r1, "notifier": "oncall", "message": "{\"text\":\"rolled back\"}",
            "status": "sent", "attempts": 1, "last_error": Value::Null, "created_at": 1_700_000_050_000i64,
            "sent_at": 1_700_000_051_000i64, "next_attempt_at": 1_700_000_050_000i64})),
        row("notifications", json!({"key": "r2/critical", "release_id": r2, "notifier": "oncall", "message": "{}",
            "status": "pending", "attempts": 2, "last_error": "HTTP 503", "created_at": 1_700_000_060_000i64,
            "sent_at": Value::Null, "next_attempt_at": 1_700_000_070_000i64})),
        row("rollbacks", json!({"release_id": r1, "state": "succeeded", "reason": "error_rate", "triggered_by": "auto",
            "requested_at": 1_700_000_050_000i64, "started_at": 1_700_000_050_100i64, "finished_at": 1_700_000_060_000i64,
            "exit_code": 0, "output": "deployment \"checkout\" rolled back\n", "claimed_by": "local"})),
        row("deliveries", json!({"source": "github", "id": "d-1", "release_id": r2, "at": 1_700_000_000_002i64})),
        row("audit", json!({"seq": 3, "at": 1_700_000_000_002i64, "actor": "webhook:github", "action": "register",
            "release_id": r2, "detail": "v2", "client": Value::Null})),
        json!({"end": {"releases": 2, "checks": 2, "check_points": 3, "decisions": 2, "notifications": 2,
            "rollbacks": 1, "deliveries": 1, "audit": 1}}).to_string(),
    ];
    lines.join("\n") + "\n"
}

#[test]
fn a_dump_round_trips_through_both_backends_and_a_bad_one_names_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let dump = d.join("full.dump");
    std::fs::write(&dump, full_dump()).unwrap();
    let expected: Vec<String> = full_dump().lines().skip(1).map(String::from).collect();
    let server = postgres::server();
    let db = postgres::database();
    let on_pg = d.join("pg.toml");
    std::fs::write(&on_pg, format!("[store]\nurl = \"{}\"\n", server.url(&db))).unwrap();
    let on_sqlite = d.join("sqlite.toml");
    std::fs::write(&on_sqlite, "[store]\npath = \"state/guardian.db\"\n").unwrap();

    // Into SQLite (a new file), out again: the same rows.
    assert_ok("import into SQLite", &import(&on_sqlite, &dump, &[]));
    let out = d.join("sqlite.dump");
    assert_ok("export from SQLite", &export(&on_sqlite, &out));
    assert_eq!(rows(&out), expected);
    // Through a pipe (stdout to stdin) into PostgreSQL, out again: the
    // same rows.
    let piped = cli(&["export", "--config", on_sqlite.to_str().unwrap()]);
    assert_ok("export to stdout", &piped);
    assert_eq!(
        String::from_utf8_lossy(&piped.stdout)
            .lines()
            .skip(1)
            .collect::<Vec<_>>(),
        expected
    );
    let mut child = Command::new(bin())
        .args(["import", "--config", on_pg.to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &piped.stdout).unwrap();
    let imported = child.wait_with_output().unwrap();
    assert_ok("import from stdin", &imported);
    assert!(
        String::from_utf8_lossy(&imported.stdout).contains("from stdin into postgres://"),
        "{}",
        stdout_and_stderr(&imported)
    );
    let out = d.join("pg.dump");
    assert_ok("export from PostgreSQL", &export(&on_pg, &out));
    assert_eq!(rows(&out), expected);
    // The serial columns go on after the imported rows.
    assert_eq!(
        server.sql(
            &db,
            "SELECT nextval(pg_get_serial_sequence('decisions', 'id'))"
        ),
        "10"
    );

    // Bad dumps, each into the (non-empty) SQLite store with --force: the
    // error names the line, and the store keeps what it held.
    let good = full_dump();
    let lines: Vec<&str> = good.lines().collect();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "cut at a line's end",
            lines[..6].join("\n") + "\n",
            "the dump ends after line 6 without its end line: it is truncated",
        ),
        (
            "cut inside a line",
            good[..good.find(lines[8]).unwrap() + 20].to_string(),
            "full.bad:9: the line is cut off",
        ),
        (
            "a row missing",
            [&lines[..5], &lines[6..]].concat().join("\n") + "\n",
            "full.bad:15: the end line counts 3 check_points rows, the dump holds 2",
        ),
        (
            "a wrong value",
            good.replacen("\"attempts\":1,", "\"attempts\":\"one\",", 1),
            "full.bad:11: notifications.attempts: expected an integer, found \"one\"",
        ),
        (
            "not JSON",
            good.replacen("\"table\":\"audit\"", "table:\"audit\"", 1),
            "full.bad:15: not JSON: key must be a string",
        ),
        (
            "a row whose release is missing",
            good.replacen(
                &format!(
                    "\"release_id\":\"{}\"",
                    "0191d3a0-0000-7000-8000-000000000002"
                ),
                "\"release_id\":\"nope\"",
                1,
            ),
            "full.bad:5: checks row refused by SQLite: FOREIGN KEY constraint failed",
        ),
    ];
    let bad = d.join("full.bad");
    for (what, text, says) in cases {
        std::fs::write(&bad, text).unwrap();
        let out = import(&on_sqlite, &bad, &["--force"]);
        assert!(!out.status.success(), "{what}: accepted");
        let said = stdout_and_stderr(&out);
        assert!(said.contains(says), "{what}: {said}");
        let out = d.join("after.dump");
        assert_ok("export", &export(&on_sqlite, &out));
        assert_eq!(rows(&out), expected, "{what}: the store changed");
    }
    // The same refusal from PostgreSQL names the line too.
    std::fs::write(
        &bad,
        good.replacen(
            &format!(
                "\"release_id\":\"{}\"",
                "0191d3a0-0000-7000-8000-000000000002"
            ),
            "\"release_id\":\"nope\"",
            1,
        ),
    )
    .unwrap();
    let out = import(&on_pg, &bad, &["--force"]);
    let said = stdout_and_stderr(&out);
    assert!(
        !out.status.success()
            && said.contains("full.bad:5: checks row refused by PostgreSQL")
            && said.contains("foreign key"),
        "{said}"
    );
    assert_eq!(server.sql(&db, "SELECT COUNT(*) FROM releases"), "2");

    // --force replaces what the store holds (release 1 and its check).
    let one = format!(
        "{}\n{}\n{}\n{}\n",
        lines[0],
        lines[1],
        lines[3],
        json!({"end": {"releases": 1, "checks": 1}})
    );
    std::fs::write(&bad, one).unwrap();
    for config in [&on_sqlite, &on_pg] {
        let out = import(config, &bad, &["--force"]);
        assert_ok("import --force", &out);
        assert!(
            String::from_utf8_lossy(&out.stdout)
                .starts_with("imported 1 releases, 1 checks, 0 check_points"),
            "{}",
            stdout_and_stderr(&out)
        );
        let out = d.join("after.dump");
        assert_ok("export", &export(config, &out));
        assert_eq!(rows(&out)[..2], [lines[1], lines[3]]);
        assert_eq!(rows(&out).len(), 3);
    }
}
