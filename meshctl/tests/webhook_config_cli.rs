//! `meshctl webhook-config` prints the configurations the API server
//! accepts for a webhook running at a URL: injection and validation.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is a failed assertion

use std::process::Command;

fn meshctl(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_meshctl"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn prints_every_entry_pointing_at_the_url_with_the_ca() {
    let dir = std::env::temp_dir().join(format!("meshctl-webhook-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.crt");
    std::fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let out = meshctl(&[
        "webhook-config",
        "--url",
        "https://127.0.0.1:9443",
        "--ca-bundle-file",
        &ca.to_string_lossy(),
    ]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs =
        meshkeeper_crds::parse::yaml_documents(&String::from_utf8_lossy(&out.stdout)).unwrap();
    let [config, validating] = docs.as_slice() else {
        panic!("{docs:?}")
    };
    assert_eq!(config["kind"], "MutatingWebhookConfiguration");
    let webhooks = config["webhooks"].as_array().unwrap();
    assert_eq!(
        webhooks.len(),
        4,
        "the default revision answers all four selectors"
    );
    for w in webhooks {
        let url = w["clientConfig"]["url"].as_str().unwrap();
        assert!(url.starts_with("https://127.0.0.1:9443/inject/"), "{url}");
        assert!(
            w["clientConfig"]["caBundle"]
                .as_str()
                .is_some_and(|b| !b.is_empty())
        );
        assert_eq!(w["reinvocationPolicy"], "IfNeeded");
    }

    assert_eq!(validating["kind"], "ValidatingWebhookConfiguration");
    assert_eq!(validating["metadata"]["name"], "meshkeeper-validator");
    let [entry] = validating["webhooks"].as_array().unwrap().as_slice() else {
        panic!("{validating}")
    };
    assert_eq!(
        entry["clientConfig"]["url"],
        "https://127.0.0.1:9443/validate"
    );
    assert!(
        entry["clientConfig"]["caBundle"]
            .as_str()
            .is_some_and(|b| !b.is_empty())
    );
    assert_eq!(entry["failurePolicy"], "Fail");
    assert_eq!(entry["sideEffects"], "None");
    assert_eq!(
        entry["rules"][0]["operations"],
        serde_json::json!(["CREATE", "UPDATE", "DELETE"])
    );
}

#[test]
fn refuses_a_plain_http_url_naming_the_rule() {
    let out = meshctl(&[
        "webhook-config",
        "--url",
        "http://127.0.0.1:9443",
        "--ca-bundle-file",
        "/dev/null",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("must start with https://"));
}
