//! The scheduler over a real SQLite store: watches end verified or rolled
//! back on probe checks, and a restart never runs a rollback hook twice.

use crate::support::{free_port, script, serve, settings, wait_for};
use release_guardian::clock::SystemClock;
use release_guardian::config::Settings;
use release_guardian::context::Context;
use release_guardian::model::{Decision, NewRelease, RollbackRecord, RollbackState};
use release_guardian::scheduler::Guardian;
use release_guardian::store::sqlite::SqliteStore;
use release_guardian::store::{RollbackRequest, Store};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A rollback hook appending `$RG_RELEASE_ID $RG_REASON` to `DIR/hook.log`;
/// returns (hook, log).
fn hook(dir: &Path) -> (PathBuf, PathBuf) {
    let log = dir.join("hook.log");
    let script = script(
        dir,
        "hook.sh",
        &format!("echo \"$RG_RELEASE_ID $RG_REASON\" >> {}", log.display()),
    );
    (script, log)
}

/// How a test's service differs from the default one.
struct Tweaks {
    /// `failures` of the probe check's rollback level (critical is at 1).
    rollback_failures: u32,
    /// Extra lines of `[services.rollback]` (`mode`, `env`).
    rollback: String,
}

const DEFAULT: Tweaks = Tweaks {
    rollback_failures: 2,
    rollback: String::new(),
};

/// One service `checkout` ticking every 500 ms for 3 s, with a probe check
/// on `probe_url` (critical after 1 failure, rollback after 2) and `hook`
/// as its automatic rollback; the store in `DIR/g.db`.
fn settings_for(dir: &Path, probe_url: &str, hook: &Path) -> Settings {
    settings_with(dir, probe_url, hook, DEFAULT)
}

fn settings_with(dir: &Path, probe_url: &str, hook: &Path, tweaks: Tweaks) -> Settings {
    std::fs::write(
        dir.join("rules.yaml"),
        format!(
            "checks:\n  - name: live\n    source: probe\n    probe: live\n    \
             critical: {{ failures: 1 }}\n    rollback: {{ failures: {} }}\n",
            tweaks.rollback_failures
        ),
    )
    .unwrap();
    let toml = format!(
        r#"[store]
path = "g.db"

[[services]]
name = "checkout"
rules = ["rules.yaml"]
  [services.cadence]
  tiers = [ {{ until = "3s", every = "500ms" }} ]
  [[services.probes]]
  name = "live"
  url = "{probe_url}"
  timeout = "500ms"
  [services.rollback]
  command = ["{hook}"]
  timeout = "10s"
{extra}"#,
        hook = hook.display(),
        extra = tweaks.rollback,
    );
    settings(dir, &toml)
}

/// A probe URL on a loopback port nobody listens on: every probe fails.
fn nowhere() -> String {
    format!("http://127.0.0.1:{}/", free_port())
}

/// The store of the settings made in `dir`.
fn open_store(dir: &Path) -> SqliteStore {
    SqliteStore::open(&dir.join("g.db")).unwrap()
}

/// A started guardian on `settings`, over the store in `dir`.
async fn guardian(dir: &Path, settings: Settings) -> (Arc<Guardian>, Arc<dyn Store>) {
    let store: Arc<dyn Store> = Arc::new(open_store(dir));
    let g = Guardian::new(Context::new(settings, store.clone(), Arc::new(SystemClock)));
    g.start().await.unwrap();
    (g, store)
}

fn new_release() -> NewRelease {
    NewRelease {
        service: "checkout".into(),
        version: "v2".into(),
        previous_version: Some("v1".into()),
        environment: None,
        annotations: Default::default(),
    }
}

async fn status_becomes(store: &Arc<dyn Store>, id: &str, want: &str) {
    wait_for(
        &format!("status {want}"),
        Duration::from_secs(20),
        || async move {
            let r = store.get_release(id).await.unwrap()?;
            (r.status.as_str() == want).then_some(())
        },
    )
    .await
}

/// What the previous run left behind in `dir`: release `id` with a
/// recorded rollback request. Returns the store (still open, for more of
/// the past; drop it before the next run), the settings of the next run
/// (its probe goes nowhere) and the log the hook would write.
async fn previous_run(dir: &Path, id: &str, reason: &str) -> (SqliteStore, Settings, PathBuf) {
    let (script, log) = hook(dir);
    let settings = settings_for(dir, &nowhere(), &script);
    let store = open_store(dir);
    store
        .register_release(
            &new_release(),
            "production",
            id,
            1_000,
            2_000,
            &superseded(),
        )
        .await
        .unwrap();
    let record = RollbackRecord {
        state: RollbackState::Requested,
        reason: reason.into(),
        trigger: "auto".into(),
        requested_at: 1_500,
        started_at: None,
        finished_at: None,
        exit_code: None,
        output: None,
    };
    let decision = Decision {
        at: 1_500,
        check: None,
        level: None,
        action: release_guardian::model::DecisionAction::RollbackRequested,
        reason: "test".into(),
        observed_at: None,
        evidence: None,
    };
    let req = store
        .request_rollback(id, &record, &decision)
        .await
        .unwrap();
    assert_eq!(req, RollbackRequest::Requested);
    (store, settings, log)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_healthy_release_is_verified() {
    let dir = tempfile::tempdir().unwrap();
    let addr = serve(axum::Router::new().route("/", axum::routing::get(|| async { "ok" }))).await;
    let (script, log) = hook(dir.path());
    let s = settings_for(dir.path(), &format!("http://{addr}/"), &script);
    let (g, store) = guardian(dir.path(), s).await;
    let reg = g.register(new_release()).await.unwrap();
    status_becomes(&store, &reg.release.id, "verified").await;
    let d = store
        .release_details(&reg.release.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.checks[0].state.as_str(), "ok");
    assert!(d.decisions.iter().any(|x| x.action == "verified"));
    assert!(!log.exists(), "no rollback for a healthy release");
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_probes_roll_back_once_even_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let (script, log) = hook(dir.path());
    let s = settings_for(dir.path(), &nowhere(), &script);
    let (g, store) = guardian(dir.path(), s.clone()).await;
    let reg = g.register(new_release()).await.unwrap();
    status_becomes(&store, &reg.release.id, "rolled_back").await;
    let lines = std::fs::read_to_string(&log).unwrap();
    assert_eq!(lines.lines().count(), 1, "{lines}");
    assert!(
        lines.contains(&reg.release.id) && lines.contains("live entered rollback"),
        "{lines}"
    );
    // A second daemon on the same store changes nothing.
    g.context().shutdown.cancel();
    drop(g);
    let (_g2, store2) = guardian(dir.path(), s).await;
    let rb = store2.get_rollback(&reg.release.id).await.unwrap().unwrap();
    assert_eq!(rb.state, RollbackState::Succeeded);
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hook_interrupted_by_a_crash_is_never_run_again() {
    let dir = tempfile::tempdir().unwrap();
    // The previous run: rollback requested and the hook started, then kill -9.
    let (store, s, log) = previous_run(dir.path(), "r-crash", "error_rate entered rollback").await;
    let started = Decision {
        at: 1_600,
        check: None,
        level: None,
        action: release_guardian::model::DecisionAction::RollbackStarted,
        reason: "test".into(),
        observed_at: None,
        evidence: None,
    };
    assert!(store
        .claim_rollback("r-crash", "local", 1_600, &started, &[])
        .await
        .unwrap());
    drop(store);

    let (_g, store) = guardian(dir.path(), s).await;
    let d = store.release_details("r-crash").await.unwrap().unwrap();
    assert_eq!(d.release.status.as_str(), "rollback_failed");
    assert_eq!(d.rollback.unwrap().state, RollbackState::Interrupted);
    assert!(d
        .decisions
        .iter()
        .any(|x| x.action == "rollback_failed" && x.reason.contains("not run again")));
    assert!(
        !log.exists(),
        "the hook must not run again after a crash mid-hook"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_requested_rollback_runs_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (store, s, log) = previous_run(dir.path(), "r-req", "decided just before the crash").await;
    drop(store);
    let (_g, store) = guardian(dir.path(), s).await;
    status_becomes(&store, "r-req", "rolled_back").await;
    let lines = std::fs::read_to_string(&log).unwrap();
    assert_eq!(lines.trim(), "r-req decided just before the crash");
}

#[tokio::test(flavor = "multi_thread")]
async fn manual_mode_pages_and_waits_for_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let (script, log) = hook(dir.path());
    let s = settings_with(
        dir.path(),
        &nowhere(),
        &script,
        Tweaks {
            rollback: "  mode = \"manual\"\n".into(),
            ..DEFAULT
        },
    );
    let (g, store) = guardian(dir.path(), s).await;
    let id = g.register(new_release()).await.unwrap().release.id;
    // The probe fails: the rollback level is reached, but nothing runs.
    wait_for("rollback recommended", Duration::from_secs(20), || {
        let store = store.clone();
        let id = id.clone();
        async move {
            let d = store.release_details(&id).await.unwrap()?;
            d.decisions
                .iter()
                .any(|x| x.action == "rollback_recommended")
                .then_some(())
        }
    })
    .await;
    let d = store.release_details(&id).await.unwrap().unwrap();
    assert!(
        d.rollback.is_none() && !log.exists(),
        "manual mode must not run the hook by itself"
    );
    assert_ne!(d.release.status.as_str(), "rolling_back");
    // An operator decides.
    let r = g.manual_rollback(&id).await.unwrap();
    assert_eq!(r.status.as_str(), "rolling_back");
    status_becomes(&store, &id, "rolled_back").await;
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 1);
    assert!(
        g.manual_rollback(&id).await.is_err(),
        "a second rollback is refused"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watch_whose_window_passed_while_down_ends_without_judging_the_present() {
    let dir = tempfile::tempdir().unwrap();
    let (script, log) = hook(dir.path());
    // One failed probe would be enough to roll back.
    let s = settings_with(
        dir.path(),
        &nowhere(),
        &script,
        Tweaks {
            rollback_failures: 1,
            ..DEFAULT
        },
    );
    // Registered an hour ago with a 3 s window; the daemon was down since.
    let store = open_store(dir.path());
    let hour_ago = release_guardian::clock::Clock::now(&SystemClock) - 3_600_000;
    store
        .register_release(
            &new_release(),
            "production",
            "r-old",
            hour_ago,
            hour_ago + 500,
            &superseded(),
        )
        .await
        .unwrap();
    drop(store);
    let (_g, store) = guardian(dir.path(), s).await;
    status_becomes(&store, "r-old", "verified").await;
    let d = store.release_details("r-old").await.unwrap().unwrap();
    assert!(d.decisions.iter().any(|x| x.action == "resumed"));
    assert!(
        !log.exists(),
        "a probe taken an hour after the window must not roll the release back"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hook_printing_a_secret_is_redacted_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let script = script(
        dir.path(),
        "leaky.sh",
        "echo \"curl: cannot use token $DEPLOY_TOKEN\"\nexit 3",
    );
    let secret = "tok-5ecret-value-42";
    let s = settings_with(
        dir.path(),
        &nowhere(),
        &script,
        Tweaks {
            rollback: format!("  env = {{ DEPLOY_TOKEN = \"{secret}\" }}\n"),
            ..DEFAULT
        },
    );
    let (g, store) = guardian(dir.path(), s).await;
    let id = g.register(new_release()).await.unwrap().release.id;
    status_becomes(&store, &id, "rollback_failed").await;
    let d = store.release_details(&id).await.unwrap().unwrap();
    let rb = d.rollback.unwrap();
    assert_eq!(rb.exit_code, Some(3));
    let output = rb.output.unwrap();
    assert!(output.contains("cannot use token <redacted>"), "{output}");
    let failed = d
        .decisions
        .iter()
        .find(|x| x.action == "rollback_failed")
        .unwrap();
    assert!(
        failed.reason.contains("exited with status 3"),
        "{}",
        failed.reason
    );
    let everything = format!("{output} {:?}", d.decisions);
    assert!(
        !everything.contains(secret),
        "the secret leaked: {everything}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pending_rollback_never_undoes_a_newer_release() {
    let dir = tempfile::tempdir().unwrap();
    let (store, s, log) = previous_run(dir.path(), "r-v2", "error_rate entered rollback").await;
    // While the daemon was down, v3 was deployed (a fix-forward).
    let v3 = NewRelease {
        version: "v3".into(),
        ..new_release()
    };
    store
        .register_release(&v3, "production", "r-v3", 5_000, 6_000, &superseded())
        .await
        .unwrap();
    drop(store);
    let (_g, store) = guardian(dir.path(), s).await;
    status_becomes(&store, "r-v2", "rollback_failed").await;
    let d = store.release_details("r-v2").await.unwrap().unwrap();
    assert!(
        d.decisions.iter().any(|x| x.action == "rollback_failed"
            && x.reason.contains("v3 (r-v3) was deployed after v2")),
        "{:?}",
        d.decisions
    );
    assert!(!log.exists(), "the hook must not undo v3");
}

/// The decision a registration records on the releases it supersedes.
fn superseded() -> Decision {
    Decision::superseded(1_000, "superseded by a newer release")
}
