//! The capture rules as `iptables-restore` input: pure functions of a [`CaptureConfig`] (and,
//! for a rerun, of the table as `iptables-save` prints it). The chain layout is described in
//! the crate documentation.

use std::fmt::Write as _;

use crate::capture::{CaptureConfig, Cidr, IpRanges, NEVER_CAPTURED_INBOUND_PORTS, Ports};

/// Inbound TCP (nat PREROUTING) is sorted here: excluded traffic returns, the rest goes to
/// [`IN_REDIRECT_CHAIN`].
pub const INBOUND_CHAIN: &str = "MESHKEEPER_INBOUND";
/// Outbound TCP (nat OUTPUT) is sorted here: the proxy's own traffic, loopback and excluded
/// traffic return, the rest goes to [`REDIRECT_CHAIN`].
pub const OUTBOUND_CHAIN: &str = "MESHKEEPER_OUTBOUND";
/// Redirects to Envoy's outbound listener.
pub const REDIRECT_CHAIN: &str = "MESHKEEPER_REDIRECT";
/// Redirects to Envoy's inbound listener.
pub const IN_REDIRECT_CHAIN: &str = "MESHKEEPER_IN_REDIRECT";
/// The chains this crate owns, in the order they are declared.
pub const CHAINS: [&str; 4] = [
    INBOUND_CHAIN,
    OUTBOUND_CHAIN,
    REDIRECT_CHAIN,
    IN_REDIRECT_CHAIN,
];

/// An IP family: each has its own tables and its own restore command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];

    pub fn restore_command(self) -> &'static str {
        match self {
            Family::V4 => "iptables-restore",
            Family::V6 => "ip6tables-restore",
        }
    }

    pub fn save_command(self) -> &'static str {
        match self {
            Family::V4 => "iptables-save",
            Family::V6 => "ip6tables-save",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }

    fn loopback(self) -> &'static str {
        match self {
            Family::V4 => "127.0.0.1/32",
            Family::V6 => "::1/128",
        }
    }

    /// The source address Envoy binds when it forwards inbound traffic to the application, so
    /// that connection is recognisable and not captured a second time.
    fn inbound_passthrough_source(self) -> &'static str {
        match self {
            Family::V4 => "127.0.0.6/32",
            Family::V6 => "::6/128",
        }
    }

    fn holds(self, cidr: &Cidr) -> bool {
        cidr.is_ipv4() == (self == Family::V4)
    }
}

/// The complete `iptables-restore --noflush` input (`ip6tables-restore` for V6) that installs
/// `cfg`'s capture for `family`. Applying it again replaces the previous rules in the
/// meshkeeper chains; the jumps into them are made unique by [`reconciled_restore_input`].
/// For interception mode NONE it is a comment only: nothing is installed.
pub fn iptables_restore_input(cfg: &CaptureConfig, family: Family) -> String {
    render(cfg, family, &[])
}

/// [`iptables_restore_input`] preceded by the deletion of every jump into a meshkeeper chain
/// that `current_nat` (the output of `iptables-save -t nat`) shows, so that a rerun leaves
/// exactly one jump from PREROUTING and one from OUTPUT, in one atomic transaction.
pub fn reconciled_restore_input(cfg: &CaptureConfig, family: Family, current_nat: &str) -> String {
    render(cfg, family, &stale_jumps(current_nat))
}

/// The `-D` lines that delete, from chains we do not own, each rule whose target is one of
/// our chains.
pub fn stale_jumps(current_nat: &str) -> Vec<String> {
    let mut in_nat = false;
    let mut deletions = Vec::new();
    for line in current_nat.lines().map(str::trim) {
        if let Some(table) = line.strip_prefix('*') {
            in_nat = table == "nat";
            continue;
        }
        let Some(rule) = line.strip_prefix("-A ") else {
            continue;
        };
        let mut tokens = rule.split_whitespace();
        let Some(chain) = tokens.next() else {
            continue;
        };
        if !in_nat || CHAINS.contains(&chain) {
            continue;
        }
        let tokens: Vec<&str> = tokens.collect();
        let targets_ours = tokens
            .windows(2)
            .any(|pair| matches!(pair[0], "-j" | "-g") && CHAINS.contains(&pair[1]));
        if targets_ours {
            deletions.push(format!("-D {rule}"));
        }
    }
    deletions
}

/// Both families' input with a header each, as `--dry-run` prints it.
pub fn dry_run_text(cfg: &CaptureConfig) -> String {
    let mut text = String::new();
    for family in Family::ALL {
        // Infallible: writing to a String.
        let _ = writeln!(text, "# {} ({})", family.name(), family.restore_command());
        text.push_str(&iptables_restore_input(cfg, family));
    }
    text
}

fn render(cfg: &CaptureConfig, family: Family, deletions: &[String]) -> String {
    if cfg.captures_nothing() {
        return "# interception mode NONE: no rules are installed\n".to_string();
    }
    let mut lines = vec!["*nat".to_string()];
    lines.extend(deletions.iter().cloned());
    // Declaring a chain creates it if missing; the flush empties it if it already existed.
    lines.extend(CHAINS.iter().map(|chain| format!(":{chain} - [0:0]")));
    lines.extend(CHAINS.iter().map(|chain| format!("-F {chain}")));
    lines.extend(redirect_rules(cfg));
    lines.extend(inbound_rules(cfg, family));
    lines.extend(outbound_rules(cfg, family));
    lines.push(format!("-A PREROUTING -p tcp -j {INBOUND_CHAIN}"));
    lines.push(format!("-A OUTPUT -p tcp -j {OUTBOUND_CHAIN}"));
    lines.push("COMMIT".to_string());
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

fn redirect_rules(cfg: &CaptureConfig) -> Vec<String> {
    vec![
        format!(
            "-A {REDIRECT_CHAIN} -p tcp -j REDIRECT --to-ports {}",
            cfg.outbound_capture_port
        ),
        format!(
            "-A {IN_REDIRECT_CHAIN} -p tcp -j REDIRECT --to-ports {}",
            cfg.inbound_capture_port
        ),
    ]
}

/// Exclusions first (they win over an explicit include), then what virtual machines in the
/// pod send, then the capture itself.
fn inbound_rules(cfg: &CaptureConfig, family: Family) -> Vec<String> {
    let mut rules: Vec<String> = cfg
        .exclude_interfaces
        .iter()
        .map(|name| format!("-A {INBOUND_CHAIN} -i {name} -j RETURN"))
        .collect();
    for interface in &cfg.reroute_virtual_interfaces {
        rules.extend(virtual_interface_rules(cfg, family, interface));
    }
    // The status port is where the kubelet probes the proxy: capturing it would send the
    // probes into Envoy's inbound listener. The default one is already never captured.
    let status_port = (cfg.status_port != 0
        && !NEVER_CAPTURED_INBOUND_PORTS.contains(&cfg.status_port)
        && !cfg.exclude_inbound_ports.contains(&cfg.status_port))
    .then_some(&cfg.status_port);
    let excluded_ports = NEVER_CAPTURED_INBOUND_PORTS
        .iter()
        .chain(status_port)
        .chain(&cfg.exclude_inbound_ports);
    rules.extend(
        excluded_ports.map(|port| format!("-A {INBOUND_CHAIN} -p tcp --dport {port} -j RETURN")),
    );
    match &cfg.include_inbound_ports {
        Ports::All => rules.push(format!("-A {INBOUND_CHAIN} -p tcp -j {IN_REDIRECT_CHAIN}")),
        Ports::Only(ports) => rules.extend(ports.iter().map(|port| {
            format!("-A {INBOUND_CHAIN} -p tcp --dport {port} -j {IN_REDIRECT_CHAIN}")
        })),
    }
    rules
}

/// A virtual machine inside the pod (KubeVirt) reaches the network through `interface`: what
/// arrives there is the VM's outbound traffic, so it gets the outbound decisions (the
/// exclusions, then the includes) with `-i` in place of the owner rules, and whatever is not
/// redirected to the outbound listener passes untouched, never into the inbound one. Unlike
/// Istio, the outbound exclusions apply here too: a range or port the pod's author excluded
/// stays excluded for the VM.
fn virtual_interface_rules(cfg: &CaptureConfig, family: Family, interface: &str) -> Vec<String> {
    let chain = format!("-A {INBOUND_CHAIN} -i {interface}");
    let mut rules: Vec<String> = cfg
        .exclude_outbound_ports
        .iter()
        .map(|port| format!("{chain} -p tcp --dport {port} -j RETURN"))
        .collect();
    rules.extend(
        cfg.exclude_outbound_ip_ranges
            .iter()
            .filter(|cidr| family.holds(cidr))
            .map(|cidr| format!("{chain} -d {cidr} -j RETURN")),
    );
    rules.extend(
        cfg.include_outbound_ports
            .iter()
            .map(|port| format!("{chain} -p tcp --dport {port} -j {REDIRECT_CHAIN}")),
    );
    match &cfg.include_outbound_ip_ranges {
        IpRanges::All => rules.push(format!("{chain} -j {REDIRECT_CHAIN}")),
        IpRanges::Only(cidrs) => rules.extend(
            cidrs
                .iter()
                .filter(|cidr| family.holds(cidr))
                .map(|cidr| format!("{chain} -d {cidr} -j {REDIRECT_CHAIN}")),
        ),
    }
    rules.push(format!("{chain} -j RETURN"));
    rules
}

fn outbound_rules(cfg: &CaptureConfig, family: Family) -> Vec<String> {
    let chain = OUTBOUND_CHAIN;
    let mut rules: Vec<String> = cfg
        .exclude_interfaces
        .iter()
        .map(|name| format!("-A {chain} -o {name} -j RETURN"))
        .collect();
    rules.extend(
        cfg.exclude_outbound_ports
            .iter()
            .map(|port| format!("-A {chain} -p tcp --dport {port} -j RETURN")),
    );
    rules.extend(proxy_and_loopback_rules(cfg, family));
    rules.extend(
        cfg.exclude_outbound_ip_ranges
            .iter()
            .filter(|cidr| family.holds(cidr))
            .map(|cidr| format!("-A {chain} -d {cidr} -j RETURN")),
    );
    // After the exclusions (which win), before the ranges: an included port is captured
    // whatever the destination address, as in Istio.
    rules.extend(
        cfg.include_outbound_ports
            .iter()
            .map(|port| format!("-A {chain} -p tcp --dport {port} -j {REDIRECT_CHAIN}")),
    );
    match &cfg.include_outbound_ip_ranges {
        IpRanges::All => rules.push(format!("-A {chain} -j {REDIRECT_CHAIN}")),
        IpRanges::Only(cidrs) => rules.extend(
            cidrs
                .iter()
                .filter(|cidr| family.holds(cidr))
                .map(|cidr| format!("-A {chain} -d {cidr} -j {REDIRECT_CHAIN}")),
        ),
    }
    rules
}

/// Why each rule, in order:
/// - Envoy forwarding inbound traffic to the application binds the passthrough source on
///   loopback; capturing it would loop it back into Envoy.
/// - The proxy calling the pod's own (non-loopback) address travels over `lo`; that is
///   inbound traffic for this pod, so it goes to the inbound listener where inbound policy
///   applies.
/// - Anything else over `lo` that is not the proxy's is the application talking to itself:
///   not captured.
/// - The proxy's own traffic (its upstream connections) goes straight out.
/// - Traffic to the loopback address is never captured.
///
/// Each owner rule exists for the UID and for the GID, so either identifies the proxy.
fn proxy_and_loopback_rules(cfg: &CaptureConfig, family: Family) -> Vec<String> {
    let chain = OUTBOUND_CHAIN;
    let loopback = family.loopback();
    let mut rules = vec![format!(
        "-A {chain} -o lo -s {} -j RETURN",
        family.inbound_passthrough_source()
    )];
    for owner in [
        format!("--uid-owner {}", cfg.proxy_uid),
        format!("--gid-owner {}", cfg.proxy_gid),
    ] {
        rules.push(format!(
            "-A {chain} -o lo ! -d {loopback} -p tcp -m owner {owner} -j {IN_REDIRECT_CHAIN}"
        ));
        rules.push(format!("-A {chain} -o lo -m owner ! {owner} -j RETURN"));
        rules.push(format!("-A {chain} -m owner {owner} -j RETURN"));
    }
    rules.push(format!("-A {chain} -d {loopback} -j RETURN"));
    rules
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::Setting;

    fn config(settings: &[(Setting, &str)]) -> CaptureConfig {
        let mut config = CaptureConfig::default();
        for (setting, value) in settings {
            config.apply(*setting, value).unwrap();
        }
        config
    }

    #[test]
    fn cidrs_go_only_to_their_family() {
        let cfg = config(&[
            (Setting::IncludeOutboundIpRanges, "10.0.0.0/8,fd00::/8"),
            (Setting::ExcludeOutboundIpRanges, "10.1.0.0/16,fd00:1::/32"),
        ]);
        let v4 = iptables_restore_input(&cfg, Family::V4);
        let v6 = iptables_restore_input(&cfg, Family::V6);
        assert!(v4.contains("-d 10.0.0.0/8 -j MESHKEEPER_REDIRECT"), "{v4}");
        assert!(v4.contains("-d 10.1.0.0/16 -j RETURN"), "{v4}");
        assert!(!v4.contains("fd00"), "{v4}");
        assert!(v6.contains("-d fd00::/8 -j MESHKEEPER_REDIRECT"), "{v6}");
        assert!(v6.contains("-d fd00:1::/32 -j RETURN"), "{v6}");
        assert!(!v6.contains("10."), "{v6}");
        assert!(v6.contains("-d ::1/128 -j RETURN"), "{v6}");
    }

    #[test]
    fn the_proxy_is_exempt_before_anything_is_redirected() {
        let v4 = iptables_restore_input(&CaptureConfig::default(), Family::V4);
        let exempt = v4.find("-m owner --uid-owner 1337 -j RETURN").unwrap();
        let redirect = v4
            .find("-A MESHKEEPER_OUTBOUND -j MESHKEEPER_REDIRECT")
            .unwrap();
        assert!(exempt < redirect, "{v4}");
        assert!(v4.contains("-m owner --gid-owner 1337 -j RETURN"), "{v4}");
    }

    #[test]
    fn mode_none_installs_nothing() {
        let cfg = config(&[(Setting::InterceptionMode, "NONE")]);
        for family in Family::ALL {
            let input = iptables_restore_input(&cfg, family);
            assert!(input.lines().all(|line| line.starts_with('#')), "{input}");
        }
    }

    #[test]
    fn included_outbound_ports_come_after_the_exclusions() {
        let cfg = config(&[
            (Setting::IncludeOutboundIpRanges, ""),
            (Setting::ExcludeOutboundIpRanges, "169.254.169.254/32"),
            (Setting::IncludeOutboundPorts, "443"),
        ]);
        let v4 = iptables_restore_input(&cfg, Family::V4);
        let include = v4
            .find("-A MESHKEEPER_OUTBOUND -p tcp --dport 443 -j MESHKEEPER_REDIRECT")
            .unwrap();
        let exclude = v4.find("-d 169.254.169.254/32 -j RETURN").unwrap();
        let proxy = v4.find("-m owner --gid-owner 1337 -j RETURN").unwrap();
        assert!(exclude < include && proxy < include, "{v4}");
        // No range is included, so nothing else is redirected outbound.
        assert_eq!(v4.matches("-j MESHKEEPER_REDIRECT").count(), 1, "{v4}");
    }

    #[test]
    fn the_status_port_is_never_captured_inbound() {
        let inbound_returns = |cfg: &CaptureConfig| -> Vec<String> {
            iptables_restore_input(cfg, Family::V4)
                .lines()
                .filter(|line| line.starts_with("-A MESHKEEPER_INBOUND -p tcp --dport"))
                .map(str::to_string)
                .collect()
        };
        let default = inbound_returns(&CaptureConfig::default());
        let custom = inbound_returns(&config(&[(Setting::StatusPort, "15555")]));
        assert_eq!(custom.len(), default.len() + 1, "{custom:?}");
        assert!(custom.contains(&"-A MESHKEEPER_INBOUND -p tcp --dport 15555 -j RETURN".into()));
        // The default port, 0 and an already excluded port add nothing.
        assert_eq!(
            inbound_returns(&config(&[(Setting::StatusPort, "15020")])),
            default
        );
        assert_eq!(
            inbound_returns(&config(&[(Setting::StatusPort, "0")])),
            default
        );
        let both = config(&[
            (Setting::StatusPort, "9000"),
            (Setting::ExcludeInboundPorts, "9000"),
        ]);
        assert_eq!(inbound_returns(&both).len(), default.len() + 1);
    }

    #[test]
    fn virtual_interfaces_get_the_outbound_decisions_and_never_the_inbound_one() {
        let cfg = config(&[
            (Setting::RerouteVirtualInterfaces, "k6t-eth0"),
            (Setting::IncludeOutboundIpRanges, "10.0.0.0/8,fd00::/8"),
            (Setting::ExcludeOutboundPorts, "5432"),
        ]);
        let v4 = iptables_restore_input(&cfg, Family::V4);
        let ours: Vec<&str> = v4.lines().filter(|l| l.contains("-i k6t-eth0")).collect();
        assert_eq!(
            ours,
            [
                "-A MESHKEEPER_INBOUND -i k6t-eth0 -p tcp --dport 5432 -j RETURN",
                "-A MESHKEEPER_INBOUND -i k6t-eth0 -d 10.0.0.0/8 -j MESHKEEPER_REDIRECT",
                "-A MESHKEEPER_INBOUND -i k6t-eth0 -j RETURN",
            ]
        );
        // Before the inbound capture, which would otherwise take the VM's traffic.
        let last = v4.find("-i k6t-eth0 -j RETURN").unwrap();
        let inbound = v4
            .find("-A MESHKEEPER_INBOUND -p tcp -j MESHKEEPER_IN_REDIRECT")
            .unwrap();
        assert!(last < inbound, "{v4}");
        let v6 = iptables_restore_input(&cfg, Family::V6);
        assert!(
            v6.contains("-i k6t-eth0 -d fd00::/8 -j MESHKEEPER_REDIRECT") && !v6.contains("10.0"),
            "{v6}"
        );
    }

    const SAVED: &str = "\
# Generated by iptables-save v1.8.9 (nf_tables)
*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:MESHKEEPER_INBOUND - [0:0]
:MESHKEEPER_OUTBOUND - [0:0]
:OTHER - [0:0]
-A PREROUTING -p tcp -j MESHKEEPER_INBOUND
-A PREROUTING -p tcp -j OTHER
-A OUTPUT -p tcp -j MESHKEEPER_OUTBOUND
-A OUTPUT -p tcp -j MESHKEEPER_OUTBOUND
-A MESHKEEPER_OUTBOUND -j MESHKEEPER_REDIRECT
-A OTHER -p tcp -m tcp --dport 1 -g MESHKEEPER_INBOUND
COMMIT
*filter
-A OUTPUT -j MESHKEEPER_OUTBOUND
COMMIT
";

    #[test]
    fn stale_jumps_are_deleted_once_each() {
        assert_eq!(
            stale_jumps(SAVED),
            [
                "-D PREROUTING -p tcp -j MESHKEEPER_INBOUND",
                "-D OUTPUT -p tcp -j MESHKEEPER_OUTBOUND",
                "-D OUTPUT -p tcp -j MESHKEEPER_OUTBOUND",
                "-D OTHER -p tcp -m tcp --dport 1 -g MESHKEEPER_INBOUND",
            ]
        );
        assert!(stale_jumps("").is_empty());
    }

    #[test]
    fn reconciled_input_deletes_before_it_adds() {
        let input = reconciled_restore_input(&CaptureConfig::default(), Family::V4, SAVED);
        let delete = input
            .find("-D PREROUTING -p tcp -j MESHKEEPER_INBOUND")
            .unwrap();
        let add = input
            .find("-A PREROUTING -p tcp -j MESHKEEPER_INBOUND")
            .unwrap();
        assert!(delete < add, "{input}");
        assert!(input.starts_with("*nat\n"), "{input}");
        assert!(input.ends_with("COMMIT\n"), "{input}");
    }
}
