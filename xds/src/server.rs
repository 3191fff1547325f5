//! The Aggregated Discovery Service over gRPC: each proxy's stream runs a
//! [`Conversation`] against the resources its [`ConfigSource`] compiles for
//! it, and pushes again whenever the source says something changed.
//! A slow proxy only fills its own stream's buffer; others never wait.

use std::pin::Pin;
use std::sync::{Arc, Mutex};

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use tokio::sync::{mpsc, watch};
use tonic::codegen::tokio_stream::Stream;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::protocol::{Conversation, Outcome};
use crate::resources::{PUSH_ORDER, Resources};

/// Where a proxy's configuration comes from.
pub trait ConfigSource: Send + Sync + 'static {
    /// The resources of the proxy with this node id, or why it has none.
    fn resources(&self, node_id: &str) -> Result<Resources, String>;
    /// Changes (a counter) whenever any proxy's resources may have changed.
    fn changes(&self) -> watch::Receiver<u64>;
}

/// What a proxy said about a push, kept for `proxy-status` and tests.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub node_id: String,
    pub outcome: Outcome,
}

pub struct Ads<S> {
    source: Arc<S>,
    reports: Arc<Mutex<Vec<Report>>>,
}

impl<S: ConfigSource> Ads<S> {
    pub fn new(source: Arc<S>) -> Self {
        Self {
            source,
            reports: Arc::default(),
        }
    }

    /// Everything proxies answered so far (ACKs, NACKs, subscriptions).
    pub fn reports(&self) -> Arc<Mutex<Vec<Report>>> {
        self.reports.clone()
    }

    pub fn into_service(self) -> AggregatedDiscoveryServiceServer<Self> {
        AggregatedDiscoveryServiceServer::new(self)
    }
}

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl<S: ConfigSource> AggregatedDiscoveryService for Ads<S> {
    type StreamAggregatedResourcesStream = ResponseStream<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = ResponseStream<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let (tx, rx) = mpsc::channel(16);
        let stream = ProxyStream {
            source: self.source.clone(),
            reports: self.reports.clone(),
            tx,
        };
        tokio::spawn(stream.run(request.into_inner()));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn delta_aggregated_resources(
        &self,
        _request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        Err(Status::unimplemented(
            "incremental (Delta) xDS is not served yet: configure the proxy with \
             ads_config.api_type GRPC (state of the world)",
        ))
    }
}

struct ProxyStream<S> {
    source: Arc<S>,
    reports: Arc<Mutex<Vec<Report>>>,
    tx: mpsc::Sender<Result<DiscoveryResponse, Status>>,
}

impl<S: ConfigSource> ProxyStream<S> {
    async fn run(self, mut inbound: Streaming<DiscoveryRequest>) {
        let mut conversation = Conversation::default();
        let mut node_id: Option<String> = None;
        let mut current = Resources::default();
        let mut changes = self.source.changes();
        loop {
            tokio::select! {
                message = inbound.message() => {
                    let request = match message {
                        Ok(Some(r)) => r,
                        Ok(None) => return,
                        Err(e) => {
                            tracing::debug!(node = ?node_id, "xDS stream ended: {e}");
                            return;
                        }
                    };
                    if let Err(status) = self
                        .on_request(&mut conversation, &mut node_id, &mut current, request)
                        .await
                    {
                        let _ = self.tx.send(Err(status)).await;
                        return;
                    }
                }
                changed = changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let Some(id) = &node_id else { continue };
                    match self.source.resources(id) {
                        Ok(fresh) => {
                            current = fresh;
                            for response in conversation.on_update(&current) {
                                if self.tx.send(Ok(response)).await.is_err() {
                                    return;
                                }
                            }
                        }
                        Err(e) => tracing::warn!(node = %id, "no configuration for the proxy: {e}"),
                    }
                }
            }
        }
    }

    async fn on_request(
        &self,
        conversation: &mut Conversation,
        node_id: &mut Option<String>,
        current: &mut Resources,
        request: DiscoveryRequest,
    ) -> Result<(), Status> {
        if !PUSH_ORDER.contains(&request.type_url.as_str()) {
            return Err(Status::invalid_argument(format!(
                "type_url {:?} is not served; served: {}",
                request.type_url,
                PUSH_ORDER.join(", ")
            )));
        }
        if node_id.is_none() {
            let id = request
                .node
                .as_ref()
                .map(|n| n.id.clone())
                .filter(|id| !id.is_empty())
                .ok_or_else(|| {
                    Status::invalid_argument(
                        "the first DiscoveryRequest of a stream must carry node.id (POD.NAMESPACE)",
                    )
                })?;
            *current = self
                .source
                .resources(&id)
                .map_err(|e| Status::failed_precondition(format!("node {id:?}: {e}")))?;
            *node_id = Some(id);
        }
        let id = node_id.clone().unwrap_or_default();
        let (outcome, response) = conversation.on_request(&request, current);
        if let Outcome::Nack {
            type_url,
            version,
            message,
        } = &outcome
        {
            tracing::warn!(node = %id, %type_url, %version, "the proxy rejected its configuration: {message}");
        }
        if let Ok(mut reports) = self.reports.lock() {
            reports.push(Report {
                node_id: id,
                outcome,
            });
        }
        if let Some(response) = response {
            self.tx
                .send(Ok(response))
                .await
                .map_err(|_| Status::cancelled("the proxy went away"))?;
        }
        Ok(())
    }
}
