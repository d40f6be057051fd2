//! The live status page (`GET /ui`, and `GET /`): server-rendered HTML of
//! the active and recent watches, refreshed by a `<meta http-equiv=refresh>`
//! (no script), and the browser-friendly way to present a token.
//!
//! With `[auth]`, a browser opens `/ui?token=TOKEN` once: a token with the
//! `read` scope is answered with a redirect to `/ui` (so the token leaves
//! the address bar and history) that sets an `HttpOnly`, `SameSite=Strict`
//! session cookie. The cookie holds an HMAC of the token under a key drawn
//! at random when the daemon starts — never the token itself — so it is
//! worthless after a restart or once the token is removed from the config,
//! and it is only accepted for reads (`GET`/`HEAD`; writes still need
//! `Authorization: Bearer`). Cookies are checked in constant time against
//! every configured token, as bearer tokens are ([`super::auth`]).

use super::auth::{check, required_scope};
use super::error::ApiError;
use super::ApiState;
use crate::config::{ApiToken, Scope};
use crate::model::{format_value, parse_time, Millis, ReleaseStatus};
use crate::report::html::{badge, check_chart, escape, range_of, CSS};
use crate::report::Report;
use crate::store::ReleaseFilter;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::fmt::Write;
use std::sync::OnceLock;
use subtle::{Choice, ConstantTimeEq};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "rg_session";

/// How long a session cookie lasts (seconds).
pub const SESSION_SECONDS: u32 = 12 * 3600;

/// Ended releases listed below the active ones.
pub const RECENT: usize = 10;

/// Default and bounds of `?refresh=` (seconds between reloads).
pub const REFRESH_DEFAULT: u32 = 10;

fn key() -> &'static ring::hmac::Key {
    static KEY: OnceLock<ring::hmac::Key> = OnceLock::new();
    KEY.get_or_init(|| {
        ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &ring::rand::SystemRandom::new())
            .expect("system random")
    })
}

fn session_of(token: &str) -> [u8; 32] {
    let tag = ring::hmac::sign(key(), token.as_bytes());
    let mut out = [0; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    let mut out = [0; 32];
    if s.len() != 64 {
        return None;
    }
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn is_ui(path: &str) -> bool {
    path == "/" || path == "/ui"
}

fn query_token(request: &Request) -> Option<String> {
    let q = request.uri().query()?;
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == "token").then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
                continue;
            }
            (b'+', _) => out.push(b' '),
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == SESSION_COOKIE).then(|| v.to_string())
        })
}

/// Authentication the browser way, for [`super::auth::require_token`]:
/// `None` when the request uses neither (then the bearer token decides);
/// `Some(Ok(Some(redirect)))` for a good `?token=` on the page's path,
/// `Some(Ok(None))` for a good session cookie on a read, else the error.
pub(crate) fn authenticate(
    tokens: &[ApiToken],
    request: &Request,
) -> Option<Result<Option<Response>, ApiError>> {
    let scope = required_scope(request.method());
    if scope == Scope::Read && is_ui(request.uri().path()) {
        if let Some(token) = query_token(request) {
            let mut headers = HeaderMap::new();
            let bearer = HeaderValue::from_str(&format!("Bearer {token}")).ok();
            if let Some(v) = bearer {
                headers.insert(header::AUTHORIZATION, v);
            }
            return Some(check(tokens, &headers, Scope::Read).map(|_| {
                let cookie = format!(
                    "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECONDS}",
                    hex(&session_of(&token))
                );
                Some(
                    (
                        StatusCode::SEE_OTHER,
                        [
                            (header::LOCATION, "/ui".to_string()),
                            (header::SET_COOKIE, cookie),
                            (header::CACHE_CONTROL, "no-store".to_string()),
                        ],
                    )
                        .into_response(),
                )
            }));
        }
    }
    if request.headers().contains_key(header::AUTHORIZATION) || scope != Scope::Read {
        return None;
    }
    let Some(presented) = session_cookie(request.headers()) else {
        // A person opening the page: say how to sign in.
        return is_ui(request.uri().path()).then(|| {
            Err(ApiError::Unauthorized(
                "the status page needs a token with the `read` scope: open /ui?token=TOKEN once"
                    .into(),
            ))
        });
    };
    let presented = unhex(&presented).unwrap_or([0; 32]);
    let mut known = Choice::from(0);
    for t in tokens {
        let readable = Choice::from(u8::from(t.scopes.contains(&Scope::Read)));
        known |= session_of(t.token.expose()).ct_eq(&presented) & readable;
    }
    Some(if bool::from(known) {
        Ok(None)
    } else {
        Err(ApiError::Unauthorized(
            "the session has expired or its token is no longer configured: open /ui?token=TOKEN again"
                .into(),
        ))
    })
}

/// `GET /ui` (and `/`): the page. `?refresh=N` reloads every N seconds
/// (default 10, 0 for never).
pub(crate) async fn page(
    State(ApiState { ctx, .. }): State<ApiState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let refresh = match params.get("refresh") {
        None => REFRESH_DEFAULT,
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|&n| n <= 3600)
            .ok_or_else(|| ApiError::BadRequest("`refresh` must be 0..=3600 seconds".into()))?,
    };
    let now = ctx.clock.now();
    let mut ids: Vec<String> = ctx
        .store
        .active_releases()
        .await?
        .into_iter()
        .map(|r| r.id)
        .collect();
    let recent = ctx
        .store
        .list_releases(&ReleaseFilter {
            limit: RECENT + ids.len(),
            ..Default::default()
        })
        .await?;
    let mut ended = 0;
    for r in recent {
        if !ids.contains(&r.id) && ended < RECENT && r.status.is_terminal() {
            ids.push(r.id);
            ended += 1;
        }
    }
    let settings = ctx.settings();
    let mut reports = Vec::with_capacity(ids.len());
    for id in &ids {
        match super::report::build(&ctx, id, now).await {
            Ok(r) => reports.push(r),
            Err(ApiError::NotFound(_)) => {} // pruned meanwhile
            Err(e) => return Err(e),
        }
    }
    let tiers: Vec<Option<(usize, Millis)>> = reports
        .iter()
        .map(|r| {
            let start = parse_time(&r.release.started_at)?;
            let svc = settings.service(&r.release.service, &r.release.environment)?;
            svc.cadence.tier_at(now - start)
        })
        .collect();
    let html = render(&reports, &tiers, now, refresh);
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response())
}

/// "in 4m 10s", "due", "-".
fn until(at: Option<&str>, now: Millis) -> String {
    match at.and_then(parse_time) {
        None => "-".into(),
        Some(t) if t <= now => "due now".into(),
        Some(t) => {
            let secs = (t - now + 999) / 1000;
            let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
            match (h, m) {
                (0, 0) => format!("in {s}s"),
                (0, _) => format!("in {m}m {s}s"),
                _ => format!("in {h}h {m}m"),
            }
        }
    }
}

/// The page for these reports (active first), `tiers` beside them.
pub fn render(
    reports: &[Report],
    tiers: &[Option<(usize, Millis)>],
    now: Millis,
    refresh: u32,
) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">{}<title>release-guardian</title><style>{CSS}
.watch{{border:1px solid #ddd;border-radius:6px;padding:10px 14px;margin:12px 0}}.watch h2{{border:0;margin:0 0 6px}}
.cells td{{color:#fff;font-weight:600;min-width:110px}}.charts{{display:flex;flex-wrap:wrap;gap:8px}}.charts figure{{margin:0}}.charts figcaption{{font-size:12px;color:#555}}
</style></head><body><h1>release-guardian: watches</h1><p class=\"muted\">{} · {}</p>",
        if refresh > 0 {
            format!("<meta http-equiv=\"refresh\" content=\"{refresh}\">")
        } else {
            String::new()
        },
        escape(&crate::model::rfc3339(now)),
        if refresh > 0 {
            format!("refreshes every {refresh}s")
        } else {
            "not refreshing".into()
        }
    );
    if reports.is_empty() {
        o.push_str("<p>No releases yet.</p>");
    }
    for (r, tier) in reports.iter().zip(tiers) {
        let h = &r.release;
        let active = !ReleaseStatus::parse(&h.status).is_some_and(|s| s.is_terminal());
        let _ = write!(
            o,
            "<section class=\"watch\" id=\"release-{id}\" data-status=\"{status}\"><h2>{svc} <span class=\"muted\">{env}</span> {ver} {b}</h2>",
            id = escape(&h.id),
            status = escape(&h.status),
            svc = escape(&h.service),
            env = escape(&h.environment),
            ver = escape(&h.version),
            b = badge(&h.status)
        );
        let when = match tier {
            Some((n, every)) if active => format!(
                "tier {n} (every {}) · next check {}",
                humantime::format_duration(std::time::Duration::from_millis(*every as u64)),
                until(h.next_check_at.as_deref(), now)
            ),
            _ if active => format!("next check {}", until(h.next_check_at.as_deref(), now)),
            _ => format!("ended {}", escape(h.ended_at.as_deref().unwrap_or("-"))),
        };
        let _ = write!(
            o,
            "<div class=\"muted\">{} → {} · started {} · {when} · <a href=\"/v1/releases/{id}/report?format=html\">report</a> (<a href=\"/v1/releases/{id}/report?format=md\">md</a>, <a href=\"/v1/releases/{id}/report?format=json\">json</a>)</div>",
            escape(h.previous_version.as_deref().unwrap_or("?")),
            escape(&h.version),
            escape(&h.started_at),
            id = escape(&h.id),
        );
        o.push_str("<table class=\"cells\"><tr>");
        for c in &r.checks {
            let _ = write!(
                o,
                "<td class=\"cell\" data-check=\"{n}\" data-state=\"{s}\" style=\"background:{}\">{n}<br>{s} · {}</td>",
                crate::report::chart::colour(&c.state),
                c.value.map(format_value).unwrap_or_else(|| "-".into()),
                n = escape(&c.name),
                s = escape(&c.state)
            );
        }
        o.push_str("</tr></table><div class=\"charts\">");
        let range = range_of(r, now);
        for c in &r.checks {
            let _ = write!(
                o,
                "<figure>{}<figcaption>{}</figcaption></figure>",
                check_chart(c, range, (320, 90)),
                escape(&c.name)
            );
        }
        o.push_str("</div></section>");
    }
    o.push_str("</body></html>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use axum::body::Body;

    fn tokens() -> Vec<ApiToken> {
        vec![
            ApiToken {
                name: "reader".into(),
                token: Secret::new("reader-token-1234"),
                scopes: vec![Scope::Read],
            },
            ApiToken {
                name: "writer".into(),
                token: Secret::new("writer-only-5678"),
                scopes: vec![Scope::Write],
            },
        ]
    }

    fn request(method: &str, uri: &str, cookie: Option<&str>) -> Request {
        let mut b = axum::http::Request::builder().method(method).uri(uri);
        if let Some(c) = cookie {
            b = b.header(header::COOKIE, c);
        }
        b.body(Body::empty()).unwrap()
    }

    #[test]
    fn a_read_token_in_the_address_becomes_a_session_cookie_for_reads_only() {
        let t = tokens();
        // A good token: 303 to /ui with an HttpOnly cookie that is not the token.
        let login = authenticate(&t, &request("GET", "/ui?token=reader-token-1234", None))
            .expect("handled")
            .expect("accepted")
            .expect("a redirect");
        assert_eq!(login.status(), StatusCode::SEE_OTHER);
        assert_eq!(login.headers()[header::LOCATION], "/ui");
        let set = login.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
        assert!(!set.contains("reader-token-1234"), "{set}");
        let cookie = set.split(';').next().unwrap().to_string();

        // The cookie reads any GET route; not writes (the bearer decides them).
        for path in ["/ui", "/v1/releases", "/v1/releases/x/report?format=html"] {
            assert!(matches!(
                authenticate(&t, &request("GET", path, Some(&cookie))),
                Some(Ok(None))
            ));
        }
        assert!(authenticate(&t, &request("POST", "/v1/releases", Some(&cookie))).is_none());
        // A forged or stale cookie is a 401.
        let forged = format!("{SESSION_COOKIE}={}", "ab".repeat(32));
        for bad in [forged.as_str(), "rg_session=nothex", "rg_session="] {
            assert!(
                matches!(
                    authenticate(&t, &request("GET", "/ui", Some(bad))),
                    Some(Err(ApiError::Unauthorized(_)))
                ),
                "{bad}"
            );
        }
        // A wrong token, or one without `read`, is refused and not echoed.
        for bad in ["/ui?token=nope-nope-nope", "/?token=writer-only-5678"] {
            match authenticate(&t, &request("GET", bad, None)) {
                Some(Err(e)) => assert!(!e.to_string().contains("nope-nope"), "{e}"),
                other => panic!("{bad}: {:?}", other.map(|r| r.is_ok())),
            }
        }
        // `?token=` elsewhere is not a sign-in; no cookie, no header: not ours.
        assert!(authenticate(
            &t,
            &request("GET", "/v1/releases?token=reader-token-1234", None)
        )
        .is_none());
        assert!(authenticate(&t, &request("GET", "/v1/releases", None)).is_none());
        match authenticate(&t, &request("GET", "/ui", None)) {
            Some(Err(ApiError::Unauthorized(m))) => assert!(m.contains("/ui?token=TOKEN"), "{m}"),
            other => panic!("{:?}", other.map(|r| r.is_ok())),
        }
        assert_eq!(percent_decode("a%2Bb+c%zz%e2%82%ac"), "a+b c%zz€");
    }
}
