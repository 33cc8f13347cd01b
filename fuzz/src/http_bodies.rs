//! Target `http_bodies`: an HTTP JSON body, as the gateway's `web::Json<T>` extractors and
//! handlers read it.
//!
//! Anyone can `POST /v1/users` and `POST /v1/sessions`; the other bodies come from any
//! signed-in user. The same bytes are tried as each body type (one input reaches all five
//! decoders, so the corpus is shared). Checked for any input:
//! - each decoder returns; a decoded body prints as JSON that decodes to the same body;
//! - the rules each handler applies (`accounts.rs`, `conversations.rs`, `actors::create`)
//!   return, give the same verdict on the re-decoded body, and refuse with `bad_request` or
//!   `too_large` only;
//! - an accepted username is what the contract says (1-64 of `a-zA-Z0-9_.-`), since it ends
//!   up in URLs and logs.

use crate::{default_limits, Outcome};
use parley::domain::rules;
use parley::error::{ApiError, ApiResult};
use parley_protocol::{
    AddMembers, ConversationKind, CreateConversation, CreateSession, CreateUser, ErrorCode,
    PushTarget,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub fn run(data: &[u8]) -> Outcome {
    let decoded = [
        body::<CreateUser>(data, create_user),
        body::<CreateSession>(data, create_session),
        body::<CreateConversation>(data, create_conversation),
        body::<AddMembers>(data, add_members),
        body::<PushTarget>(data, push_target),
    ];
    if decoded.contains(&true) {
        Outcome::Accepted
    } else {
        Outcome::Refused
    }
}

/// Decodes `data` as a `T` the way actix-web's `Json<T>` does (`serde_json::from_slice`),
/// checks the round trip and runs `rules` on both copies. Returns whether it decoded.
fn body<T: Serialize + DeserializeOwned>(data: &[u8], rules: fn(&T) -> ApiResult<()>) -> bool {
    let Ok(b) = serde_json::from_slice::<T>(data) else {
        return false;
    };
    let printed = serde_json::to_vec(&b).expect("a decoded body prints");
    let again: T = serde_json::from_slice(&printed).unwrap_or_else(|e| {
        panic!(
            "a printed {} does not decode: {e}\n{}",
            std::any::type_name::<T>(),
            String::from_utf8_lossy(&printed)
        )
    });
    assert_eq!(
        serde_json::to_value(&again).unwrap(),
        serde_json::to_value(&b).unwrap(),
        "the round trip changed a {}",
        std::any::type_name::<T>()
    );
    let verdict = rules(&b);
    assert_eq!(
        verdict,
        rules(&again),
        "the rules judge the round trip differently"
    );
    if let Err(e) = verdict {
        assert!(
            matches!(e.code, ErrorCode::BadRequest | ErrorCode::TooLarge),
            "a body rule refused with {e}"
        );
    }
    true
}

/// `POST /v1/users`.
fn create_user(b: &CreateUser) -> ApiResult<()> {
    let name = rules::username(&b.username);
    if name.is_ok() {
        assert!(
            (1..=64).contains(&b.username.len())
                && b.username
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(&c)),
            "username {:?} accepted",
            b.username
        );
    }
    name?;
    rules::password(&b.password)?;
    rules::short_text("display_name", b.display_name.as_deref())
}

/// `POST /v1/sessions` (the username is only looked up, the password only verified).
fn create_session(b: &CreateSession) -> ApiResult<()> {
    rules::short_text("device_name", b.device_name.as_deref())
}

/// `POST /v1/conversations`, as `gateway::conversations::create` and `actors::create::group`
/// check it (the caller is a fixed user id).
fn create_conversation(b: &CreateConversation) -> ApiResult<()> {
    const CALLER: &str = "caller";
    match b.kind {
        ConversationKind::Direct => {
            let others = b.members.iter().filter(|m| *m != CALLER).count();
            if others != 1 {
                return Err(ApiError::bad_request("one other member"));
            }
            Ok(())
        }
        ConversationKind::Group => {
            rules::short_text("title", b.title.as_deref())?;
            let mut all = vec![CALLER];
            for m in &b.members {
                if !all.contains(&m.as_str()) {
                    all.push(m);
                }
            }
            rules::group_size(default_limits(), all.len())
        }
    }
}

/// `POST /v1/conversations/{id}/members`: refused when empty; the rest is the actor's
/// `rules::add_members` on state it owns.
fn add_members(b: &AddMembers) -> ApiResult<()> {
    if b.user_ids.is_empty() {
        return Err(ApiError::bad_request("user_ids is empty"));
    }
    Ok(())
}

/// `PUT /v1/devices/{id}/push`.
fn push_target(b: &PushTarget) -> ApiResult<()> {
    rules::push_target(b)
}
