//! Where the signer's OIDC identity token comes from, first match wins:
//! an explicit token (`--identity-token` / `COSIGN_IDENTITY_TOKEN`), the
//! GitHub Actions ambient token, the OAuth 2.0 device flow (RFC 8628) when
//! asked for, else the browser authorization-code flow with PKCE (RFC 7636)
//! when a person is at a terminal. Tokens are never logged or written; only
//! the subject claim is.

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use super::http;
use crate::error::{Error, ErrorKind, Result};

pub const SIGSTORE_ISSUER: &str = "https://oauth2.sigstore.dev/auth";
pub(crate) const CLIENT_ID: &str = "sigstore";
/// Interactive flows give up after this long (exit 5).
pub(crate) const INTERACTIVE_TIMEOUT: Duration = Duration::from_secs(300);

/// A token given on the command line or in the environment; its `Debug`
/// form is redacted so argument dumps cannot leak it.
#[derive(Clone, Default)]
pub struct IdentityToken(pub String);

impl std::fmt::Debug for IdentityToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdentityToken(<redacted>)")
    }
}

impl std::str::FromStr for IdentityToken {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Ok(IdentityToken(s.to_string()))
    }
}

/// What the user asked for and what the caller found around it; the
/// explicit token already folds in its env var.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub identity_token: Option<IdentityToken>,
    pub device_flow: bool,
    /// The issuer for interactive flows; empty means [`SIGSTORE_ISSUER`].
    pub issuer: String,
    /// GitHub Actions' token endpoint and its bearer
    /// (`ACTIONS_ID_TOKEN_REQUEST_URL`, `ACTIONS_ID_TOKEN_REQUEST_TOKEN`),
    /// when the job has `id-token: write`. The bearer is a secret, so it is
    /// kept in the redacting [`IdentityToken`].
    pub github_actions: Option<(String, IdentityToken)>,
}

/// The token from the first source that has one.
pub fn resolve(req: &Request) -> Result<String> {
    if let Some(t) = req
        .identity_token
        .as_ref()
        .map(|t| t.0.as_str())
        .filter(|t| !t.trim().is_empty())
    {
        return Ok(t.trim().to_string());
    }
    if let Some((url, bearer)) = req
        .github_actions
        .as_ref()
        .filter(|(u, b)| !u.is_empty() && !b.0.is_empty())
    {
        return github_actions(url, &bearer.0);
    }
    let issuer = match req.issuer.as_str() {
        "" => SIGSTORE_ISSUER,
        i => i,
    };
    if req.device_flow {
        return device_flow(issuer, INTERACTIVE_TIMEOUT);
    }
    // Without a person at the terminal a browser sign-in would just hang.
    if std::io::stderr().is_terminal() {
        return browser_flow(issuer, INTERACTIVE_TIMEOUT);
    }
    Err(Error::new(
        ErrorKind::Unavailable,
        "no OIDC identity token available for --attest: pass --identity-token (or set COSIGN_IDENTITY_TOKEN), run in GitHub Actions with id-token permission, or use --oidc-device-flow",
    ))
}

fn github_actions(url: &str, bearer: &str) -> Result<String> {
    let sep = if url.contains('?') { '&' } else { '?' };
    let v = http::get_json(
        "GitHub Actions OIDC token request",
        &format!("{url}{sep}audience=sigstore"),
        Some(bearer),
    )?;
    v["value"]
        .as_str()
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Unavailable,
                "GitHub Actions OIDC answer has an empty token",
            )
        })
}

fn discover(issuer: &str) -> Result<Value> {
    http::get_json(
        "OIDC discovery",
        &format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        ),
        None,
    )
}

fn endpoint(conf: &Value, issuer: &str, k: &str) -> Result<String> {
    conf[k].as_str().map(str::to_string).ok_or_else(|| {
        Error::new(
            ErrorKind::Unavailable,
            format!("OIDC issuer {issuer} has no {k}"),
        )
    })
}

fn random_token() -> Result<String> {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| Error::internal("system random number generator failed"))?;
    Ok(URL_SAFE_NO_PAD.encode(b))
}

/// RFC 7636 S256 challenge for a verifier.
fn pkce_challenge(verifier: &str) -> String {
    use sha2::Digest;
    URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()))
}

fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn query_unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = s
            .get(i + 1..i + 3)
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
                continue;
            }
            (b'+', _) => out.push(b' '),
            (c, _) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Wait for the browser's redirect; returns the authorization code.
fn wait_for_code(listener: &TcpListener, state: &str, deadline: Instant) -> Result<String> {
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::internal(format!("OIDC callback listener: {e}")))?;
    loop {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() > deadline {
                    return Err(Error::new(
                        ErrorKind::Timeout,
                        "timed out after 5 minutes waiting for the browser OIDC sign-in",
                    ));
                }
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            Err(e) => return Err(Error::internal(format!("OIDC callback listener: {e}"))),
        };
        let _ = stream.set_nonblocking(false);
        let mut line = String::new();
        let _ = BufReader::new(&stream).read_line(&mut line);
        let query = line
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.strip_prefix("/auth/callback?"))
            .unwrap_or_default();
        let param = |k: &str| {
            query
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .find(|(n, _)| *n == k)
                .map(|(_, v)| query_unescape(v))
        };
        let (code, got_state) = (param("code"), param("state"));
        let done = code.is_some() && got_state.as_deref() == Some(state);
        let msg = if done {
            "Signed in; you can close this window."
        } else {
            "Sign-in failed; return to the terminal."
        };
        let mut w = &stream;
        let _ = write!(
            w,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{msg}",
            msg.len()
        );
        if let (true, Some(code)) = (done, code) {
            return Ok(code);
        }
        if let Some(e) = param("error") {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!("OIDC sign-in failed: {e}"),
            ));
        }
    }
}

fn browser_flow(issuer: &str, timeout: Duration) -> Result<String> {
    let deadline = Instant::now() + timeout;
    let conf = discover(issuer)?;
    let auth_ep = endpoint(&conf, issuer, "authorization_endpoint")?;
    let token_ep = endpoint(&conf, issuer, "token_endpoint")?;
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Error::internal(format!("OIDC callback listener: {e}")))?;
    let port = listener
        .local_addr()
        .map_err(|e| Error::internal(format!("OIDC callback listener: {e}")))?
        .port();
    let redirect = format!("http://localhost:{port}/auth/callback");
    let (verifier, state, nonce) = (random_token()?, random_token()?, random_token()?);
    let url = format!(
        "{auth_ep}?response_type=code&client_id={CLIENT_ID}&scope=openid%20email&redirect_uri={}&code_challenge={}&code_challenge_method=S256&state={state}&nonce={nonce}",
        query_escape(&redirect),
        pkce_challenge(&verifier)
    );
    eprintln!("Opening a browser for the OIDC sign-in; if none opens, visit:\n{url}");
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    if let Err(e) = std::process::Command::new(opener)
        .arg(&url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        tracing::debug!("cannot start {opener}: {e}");
    }
    let code = wait_for_code(&listener, &state, deadline)?;
    let (_, v) = http::post_form(
        "OIDC token request",
        &token_ep,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &redirect),
            ("client_id", CLIENT_ID),
            ("code_verifier", &verifier),
        ],
        &[200],
    )?;
    v["id_token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .ok_or_else(|| Error::new(ErrorKind::Unavailable, "OIDC answer has no id_token"))
}

fn device_flow(issuer: &str, timeout: Duration) -> Result<String> {
    let deadline = Instant::now() + timeout;
    let conf = discover(issuer)?;
    let (device_ep, token_ep) = (
        endpoint(&conf, issuer, "device_authorization_endpoint")?,
        endpoint(&conf, issuer, "token_endpoint")?,
    );
    let (_, start) = http::post_form(
        "OIDC device authorization",
        &device_ep,
        &[("client_id", CLIENT_ID), ("scope", "openid email")],
        &[200],
    )?;
    let field = |k: &str| start[k].as_str().unwrap_or_default().to_string();
    let device_code = field("device_code");
    let uri = start["verification_uri_complete"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| field("verification_uri"));
    eprintln!(
        "To sign the bundle, open {uri} and enter the code {}",
        field("user_code")
    );
    let mut interval = Duration::from_secs(start["interval"].as_u64().unwrap_or(5).max(1));
    loop {
        if Instant::now() + interval > deadline {
            return Err(Error::new(
                ErrorKind::Timeout,
                "timed out after 5 minutes waiting for OIDC device authorization",
            ));
        }
        std::thread::sleep(interval);
        let (status, v) = http::post_form(
            "OIDC token request",
            &token_ep,
            &[
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("device_code", &device_code),
                ("client_id", CLIENT_ID),
            ],
            &[200, 400],
        )?;
        if status == 200 {
            return v["id_token"]
                .as_str()
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .ok_or_else(|| Error::new(ErrorKind::Unavailable, "OIDC answer has no id_token"));
        }
        match v["error"].as_str() {
            Some("authorization_pending") => {}
            Some("slow_down") => interval += Duration::from_secs(5),
            other => {
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "OIDC device authorization failed: {}",
                        other.unwrap_or("unknown error")
                    ),
                ));
            }
        }
    }
}

/// The token's claims, unverified: Fulcio verifies the token; we only need
/// the subject for the proof of possession and for logs.
pub(crate) fn claims(token: &str) -> Result<Value> {
    let part = token
        .split('.')
        .nth(1)
        .ok_or_else(|| Error::invalid("OIDC identity token is not a JWT"))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| Error::invalid("OIDC identity token is not a JWT"))?;
    serde_json::from_slice(&bytes).map_err(|_| Error::invalid("OIDC identity token is not a JWT"))
}

/// The identity Fulcio will certify: email when present, else subject.
pub(crate) fn subject(claims: &Value) -> Result<String> {
    claims["email"]
        .as_str()
        .or(claims["sub"].as_str())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .ok_or_else(|| Error::invalid("OIDC identity token has no email or sub claim"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_token_wins_and_claims_are_read() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"sub":"abc","email":"me@example.com"}"#);
        let tok = format!("h.{payload}.s");
        let got = resolve(&Request {
            identity_token: Some(IdentityToken(format!(" {tok} "))),
            github_actions: Some(("http://127.0.0.1:1".into(), IdentityToken("b".into()))),
            ..Request::default()
        })
        .unwrap();
        assert_eq!(got, tok);
        assert!(!format!("{:?}", IdentityToken(tok.clone())).contains(&tok));
        assert_eq!(subject(&claims(&tok).unwrap()).unwrap(), "me@example.com");
        assert!(claims("nope").is_err());
        assert!(subject(&serde_json::json!({})).is_err());
    }

    #[test]
    fn pkce_and_query_encoding() {
        // RFC 7636 appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let r = "http://localhost:1/auth/callback";
        assert_eq!(query_unescape(&query_escape(r)), r);
        assert_eq!(query_unescape("a%2Fb+c%zz"), "a/b c%zz");
    }

    #[test]
    fn browser_callback_yields_the_code_for_the_right_state() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let client = std::thread::spawn(move || {
            for path in [
                "/auth/callback?code=x&state=wrong",
                "/auth/callback?code=c%2D1&state=s1",
            ] {
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
                let mut answer = String::new();
                std::io::Read::read_to_string(&mut s, &mut answer).unwrap();
            }
        });
        let code = wait_for_code(&l, "s1", Instant::now() + Duration::from_secs(20)).unwrap();
        assert_eq!(code, "c-1");
        client.join().unwrap();
        let e = wait_for_code(&l, "s1", Instant::now()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout);
    }
}
