//! Building a notification for a job from the store (badge, unread, preview).
