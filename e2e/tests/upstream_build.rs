//! build-upstream fails at once, saying what is missing and how to provide
//! prebuilt binaries, when Go or the module proxy cannot be used.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is a failed assertion

use std::process::Command;

use meshkeeper_e2e::repo_root;

fn build_upstream(env: &[(&str, &str)]) -> (bool, String, String) {
    let cache = tempfile_dir();
    let mut cmd = Command::new(repo_root().join("e2e/bin/build-upstream"));
    cmd.env("MESHKEEPER_CACHE", &cache)
        .env_remove("MESHKEEPER_UPSTREAM_BIN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("build-upstream runs");
    let _ = std::fs::remove_dir_all(&cache);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "meshkeeper-build-upstream-test-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn without_go_it_says_so_and_how_to_bring_binaries() {
    // A PATH with bash and coreutils but no Go.
    assert!(
        !std::path::Path::new("/usr/bin/go").exists() && !std::path::Path::new("/bin/go").exists(),
        "this test needs Go installed outside /usr/bin and /bin"
    );
    let (ok, _, err) = build_upstream(&[("PATH", "/usr/bin:/bin")]);
    assert!(!ok);
    assert!(err.contains("Go is not installed"), "{err}");
    assert!(err.contains("MESHKEEPER_UPSTREAM_BIN="), "{err}");
}

#[test]
fn with_an_unreachable_proxy_it_fails_fast_naming_it() {
    let modcache = tempfile_dir();
    let (ok, _, err) = build_upstream(&[
        // Loopback port 9 (discard) refuses at once: no traffic leaves the machine.
        ("GOPROXY", "http://127.0.0.1:9"),
        ("GOMODCACHE", &modcache.to_string_lossy()),
        ("GOFLAGS", "-modcacherw"),
    ]);
    let _ = std::fs::remove_dir_all(&modcache);
    assert!(!ok);
    assert!(err.contains("module proxy (http://127.0.0.1:9)"), "{err}");
    assert!(err.contains("MESHKEEPER_UPSTREAM_BIN="), "{err}");
}

#[test]
fn prebuilt_folder_missing_a_binary_is_named() {
    let empty = tempfile_dir();
    let (ok, _, err) = build_upstream(&[("MESHKEEPER_UPSTREAM_BIN", &empty.to_string_lossy())]);
    let _ = std::fs::remove_dir_all(&empty);
    assert!(!ok);
    assert!(err.contains("has no executable 'etcd'"), "{err}");
}
