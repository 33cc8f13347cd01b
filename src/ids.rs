//! Clocks and identifiers, in one place so that every layer (storage included) stamps and
//! names things the same way without depending on the layers above it.

/// Milliseconds since the Unix epoch, UTC: the unit of every timestamp on the wire.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A new opaque id: a UUIDv7 in 32 hex digits, so ids sort by creation time.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}
