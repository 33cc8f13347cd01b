//! Connecting: authentication (by the upgrade's header or a first `auth` frame), the `ready`
//! frame, registration in the `Hub`, and presence on the way in and out.

use super::{Ident, SessionActor};
use crate::actors::hub::SessionHandle;
use crate::auth::Claims;
use crate::domain::broadcast::Devices;
use crate::domain::reads::Position;
use crate::domain::view;
use crate::storage::StoreError;
use actix::prelude::*;
use parley_protocol::{close, ConversationCursor};
use std::sync::Arc;
use std::time::Duration;

/// What the upgrade request's Authorization header said.
pub enum PreAuth {
    /// No header: the first frame must be `auth`, within `auth.auth_timeout_ms`.
    None,
    Valid(Claims),
    /// A header with a bad or expired token: close with 4401.
    Invalid,
}

impl SessionActor {
    pub(super) fn start_auth(&mut self, ctx: &mut Context<Self>) {
        match std::mem::replace(&mut self.pre_auth, PreAuth::None) {
            PreAuth::Valid(claims) => self.authenticate(claims, ctx),
            PreAuth::Invalid => self.close_now(close::BAD_TOKEN, "bad or expired token", ctx),
            PreAuth::None => {
                let deadline = Duration::from_millis(self.core.config.auth.auth_timeout_ms);
                ctx.run_later(deadline, |act, ctx| {
                    if act.ident.is_none() {
                        act.close_now(close::AUTH_TIMEOUT, "no auth frame in time", ctx);
                    }
                });
            }
        }
    }

    /// Checks that the token's device exists, loads its conversations, registers the session
    /// and sends `ready`. The token is verified, so the session leaves the pending-auth count
    /// here, not once `ready` is built: that count bounds sockets that have not proved who they
    /// are, and a reconnect storm of valid tokens waiting on the store must not fill it.
    pub(super) fn authenticate(&mut self, claims: Claims, ctx: &mut Context<Self>) {
        self.permit.authenticated();
        let core = self.core.clone();
        let (user, device) = (claims.sub.clone(), claims.did.clone());
        ctx.wait(
            async move {
                let push = match core.store.device(&device).await? {
                    Some(d) if d.user_id == user => d.push,
                    _ => return Err(StoreError::NotFound),
                };
                Ok((core.store.device_conversations(&device, &user).await?, push))
            }
            .into_actor(self)
            .map(move |res, act, ctx| match res {
                Ok((dcs, push)) => act.ready(claims, dcs, push, ctx),
                Err(StoreError::NotFound) => act.close_now(close::BAD_TOKEN, "unknown device", ctx),
                Err(e) => {
                    tracing::warn!(error = %e, "session setup failed");
                    act.close_now(close::RESTARTING, "temporarily unavailable", ctx);
                }
            }),
        );
    }

    fn ready(
        &mut self,
        claims: Claims,
        dcs: Vec<crate::storage::DeviceConversation>,
        push: Option<crate::storage::PushTargetRow>,
        ctx: &mut Context<Self>,
    ) {
        let ident = Ident {
            user_id: Arc::from(claims.sub.as_str()),
            device_id: Arc::from(claims.did.as_str()),
        };
        let mut cursors = Vec::with_capacity(dcs.len());
        for dc in dcs {
            cursors.push(ConversationCursor {
                conversation_id: dc.conversation_id.clone(),
                last_seq: dc.last_seq,
                delivered_seq: dc.delivered_seq,
                read_seq: dc.read_seq,
            });
            self.convs.insert(
                Arc::from(dc.conversation_id.as_str()),
                Position::from_device(&dc),
            );
        }
        let handle = SessionHandle {
            session_id: self.session_id.clone(),
            device_id: ident.device_id.clone(),
            addr: ctx.address().recipient(),
            missed: self.missed.clone(),
        };
        let first = self.core.hub.register(ident.user_id.clone(), handle);
        if first {
            self.core.peers.user_online(&ident.user_id);
        }
        self.core.metrics.connections.inc();
        let frame = view::ready(
            &claims.sub,
            &claims.did,
            &self.session_id,
            self.core.config.gateway.heartbeat_ms,
            cursors,
            push.as_ref(),
        );
        self.enqueue(frame, ctx);
        self.ident = Some(ident);
        self.presence(first, ctx);
    }

    /// Tells contacts this user came online (if `first`), and tells this device which of its
    /// contacts are online.
    fn presence(&mut self, first: bool, ctx: &mut Context<Self>) {
        let Some(me) = self.ident.as_ref().map(|i| i.user_id.clone()) else {
            return;
        };
        let core = self.core.clone();
        ctx.spawn(
            async move {
                let contacts = core.store.presence_contacts(&me).await?;
                let elsewhere = core.peers.online_elsewhere(&contacts).await;
                Ok::<_, StoreError>((contacts, elsewhere, me))
            }
            .into_actor(self)
            .map(move |res, act, ctx| {
                let (contacts, elsewhere, me) = match res {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::warn!(error = %e, "presence: contacts lookup failed");
                        return;
                    }
                };
                if first {
                    let frame = view::presence(&me, true, None);
                    act.core.send_frame(&contacts, &frame, Devices::All);
                }
                for (c, elsewhere) in contacts.into_iter().zip(elsewhere) {
                    if elsewhere || act.core.hub.is_online(&c) {
                        act.enqueue(view::presence(&c, true, None), ctx);
                    }
                }
            }),
        );
    }

    /// The session ended: out of the hub, and if it was the user's last session anywhere, an
    /// offline presence to the contacts.
    pub(super) fn disconnected(&mut self) {
        let Some(ident) = self.ident.take() else {
            return;
        };
        self.core.metrics.connections.dec();
        // v1.1: the device list's "last seen" (a revoked device's row is gone: no-op).
        let at = crate::ids::now_ms();
        self.core.last_seen.record(ident.device_id.clone(), at);
        if !self.core.hub.unregister(&ident.user_id, &self.session_id) {
            return;
        }
        self.core.peers.user_offline(&ident.user_id);
        if self.core.is_shutting_down() {
            return;
        }
        let core = self.core.clone();
        actix::spawn(async move {
            let contacts = match core.store.presence_contacts(&ident.user_id).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(error = %e, "presence: contacts lookup failed");
                    return;
                }
            };
            let me = [ident.user_id.to_string()];
            if core.hub.is_online(&ident.user_id) || core.peers.online_elsewhere(&me).await[0] {
                return; // came back meanwhile, or still online on another node
            }
            let last_seen = core
                .hub
                .last_seen(&ident.user_id)
                .unwrap_or_else(crate::ids::now_ms);
            let frame = view::presence(&ident.user_id, false, Some(last_seen));
            core.send_frame(&contacts, &frame, Devices::All);
        });
    }
}
