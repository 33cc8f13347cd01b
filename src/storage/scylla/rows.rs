//! The rows the ScyllaDB store reads, one struct per SELECT shape, decoded by name.
//!
//! `row!` declares each struct together with its column list, so that a test can check every
//! SELECT of the catalogue against the struct it is decoded into (names, order, and CQL types
//! against `schema/scylla/`). Every field tolerates NULL (a column never written reads as its
//! default), as ScyllaDB returns NULL for any regular column of a row that lacks it.

use super::super::{
    DeviceRow, EventKind, FileRow, ImageMeta, MemberRow, MessageEvent, PushJob, PushKind,
    PushTargetRow, Role, StoredMessage, Undeliverable, UserRow,
};

use ::scylla::DeserializeRow;
use parley_protocol::ConversationKind;

macro_rules! row {
    ($(#[$doc:meta])* $name:ident { $($field:ident : $ty:ty),* $(,)? }) => {
        $(#[$doc])*
        #[derive(DeserializeRow, Debug)]
        #[scylla(crate = ::scylla)]
        pub(super) struct $name {
            $( #[scylla(default_when_null)] pub $field: $ty, )*
        }
        impl $name {
            /// The columns a SELECT into this row names, in order, with their Rust types.
            #[cfg(test)]
            pub const COLUMNS: &'static [(&'static str, &'static str)] =
                &[$((stringify!($field), stringify!($ty))),*];
        }
    };
}

row!(
    /// `MESSAGES_ASC`, `MESSAGES_DESC`, `MESSAGE`.
    MessageCols {
        conversation_id: String,
        seq: i64,
        message_id: String,
        sender_id: String,
        sender_device_id: String,
        client_id: String,
        ts: i64,
        text: Option<String>,
        attachments: Option<String>,
        meta: Option<String>,
        deleted: bool,
        deleted_by: Option<String>,
        edited_at: Option<i64>,
        reply_to: Option<i64>,
    }
);

impl From<MessageCols> for StoredMessage {
    fn from(r: MessageCols) -> Self {
        StoredMessage {
            conversation_id: r.conversation_id,
            seq: r.seq as u64,
            message_id: r.message_id,
            sender_id: r.sender_id,
            sender_device_id: r.sender_device_id,
            client_id: r.client_id,
            ts: r.ts,
            text: r.text,
            attachments: r
                .attachments
                .map(|a| crate::storage::parse_attachments(&a))
                .unwrap_or_default(),
            meta: r.meta,
            deleted: r.deleted,
            deleted_by: r.deleted_by,
            edited_at: r.edited_at,
            reply_to: r.reply_to.map(|s| s as u64),
        }
    }
}

row!(
    /// `EVENTS_SINCE`.
    EventCols {
        conversation_id: String,
        event_no: i64,
        seq: i64,
        kind: Option<String>,
        scope: Option<String>,
        data: Option<String>,
        by_user: String,
        for_user: Option<String>,
        ts: i64,
    }
);

impl From<EventCols> for MessageEvent {
    fn from(r: EventCols) -> Self {
        MessageEvent {
            conversation_id: r.conversation_id,
            event_no: r.event_no as u64,
            seq: r.seq as u64,
            kind: EventKind::parse(r.kind.as_deref(), r.scope.as_deref(), r.data.as_deref()),
            by_user: r.by_user,
            for_user: r.for_user,
            ts: r.ts,
        }
    }
}

row!(
    /// `VERSIONS`.
    VersionCols {
        text: Option<String>,
        meta: Option<String>,
        replaced_at: i64,
    }
);

row!(
    /// `REACTIONS_BETWEEN`.
    ReactionCols {
        seq: i64,
        emoji: String,
        user_id: String,
        ts: i64,
    }
);

row!(
    /// `MEMBERS`, `MEMBER`.
    MemberCols {
        user_id: String,
        role: String,
        joined_seq: i64,
        delivered_seq: i64,
        read_seq: i64,
    }
);

impl From<MemberCols> for MemberRow {
    fn from(r: MemberCols) -> Self {
        MemberRow {
            user_id: r.user_id,
            role: Role::parse(&r.role),
            joined_seq: r.joined_seq as u64,
            delivered_seq: r.delivered_seq as u64,
            read_seq: r.read_seq as u64,
        }
    }
}

row!(
    /// `USER_BY_ID`.
    UserCols {
        user_id: String,
        username: String,
        display_name: Option<String>,
        password_hash: String,
        created_at: i64,
    }
);

impl From<UserCols> for UserRow {
    fn from(r: UserCols) -> Self {
        UserRow {
            user_id: r.user_id,
            username: r.username,
            display_name: r.display_name,
            password_hash: r.password_hash,
            created_at: r.created_at,
        }
    }
}

row!(
    /// `DEVICE_BY_ID`.
    DeviceCols {
        device_id: String,
        user_id: String,
        name: Option<String>,
        created_at: i64,
        refresh_hash: Option<String>,
        last_seen_at: Option<i64>,
    }
);

impl DeviceCols {
    pub(super) fn with_push(self, push: Option<PushTargetRow>) -> DeviceRow {
        DeviceRow {
            device_id: self.device_id,
            user_id: self.user_id,
            name: self.name,
            created_at: self.created_at,
            push,
            refresh_hash: self.refresh_hash,
            last_seen_at: self.last_seen_at,
        }
    }
}

row!(
    /// `UNDELIVERABLE_OF_USER`.
    UndeliverableCols {
        user_id: String,
        conversation_id: String,
        device_id: String,
        recipient_id: String,
        from_seq: i64,
        to_seq: i64,
        lost: i64,
        ts: i64,
    }
);

impl From<UndeliverableCols> for Undeliverable {
    fn from(r: UndeliverableCols) -> Self {
        Undeliverable {
            user_id: r.user_id,
            conversation_id: r.conversation_id,
            device_id: r.device_id,
            recipient_id: r.recipient_id,
            from_seq: r.from_seq.max(0) as u64,
            to_seq: r.to_seq.max(0) as u64,
            lost: r.lost.max(0) as u64,
            ts: r.ts,
        }
    }
}

row!(
    /// `PUSH_TARGET`.
    PushTargetCols {
        provider: String,
        token: Option<String>,
        endpoint: Option<String>,
        p256dh: Option<String>,
        auth: Option<String>,
        payload: Option<String>,
        registered_at: i64,
        disabled_at: Option<i64>,
        disabled_reason: Option<String>,
    }
);

impl From<PushTargetCols> for PushTargetRow {
    fn from(r: PushTargetCols) -> Self {
        PushTargetRow {
            provider: r.provider,
            token: r.token,
            endpoint: r.endpoint,
            p256dh: r.p256dh,
            auth: r.auth,
            payload: r.payload,
            registered_at: r.registered_at,
            disabled: r
                .disabled_at
                .map(|at| (at, r.disabled_reason.unwrap_or_default())),
        }
    }
}

row!(
    /// `PUSH_JOB`, `PUSH_JOBS_OF_SHARD`.
    PushJobCols {
        device_id: String,
        conversation_id: String,
        user_id: String,
        kind: String,
        seq: i64,
        version: i64,
        due_at: i64,
        created_at: i64,
        attempts: i32,
        lease_until: i64,
    }
);

impl PushJobCols {
    pub(super) fn job(&self) -> PushJob {
        PushJob {
            device_id: self.device_id.clone(),
            conversation_id: self.conversation_id.clone(),
            user_id: self.user_id.clone(),
            kind: PushKind::parse(&self.kind),
            seq: self.seq as u64,
            version: self.version as u64,
            created_at: self.created_at,
            attempts: self.attempts.max(0) as u32,
        }
    }
}

row!(
    /// `CONVERSATION_BY_ID`.
    ConversationCols {
        conversation_id: String,
        kind: String,
        title: Option<String>,
        created_by: String,
        created_at: i64,
        avatar: Option<String>,
    }
);

impl ConversationCols {
    pub(super) fn kind(&self) -> ConversationKind {
        if self.kind == "direct" {
            ConversationKind::Direct
        } else {
            ConversationKind::Group
        }
    }
}

row!(
    /// `FILE_BY_ID`.
    FileCols {
        file_id: String,
        uploader_id: String,
        size: i64,
        content_type: String,
        sha256: String,
        created_at: i64,
        width: Option<i32>,
        height: Option<i32>,
        thumb_sha256: Option<String>,
        thumb_content_type: Option<String>,
        placeholder: Option<String>,
    }
);

impl From<FileCols> for FileRow {
    fn from(r: FileCols) -> Self {
        FileRow {
            file_id: r.file_id,
            uploader_id: r.uploader_id,
            size: r.size as u64,
            content_type: r.content_type,
            sha256: r.sha256,
            created_at: r.created_at,
            image: match (
                r.width,
                r.height,
                r.thumb_sha256,
                r.thumb_content_type,
                r.placeholder,
            ) {
                (
                    Some(w),
                    Some(h),
                    Some(thumb_sha256),
                    Some(thumb_content_type),
                    Some(placeholder),
                ) => Some(ImageMeta {
                    width: w as u32,
                    height: h as u32,
                    thumb_sha256,
                    thumb_content_type,
                    placeholder,
                }),
                _ => None,
            },
        }
    }
}

row!(
    /// `UPLOAD_BY_ID` (v1.1).
    UploadCols {
        upload_id: String,
        user_id: String,
        device_id: String,
        length: i64,
        content_type: String,
        metadata: String,
        created_at: i64,
        expires_at: i64,
        file_id: Option<String>,
    }
);

impl From<UploadCols> for crate::storage::UploadRow {
    fn from(r: UploadCols) -> Self {
        crate::storage::UploadRow {
            upload_id: r.upload_id,
            user_id: r.user_id,
            device_id: r.device_id,
            length: r.length.max(0) as u64,
            content_type: r.content_type,
            metadata: r.metadata,
            created_at: r.created_at,
            expires_at: r.expires_at,
            file_id: r.file_id,
        }
    }
}

row!(
    /// `IDEMPOTENCY`.
    IdempotencyCols {
        conversation_id: String,
        seq: i64,
        message_id: String,
        ts: i64,
        payload_hash: Option<String>,
    }

);

row!(
    /// `DEVICE_CURSORS`.
    DeviceCursorCols {
        conversation_id: String,
        delivered_seq: i64,
        retraction_cursor: i64,
    }
);

#[cfg(test)]
mod tests {
    use super::super::cql::{self, CqlType, Stmt};
    use super::*;

    /// Every SELECT decoded into a struct, with that struct's columns.
    const DECODED: &[(&Stmt, &[(&str, &str)])] = &[
        (&cql::MESSAGES_ASC, MessageCols::COLUMNS),
        (&cql::MESSAGES_DESC, MessageCols::COLUMNS),
        (&cql::MESSAGE, MessageCols::COLUMNS),
        (&cql::EVENTS_SINCE, EventCols::COLUMNS),
        (&cql::VERSIONS, VersionCols::COLUMNS),
        (&cql::REACTIONS_BETWEEN, ReactionCols::COLUMNS),
        (&cql::MEMBERS, MemberCols::COLUMNS),
        (&cql::MEMBER, MemberCols::COLUMNS),
        (&cql::USER_BY_ID, UserCols::COLUMNS),
        (&cql::DEVICE_BY_ID, DeviceCols::COLUMNS),
        (&cql::PUSH_TARGET, PushTargetCols::COLUMNS),
        (&cql::PUSH_JOB, PushJobCols::COLUMNS),
        (&cql::PUSH_JOBS_OF_SHARD, PushJobCols::COLUMNS),
        (&cql::CONVERSATION_BY_ID, ConversationCols::COLUMNS),
        (&cql::FILE_BY_ID, FileCols::COLUMNS),
        (&cql::UPLOAD_BY_ID, UploadCols::COLUMNS),
        (&cql::IDEMPOTENCY, IdempotencyCols::COLUMNS),
        (&cql::DEVICE_CURSORS, DeviceCursorCols::COLUMNS),
        (&cql::UNDELIVERABLE_OF_USER, UndeliverableCols::COLUMNS),
    ];

    fn rust_type(t: &str) -> CqlType {
        match t.trim_start_matches("Option<").trim_end_matches('>') {
            "String" => CqlType::Text,
            "i64" => CqlType::BigInt,
            "i32" => CqlType::Int,
            "bool" => CqlType::Boolean,
            other => panic!("no CQL type for {other}"),
        }
    }

    #[test]
    fn every_decoded_select_matches_its_row_struct() {
        for (stmt, cols) in DECODED {
            let select = stmt.cql.strip_prefix("SELECT ").unwrap();
            let (list, rest) = select.split_once(" FROM ").unwrap();
            let table = rest.split_whitespace().next().unwrap();
            let names: Vec<&str> = list.split(',').map(str::trim).collect();
            let want: Vec<&str> = cols.iter().map(|c| c.0).collect();
            assert_eq!(
                names, want,
                "{}: columns differ from its row struct",
                stmt.name
            );
            for (col, ty) in cols.iter() {
                assert_eq!(
                    cql::column_type(table, col),
                    Some(rust_type(ty)),
                    "{}: {table}.{col} is not a {ty} in the schema",
                    stmt.name
                );
            }
        }
    }
}
