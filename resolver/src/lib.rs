//! ndots: a cluster DNS server and node-local cache for Kubernetes.
//!
//! The crate is a sans-IO core (`server::Server` and the modules it uses) plus one driver,
//! `driver`, that runs it on real tokio sockets for the `ndots` binary. The simulator in the `sim`
//! crate drives the very same `Server` on simulated sockets. See ARCHITECTURE.md.

pub mod cache;
pub mod cluster;
pub mod config;
pub mod corefile;
pub mod detect;
pub mod driver;
pub mod flags;
pub mod fuzzing;
pub mod kubernetes;
pub mod metrics;
pub mod nodelocal;
pub mod querylog;
pub mod server;
pub mod synth;
pub mod wire;
pub mod zone;

pub use cluster::ClusterState;
pub use config::Config;
pub use server::{CacheFill, Client, Dest, Handled, Now, Server, Transmit, Transport};
