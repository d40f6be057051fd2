//! GitLab deployment webhooks at `POST /v1/webhooks/gitlab`.
//!
//! A `Deployment Hook` event (`object_kind` `deployment`) whose `status` is
//! `success` starts a watch for the `[webhooks.gitlab] map` entry matching
//! the project's `path_with_namespace` and the deployment's `environment`.
//! The version is the commit (the last path segment of `commit_url`, else
//! `short_sha`). Other statuses (`running`, `failed`, `canceled`) and other
//! events answer 202 and start nothing. `X-Gitlab-Token` must equal the
//! section's token (compared in constant time); `Idempotency-Key` (or
//! `X-Gitlab-Event-UUID`) makes a retried delivery start nothing new.

use super::webhook::{self, Deploy, Target};
use super::{Auth, Intake, IntakeConfig, IntakeError, IntakeFormat, IntakeRequest, ParseSection};
use crate::section::{Secret, Section};
use serde::Deserialize;
use std::path::PathBuf;

/// The GitLab format.
#[derive(Debug, Default, Clone, Copy)]
pub struct GitLab;

/// `[webhooks.gitlab]`.
#[derive(Debug)]
pub struct GitLabConfig {
    token: Secret,
    map: Vec<MapEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fields {
    #[serde(default)]
    token: Option<Secret>,
    #[serde(default)]
    token_file: Option<PathBuf>,
    #[serde(default)]
    map: Vec<MapEntry>,
}

/// One `map` entry: deployments of `project` (`group/name`, GitLab's
/// `path_with_namespace`) to `environment` watch `service` there.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct MapEntry {
    project: String,
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
                ("project", &m.project),
                ("environment", &m.environment),
                ("service", &m.service),
            ],
        );
    }
    let token = webhook::section_secret(s, f.token.as_ref(), f.token_file.as_ref(), "token")?;
    ok.then(|| Box::new(GitLabConfig { token, map: f.map }) as Box<dyn IntakeConfig>)
}

impl IntakeConfig for GitLabConfig {
    fn secrets(&self) -> Vec<&Secret> {
        vec![&self.token]
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

fn config<'a>(request: &IntakeRequest<'a>) -> Result<&'a GitLabConfig, IntakeError> {
    webhook::section_of(request, "gitlab")
}

#[derive(Debug, Deserialize)]
struct Event {
    object_kind: String,
    status: String,
    environment: String,
    project: Project,
    #[serde(default)]
    short_sha: Option<String>,
    #[serde(default)]
    commit_url: Option<String>,
    #[serde(default)]
    commit_title: Option<String>,
    #[serde(default)]
    deployable_url: Option<String>,
    #[serde(default)]
    deployment_id: Option<u64>,
    #[serde(default)]
    user: Option<User>,
}

#[derive(Debug, Deserialize)]
struct Project {
    path_with_namespace: String,
    #[serde(default)]
    web_url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct User {
    username: String,
}

impl IntakeFormat for GitLab {
    fn name(&self) -> &'static str {
        "gitlab"
    }

    fn route(&self) -> &'static str {
        "/v1/webhooks/gitlab"
    }

    fn section(&self) -> Option<ParseSection> {
        Some(section)
    }

    fn auth(&self) -> Auth {
        Auth::Own
    }

    fn authenticate(&self, request: &IntakeRequest<'_>) -> Result<(), IntakeError> {
        webhook::verify_token(
            webhook::header(request, "x-gitlab-token"),
            &config(request)?.token,
            "X-Gitlab-Token",
        )
    }

    fn delivery(&self, request: &IntakeRequest<'_>) -> Option<String> {
        webhook::header(request, "idempotency-key")
            .or_else(|| webhook::header(request, "x-gitlab-event-uuid"))
            .map(str::to_owned)
    }

    fn parse(&self, request: &IntakeRequest<'_>) -> Result<Intake, IntakeError> {
        let config = config(request)?;
        match webhook::header(request, "x-gitlab-event") {
            Some("Deployment Hook") => {}
            Some(other) => {
                return Ok(Intake::Ignored(format!(
                    "event `{other}` starts no watch (only `Deployment Hook`)"
                )))
            }
            None => {
                return Err(IntakeError::Malformed(
                    "missing X-Gitlab-Event header".into(),
                ))
            }
        }
        let e: Event = webhook::json_body(request, "GitLab deployment")?;
        if e.object_kind != "deployment" {
            return Ok(Intake::Ignored(format!(
                "object_kind `{}` starts no watch (only `deployment`)",
                e.object_kind
            )));
        }
        if e.status != "success" {
            return Ok(Intake::Ignored(format!(
                "deployment status `{}` starts no watch (only `success`)",
                e.status
            )));
        }
        let Some(entry) = config
            .map
            .iter()
            .find(|m| m.project == e.project.path_with_namespace && m.environment == e.environment)
        else {
            return Ok(Intake::Ignored(webhook::unmapped(
                "gitlab",
                format!(
                    "project `{}` environment `{}`",
                    e.project.path_with_namespace, e.environment
                ),
            )));
        };
        // `commit_url` ends with the full SHA; `short_sha` has 8 characters.
        let commit = e
            .commit_url
            .as_deref()
            .and_then(|u| u.rsplit('/').next())
            .filter(|s| s.len() >= 7 && s.chars().all(|c| c.is_ascii_hexdigit()))
            .map(str::to_owned)
            .or(e.short_sha.clone())
            .ok_or_else(|| {
                IntakeError::Malformed(
                    "the deployment names no commit (`commit_url`, `short_sha`)".into(),
                )
            })?;
        let deploy = Deploy {
            tool: "gitlab",
            event: Some(format!(
                "deployment{}",
                e.deployment_id.map(|i| format!(" {i}")).unwrap_or_default()
            )),
            delivery: self.delivery(request),
            actor: e.user.map(|u| u.username),
            commit: Some(commit.clone()),
            reference: None,
            url: e.deployable_url.or(e.commit_url).or(e.project.web_url),
            message: e.commit_title,
        };
        Ok(Intake::Release(deploy.release(
            &entry.target(),
            commit,
            None,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intake::receive;
    use crate::intake::webhook::tests::headers;
    use crate::intake::webhook::DEPLOY_ANNOTATION;

    /// GitLab's documented deployment event, project renamed.
    pub const SUCCESS: &str = r#"{
      "object_kind": "deployment", "status": "success",
      "status_changed_at":"2021-04-28 21:50:00 +0200",
      "deployment_id": 15, "deployable_id": 796,
      "deployable_url": "http://gitlab.example/acme/checkout/-/jobs/796",
      "environment": "production", "environment_tier": "production",
      "environment_slug": "production", "environment_external_url": "https://shop.example.com",
      "project": { "id": 30, "name": "checkout", "description": "",
        "web_url": "http://gitlab.example/acme/checkout", "avatar_url": null,
        "namespace": "acme", "visibility_level": 0, "path_with_namespace": "acme/checkout",
        "default_branch": "master", "ci_config_path": "" },
      "short_sha": "279484c0",
      "user": { "id": 1, "name": "Administrator", "username": "root",
                "avatar_url": "https://www.gravatar.com/avatar/x", "email": "admin@example.com" },
      "user_url": "http://gitlab.example/root",
      "commit_url": "http://gitlab.example/acme/checkout/-/commit/279484c09fbe69ededfced8c1bb6e6d24616b468",
      "commit_title": "Add new file"
    }"#;

    fn post(event: &str, body: &str, token: &str) -> Result<Intake, IntakeError> {
        let cfg = GitLabConfig {
            token: Secret::new("gl-token"),
            map: vec![MapEntry {
                project: "acme/checkout".into(),
                environment: "production".into(),
                service: "checkout".into(),
            }],
        };
        let h = headers(&[
            ("x-gitlab-event", event),
            ("x-gitlab-token", token),
            ("idempotency-key", "a5461c4d-9c7f-4af9-add6-cddebe3c426f"),
        ]);
        receive(
            &GitLab,
            &IntakeRequest {
                headers: &h,
                body: body.as_bytes(),
                config: Some(&cfg),
            },
        )
    }

    #[test]
    fn a_successful_deployment_starts_a_watch() {
        let Intake::Release(new) = post("Deployment Hook", SUCCESS, "gl-token").unwrap() else {
            panic!("expected a release")
        };
        assert_eq!(new.service, "checkout");
        assert_eq!(new.version, "279484c09fbe69ededfced8c1bb6e6d24616b468");
        let d = &new.annotations[DEPLOY_ANNOTATION];
        assert_eq!(d["actor"], "root");
        assert_eq!(d["message"], "Add new file");
        assert_eq!(d["delivery"], "a5461c4d-9c7f-4af9-add6-cddebe3c426f");
        assert_eq!(d["url"], "http://gitlab.example/acme/checkout/-/jobs/796");
    }

    #[test]
    fn other_statuses_events_and_unmapped_deployments_start_nothing() {
        let running = SUCCESS.replace(r#""status": "success""#, r#""status": "running""#);
        let staging = SUCCESS.replace(
            r#""environment": "production""#,
            r#""environment": "staging""#,
        );
        for (event, body, why) in [
            ("Deployment Hook", running.as_str(), "`running`"),
            ("Push Hook", "{}", "`Push Hook`"),
            ("Deployment Hook", staging.as_str(), "environment `staging`"),
        ] {
            match post(event, body, "gl-token") {
                Ok(Intake::Ignored(m)) => assert!(m.contains(why), "{m}"),
                other => panic!("expected ignored, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_wrong_token_is_refused() {
        for token in ["gl-tokem", "", "gl-token2"] {
            let e = post("Deployment Hook", SUCCESS, token).unwrap_err();
            assert!(matches!(e, IntakeError::Unauthenticated(_)), "{e:?}");
        }
    }
}
