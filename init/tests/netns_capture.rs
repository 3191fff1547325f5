//! The proof that the rules capture real traffic: a "pod" and a "peer" network namespace joined
//! by a veth pair (10.77.0.0/24 and fd77::/64, private test ranges that exist only inside
//! these two namespaces). The real `meshkeeper-init` binary installs the rules in the pod
//! namespace under `ip netns exec`; listeners and clients run in the namespaces, from threads
//! that entered them with setns. Needs root, iproute2 and iptables
//! (`bash e2e/bin/install-deps`); it fails, never skips, without them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns};
use nix::sys::socket::{getsockopt, setsockopt, sockopt};
use nix::sys::time::TimeVal;

const BIN: &str = env!("CARGO_BIN_EXE_meshkeeper-init");
/// The longest any single step may take; a step normally takes milliseconds.
const DEADLINE: Duration = Duration::from_secs(5);
const PROXY_ID: u32 = 1337;

const POD_V4: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 1));
const PEER_V4: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 2));
const POD_V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 1));
const PEER_V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 2));

/// The application's port in the pod, and the peer's two services.
const APP_PORT: u16 = 8080;
const PEER_WEB_PORT: u16 = 9090;
const PEER_DB_PORT: u16 = 5432;
/// Excluded outbound in every capture test.
const EXCLUDE_DB: &str = "--exclude-outbound-ports=5432";

fn preflight() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "netns_capture must run as root: it creates network namespaces and installs iptables rules"
    );
    let tools: [(&str, &[&str]); 7] = [
        ("ip", &["-V"]),
        ("iptables-restore", &["--version"]),
        ("ip6tables-restore", &["--version"]),
        ("iptables-save", &["--version"]),
        ("ip6tables-save", &["--version"]),
        ("bash", &["--version"]),
        ("timeout", &["--version"]),
    ];
    for (tool, args) in tools {
        match Command::new(tool).args(args).output() {
            Ok(output) if output.status.success() => {}
            other => panic!(
                "netns_capture needs `{tool}` ({other:?}); install iproute2 and iptables with: \
                 bash e2e/bin/install-deps"
            ),
        }
    }
}

fn checked(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("{command:?}: {err}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Polls `condition` until it holds; fails with `what` after [`DEADLINE`].
fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A named network namespace, deleted on drop (also when a test fails).
struct Netns {
    name: String,
}

impl Netns {
    fn create(name: String) -> Netns {
        checked(Command::new("ip").args(["netns", "add", &name]));
        Netns { name }
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, program]);
        command
    }

    fn run(&self, program: &str, args: &[&str]) -> Output {
        self.command(program).args(args).output().unwrap()
    }

    fn ok(&self, program: &str, args: &[&str]) -> String {
        checked(self.command(program).args(args))
    }

    /// Runs `f` on a thread that has entered this namespace: sockets and child processes it
    /// creates belong to the namespace.
    fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = Path::new("/run/netns").join(&self.name);
        std::thread::scope(|scope| {
            let thread = scope.spawn(|| {
                let file = File::open(&path).unwrap();
                setns(&file, CloneFlags::CLONE_NEWNET).unwrap();
                f()
            });
            thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// `iptables-save -t nat` of both families, without the timestamp comments and counters,
    /// so two saves of the same rules compare equal.
    fn nat_rules(&self) -> String {
        let mut rules = String::new();
        for save in ["iptables-save", "ip6tables-save"] {
            for line in self.ok(save, &["-t", "nat"]).lines() {
                if line.starts_with('#') {
                    continue;
                }
                let line = match line.split_once(" [") {
                    Some((chain, _counters)) if line.starts_with(':') => chain,
                    _ => line,
                };
                rules.push_str(line);
                rules.push('\n');
            }
        }
        rules
    }

    /// Runs the real init container binary in this namespace.
    fn init(&self, args: &[&str]) -> Output {
        self.run(BIN, args)
    }

    fn init_ok(&self, args: &[&str]) {
        let output = self.init(args);
        assert!(
            output.status.success(),
            "meshkeeper-init {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace also deletes its end of the veth pair, and with it the other.
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

struct Net {
    pod: Netns,
    peer: Netns,
    /// The pod's end of the veth pair.
    pod_if: String,
}

/// Two namespaces named after `tag` and this process, joined by a veth pair with both
/// families' addresses, up and routable.
fn setup(tag: char) -> Net {
    preflight();
    let pid = std::process::id();
    let pod = Netns::create(format!("mk-{tag}-pod-{pid}"));
    let peer = Netns::create(format!("mk-{tag}-peer-{pid}"));
    // Interface names have at most 15 characters; a pid has at most 7 digits.
    let pod_if = format!("mk{tag}{pid}p");
    let peer_if = format!("mk{tag}{pid}q");
    checked(Command::new("ip").args([
        "link", "add", &pod_if, "netns", &pod.name, "type", "veth", "peer", "name", &peer_if,
        "netns", &peer.name,
    ]));
    for (ns, ifname, v4, v6) in [
        (&pod, &pod_if, POD_V4, POD_V6),
        (&peer, &peer_if, PEER_V4, PEER_V6),
    ] {
        ns.ok("ip", &["link", "set", "lo", "up"]);
        ns.ok("ip", &["addr", "add", &format!("{v4}/24"), "dev", ifname]);
        // nodad: the address is usable at once instead of after duplicate detection.
        ns.ok(
            "ip",
            &[
                "-6",
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                ifname,
                "nodad",
            ],
        );
        ns.ok("ip", &["link", "set", ifname, "up"]);
    }
    for (ns, remote_v4, remote_v6) in [(&pod, PEER_V4, PEER_V6), (&peer, POD_V4, POD_V6)] {
        wait_until(
            &format!("routes to {remote_v4} and {remote_v6} in {}", ns.name),
            || {
                let v4 = ns.run("ip", &["route", "get", &remote_v4.to_string()]);
                let v6 = ns.run("ip", &["-6", "route", "get", &remote_v6.to_string()]);
                v4.status.success() && v6.status.success()
            },
        );
    }
    Net { pod, peer, pod_if }
}

/// A listener in a namespace that gives up accepting after [`DEADLINE`].
struct Listener {
    inner: TcpListener,
    what: String,
}

impl Listener {
    fn bind(ns: &Netns, unspecified: IpAddr, port: u16, what: &str) -> Listener {
        let inner = ns
            .enter(|| TcpListener::bind((unspecified, port)))
            .unwrap_or_else(|err| panic!("binding {what} on port {port}: {err}"));
        // Linux applies the receive timeout to accept(), which bounds every wait below.
        setsockopt(&inner, sockopt::ReceiveTimeout, &TimeVal::new(5, 0)).unwrap();
        Listener {
            inner,
            what: what.to_string(),
        }
    }

    /// A connection already queued, without waiting.
    fn pending(&self) -> Option<(TcpStream, SocketAddr)> {
        self.inner.set_nonblocking(true).unwrap();
        let result = self.inner.accept();
        self.inner.set_nonblocking(false).unwrap();
        match result {
            Ok(accepted) => Some(accepted),
            Err(err) if err.kind() == ErrorKind::WouldBlock => None,
            Err(err) => panic!("accept on {}: {err}", self.what),
        }
    }
}

/// Waits for the connection just made to arrive at `expected`, and checks it arrived at none
/// of `others`; when it does not arrive, says where it went instead.
fn lands_on(expected: &Listener, others: &[&Listener]) -> (TcpStream, SocketAddr) {
    match expected.inner.accept() {
        Ok(accepted) => {
            for other in others {
                if let Some((_, from)) = other.pending() {
                    panic!("a connection from {from} reached {} as well", other.what);
                }
            }
            accepted
        }
        Err(err) => {
            let elsewhere: Vec<String> = others
                .iter()
                .filter_map(|other| {
                    other
                        .pending()
                        .map(|(_, from)| format!("{} (from {from})", other.what))
                })
                .collect();
            panic!(
                "no connection reached {} ({err}); it reached: {elsewhere:?}",
                expected.what
            )
        }
    }
}

/// The destination the client asked for, before the REDIRECT rewrote it.
fn original_destination(stream: &TcpStream) -> SocketAddr {
    if stream.local_addr().unwrap().is_ipv4() {
        let raw = getsockopt(stream, sockopt::OriginalDst).unwrap();
        SocketAddr::from((
            Ipv4Addr::from(u32::from_be(raw.sin_addr.s_addr)),
            u16::from_be(raw.sin_port),
        ))
    } else {
        let raw = getsockopt(stream, sockopt::Ip6tOriginalDst).unwrap();
        SocketAddr::from((
            Ipv6Addr::from(raw.sin6_addr.s6_addr),
            u16::from_be(raw.sin6_port),
        ))
    }
}

/// Connects from `ns` as root, like an application container.
fn connect(ns: &Netns, to: SocketAddr) -> TcpStream {
    ns.enter(|| TcpStream::connect_timeout(&to, DEADLINE))
        .unwrap_or_else(|err| panic!("connecting from {} to {to}: {err}", ns.name))
}

/// Connects from `ns` in a process running as the proxy's UID and GID, like Envoy.
fn connect_as_proxy(ns: &Netns, to: SocketAddr) {
    let output = ns.enter(|| {
        Command::new("timeout")
            .args(["5", "bash", "-c", "exec 3<>/dev/tcp/$0/$1"])
            .arg(to.ip().to_string())
            .arg(to.port().to_string())
            .uid(PROXY_ID)
            .gid(PROXY_ID)
            .output()
            .unwrap()
    });
    assert!(
        output.status.success(),
        "connecting as UID {PROXY_ID} from {} to {to}: {}",
        ns.name,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Every capture scenario for one family, with the proxy's listeners stood up in the pod.
fn capture_scenarios(net: &Net, pod: IpAddr, peer: IpAddr, any: IpAddr, loopback: IpAddr) {
    let outbound = Listener::bind(&net.pod, any, 15001, "the outbound capture port 15001");
    let inbound = Listener::bind(&net.pod, any, 15006, "the inbound capture port 15006");
    let app = Listener::bind(&net.pod, any, APP_PORT, "the pod's application");
    let health = Listener::bind(&net.pod, any, 15021, "the pod's health port 15021");
    let web = Listener::bind(&net.peer, any, PEER_WEB_PORT, "the peer's web listener");
    let db = Listener::bind(&net.peer, any, PEER_DB_PORT, "the peer's database listener");

    // Before the rules, the pod reaches the peer directly (the network itself works).
    let _client = connect(&net.pod, (peer, PEER_WEB_PORT).into());
    lands_on(&web, &[&outbound]);

    net.pod.init_ok(&[EXCLUDE_DB]);

    // (a) the application's outbound connection lands on 15001, original destination intact.
    let _client = connect(&net.pod, (peer, PEER_WEB_PORT).into());
    let (captured, _) = lands_on(&outbound, &[&web, &inbound]);
    assert_eq!(
        original_destination(&captured),
        SocketAddr::from((peer, PEER_WEB_PORT))
    );

    // (b) the peer's connection to the application lands on 15006.
    let _client = connect(&net.peer, (pod, APP_PORT).into());
    let (captured, from) = lands_on(&inbound, &[&app, &outbound]);
    assert_eq!(from.ip(), peer);
    assert_eq!(
        original_destination(&captured),
        SocketAddr::from((pod, APP_PORT))
    );

    // The sidecar's own ports are never captured inbound.
    let _client = connect(&net.peer, (pod, 15021).into());
    lands_on(&health, &[&inbound]);

    // (c) the proxy's own upstream connection goes straight to the peer.
    connect_as_proxy(&net.pod, (peer, PEER_WEB_PORT).into());
    let (_, from) = lands_on(&web, &[&outbound, &inbound]);
    assert_eq!(from.ip(), pod);

    // (d) an excluded outbound port goes straight to the peer.
    let _client = connect(&net.pod, (peer, PEER_DB_PORT).into());
    lands_on(&db, &[&outbound]);

    // Loopback: the application talking to itself, by loopback or by its own address, is not
    // captured; the proxy calling the pod's own address is inbound traffic for the pod.
    let _client = connect(&net.pod, (loopback, APP_PORT).into());
    lands_on(&app, &[&outbound, &inbound]);
    let _client = connect(&net.pod, (pod, APP_PORT).into());
    lands_on(&app, &[&outbound, &inbound]);
    connect_as_proxy(&net.pod, (pod, APP_PORT).into());
    let (captured, _) = lands_on(&inbound, &[&app, &outbound]);
    assert_eq!(
        original_destination(&captured),
        SocketAddr::from((pod, APP_PORT))
    );
}

#[test]
fn ipv4_tcp_is_captured() {
    let net = setup('4');
    capture_scenarios(
        &net,
        POD_V4,
        PEER_V4,
        Ipv4Addr::UNSPECIFIED.into(),
        Ipv4Addr::LOCALHOST.into(),
    );
}

#[test]
fn ipv6_tcp_is_captured() {
    let net = setup('6');
    capture_scenarios(
        &net,
        POD_V6,
        PEER_V6,
        Ipv6Addr::UNSPECIFIED.into(),
        Ipv6Addr::LOCALHOST.into(),
    );
}

fn count_lines(rules: &str, line: &str) -> usize {
    rules.lines().filter(|candidate| *candidate == line).count()
}

/// One jump from PREROUTING and one from OUTPUT per family.
fn assert_single_jumps(rules: &str, context: &str) {
    for jump in [
        "-A PREROUTING -p tcp -j MESHKEEPER_INBOUND",
        "-A OUTPUT -p tcp -j MESHKEEPER_OUTBOUND",
    ] {
        assert_eq!(
            count_lines(rules, jump),
            2,
            "{context}: {jump:?} in\n{rules}"
        );
    }
}

#[test]
fn rerunning_leaves_the_same_rules() {
    let net = setup('r');
    let untouched = net.pod.nat_rules();

    let output = net.pod.init(&["--dry-run", EXCLUDE_DB]);
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("-j MESHKEEPER_REDIRECT"));
    assert_eq!(
        net.pod.nat_rules(),
        untouched,
        "--dry-run changed the rules"
    );

    net.pod.init_ok(&["--interception-mode=NONE"]);
    assert_eq!(net.pod.nat_rules(), untouched, "mode NONE installed rules");

    net.pod.init_ok(&[EXCLUDE_DB]);
    let first = net.pod.nat_rules();
    assert_ne!(first, untouched);
    assert_single_jumps(&first, "after the first run");

    net.pod.init_ok(&[EXCLUDE_DB]);
    let second = net.pod.nat_rules();
    assert_eq!(second, first, "the second run changed the rule set");

    // A rerun with other settings replaces the rules instead of adding to them.
    net.pod.init_ok(&["--exclude-outbound-ports=6379"]);
    let changed = net.pod.nat_rules();
    assert_single_jumps(&changed, "after a run with other settings");
    assert!(!changed.contains("--dport 5432"), "{changed}");
    assert!(changed.contains("--dport 6379 -j RETURN"), "{changed}");
}

/// Every golden config is accepted by the real iptables-restore of both families (the
/// golden file's first line holds its arguments).
#[test]
fn every_golden_config_applies() {
    let net = setup('g');
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut applied = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let header = text.lines().next().unwrap();
        let args: Vec<&str> = header
            .strip_prefix("# meshkeeper-init")
            .unwrap_or_else(|| panic!("{}: first line is not the arguments", path.display()))
            .split_whitespace()
            .collect();
        let before = net.pod.nat_rules();
        net.pod.init_ok(&args);
        let after = net.pod.nat_rules();
        if args.contains(&"--interception-mode=NONE") {
            assert_eq!(
                after,
                before,
                "{}: mode NONE changed the rules",
                path.display()
            );
        } else {
            assert_single_jumps(&after, &path.display().to_string());
        }
        applied += 1;
    }
    assert!(applied >= 6, "only {applied} golden files");
}

/// `includeOutboundPorts` captures a port whatever the address, the status port stays out of
/// inbound capture, and what arrives on a rerouted virtual interface is treated as outbound.
#[test]
fn included_ports_status_port_and_virtual_interfaces() {
    let net = setup('v');
    let any: IpAddr = Ipv4Addr::UNSPECIFIED.into();
    let outbound = Listener::bind(&net.pod, any, 15001, "the outbound capture port 15001");
    let inbound = Listener::bind(&net.pod, any, 15006, "the inbound capture port 15006");
    let app = Listener::bind(&net.pod, any, APP_PORT, "the pod's application");
    let status = Listener::bind(&net.pod, any, 15555, "the pod's custom status port");
    let pod_db = Listener::bind(&net.pod, any, PEER_DB_PORT, "a pod listener on 5432");
    let web = Listener::bind(&net.peer, any, PEER_WEB_PORT, "the peer's web listener");
    let db = Listener::bind(&net.peer, any, PEER_DB_PORT, "the peer's database listener");

    net.pod.init_ok(&[
        "--include-outbound-ip-ranges=",
        "--include-outbound-ports=9090",
        "--status-port=15555",
    ]);
    // No range is captured, but port 9090 is.
    let _client = connect(&net.pod, (PEER_V4, PEER_WEB_PORT).into());
    let (captured, _) = lands_on(&outbound, &[&web, &inbound]);
    assert_eq!(
        original_destination(&captured),
        SocketAddr::from((PEER_V4, PEER_WEB_PORT))
    );
    let _client = connect(&net.pod, (PEER_V4, PEER_DB_PORT).into());
    lands_on(&db, &[&outbound]);
    // The custom status port is not captured; the application's port still is.
    let _client = connect(&net.peer, (POD_V4, 15555).into());
    lands_on(&status, &[&inbound]);
    let _client = connect(&net.peer, (POD_V4, APP_PORT).into());
    lands_on(&inbound, &[&app, &outbound]);

    // Now the pod's veth plays the VM's interface: what arrives there is outbound traffic.
    let virtual_if = format!("--reroute-virtual-interfaces={}", net.pod_if);
    net.pod.init_ok(&[virtual_if.as_str(), EXCLUDE_DB]);
    let _client = connect(&net.peer, (POD_V4, APP_PORT).into());
    let (captured, _) = lands_on(&outbound, &[&inbound, &app]);
    assert_eq!(
        original_destination(&captured),
        SocketAddr::from((POD_V4, APP_PORT))
    );
    // An excluded outbound port is excluded for the VM too: untouched, not inbound-captured.
    let _client = connect(&net.peer, (POD_V4, PEER_DB_PORT).into());
    lands_on(&pod_db, &[&outbound, &inbound]);
}
