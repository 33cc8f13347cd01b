//! Faults and hostile inputs a node must survive (issue 10): concurrent starts, a restart
//! right after a crash, a closed log pipe, descriptor exhaustion, a full disk, slow clients.
//! The stalled bus is in `cluster`, beside the other cluster faults.

mod descriptors;
mod full_disk;
mod slow_clients;
mod startup;
