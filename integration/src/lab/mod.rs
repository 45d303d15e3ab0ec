//! The lab launcher behind `tapmesh-lab`: a small topology file (hosts with
//! their VLANs, addresses and link impairment, the switch's multicast
//! settings and mirrors) becomes a running switch and hosts in network
//! namespaces, torn down when the launcher ends.
//!
//! # Layout
//! - [`file`]: the topology file, checked (with the switch's own validation
//!   for the sections `switch.toml` shares).
//! - [`launch`]: bringing it up as a [`crate::Topology`], what to print,
//!   the environment of a script run against it.
//! - [`mcast`]: a multicast sender and receiver for lab scripts.
pub mod file;
pub mod launch;
pub mod mcast;

pub use file::{Lab, LabHost, load};
