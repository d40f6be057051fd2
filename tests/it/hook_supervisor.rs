//! The rollback hook under its supervisor (`release-guardian
//! hook-supervisor`, the real binary): a hook's outcome survives a `kill -9`
//! of the daemon (the restarted daemon records `rolled_back`, and the hook
//! ran once), and on timeout every process the hook started is killed, even
//! one that left its process group with `setsid` and lost its parent.

use crate::support::{bin, free_listen, free_port, script, wait_for, Daemon};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Config for the real daemon: the API on `listen`, the store in `DIR/g.db`,
/// one service `checkout` whose probe always fails (rollback level after 2
/// failures, ticks every 300 ms) and `hook` as its automatic rollback.
fn config(dir: &Path, listen: &str, hook: &Path) -> PathBuf {
    config_with(dir, listen, hook, "")
}

/// [`config`] with `extra` lines in `[services.rollback]`.
fn config_with(dir: &Path, listen: &str, hook: &Path, extra: &str) -> PathBuf {
    std::fs::write(
        dir.join("rules.yaml"),
        "checks:\n  - name: live\n    source: probe\n    probe: live\n    \
         critical: { failures: 1 }\n    rollback: { failures: 2 }\n",
    )
    .unwrap();
    let toml = format!(
        r#"[server]
listen = "{listen}"
[store]
path = "g.db"

[[services]]
name = "checkout"
rules = ["rules.yaml"]
  [services.cadence]
  tiers = [ {{ until = "1h", every = "300ms" }} ]
  [[services.probes]]
  name = "live"
  url = "http://127.0.0.1:{port}/"
  timeout = "300ms"
  [services.rollback]
  command = ["{hook}"]
  timeout = "30s"
{extra}"#,
        port = free_port(),
        hook = hook.display(),
    );
    let path = dir.join("guardian.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

/// A hook that logs its start to `DIR/hook.log`, sleeps `secs`, prints
/// "rolled back" and exits 0; returns (hook, log).
fn slow_hook(dir: &Path, secs: u32) -> (PathBuf, PathBuf) {
    let log = dir.join("hook.log");
    let hook = script(
        dir,
        "hook.sh",
        &format!(
            "echo \"$RG_RELEASE_ID\" >> '{}'\nsleep {secs}\necho rolled back",
            log.display()
        ),
    );
    (hook, log)
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

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

/// Waits until the hook has started (its first line in `log`).
async fn hook_started(log: &Path) {
    wait_for("the hook to start", Duration::from_secs(30), || async {
        (!lines(log).is_empty()).then_some(())
    })
    .await;
}

/// The release once it is `rolled_back` (panics on `rollback_failed`).
async fn rolled_back(d: &Daemon, id: &str) -> Value {
    let r = d
        .release_until(id, "the rollback's outcome", Duration::from_secs(60), |r| {
            r["status"] == "rolled_back" || r["status"] == "rollback_failed"
        })
        .await;
    assert_eq!(r["status"], "rolled_back", "{r:#}\n{}", d.log());
    r
}

fn assert_recorded_by_the_supervisor(r: &Value) {
    let decisions = r["decisions"].as_array().unwrap();
    let done = decisions
        .iter()
        .find(|d| d["action"] == "rolled_back")
        .unwrap_or_else(|| panic!("no rolled_back decision: {decisions:?}"));
    assert!(
        done["reason"]
            .as_str()
            .unwrap()
            .contains("recorded by the hook supervisor"),
        "{done}"
    );
    assert!(
        !decisions.iter().any(|d| d["action"] == "rollback_failed"),
        "{decisions:?}"
    );
    assert_eq!(r["rollback"]["exit_code"], 0, "{r:#}");
    assert!(
        r["rollback"]["output"]
            .as_str()
            .is_some_and(|o| o.contains("rolled back")),
        "{r:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hook_still_running_after_kill9_is_adopted_and_its_success_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let listen = free_listen();
    let (hook, log) = slow_hook(dir.path(), 4);
    let config = config(dir.path(), &listen, &hook);
    let mut d = Daemon::start(&config, &listen).await;
    let id = register(&d).await;
    hook_started(&log).await;
    // kill -9 while the hook sleeps; its supervisor lives on.
    d.kill9();
    let status_file = dir.path().join("rollback-hooks").join(format!("{id}.json"));
    assert!(!status_file.exists(), "the hook was still to finish");
    let d = Daemon::start(&config, &listen).await;
    let r = rolled_back(&d, &id).await;
    assert_recorded_by_the_supervisor(&r);
    assert_eq!(lines(&log), [id.as_str()], "the hook ran exactly once");
    assert!(
        d.log().contains("still running under its supervisor"),
        "not adopted:\n{}",
        d.log()
    );
    removed(&status_file).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hook_that_finished_while_the_daemon_was_down_is_recorded_rolled_back() {
    let dir = tempfile::tempdir().unwrap();
    let listen = free_listen();
    let (hook, log) = slow_hook(dir.path(), 1);
    let config = config(dir.path(), &listen, &hook);
    let mut d = Daemon::start(&config, &listen).await;
    let id = register(&d).await;
    hook_started(&log).await;
    d.kill9();
    // The supervisor records the hook's end with nobody to read it.
    let status_file = dir.path().join("rollback-hooks").join(format!("{id}.json"));
    wait_for("the status file", Duration::from_secs(30), || async {
        status_file.exists().then_some(())
    })
    .await;
    let d = Daemon::start(&config, &listen).await;
    let r = rolled_back(&d, &id).await;
    assert_recorded_by_the_supervisor(&r);
    assert_eq!(lines(&log), [id.as_str()], "the hook ran exactly once");
    removed(&status_file).await;
}

/// Waits until the status file is removed: just after the outcome is
/// recorded (which the API shows first).
async fn removed(status_file: &Path) {
    wait_for(
        "the status file to be removed once recorded",
        Duration::from_secs(10),
        || async { (!status_file.exists()).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_kill_the_daemon_records_the_supervised_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let listen = free_listen();
    let hook = script(
        dir.path(),
        "fail.sh",
        "echo 'error: deployment not found' >&2\nexit 3",
    );
    let config = config(dir.path(), &listen, &hook);
    let d = Daemon::start(&config, &listen).await;
    let id = register(&d).await;
    let r = d
        .release_until(&id, "rollback_failed", Duration::from_secs(60), |r| {
            r["status"] == "rollback_failed"
        })
        .await;
    assert_eq!(r["rollback"]["exit_code"], 3, "{r:#}");
    let decisions = r["decisions"].as_array().unwrap();
    assert!(
        decisions.iter().any(|d| d["action"] == "rollback_failed"
            && d["reason"]
                == "rollback hook failed: exited with status 3: error: deployment not found"),
        "{decisions:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_supervised_hook_sees_only_its_minimal_environment() {
    let dir = tempfile::tempdir().unwrap();
    let listen = free_listen();
    let dump = dir.path().join("env.txt");
    let hook = script(
        dir.path(),
        "dump-env.sh",
        &format!("/usr/bin/env > '{}'", dump.display()),
    );
    let extra = "  env = { KUBECONFIG = \"/etc/kube/config\" }\n";
    let config = config_with(dir.path(), &listen, &hook, extra);
    // The daemon inherits this test's whole environment (CARGO_*, NEXTEST_*...).
    let d = Daemon::start(&config, &listen).await;
    let id = register(&d).await;
    rolled_back(&d, &id).await;
    let text = std::fs::read_to_string(&dump).unwrap();
    let mut names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        // `/bin/sh` itself exports PWD to the commands it runs.
        .filter(|k| *k != "PWD")
        .collect();
    names.sort_unstable();
    let mut expected = vec![
        "KUBECONFIG",
        "RG_ENVIRONMENT",
        "RG_PREVIOUS_VERSION",
        "RG_REASON",
        "RG_RELEASE_ID",
        "RG_SERVICE",
        "RG_VERSION",
    ];
    for inherited in ["PATH", "HOME", "LANG"] {
        if std::env::var_os(inherited).is_some() {
            expected.push(inherited);
        }
    }
    expected.sort_unstable();
    assert_eq!(names, expected, "environment was:\n{text}");
    assert!(text.contains(&format!("RG_RELEASE_ID={id}\n")), "{text}");
}

/// Whether `pid` is gone (or a zombie waiting to be reaped).
fn dead(pid: &str) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit(") ").next().and_then(|s| s.chars().next());
    stat.is_empty() || state == Some('Z') || state == Some('X')
}

#[tokio::test]
async fn on_timeout_every_descendant_is_killed_even_after_setsid() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    // Three escapees besides the hook itself: a `setsid` child, a `setsid`
    // grandchild whose parent exits at once (it re-parents to the
    // supervisor), and a plain background child.
    let hook = script(
        dir.path(),
        "escape.sh",
        &format!(
            "setsid sh -c 'echo $$ > {d}/setsid.pid; exec sleep 1000' &\n\
             sh -c \"setsid sh -c 'echo \\$\\$ > {d}/orphan.pid; exec sleep 1000' &\"\n\
             sleep 1000 &\necho $! > {d}/bg.pid\necho started\nwait"
        ),
    );
    let status_file = dir.path().join("state/rollback-hooks/r1.json");
    let pids = ["setsid.pid", "orphan.pid", "bg.pid"].map(|f| dir.path().join(f));
    let out = tokio::process::Command::new(bin())
        .args(["hook-supervisor", "--status-file"])
        .arg(&status_file)
        .args(["--timeout-ms", "1500", "--"])
        .arg(&hook)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let status: Value = serde_json::from_slice(&std::fs::read(&status_file).unwrap()).unwrap();
    assert_eq!(status["timed_out"], true, "{status}");
    assert_eq!(status["output"], "started\n", "{status}");
    // The hook, its three escapees, and the `sleep`s' shells on the way.
    let killed = status["killed"].as_u64().unwrap();
    assert!(killed >= 4, "{status}");
    let run: release_guardian::actions::rollback::HookRun =
        serde_json::from_value::<release_guardian::actions::hook_supervisor::HookStatus>(status)
            .unwrap()
            .into();
    assert_eq!(
        run.describe(),
        format!("timed out after 1s 500ms; killed {killed} processes")
    );
    for f in &pids {
        let pid = std::fs::read_to_string(f)
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()))
            .trim()
            .to_string();
        wait_for(
            &format!("{} ({pid}) to die", f.display()),
            Duration::from_secs(5),
            || async { dead(&pid).then_some(()) },
        )
        .await;
    }
}
