//! ndots-sim: a deterministic simulated Kubernetes cluster that runs the real ndots resolver.
//!
//! - `client`: client resolver libraries modelled to the packet (glibc, ...), each a sans-IO state machine.
//! - `spec`: what a simulated cluster is made of.
//! - `engine`: the cluster as a discrete-event simulation (nodes, kernels, pods, CoreDNS replicas).
//! - `run`: turmoil hosts, clock and links around the engine, and the cloud resolvers.
//! - `report`: what a run measured.

pub mod cause;
pub mod cli;
pub mod client;
pub mod dashboard;
pub mod engine;
pub mod explain;
pub mod file;
pub mod html;
pub mod import;
pub mod lint;
pub mod report;
pub mod run;
pub mod spec;

pub use engine::SimError;
pub use report::Report;
pub use run::{run, run_with_progress, seed_or};
pub use spec::ClusterSpec;
