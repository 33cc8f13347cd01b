//! The bridge: leases due jobs from the store's outbox and delivers them.
