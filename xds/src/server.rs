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

use crate::delta::DeltaConversation;
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

/// The two flavours of the protocol (state of the world, Delta) behind one
/// stream loop.
pub trait Protocol: Default + Send + Sync + 'static {
    type Request: Send + Sync + 'static;
    type Response: Send + 'static;
    fn type_url(request: &Self::Request) -> &str;
    fn node_id(request: &Self::Request) -> Option<&str>;
    fn on_request(
        &mut self,
        request: &Self::Request,
        current: &Resources,
    ) -> (Outcome, Option<Self::Response>);
    fn on_update(&mut self, current: &Resources) -> Vec<Self::Response>;
}

impl Protocol for Conversation {
    type Request = DiscoveryRequest;
    type Response = DiscoveryResponse;
    fn type_url(request: &DiscoveryRequest) -> &str {
        &request.type_url
    }
    fn node_id(request: &DiscoveryRequest) -> Option<&str> {
        request.node.as_ref().map(|n| n.id.as_str())
    }
    fn on_request(
        &mut self,
        request: &DiscoveryRequest,
        current: &Resources,
    ) -> (Outcome, Option<DiscoveryResponse>) {
        Conversation::on_request(self, request, current)
    }
    fn on_update(&mut self, current: &Resources) -> Vec<DiscoveryResponse> {
        Conversation::on_update(self, current)
    }
}

impl Protocol for DeltaConversation {
    type Request = DeltaDiscoveryRequest;
    type Response = DeltaDiscoveryResponse;
    fn type_url(request: &DeltaDiscoveryRequest) -> &str {
        &request.type_url
    }
    fn node_id(request: &DeltaDiscoveryRequest) -> Option<&str> {
        request.node.as_ref().map(|n| n.id.as_str())
    }
    fn on_request(
        &mut self,
        request: &DeltaDiscoveryRequest,
        current: &Resources,
    ) -> (Outcome, Option<DeltaDiscoveryResponse>) {
        DeltaConversation::on_request(self, request, current)
    }
    fn on_update(&mut self, current: &Resources) -> Vec<DeltaDiscoveryResponse> {
        DeltaConversation::on_update(self, current)
    }
}

#[tonic::async_trait]
impl<S: ConfigSource> AggregatedDiscoveryService for Ads<S> {
    type StreamAggregatedResourcesStream = ResponseStream<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = ResponseStream<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        Ok(self.serve::<Conversation>(request.into_inner()))
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        Ok(self.serve::<DeltaConversation>(request.into_inner()))
    }
}

impl<S: ConfigSource> Ads<S> {
    fn serve<P: Protocol>(
        &self,
        inbound: Streaming<P::Request>,
    ) -> Response<ResponseStream<P::Response>>
    where
        P::Request: prost::Message + Default,
    {
        let (tx, rx) = mpsc::channel(16);
        let stream = ProxyStream::<S, P> {
            source: self.source.clone(),
            reports: self.reports.clone(),
            tx,
            protocol: std::marker::PhantomData,
        };
        tokio::spawn(stream.run(inbound));
        Response::new(Box::pin(ReceiverStream::new(rx)))
    }
}

struct ProxyStream<S, P: Protocol> {
    source: Arc<S>,
    reports: Arc<Mutex<Vec<Report>>>,
    tx: mpsc::Sender<Result<P::Response, Status>>,
    protocol: std::marker::PhantomData<P>,
}

impl<S: ConfigSource, P: Protocol> ProxyStream<S, P>
where
    P::Request: prost::Message + Default,
{
    async fn run(self, mut inbound: Streaming<P::Request>) {
        let mut conversation = P::default();
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
        conversation: &mut P,
        node_id: &mut Option<String>,
        current: &mut Resources,
        request: P::Request,
    ) -> Result<(), Status> {
        let type_url = P::type_url(&request);
        if !PUSH_ORDER.contains(&type_url) {
            return Err(Status::invalid_argument(format!(
                "type_url {type_url:?} is not served; served: {}",
                PUSH_ORDER.join(", ")
            )));
        }
        if node_id.is_none() {
            let id = P::node_id(&request)
                .map(str::to_owned)
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
