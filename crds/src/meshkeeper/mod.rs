//! meshkeeper's own `meshkeeper.io` API.

pub mod mesh;
pub mod mesh_revision;
