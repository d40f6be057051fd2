//! Several replicas on one PostgreSQL (a real server: `support::postgres`):
//! three real daemons (`release-guardian run`) share one database, with a
//! service whose probe always fails and an automatic rollback hook that
//! appends the release id to a file.
//!
//! - `kill -9` of the replica that owns the watch: another one takes it over
//!   within the lease period (`[store] lease = "3s"`), and the release is
//!   rolled back once (one line in the hook's file) and every page is sent
//!   once.
//! - A replica paused with SIGSTOP past its lease and resumed: another one
//!   took the watch over meanwhile; the resumed one's tick is refused by the
//!   store (fencing), it stops the watch, and the rollback still runs once.

use crate::support::{free_listen, free_port, now_ms, postgres, script, wait_for};
use crate::support::{Daemon, Receiver, Reply};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The lease of the replicas in these tests, in milliseconds.
const LEASE_MS: i64 = 3_000;

struct Cluster {
    replicas: Vec<Daemon>,
    hook_log: PathBuf,
    slack: Receiver,
    _dir: tempfile::TempDir,
}

/// Writes the config of replica `i` into `DIR/rI/guardian.toml`.
fn config(
    dir: &Path,
    i: usize,
    url: &str,
    probe_port: u16,
    hook: &Path,
    slack: &str,
) -> (PathBuf, String) {
    let home = dir.join(format!("r{i}"));
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(
        home.join("rules.yaml"),
        "checks:\n  - name: live\n    source: probe\n    probe: live\n    \
         critical: { failures: 1 }\n    rollback: { failures: 30 }\n",
    )
    .unwrap();
    let listen = free_listen();
    let toml = format!(
        r#"[server]
listen = "{listen}"
shutdown_grace = "2s"

[store]
url = "{url}"
owner = "replica-{i}"
lease = "3s"
state_dir = "state"

[[services]]
name = "checkout"
rules = ["rules.yaml"]
notify = ["out"]
  [services.cadence]
  tiers = [ {{ until = "1h", every = "500ms" }} ]
  [[services.probes]]
  name = "live"
  url = "http://127.0.0.1:{probe_port}/"
  timeout = "300ms"
  [services.rollback]
  command = ["{hook}"]
  timeout = "30s"
  mode = "auto"

[notifiers.out]
kind = "slack"
webhook_url = "{slack}"
min_severity = "warning"
"#,
        hook = hook.display(),
    );
    let path = home.join("guardian.toml");
    std::fs::write(&path, toml).unwrap();
    (path, listen)
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let server = postgres::server();
        let url = server.url(&postgres::database());
        let hook_log = dir.path().join("hook.log");
        let hook = script(
            dir.path(),
            "hook.sh",
            &format!("echo \"$RG_RELEASE_ID\" >> '{}'", hook_log.display()),
        );
        let slack = Receiver::start(Reply::Ok).await;
        let probe_port = free_port();
        let mut replicas = Vec::new();
        for i in 0..3 {
            let (config, listen) =
                config(dir.path(), i, &url, probe_port, &hook, &slack.slack_url());
            replicas.push(Daemon::start(&config, &listen).await);
        }
        Cluster {
            replicas,
            hook_log,
            slack,
            _dir: dir,
        }
    }

    fn hook_runs(&self) -> Vec<String> {
        std::fs::read_to_string(&self.hook_log)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    /// Every page text was accepted once.
    fn assert_no_duplicate_page(&self) {
        let texts = self.slack.texts();
        assert!(!texts.is_empty(), "no page was sent");
        let mut unique = texts.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(
            unique.len(),
            texts.len(),
            "a page was sent twice: {texts:#?}"
        );
        assert!(
            self.slack.problems().is_empty(),
            "{:?}",
            self.slack.problems()
        );
    }
}

async fn register(d: &Daemon) -> String {
    let (code, body) = d
        .post(
            "/v1/releases",
            json!({"service": "checkout", "version": "v2", "previous_version": "v1"}),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    body["id"].as_str().unwrap().to_string()
}

/// The `resumed` decision a takeover records, if any.
fn takeover(release: &Value) -> Option<Value> {
    release["decisions"].as_array()?.iter().find_map(|d| {
        (d["action"] == "resumed"
            && d["reason"]
                .as_str()
                .is_some_and(|r| r.contains("taken over by replica")))
        .then(|| d.clone())
    })
}

/// The decision's time, from its RFC 3339 `at`.
fn at_ms(d: &Value) -> i64 {
    let at = d["at"].as_str().expect("decision at");
    let t = humantime::parse_rfc3339(at).unwrap_or_else(|e| panic!("decision at {at:?}: {e}"));
    t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn signal(d: &Daemon, name: &str) {
    let ok = Command::new("kill")
        .args([format!("-{name}"), d.pid().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_owner_is_replaced_within_the_lease_and_the_rollback_runs_once() {
    let mut c = Cluster::start().await;
    let id = register(&c.replicas[0]).await;
    // Replica 0 registered the release and holds its watch: kill it.
    c.replicas[0].kill9();
    let killed_at = now_ms();

    let survivor = &c.replicas[1];
    let r = survivor
        .release_until(
            &id,
            "another replica takes the watch over",
            Duration::from_secs(30),
            |r| takeover(r).is_some(),
        )
        .await;
    let taken = takeover(&r).unwrap();
    let after = at_ms(&taken) - killed_at;
    // Within the lease (3 s) plus one renewal period (1 s) and the time
    // the first overdue tick takes to be recorded.
    assert!(
        after <= LEASE_MS + 1_000 + 2_000,
        "taken over {after} ms after the kill: {taken}"
    );
    let reason = taken["reason"].as_str().unwrap();
    assert!(
        reason.contains("replica-1") || reason.contains("replica-2"),
        "{reason}"
    );

    let r = c.replicas[2]
        .release_until(
            &id,
            "the rollback's outcome",
            Duration::from_secs(60),
            |r| r["status"] == "rolled_back" || r["status"] == "rollback_failed",
        )
        .await;
    assert_eq!(r["status"], "rolled_back", "{r}");
    assert_eq!(
        c.hook_runs(),
        vec![id.clone()],
        "the hook must run exactly once"
    );
    // Every replica's API sees the same release.
    for d in &c.replicas[1..] {
        assert_eq!(
            d.get(&format!("/v1/releases/{id}")).await["status"],
            "rolled_back"
        );
    }
    // The pages went out (the rollback among them), each once.
    wait_for("the pages to be sent", Duration::from_secs(30), || async {
        let r = c.replicas[1].get(&format!("/v1/releases/{id}")).await;
        r["notifications"]
            .as_array()
            .is_some_and(|ns| !ns.is_empty() && ns.iter().all(|n| n["status"] != "pending"))
            .then_some(())
    })
    .await;
    c.assert_no_duplicate_page();
    assert!(
        c.slack
            .texts()
            .iter()
            .any(|t| t.contains("rolled back") || t.contains("rollback")),
        "{:#?}",
        c.slack.texts()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_paused_past_its_lease_does_not_act_for_the_lost_watch() {
    let c = Cluster::start().await;
    let id = register(&c.replicas[1]).await;
    // Replica 1 holds the watch; pause it past its lease.
    signal(&c.replicas[1], "STOP");
    let r = c.replicas[0]
        .release_until(
            &id,
            "another replica takes the watch over",
            Duration::from_secs(30),
            |r| takeover(r).is_some(),
        )
        .await;
    let reason = takeover(&r).unwrap()["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        reason.contains("replica-0") || reason.contains("replica-2"),
        "{reason}"
    );
    signal(&c.replicas[1], "CONT");
    // The resumed replica learns it lost the watch (its tick is refused,
    // or its renewal fails) and stops it.
    wait_for(
        "the resumed replica to stop the lost watch",
        Duration::from_secs(30),
        || async {
            let log = c.replicas[1].log();
            (log.contains("another replica took this watch's lease")).then_some(())
        },
    )
    .await;
    let r = c.replicas[0]
        .release_until(
            &id,
            "the rollback's outcome",
            Duration::from_secs(60),
            |r| r["status"] == "rolled_back" || r["status"] == "rollback_failed",
        )
        .await;
    assert_eq!(r["status"], "rolled_back", "{r}");
    assert_eq!(
        c.hook_runs(),
        vec![id.clone()],
        "the hook must run exactly once"
    );
    wait_for("the pages to be sent", Duration::from_secs(30), || async {
        let r = c.replicas[0].get(&format!("/v1/releases/{id}")).await;
        r["notifications"]
            .as_array()
            .is_some_and(|ns| !ns.is_empty() && ns.iter().all(|n| n["status"] != "pending"))
            .then_some(())
    })
    .await;
    c.assert_no_duplicate_page();
}

/// `[store]` with `url`: every mistake reported at once, at its line, and
/// the password never shown.
#[test]
fn postgres_store_config_errors_are_located_and_reported_together() {
    let dir = tempfile::tempdir().unwrap();
    let text = "[store]\n\
                url = \"postgres://guardian:hunter2@db/guardian\"\n\
                password_file = \"missing.password\"\n\
                lease = \"0s\"\n\
                pool_size = 0\n";
    let errors = crate::config_load::errors_of(dir.path(), text, &[]);
    let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    let mut lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
    lines.sort();
    assert_eq!(lines, vec![2, 3, 4, 5], "{shown:#?}");
    let at = |line: usize| errors.iter().find(|e| e.line == line).unwrap().to_string();
    assert!(at(2).contains("password_file"), "{shown:#?}");
    assert!(at(3).contains("missing.password"), "{shown:#?}");
    assert!(at(4).contains("lease"), "{shown:#?}");
    assert!(at(5).contains("pool_size"), "{shown:#?}");
    assert!(!shown.iter().any(|e| e.contains("hunter2")), "{shown:#?}");

    // `path` belongs to SQLite: with `url` it is an unknown key.
    std::fs::write(dir.path().join("db.password"), "s3cret\n").unwrap();
    let text = "[store]\nurl = \"postgres://guardian@db/guardian\"\n\
                password_file = \"db.password\"\npath = \"g.db\"\n";
    let errors = crate::config_load::errors_of(dir.path(), text, &[]);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].line, 4, "{}", errors[0]);

    // A good one: the owner defaults to HOSTNAME-PID, the lease to 30 s.
    let text = "[store]\nurl = \"postgres://guardian@db/guardian\"\n\
                password_file = \"db.password\"\n";
    let s = crate::support::settings(dir.path(), text);
    let owner = s.store.owner().unwrap().to_string();
    assert!(
        owner.ends_with(&format!("-{}", std::process::id())),
        "{owner}"
    );
    assert_eq!(s.store.lease(), Some(Duration::from_secs(30)));
    assert!(!format!("{:?}", s.store).contains("s3cret"));
}
