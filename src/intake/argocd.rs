//! Argo CD notifications at `POST /v1/webhooks/argocd`.
//!
//! Argo CD has no fixed webhook payload: its notifications controller sends
//! the body a template describes. This format reads the template documented
//! in `docs/api.md` ("Argo CD"): `app`, `revision`, and optionally
//! `previousRevision`, `environment`, `phase`, `healthStatus`,
//! `initiatedBy`, `message`, `argocdUrl`, `repoURL`, `finishedAt`. An event
//! whose `phase` is `Succeeded` (and whose `healthStatus`, when given, is
//! `Healthy`) starts a watch for the `[webhooks.argocd] map` entry naming
//! the application; anything else answers 202 and starts nothing.
//!
//! Argo CD signs nothing: the request must carry the section's secret as
//! `Authorization: Bearer SECRET` (a header the service config sets),
//! compared in constant time. Argo CD retries a failed send with the same
//! body, so the body's SHA-256 is the delivery id.

use super::webhook::{self, Deploy, Target};
use super::{Auth, Intake, IntakeConfig, IntakeError, IntakeFormat, IntakeRequest, ParseSection};
use crate::section::{Secret, Section};
use serde::Deserialize;
use std::path::PathBuf;

/// The Argo CD format.
#[derive(Debug, Default, Clone, Copy)]
pub struct ArgoCd;

/// `[webhooks.argocd]`.
#[derive(Debug)]
pub struct ArgoCdConfig {
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

/// One `map` entry: the application `application` is `service` in
/// `environment`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct MapEntry {
    application: String,
    service: String,
    #[serde(default = "crate::model::default_environment")]
    environment: String,
}

fn section(s: &mut Section<'_, '_>) -> Option<Box<dyn IntakeConfig>> {
    let f: Fields = s.deserialize()?;
    let mut ok = true;
    for (i, m) in f.map.iter().enumerate() {
        ok &= webhook::check_map_entry(
            s,
            i,
            &[
                ("application", &m.application),
                ("service", &m.service),
                ("environment", &m.environment),
            ],
        );
    }
    let secret = webhook::section_secret(s, f.secret.as_ref(), f.secret_file.as_ref(), "secret")?;
    ok.then(|| Box::new(ArgoCdConfig { secret, map: f.map }) as Box<dyn IntakeConfig>)
}

impl IntakeConfig for ArgoCdConfig {
    fn secrets(&self) -> Vec<&Secret> {
        vec![&self.secret]
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn targets(&self) -> Vec<Target> {
        self.map
            .iter()
            .map(|m| Target {
                service: m.service.clone(),
                environment: m.environment.clone(),
            })
            .collect()
    }
}

fn config<'a>(request: &IntakeRequest<'a>) -> Result<&'a ArgoCdConfig, IntakeError> {
    webhook::section_of(request, "argocd")
}

/// The documented template's fields (unknown ones are allowed, so users
/// may add their own).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Event {
    app: String,
    revision: String,
    #[serde(default)]
    previous_revision: Option<String>,
    #[serde(default)]
    phase: Option<String>,
    #[serde(default)]
    health_status: Option<String>,
    #[serde(default)]
    initiated_by: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    argocd_url: Option<String>,
    #[serde(rename = "repoURL", default)]
    repo_url: Option<String>,
}

impl IntakeFormat for ArgoCd {
    fn name(&self) -> &'static str {
        "argocd"
    }

    fn route(&self) -> &'static str {
        "/v1/webhooks/argocd"
    }

    fn section(&self) -> Option<ParseSection> {
        Some(section)
    }

    fn auth(&self) -> Auth {
        Auth::Own
    }

    fn authenticate(&self, request: &IntakeRequest<'_>) -> Result<(), IntakeError> {
        let bearer = webhook::header(request, "authorization").and_then(|v| {
            v.split_once(' ')
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, token)| token.trim())
        });
        webhook::verify_token(bearer, &config(request)?.secret, "Authorization: Bearer")
    }

    fn delivery(&self, request: &IntakeRequest<'_>) -> Option<String> {
        Some(webhook::body_digest(request))
    }

    fn parse(&self, request: &IntakeRequest<'_>) -> Result<Intake, IntakeError> {
        let config = config(request)?;
        let e: Event = webhook::json_body(
            request,
            "Argo CD notification (see docs/api.md for the template)",
        )?;
        if let Some(phase) = e.phase.as_deref().filter(|p| *p != "Succeeded") {
            return Ok(Intake::Ignored(format!(
                "operation phase `{phase}` starts no watch (only `Succeeded`)"
            )));
        }
        if let Some(health) = e.health_status.as_deref().filter(|h| *h != "Healthy") {
            return Ok(Intake::Ignored(format!(
                "health `{health}` starts no watch (only `Healthy`)"
            )));
        }
        let Some(entry) = config.map.iter().find(|m| m.application == e.app) else {
            return Ok(Intake::Ignored(webhook::unmapped(
                "argocd",
                format!("application `{}`", e.app),
            )));
        };
        if e.revision.trim().is_empty() {
            return Err(IntakeError::Malformed(
                "`revision` is empty: the template's revision expression gave nothing".into(),
            ));
        }
        let deploy = Deploy {
            tool: "argocd",
            event: Some("on-deployed".into()),
            delivery: self.delivery(request),
            actor: e.initiated_by,
            commit: Some(e.revision.clone()),
            reference: None,
            url: e.argocd_url.or(e.repo_url),
            message: e.message,
        };
        let target = Target {
            service: entry.service.clone(),
            environment: entry.environment.clone(),
        };
        Ok(Intake::Release(deploy.release(
            &target,
            e.revision,
            e.previous_revision,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intake::receive;
    use crate::intake::webhook::tests::headers;
    use crate::intake::webhook::DEPLOY_ANNOTATION;

    /// What the documented template renders for a successful sync.
    pub const DEPLOYED: &str = r#"{
      "app": "checkout-prod", "namespace": "argocd", "project": "default",
      "revision": "731f7eaddfb6af01cb2173e18f0f75b0ba780ef1",
      "previousRevision": "5d1a2c3b4e5f60718293a4b5c6d7e8f901234567",
      "syncStatus": "Synced", "healthStatus": "Healthy", "phase": "Succeeded",
      "initiatedBy": "alice", "startedAt": "2026-11-28T10:00:00Z",
      "finishedAt": "2026-11-28T10:01:00Z", "message": "successfully synced (all tasks run)",
      "repoURL": "https://github.com/acme/checkout-deploy",
      "argocdUrl": "https://argocd.example/applications/checkout-prod"
    }"#;

    fn post(body: &str, authorization: &str) -> Result<Intake, IntakeError> {
        let cfg = ArgoCdConfig {
            secret: Secret::new("argo-secret"),
            map: vec![MapEntry {
                application: "checkout-prod".into(),
                service: "checkout".into(),
                environment: "production".into(),
            }],
        };
        let h = headers(&[("authorization", authorization)]);
        receive(
            &ArgoCd,
            &IntakeRequest {
                headers: &h,
                body: body.as_bytes(),
                config: Some(&cfg),
            },
        )
    }

    #[test]
    fn a_healthy_sync_starts_a_watch_with_its_previous_revision() {
        let Intake::Release(new) = post(DEPLOYED, "Bearer argo-secret").unwrap() else {
            panic!("expected a release")
        };
        assert_eq!(new.service, "checkout");
        assert_eq!(new.version, "731f7eaddfb6af01cb2173e18f0f75b0ba780ef1");
        assert_eq!(
            new.previous_version.as_deref(),
            Some("5d1a2c3b4e5f60718293a4b5c6d7e8f901234567")
        );
        let d = &new.annotations[DEPLOY_ANNOTATION];
        assert_eq!(d["actor"], "alice");
        assert_eq!(
            d["url"],
            "https://argocd.example/applications/checkout-prod"
        );
        assert_eq!(d["delivery"].as_str().unwrap().len(), 64);
    }

    #[test]
    fn failed_or_degraded_syncs_and_unknown_apps_start_nothing() {
        for (body, why) in [
            (DEPLOYED.replace("\"Succeeded\"", "\"Failed\""), "`Failed`"),
            (
                DEPLOYED.replace("\"Healthy\"", "\"Degraded\""),
                "`Degraded`",
            ),
            (
                DEPLOYED.replace("\"checkout-prod\"", "\"other\""),
                "application `other`",
            ),
        ] {
            match post(&body, "Bearer argo-secret") {
                Ok(Intake::Ignored(m)) => assert!(m.contains(why), "{m}"),
                other => panic!("expected ignored, got {other:?}"),
            }
        }
    }

    #[test]
    fn the_bearer_secret_is_required() {
        for auth in ["Bearer wrong", "argo-secret", "Basic argo-secret", ""] {
            let e = post(DEPLOYED, auth).unwrap_err();
            assert!(
                matches!(e, IntakeError::Unauthenticated(_)),
                "{auth}: {e:?}"
            );
        }
    }

    #[test]
    fn a_template_that_breaks_the_json_is_a_clear_400() {
        // An unquoted message with a quote in it: the documented pitfall.
        let body = DEPLOYED.replace(r#""successfully synced (all tasks run)""#, r#""say "hi"""#);
        let e = post(&body, "Bearer argo-secret").unwrap_err();
        assert!(
            matches!(&e, IntakeError::Malformed(m) if m.contains("template")),
            "{e:?}"
        );
    }
}
