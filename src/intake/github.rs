//! GitHub deployment webhooks at `POST /v1/webhooks/github`.
//!
//! A `deployment_status` event whose `state` is `success` starts a watch for
//! the `[webhooks.github] map` entry matching the repository's `full_name`
//! and the deployment's `environment`. The version is the deployment's
//! `payload.version` when the deployer set one (a string), else the commit
//! `sha`; `payload.previous_version` is taken the same way. `ping` and every
//! other event, and statuses other than `success`, answer 202 and start
//! nothing. Requests must carry `X-Hub-Signature-256` (HMAC-SHA256 of the raw
//! body with the section's secret), checked in constant time before anything
//! is parsed; `X-GitHub-Delivery` makes a redelivery start nothing new.
//! Bodies must be JSON (the hook's content type `application/json`).

use super::webhook::{self, Deploy, Target};
use super::{Auth, Intake, IntakeConfig, IntakeError, IntakeFormat, IntakeRequest, ParseSection};
use crate::section::{Secret, Section};
use serde::Deserialize;
use std::path::PathBuf;

/// The GitHub format.
#[derive(Debug, Default, Clone, Copy)]
pub struct GitHub;

/// `[webhooks.github]`.
#[derive(Debug)]
pub struct GitHubConfig {
    secret: Secret,
    map: Vec<MapEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fields {
    #[serde(default)]
    secret: Option<Secret>,
    #[serde(default)]
    secret_file: Option<PathBuf>,
    #[serde(default)]
    map: Vec<MapEntry>,
}

/// One `map` entry: events of `repository` (`owner/name`) deploying to the
/// GitHub environment `environment` watch `service` in that environment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct MapEntry {
    repository: String,
    environment: String,
    service: String,
}

fn section(s: &mut Section<'_, '_>) -> Option<Box<dyn IntakeConfig>> {
    let f: Fields = s.deserialize()?;
    let mut ok = true;
    for (i, m) in f.map.iter().enumerate() {
        ok &= webhook::check_map_entry(
            s,
            i,
            &[
                ("repository", &m.repository),
                ("environment", &m.environment),
                ("service", &m.service),
            ],
        );
    }
    let secret = webhook::section_secret(s, f.secret.as_ref(), f.secret_file.as_ref(), "secret")?;
    ok.then(|| Box::new(GitHubConfig { secret, map: f.map }) as Box<dyn IntakeConfig>)
}

impl IntakeConfig for GitHubConfig {
    fn secrets(&self) -> Vec<&Secret> {
        vec![&self.secret]
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn targets(&self) -> Vec<Target> {
        self.map.iter().map(MapEntry::target).collect()
    }
}

impl MapEntry {
    fn target(&self) -> Target {
        Target {
            service: self.service.clone(),
            environment: self.environment.clone(),
        }
    }
}

fn config<'a>(request: &IntakeRequest<'a>) -> Result<&'a GitHubConfig, IntakeError> {
    webhook::section_of(request, "github")
}

#[derive(Debug, Deserialize)]
struct Event {
    deployment_status: Status,
    deployment: Deployment,
    repository: Repository,
    #[serde(default)]
    sender: Option<User>,
}

#[derive(Debug, Deserialize)]
struct Status {
    state: String,
    #[serde(default)]
    environment: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    target_url: Option<String>,
    #[serde(default)]
    environment_url: Option<String>,
    #[serde(default)]
    log_url: Option<String>,
    #[serde(default)]
    creator: Option<User>,
}

#[derive(Debug, Deserialize)]
struct Deployment {
    sha: String,
    #[serde(rename = "ref", default)]
    reference: Option<String>,
    environment: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    payload: serde_json::Value,
    #[serde(default)]
    url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Repository {
    full_name: String,
    #[serde(default)]
    html_url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct User {
    login: String,
}

impl IntakeFormat for GitHub {
    fn name(&self) -> &'static str {
        "github"
    }

    fn route(&self) -> &'static str {
        "/v1/webhooks/github"
    }

    fn section(&self) -> Option<ParseSection> {
        Some(section)
    }

    fn auth(&self) -> Auth {
        Auth::Own
    }

    fn authenticate(&self, request: &IntakeRequest<'_>) -> Result<(), IntakeError> {
        webhook::verify_hmac(request, "x-hub-signature-256", &config(request)?.secret)
    }

    fn delivery(&self, request: &IntakeRequest<'_>) -> Option<String> {
        webhook::header(request, "x-github-delivery").map(str::to_owned)
    }

    fn parse(&self, request: &IntakeRequest<'_>) -> Result<Intake, IntakeError> {
        let config = config(request)?;
        let event = webhook::header(request, "x-github-event").unwrap_or_default();
        match event {
            "deployment_status" => {}
            "ping" => return Ok(Intake::Ignored("pong: the hook is set up".into())),
            "" => {
                return Err(IntakeError::Malformed(
                    "missing X-GitHub-Event header".into(),
                ))
            }
            other => {
                return Ok(Intake::Ignored(format!(
                    "event `{other}` starts no watch (only `deployment_status`)"
                )))
            }
        }
        if webhook::header(request, "content-type")
            .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"))
        {
            return Err(IntakeError::Malformed(
                "form-encoded deliveries are not accepted: set the hook's content type to application/json".into(),
            ));
        }
        let e: Event = webhook::json_body(request, "GitHub deployment_status")?;
        if e.deployment_status.state != "success" {
            return Ok(Intake::Ignored(format!(
                "deployment status `{}` starts no watch (only `success`)",
                e.deployment_status.state
            )));
        }
        let environment = e
            .deployment_status
            .environment
            .clone()
            .unwrap_or_else(|| e.deployment.environment.clone());
        let Some(entry) = config.map.iter().find(|m| {
            m.repository.eq_ignore_ascii_case(&e.repository.full_name)
                && m.environment == environment
        }) else {
            return Ok(Intake::Ignored(webhook::unmapped(
                "github",
                format!(
                    "repository `{}` environment `{environment}`",
                    e.repository.full_name
                ),
            )));
        };
        let from_payload = |key: &str| {
            e.deployment
                .payload
                .get(key)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        let version = from_payload("version").unwrap_or_else(|| e.deployment.sha.clone());
        let status = &e.deployment_status;
        let url = [&status.target_url, &status.environment_url, &status.log_url]
            .into_iter()
            .flatten()
            .find(|u| !u.is_empty())
            .or(e.deployment.url.as_ref())
            .or(e.repository.html_url.as_ref())
            .cloned();
        let deploy = Deploy {
            tool: "github",
            event: Some("deployment_status".into()),
            delivery: self.delivery(request),
            actor: status
                .creator
                .as_ref()
                .or(e.sender.as_ref())
                .map(|u| u.login.clone()),
            commit: Some(e.deployment.sha.clone()),
            reference: e.deployment.reference.clone(),
            url,
            message: status
                .description
                .clone()
                .filter(|d| !d.is_empty())
                .or(e.deployment.description.clone()),
        };
        Ok(Intake::Release(deploy.release(
            &entry.target(),
            version,
            from_payload("previous_version"),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intake::receive;
    use crate::intake::webhook::tests::{headers, sign};
    use crate::intake::webhook::DEPLOY_ANNOTATION;

    fn cfg() -> GitHubConfig {
        GitHubConfig {
            secret: Secret::new("s3cret"),
            map: vec![MapEntry {
                repository: "acme/checkout".into(),
                environment: "production".into(),
                service: "checkout".into(),
            }],
        }
    }

    /// The octokit `deployment_status` example, repository renamed.
    pub const SUCCESS: &str = r#"{
      "action": "created",
      "deployment_status": {
        "url": "https://api.github.com/repos/acme/checkout/deployments/145988746/statuses/209916254",
        "id": 209916254, "state": "success", "description": "", "environment": "production",
        "target_url": "", "created_at": "2019-05-15T15:20:55Z",
        "creator": { "login": "Codertocat", "id": 21031067 }
      },
      "deployment": {
        "url": "https://api.github.com/repos/acme/checkout/deployments/145988746",
        "id": 145988746, "sha": "f95f852bd8fca8fcc58a9a2d6c842781e32a215e", "ref": "master",
        "task": "deploy", "payload": {}, "original_environment": "production",
        "environment": "production", "description": null,
        "creator": { "login": "Codertocat", "id": 21031067 }
      },
      "repository": { "id": 186853002, "name": "checkout", "full_name": "acme/checkout",
                      "html_url": "https://github.com/acme/checkout" },
      "sender": { "login": "Codertocat" }
    }"#;

    fn post(event: &str, body: &str, signature: Option<String>) -> Result<Intake, IntakeError> {
        let cfg = cfg();
        let sig = signature.unwrap_or_else(|| sign("s3cret", body.as_bytes()));
        let h = headers(&[
            ("x-github-event", event),
            ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
            ("x-hub-signature-256", &sig),
            ("content-type", "application/json"),
        ]);
        receive(
            &GitHub,
            &IntakeRequest {
                headers: &h,
                body: body.as_bytes(),
                config: Some(&cfg),
            },
        )
    }

    #[test]
    fn a_successful_deployment_starts_a_watch_with_the_deploy_record() {
        let Intake::Release(new) = post("deployment_status", SUCCESS, None).unwrap() else {
            panic!("expected a release")
        };
        assert_eq!(new.service, "checkout");
        assert_eq!(new.environment.as_deref(), Some("production"));
        assert_eq!(new.version, "f95f852bd8fca8fcc58a9a2d6c842781e32a215e");
        assert_eq!(new.previous_version, None);
        let d = &new.annotations[DEPLOY_ANNOTATION];
        assert_eq!(d["tool"], "github");
        assert_eq!(d["actor"], "Codertocat");
        assert_eq!(d["ref"], "master");
        assert_eq!(d["delivery"], "72d3162e-cc78-11e3-81ab-4c9367dc0958");
        assert_eq!(
            d["url"],
            "https://api.github.com/repos/acme/checkout/deployments/145988746"
        );
    }

    #[test]
    fn the_payload_may_name_the_version_and_previous_version() {
        let body = SUCCESS.replace(
            r#""payload": {}"#,
            r#""payload": {"version": "v2.3.1", "previous_version": "v2.3.0"}"#,
        );
        let Intake::Release(new) = post("deployment_status", &body, None).unwrap() else {
            panic!("expected a release")
        };
        assert_eq!(new.version, "v2.3.1");
        assert_eq!(new.previous_version.as_deref(), Some("v2.3.0"));
    }

    #[test]
    fn other_states_events_and_unmapped_deployments_start_nothing() {
        let pending = SUCCESS.replace(r#""state": "success""#, r#""state": "in_progress""#);
        for (event, body, why) in [
            ("deployment_status", pending.as_str(), "in_progress"),
            ("ping", r#"{"zen": "Keep it logically awesome."}"#, "pong"),
            ("push", "{}", "`push` starts no watch"),
            (
                "deployment_status",
                &SUCCESS.replace("acme/checkout", "acme/other"),
                "no [webhooks.github] map entry",
            ),
        ] {
            match post(event, body, None) {
                Ok(Intake::Ignored(m)) => assert!(m.contains(why), "{event}: {m}"),
                other => panic!("{event}: expected ignored, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_bad_signature_is_refused_before_anything_is_read() {
        let e = post("deployment_status", SUCCESS, Some("sha256=00".into())).unwrap_err();
        assert!(matches!(e, IntakeError::Unauthenticated(_)), "{e:?}");
        // Signed with another secret: also refused, even for a ping.
        let wrong = sign("not-it", b"{}");
        let e = post("ping", "{}", Some(wrong)).unwrap_err();
        assert!(matches!(e, IntakeError::Unauthenticated(_)), "{e:?}");
    }

    #[test]
    fn malformed_events_are_400_with_the_reason() {
        let e = post("deployment_status", r#"{"deployment_status": {}}"#, None).unwrap_err();
        assert!(
            matches!(&e, IntakeError::Malformed(m) if m.contains("deployment_status")),
            "{e:?}"
        );
    }
}
