//! The admission server with the benchmark's validation view, for
//! measuring `/validate` over TLS (results in BENCHMARKS.md).
//!
//! The real binary fills its view from watches on a cluster; loading 20,000
//! objects into a local API server takes minutes (`e2e/bin/bench-validate
//! --cluster` does it, with `examples/bench_objects.rs`), so for a quick run
//! this runs the same server code (`server::start`: TLS, router, review)
//! with the index of `benches/support/networking.rs` (10,000
//! DestinationRules and 10,000 VirtualServices) fed by hand. It prints
//! `listening on ADDR`, then serves until `--duration` is over (bounded) or
//! it receives SIGTERM/SIGINT.
//!
//! ```text
//! cargo run --release -p meshkeeper-webhook --example validate_server -- \
//!     --listen 127.0.0.1:0 --tls-cert-file tls.crt --tls-key-file tls.key
//! ```

#[path = "../benches/support/networking.rs"]
#[allow(dead_code)]
mod networking;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use meshkeeper_webhook::server::{self, CertFiles, ServerOptions};

/// Serves /validate over TLS against a generated 20,000-object view.
#[derive(Debug, Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    #[arg(long)]
    tls_cert_file: PathBuf,
    #[arg(long)]
    tls_key_file: PathBuf,
    /// Stop by itself after this many seconds.
    #[arg(long, default_value_t = 600)]
    duration: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (index, memory) = networking::build_index();
    memory.print();
    let state = Arc::new(networking::ready_state(index));
    // Same runtime as the real binary: tokio's default, one worker a core
    // unless TOKIO_WORKER_THREADS says otherwise.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding --listen {}", args.listen))?;
        let options = ServerOptions::new(CertFiles::new(args.tls_cert_file, args.tls_key_file));
        let running = server::start(listener, state, options)?;
        println!("listening on {}", running.local_addr());
        let stop = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
                _ = tokio::time::sleep(Duration::from_secs(args.duration)) => {}
            }
            anyhow::Ok(())
        };
        stop.await?;
        let shutdown = running.shutdown().await;
        println!("stopped: {shutdown:?}");
        Ok(())
    })
}
