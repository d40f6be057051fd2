//! Flux notification-controller events at `POST /v1/webhooks/flux`, from a
//! `Provider` of type `generic-hmac`.
//!
//! An event about a Kustomization (or a HelmRelease) with severity `info`
//! and a reason that says a reconciliation succeeded
//! (`ReconciliationSucceeded`, `InstallSucceeded`, `UpgradeSucceeded` by
//! default; `reasons` replaces the list) starts a watch for the
//! `[webhooks.flux] map` entry naming the object and its namespace. The
//! version is the commit of the revision in the event's metadata
//! (`<group>/revision`: `main@sha1:<sha>` or the older `main/<sha>`).
//! Anything else answers 202 and starts nothing.
//!
//! `X-Signature: sha256=<hex HMAC-SHA256 of the body>` (key: the provider
//! secret's `token`, our `secret`) is checked in constant time. Flux
//! retries a failed send with the same body, so the body's SHA-256 is the
//! delivery id.

use super::webhook::{self, Deploy, Target};
use super::{Auth, Intake, IntakeConfig, IntakeError, IntakeFormat, IntakeRequest, ParseSection};
use crate::section::{Secret, Section};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The Flux format.
#[derive(Debug, Default, Clone, Copy)]
pub struct Flux;

/// Reasons of a successful reconciliation, unless `reasons` says otherwise.
pub const DEFAULT_REASONS: &[&str] = &[
    "ReconciliationSucceeded",
    "InstallSucceeded",
    "UpgradeSucceeded",
];

/// `[webhooks.flux]`.
#[derive(Debug)]
pub struct FluxConfig {
    secret: Secret,
    reasons: Vec<String>,
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
    reasons: Option<Vec<String>>,
    #[serde(default)]
    map: Vec<MapEntry>,
}

/// One `map` entry: the Kustomization `kustomization` (or the HelmRelease
/// `helmrelease`) in `namespace` is `service` in `environment`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct MapEntry {
    #[serde(default)]
    kustomization: Option<String>,
    #[serde(default)]
    helmrelease: Option<String>,
    namespace: String,
    service: String,
    #[serde(default = "crate::model::default_environment")]
    environment: String,
}

impl MapEntry {
    /// The object kind and name this entry matches.
    fn object(&self) -> Option<(&'static str, &str)> {
        match (&self.kustomization, &self.helmrelease) {
            (Some(k), None) => Some(("Kustomization", k)),
            (None, Some(h)) => Some(("HelmRelease", h)),
            _ => None,
        }
    }
}

fn section(s: &mut Section<'_, '_>) -> Option<Box<dyn IntakeConfig>> {
    let f: Fields = s.deserialize()?;
    let mut ok = true;
    for (i, m) in f.map.iter().enumerate() {
        let name = m.object().map(|(_, n)| n).unwrap_or("-");
        ok &= webhook::check_map_entry(
            s,
            i,
            &[
                ("namespace", &m.namespace),
                ("service", &m.service),
                ("environment", &m.environment),
                ("kustomization", name),
            ],
        );
        if m.object().is_none() {
            let at = s.at.key("map").index(i);
            s.report.error(
                &at,
                "name exactly one of `kustomization` or `helmrelease`".to_string(),
            );
            ok = false;
        }
    }
    if f.reasons.as_ref().is_some_and(|r| r.is_empty()) {
        s.error("reasons", "`reasons` must name at least one reason");
        ok = false;
    }
    let secret = webhook::section_secret(s, f.secret.as_ref(), f.secret_file.as_ref(), "secret")?;
    ok.then(|| {
        Box::new(FluxConfig {
            secret,
            reasons: f
                .reasons
                .unwrap_or_else(|| DEFAULT_REASONS.iter().map(|r| r.to_string()).collect()),
            map: f.map,
        }) as Box<dyn IntakeConfig>
    })
}

impl IntakeConfig for FluxConfig {
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

fn config<'a>(request: &IntakeRequest<'a>) -> Result<&'a FluxConfig, IntakeError> {
    webhook::section_of(request, "flux")
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Event {
    involved_object: Object,
    severity: String,
    reason: String,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    #[serde(default)]
    reporting_controller: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Object {
    kind: String,
    name: String,
    #[serde(default)]
    namespace: String,
}

/// The commit of a Flux revision: `main@sha1:<sha>` or `main/<sha>` (the
/// text after the last `:` or `/`), or the revision itself.
pub fn revision_commit(revision: &str) -> &str {
    revision
        .rsplit([':', '/'])
        .next()
        .filter(|s| !s.is_empty())
        .unwrap_or(revision)
}

impl IntakeFormat for Flux {
    fn name(&self) -> &'static str {
        "flux"
    }

    fn route(&self) -> &'static str {
        "/v1/webhooks/flux"
    }

    fn section(&self) -> Option<ParseSection> {
        Some(section)
    }

    fn auth(&self) -> Auth {
        Auth::Own
    }

    fn authenticate(&self, request: &IntakeRequest<'_>) -> Result<(), IntakeError> {
        webhook::verify_hmac(request, "x-signature", &config(request)?.secret)
    }

    fn delivery(&self, request: &IntakeRequest<'_>) -> Option<String> {
        Some(webhook::body_digest(request))
    }

    fn parse(&self, request: &IntakeRequest<'_>) -> Result<Intake, IntakeError> {
        let config = config(request)?;
        let e: Event = webhook::json_body(request, "Flux")?;
        let object = &e.involved_object;
        if e.severity != "info" || !config.reasons.contains(&e.reason) {
            return Ok(Intake::Ignored(format!(
                "{} event `{}` starts no watch (reasons that do: {})",
                e.severity,
                e.reason,
                config.reasons.join(", ")
            )));
        }
        let Some(entry) = config.map.iter().find(|m| {
            m.namespace == object.namespace
                && m.object() == Some((object.kind.as_str(), object.name.as_str()))
        }) else {
            return Ok(Intake::Ignored(webhook::unmapped(
                "flux",
                format!("{} `{}/{}`", object.kind, object.namespace, object.name),
            )));
        };
        let Some(revision) = e
            .metadata
            .iter()
            .find(|(k, _)| k.ends_with("/revision"))
            .map(|(_, v)| v.as_str())
        else {
            return Err(IntakeError::Malformed(
                "the event's metadata names no revision (`<group>/revision`)".into(),
            ));
        };
        let commit = revision_commit(revision).to_string();
        let deploy = Deploy {
            tool: "flux",
            event: Some(e.reason.clone()),
            delivery: self.delivery(request),
            actor: e.reporting_controller,
            commit: Some(commit.clone()),
            reference: Some(revision.to_string()),
            url: None,
            message: e.message,
        };
        let target = Target {
            service: entry.service.clone(),
            environment: entry.environment.clone(),
        };
        Ok(Intake::Release(deploy.release(&target, commit, None)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intake::receive;
    use crate::intake::webhook::tests::{headers, sign};
    use crate::intake::webhook::DEPLOY_ANNOTATION;

    /// Flux's documented event, as a successful reconciliation.
    pub const SUCCEEDED: &str = r#"{"involvedObject":{"apiVersion":"kustomize.toolkit.fluxcd.io/v1","kind":"Kustomization","name":"checkout","namespace":"flux-system","uid":"7d0cdc51-ddcf-4743-b223-83ca5c699632"},"metadata":{"kustomize.toolkit.fluxcd.io/revision":"main@sha1:731f7eaddfb6af01cb2173e18f0f75b0ba780ef1"},"severity":"info","reason":"ReconciliationSucceeded","message":"Reconciliation finished in 1.2s, next run in 10m0s","reportingController":"kustomize-controller","reportingInstance":"kustomize-controller-7c7b47f5f-8bhrp","timestamp":"2022-10-28T07:26:19Z"}"#;

    fn post(body: &str, signature: Option<&str>) -> Result<Intake, IntakeError> {
        let cfg = FluxConfig {
            secret: Secret::new("flux-token"),
            reasons: DEFAULT_REASONS.iter().map(|r| r.to_string()).collect(),
            map: vec![MapEntry {
                kustomization: Some("checkout".into()),
                helmrelease: None,
                namespace: "flux-system".into(),
                service: "checkout".into(),
                environment: "production".into(),
            }],
        };
        let sig = signature
            .map(str::to_owned)
            .unwrap_or_else(|| sign("flux-token", body.as_bytes()));
        let h = headers(&[
            ("x-signature", &sig),
            ("gotk-component", "kustomize-controller"),
        ]);
        receive(
            &Flux,
            &IntakeRequest {
                headers: &h,
                body: body.as_bytes(),
                config: Some(&cfg),
            },
        )
    }

    #[test]
    fn a_successful_reconciliation_starts_a_watch_of_its_commit() {
        let Intake::Release(new) = post(SUCCEEDED, None).unwrap() else {
            panic!("expected a release")
        };
        assert_eq!(new.service, "checkout");
        assert_eq!(new.version, "731f7eaddfb6af01cb2173e18f0f75b0ba780ef1");
        let d = &new.annotations[DEPLOY_ANNOTATION];
        assert_eq!(
            d["ref"],
            "main@sha1:731f7eaddfb6af01cb2173e18f0f75b0ba780ef1"
        );
        assert_eq!(d["actor"], "kustomize-controller");
    }

    #[test]
    fn both_revision_formats_give_the_commit() {
        assert_eq!(revision_commit("main@sha1:abc123"), "abc123");
        assert_eq!(revision_commit("main/abc123"), "abc123");
        assert_eq!(revision_commit("v1.2.3"), "v1.2.3");
    }

    #[test]
    fn errors_other_reasons_and_unmapped_objects_start_nothing() {
        let failed = SUCCEEDED
            .replace(r#""severity":"info""#, r#""severity":"error""#)
            .replace("ReconciliationSucceeded", "ValidationFailed");
        let progressing = SUCCEEDED.replace("ReconciliationSucceeded", "Progressing");
        let other = SUCCEEDED.replace(r#""name":"checkout""#, r#""name":"payments""#);
        for (body, why) in [
            (failed, "`ValidationFailed`"),
            (progressing, "`Progressing`"),
            (other, "Kustomization `flux-system/payments`"),
        ] {
            match post(&body, None) {
                Ok(Intake::Ignored(m)) => assert!(m.contains(why), "{m}"),
                other => panic!("expected ignored, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_bad_signature_is_refused() {
        let e = post(SUCCEEDED, Some("sha256=0123")).unwrap_err();
        assert!(matches!(e, IntakeError::Unauthenticated(_)), "{e:?}");
        let e = post(SUCCEEDED, Some(&sign("other", SUCCEEDED.as_bytes()))).unwrap_err();
        assert!(matches!(e, IntakeError::Unauthenticated(_)), "{e:?}");
    }
}
