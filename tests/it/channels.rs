//! PagerDuty, signed webhooks and Slack's Block Kit built from config text
//! and sent to local receivers that check the documented shapes;
//! `release-guardian notify-test` against a receiver and against nothing;
//! the DESIGN example configuration (with `kind = "pagerduty"`) passing
//! `check`.

use crate::support::{
    bin, design_fixture, free_port, message, notifier, stdout_and_stderr, Receiver, Reply,
};
use release_guardian::actions::notify::NotifyError;
use release_guardian::model::{Level, Severity};
use std::path::Path;

/// A PagerDuty integration key: 32 characters, as PagerDuty checks.
const ROUTING_KEY: &str = "e93facc04764012d7bfb002500d5d1a6";

#[tokio::test]
async fn pagerduty_trigger_and_resolve_share_the_dedup_key() {
    let rx = Receiver::start(Reply::Ok).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pd.key"), format!("{ROUTING_KEY}\n")).unwrap();
    let toml = format!(
        "[server]\npublic_url = \"https://guardian.example/\"\n\
         [notifiers.pager]\nkind = \"pagerduty\"\nrouting_key_file = \"pd.key\"\nurl = \"{}\"\n",
        rx.pagerduty_url()
    );
    let pager = notifier(dir.path(), &toml, "pager");
    pager
        .send(&message("level_changed", Level::Rollback))
        .await
        .unwrap();
    pager.send(&message("recovered", Level::Ok)).await.unwrap();
    let got = rx.received();
    assert_eq!(rx.problems(), Vec::<String>::new());
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|r| r.status == 202));
    let (trigger, resolve) = (&got[0].body, &got[1].body);
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(resolve["event_action"], "resolve");
    assert_eq!(trigger["routing_key"], ROUTING_KEY);
    assert_eq!(resolve["routing_key"], ROUTING_KEY);
    assert_eq!(trigger["dedup_key"], "0190-release/error_rate");
    assert_eq!(trigger["dedup_key"], resolve["dedup_key"]);
    let p = &trigger["payload"];
    assert_eq!(p["severity"], "critical");
    assert_eq!(p["source"], "checkout/production");
    assert_eq!(p["component"], "error_rate");
    assert_eq!(p["timestamp"], "2026-08-22T10:00:00Z");
    let summary = p["summary"].as_str().unwrap();
    for part in [
        "checkout",
        "production",
        "v2",
        "error_rate",
        "rollback",
        "0.0712",
    ] {
        assert!(summary.contains(part), "{part} missing from {summary}");
    }
    assert_eq!(p["custom_details"]["previous_version"], "v1");
    assert_eq!(
        trigger["links"][0]["href"],
        "https://guardian.example/v1/releases/0190-release"
    );

    // Severity mapping: `critical` is PagerDuty's `error`.
    pager
        .send(&message("level_changed", Level::Critical))
        .await
        .unwrap();
    assert_eq!(rx.received()[2].body["payload"]["severity"], "error");
}

#[tokio::test]
async fn pagerduty_refusals_are_permanent_and_keep_the_key_out() {
    let rx = Receiver::start(Reply::Ok).await;
    let dir = tempfile::tempdir().unwrap();
    // 31 characters: PagerDuty refuses it with 400.
    let short = &ROUTING_KEY[1..];
    let toml = format!(
        "[notifiers.pager]\nkind = \"pagerduty\"\nrouting_key = \"{short}\"\nurl = \"{}\"\n",
        rx.pagerduty_url()
    );
    let e = notifier(dir.path(), &toml, "pager")
        .send(&message("level_changed", Level::Rollback))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, NotifyError::Permanent { detail } if detail.contains("HTTP 400") && detail.contains("routing_key")),
        "{e:?}"
    );
    assert!(!format!("{e:?}").contains(short), "{e:?}");

    rx.set_reply(Reply::RateLimited("30"));
    let toml = toml.replace(short, ROUTING_KEY);
    let e = notifier(dir.path(), &toml, "pager")
        .send(&message("level_changed", Level::Rollback))
        .await
        .unwrap_err();
    assert!(
        matches!(e, NotifyError::Temporary { retry_after: Some(d), .. } if d.as_secs() == 30),
        "{e:?}"
    );
}

#[tokio::test]
async fn webhook_body_is_signed_and_the_signature_verifies() {
    let rx = Receiver::start(Reply::Ok).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hook.secret"), "hook-s3cret-value\n").unwrap();
    let toml = format!(
        "[notifiers.hook]\nkind = \"webhook\"\nurl = \"{}\"\nsecret_file = \"hook.secret\"\n",
        rx.webhook_url()
    );
    let hook = notifier(dir.path(), &toml, "hook");
    hook.send(&message("level_changed", Level::Rollback))
        .await
        .unwrap();
    let got = rx.received();
    assert_eq!(rx.problems(), Vec::<String>::new());
    let body = &got[0].body;
    assert_eq!(body["schema_version"], 2);
    assert_eq!(body["version"], "v2");
    assert_eq!(body["incident_key"], "0190-release/error_rate");
    assert_eq!(body["closes_incident"], false);
    // Verify as a receiver would: HMAC-SHA256 of the raw body under the secret.
    let raw = &got[0].raw;
    let sig = got[0].headers["x-guardian-signature"].to_str().unwrap();
    let hex = sig.strip_prefix("sha256=").expect("sha256= scheme");
    let tag: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"hook-s3cret-value");
    ring::hmac::verify(&key, raw, &tag).expect("the signature verifies");
    let wrong = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"another secret");
    assert!(ring::hmac::verify(&wrong, raw, &tag).is_err());
    // The receiver example of docs/api.md verifies it too, and refuses a
    // wrong secret.
    assert_eq!(doc_verify(b"hook-s3cret-value", raw, sig), Ok("v2".into()));
    assert!(doc_verify(b"another secret", raw, sig).is_err());

    // Without a secret: no signature header.
    let toml = format!(
        "[notifiers.hook]\nkind = \"webhook\"\nurl = \"{}\"\n",
        rx.webhook_url()
    );
    notifier(dir.path(), &toml, "hook")
        .send(&message("recovered", Level::Ok))
        .await
        .unwrap();
    let got = rx.received();
    assert!(got[1].headers.get("x-guardian-signature").is_none());
    assert_eq!(got[1].body["closes_incident"], true);
}

/// Runs the Python example of docs/api.md ("Verifying the signature") on
/// `raw` and `header` under `secret`: the body's `version`, or the error.
fn doc_verify(secret: &[u8], raw: &[u8], header: &str) -> Result<String, String> {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/api.md")).unwrap();
    let section = &doc[doc
        .find("### Verifying the signature")
        .expect("the section")..];
    let start = section.find("```python\n").expect("the example") + "```python\n".len();
    let example = &section[start..start + section[start..].find("```").unwrap()];
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("body"), raw).unwrap();
    let script = format!(
        "{example}\nimport sys\nprint(verify(sys.argv[1].encode(), open(sys.argv[2], 'rb').read(), sys.argv[3])['version'])\n"
    );
    let out = std::process::Command::new("/usr/bin/python3")
        .args(["-c", &script, std::str::from_utf8(secret).unwrap()])
        .arg(dir.path().join("body"))
        .arg(header)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).to_string())
    }
}

#[tokio::test]
async fn slack_blocks_carry_the_evidence_and_links() {
    let rx = Receiver::start(Reply::Ok).await;
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[server]\npublic_url = \"https://guardian.example\"\n\
         [notifiers.chat]\nkind = \"slack\"\nwebhook_url = \"{}\"\n",
        rx.slack_url()
    );
    notifier(dir.path(), &toml, "chat")
        .send(&message("level_changed", Level::Rollback))
        .await
        .unwrap();
    assert_eq!(rx.problems(), Vec::<String>::new());
    let body = &rx.received()[0].body;
    assert!(body["text"]
        .as_str()
        .unwrap()
        .contains("checkout production v2"));
    let texts: Vec<&str> = body["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "section")
        .filter_map(|b| b["text"]["text"].as_str())
        .collect();
    assert_eq!(
        texts,
        [
            "*Evidence*\nValue `0.0712` vs rule `above 0.05 for 5m` → *rollback*",
            "<https://guardian.example/v1/releases/0190-release|Release status>",
        ]
    );
}

/// Runs `notify-test NAME --config FILE` without blocking the runtime the
/// receiver answers on: (exit 0?, stdout + stderr).
async fn notify_test(config: &Path, name: &str) -> (bool, String) {
    let out = tokio::process::Command::new(bin())
        .args(["notify-test", name, "--config"])
        .arg(config)
        .output()
        .await
        .unwrap();
    (out.status.success(), stdout_and_stderr(&out))
}

#[tokio::test]
async fn notify_test_says_delivered_or_why_not() {
    let rx = Receiver::start(Reply::Ok).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("guardian.toml");
    std::fs::write(
        &config,
        format!(
            "[notifiers.hook]\nkind = \"webhook\"\nurl = \"{}\"\nmin_severity = \"critical\"\n\
             [notifiers.gone]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{}/hooks/SECRETXYZ\"\n",
            rx.webhook_url(),
            free_port()
        ),
    )
    .unwrap();
    let (ok, out) = notify_test(&config, "hook").await;
    assert!(ok, "{out}");
    assert!(out.contains("delivered"), "{out}");
    let got = rx.received();
    assert_eq!(got.len(), 1, "{out}");
    assert_eq!(rx.problems(), Vec::<String>::new());
    assert_eq!(got[0].body["event"], "test");
    assert!(got[0].body["reason"]
        .as_str()
        .unwrap()
        .contains("test message"));

    let (ok, out) = notify_test(&config, "gone").await;
    assert!(!ok, "{out}");
    assert!(
        out.contains("`gone` (webhook) did not deliver the test message")
            && out.contains("connection refused"),
        "{out}"
    );
    assert!(!out.contains("SECRETXYZ"), "{out}");

    let (ok, out) = notify_test(&config, "nobody").await;
    assert!(!ok);
    assert!(
        out.contains("no notifier `nobody`") && out.contains("gone, hook"),
        "{out}"
    );
}

#[test]
fn the_design_example_with_pagerduty_passes_check() {
    let dir = design_fixture();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config");
    let text = std::fs::read_to_string(dir.path().join("guardian.toml")).unwrap();
    assert!(text.contains("kind = \"pagerduty\"\nrouting_key_file = \"pd.key\""));
    let out = std::process::Command::new(bin())
        .args(["check", "--config"])
        .arg(dir.path().join("guardian.toml"))
        .output()
        .unwrap();
    let shown = stdout_and_stderr(&out);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains("OK (1 services, 2 checks, 2 notifiers)"),
        "{shown}"
    );
    let key = std::fs::read_to_string(src.join("pd.key")).unwrap();
    assert!(
        !shown.contains(key.trim()),
        "the routing key leaked: {shown}"
    );
}

#[test]
fn severity_mapping_covers_release_events() {
    let mut m = message("rollback_failed", Level::Rollback);
    m.check = None;
    m.level = None;
    m.severity = Severity::Critical;
    assert_eq!(
        release_guardian::actions::notify::pagerduty::severity(&m),
        "critical"
    );
}
