//! The certificates of the installation, by the Mesh's certificate source:
//! - `SelfSigned`: the operator's CA in Secret `meshkeeper-ca`, one serving
//!   Secret per revision, renewed at two thirds of their life; the CA rotated
//!   with an overlap, following the order in [`crate::certs`];
//! - `Secret`: the user's Secret and CA, read, never written;
//! - `CertManager`: nothing to write; cert-manager injects the caBundle.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::Api;
use kube::{Resource, ResourceExt};
use meshkeeper_crds::meshkeeper::mesh::{CertificateSource, Mesh, MeshConfig};
use meshkeeper_crds::meshkeeper::mesh_revision::MeshRevision;

use super::Context;
use super::apply::Current;
use crate::certs::{self, CaPlan, CaState, RotationProgress, ServingRequest};
use crate::install::Desired;
use crate::names::{self, MANAGED_BY, MANAGED_BY_LABEL, REVISION_LABEL};

/// What the rest of a pass needs from the certificates.
#[derive(Debug, Default)]
pub struct Certificates {
    /// The caBundle for the webhook configurations (`None` with cert-manager).
    pub ca_bundle: Option<Vec<u8>>,
    /// When the pass must run again at the latest (a renewal falls due, or
    /// a rotation waits for webhooks to pick up new certificates).
    pub recheck: Option<Duration>,
    /// Problems to report (e.g. the user's Secret lacks a CA).
    pub problems: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    #[error("reading or writing Secret {name}: {source}")]
    Kube {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("issuing a certificate: {0}")]
    Issue(#[from] certs::IssueError),
    #[error("{0}")]
    Install(#[from] crate::install::InstallError),
}

/// The CA bundle the last pass published in every webhook configuration:
/// step 2 of a rotation is done once it holds the current CA.
#[derive(Default)]
pub struct Published(Mutex<Option<Vec<u8>>>);

impl Published {
    pub fn set(&self, bundle: Option<Vec<u8>>) {
        if let Ok(mut published) = self.0.lock() {
            *published = bundle;
        }
    }

    fn contains(&self, ca: &certs::Cert) -> bool {
        self.0
            .lock()
            .ok()
            .and_then(|p| p.as_ref().map(|bundle| certs::bundle_contains(bundle, ca)))
            .unwrap_or(false)
    }
}

fn source(config: &MeshConfig) -> CertificateSource {
    config
        .webhook
        .as_ref()
        .and_then(|w| w.certificate.as_ref())
        .and_then(|c| c.source)
        .unwrap_or_default()
}

/// Makes the certificates right for `revisions` and says what bundle to
/// publish.
pub async fn ensure(
    ctx: &Context,
    mesh: &Mesh,
    revisions: &[MeshRevision],
) -> Result<Certificates, CertificateError> {
    match source(&mesh.spec.config) {
        CertificateSource::CertManager => Ok(Certificates::default()),
        CertificateSource::Secret => user_secret(ctx, &mesh.spec.config).await,
        CertificateSource::SelfSigned => self_signed(ctx, mesh, revisions).await,
    }
}

async fn user_secret(ctx: &Context, config: &MeshConfig) -> Result<Certificates, CertificateError> {
    let settings = config.webhook.as_ref().and_then(|w| w.certificate.as_ref());
    let name = settings
        .and_then(|c| c.secret_name.clone())
        .unwrap_or_default();
    if let Some(bundle) = settings.and_then(|c| c.ca_bundle.as_ref()) {
        return Ok(Certificates {
            ca_bundle: Some(bundle.clone().into_bytes()),
            ..Certificates::default()
        });
    }
    let secret = get_secret(ctx, &name).await?;
    let ca = secret
        .as_ref()
        .and_then(|s| s.data.as_ref())
        .and_then(|d| d.get(certs::CA_CERT_KEY))
        .map(|b| b.0.clone());
    let mut result = Certificates {
        recheck: Some(Duration::from_secs(30)),
        ..Certificates::default()
    };
    match ca {
        Some(ca) => result.ca_bundle = Some(ca),
        None => result.problems.push(format!(
            "spec.webhook.certificate: Secret {}/{name} has no {} and spec.webhook.certificate.caBundle is not set; the API server cannot trust the webhook",
            ctx.options.namespace,
            certs::CA_CERT_KEY
        )),
    }
    Ok(result)
}

async fn self_signed(
    ctx: &Context,
    mesh: &Mesh,
    revisions: &[MeshRevision],
) -> Result<Certificates, CertificateError> {
    let now = SystemTime::now();
    let mut state = load_or_create_ca(ctx, mesh, now).await?;
    let bundle_published = ctx.published.contains(state.current.cert());
    let serving = serving_secrets(ctx, revisions).await?;
    // Probing the webhooks is only needed to end a rotation.
    let rotating = state.previous.is_some();
    let progress = RotationProgress {
        bundle_published,
        webhooks_serve_current: rotating
            && bundle_published
            && webhooks_serve_current(ctx, &state, revisions, &serving).await,
    };
    match certs::ca_plan(&state, progress, now) {
        CaPlan::Keep => {}
        CaPlan::Rotate => {
            tracing::info!("rotating the mesh CA (two thirds of its lifetime are over)");
            state = state.rotate(now, ctx.options.ca_lifetime)?;
            write_ca(ctx, mesh, &state).await?;
        }
        CaPlan::DropPrevious => {
            tracing::info!(
                "every webhook serves a certificate of the new CA; the previous CA is no longer trusted"
            );
            state = state.drop_previous();
            write_ca(ctx, mesh, &state).await?;
        }
    }
    // Serving certificates move to a new CA only once the API server trusts
    // it (step 3 after step 2), so no admission request meets a certificate
    // its caBundle does not cover.
    let may_reissue_for_new_ca = ctx.published.contains(state.current.cert());
    let mut recheck = Some(ctx.options.resync);
    for revision in revisions {
        let name = revision.name_any();
        let request = ServingRequest::for_webhook(
            &names::webhook_name(&name),
            &ctx.options.namespace,
            webhook_url(&revision.spec.config),
        )?;
        let data = serving.get(&name).and_then(|s| s.data.as_ref());
        match certs::serving_renewal(state.current.cert(), data, &request, now) {
            Some(certs::RenewalReason::IssuerNotCurrent) if !may_reissue_for_new_ca => {
                recheck = Some(Duration::from_secs(1));
            }
            Some(reason) => {
                tracing::info!(revision = %name, %reason, "issuing the webhook's serving certificate");
                let cert = certs::issue_serving(
                    &state.current,
                    &request,
                    now,
                    ctx.options.serving_lifetime,
                )?;
                write_serving(ctx, revision, &cert).await?;
                recheck = min_duration(recheck, until(cert.cert().renew_at(), now));
            }
            None => {
                if let Some(cert) = data.and_then(|d| certs::ServingCert::from_secret_data(d).ok())
                {
                    recheck = min_duration(recheck, until(cert.cert().renew_at(), now));
                }
            }
        }
    }
    recheck = min_duration(recheck, until(state.current.cert().renew_at(), now));
    if state.previous.is_some() {
        // A rotation in progress: look again soon for webhooks serving the
        // new certificate.
        recheck = Some(Duration::from_secs(1));
    }
    Ok(Certificates {
        ca_bundle: Some(certs::ca_bundle(&state)),
        recheck,
        problems: Vec::new(),
    })
}

fn until(at: SystemTime, now: SystemTime) -> Option<Duration> {
    Some(at.duration_since(now).unwrap_or(Duration::ZERO) + Duration::from_secs(1))
}

fn min_duration(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn webhook_url(config: &MeshConfig) -> Option<&str> {
    config.webhook.as_ref().and_then(|w| w.url.as_deref())
}

async fn get_secret(ctx: &Context, name: &str) -> Result<Option<Secret>, CertificateError> {
    Api::<Secret>::namespaced(ctx.client.clone(), &ctx.options.namespace)
        .get_opt(name)
        .await
        .map_err(|source| CertificateError::Kube {
            name: name.to_owned(),
            source,
        })
}

async fn load_or_create_ca(
    ctx: &Context,
    mesh: &Mesh,
    now: SystemTime,
) -> Result<CaState, CertificateError> {
    let secret = get_secret(ctx, names::CA_SECRET).await?;
    if let Some(data) = secret.as_ref().and_then(|s| s.data.as_ref()) {
        match CaState::from_secret_data(data) {
            Ok(state) => return Ok(state),
            Err(error) => {
                tracing::warn!(%error, "the mesh CA Secret is unusable; creating a new CA")
            }
        }
    }
    let state = CaState::new(now, ctx.options.ca_lifetime)?;
    write_ca(ctx, mesh, &state).await?;
    Ok(state)
}

async fn write_ca(ctx: &Context, mesh: &Mesh, state: &CaState) -> Result<(), CertificateError> {
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(names::CA_SECRET.to_owned()),
            namespace: Some(ctx.options.namespace.clone()),
            labels: Some(BTreeMap::from([(
                MANAGED_BY_LABEL.to_owned(),
                MANAGED_BY.to_owned(),
            )])),
            owner_references: mesh.controller_owner_ref(&()).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        data: Some(state.to_secret_data()),
        type_: Some("Opaque".to_owned()),
        ..Secret::default()
    };
    apply_secret(ctx, &secret).await
}

async fn write_serving(
    ctx: &Context,
    revision: &MeshRevision,
    cert: &certs::ServingCert,
) -> Result<(), CertificateError> {
    let name = names::webhook_tls_secret(&revision.name_any());
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(ctx.options.namespace.clone()),
            labels: Some(BTreeMap::from([
                (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
                (REVISION_LABEL.to_owned(), revision.name_any()),
            ])),
            owner_references: revision.controller_owner_ref(&()).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        data: Some(cert.to_secret_data()),
        type_: Some(certs::TLS_SECRET_TYPE.to_owned()),
        ..Secret::default()
    };
    apply_secret(ctx, &secret).await
}

async fn apply_secret(ctx: &Context, secret: &Secret) -> Result<(), CertificateError> {
    let name = secret.name_any();
    let desired = Desired::from_typed(secret)?;
    let current = ctx
        .caches
        .owned_meta("Secret", Some(&ctx.options.namespace), &name);
    ctx.applier
        .ensure(
            &desired,
            current.as_ref().map(|c| Current { meta: &c.metadata }),
        )
        .await
        .map(|_| ())
        .map_err(|source| CertificateError::Kube { name, source })
}

/// The serving Secrets of `revisions`, by revision name.
async fn serving_secrets(
    ctx: &Context,
    revisions: &[MeshRevision],
) -> Result<BTreeMap<String, Secret>, CertificateError> {
    let mut secrets = BTreeMap::new();
    for revision in revisions {
        let name = revision.name_any();
        if let Some(secret) = get_secret(ctx, &names::webhook_tls_secret(&name)).await? {
            secrets.insert(name, secret);
        }
    }
    Ok(secrets)
}

/// Step 4 of a rotation: does every webhook endpoint present exactly the
/// certificate in its Secret, and is that certificate from the current CA?
/// Anything unknown (an endpoint that does not answer) counts as no.
async fn webhooks_serve_current(
    ctx: &Context,
    state: &CaState,
    revisions: &[MeshRevision],
    serving: &BTreeMap<String, Secret>,
) -> bool {
    let bundle = certs::ca_bundle(state);
    for revision in revisions {
        let name = revision.name_any();
        let Some(cert) = serving
            .get(&name)
            .and_then(|s| s.data.as_ref())
            .and_then(|d| certs::ServingCert::from_secret_data(d).ok())
        else {
            return false;
        };
        if !cert.cert().is_issued_by(state.current.cert()) {
            return false;
        }
        let endpoints = match super::endpoints::webhook_endpoints(ctx, revision).await {
            Ok(endpoints) if !endpoints.is_empty() => endpoints,
            _ => return false,
        };
        for (address, server_name) in endpoints {
            match certs::probe::served_certificate(
                &address,
                &server_name,
                &bundle,
                Duration::from_secs(3),
            )
            .await
            {
                Ok(der) if der == cert.cert().der() => {}
                Ok(_) => return false,
                Err(error) => {
                    tracing::debug!(%address, %error, "cannot read the served certificate");
                    return false;
                }
            }
        }
    }
    true
}
