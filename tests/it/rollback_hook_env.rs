//! The rollback hook's environment, seen by a real script: exactly `PATH`,
//! `HOME`, `LANG` (when the daemon has them), the config's `env` table and
//! the `RG_*` variables; nothing else of the daemon's environment.
//!
//! The daemon's environment must hold a secret for the test to mean
//! anything, and `set_var` in a test process whose other threads spawn
//! processes is a race (`cargo test` runs the whole binary in one process).
//! So the test runs itself again in a child process that has the secret in
//! its environment from the start.

use crate::support::{script, stdout_and_stderr};
use release_guardian::actions::rollback::{run_hook, HookVars};
use release_guardian::actions::rollback::{RollbackConfig, RollbackMode};
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

/// The variable of the daemon's environment that the hook must not see.
const SECRET: (&str, &str) = ("SECRET_FROM_PARENT", "hunter2");

/// This test's name as the test harness knows it.
const THIS_TEST: &str = "rollback_hook_env::the_hook_sees_only_its_minimal_environment";

#[tokio::test]
async fn the_hook_sees_only_its_minimal_environment() {
    if std::env::var_os(SECRET.0).is_none() {
        let out = Command::new(std::env::current_exe().unwrap())
            .args([THIS_TEST, "--exact", "--nocapture", "--test-threads=1"])
            .env(SECRET.0, SECRET.1)
            .output()
            .unwrap();
        let all = stdout_and_stderr(&out);
        assert!(out.status.success(), "the test failed in a child:\n{all}");
        assert!(all.contains("1 passed"), "the child ran no test:\n{all}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("env.txt");
    let script = script(dir.path(), "dump-env.sh", "/usr/bin/env > \"$HOOK_OUT\"");

    let mut env = BTreeMap::new();
    env.insert("HOOK_OUT".to_string(), dump.display().to_string());
    env.insert("KUBECONFIG".to_string(), "/etc/kube/config".to_string());
    let cfg = RollbackConfig {
        command: vec![script.display().to_string()],
        timeout: Duration::from_secs(30),
        mode: RollbackMode::Auto,
        env,
        ..Default::default()
    };
    let vars = HookVars {
        release_id: "0190-release".into(),
        service: "checkout".into(),
        environment: "production".into(),
        version: "v2".into(),
        previous_version: "v1".into(),
        reason: "error_rate above 0.05 for 5m; p99 > 2s".into(),
    };
    let run = run_hook(&cfg, &vars).await;
    assert!(run.succeeded(), "{}", run.describe());

    let text = std::fs::read_to_string(&dump).unwrap();
    let seen: BTreeMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
    let mut expected: BTreeSet<&str> = [
        "HOOK_OUT",
        "KUBECONFIG",
        "RG_RELEASE_ID",
        "RG_SERVICE",
        "RG_ENVIRONMENT",
        "RG_VERSION",
        "RG_PREVIOUS_VERSION",
        "RG_REASON",
    ]
    .into();
    for inherited in ["PATH", "HOME", "LANG"] {
        if std::env::var_os(inherited).is_some() {
            expected.insert(inherited);
        }
    }
    // `/bin/sh` itself exports PWD to the commands it runs.
    let names: BTreeSet<&str> = seen.keys().copied().filter(|k| *k != "PWD").collect();
    assert_eq!(names, expected, "environment was:\n{text}");
    assert!(!text.contains(SECRET.1));
    assert_eq!(seen["RG_RELEASE_ID"], "0190-release");
    assert_eq!(seen["RG_SERVICE"], "checkout");
    assert_eq!(seen["RG_ENVIRONMENT"], "production");
    assert_eq!(seen["RG_VERSION"], "v2");
    assert_eq!(seen["RG_PREVIOUS_VERSION"], "v1");
    assert_eq!(seen["RG_REASON"], "error_rate above 0.05 for 5m; p99 > 2s");
    assert_eq!(seen["KUBECONFIG"], "/etc/kube/config");
    if let Ok(path) = std::env::var("PATH") {
        assert_eq!(seen["PATH"], path);
    }
}
