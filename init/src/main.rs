//! The meshkeeper init container: installs the pod's traffic capture (see the library docs).

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use meshkeeper_init::{apply, capture::CaptureFlags, rules};

/// Redirects the pod's TCP traffic through the Envoy sidecar with iptables.
#[derive(Parser)]
#[command(name = "meshkeeper-init", version, about)]
struct Cli {
    #[command(flatten)]
    capture: CaptureFlags,
    /// Print the rules of both families and change nothing.
    #[arg(long)]
    dry_run: bool,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // The whole cause chain on one line: this is what `kubectl logs` shows for a pod
            // whose init container failed.
            eprintln!("meshkeeper-init: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.capture.into_config()?;
    if cli.dry_run {
        print!("{}", rules::dry_run_text(&config));
        return Ok(());
    }
    apply::apply(&config).context("installing the capture rules")?;
    tracing::info!("capture rules installed");
    Ok(())
}
