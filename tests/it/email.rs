//! The email notifier through a real SMTP server (aiosmtpd): STARTTLS with
//! AUTH, SMTPS, a refused login, and a certificate nobody vouched for.

use crate::support::smtp::Mode;
use crate::support::{notifier, wait_for, Smtp};
use release_guardian::actions::notify::NotifyError;
use release_guardian::model::{Level, Message, Severity};
use std::time::Duration;

fn message() -> Message {
    let mut m = crate::support::message("level_changed", Level::Rollback);
    m.reason.push_str(" <script>");
    m
}

/// The config of one email notifier `mail` for `smtp_url`, with `extra` keys.
fn config(dir: &std::path::Path, smtp: &Smtp, url: &str, extra: &str) -> String {
    std::fs::copy(smtp.cert(), dir.join("smtp-ca.pem")).unwrap();
    format!(
        "[server]\npublic_url = \"https://guardian.example\"\n\
         [notifiers.mail]\nkind = \"email\"\nsmtp_url = \"{url}\"\n\
         from = \"Release Guardian <guardian@example.com>\"\n\
         to = [\"oncall@example.com\", \"Team Lead <lead@example.com>\"]\n\
         timeout = \"10s\"\n{extra}"
    )
}

async fn one_mail(smtp: &Smtp) -> crate::support::smtp::Mail {
    wait_for(
        "the mail at the SMTP server",
        Duration::from_secs(10),
        || {
            let mails = smtp.mails();
            async move { mails.into_iter().next() }
        },
    )
    .await
}

#[tokio::test]
async fn email_through_starttls_with_auth_arrives_with_subject_and_both_parts() {
    let smtp = Smtp::start(Mode::StartTls, Some(("guardian", "pa55-w0rd-s3cret")));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("smtp.password"), "pa55-w0rd-s3cret\n").unwrap();
    let toml = config(
        dir.path(),
        &smtp,
        &format!("smtp://127.0.0.1:{}", smtp.port),
        "username = \"guardian\"\npassword_file = \"smtp.password\"\nca_file = \"smtp-ca.pem\"\n",
    );
    let mail = notifier(dir.path(), &toml, "mail");
    mail.send(&message()).await.unwrap();
    let got = one_mail(&smtp).await;
    assert_eq!(
        got.subject,
        "[CRITICAL] checkout production v2: error_rate rollback"
    );
    assert!(got.tls, "the session was not encrypted");
    assert_eq!(got.auth.as_deref(), Some("guardian"));
    assert_eq!(got.mail_from, "guardian@example.com");
    assert_eq!(got.from, "Release Guardian <guardian@example.com>");
    assert_eq!(got.to, "oncall@example.com, Team Lead <lead@example.com>");
    assert_eq!(got.rcpt_tos, ["oncall@example.com", "lead@example.com"]);
    assert_eq!(got.content_type, "multipart/alternative");
    let plain = got.plain.expect("a text/plain part");
    for part in [
        "Service:     checkout",
        "Environment: production",
        "Version:     v2 (previous v1)",
        "Check:       error_rate",
        "Level:       rollback",
        "Value:       0.0712",
        "rule above 0.05 for 5m <script>",
        "Release status: https://guardian.example/v1/releases/0190-release",
    ] {
        assert!(plain.contains(part), "{part:?} missing from:\n{plain}");
    }
    let html = got.html.expect("a text/html part");
    assert!(html.contains("<td>0.0712</td>"), "{html}");
    assert!(
        html.contains("&lt;script&gt;") && !html.contains("<script>"),
        "{html}"
    );
    assert!(html.contains(
        "<a href=\"https://guardian.example/v1/releases/0190-release\">Release status</a>"
    ));
    // The same message always has the same Message-ID.
    mail.send(&message()).await.unwrap();
    let both = wait_for("the second mail", Duration::from_secs(10), || {
        let mails = smtp.mails();
        async move { (mails.len() == 2).then_some(mails) }
    })
    .await;
    assert_eq!(both[0].message_id, both[1].message_id);
    assert!(both[0].message_id.ends_with("@release-guardian>"));
}

#[tokio::test]
async fn email_through_smtps_arrives() {
    let smtp = Smtp::start(Mode::Smtps, None);
    let dir = tempfile::tempdir().unwrap();
    let toml = config(
        dir.path(),
        &smtp,
        &format!("smtps://localhost:{}", smtp.port),
        "ca_file = \"smtp-ca.pem\"\n",
    );
    let mut msg = message();
    msg.event = "recovered".into();
    msg.level = Some(Level::Ok);
    msg.severity = Severity::Info;
    notifier(dir.path(), &toml, "mail")
        .send(&msg)
        .await
        .unwrap();
    let got = one_mail(&smtp).await;
    assert!(got.tls);
    assert_eq!(got.auth, None);
    assert_eq!(
        got.subject,
        "[INFO] checkout production v2: error_rate ok (recovered)"
    );
    assert!(got
        .plain
        .unwrap()
        .contains("Event:       recovered at 2026-08-22T10:00:00Z"));
}

#[tokio::test]
async fn a_refused_login_is_permanent_and_keeps_the_password_out() {
    let smtp = Smtp::start(Mode::StartTls, Some(("guardian", "right-password")));
    let dir = tempfile::tempdir().unwrap();
    let toml = config(
        dir.path(),
        &smtp,
        &format!("smtp://127.0.0.1:{}", smtp.port),
        "username = \"guardian\"\npassword = \"wrong-password-xyz\"\nca_file = \"smtp-ca.pem\"\n",
    );
    let e = notifier(dir.path(), &toml, "mail")
        .send(&message())
        .await
        .unwrap_err();
    assert!(matches!(e, NotifyError::Permanent { .. }), "{e:?}");
    assert!(!format!("{e} {e:?}").contains("wrong-password-xyz"), "{e}");
    assert!(smtp.mails().is_empty());
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused_and_retried_later() {
    let smtp = Smtp::start(Mode::Smtps, None);
    let dir = tempfile::tempdir().unwrap();
    // No `ca_file`: the generated certificate is nobody's.
    let toml = config(
        dir.path(),
        &smtp,
        &format!("smtps://127.0.0.1:{}", smtp.port),
        "",
    );
    let e = notifier(dir.path(), &toml, "mail")
        .send(&message())
        .await
        .unwrap_err();
    assert!(matches!(e, NotifyError::Temporary { .. }), "{e:?}");
    assert!(smtp.mails().is_empty());
}
