//! The config loader end to end: real files in temp dirs, every error with
//! its exact `FILE:LINE:COL`.

use crate::support::settings_with_env;
use release_guardian::config::{load, load_str, ConfigError};
use release_guardian::sources::Reads;
use release_guardian::store::StoreSettings;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tempfile::TempDir;

const OPS_TOKEN: &str = "ops-token-s3cr3t-value";
const SLACK_URL: &str = "https://hooks.slack.example/services/T000/B000/sl4ck-s3cr3t";

/// A temp dir holding a copy of `tests/fixtures/config`.
fn fixture() -> TempDir {
    crate::support::design_fixture()
}

pub(crate) fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    p
}

fn no_env() -> Vec<(String, String)> {
    Vec::new()
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Loads `text` as `DIR/guardian.toml` and returns its errors.
pub(crate) fn errors_of(dir: &Path, text: &str, env: &[(String, String)]) -> Vec<ConfigError> {
    let path = write(dir, "guardian.toml", text);
    match load_str(text, &path, env) {
        Ok(s) => panic!(
            "expected errors, got settings with warnings {:?}",
            s.warnings
        ),
        Err(e) => e.errors,
    }
}

/// Asserts that `errors` are exactly `expected` (file, line, col, a piece of
/// the message), in order.
pub(crate) fn assert_errors(errors: &[ConfigError], expected: &[(&Path, usize, usize, &str)]) {
    let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(errors.len(), expected.len(), "got:\n{}", shown.join("\n"));
    for (e, (file, line, col, msg)) in errors.iter().zip(expected) {
        assert_eq!(
            (e.file.as_path(), e.line, e.col),
            (*file, *line, *col),
            "position of {e}; all:\n{}",
            shown.join("\n")
        );
        assert!(
            e.message.contains(msg),
            "{e:?} should mention {msg:?}; all:\n{}",
            shown.join("\n")
        );
    }
}

#[test]
fn the_design_example_loads() {
    let dir = fixture();
    let file = dir.path().join("guardian.toml");
    let s = load(&file).unwrap_or_else(|e| panic!("{e}"));

    assert_eq!(s.file, file);
    assert_eq!(
        s.store,
        StoreSettings::sqlite(dir.path().join("state/guardian.db"))
    );
    assert_eq!(s.config.server.listen.to_string(), "127.0.0.1:9797");
    assert_eq!(s.tokens.len(), 1);
    assert_eq!(s.tokens[0].token.expose(), OPS_TOKEN);

    let svc = s.service("checkout", "production").expect("the service");
    assert_eq!(svc.labels["namespace"], "shop");
    assert_eq!(svc.notify, ["oncall-slack", "pager"]);
    assert_eq!(svc.probes[0].expect_status, Some(200.into()));
    assert_eq!(svc.probes[0].timeout, Duration::from_secs(2));
    let rollback = svc.rollback.as_ref().unwrap();
    assert_eq!(rollback.command[0], "kubectl");
    assert_eq!(rollback.timeout, Duration::from_secs(300));
    assert_eq!(svc.cadence.length(), 6 * 3600 * 1000);

    let names: Vec<&str> = svc.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["error_rate", "live"]);
    let rate = &svc.checks[0];
    assert_eq!(
        (rate.source.name, rate.source.reads),
        ("prometheus", Reads::Query)
    );
    assert!(rate.query.as_deref().unwrap().contains("{{namespace}}"));
    assert_eq!(rate.step, Duration::from_secs(15));
    assert_eq!(rate.rule.warning.unwrap().above, Some(0.005));
    assert_eq!(rate.rule.rollback.unwrap().for_ms, 300_000);
    assert_eq!(rate.pack, dir.path().join("rules/checklist.yaml"));
    let live = &svc.checks[1];
    assert_eq!(
        (live.source.name, live.source.reads),
        ("probe", Reads::Probe)
    );
    assert_eq!(live.probe.as_deref(), Some("live"));
    assert_eq!(live.rule.critical.unwrap().failures, Some(2));

    assert_eq!(s.notifiers.len(), 2);
    let slack = &s.notifiers["oncall-slack"];
    assert_eq!(slack.kind, "slack");
    let secrets: Vec<&str> = slack.config.secrets().iter().map(|s| s.expose()).collect();
    assert_eq!(secrets, [SLACK_URL]);
    let pager = &s.notifiers["pager"];
    assert_eq!(pager.kind, "pagerduty");
    assert_eq!(
        pager.min_severity,
        release_guardian::model::Severity::Critical
    );
    let secrets: Vec<&str> = pager.config.secrets().iter().map(|s| s.expose()).collect();
    assert_eq!(secrets, ["0123456789abcdef0123456789abcdef"]);
    // Both query sources of the example, each of the kind it is named after.
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    let kinds: Vec<(&str, &str)> = s
        .sources
        .iter()
        .map(|(name, spec)| (name.as_str(), spec.kind.name))
        .collect();
    assert_eq!(kinds, [("loki", "loki"), ("prometheus", "prometheus")]);
}

#[test]
fn errors_in_different_sections_are_all_reported_with_their_positions() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"[server]
listen = "127.0.0.1:9797"
listn = "x"

[cadence]
tiers = [ { until = "1h", every = "5x" } ]

[[services]]
name = "checkout"
notify = ["oncall", "nobody"]
  [[services.probes]]
  name = "live"
  url = "ftp://x/health"

[[services]]
name = "search"
enviroment = "staging"

[notifiers.oncall]
kind = "slack"
webhook_url = "https://hooks.example/x"

[notifiers.mail]
kind = "email"
smtp_url = "smtp://x"

[extra]
x = 1
"#;
    let errors = errors_of(dir.path(), text, &no_env());
    let f = dir.path().join("guardian.toml");
    assert_errors(
        &errors,
        &[
            (
                &f,
                3,
                1,
                "unknown field `listn`, expected one of `listen`, `shutdown_grace`, `max_connections`, `header_read_timeout`, `idle_timeout`, `allowed_hosts`, `public_url`, `tls_cert_file`, `tls_key_file`, `tls_client_ca_file`, `intake_rate_limit`, `intake_rate_burst`",
            ),
            (&f, 6, 27, "invalid duration \"5x\""),
            (
                &f,
                10,
                21,
                "unknown notifier `nobody` in `notify`; defined: oncall, mail",
            ),
            (
                &f,
                13,
                3,
                "probe `live`: `url` \"ftp://x/health\" is not an http(s) URL",
            ),
            (&f, 17, 1, "unknown field `enviroment`"),
            (&f, 23, 12, "missing field `from`"),
            (&f, 27, 2, "unknown section `extra`"),
        ],
    );
    // Display is FILE:LINE:COL: message.
    assert_eq!(
        errors[0].to_string(),
        format!(
            "{}:3:1: unknown field `listn`, expected one of `listen`, `shutdown_grace`, `max_connections`, `header_read_timeout`, `idle_timeout`, `allowed_hosts`, `public_url`, `tls_cert_file`, `tls_key_file`, `tls_client_ca_file`, `intake_rate_limit`, `intake_rate_burst`",
            f.display()
        )
    );
}

#[test]
fn unknown_keys_are_located_at_the_key_itself() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"[auth]
tokens = [ { token = "abc", scope = ["read"] } ]

[[services]]
name = "checkout"
  [[services.probes]]
  name = "live"
  url = "http://127.0.0.1/"
  timout = "2s"
  [services.rollback]
  command = ["true"]
  mod = "auto"
"#;
    let f = dir.path().join("guardian.toml");
    // Every error of every table at once: the misspelt `scope` leaves the
    // token without its `scopes`; the service's probe and rollback both.
    assert_errors(
        &errors_of(dir.path(), text, &no_env()),
        &[
            (&f, 2, 12, "missing field `scopes`"),
            (&f, 2, 29, "unknown field `scope`"),
            (&f, 9, 3, "unknown field `timout`"),
            (
                &f,
                12,
                3,
                "unknown field `mod`, expected one of `command`, `url`, `secret`, `secret_file`, `timeout`, `mode`, `env`, `dry_run`",
            ),
        ],
    );
}

#[test]
fn bad_durations_are_located_at_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"[server]
shutdown_grace = "soon"

[[services]]
name = "checkout"
probes = [ { name = "live", url = "http://127.0.0.1/", timeout = "2 lightyears" } ]
"#;
    let f = dir.path().join("guardian.toml");
    assert_errors(
        &errors_of(dir.path(), text, &no_env()),
        &[
            (&f, 2, 1, "invalid duration \"soon\""),
            (&f, 6, 56, "invalid duration \"2 lightyears\""),
        ],
    );
}

#[test]
fn a_bad_cadence_is_located_at_its_tier() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"[cadence]
tiers = [ { until = "1h", every = "5m" },
          { until = "30m", every = "15m" } ]
"#;
    let f = dir.path().join("guardian.toml");
    assert_errors(
        &errors_of(dir.path(), text, &no_env()),
        &[(
            &f,
            3,
            13,
            "tier 2: `until` must be later than the previous tier's",
        )],
    );
}

#[test]
fn unknown_notifiers_and_duplicate_services_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"[[services]]
name = "checkout"
notify = ["pager"]

[[services]]
name = "checkout"
environment = "production"
"#;
    let f = dir.path().join("guardian.toml");
    let errors = errors_of(dir.path(), text, &no_env());
    assert_errors(
        &errors,
        &[
            (
                &f,
                3,
                11,
                "unknown notifier `pager` in `notify`; no [notifiers] are defined",
            ),
            (&f, 6, 1, "service `checkout` (production) is defined twice"),
        ],
    );
    assert!(errors[1]
        .message
        .ends_with(&format!("first at {}:2:1", f.display())));
}

#[test]
fn a_missing_rule_pack_is_located_at_the_config_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "rules/present.yaml",
        "checks:\n  - name: up\n    source: probe\n    probe: live\n    critical: { failures: 1 }\n",
    );
    let text = r#"[[services]]
name = "checkout"
rules = [
  "rules/present.yaml",
  "rules/missing.yaml",
]
probes = [ { name = "live", url = "http://127.0.0.1/" } ]
"#;
    let f = dir.path().join("guardian.toml");
    let errors = errors_of(dir.path(), text, &no_env());
    assert_errors(
        &errors,
        &[(&f, 5, 3, "cannot read rule pack `rules/missing.yaml`")],
    );
    assert!(errors[0]
        .message
        .contains(&dir.path().join("rules/missing.yaml").display().to_string()));
}

#[test]
fn rule_pack_errors_are_located_in_the_pack() {
    let dir = tempfile::tempdir().unwrap();
    let pack = write(
        dir.path(),
        "rules/bad.yaml",
        r#"checks:
  - name: error_rate
    source: prometheus
    query: rate(x{service="{{service}}",team="{{team}}"}[5m])
    warning: { above: 0.01 }
  - name: latency
    source: prometheus
    critical: { above: 0.5 }
  - name: errors_failures
    source: prometheus
    query: up
    critical: { failures: 3 }
  - name: typo
    source: probe
    probe: live
    critical: { failures: 2 }
    severity: high
  - name: ready
    source: probe
    probe: ready
    rollback: { failures: 3 }
  - name: logs
    source: loki
    query: '{app="x"}'
    warning: { above: 1 }
  - name: slow
    source: prometheus
    query: up
    critical: { above: 1, for: fast }
  - name: nothing
    source: prometheus
    query: up
"#,
    );
    let text = r#"[sources.prometheus]
url = "http://127.0.0.1:9090"

[[services]]
name = "checkout"
rules = ["rules/bad.yaml"]
labels = { namespace = "shop" }
probes = [ { name = "live", url = "http://127.0.0.1/" } ]
"#;
    let errors = errors_of(dir.path(), text, &no_env());
    assert_errors(
        &errors,
        &[
            (&pack, 4, 5, "unknown template variable `{{team}}`"),
            (
                &pack,
                7,
                5,
                "check `latency`: a prometheus check needs a `query`",
            ),
            (
                &pack,
                12,
                17,
                "check `errors_failures`: `failures` is only valid for probe checks",
            ),
            (&pack, 17, 5, "unknown field `severity`"),
            (&pack, 20, 5, "has no probe `ready`; its probes: live"),
            (
                &pack,
                23,
                5,
                "check `logs` uses loki, but [sources.loki] is not configured",
            ),
            (&pack, 29, 27, "invalid duration \"fast\""),
            (&pack, 30, 5, "check `nothing` has no level"),
        ],
    );
    assert!(errors[0]
        .message
        .contains("known: service, environment, version, previous_version, namespace"));
}

#[test]
fn yaml_syntax_errors_and_duplicate_check_names() {
    let dir = tempfile::tempdir().unwrap();
    let broken = write(
        dir.path(),
        "rules/broken.yaml",
        "checks:\n  - name: [oops\n    source: probe\n",
    );
    let a = write(
        dir.path(),
        "rules/a.yaml",
        "checks:\n  - name: live\n    source: probe\n    probe: live\n    critical: { failures: 2 }\n",
    );
    let b = write(
        dir.path(),
        "rules/b.yaml",
        "# the same check again\nchecks:\n  - name: live\n    source: probe\n    probe: live\n    rollback: { failures: 5 }\n",
    );
    let text = r#"[[services]]
name = "checkout"
rules = ["rules/broken.yaml", "rules/a.yaml", "rules/b.yaml"]
probes = [ { name = "live", url = "http://127.0.0.1/" } ]
"#;
    let errors = errors_of(dir.path(), text, &no_env());
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(errors[0].file, broken);
    assert!(
        errors[0].message.starts_with("invalid YAML: "),
        "{errors:?}"
    );
    assert_eq!(errors[0].line, 3, "{errors:?}");
    assert!(!errors[0].message.contains(" at line 3"), "{errors:?}");
    assert_eq!(
        (errors[1].file.as_path(), errors[1].line, errors[1].col),
        (b.as_path(), 3, 5)
    );
    assert_eq!(
        errors[1].message,
        format!(
            "duplicate check name `live` in service `checkout` (production); first defined at {}:2:5",
            a.display()
        )
    );
}

#[test]
fn environment_overrides_win_over_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"[server]
listen = "127.0.0.1:9797"

[[services]]
name = "checkout"
"#;
    let s = settings_with_env(
        dir.path(),
        text,
        &env(&[
            ("RG__SERVER__LISTEN", "127.0.0.1:9000"),
            ("RG__SERVER__SHUTDOWN_GRACE", "3s"),
            ("RG__SOURCES__PROMETHEUS__URL", "http://prom.internal:9090"),
            ("RG__STORE__PATH", "/tmp/rg/guardian.db"),
            // A number where a string is wanted: taken as the string given.
            ("RG__SERVICES__0__NAME", "1234"),
            // Not `RG__`: ignored.
            ("RG_LOG_FORMAT", "json"),
            ("RG_SERVER__LISTEN", "0.0.0.0:1"),
        ]),
    );
    assert_eq!(s.config.server.listen.to_string(), "127.0.0.1:9000");
    assert_eq!(s.config.server.shutdown_grace, Duration::from_secs(3));
    let prometheus = format!("{:?}", s.sources["prometheus"].config);
    assert!(
        prometheus.contains(r#"url: "http://prom.internal:9090""#),
        "{prometheus}"
    );
    assert_eq!(
        s.store,
        StoreSettings::sqlite(Path::new("/tmp/rg/guardian.db"))
    );
    assert_eq!(s.services[0].name, "1234");
}

#[test]
fn errors_in_environment_values_name_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let text = "[server]\nlisten = \"127.0.0.1:9797\"\n";
    let errors = errors_of(
        dir.path(),
        text,
        &env(&[
            ("RG__SERVER__LISTEN", "0.0.0.0:9000"),
            (
                "RG__CADENCE__TIERS",
                "[{ until = \"1h\", every = \"never\" }]",
            ),
            ("RG__SERVER__NOPE", "1"),
        ]),
    );
    let var = |v: &str| PathBuf::from(format!("env:{v}"));
    let (l, c, n) = (
        var("RG__SERVER__LISTEN"),
        var("RG__CADENCE__TIERS"),
        var("RG__SERVER__NOPE"),
    );
    // Every error of [server] is reported (the unknown key does not hide
    // the public listen address); [cadence] is separate.
    assert_errors(
        &errors,
        &[
            (&n, 1, 1, "unknown field `nope`"),
            (&c, 1, 1, "invalid duration \"never\""),
            (&l, 1, 1, "listen address 0.0.0.0:9000 is not loopback"),
        ],
    );
    let errors = errors_of(
        dir.path(),
        text,
        &env(&[("RG__SERVER__LISTEN", "0.0.0.0:9000")]),
    );
    assert_errors(&errors, &[(&l, 1, 1, "is not loopback")]);
    assert_eq!(
        errors[0].to_string(),
        "env:RG__SERVER__LISTEN:1:1: listen address 0.0.0.0:9000 is not loopback; without [auth] the API listens on loopback only"
    );
}

#[test]
fn a_public_listen_address_needs_auth() {
    let dir = tempfile::tempdir().unwrap();
    let text = "[server]\nlisten = \"0.0.0.0:9797\"\n";
    let f = dir.path().join("guardian.toml");
    assert_errors(
        &errors_of(dir.path(), text, &no_env()),
        &[(&f, 2, 1, "without [auth] the API listens on loopback only")],
    );
    // Off loopback a token needs 16 bytes (located at the key that gives it).
    write(dir.path(), "api.token", "t0ken\n");
    let with_auth = format!(
        "{text}\n[auth]\ntokens = [ {{ token_file = \"api.token\", scopes = [\"read\"] }} ]\n"
    );
    assert_errors(
        &errors_of(dir.path(), &with_auth, &no_env()),
        &[(&f, 5, 14, "the token is 5 bytes long; with a non-loopback `[server] listen` tokens need at least 16 bytes")],
    );
    write(dir.path(), "api.token", "t0ken-0123456789\n");
    let s = settings_with_env(dir.path(), &with_auth, &no_env());
    assert_eq!(s.tokens[0].token.expose(), "t0ken-0123456789");
}

#[test]
fn store_path_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings_with_env(dir.path(), "", &no_env());
    assert_eq!(
        s.store,
        StoreSettings::sqlite("/var/lib/release-guardian/guardian.db")
    );
    let s = settings_with_env(
        dir.path(),
        "",
        &env(&[("STATE_DIRECTORY", "/var/lib/rg-state:/other")]),
    );
    assert_eq!(
        s.store,
        StoreSettings::sqlite(Path::new("/var/lib/rg-state/guardian.db"))
    );
    let s = settings_with_env(dir.path(), "[store]\npath = \"db/g.db\"\n", &no_env());
    assert_eq!(s.store, StoreSettings::sqlite(dir.path().join("db/g.db")));
}

#[test]
fn secrets_are_read_from_files_and_never_shown() {
    let dir = fixture();
    let file = dir.path().join("guardian.toml");
    let s = load_str(&std::fs::read_to_string(&file).unwrap(), &file, &no_env()).unwrap();
    let debug = format!("{s:?}");
    assert!(!debug.contains(OPS_TOKEN) && !debug.contains("sl4ck-s3cr3t"));
    assert!(debug.contains("<redacted>"));

    // Broken secrets: the errors say what is wrong, never what the secret is.
    write(dir.path(), "slack.url", "not a url sl4ck-s3cr3t\n");
    let text = r#"[auth]
tokens = [ { token = 987654321, scopes = ["read"] } ]

[notifiers.slack]
kind = "slack"
webhook_url_file = "slack.url"

[notifiers.hook]
kind = "webhook"
url = "ftp://user:w3bh00k-s3cr3t@example/"
"#;
    let errors = errors_of(dir.path(), text, &no_env());
    let f = dir.path().join("guardian.toml");
    assert_errors(
        &errors,
        &[
            (
                &f,
                2,
                14,
                "invalid `token`: expected a string (the value is a secret and is not shown)",
            ),
            (
                &f,
                6,
                1,
                "the webhook URL is not an http(s) URL (relative URL without a base)",
            ),
            (
                &f,
                10,
                1,
                "the webhook `url` is not an http(s) URL (scheme `ftp` is not http or https)",
            ),
        ],
    );
    let shown = ConfigErrorsText::of(&errors);
    for secret in ["987654321", "sl4ck-s3cr3t", "w3bh00k-s3cr3t"] {
        assert!(!shown.contains(secret), "{secret} leaked:\n{shown}");
    }

    // Both forms at once, an empty file, a missing file.
    write(dir.path(), "empty.token", "\n");
    let text = r#"[auth]
tokens = [ { token = "inline-s3cr3t", token_file = "ops.token", scopes = ["read"] },
           { token_file = "empty.token", scopes = ["read"] },
           { token_file = "missing.token", scopes = [] } ]
"#;
    let errors = errors_of(dir.path(), text, &no_env());
    assert_errors(
        &errors,
        &[
            (&f, 2, 39, "set one of `token` or `token_file`, not both"),
            (&f, 3, 14, "is empty"),
            (&f, 4, 14, "cannot read `token_file`"),
            (&f, 4, 44, "a token needs at least one scope"),
        ],
    );
    let shown = ConfigErrorsText::of(&errors);
    assert!(!shown.contains("inline-s3cr3t") && !shown.contains(OPS_TOKEN));
}

/// Every error as `check` prints them.
struct ConfigErrorsText;

impl ConfigErrorsText {
    fn of(errors: &[ConfigError]) -> String {
        let all = release_guardian::config::ConfigErrors {
            errors: errors.to_vec(),
        };
        format!("{all}\n{all:?}")
    }
}

#[test]
fn a_toml_syntax_error_is_one_located_error() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("guardian.toml");
    let errors = errors_of(
        dir.path(),
        "[server]\nlisten = \"127.0.0.1:9797\n[store]\n",
        &no_env(),
    );
    assert_errors(&errors, &[(&f, 2, 25, "invalid TOML: ")]);
    assert!(!errors[0].message.contains('\n'), "{:?}", errors[0]);
}

#[test]
fn notifier_kinds_and_missing_fields() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"[notifiers.pager]
kind = "pagerduty"
url = "ftp://events.example"

[notifiers.am]
kind = "alertmanager"
url = "http://127.0.0.1:9093"
alertname = "9lives"

[notifiers.odd]
kind = "carrier-pigeon"

[notifiers.bare]
webhook_url = "https://x/"

[notifiers.hook]
kind = "webhook"
timeout = "1s"

[notifiers.mail]
kind = "email"
smtp_url = "smtp://user:hunter22@mail.example"
from = "not an address"
to = []
starttls = "sometimes"
password = "p"

[[services]]
name = "checkout"
  [services.rollback]
  mode = "auto"
"#;
    let f = dir.path().join("guardian.toml");
    let kinds = "slack or webhook or email or pagerduty or alertmanager";
    let errors = errors_of(dir.path(), text, &no_env());
    assert_errors(
        &errors,
        &[
            (
                &f,
                1,
                12,
                "pagerduty notifier `pager` needs `routing_key` or `routing_key_file`",
            ),
            (
                &f,
                3,
                1,
                "pagerduty `url` \"ftp://events.example\" is not an http(s) URL",
            ),
            (
                &f,
                8,
                1,
                "`alertname` \"9lives\" is not a metric-style name",
            ),
            (
                &f,
                11,
                1,
                &format!("unknown notifier kind `carrier-pigeon`; expected {kinds}"),
            ),
            (
                &f,
                13,
                12,
                &format!("notifier `bare` needs a `kind`: {kinds}"),
            ),
            (&f, 16, 12, "missing field `url`"),
            (&f, 22, 1, "`smtp_url` holds credentials"),
            (&f, 23, 1, "\"not an address\" is not an email address"),
            (&f, 24, 1, "`to` needs at least one address"),
            (
                &f,
                25,
                1,
                "`starttls` must be \"required\" or \"opportunistic\"",
            ),
            (&f, 26, 1, "a `password` needs a `username`"),
            (
                &f,
                30,
                13,
                "needs a `command` (a program to run) or a `url`",
            ),
        ],
    );
    let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert!(!shown.join("\n").contains("hunter22"), "{shown:?}");
}

#[test]
fn warnings_for_services_that_watch_nothing() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "rules/r.yaml",
        "checks:\n  - name: up\n    source: probe\n    probe: live\n    rollback: { failures: 3 }\n",
    );
    let text = r#"[[services]]
name = "idle"

[[services]]
name = "checkout"
rules = ["rules/r.yaml"]
probes = [ { name = "live", url = "http://127.0.0.1/" },
           { name = "ready", url = "http://127.0.0.1/ready" } ]
"#;
    let s = settings_with_env(dir.path(), text, &no_env());
    let f = dir.path().join("guardian.toml").display().to_string();
    assert_eq!(
        s.warnings,
        [
            format!("{f}:1:1: service `idle` (production) has no rules and no probes"),
            format!("{f}:8:12: service `checkout` (production): probe `ready` is not used by any check"),
            format!("{f}:4:1: service `checkout` (production) has checks with a `rollback` level but no [services.rollback] hook; they will only page"),
            format!("{f}:4:1: service `checkout` (production) has no `notify`; nobody will be paged"),
        ]
    );
}

#[test]
fn prometheus_bearer_token_file_is_read_at_load_time() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "prom.token", "pr0m-s3cr3t\n");
    let text = r#"[sources.prometheus]
url = "https://prom.example"
bearer_token_file = "prom.token"
"#;
    let s = settings_with_env(dir.path(), text, &no_env());
    let prom = &s.sources["prometheus"].config;
    let secrets: Vec<&str> = prom.secrets().iter().map(|s| s.expose()).collect();
    assert_eq!(secrets, ["pr0m-s3cr3t"]);
    assert!(!format!("{prom:?}").contains("prom.token"));
    assert!(!format!("{s:?}").contains("pr0m-s3cr3t"));
}

#[test]
fn wrong_shapes_are_named_in_user_terms() {
    let dir = tempfile::tempdir().unwrap();
    let pack = write(
        dir.path(),
        "rules/r.yaml",
        "checks:\n  - just a string\n  - name: x\n    source: probe\n    probe: live\n    warning: 5\n",
    );
    let text = "server = 5\n\n[[services]]\nname = \"a\"\nrules = [\"rules/r.yaml\"]\n";
    let f = dir.path().join("guardian.toml");
    assert_errors(
        &errors_of(dir.path(), text, &no_env()),
        &[
            (&f, 1, 1, "invalid type: integer `5`, expected a table"),
            (
                &pack,
                2,
                5,
                "expected a check (a mapping with `name`, `source`, ...)",
            ),
            // The malformed level does not hide the check's other errors.
            (&pack, 5, 5, "has no probe `live`; it has no probes"),
            (
                &pack,
                6,
                5,
                "expected a level such as `{ above: 0.01, for: 5m }`",
            ),
        ],
    );
}

#[test]
fn every_error_of_a_service_table_is_reported_at_once() {
    // A new user's first config: a misspelt key, an unknown notifier and a
    // rule pack that does not exist, all in one service.
    let dir = tempfile::tempdir().unwrap();
    let text = "[[services]]\nname = \"checkout\"\ntimout = \"5m\"\nnotify = [\"pager\"]\nrules = [\"rules/missing.yaml\"]\n";
    let f = dir.path().join("guardian.toml");
    let errors = errors_of(dir.path(), text, &no_env());
    assert_errors(
        &errors,
        &[
            (&f, 3, 1, "unknown field `timout`"),
            (
                &f,
                4,
                11,
                "unknown notifier `pager` in `notify`; no [notifiers] are defined",
            ),
            (&f, 5, 10, "cannot read rule pack `rules/missing.yaml`"),
        ],
    );
}

#[test]
fn a_structural_error_in_a_check_does_not_hide_its_other_errors() {
    let dir = tempfile::tempdir().unwrap();
    let pack = write(
        dir.path(),
        "rules/r.yaml",
        "checks:\n  - name: live\n    source: probe\n    probe: missing\n    severity: high\n    critical: { failures: 2, within: 5m }\n    rollback: { failures: 3 }\n",
    );
    let text = "[[services]]\nname = \"a\"\nrules = [\"rules/r.yaml\"]\n[[services.probes]]\nname = \"live\"\nurl = \"http://127.0.0.1:1/\"\n";
    let errors = errors_of(dir.path(), text, &no_env());
    assert_errors(
        &errors,
        &[
            (&pack, 4, 5, "has no probe `missing`"),
            (&pack, 5, 5, "unknown field `severity`"),
            (&pack, 6, 30, "unknown field `within`"),
        ],
    );
}

#[test]
fn webhook_sections_go_through_the_intake_registry() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"[[services]]
name = "checkout"

[webhooks.github]
secret_file = "gh.secret"
map = [ { repository = "", environment = "production", service = "checkout" } ]

[webhooks.gitlab]
token = "t"
map = [ { project = "a/b", environment = "production", service = "nope" } ]

[webhooks.jenkins]
url = "x"
"#;
    let f = dir.path().join("guardian.toml");
    assert_errors(
        &errors_of(dir.path(), text, &no_env()),
        &[
            (&f, 5, 1, "cannot read `secret_file`"),
            (&f, 6, 11, "`repository` must not be empty"),
            (&f, 10, 56, "service `nope` (production) is not configured"),
            (
                &f,
                12,
                11,
                "unknown webhook `jenkins`; deploy tools: github, gitlab, argocd, flux",
            ),
        ],
    );
}

#[test]
fn notifier_rate_limits_reminders_and_rollback_urls_are_checked_at_their_keys() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"[notifiers.chat]
kind = "webhook"
url = "http://127.0.0.1:9/"
rate_limit = "fast"
repeat_every = "10ms"

[[services]]
name = "checkout"
notify = ["chat"]
  [services.rollback]
  command = ["/bin/true"]
  url = "http://127.0.0.1:9/rollback"

[[services]]
name = "cart"
  [services.rollback]
  url = "ftp://example/rollback"
  secret = "k"
  secret_file = "k.secret"

[[services]]
name = "search"
  [services.rollback]
  mode = "manual"
"#;
    let f = dir.path().join("guardian.toml");
    assert_errors(
        &errors_of(dir.path(), text, &no_env()),
        &[
            (&f, 4, 1, "invalid rate limit \"fast\""),
            (&f, 5, 1, "`repeat_every` must be at least 1s"),
            (
                &f,
                12,
                3,
                "set one of rollback `command` or `url`, not both",
            ),
            (&f, 17, 3, "is not an http(s) URL"),
            (&f, 19, 3, "set one of `secret` or `secret_file`, not both"),
            (
                &f,
                23,
                13,
                "needs a `command` (a program to run) or a `url`",
            ),
        ],
    );
    // And good values load.
    let ok = r#"[notifiers.chat]
kind = "webhook"
url = "http://127.0.0.1:9/"
rate_limit = "30/m"
repeat_every = "30m"

[[services]]
name = "checkout"
notify = ["chat"]
  [services.rollback]
  url = "http://127.0.0.1:9/rollback"
  secret = "k"
  dry_run = true
"#;
    let s = crate::support::settings(dir.path(), ok);
    let chat = &s.notifiers["chat"];
    assert_eq!(chat.repeat_every, Some(Duration::from_secs(1800)));
    assert_eq!(
        chat.rate_limit.map(|l| (l.count.get(), l.per)),
        Some((30, Duration::from_secs(60)))
    );
    let rb = s.services[0].rollback.as_ref().unwrap();
    assert!(rb.dry_run && rb.signing_key.is_some());
}
