//! meshkeeper's operator. Pure logic (what objects a Mesh needs, the proxy
//! configuration of a namespace, certificates, revision bookkeeping) lives in
//! modules that take plain values; `controller` is the thin shell that reads
//! the cluster and applies what they decide.

pub mod certs;
pub mod controller;
pub mod install;
pub mod names;
pub mod plan;
pub mod proxy;
pub mod revisions;
