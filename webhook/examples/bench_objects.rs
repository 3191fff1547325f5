//! Writes the validation benchmark's cluster (`benches/support/networking.rs`:
//! 100 namespaces, 10,000 DestinationRules, 10,000 VirtualServices) as
//! Kubernetes `List` documents, for `e2e/bin/bench-validate --cluster` to
//! load into a real API server: `namespaces.json`, then one
//! `team-NNN.json` per namespace with its rules and routes. The objects are
//! the ones the in-process benchmark indexes, so the load generator's
//! review is judged against the same view.
//!
//! ```text
//! cargo run --release -p meshkeeper-webhook --example bench_objects -- --out DIR
//! ```

#[path = "../benches/support/networking.rs"]
#[allow(dead_code)]
mod networking;

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use serde_json::{Value, json};

/// Writes the benchmark's 20,000 networking objects as List documents.
#[derive(Debug, Parser)]
struct Args {
    /// Directory to write into (created when missing).
    #[arg(long)]
    out: PathBuf,
}

/// Label on every generated object, so a run can find and remove them.
const LABEL: &str = "meshkeeper.io/bench";

fn list(items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "List", "items": items})
}

fn labelled(mut object: Value) -> Value {
    object["metadata"]["labels"] = json!({ LABEL: "validate" });
    object
}

fn write(path: PathBuf, document: &Value) -> anyhow::Result<()> {
    let text = serde_json::to_vec(document)?;
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let namespaces = (0..networking::NAMESPACES)
        .map(|n| {
            labelled(json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": networking::namespace(n)}
            }))
        })
        .collect();
    write(args.out.join("namespaces.json"), &list(namespaces))?;
    for n in 0..networking::NAMESPACES {
        let objects = (0..networking::SERVICES_PER_NAMESPACE)
            .flat_map(|s| {
                [
                    networking::destination_rule(n, s),
                    networking::virtual_service(n, s),
                ]
            })
            .map(labelled)
            .collect();
        write(
            args.out.join(format!("{}.json", networking::namespace(n))),
            &list(objects),
        )?;
    }
    println!(
        "wrote {} namespaces, {} DestinationRules and {} VirtualServices to {}",
        networking::NAMESPACES,
        networking::OBJECTS_PER_KIND,
        networking::OBJECTS_PER_KIND,
        args.out.display()
    );
    Ok(())
}
