//! What the init container captures: the settings, how each is parsed and validated, and the
//! command-line form in which the sidecar injector hands them to the init container.
//!
//! Every setting that a pod annotation controls has a [`Setting`] whose value syntax is the
//! annotation's, so the injector can pass an annotation value through [`CaptureConfig::apply`]
//! unchanged and reject a bad one at admission time with the same message the init container
//! would print.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use clap::Parser;

/// The UID Envoy runs as; its traffic is never captured.
pub const DEFAULT_PROXY_UID: u32 = 1337;
/// The GID Envoy runs as; its traffic is never captured.
pub const DEFAULT_PROXY_GID: u32 = 1337;
/// Envoy's outbound listener.
pub const DEFAULT_OUTBOUND_CAPTURE_PORT: u16 = 15001;
/// Envoy's inbound listener.
pub const DEFAULT_INBOUND_CAPTURE_PORT: u16 = 15006;
/// Sidecar ports that inbound capture never touches, whatever the settings say: Envoy's
/// Prometheus endpoint (15090), the readiness endpoint kubelet probes (15021) and the agent's
/// merged-metrics port (15020). Capturing them would send the probes into Envoy's inbound
/// listener, which has no route for them.
pub const NEVER_CAPTURED_INBOUND_PORTS: [u16; 3] = [15090, 15021, 15020];
/// Istio's default status port (`status.sidecar.istio.io/port`); already among the
/// never-captured ports, so only another value adds a rule.
pub const DEFAULT_STATUS_PORT: u16 = 15020;

const PROXY_UID_FLAG: &str = "--proxy-uid";
const PROXY_GID_FLAG: &str = "--proxy-gid";
const OUTBOUND_CAPTURE_PORT_FLAG: &str = "--outbound-capture-port";
const INBOUND_CAPTURE_PORT_FLAG: &str = "--inbound-capture-port";
const ID_FORM: &str = "a numeric user or group id (0-4294967295)";
const PORT_FORM: &str = "a port number 1-65535";

/// The settings that pod annotations control.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setting {
    IncludeOutboundIpRanges,
    ExcludeOutboundIpRanges,
    IncludeInboundPorts,
    ExcludeInboundPorts,
    StatusPort,
    ExcludeOutboundPorts,
    IncludeOutboundPorts,
    ExcludeInterfaces,
    RerouteVirtualInterfaces,
    InterceptionMode,
}

impl Setting {
    /// Every setting, in the order `to_args` emits them.
    pub const ALL: [Setting; 10] = [
        Setting::IncludeOutboundIpRanges,
        Setting::ExcludeOutboundIpRanges,
        Setting::IncludeInboundPorts,
        Setting::ExcludeInboundPorts,
        Setting::StatusPort,
        Setting::ExcludeOutboundPorts,
        Setting::IncludeOutboundPorts,
        Setting::ExcludeInterfaces,
        Setting::RerouteVirtualInterfaces,
        Setting::InterceptionMode,
    ];

    /// The init container's long flag for this setting, with its leading `--`; the value goes
    /// after `=` (`--exclude-outbound-ports=9000`).
    pub fn flag(self) -> &'static str {
        match self {
            Setting::IncludeOutboundIpRanges => "--include-outbound-ip-ranges",
            Setting::ExcludeOutboundIpRanges => "--exclude-outbound-ip-ranges",
            Setting::IncludeInboundPorts => "--include-inbound-ports",
            Setting::ExcludeInboundPorts => "--exclude-inbound-ports",
            Setting::StatusPort => "--status-port",
            Setting::ExcludeOutboundPorts => "--exclude-outbound-ports",
            Setting::IncludeOutboundPorts => "--include-outbound-ports",
            Setting::ExcludeInterfaces => "--exclude-interfaces",
            Setting::RerouteVirtualInterfaces => "--reroute-virtual-interfaces",
            Setting::InterceptionMode => "--interception-mode",
        }
    }

    /// The Istio pod annotation that carries this setting.
    pub fn annotation(self) -> &'static str {
        match self {
            Setting::IncludeOutboundIpRanges => "traffic.sidecar.istio.io/includeOutboundIPRanges",
            Setting::ExcludeOutboundIpRanges => "traffic.sidecar.istio.io/excludeOutboundIPRanges",
            Setting::IncludeInboundPorts => "traffic.sidecar.istio.io/includeInboundPorts",
            Setting::ExcludeInboundPorts => "traffic.sidecar.istio.io/excludeInboundPorts",
            Setting::StatusPort => "status.sidecar.istio.io/port",
            Setting::ExcludeOutboundPorts => "traffic.sidecar.istio.io/excludeOutboundPorts",
            Setting::IncludeOutboundPorts => "traffic.sidecar.istio.io/includeOutboundPorts",
            Setting::ExcludeInterfaces => "traffic.sidecar.istio.io/excludeInterfaces",
            Setting::RerouteVirtualInterfaces => "istio.io/reroute-virtual-interfaces",
            Setting::InterceptionMode => "sidecar.istio.io/interceptionMode",
        }
    }

    /// Older names of [`Setting::annotation`] that Istio still reads when the current one is
    /// absent (the current one wins when both are set).
    pub fn deprecated_annotations(self) -> &'static [&'static str] {
        match self {
            Setting::RerouteVirtualInterfaces => &["traffic.sidecar.istio.io/kubevirtInterfaces"],
            _ => &[],
        }
    }

    /// A description of the values this setting accepts, for error messages and `--help`.
    pub fn accepted_form(self) -> &'static str {
        match self {
            Setting::IncludeOutboundIpRanges => {
                "\"*\" for all destinations, or comma-separated CIDRs such as \
                 10.0.0.0/8,fd00::/8 (an empty value captures no outbound traffic)"
            }
            Setting::ExcludeOutboundIpRanges => {
                "comma-separated CIDRs such as 10.96.0.0/12,fd00::/8 (may be empty)"
            }
            Setting::IncludeInboundPorts => {
                "\"*\" for all ports, or comma-separated ports 1-65535 such as 8080,9090 \
                 (an empty value captures no inbound traffic)"
            }
            Setting::ExcludeInboundPorts
            | Setting::ExcludeOutboundPorts
            | Setting::IncludeOutboundPorts => {
                "comma-separated ports 1-65535 such as 8080,9090 (may be empty)"
            }
            Setting::StatusPort => "a port number 1-65535, or 0 when the proxy has no status port",
            Setting::ExcludeInterfaces | Setting::RerouteVirtualInterfaces => {
                "comma-separated Linux interface names of 1-15 characters from letters, digits \
                 and - _ . @ + (a trailing + matches every name with that prefix), such as \
                 eth1,net1 (may be empty)"
            }
            Setting::InterceptionMode => {
                "REDIRECT (capture with NAT redirects) or NONE (install no rules)"
            }
        }
    }
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.flag())
    }
}

/// Why a setting or argument was rejected. Every message names the flag, the value and the
/// accepted form.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{flag}: {value:?} is not accepted: {problem}; accepted: {accepted}")]
    InvalidValue {
        /// The annotation-driven setting, when the flag is one.
        setting: Option<Setting>,
        flag: &'static str,
        value: String,
        problem: String,
        accepted: &'static str,
    },
    #[error(
        "{flag}: {value:?} is not supported: meshkeeper supports the interception modes \
         REDIRECT and NONE, not TPROXY"
    )]
    UnsupportedMode { flag: &'static str, value: String },
    #[error("invalid meshkeeper-init arguments: {0}")]
    Arguments(String),
}

impl CaptureError {
    /// The setting the rejected value was for, so a caller can name its annotation.
    pub fn setting(&self) -> Option<Setting> {
        match self {
            CaptureError::InvalidValue { setting, .. } => *setting,
            CaptureError::UnsupportedMode { .. } => Some(Setting::InterceptionMode),
            CaptureError::Arguments(_) => None,
        }
    }
}

/// An IP network: an address with its host bits cleared and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix_len: u8,
}

impl Cidr {
    /// The network containing `addr` with `prefix_len` leading bits; `None` if the prefix is
    /// longer than the address.
    pub fn new(addr: IpAddr, prefix_len: u8) -> Option<Cidr> {
        let network = match addr {
            IpAddr::V4(v4) if prefix_len <= 32 => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(prefix_len))
                    .unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
            }
            IpAddr::V6(v6) if prefix_len <= 128 => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(prefix_len))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
            _ => return None,
        };
        Some(Cidr {
            network,
            prefix_len,
        })
    }

    pub fn network(&self) -> IpAddr {
        self.network
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    pub fn is_ipv4(&self) -> bool {
        self.network.is_ipv4()
    }

    /// Parses `address/prefix`; the error says what is wrong with it.
    fn parse(text: &str) -> Result<Cidr, String> {
        let Some((address, prefix)) = text.split_once('/') else {
            return Err("a CIDR needs a /prefix length".to_string());
        };
        let address: IpAddr = address
            .parse()
            .map_err(|_| format!("{address:?} is not an IPv4 or IPv6 address"))?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        parse_decimal(prefix)
            .and_then(|len| u8::try_from(len).ok())
            .and_then(|len| Cidr::new(address, len))
            .ok_or_else(|| format!("prefix length {prefix:?} is not a number 0-{max}"))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

/// Which outbound destinations are captured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IpRanges {
    /// `*`: every destination.
    All,
    /// Only these networks; empty captures no outbound traffic.
    Only(Vec<Cidr>),
}

/// Which inbound ports are captured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ports {
    /// `*`: every port.
    All,
    /// Only these ports; empty captures no inbound traffic.
    Only(Vec<u16>),
}

/// How traffic is captured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterceptionMode {
    /// NAT `REDIRECT` to Envoy's listeners.
    Redirect,
    /// Install nothing: the pod's traffic is not captured.
    None,
}

impl InterceptionMode {
    fn as_str(self) -> &'static str {
        match self {
            InterceptionMode::Redirect => "REDIRECT",
            InterceptionMode::None => "NONE",
        }
    }
}

/// Everything the init container needs to build the pod's capture rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureConfig {
    pub include_outbound_ip_ranges: IpRanges,
    pub exclude_outbound_ip_ranges: Vec<Cidr>,
    pub include_inbound_ports: Ports,
    pub exclude_inbound_ports: Vec<u16>,
    pub exclude_outbound_ports: Vec<u16>,
    /// Destination ports whose outbound traffic is captured whatever the destination address,
    /// unless an exclusion says otherwise.
    pub include_outbound_ports: Vec<u16>,
    /// The proxy's status port, never captured inbound (so the kubelet's probes reach it);
    /// 0 for none.
    pub status_port: u16,
    /// Interface names (validated) whose traffic is never captured.
    pub exclude_interfaces: Vec<String>,
    /// Interfaces of virtual machines running inside the pod (KubeVirt): what arrives on them
    /// is the VM's outbound traffic, captured as the pod's own outbound traffic would be.
    pub reroute_virtual_interfaces: Vec<String>,
    pub interception_mode: InterceptionMode,
    pub proxy_uid: u32,
    pub proxy_gid: u32,
    pub outbound_capture_port: u16,
    pub inbound_capture_port: u16,
}

impl Default for CaptureConfig {
    /// Istio's defaults: capture all TCP both ways with REDIRECT, Envoy as 1337:1337 on
    /// 15001 (outbound) and 15006 (inbound).
    fn default() -> Self {
        CaptureConfig {
            include_outbound_ip_ranges: IpRanges::All,
            exclude_outbound_ip_ranges: Vec::new(),
            include_inbound_ports: Ports::All,
            exclude_inbound_ports: Vec::new(),
            exclude_outbound_ports: Vec::new(),
            include_outbound_ports: Vec::new(),
            status_port: DEFAULT_STATUS_PORT,
            exclude_interfaces: Vec::new(),
            reroute_virtual_interfaces: Vec::new(),
            interception_mode: InterceptionMode::Redirect,
            proxy_uid: DEFAULT_PROXY_UID,
            proxy_gid: DEFAULT_PROXY_GID,
            outbound_capture_port: DEFAULT_OUTBOUND_CAPTURE_PORT,
            inbound_capture_port: DEFAULT_INBOUND_CAPTURE_PORT,
        }
    }
}

impl CaptureConfig {
    /// Parses `value` for `setting` and stores it; the error says what was wrong and the
    /// accepted form. On error the config is unchanged.
    pub fn apply(&mut self, setting: Setting, value: &str) -> Result<(), CaptureError> {
        let invalid = |problem: String| CaptureError::InvalidValue {
            setting: Some(setting),
            flag: setting.flag(),
            value: value.to_string(),
            problem,
            accepted: setting.accepted_form(),
        };
        match setting {
            Setting::IncludeOutboundIpRanges => {
                self.include_outbound_ip_ranges = if value.trim() == "*" {
                    IpRanges::All
                } else {
                    IpRanges::Only(parse_list(value, Cidr::parse).map_err(invalid)?)
                };
            }
            Setting::ExcludeOutboundIpRanges => {
                self.exclude_outbound_ip_ranges =
                    parse_list(value, Cidr::parse).map_err(invalid)?;
            }
            Setting::IncludeInboundPorts => {
                self.include_inbound_ports = if value.trim() == "*" {
                    Ports::All
                } else {
                    Ports::Only(parse_list(value, parse_port).map_err(invalid)?)
                };
            }
            Setting::ExcludeInboundPorts => {
                self.exclude_inbound_ports = parse_list(value, parse_port).map_err(invalid)?;
            }
            Setting::ExcludeOutboundPorts => {
                self.exclude_outbound_ports = parse_list(value, parse_port).map_err(invalid)?;
            }
            Setting::IncludeOutboundPorts => {
                self.include_outbound_ports = parse_list(value, parse_port).map_err(invalid)?;
            }
            Setting::StatusPort => {
                self.status_port = parse_status_port(value.trim()).map_err(invalid)?;
            }
            Setting::ExcludeInterfaces => {
                self.exclude_interfaces =
                    parse_list(value, parse_interface_name).map_err(invalid)?;
            }
            Setting::RerouteVirtualInterfaces => {
                self.reroute_virtual_interfaces =
                    parse_list(value, parse_interface_name).map_err(invalid)?;
            }
            Setting::InterceptionMode => {
                self.interception_mode = match value.trim() {
                    "REDIRECT" => InterceptionMode::Redirect,
                    "NONE" => InterceptionMode::None,
                    "TPROXY" => {
                        return Err(CaptureError::UnsupportedMode {
                            flag: setting.flag(),
                            value: value.to_string(),
                        });
                    }
                    _ => return Err(invalid("unknown interception mode".to_string())),
                };
            }
        }
        Ok(())
    }

    /// The canonical text of `setting`'s current value, in the setting's own syntax.
    pub fn value_of(&self, setting: Setting) -> String {
        match setting {
            Setting::IncludeOutboundIpRanges => match &self.include_outbound_ip_ranges {
                IpRanges::All => "*".to_string(),
                IpRanges::Only(cidrs) => join(cidrs),
            },
            Setting::ExcludeOutboundIpRanges => join(&self.exclude_outbound_ip_ranges),
            Setting::IncludeInboundPorts => match &self.include_inbound_ports {
                Ports::All => "*".to_string(),
                Ports::Only(ports) => join(ports),
            },
            Setting::ExcludeInboundPorts => join(&self.exclude_inbound_ports),
            Setting::StatusPort => self.status_port.to_string(),
            Setting::ExcludeOutboundPorts => join(&self.exclude_outbound_ports),
            Setting::IncludeOutboundPorts => join(&self.include_outbound_ports),
            Setting::ExcludeInterfaces => self.exclude_interfaces.join(","),
            Setting::RerouteVirtualInterfaces => self.reroute_virtual_interfaces.join(","),
            Setting::InterceptionMode => self.interception_mode.as_str().to_string(),
        }
    }

    /// The init container's arguments that reproduce this config: one `--flag=value` for each
    /// value that differs from the default.
    pub fn to_args(&self) -> Vec<String> {
        let default = CaptureConfig::default();
        let mut args: Vec<String> = Setting::ALL
            .into_iter()
            .filter(|setting| self.value_of(*setting) != default.value_of(*setting))
            .map(|setting| format!("{}={}", setting.flag(), self.value_of(setting)))
            .collect();
        let numeric = [
            (PROXY_UID_FLAG, self.proxy_uid, default.proxy_uid),
            (PROXY_GID_FLAG, self.proxy_gid, default.proxy_gid),
            (
                OUTBOUND_CAPTURE_PORT_FLAG,
                u32::from(self.outbound_capture_port),
                u32::from(default.outbound_capture_port),
            ),
            (
                INBOUND_CAPTURE_PORT_FLAG,
                u32::from(self.inbound_capture_port),
                u32::from(default.inbound_capture_port),
            ),
        ];
        for (flag, value, default_value) in numeric {
            if value != default_value {
                args.push(format!("{flag}={value}"));
            }
        }
        args
    }

    /// Parses the init container's arguments (without the program name).
    pub fn from_args<I: IntoIterator<Item = String>>(args: I) -> Result<Self, CaptureError> {
        let program = std::iter::once("meshkeeper-init".to_string());
        let parsed = ArgsOnly::try_parse_from(program.chain(args))
            .map_err(|err| CaptureError::Arguments(err.to_string()))?;
        parsed.flags.into_config()
    }

    /// True when the interception mode is NONE: nothing is captured and no rules are installed.
    pub fn captures_nothing(&self) -> bool {
        self.interception_mode == InterceptionMode::None
    }
}

/// The capture flags as the command line gives them; [`CaptureFlags::into_config`] validates
/// them. The binary flattens this into its own parser next to `--dry-run`.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct CaptureFlags {
    /// Outbound destinations to capture: "*" or comma-separated CIDRs [default: *]
    /// (annotation traffic.sidecar.istio.io/includeOutboundIPRanges).
    #[arg(long, value_name = "CIDRS")]
    pub include_outbound_ip_ranges: Option<String>,
    /// Outbound destinations never captured: comma-separated CIDRs
    /// (annotation traffic.sidecar.istio.io/excludeOutboundIPRanges).
    #[arg(long, value_name = "CIDRS")]
    pub exclude_outbound_ip_ranges: Option<String>,
    /// Inbound ports to capture: "*" or comma-separated ports [default: *]
    /// (annotation traffic.sidecar.istio.io/includeInboundPorts).
    #[arg(long, value_name = "PORTS")]
    pub include_inbound_ports: Option<String>,
    /// Inbound ports never captured: comma-separated ports
    /// (annotation traffic.sidecar.istio.io/excludeInboundPorts).
    #[arg(long, value_name = "PORTS")]
    pub exclude_inbound_ports: Option<String>,
    /// Outbound destination ports never captured: comma-separated ports
    /// (annotation traffic.sidecar.istio.io/excludeOutboundPorts).
    #[arg(long, value_name = "PORTS")]
    pub exclude_outbound_ports: Option<String>,
    /// Outbound destination ports always captured, whatever the destination address:
    /// comma-separated ports (annotation traffic.sidecar.istio.io/includeOutboundPorts).
    #[arg(long, value_name = "PORTS")]
    pub include_outbound_ports: Option<String>,
    /// The proxy's status port, never captured inbound; 0 for none [default: 15020]
    /// (annotation status.sidecar.istio.io/port).
    #[arg(long, value_name = "PORT")]
    pub status_port: Option<String>,
    /// Interfaces of virtual machines in the pod whose traffic is captured as outbound:
    /// comma-separated names (annotation istio.io/reroute-virtual-interfaces, formerly
    /// traffic.sidecar.istio.io/kubevirtInterfaces).
    #[arg(long, value_name = "NAMES")]
    pub reroute_virtual_interfaces: Option<String>,
    /// Interfaces whose traffic is never captured: comma-separated names
    /// (annotation traffic.sidecar.istio.io/excludeInterfaces).
    #[arg(long, value_name = "NAMES")]
    pub exclude_interfaces: Option<String>,
    /// REDIRECT or NONE [default: REDIRECT] (annotation sidecar.istio.io/interceptionMode).
    #[arg(long, value_name = "MODE")]
    pub interception_mode: Option<String>,
    /// UID of the proxy; its traffic is never captured [default: 1337].
    #[arg(long, value_name = "UID")]
    pub proxy_uid: Option<String>,
    /// GID of the proxy; its traffic is never captured [default: 1337].
    #[arg(long, value_name = "GID")]
    pub proxy_gid: Option<String>,
    /// Envoy's outbound listener port [default: 15001].
    #[arg(long, value_name = "PORT")]
    pub outbound_capture_port: Option<String>,
    /// Envoy's inbound listener port [default: 15006].
    #[arg(long, value_name = "PORT")]
    pub inbound_capture_port: Option<String>,
}

impl CaptureFlags {
    /// Validates the flags on top of the defaults.
    pub fn into_config(self) -> Result<CaptureConfig, CaptureError> {
        let mut config = CaptureConfig::default();
        let settings = [
            (
                Setting::IncludeOutboundIpRanges,
                self.include_outbound_ip_ranges,
            ),
            (
                Setting::ExcludeOutboundIpRanges,
                self.exclude_outbound_ip_ranges,
            ),
            (Setting::IncludeInboundPorts, self.include_inbound_ports),
            (Setting::ExcludeInboundPorts, self.exclude_inbound_ports),
            (Setting::StatusPort, self.status_port),
            (Setting::ExcludeOutboundPorts, self.exclude_outbound_ports),
            (Setting::IncludeOutboundPorts, self.include_outbound_ports),
            (Setting::ExcludeInterfaces, self.exclude_interfaces),
            (
                Setting::RerouteVirtualInterfaces,
                self.reroute_virtual_interfaces,
            ),
            (Setting::InterceptionMode, self.interception_mode),
        ];
        for (setting, value) in settings {
            if let Some(value) = value {
                config.apply(setting, &value)?;
            }
        }
        if let Some(value) = self.proxy_uid {
            config.proxy_uid = parse_id(PROXY_UID_FLAG, &value)?;
        }
        if let Some(value) = self.proxy_gid {
            config.proxy_gid = parse_id(PROXY_GID_FLAG, &value)?;
        }
        if let Some(value) = self.outbound_capture_port {
            config.outbound_capture_port = parse_port_flag(OUTBOUND_CAPTURE_PORT_FLAG, &value)?;
        }
        if let Some(value) = self.inbound_capture_port {
            config.inbound_capture_port = parse_port_flag(INBOUND_CAPTURE_PORT_FLAG, &value)?;
        }
        Ok(config)
    }
}

/// `from_args` parses only the capture flags: `--dry-run` is the binary's, not the config's.
#[derive(Parser)]
#[command(name = "meshkeeper-init")]
struct ArgsOnly {
    #[command(flatten)]
    flags: CaptureFlags,
}

/// Splits a comma-separated list and parses every element. An empty (or all-blank) value is
/// the empty list, as in Istio's annotations; an empty element inside a list is a mistake.
fn parse_list<T>(value: &str, parse: impl Fn(&str) -> Result<T, String>) -> Result<Vec<T>, String> {
    if value.trim().is_empty() {
        return Ok(Vec::new());
    }
    let elements: Vec<&str> = value.split(',').map(str::trim).collect();
    let single = elements.len() == 1;
    elements
        .iter()
        .enumerate()
        .map(|(index, element)| {
            if element.is_empty() {
                return Err(format!("element {} of the list is empty", index + 1));
            }
            // In a list, say which element is wrong; a single value is already named.
            parse(element).map_err(|problem| {
                if single {
                    problem
                } else {
                    format!("{element:?}: {problem}")
                }
            })
        })
        .collect()
}

/// Digits only: `str::parse` would also take a leading `+`.
fn parse_decimal(text: &str) -> Option<u32> {
    if text.is_empty() || text.len() > 10 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn parse_port(text: &str) -> Result<u16, String> {
    parse_decimal(text)
        .filter(|port| (1..=65535).contains(port))
        .and_then(|port| u16::try_from(port).ok())
        .ok_or_else(|| "not a port number 1-65535".to_string())
}

/// A port, or 0 for "no status port" (Istio's way to turn the status server off).
fn parse_status_port(text: &str) -> Result<u16, String> {
    if text == "0" {
        return Ok(0);
    }
    parse_port(text)
}

/// The kernel's rules for a name (1-15 bytes, not `.` or `..`, no `/`, `:` or whitespace),
/// narrowed to characters that pass through iptables-restore's tokenizer unquoted.
fn parse_interface_name(text: &str) -> Result<String, String> {
    const MAX_LEN: usize = 15;
    if text.len() > MAX_LEN {
        return Err(format!(
            "an interface name has at most {MAX_LEN} characters, this one has {}",
            text.len()
        ));
    }
    if text == "." || text == ".." {
        return Err("\".\" and \"..\" are not interface names".to_string());
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.@+".contains(c);
    if let Some(bad) = text.chars().find(|c| !allowed(*c)) {
        return Err(format!(
            "character {bad:?} is not allowed in an interface name"
        ));
    }
    Ok(text.to_string())
}

fn parse_id(flag: &'static str, value: &str) -> Result<u32, CaptureError> {
    parse_decimal(value.trim()).ok_or_else(|| CaptureError::InvalidValue {
        setting: None,
        flag,
        value: value.to_string(),
        problem: "not a number 0-4294967295".to_string(),
        accepted: ID_FORM,
    })
}

fn parse_port_flag(flag: &'static str, value: &str) -> Result<u16, CaptureError> {
    parse_port(value.trim()).map_err(|problem| CaptureError::InvalidValue {
        setting: None,
        flag,
        value: value.to_string(),
        problem,
        accepted: PORT_FORM,
    })
}

fn join<T: fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(setting: Setting, value: &str) -> Result<CaptureConfig, CaptureError> {
        let mut config = CaptureConfig::default();
        config.apply(setting, value)?;
        Ok(config)
    }

    fn rejection(setting: Setting, value: &str) -> String {
        match applied(setting, value) {
            Ok(config) => panic!("{setting} {value:?} was accepted as {config:?}"),
            Err(err) => err.to_string(),
        }
    }

    fn cidr(text: &str) -> Cidr {
        Cidr::parse(text).unwrap()
    }

    #[test]
    fn defaults_are_istios() {
        let config = CaptureConfig::default();
        assert_eq!(config.include_outbound_ip_ranges, IpRanges::All);
        assert_eq!(config.include_inbound_ports, Ports::All);
        assert_eq!(config.interception_mode, InterceptionMode::Redirect);
        assert_eq!((config.proxy_uid, config.proxy_gid), (1337, 1337));
        assert_eq!(
            (config.outbound_capture_port, config.inbound_capture_port),
            (15001, 15006)
        );
        assert!(!config.captures_nothing());
        assert!(config.to_args().is_empty());
    }

    #[test]
    fn cidrs_are_parsed_and_normalised() {
        let config = applied(
            Setting::ExcludeOutboundIpRanges,
            "10.1.2.3/8, 192.168.0.0/16,fd00::1/8,0.0.0.0/0,::/0,10.0.0.1/32",
        )
        .unwrap();
        let texts: Vec<String> = config
            .exclude_outbound_ip_ranges
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            texts,
            [
                "10.0.0.0/8",
                "192.168.0.0/16",
                "fd00::/8",
                "0.0.0.0/0",
                "::/0",
                "10.0.0.1/32"
            ]
        );
        assert!(config.exclude_outbound_ip_ranges[0].is_ipv4());
        assert!(!config.exclude_outbound_ip_ranges[2].is_ipv4());
    }

    #[test]
    fn bad_cidrs_are_rejected_with_the_value_and_the_form() {
        for (value, problem) in [
            ("10.0.0.0/33", "prefix length \"33\" is not a number 0-32"),
            ("banana", "a CIDR needs a /prefix length"),
            ("banana/8", "\"banana\" is not an IPv4 or IPv6 address"),
            ("10.0.0.0/", "prefix length \"\" is not a number 0-32"),
            ("10.0.0.0/+8", "prefix length \"+8\" is not a number 0-32"),
            ("fd00::/129", "prefix length \"129\" is not a number 0-128"),
            ("10.0.0.0", "a CIDR needs a /prefix length"),
            ("10.0.0.0/8,,fd00::/8", "element 2 of the list is empty"),
            ("10.0.0.0/8,", "element 2 of the list is empty"),
        ] {
            for setting in [
                Setting::IncludeOutboundIpRanges,
                Setting::ExcludeOutboundIpRanges,
            ] {
                let message = rejection(setting, value);
                assert!(message.contains(problem), "{message}");
                assert!(message.contains(&format!("{value:?}")), "{message}");
                assert!(message.contains(setting.flag()), "{message}");
                assert!(message.contains(setting.accepted_form()), "{message}");
            }
        }
    }

    #[test]
    fn include_ranges_take_a_wildcard_a_list_or_nothing() {
        let star = applied(Setting::IncludeOutboundIpRanges, "*").unwrap();
        assert_eq!(star.include_outbound_ip_ranges, IpRanges::All);
        let list = applied(Setting::IncludeOutboundIpRanges, "10.0.0.0/8").unwrap();
        assert_eq!(
            list.include_outbound_ip_ranges,
            IpRanges::Only(vec![cidr("10.0.0.0/8")])
        );
        let empty = applied(Setting::IncludeOutboundIpRanges, "").unwrap();
        assert_eq!(empty.include_outbound_ip_ranges, IpRanges::Only(vec![]));
        // A wildcard is a whole value, not a list element.
        let message = rejection(Setting::IncludeOutboundIpRanges, "*,10.0.0.0/8");
        assert!(message.contains("\"*\": a CIDR needs"), "{message}");
    }

    #[test]
    fn ports_are_validated() {
        for setting in [
            Setting::IncludeInboundPorts,
            Setting::ExcludeInboundPorts,
            Setting::ExcludeOutboundPorts,
        ] {
            for value in ["0", "65536", "http", "-1", "+80", "80,,81", "99999999999"] {
                let message = rejection(setting, value);
                assert!(message.contains(&format!("{value:?}")), "{message}");
                assert!(message.contains(setting.accepted_form()), "{message}");
            }
            let config = applied(setting, "1, 80,65535").unwrap();
            assert_eq!(config.value_of(setting), "1,80,65535");
        }
        let message = rejection(Setting::ExcludeInboundPorts, "80,http");
        assert!(
            message.contains("\"http\": not a port number 1-65535"),
            "{message}"
        );
        let message = rejection(Setting::ExcludeInboundPorts, "80,,81");
        assert!(
            message.contains("element 2 of the list is empty"),
            "{message}"
        );
        let star = applied(Setting::IncludeInboundPorts, "*").unwrap();
        assert_eq!(star.include_inbound_ports, Ports::All);
        // Only the include list has a wildcard.
        rejection(Setting::ExcludeInboundPorts, "*");
    }

    #[test]
    fn interface_names_are_validated() {
        let config = applied(
            Setting::ExcludeInterfaces,
            "eth0,net1,br-0a1b2c3d4e5f,vxlan.calico,veth+,cali_x@y",
        )
        .unwrap();
        assert_eq!(config.exclude_interfaces.len(), 6);
        for (value, problem) in [
            ("sixteen-chars-xx", "at most 15 characters"),
            ("eth 0", "character ' ' is not allowed"),
            ("eth0/1", "character '/' is not allowed"),
            ("eth0:1", "character ':' is not allowed"),
            ("a\"b", "character '\"' is not allowed"),
            ("é", "character 'é' is not allowed"),
            (".", "are not interface names"),
            ("..", "are not interface names"),
            ("eth0,", "element 2 of the list is empty"),
        ] {
            let message = rejection(Setting::ExcludeInterfaces, value);
            assert!(message.contains(problem), "{value}: {message}");
            assert!(
                message.contains(Setting::ExcludeInterfaces.accepted_form()),
                "{message}"
            );
        }
    }

    #[test]
    fn interception_modes() {
        assert!(
            applied(Setting::InterceptionMode, "NONE")
                .unwrap()
                .captures_nothing()
        );
        assert!(
            !applied(Setting::InterceptionMode, "REDIRECT")
                .unwrap()
                .captures_nothing()
        );
        let tproxy = applied(Setting::InterceptionMode, "TPROXY").unwrap_err();
        assert!(matches!(tproxy, CaptureError::UnsupportedMode { .. }));
        assert_eq!(tproxy.setting(), Some(Setting::InterceptionMode));
        let message = tproxy.to_string();
        assert!(
            message.contains("meshkeeper supports the interception modes REDIRECT and NONE"),
            "{message}"
        );
        for value in ["redirect", "BANANA", ""] {
            let message = rejection(Setting::InterceptionMode, value);
            assert!(message.contains("unknown interception mode"), "{message}");
            assert!(message.contains("REDIRECT (capture"), "{message}");
        }
    }

    #[test]
    fn a_rejected_value_leaves_the_config_unchanged() {
        let mut config = CaptureConfig::default();
        config.apply(Setting::ExcludeOutboundPorts, "9000").unwrap();
        let before = config.clone();
        assert!(
            config
                .apply(Setting::ExcludeOutboundPorts, "9000,0")
                .is_err()
        );
        assert_eq!(config, before);
    }

    fn sample_config() -> CaptureConfig {
        let mut config = CaptureConfig::default();
        for (setting, value) in [
            (Setting::IncludeOutboundIpRanges, "10.0.0.0/8,fd00::/8"),
            (Setting::ExcludeOutboundIpRanges, "10.96.0.0/12"),
            (Setting::IncludeInboundPorts, "8080,9090"),
            (Setting::ExcludeInboundPorts, "9091"),
            (Setting::ExcludeOutboundPorts, "5432,6379"),
            (Setting::ExcludeInterfaces, "net1,eth+"),
            (Setting::InterceptionMode, "NONE"),
        ] {
            config.apply(setting, value).unwrap();
        }
        config.proxy_uid = 2000;
        config.proxy_gid = 0;
        config.outbound_capture_port = 16001;
        config.inbound_capture_port = 16006;
        config
    }

    #[test]
    fn to_args_round_trips() {
        let empty_includes = CaptureConfig {
            include_outbound_ip_ranges: IpRanges::Only(vec![]),
            include_inbound_ports: Ports::Only(vec![]),
            ..CaptureConfig::default()
        };
        for config in [CaptureConfig::default(), sample_config(), empty_includes] {
            let args = config.to_args();
            let back = CaptureConfig::from_args(args.clone()).unwrap();
            assert_eq!(back, config, "args {args:?}");
        }
    }

    #[test]
    fn to_args_names_only_changed_settings() {
        let mut config = CaptureConfig::default();
        config.apply(Setting::ExcludeOutboundPorts, "9000").unwrap();
        assert_eq!(config.to_args(), ["--exclude-outbound-ports=9000"]);
        let args = sample_config().to_args();
        assert_eq!(args.len(), 11, "{args:?}");
        assert!(args.contains(&"--include-inbound-ports=8080,9090".to_string()));
        assert!(args.contains(&"--proxy-gid=0".to_string()));
    }

    #[test]
    fn every_setting_flag_is_understood_by_from_args() {
        for setting in Setting::ALL {
            let mut config = CaptureConfig::default();
            let value = config.value_of(setting);
            config = CaptureConfig::from_args([format!("{}={value}", setting.flag())]).unwrap();
            assert_eq!(config, CaptureConfig::default(), "{setting}");
            // The separate-argument form works too.
            let config =
                CaptureConfig::from_args([setting.flag().to_string(), value.clone()]).unwrap();
            assert_eq!(config, CaptureConfig::default(), "{setting}");
        }
    }

    #[test]
    fn from_args_reports_bad_arguments() {
        let err = CaptureConfig::from_args(["--no-such-flag=1".to_string()]).unwrap_err();
        assert!(matches!(err, CaptureError::Arguments(_)), "{err}");
        assert!(err.to_string().contains("--no-such-flag"), "{err}");

        let err = CaptureConfig::from_args(["--dry-run".to_string()]).unwrap_err();
        assert!(matches!(err, CaptureError::Arguments(_)), "{err}");

        let err = CaptureConfig::from_args(["--proxy-uid=root".to_string()]).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("--proxy-uid: \"root\""), "{message}");
        assert!(message.contains(ID_FORM), "{message}");

        for flag in ["--outbound-capture-port", "--inbound-capture-port"] {
            let err = CaptureConfig::from_args([format!("{flag}=0")]).unwrap_err();
            let message = err.to_string();
            assert!(message.contains(&format!("{flag}: \"0\"")), "{message}");
            assert!(message.contains(PORT_FORM), "{message}");
        }

        let err =
            CaptureConfig::from_args(["--exclude-outbound-ip-ranges=10.0.0.0/33".to_string()])
                .unwrap_err();
        assert_eq!(err.setting(), Some(Setting::ExcludeOutboundIpRanges));
    }

    #[test]
    fn new_settings_parse_and_round_trip() {
        let config = applied(Setting::IncludeOutboundPorts, "443, 8443").unwrap();
        assert_eq!(config.include_outbound_ports, [443, 8443]);
        assert_eq!(config.to_args(), ["--include-outbound-ports=443,8443"]);
        let config = applied(Setting::RerouteVirtualInterfaces, "k6t-eth0,tap0").unwrap();
        assert_eq!(config.reroute_virtual_interfaces, ["k6t-eth0", "tap0"]);
        assert_eq!(CaptureConfig::from_args(config.to_args()).unwrap(), config);
        for (value, port) in [("0", 0), ("15555", 15555), (" 15020 ", 15020)] {
            assert_eq!(
                applied(Setting::StatusPort, value).unwrap().status_port,
                port
            );
        }
        assert!(CaptureConfig::default().to_args().is_empty());
        assert_eq!(
            applied(Setting::StatusPort, "0").unwrap().to_args(),
            ["--status-port=0"]
        );
        for value in ["65536", "http", "-1", "15020,15021", ""] {
            let message = rejection(Setting::StatusPort, value);
            assert!(message.contains("--status-port"), "{message}");
            assert!(
                message.contains("or 0 when the proxy has no status port"),
                "{message}"
            );
        }
        let message = rejection(Setting::RerouteVirtualInterfaces, "eth 0");
        assert!(
            message.contains("character ' ' is not allowed"),
            "{message}"
        );
        rejection(Setting::IncludeOutboundPorts, "0");
    }

    #[test]
    fn the_kubevirt_annotation_is_an_older_name() {
        assert_eq!(
            Setting::RerouteVirtualInterfaces.annotation(),
            "istio.io/reroute-virtual-interfaces"
        );
        assert_eq!(
            Setting::RerouteVirtualInterfaces.deprecated_annotations(),
            ["traffic.sidecar.istio.io/kubevirtInterfaces"]
        );
        assert!(
            Setting::ALL
                .iter()
                .filter(|s| **s != Setting::RerouteVirtualInterfaces)
                .all(|s| s.deprecated_annotations().is_empty())
        );
    }

    #[test]
    fn annotations_are_istios() {
        assert_eq!(
            Setting::IncludeOutboundIpRanges.annotation(),
            "traffic.sidecar.istio.io/includeOutboundIPRanges"
        );
        assert_eq!(
            Setting::InterceptionMode.annotation(),
            "sidecar.istio.io/interceptionMode"
        );
    }
}
