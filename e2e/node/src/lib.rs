//! The test node's parts, one concern a module: the Node and its heartbeats
//! (`node`), pod networking (`network`), the per-pod runtime (`pod`,
//! `container`, `probe`, `status`), what containers see (`env`, `volumes`,
//! `images`) and the launcher that becomes a container (`launch`).

pub mod container;
pub mod env;
pub mod images;
pub mod launch;
pub mod network;
pub mod node;
pub mod pod;
pub mod probe;
pub mod status;
pub mod volumes;
