//! Golden rule sets for representative configs, both families per file.
//! Refresh with `UPDATE_GOLDEN=1 cargo test -p meshkeeper-init`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use meshkeeper_init::capture::CaptureConfig;
use meshkeeper_init::rules;

const CASES: &[(&str, &[&str])] = &[
    ("default", &[]),
    (
        "excludes",
        &[
            "--exclude-outbound-ip-ranges=10.96.0.0/12,169.254.169.254/32,fd00:10:96::/112",
            "--exclude-outbound-ports=5432,6379",
            "--exclude-inbound-ports=9000,9001",
            "--exclude-interfaces=net1,veth+",
        ],
    ),
    (
        "include-only-ranges",
        &[
            "--include-outbound-ip-ranges=10.0.0.0/8,172.16.0.0/12",
            "--exclude-outbound-ip-ranges=10.1.0.0/16",
        ],
    ),
    (
        "include-inbound-list",
        &[
            "--include-inbound-ports=8080,9090",
            "--exclude-inbound-ports=9090",
        ],
    ),
    (
        "ipv6-ranges",
        &[
            "--include-outbound-ip-ranges=fd00::/8,2001:db8::/32",
            "--exclude-outbound-ip-ranges=fd00:1::/32",
        ],
    ),
    (
        "no-capture-lists",
        &["--include-outbound-ip-ranges=", "--include-inbound-ports="],
    ),
    (
        "custom-proxy",
        &[
            "--proxy-uid=2000",
            "--proxy-gid=3000",
            "--outbound-capture-port=16001",
            "--inbound-capture-port=16006",
        ],
    ),
    ("mode-none", &["--interception-mode=NONE"]),
    (
        "include-outbound-ports",
        &[
            "--include-outbound-ip-ranges=",
            "--include-outbound-ports=443,8443",
            "--exclude-outbound-ports=8443",
            "--status-port=15555",
        ],
    ),
    (
        "virtual-interfaces",
        &[
            "--reroute-virtual-interfaces=k6t-eth0,tap0",
            "--include-outbound-ip-ranges=10.0.0.0/8,fd00::/8",
            "--exclude-outbound-ip-ranges=10.1.0.0/16",
            "--exclude-outbound-ports=5432",
            "--include-outbound-ports=9443",
            "--exclude-interfaces=net1",
        ],
    ),
];

fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.rules"))
}

fn rendered(args: &[&str]) -> String {
    let config = CaptureConfig::from_args(args.iter().map(ToString::to_string)).unwrap();
    format!(
        "# meshkeeper-init {}\n{}",
        args.join(" "),
        rules::dry_run_text(&config)
    )
}

#[test]
fn rule_sets_match_the_golden_files() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut mismatches = Vec::new();
    for (name, args) in CASES {
        let actual = rendered(args);
        let path = golden_path(name);
        if update {
            std::fs::write(&path, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_else(|err| {
            panic!("{}: {err}; create it with UPDATE_GOLDEN=1", path.display())
        });
        if actual != expected {
            mismatches.push(format!("{} differs; actual:\n{actual}", path.display()));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{}\nrefresh with UPDATE_GOLDEN=1 cargo test -p meshkeeper-init",
        mismatches.join("\n")
    );
}

#[test]
fn every_golden_file_has_a_case() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let stem = name.strip_suffix(".rules").unwrap_or(&name).to_string();
        assert!(
            CASES.iter().any(|(case, _)| *case == stem),
            "tests/golden/{name} belongs to no case"
        );
    }
}
