//! Per-namespace proxy configuration: the Envoy bootstrap, initial listeners and clusters, and the effective proxy settings.
