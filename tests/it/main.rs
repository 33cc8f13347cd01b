//! The integration tests, in one binary so that the harness compiles once. Every test starts
//! the real `parley` binary (and, for a cluster, a real `redis-server`) and talks to it over
//! real sockets; the storage suite runs against the real backends.
//!
//! - `contract`: the client contract of docs/protocol.md; `scripts/test` runs it a second
//!   time against 3 nodes (`PARLEY_TEST_NODES=3`).
//! - `cluster`: faults under a cross-node load (kill -9, leave, Redis restart, join).
//! - `cluster_ha`: the same load over a Redis Cluster (a shard's primary killed) and behind
//!   Sentinel (the primary killed, a replica promoted).
//! - `durability`: acks survive kill -9; SIGTERM closes with 1012; migrations.
//! - `storage`: the storage contract, every `Store` method, on each backend.
//! - `blobs`: the blob store contract on each backend (local disk, S3 against moto).
//! - `uploads`: resumable uploads (tus, also with the real client tuspy), the upload sweep, quotas.
//! - `push`: each push provider against a local fake of its service (HTTPS, a test CA).

mod blobs;
mod cluster;
mod cluster_ha;
mod common;
mod contract;
mod durability;
mod hardening;
mod layers;
mod push;
mod storage;
mod uploads;
