//! A real SMTP server for the email notifier: Debian's `python3-aiosmtpd`
//! (run by `/usr/bin/python3`, which has it) on a free loopback port, in
//! one of three modes ([`Mode`]), optionally requiring AUTH, with a
//! certificate for `127.0.0.1` and `localhost` generated for the test by
//! the `openssl` command line. Every mail it takes is parsed by Python's
//! `email` package and written as one JSON file ([`Mail`]); tests poll
//! [`Smtp::mails`]. Killed when dropped; when the test is failing, its
//! stderr goes to stderr.

use super::free_port;
use serde::Deserialize;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// Debian's Python, the one `python3-aiosmtpd` is installed for.
pub const PYTHON: &str = "/usr/bin/python3";

/// How the server secures connections.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// Plain SMTP that offers and requires STARTTLS.
    StartTls,
    /// TLS from the first byte (SMTPS).
    Smtps,
}

/// One mail as the server received and parsed it.
#[derive(Debug, Clone, Deserialize)]
pub struct Mail {
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    pub subject: String,
    pub from: String,
    pub to: String,
    pub message_id: String,
    /// The top-level type (`multipart/alternative`).
    pub content_type: String,
    pub plain: Option<String>,
    pub html: Option<String>,
    /// Whether the session was encrypted.
    pub tls: bool,
    /// The login that authenticated, if any.
    pub auth: Option<String>,
}

pub struct Smtp {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

const SERVER: &str = r#"
import email, email.policy, json, os, signal, ssl, sys
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

mode, port, cert, key, out, user, password = sys.argv[1:8]

class Handler:
    def __init__(self):
        self.n = 0

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        plain = msg.get_body(("plain",))
        html = msg.get_body(("html",))
        transport = server.transport
        tls = transport is not None and transport.get_extra_info("ssl_object") is not None
        auth = session.auth_data
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "subject": str(msg["subject"]),
            "from": str(msg["from"]),
            "to": str(msg["to"]),
            "message_id": str(msg["message-id"]),
            "content_type": msg.get_content_type(),
            "plain": plain.get_content() if plain is not None else None,
            "html": html.get_content() if html is not None else None,
            "tls": tls or getattr(session, "ssl", None) is not None,
            "auth": auth.decode() if isinstance(auth, bytes) else None,
        }
        self.n += 1
        tmp = os.path.join(out, ".%d.json" % self.n)
        with open(tmp, "w") as f:
            json.dump(record, f)
        os.rename(tmp, os.path.join(out, "%d.json" % self.n))
        return "250 OK"

def authenticator(server, session, envelope, mechanism, auth_data):
    if (isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == user
            and auth_data.password.decode() == password):
        return AuthResult(success=True, auth_data=auth_data.login)
    return AuthResult(success=False, handled=False)

ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)
kwargs = {}
if user:
    kwargs.update(authenticator=authenticator, auth_required=True, auth_require_tls=True)
if mode == "smtps":
    kwargs["ssl_context"] = ctx
else:
    kwargs.update(tls_context=ctx, require_starttls=True)
controller = Controller(Handler(), hostname="127.0.0.1", port=int(port), **kwargs)
controller.start()
print("READY", flush=True)
signal.pause()
"#;

impl Smtp {
    /// Starts the server in `mode`, requiring AUTH as `login` when given.
    /// Panics (fails the test) when aiosmtpd or openssl is missing:
    /// `scripts/test.sh` installs them.
    pub fn start(mode: Mode, login: Option<(&str, &str)>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let status = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", "/CN=localhost"])
            .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
            .args(["-addext", "basicConstraints=critical,CA:FALSE"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect(
                "openssl is missing: install Debian's `openssl` package (scripts/test.sh does)",
            );
        assert!(status.success(), "openssl could not make a certificate");
        let out = dir.path().join("mail");
        std::fs::create_dir(&out).unwrap();
        let script = dir.path().join("server.py");
        std::fs::write(&script, SERVER).unwrap();
        let port = free_port();
        let (user, password) = login.unwrap_or(("", ""));
        let mode = match mode {
            Mode::StartTls => "starttls",
            Mode::Smtps => "smtps",
        };
        let mut child = Command::new(PYTHON)
            .arg(&script)
            .args([mode, &port.to_string()])
            .args([&cert, &key, &out])
            .args([user, password])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap())
            .spawn()
            .expect("start /usr/bin/python3");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let me = Self {
            port,
            dir,
            child: Some(child),
        };
        assert_eq!(
            line.trim(),
            "READY",
            "aiosmtpd did not start (is Debian's `python3-aiosmtpd` installed? scripts/test.sh installs it): {}",
            std::fs::read_to_string(me.dir.path().join("stderr")).unwrap_or_default()
        );
        me
    }

    /// The server's certificate (PEM), for the notifier's `ca_file`.
    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    /// Every mail received so far, in arrival order.
    pub fn mails(&self) -> Vec<Mail> {
        let mut files: Vec<(u32, PathBuf)> = std::fs::read_dir(self.dir.path().join("mail"))
            .unwrap()
            .filter_map(|e| {
                let path = e.ok()?.path();
                let n = path.file_stem()?.to_str()?.parse().ok()?;
                (path.extension()? == "json").then_some((n, path))
            })
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|(_, p)| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
            .collect()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default();
            eprintln!("--- aiosmtpd stderr ---\n{log}");
        }
    }
}
