//! ndots-sim: a deterministic simulated Kubernetes cluster that runs the real ndots resolver.
//!
//! - `client`: client resolver libraries modelled to the packet (glibc, ...), each a sans-IO state machine.

pub mod client;
