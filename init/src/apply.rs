//! Installs the rules: reads the current nat table of each family, and feeds the reconciled
//! input to `iptables-restore` / `ip6tables-restore`. The only module that runs commands.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::capture::CaptureConfig;
use crate::rules::{self, Family};

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("could not run {command}: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{command} failed ({status}): {stderr}{input}")]
    Failed {
        command: String,
        status: String,
        stderr: String,
        /// The restore input, when the failing command was a restore, so the log shows it.
        input: String,
    },
}

/// Installs `cfg`'s capture for every family this kernel has. Does nothing for mode NONE.
pub fn apply(cfg: &CaptureConfig) -> Result<(), ApplyError> {
    if cfg.captures_nothing() {
        tracing::info!("interception mode NONE: no rules installed");
        return Ok(());
    }
    for family in Family::ALL {
        if family == Family::V6 && !kernel_has_ipv6() {
            tracing::warn!("IPv6 is disabled in this kernel: skipping the IPv6 rules");
            continue;
        }
        apply_family(cfg, family)?;
    }
    Ok(())
}

fn apply_family(cfg: &CaptureConfig, family: Family) -> Result<(), ApplyError> {
    let current = run(family.save_command(), &["-t", "nat"], None)?;
    let input = rules::reconciled_restore_input(cfg, family, &current);
    tracing::info!(
        family = family.name(),
        "applying with {} --noflush:\n{input}",
        family.restore_command()
    );
    run(family.restore_command(), &["--noflush"], Some(&input))?;
    Ok(())
}

/// The kernel lists IPv6 addresses here only when IPv6 is enabled.
fn kernel_has_ipv6() -> bool {
    Path::new("/proc/net/if_inet6").exists()
}

fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, ApplyError> {
    let command = format!("{program} {}", args.join(" "));
    let spawn_error = |source| ApplyError::Spawn {
        command: command.clone(),
        source,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_error)?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // Dropping the pipe at the end of this block closes it, which ends the input.
        pipe.write_all(text.as_bytes()).map_err(spawn_error)?;
    }
    let output: Output = child.wait_with_output().map_err(spawn_error)?;
    if !output.status.success() {
        return Err(ApplyError::Failed {
            command,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            input: stdin
                .map(|text| format!("\ninput was:\n{text}"))
                .unwrap_or_default(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
