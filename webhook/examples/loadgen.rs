//! Load generator for the admission server (results in BENCHMARKS.md).
//!
//! Keeps `--connections` HTTP/1.1 keep-alive connections over TLS (rustls,
//! the server verified against `--ca`) busy posting AdmissionReviews of the
//! typical pod (or the same pod grown to `--containers`) for a warm-up and
//! then a measured period, and reports throughput, latency percentiles and
//! errors. Every request carries its own uid and every answer must echo it
//! with an injection patch, or it counts as an error. With `--validate` it
//! posts a new VirtualService to `/validate` instead (against
//! `examples/validate_server.rs`, or the real binary watching a cluster
//! loaded by `examples/bench_objects.rs`), and every answer must echo the
//! uid and allow it. Bounded: it stops by itself when the time is up.
//!
//! ```text
//! cargo run --release -p meshkeeper-webhook --example loadgen -- \
//!     --address 127.0.0.1:9443 --ca ca.crt --connections 16 --warmup 2s --duration 10s
//! ```
//! `e2e/bin/bench` starts the real webhook and runs this against it.

#[path = "../benches/support/pods.rs"]
#[allow(dead_code)]
mod pods;

#[path = "../benches/support/networking.rs"]
#[allow(dead_code)]
mod networking;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::body::Bytes;
use axum::http::{Request, StatusCode};
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Posts AdmissionReviews to a meshkeeper webhook over TLS and measures.
#[derive(Debug, Parser)]
struct Args {
    /// The webhook's address (loopback).
    #[arg(long)]
    address: SocketAddr,
    /// PEM certificate of the CA that signed the webhook's certificate.
    #[arg(long)]
    ca: PathBuf,
    /// Name the certificate must be valid for.
    #[arg(long, default_value = "127.0.0.1")]
    server_name: String,
    /// Endpoint the reviews are posted to (default `/inject/namespace`, or
    /// `/validate` with `--validate`).
    #[arg(long)]
    path: Option<String>,
    /// Post a VirtualService CREATE (`benches/support/networking.rs`) that
    /// must be allowed, instead of a pod that must be injected.
    #[arg(long)]
    validate: bool,
    /// Concurrent keep-alive connections, one request in flight on each.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Containers in the pod: 0 sends the typical pod as it is (2).
    #[arg(long, default_value_t = 0)]
    containers: usize,
    /// Time before measuring (connections warm, allocators settled).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    warmup: Duration,
    /// Measured time.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Wait up to this long for GET /readyz to answer 200 before starting.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    wait_ready: Duration,
    /// Total reviews per second to offer, spread evenly over the
    /// connections; 0 sends the next request as soon as the previous answer
    /// arrives (closed loop: finds the saturation throughput).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Client runtime threads (the client shares the machine with the server).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration (expected e.g. 10s or 500ms)");
    if let Some(ms) = text.strip_suffix("ms") {
        return ms.parse().map(Duration::from_millis).map_err(|_| bad());
    }
    text.strip_suffix('s')
        .unwrap_or(text)
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(bad)
}

/// What one connection saw during the measured period.
#[derive(Default)]
struct Tally {
    /// Latency of every successful review, microseconds.
    latencies: Vec<u32>,
    errors: u64,
    /// The first few error descriptions, to say what went wrong.
    samples: Vec<String>,
}

impl Tally {
    fn error(&mut self, what: String) {
        self.errors += 1;
        if self.samples.len() < 3 {
            self.samples.push(what);
        }
    }
}

/// One review body with its uid at a known place, rewritten per request.
struct Template {
    body: Vec<u8>,
    uid_at: usize,
    /// A validation review: the answer allows, with no patch.
    validate: bool,
}

impl Template {
    fn new(containers: usize, validate: bool) -> anyhow::Result<Self> {
        let review = if validate {
            let vs = networking::new_virtual_service();
            networking::review("CREATE", &vs, None, pods::PLACEHOLDER_UID)
        } else if containers == 0 {
            pods::review(&pods::typical_pod(), pods::PLACEHOLDER_UID)
        } else {
            pods::review(
                &pods::pod_with_containers(containers),
                pods::PLACEHOLDER_UID,
            )
        };
        let body = serde_json::to_vec(&review)?;
        let uid_at = find(&body, pods::PLACEHOLDER_UID.as_bytes())
            .context("the review body holds no uid placeholder")?;
        Ok(Self {
            body,
            uid_at,
            validate,
        })
    }

    /// The body with a uid unique to this connection and sequence number.
    fn with_uid(&self, uid: &str) -> Bytes {
        let mut body = self.body.clone();
        body[self.uid_at..self.uid_at + uid.len()].copy_from_slice(uid.as_bytes());
        Bytes::from(body)
    }
}

fn uid(connection: usize, sequence: u64) -> String {
    // Same 8-4-4-4-12 shape and length as the placeholder.
    format!("{connection:08x}-0000-4000-8000-{sequence:012x}")
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

struct Target {
    address: SocketAddr,
    server_name: ServerName<'static>,
    tls: TlsConnector,
    path: String,
}

impl Target {
    async fn connect(&self) -> anyhow::Result<SendRequest<Full<Bytes>>> {
        let tcp = TcpStream::connect(self.address).await?;
        tcp.set_nodelay(true)?;
        let stream = self.tls.connect(self.server_name.clone(), tcp).await?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(sender)
    }

    fn request(&self, method: &str, body: Bytes) -> anyhow::Result<Request<Full<Bytes>>> {
        let path = if method == "GET" {
            "/readyz"
        } else {
            &self.path
        };
        Ok(Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.server_name.to_str().as_ref())
            .header("content-type", "application/json")
            .body(Full::new(body))?)
    }
}

/// Sends one request and reads the whole answer.
async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> anyhow::Result<(StatusCode, Bytes)> {
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// Polls /readyz on fresh connections until it answers 200 or `timeout`
/// passes.
async fn wait_ready(target: &Target, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match target.connect().await {
            Ok(mut sender) => {
                match exchange(&mut sender, target.request("GET", Bytes::new())?).await {
                    Ok((StatusCode::OK, _)) => return Ok(()),
                    Ok((status, body)) => format!("{status}: {}", String::from_utf8_lossy(&body)),
                    Err(e) => format!("{e:#}"),
                }
            }
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() >= deadline {
            bail!("the webhook was not ready within {timeout:?}: {last}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// When a connection sends.
#[derive(Clone, Copy)]
struct Plan {
    measure_from: Instant,
    end: Instant,
    /// Time between two sends on one connection; `None`: send again as soon
    /// as the answer is in.
    interval: Option<Duration>,
}

/// Keeps one connection busy until `plan.end`; records the latency of what
/// completes after `plan.measure_from`.
async fn run_connection(
    index: usize,
    target: Arc<Target>,
    template: Arc<Template>,
    plan: Plan,
    connections: usize,
) -> Tally {
    let mut tally = Tally::default();
    let mut sender = None;
    let mut sequence = 0u64;
    // Paced connections start staggered so their sends interleave evenly.
    let mut next = plan
        .interval
        .map(|interval| Instant::now() + interval.mul_f64(index as f64 / connections as f64));
    while Instant::now() < plan.end {
        if let (Some(at), Some(interval)) = (next.as_mut(), plan.interval) {
            if *at >= plan.end {
                break;
            }
            // tokio's timer has millisecond resolution: sends go out in
            // small bursts at each tick, a little harsher than even spacing.
            tokio::time::sleep_until((*at).into()).await;
            *at += interval;
        }
        let current = match sender.as_mut() {
            Some(current) => current,
            None => match target.connect().await {
                Ok(fresh) => sender.insert(fresh),
                Err(e) => {
                    tally.error(format!("connecting: {e:#}"));
                    // Do not spin on a refused port.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        sequence += 1;
        let uid = uid(index, sequence);
        let request = match target.request("POST", template.with_uid(&uid)) {
            Ok(request) => request,
            Err(e) => {
                tally.error(format!("building the request: {e:#}"));
                break;
            }
        };
        let started = Instant::now();
        let result = exchange(current, request).await;
        let finished = Instant::now();
        // Errors count whenever they happen; latencies only when measured.
        match result {
            Ok((StatusCode::OK, body)) if answers(&body, &uid, template.validate) => {
                if (plan.measure_from..plan.end).contains(&finished) {
                    let micros = finished.duration_since(started).as_micros();
                    tally
                        .latencies
                        .push(u32::try_from(micros).unwrap_or(u32::MAX));
                }
            }
            Ok((status, body)) => tally.error(format!(
                "{status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            )),
            Err(e) => {
                tally.error(format!("{e:#}"));
                sender = None;
            }
        }
    }
    tally
}

/// The answer echoes the uid and allows, with the injection patch unless
/// it is a validation.
fn answers(body: &[u8], uid: &str, validate: bool) -> bool {
    find(body, uid.as_bytes()).is_some()
        && (validate || find(body, br#""patchType":"JSONPatch""#).is_some())
        && find(body, br#""allowed":true"#).is_some()
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(micros: u32) -> String {
    format!("{:.3} ms", f64::from(micros) / 1000.0)
}

async fn run(args: Args) -> anyhow::Result<()> {
    let ca_pem =
        std::fs::read(&args.ca).with_context(|| format!("reading --ca {}", args.ca.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&ca_pem) {
        roots.add(cert.with_context(|| format!("--ca {}", args.ca.display()))?)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let server_name = ServerName::try_from(args.server_name.clone()).with_context(|| {
        format!(
            "--server-name {:?} is not a DNS name or IP",
            args.server_name
        )
    })?;
    let path = args.path.clone().unwrap_or_else(|| {
        let default = if args.validate {
            "/validate"
        } else {
            "/inject/namespace"
        };
        default.to_owned()
    });
    let target = Arc::new(Target {
        address: args.address,
        server_name,
        tls: TlsConnector::from(Arc::new(config)),
        path: path.clone(),
    });
    let template = Arc::new(Template::new(args.containers, args.validate)?);
    let containers = if args.containers == 0 {
        2
    } else {
        args.containers
    };

    wait_ready(&target, args.wait_ready).await?;

    let measure_from = Instant::now() + args.warmup;
    let plan = Plan {
        measure_from,
        end: measure_from + args.duration,
        interval: (args.rate > 0.0)
            .then(|| Duration::from_secs_f64(args.connections as f64 / args.rate)),
    };
    let workers: Vec<_> = (0..args.connections)
        .map(|i| {
            tokio::spawn(run_connection(
                i,
                target.clone(),
                template.clone(),
                plan,
                args.connections,
            ))
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut samples = Vec::new();
    for worker in workers {
        let tally = worker.await?;
        latencies.extend(tally.latencies);
        errors += tally.errors;
        samples.extend(tally.samples);
    }
    latencies.sort_unstable();

    let ok = latencies.len();
    let seconds = args.duration.as_secs_f64();
    println!(
        "target:      https://{}{} over TLS, {} keep-alive connections, {} client thread(s)",
        args.address, path, args.connections, args.threads
    );
    let subject = if args.validate {
        "new VirtualService (CREATE)".to_owned()
    } else {
        format!("pod with {containers} containers")
    };
    println!(
        "review:      {subject}, {:.1} KiB request body",
        template.body.len() as f64 / 1024.0
    );
    println!(
        "time:        {:?} warm-up, {:?} measured",
        args.warmup, args.duration
    );
    println!("reviews:     {ok} ok in the measured time, {errors} errors (whole run)");
    let offered = if args.rate > 0.0 {
        format!(" (offered {:.0}/s)", args.rate)
    } else {
        " (closed loop: saturation)".to_owned()
    };
    println!("throughput:  {:.0} reviews/s{offered}", ok as f64 / seconds);
    println!(
        "latency:     p50 {}  p90 {}  p99 {}  max {}",
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 90.0)),
        ms(percentile(&latencies, 99.0)),
        ms(latencies.last().copied().unwrap_or(0)),
    );
    for sample in &samples {
        println!("error:       {sample}");
    }
    if ok == 0 || errors > 0 {
        bail!("{errors} errors, {ok} successful reviews");
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.connections == 0 || args.threads == 0 {
        bail!("--connections and --threads must be at least 1");
    }
    if !(args.rate.is_finite() && args.rate >= 0.0) {
        bail!(
            "--rate {} must be 0 (closed loop) or a positive number of reviews/s",
            args.rate
        );
    }
    let runtime = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?
    };
    runtime.block_on(run(args))
}
