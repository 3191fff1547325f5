//! The reconcilers: read the cluster, call the pure builders, apply the result.
