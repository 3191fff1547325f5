//! Feeds [`State`] from the cluster: a watch on this server's MeshRevision
//! and one on every ProxyConfig. Objects are read generically and parsed one
//! by one, so a malformed object is logged and skipped instead of stalling
//! the whole watch.

use std::sync::Arc;

use futures::{FutureExt, StreamExt};
use k8s_openapi::apimachinery::pkg::version::Info;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use meshkeeper_crds::meshkeeper::mesh_revision::MeshRevision;
use meshkeeper_crds::networking::proxy_config::ProxyConfig;

use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use meshkeeper_crds::networking::destination_rule::DestinationRule;
use meshkeeper_crds::networking::virtual_service::VirtualService;
use meshkeeper_crds::networking::{Gateway, ServiceEntry};

use super::cluster_view::{ClusterView, ViewEvent};
use super::state::{ProxyConfigIndex, State, parse_mesh_revision};

/// The first Kubernetes minor version (of major 1) that runs native
/// sidecars (init containers with `restartPolicy: Always`) by default.
pub const NATIVE_SIDECARS_SINCE_MINOR: u32 = 33;

/// Whether this API server version runs native sidecars. Uses the emulated
/// version when the server reports one (features follow it), and reads
/// minors like `33+` that some distributions report.
pub fn native_sidecars_supported(info: &Info) -> Result<bool, String> {
    let major = info.emulation_major.as_deref().unwrap_or(&info.major);
    let minor = info.emulation_minor.as_deref().unwrap_or(&info.minor);
    let number = |field: &str, value: &str| {
        let digits: String = value.chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<u32>().map_err(|_| {
            format!(
                "API server version {field} {value:?} (gitVersion {:?}) is not a number",
                info.git_version
            )
        })
    };
    let major = number("major", major)?;
    let minor = number("minor", minor)?;
    Ok(major > 1 || (major == 1 && minor >= NATIVE_SIDECARS_SINCE_MINOR))
}

/// Asks the API server its version once.
pub async fn detect_native_sidecars(client: &kube::Client) -> anyhow::Result<bool> {
    let info = client.apiserver_version().await?;
    native_sidecars_supported(&info).map_err(anyhow::Error::msg)
}

/// Keeps the state's revision settings current. Runs until the process
/// ends; watch errors are logged and retried with backoff.
pub async fn watch_revision(client: kube::Client, state: Arc<State>) {
    let name = state.options().revision.clone();
    let resource = ApiResource::erase::<MeshRevision>(&());
    let api = Api::<DynamicObject>::all_with(client, &resource);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = watcher::watcher(api, config).default_backoff().boxed();
    let mut seen = false;
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Apply(object) | Event::InitApply(object)) => {
                seen = true;
                take_revision(&state, &object);
            }
            Ok(Event::InitDone) if !seen => {
                tracing::warn!(revision = %name, "MeshRevision not found; not ready until it exists");
            }
            Ok(Event::Delete(_)) => {
                // Keep serving with the last settings: the operator removes
                // the webhook configurations before a revision goes away.
                tracing::warn!(revision = %name, "MeshRevision deleted; keeping its last settings");
            }
            Ok(Event::Init | Event::InitDone) => {}
            Err(e) => tracing::warn!(revision = %name, error = %e, "watching the MeshRevision"),
        }
    }
}

fn take_revision(state: &State, object: &DynamicObject) {
    match parse_mesh_revision(object) {
        Ok(revision) => match state.apply_revision(&revision) {
            Ok(()) => tracing::info!(
                revision = %state.options().revision,
                resource_version = object.metadata.resource_version.as_deref().unwrap_or(""),
                "revision settings loaded"
            ),
            Err(e) => tracing::error!(error = %e, "ignoring MeshRevision"),
        },
        Err(e) => tracing::error!(error = %e, "keeping the previous revision settings"),
    }
}

/// Keeps the state's ProxyConfigs current (all namespaces).
pub async fn watch_proxy_configs(client: kube::Client, state: Arc<State>) {
    let resource = ApiResource::erase::<ProxyConfig>(&());
    let api = Api::<DynamicObject>::all_with(client, &resource);
    let mut events = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut index = ProxyConfigIndex::default();
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(error = %e, "watching ProxyConfigs");
                continue;
            }
        };
        let update = index.apply(event);
        for problem in &update.problems {
            tracing::warn!("{problem}");
        }
        if update.changed && index.synced() {
            let snapshot = index.snapshot();
            tracing::debug!(count = snapshot.len(), "ProxyConfigs updated");
            state.set_proxy_configs(snapshot);
        }
    }
}

/// Keeps the validation view current: VirtualServices, DestinationRules,
/// Gateways and ServiceEntries in all namespaces, Namespaces (to allow
/// deletions while a namespace terminates), Services (their ports and
/// selectors, for the reference checks) and running Pods (to warn about
/// subsets no running pod serves). Secrets are not watched (the webhook has
/// no right to read them), so `credentialName` checks are left to
/// `meshctl analyze`. Publishes nothing until every kind
/// is listed, so no request is judged on a partial view.
pub async fn watch_validation_view(client: kube::Client, state: Arc<State>) {
    let watch = |resource: ApiResource, config: watcher::Config| {
        let api = Api::<DynamicObject>::all_with(client.clone(), &resource);
        watcher::watcher(api, config).default_backoff()
    };
    let all = |resource: ApiResource| watch(resource, watcher::Config::default());
    let virtual_services = all(ApiResource::erase::<VirtualService>(&()))
        .map(|e| e.map(ViewEvent::VirtualService))
        .boxed();
    let destination_rules = all(ApiResource::erase::<DestinationRule>(&()))
        .map(|e| e.map(ViewEvent::DestinationRule))
        .boxed();
    let namespaces = all(ApiResource::erase::<Namespace>(&()))
        .map(|e| e.map(ViewEvent::Namespace))
        .boxed();
    let services = all(ApiResource::erase::<Service>(&()))
        .map(|e| e.map(ViewEvent::Service))
        .boxed();
    // Only running pods matter: the API server filters the rest out, and
    // reports a pod leaving the Running phase as deleted from this watch.
    let running = watcher::Config::default().fields("status.phase=Running");
    let pods = watch(ApiResource::erase::<Pod>(&()), running)
        .map(|e| e.map(ViewEvent::Pod))
        .boxed();
    let gateways = all(ApiResource::erase::<Gateway>(&()))
        .map(|e| e.map(ViewEvent::Gateway))
        .boxed();
    let service_entries = all(ApiResource::erase::<ServiceEntry>(&()))
        .map(|e| e.map(ViewEvent::ServiceEntry))
        .boxed();
    let mut events = futures::stream::select_all([
        virtual_services,
        destination_rules,
        namespaces,
        services,
        pods,
        gateways,
        service_entries,
    ]);
    let mut view = ClusterView::default();
    loop {
        let mut changed = tokio::select! {
            event = events.next() => match event {
                None => break,
                Some(event) => take_view_event(&mut view, event),
            },
            // The root namespace decides visibility: publish for a new one.
            () = state.revision_changed() => true,
        };
        // Coalesce a burst: apply the events already waiting, then publish
        // once. Bounded, so a storm still publishes regularly.
        for _ in 0..MAX_EVENTS_PER_PUBLISH {
            match events.next().now_or_never() {
                Some(Some(event)) => changed |= take_view_event(&mut view, event),
                Some(None) | None => break,
            }
        }
        if changed && view.synced() {
            let root = state
                .revision()
                .map(|r| r.root_namespace.clone())
                .unwrap_or_else(|| crate::validate::index::DEFAULT_ROOT_NAMESPACE.to_string());
            view.set_root_namespace(&root);
            // A snapshot: shares the index's maps, copies none of them.
            state.set_validation_view(view.build(&root));
        }
    }
}

/// Events applied at most between two publications of the validation view.
const MAX_EVENTS_PER_PUBLISH: usize = 512;

/// Applies one watch event (or logs its error); whether the view changed.
fn take_view_event(view: &mut ClusterView, event: Result<ViewEvent, watcher::Error>) -> bool {
    match event {
        Err(e) => {
            tracing::warn!(
                error = %e,
                "watching VirtualServices, DestinationRules, Gateways, ServiceEntries, \
                 Namespaces, Services or Pods"
            );
            false
        }
        Ok(event) => {
            let (changed, problems) = view.apply(event);
            for problem in &problems {
                tracing::warn!("{problem}");
            }
            changed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(major: &str, minor: &str) -> Info {
        Info {
            major: major.into(),
            minor: minor.into(),
            git_version: format!("v{major}.{minor}.0"),
            ..Info::default()
        }
    }

    #[test]
    fn native_sidecars_from_1_33() {
        assert!(!native_sidecars_supported(&info("1", "32")).unwrap());
        assert!(native_sidecars_supported(&info("1", "33")).unwrap());
        assert!(native_sidecars_supported(&info("1", "37+")).unwrap());
        assert!(native_sidecars_supported(&info("2", "0")).unwrap());
    }

    #[test]
    fn the_emulated_version_decides() {
        let mut emulating = info("1", "37");
        emulating.emulation_major = Some("1".into());
        emulating.emulation_minor = Some("31".into());
        assert!(!native_sidecars_supported(&emulating).unwrap());
    }

    #[test]
    fn an_unreadable_version_is_an_error_naming_it() {
        let err = native_sidecars_supported(&info("1", "x")).unwrap_err();
        assert!(err.contains("minor") && err.contains("\"x\""), "{err}");
    }
}
