//! The email notifier: one mail per message through an SMTP server, with
//! `lettre`.
//!
//! `smtp_url` names the server: `smtps://HOST[:PORT]` speaks TLS from the
//! first byte (default port 465); `smtp://HOST[:PORT]` upgrades with
//! STARTTLS (default port 587), which is required unless `starttls =
//! "opportunistic"` (then a server without STARTTLS gets the mail in
//! clear; not allowed with credentials). Credentials (`username` with
//! `password` or `password_file`) are sent only over TLS. The server's
//! certificate is checked against the Mozilla roots, plus `ca_file` (PEM)
//! when given — for a private CA, or a test server's generated certificate.
//!
//! The mail: `From` = `from`, `To` = every address of `to`, a subject that
//! names severity, service, environment, version, check and level
//! (`[CRITICAL] checkout production v2: error_rate rollback`), a plain-text
//! part and an HTML part with the same content (every field of the
//! message; the links to the status API with `[server] public_url`), and a
//! `Message-ID` derived from the message's dedup key, so a mail retried
//! after a lost answer is recognisably the same mail.
//!
//! Answers: 2xx → delivered; an SMTP 5xx (refused sender or recipient,
//! failed authentication) → `Permanent`; 4xx, network and TLS errors,
//! timeouts → `Temporary`. The password never appears in an error.

use super::{BuildContext, Links, Notifier, NotifierConfig, NotifierKind, NotifyError};
use crate::model::{format_value, rfc3339, Message};
use crate::section::{deserialize_duration, Secret, Section};
use async_trait::async_trait;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// `kind = "email"`.
pub const KIND: NotifierKind = NotifierKind {
    name: "email",
    parse,
};

/// Default timeout of each SMTP command (connecting included).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default port of `smtps://` (implicit TLS, "submissions").
pub const SMTPS_PORT: u16 = 465;
/// Default port of `smtp://` (STARTTLS, "submission").
pub const SUBMISSION_PORT: u16 = 587;

fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}

/// `[notifiers.NAME]` with `kind = "email"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fields {
    #[serde(default)]
    smtp_url: Option<Secret>,
    #[serde(default)]
    smtp_url_file: Option<PathBuf>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<Secret>,
    #[serde(default)]
    password_file: Option<PathBuf>,
    from: String,
    to: Vec<String>,
    #[serde(default)]
    starttls: Option<String>,
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default = "default_timeout", deserialize_with = "deserialize_duration")]
    timeout: Duration,
}

/// A checked email section.
pub struct EmailConfig {
    smtp_url: Secret,
    host: String,
    port: u16,
    tls: Tls,
    credentials: Option<(String, Secret)>,
    from: Mailbox,
    to: Vec<Mailbox>,
    timeout: Duration,
}

impl std::fmt::Debug for EmailConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailConfig")
            .field("smtp_url", &self.smtp_url)
            .field("from", &self.from.to_string())
            .field("to", &self.to.len())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// How the connection is secured.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Security {
    /// `smtps://`: TLS from the first byte.
    Implicit,
    /// `smtp://`: STARTTLS, required.
    StartTls,
    /// `smtp://` with `starttls = "opportunistic"`.
    Opportunistic,
}

fn parse(s: &mut Section<'_, '_>) -> Option<Box<dyn NotifierConfig>> {
    let f: Fields = s.deserialize()?;
    s.positive("timeout", f.timeout);
    let what = format!("email notifier `{}`", s.at.last_key().unwrap_or_default());
    let url = s.secret(
        f.smtp_url.as_ref(),
        f.smtp_url_file.as_ref(),
        "smtp_url",
        &what,
    );
    let server = url.and_then(|(url, at)| {
        let parsed = server(url.expose(), f.starttls.as_deref());
        match parsed {
            Ok((host, port, security)) => Some((url, host, port, security)),
            Err(e) => {
                s.report
                    .error(&at, format!("{e}; the value is a secret and is not shown"));
                None
            }
        }
    });
    if let Some(mode) = &f.starttls {
        if !matches!(mode.as_str(), "required" | "opportunistic") {
            s.error(
                "starttls",
                format!("`starttls` must be \"required\" or \"opportunistic\", not {mode:?}"),
            );
        }
    }
    let password = s.optional_secret(f.password.as_ref(), f.password_file.as_ref(), "password");
    let credentials = match (&f.username, password) {
        (Some(user), Some(pass)) if !user.trim().is_empty() => Some(Some((user.clone(), pass))),
        (Some(_), Some(_)) => {
            s.error("username", "`username` is empty");
            None
        }
        (None, None) if f.password.is_none() && f.password_file.is_none() => Some(None),
        (None, _) => {
            s.error("password", "a `password` needs a `username`");
            None
        }
        (Some(_), None) => {
            if f.password.is_none() && f.password_file.is_none() {
                s.error(
                    "username",
                    "a `username` needs `password` or `password_file`",
                );
            }
            None
        }
    };
    let from = mailbox(s, "from", &f.from);
    let mut to = Vec::new();
    if f.to.is_empty() {
        s.error("to", "`to` needs at least one address");
    }
    for (i, addr) in f.to.iter().enumerate() {
        match addr.parse::<Mailbox>() {
            Ok(m) => to.push(m),
            Err(e) => s.report.error(
                &s.at.key("to").index(i),
                format!("{addr:?} is not an email address: {e}"),
            ),
        }
    }
    let roots = match &f.ca_file {
        None => Some(None),
        Some(file) => {
            let path = s.base.join(file);
            match std::fs::read(&path) {
                Ok(pem)
                    if String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") =>
                {
                    match Certificate::from_pem(&pem) {
                        Ok(cert) => Some(Some(cert)),
                        Err(e) => {
                            s.error("ca_file", format!("{}: {e}", path.display()));
                            None
                        }
                    }
                }
                Ok(_) => {
                    s.error(
                        "ca_file",
                        format!("{} holds no PEM certificate", path.display()),
                    );
                    None
                }
                Err(e) => {
                    s.error("ca_file", format!("cannot read {}: {e}", path.display()));
                    None
                }
            }
        }
    };
    let (smtp_url, host, port, security) = server?;
    let credentials = credentials?;
    if credentials.is_some() && security == Security::Opportunistic {
        s.error(
            "starttls",
            "credentials are sent only over TLS: with `username` set, `starttls` must be \"required\"",
        );
        return None;
    }
    let roots = roots?;
    let mut builder = TlsParameters::builder(host.clone());
    if let Some(cert) = roots {
        builder = builder.add_root_certificate(cert);
    }
    let params = match builder.build_rustls() {
        Ok(p) => p,
        Err(e) => {
            s.error("smtp_url", format!("cannot set up TLS: {e}"));
            return None;
        }
    };
    let tls = match security {
        Security::Implicit => Tls::Wrapper(params),
        Security::StartTls => Tls::Required(params),
        Security::Opportunistic => Tls::Opportunistic(params),
    };
    let (from, timeout) = (from?, f.timeout);
    (to.len() == f.to.len() && !to.is_empty() && !timeout.is_zero()).then(|| {
        Box::new(EmailConfig {
            smtp_url,
            host,
            port,
            tls,
            credentials,
            from,
            to,
            timeout,
        }) as Box<dyn NotifierConfig>
    })
}

/// Host, port and security of an `smtp_url`; the error never quotes it.
fn server(url: &str, starttls: Option<&str>) -> Result<(String, u16, Security), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("`smtp_url` is not a URL ({e})"))?;
    let host = parsed
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or("`smtp_url` has no host")?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(
            "`smtp_url` holds credentials: give them as `username` and `password` (or `password_file`)"
                .into(),
        );
    }
    if !matches!(parsed.path(), "" | "/") || parsed.query().is_some() {
        return Err(
            "`smtp_url` is `smtp://HOST[:PORT]` or `smtps://HOST[:PORT]`, without a path or query"
                .into(),
        );
    }
    let (security, default_port) = match (parsed.scheme(), starttls) {
        ("smtps", _) => (Security::Implicit, SMTPS_PORT),
        ("smtp", Some("opportunistic")) => (Security::Opportunistic, SUBMISSION_PORT),
        ("smtp", _) => (Security::StartTls, SUBMISSION_PORT),
        (other, _) => {
            return Err(format!(
                "the scheme of `smtp_url` is `{other}`, not `smtp` (STARTTLS) or `smtps` (TLS)"
            ))
        }
    };
    Ok((host, parsed.port().unwrap_or(default_port), security))
}

/// The address at `key`, reported when it is not one.
fn mailbox(s: &mut Section<'_, '_>, key: &str, addr: &str) -> Option<Mailbox> {
    match addr.parse::<Mailbox>() {
        Ok(m) => Some(m),
        Err(e) => {
            s.error(key, format!("{addr:?} is not an email address: {e}"));
            None
        }
    }
}

impl NotifierConfig for EmailConfig {
    fn secrets(&self) -> Vec<&Secret> {
        std::iter::once(&self.smtp_url)
            .chain(self.credentials.as_ref().map(|(_, p)| p))
            .collect()
    }

    fn build(&self, cx: &BuildContext) -> Arc<dyn Notifier> {
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&self.host)
            .port(self.port)
            .tls(self.tls.clone())
            .timeout(Some(self.timeout));
        if let Some((user, pass)) = &self.credentials {
            builder =
                builder.credentials(Credentials::new(user.clone(), pass.expose().to_string()));
        }
        Arc::new(EmailNotifier {
            transport: builder.build(),
            from: self.from.clone(),
            to: self.to.clone(),
            links: cx.links.clone(),
            password: self.credentials.as_ref().map(|(_, p)| p.clone()),
        })
    }
}

/// Sends each message as one mail through one SMTP server.
pub struct EmailNotifier {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    links: Links,
    /// Kept to scrub it from errors, should a server echo it.
    password: Option<Secret>,
}

#[async_trait]
impl Notifier for EmailNotifier {
    fn kind(&self) -> &'static str {
        "email"
    }

    async fn send(&self, msg: &Message) -> Result<(), NotifyError> {
        let mut builder = lettre::Message::builder()
            .from(self.from.clone())
            .subject(subject(msg))
            .message_id(Some(message_id(&msg.dedup_key)))
            .user_agent(concat!("release-guardian/", env!("CARGO_PKG_VERSION")).to_string());
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        let links = self.links.of(msg);
        let mail = builder
            .multipart(MultiPart::alternative_plain_html(
                plain(msg, &links),
                html(msg, &links),
            ))
            .map_err(|e| NotifyError::Permanent {
                detail: format!("cannot build the mail: {e}"),
            })?;
        match self.transport.send(mail).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let mut detail = format!("SMTP: {e}");
                if let Some(p) = self.password.as_ref().filter(|p| !p.expose().is_empty()) {
                    detail = detail.replace(p.expose(), "<redacted>");
                }
                if e.is_permanent() {
                    Err(NotifyError::Permanent { detail })
                } else {
                    Err(NotifyError::Temporary {
                        detail,
                        retry_after: None,
                    })
                }
            }
        }
    }
}

/// `[CRITICAL] checkout production v2: error_rate rollback`: severity,
/// service, environment, version, and the check with its level (or the
/// release's event).
pub fn subject(msg: &Message) -> String {
    let what = match (&msg.check, msg.level) {
        (Some(check), Some(level)) if msg.event == "level_changed" => format!("{check} {level}"),
        (Some(check), Some(level)) => format!("{check} {level} ({})", msg.event),
        (Some(check), None) => format!("{check} {}", msg.event),
        (None, _) => msg.event.replace('_', " "),
    };
    let line = format!(
        "[{}] {} {} {}: {what}",
        msg.severity.as_str().to_uppercase(),
        msg.service,
        msg.environment,
        msg.version
    );
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `<HEX@release-guardian>`, the same for every delivery of one message.
fn message_id(dedup_key: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, dedup_key.as_bytes());
    let hex: String = digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("<{hex}@release-guardian>")
}

/// Every field of the message, labelled, in order.
fn fields(msg: &Message) -> Vec<(&'static str, String)> {
    let version = match &msg.previous_version {
        Some(prev) => format!("{} (previous {prev})", msg.version),
        None => msg.version.clone(),
    };
    let dash = || "—".to_string();
    vec![
        ("Service", msg.service.clone()),
        ("Environment", msg.environment.clone()),
        ("Version", version),
        ("Check", msg.check.clone().unwrap_or_else(dash)),
        (
            "Level",
            msg.level
                .map(|l| l.as_str().to_string())
                .unwrap_or_else(dash),
        ),
        ("Value", msg.value.map(format_value).unwrap_or_else(dash)),
        ("Reason", msg.reason.clone()),
        ("Event", format!("{} at {}", msg.event, rfc3339(msg.at))),
        ("Release id", msg.release_id.clone()),
        ("Dedup key", msg.dedup_key.clone()),
    ]
}

/// The plain-text part.
pub fn plain(msg: &Message, links: &[(&'static str, String)]) -> String {
    let mut out = format!("{}\n\n", msg.summary());
    for (label, value) in fields(msg) {
        out.push_str(&format!("{:<13}{value}\n", format!("{label}:")));
    }
    if !links.is_empty() {
        out.push('\n');
        for (label, href) in links {
            out.push_str(&format!("{label}: {href}\n"));
        }
    }
    out.push_str("\n-- \nrelease-guardian\n");
    out
}

/// The HTML part: the same content, every value escaped.
pub fn html(msg: &Message, links: &[(&'static str, String)]) -> String {
    let mut out = format!(
        "<!DOCTYPE html>\n<html><body>\n<p><strong>{}</strong></p>\n<table>\n",
        escape(&msg.summary())
    );
    for (label, value) in fields(msg) {
        out.push_str(&format!(
            "<tr><th align=\"left\">{label}</th><td>{}</td></tr>\n",
            escape(&value)
        ));
    }
    out.push_str("</table>\n");
    if !links.is_empty() {
        let items: Vec<String> = links
            .iter()
            .map(|(label, href)| format!("<a href=\"{}\">{label}</a>", escape(href)))
            .collect();
        out.push_str(&format!("<p>{}</p>\n", items.join(" · ")));
    }
    out.push_str("<p>release-guardian</p>\n</body></html>\n");
    out
}

/// Escapes text for HTML content and attribute values.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Level, Severity};

    fn message() -> Message {
        crate::actions::notify::sample_message(
            "level_changed",
            Some(Level::Rollback),
            "<b>bold</b> & more",
        )
    }

    #[test]
    fn subject_names_service_environment_version_check_and_level() {
        assert_eq!(
            subject(&message()),
            "[CRITICAL] checkout production v2: error_rate rollback"
        );
        let mut m = message();
        m.event = "recovered".into();
        m.level = Some(Level::Ok);
        m.severity = Severity::Info;
        assert_eq!(
            subject(&m),
            "[INFO] checkout production v2: error_rate ok (recovered)"
        );
        m.check = None;
        m.level = None;
        m.event = "rollback_failed".into();
        assert_eq!(
            subject(&m),
            "[INFO] checkout production v2: rollback failed"
        );
    }

    #[test]
    fn both_parts_carry_every_field_and_html_is_escaped() {
        let links = vec![(
            "Release status",
            "https://g.example/v1/releases/r1".to_string(),
        )];
        let text = plain(&message(), &links);
        assert!(text.contains("Value:       0.0712\n"), "{text}");
        assert!(text.contains("Release status: https://g.example/v1/releases/r1"));
        let page = html(&message(), &links);
        assert!(
            page.contains("&lt;b&gt;bold&lt;/b&gt; &amp; more"),
            "{page}"
        );
        assert!(!page.contains("<b>bold"));
        assert!(page.contains("<a href=\"https://g.example/v1/releases/r1\">Release status</a>"));
    }

    #[test]
    fn urls_are_checked_without_quoting_them() {
        assert!(matches!(
            server("smtps://mail.example", None),
            Ok((h, 465, Security::Implicit)) if h == "mail.example"
        ));
        assert!(matches!(
            server("smtp://mail.example:2525", None),
            Ok((_, 2525, Security::StartTls))
        ));
        assert!(matches!(
            server("smtp://mail.example", Some("opportunistic")),
            Ok((_, 587, Security::Opportunistic))
        ));
        let e = server("smtp://bob:hunter22@mail.example", None).unwrap_err();
        assert!(!e.contains("hunter22") && e.contains("credentials"), "{e}");
        assert!(server("http://mail.example", None).is_err());
        assert_eq!(message_id("k"), message_id("k"));
    }
}
