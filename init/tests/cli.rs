//! The binary's command line, without touching any network namespace.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

use meshkeeper_init::capture::CaptureConfig;
use meshkeeper_init::rules;

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshkeeper-init"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn dry_run_prints_both_families() {
    let args = ["--exclude-outbound-ip-ranges=10.96.0.0/12,fd00::/8"];
    let output = run(&[&args[..], &["--dry-run"]].concat());
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let config = CaptureConfig::from_args(args.map(String::from)).unwrap();
    assert_eq!(stdout, rules::dry_run_text(&config));
    assert!(
        stdout.contains("# IPv4 (iptables-restore)\n*nat\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("# IPv6 (ip6tables-restore)\n*nat\n"),
        "{stdout}"
    );
}

#[test]
fn tproxy_is_refused_clearly() {
    let output = run(&["--interception-mode=TPROXY", "--dry-run"]);
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("meshkeeper supports the interception modes REDIRECT and NONE"),
        "{stderr}"
    );
}

#[test]
fn a_bad_value_names_the_flag_the_value_and_the_form() {
    let output = run(&["--exclude-outbound-ports=80,http", "--dry-run"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("--exclude-outbound-ports"), "{stderr}");
    assert!(stderr.contains("\"http\""), "{stderr}");
    assert!(stderr.contains("ports 1-65535"), "{stderr}");
}
