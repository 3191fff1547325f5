//! What one revision of a Mesh installs: the webhook Deployment, Service, RBAC, PodDisruptionBudget and webhook configurations.
