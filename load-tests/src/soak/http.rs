//! The soak's HTTP calls. They block (callers run them on tokio's blocking pool) and never
//! panic: over a long run a failed call is an error to count, not the end of the generator.
//! A failure is `Err("http_<status>")` or `Err("transport")`.

use serde_json::{json, Value};

type Result<T> = std::result::Result<T, String>;

fn status<B>(
    r: std::result::Result<ureq::http::Response<B>, ureq::Error>,
) -> Result<ureq::http::Response<B>> {
    match r {
        Ok(resp) if resp.status().is_success() => Ok(resp),
        Ok(resp) => Err(format!("http_{}", resp.status().as_u16())),
        Err(_) => Err("transport".into()),
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The bytes of upload `k`: at most 1000 distinct contents, so identical uploads share blobs.
pub fn content(k: u64) -> Vec<u8> {
    let size = 256 + (k % 32) as usize * 256;
    let line = format!("parley soak file {k}\n");
    line.repeat(size / line.len() + 1).into_bytes()[..size].to_vec()
}

/// Uploads `content(k)`; returns its file id, once the size the server stored is checked.
pub fn upload(agent: &ureq::Agent, base: &str, token: &str, k: u64) -> Result<String> {
    let body = content(k);
    let mut resp = status(
        agent
            .post(format!("{base}/v1/files"))
            .header("Authorization", &bearer(token))
            .header("Content-Type", "text/plain")
            .send(&body[..]),
    )?;
    let v: Value = resp.body_mut().read_json().map_err(|_| "bad_body")?;
    match (v["file_id"].as_str(), v["size"].as_u64()) {
        (Some(id), Some(size)) if size == body.len() as u64 => Ok(id.to_string()),
        (Some(_), Some(_)) => Err("size_mismatch".into()),
        _ => Err("bad_body".into()),
    }
}

/// Downloads a file and checks its length.
pub fn download(
    agent: &ureq::Agent,
    base: &str,
    token: &str,
    file_id: &str,
    size: u64,
) -> Result<()> {
    let mut resp = status(
        agent
            .get(format!("{base}/v1/files/{file_id}"))
            .header("Authorization", &bearer(token))
            .call(),
    )?;
    let bytes = resp.body_mut().read_to_vec().map_err(|_| "transport")?;
    if bytes.len() as u64 != size {
        return Err("size_mismatch".into());
    }
    Ok(())
}

/// An admin adds `user_id` to a group.
pub fn add_member(
    agent: &ureq::Agent,
    base: &str,
    admin: &str,
    conv: &str,
    user_id: &str,
) -> Result<()> {
    status(
        agent
            .post(format!("{base}/v1/conversations/{conv}/members"))
            .header("Authorization", &bearer(admin))
            .send_json(json!({ "user_ids": [user_id] })),
    )
    .map(|_| ())
}

/// `user_id` leaves a group; returns the group's last seq right after, read as `reader`:
/// anything above it was committed after the leave and must never reach the one who left.
pub fn leave(
    agent: &ureq::Agent,
    base: &str,
    token: &str,
    reader: &str,
    conv: &str,
    user_id: &str,
) -> Result<u64> {
    status(
        agent
            .delete(format!("{base}/v1/conversations/{conv}/members/{user_id}"))
            .header("Authorization", &bearer(token))
            .call(),
    )?;
    let mut resp = status(
        agent
            .get(format!("{base}/v1/conversations/{conv}"))
            .header("Authorization", &bearer(reader))
            .call(),
    )?;
    let v: Value = resp.body_mut().read_json().map_err(|_| "bad_body")?;
    v["last_seq"].as_u64().ok_or_else(|| "bad_body".into())
}

/// Up to `limit` stored messages after `after`, ascending.
pub fn messages(
    agent: &ureq::Agent,
    base: &str,
    token: &str,
    conv: &str,
    after: u64,
    limit: u32,
) -> Result<Vec<Value>> {
    let mut resp = status(
        agent
            .get(format!(
                "{base}/v1/conversations/{conv}/messages?after_seq={after}&limit={limit}"
            ))
            .header("Authorization", &bearer(token))
            .call(),
    )?;
    let mut v: Value = resp.body_mut().read_json().map_err(|_| "bad_body")?;
    match v["messages"].take() {
        Value::Array(a) => Ok(a),
        _ => Err("bad_body".into()),
    }
}

pub fn metrics(agent: &ureq::Agent, base: &str) -> Result<String> {
    let mut resp = status(agent.get(format!("{base}/metrics")).call())?;
    resp.body_mut()
        .read_to_string()
        .map_err(|_| "transport".into())
}
