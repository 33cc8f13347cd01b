//! What a block changes in the ephemeral signals, presence and typing (v1.1).
//!
//! Sends across a block are refused by the conversation actor's cached pair (a rule on the
//! write path); presence and typing are never stored, so they read the blocks when they are
//! sent. Who is "across a block" from a user is `Store::across_block`; this module is the
//! one place that knows what the two users are told when a block starts or ends, so that neither sees the other's
//! presence after a block and both see it again after the last block between them is lifted.

use super::core::Core;
use crate::domain::broadcast::Devices;
use crate::domain::view;
use crate::storage::StoreResult;

/// `by` blocked (or unblocked) `other`; the block is stored. On a block each is told the
/// other, if online, is offline, so a presence already shown is taken back. On an unblock,
/// when no block is left between them and they share a conversation, each is told the
/// other's presence if the other is online. Errors are logged here: presence is a hint, the
/// block itself stands.
pub async fn block_changed(core: &Core, by: &str, other: &str, blocked: bool) {
    if let Err(e) = tell(core, by, other, blocked).await {
        tracing::debug!(error = %e, "presence after a block change not sent");
    }
}

async fn tell(core: &Core, by: &str, other: &str, blocked: bool) -> StoreResult<()> {
    // Unblocked: only if no block is left either way and they share a conversation.
    if !blocked
        && !core
            .store
            .presence_contacts(by)
            .await?
            .iter()
            .any(|c| c == other)
    {
        return Ok(());
    }
    for (who, to) in [(by, other), (other, by)] {
        let me = [who.to_string()];
        if core.hub.is_online(who) || core.peers.online_elsewhere(&me).await[0] {
            let frame = view::presence(who, !blocked, None);
            core.send_frame(&[to.to_string()], &frame, Devices::All);
        }
    }
    Ok(())
}
