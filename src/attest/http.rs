//! JSON over HTTP for the Sigstore services and OIDC endpoints. Every
//! transport or status failure is UNAVAILABLE (exit 6); bodies of error
//! answers are cut to 4 KiB so a misbehaving server cannot flood the message.

use std::time::Duration;

use serde_json::Value;

use crate::error::{Error, ErrorKind, Result};

const TIMEOUT: Duration = Duration::from_secs(30);
const MAX_BODY: u64 = 10 * 1024 * 1024;
const MAX_ERROR_BODY: usize = 4096;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        .http_status_as_error(false)
        .build()
        .into()
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Unavailable, format!("{what}: {e}"))
}

fn finish(what: &str, resp: ureq::http::Response<ureq::Body>, ok: &[u16]) -> Result<(u16, Value)> {
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .into_with_config()
        .limit(MAX_BODY)
        .read_to_vec()
        .map_err(|e| unavailable(what, e))?;
    if !ok.contains(&status) {
        let text =
            String::from_utf8_lossy(&body[..body.len().min(MAX_ERROR_BODY)]).replace('\n', " ");
        return Err(unavailable(what, format!("HTTP {status}: {}", text.trim())));
    }
    let v = serde_json::from_slice(&body)
        .map_err(|e| unavailable(what, format!("invalid JSON answer: {e}")))?;
    Ok((status, v))
}

/// POST a JSON body; `ok` lists the statuses that count as success.
pub(crate) fn post_json(
    what: &str,
    url: &str,
    body: &Value,
    bearer: Option<&str>,
    ok: &[u16],
) -> Result<(u16, Value)> {
    let mut req = agent().post(url).header("Accept", "application/json");
    if let Some(t) = bearer {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let bytes = serde_json::to_vec(body).map_err(|e| unavailable(what, e))?;
    let resp = req
        .header("Content-Type", "application/json")
        .send(&bytes[..])
        .map_err(|e| unavailable(what, e))?;
    finish(what, resp, ok)
}

/// POST a form body (OAuth endpoints).
pub(crate) fn post_form(
    what: &str,
    url: &str,
    form: &[(&str, &str)],
    ok: &[u16],
) -> Result<(u16, Value)> {
    let resp = agent()
        .post(url)
        .header("Accept", "application/json")
        .send_form(form.iter().copied())
        .map_err(|e| unavailable(what, e))?;
    finish(what, resp, ok)
}

pub(crate) fn get_json(what: &str, url: &str, bearer: Option<&str>) -> Result<Value> {
    let mut req = agent().get(url).header("Accept", "application/json");
    if let Some(t) = bearer {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let resp = req.call().map_err(|e| unavailable(what, e))?;
    finish(what, resp, &[200]).map(|(_, v)| v)
}
