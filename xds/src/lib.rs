//! meshkeeper's xDS serving: a proxy's compiled configuration as versioned
//! resources (`resources`), the state-of-the-world conversation with one
//! proxy as plain logic (`protocol`, and `delta` for incremental xDS), and the ADS gRPC service that runs it
//! for every connected proxy (`server`).

pub mod delta;
pub mod protocol;
pub mod resources;
pub mod server;

pub use protocol::{Conversation, Outcome};
pub use resources::Resources;
pub use server::{Ads, ConfigSource, Report};
