//! `meshctl proxy-config` as a user runs it on Istio's Bookinfo sample
//! (from the corpus, through testkit): tables, Envoy JSON, gateways, and
//! `--diff` with its exit codes (0 no change, 1 changes, 2 trouble).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is a failed assertion

use std::path::PathBuf;
use std::process::Command;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn meshctl(args: &[String]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_meshctl"))
        .arg("proxy-config")
        .args(args)
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn bookinfo(path: &str) -> String {
    let dir: PathBuf = meshkeeper_testkit::corpus_dir()
        .unwrap()
        .join("istio-samples/bookinfo");
    dir.join(path).to_string_lossy().into_owned()
}

/// `proxy-config [part] -n bookinfo -f bookinfo.yaml destination-rule-all.yaml <rest>`.
fn with_bookinfo(part: &[&str], rest: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = part.iter().map(|s| (*s).to_owned()).collect();
    args.extend([
        "-n".into(),
        "bookinfo".into(),
        "-f".into(),
        bookinfo("platform/kube/bookinfo.yaml"),
        bookinfo("networking/destination-rule-all.yaml"),
    ]);
    args.extend(rest.iter().map(|s| (*s).to_owned()));
    args
}

#[test]
fn the_summary_shows_every_resource_of_the_sidecar() {
    let run = meshctl(&with_bookinfo(&[], &["--pod", "bookinfo/productpage-v1"]));
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let out = &run.stdout;
    for header in ["LISTENER", "ROUTES", "SERVICE", "ENDPOINT"] {
        assert!(out.contains(header), "{out}");
    }
    assert!(out.contains("0.0.0.0_9080"), "{out}");
    assert!(out.contains("HTTP routes 9080"), "{out}");
    let subset = out
        .lines()
        .find(|l| l.starts_with("reviews.bookinfo.svc.cluster.local") && l.contains(" v3 "))
        .unwrap_or_else(|| panic!("no reviews v3 cluster:\n{out}"));
    assert!(subset.ends_with("bookinfo/reviews"), "{subset}");
    let endpoint = out
        .lines()
        .find(|l| l.ends_with("outbound|9080|v3|reviews.bookinfo.svc.cluster.local"))
        .unwrap_or_else(|| panic!("no reviews v3 endpoint:\n{out}"));
    assert!(endpoint.starts_with("198.18."), "{endpoint}");
}

#[test]
fn json_is_the_envoy_configuration_and_a_part_selects_one_type() {
    let run = meshctl(&with_bookinfo(
        &[],
        &["--pod", "bookinfo/productpage-v1", "-o", "json"],
    ));
    assert_eq!(run.code, 0, "{}", run.stderr);
    let all: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    for key in ["listeners", "routes", "clusters", "endpoints"] {
        assert!(all[key].as_array().is_some_and(|l| !l.is_empty()), "{key}");
    }
    let run = meshctl(&with_bookinfo(
        &["clusters"],
        &["--pod", "bookinfo/productpage-v1", "-o", "yaml"],
    ));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("name: outbound|9080|v1|reviews.bookinfo.svc.cluster.local"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("virtual_hosts"), "{}", run.stdout);
}

#[test]
fn diff_shows_the_routes_a_virtual_service_changes_and_exits_one() {
    let vs = bookinfo("networking/virtual-service-reviews-jason-v2-v3.yaml");
    let run = meshctl(&with_bookinfo(
        &[],
        &["--pod", "bookinfo/productpage-v1", "--diff", &vs],
    ));
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let expected = "\
listeners: no change
routes: 1 changed
    ~ 9080
        ~ reviews.bookinfo.svc.cluster.local:9080
            + /* end-user=jason → outbound|9080|v2|reviews.bookinfo.svc.cluster.local
            ~ /* → outbound|9080|v3|reviews.bookinfo.svc.cluster.local (was outbound|9080||reviews.bookinfo.svc.cluster.local)
clusters: no change
endpoints: no change
0 added, 0 removed, 1 changed
";
    assert_eq!(run.stdout, expected);
}

#[test]
fn diff_without_changes_exits_zero_and_trouble_exits_two() {
    let dr = bookinfo("networking/destination-rule-all.yaml");
    let run = meshctl(&with_bookinfo(
        &[],
        &["--pod", "bookinfo/productpage-v1", "--diff", &dr],
    ));
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.ends_with("no change\n"), "{}", run.stdout);

    let run = meshctl(&with_bookinfo(
        &[],
        &["--pod", "bookinfo/nobody", "--diff", &dr],
    ));
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("--pod bookinfo/nobody: no pod of that name; pods in bookinfo: details-v1-"),
        "{}",
        run.stderr
    );
}

#[test]
fn diff_names_new_clusters_and_routes_to_clusters_that_do_not_exist() {
    // Without the DestinationRules, the subsets the routes name have no clusters.
    let base = [
        "-n".to_owned(),
        "bookinfo".to_owned(),
        "-f".to_owned(),
        bookinfo("platform/kube/bookinfo.yaml"),
        "--pod".to_owned(),
        "bookinfo/reviews-v1".to_owned(),
    ];
    let mut args = base.to_vec();
    args.extend([
        "--diff".to_owned(),
        bookinfo("networking/virtual-service-reviews-80-20.yaml"),
    ]);
    let run = meshctl(&args);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("outbound|9080|v1|reviews.bookinfo.svc.cluster.local 80%, outbound|9080|v2|reviews.bookinfo.svc.cluster.local 20%"), "{}", run.stdout);
    assert!(
        run.stderr
            .contains("requests go to cluster outbound|9080|v1|reviews.bookinfo.svc.cluster.local, which this proxy does not have"),
        "{}",
        run.stderr
    );

    let mut args = base.to_vec();
    args.extend([
        "-o".to_owned(),
        "json".to_owned(),
        "--diff".to_owned(),
        bookinfo("networking/destination-rule-reviews.yaml"),
    ]);
    let run = meshctl(&args);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let diff: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let added = diff["clusters"]["added"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        added.contains(&serde_json::json!(
            "outbound|9080|v1|reviews.bookinfo.svc.cluster.local"
        )),
        "{diff}"
    );
    assert_eq!(diff["routes"]["changed"], serde_json::json!([]), "{diff}");
}

#[test]
fn a_gateway_object_compiles_for_the_proxy_it_selects() {
    let mut args = with_bookinfo(&[], &["--gateway", "bookinfo/bookinfo-gateway"]);
    args.insert(5, bookinfo("networking/bookinfo-gateway.yaml"));
    let run = meshctl(&args);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("0.0.0.0_8080"), "{}", run.stdout);
    let route = run
        .stdout
        .lines()
        .find(|l| l.contains("/productpage"))
        .unwrap_or_else(|| panic!("no /productpage route:\n{}", run.stdout));
    assert!(route.ends_with("bookinfo/bookinfo"), "{route}");
    assert!(
        run.stderr.contains("stand-in gateway proxy"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_missing_file_or_proxy_is_an_error_that_names_it() {
    let run = meshctl(&[
        "-f".into(),
        "/nonexistent.yaml".into(),
        "--pod".into(),
        "a/b".into(),
    ]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("/nonexistent.yaml: does not exist"),
        "{}",
        run.stderr
    );
    let run = meshctl(&with_bookinfo(&[], &["--pod", "reviews"]));
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("matches 3 pods"), "{}", run.stderr);
}
