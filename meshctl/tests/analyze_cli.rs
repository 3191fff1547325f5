//! `meshctl analyze` as a user runs it: findings on stdout, exit code 1 on
//! any error, 0 when clean.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is a failed assertion

use std::process::Command;

fn analyze(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_meshctl"))
        .arg("analyze")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn clean_samples_exit_zero_and_a_dangling_subset_exits_one() {
    let networking = meshkeeper_testkit::corpus_dir()
        .unwrap()
        .join("istio-samples/bookinfo/networking");
    let dr = networking.join("destination-rule-all.yaml");
    let vs = networking.join("virtual-service-all-v1.yaml");
    let (code, out) = analyze(&["-f", &dr.to_string_lossy(), &vs.to_string_lossy()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.ends_with("0 error(s), 0 warning(s)\n"), "{out}");

    // Without the DestinationRules, every subset the routes name dangles.
    let (code, out) = analyze(&["-f", &vs.to_string_lossy()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("error MK0201 VirtualService default/reviews"),
        "{out}"
    );
    assert!(
        out.contains("spec.http[0].route[0].destination.subset"),
        "{out}"
    );
}

fn analyze_stdin(args: &[&str], input: &[u8]) -> (i32, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshctl"))
        .arg("analyze")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn dash_reads_standard_input() {
    let vs = std::fs::read(
        meshkeeper_testkit::corpus_dir()
            .unwrap()
            .join("istio-samples/bookinfo/networking/virtual-service-all-v1.yaml"),
    )
    .unwrap();
    let (code, out) = analyze_stdin(&["-f", "-"], &vs);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("error MK0201 VirtualService default/reviews (stdin)"),
        "{out}"
    );
}

#[test]
fn text_that_is_not_a_manifest_is_an_error_not_zero_errors() {
    let (code, out) = analyze_stdin(&["-f", "-"], b"hello, this is not YAML for Kubernetes\n");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("error MK0002 (input) (stdin)"), "{out}");
    assert!(out.ends_with("1 error(s), 0 warning(s)\n"), "{out}");
}
