//! Credentials made in the test, with the real tools: a CA, a server
//! certificate for 127.0.0.1 and a client certificate signed by it
//! (`openssl`), and bcrypt password hashes (`htpasswd -B`, Debian's
//! `apache2-utils`). A missing tool fails the test loudly
//! (`scripts/test.sh` installs them).

use std::path::{Path, PathBuf};
use std::process::Command;

/// PEM files under one directory.
pub struct Pki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A CA that signed nothing here (a wrong CA to trust).
    pub other_ca: PathBuf,
}

fn run(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is missing: install Debian's `openssl` package");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ca(dir: &Path, name: &str) {
    run(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
        ],
    );
}

fn leaf(dir: &Path, name: &str, ext: &str) {
    std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
    run(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={name}"),
        ],
    );
    run(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
        ],
    );
}

/// The extensions of a server certificate for `127.0.0.1`/`localhost`.
const SERVER_EXT: &str = "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n";

/// A CA, a server certificate for `127.0.0.1`/`localhost` and a client
/// certificate, signed by it; and another CA.
pub fn pki(dir: &Path) -> Pki {
    ca(dir, "ca");
    ca(dir, "other-ca");
    leaf(dir, "server", SERVER_EXT);
    leaf(
        dir,
        "client",
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n",
    );
    Pki {
        ca: dir.join("ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client.key"),
        other_ca: dir.join("other-ca.pem"),
    }
}

/// Another server certificate for `127.0.0.1`/`localhost` (a new key, a
/// new serial) signed by the CA of the [`pki`] already made in `dir`:
/// `DIR/NAME.pem` and `DIR/NAME.key`.
pub fn server_cert(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    server_cert_for(dir, name, "IP:127.0.0.1,DNS:localhost")
}

/// A server certificate for the names `san` (`DNS:db.internal`) only,
/// signed by the CA of the [`pki`] already made in `dir`: `DIR/NAME.pem`
/// and `DIR/NAME.key`.
pub fn server_cert_for(dir: &Path, name: &str, san: &str) -> (PathBuf, PathBuf) {
    let ext = SERVER_EXT.replace("IP:127.0.0.1,DNS:localhost", san);
    leaf(dir, name, &ext);
    (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    )
}

/// The bcrypt hash of `password` (cost 4: fast, still bcrypt).
pub fn bcrypt(password: &str) -> String {
    let out = Command::new("htpasswd")
        .args(["-nbB", "-C", "4", "user", password])
        .output()
        .expect("htpasswd is missing: install Debian's `apache2-utils` package");
    assert!(out.status.success(), "htpasswd failed");
    let line = String::from_utf8(out.stdout).unwrap();
    line.trim()
        .split_once(':')
        .map(|(_, h)| h.to_string())
        .expect("user:hash")
}
