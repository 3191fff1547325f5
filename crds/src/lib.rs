//! meshkeeper's API types.
//!
//! - [`networking`]: Istio's `networking.istio.io` kinds, field for field, so
//!   Istio YAML applies unchanged and round-trips without loss.
//! - [`meshkeeper`]: meshkeeper's own `meshkeeper.io` kinds (Mesh, MeshRevision).
//! - [`parse`]: parsing with errors that name the field path.
//! - [`crd`]: the CustomResourceDefinitions generated from these types.

pub mod crd;
pub mod meshkeeper;
pub mod networking;
pub mod parse;
pub mod schema;
