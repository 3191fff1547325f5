//! Pod networking: one bridge on the host, and per pod a network namespace
//! joined to it by a veth pair, its address taken from the node's pod range.
//! Done with iproute2's `ip`, the tool every reader of this code knows.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::{Context, bail};
use tokio::process::Command;

/// Names every host object of the node carries, so a sweep finds them all.
pub const NETNS_PREFIX: &str = "mkpod-";
const VETH_PREFIX: &str = "mkv";

pub struct Network {
    pub bridge: String,
    /// The bridge's address: the pods' gateway and the node's InternalIP.
    pub gateway: Ipv4Addr,
    pub prefix_len: u8,
    in_use: Mutex<BTreeSet<Ipv4Addr>>,
}

/// A pod's network: its namespace and address.
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub netns: String,
    pub veth: String,
    pub ip: Ipv4Addr,
}

impl Sandbox {
    pub fn netns_path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.netns)
    }
}

/// `10.244.0.0/24` → the bridge takes the first address.
pub fn parse_cidr(cidr: &str) -> anyhow::Result<(Ipv4Addr, u8)> {
    let (addr, len) = cidr
        .split_once('/')
        .with_context(|| format!("pod CIDR {cidr:?} must be ADDRESS/LENGTH"))?;
    let addr: Ipv4Addr = addr
        .parse()
        .with_context(|| format!("pod CIDR {cidr:?}: bad address"))?;
    let len: u8 = len
        .parse()
        .ok()
        .filter(|l| (8..=30).contains(l))
        .with_context(|| format!("pod CIDR {cidr:?}: length must be 8..=30"))?;
    Ok((addr, len))
}

/// Names of a pod's host objects, from its UID (veth names are ≤ 15 bytes).
pub fn names_for(uid: &str) -> (String, String) {
    let compact: String = uid.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    let short = &compact[..compact.len().min(12)];
    (
        format!("{NETNS_PREFIX}{short}"),
        format!("{VETH_PREFIX}{}", &short[..short.len().min(11)]),
    )
}

async fn ip(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .await
        .context("running `ip` (install iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Network {
    pub fn new(bridge: &str, cidr: &str) -> anyhow::Result<Self> {
        let (base, prefix_len) = parse_cidr(cidr)?;
        let gateway = Ipv4Addr::from(u32::from(base) + 1);
        Ok(Self {
            bridge: bridge.to_owned(),
            gateway,
            prefix_len,
            in_use: Mutex::new(BTreeSet::new()),
        })
    }

    /// Creates the bridge (after removing what a crashed run left) and lets
    /// the host route between pods and services.
    pub async fn set_up(&self) -> anyhow::Result<()> {
        sweep(&self.bridge).await?;
        ip(&["link", "add", &self.bridge, "type", "bridge"]).await?;
        let addr = format!("{}/{}", self.gateway, self.prefix_len);
        ip(&["addr", "add", &addr, "dev", &self.bridge]).await?;
        ip(&["link", "set", &self.bridge, "up"]).await?;
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").context("enabling IPv4 forwarding")?;
        Ok(())
    }

    fn allocate(&self) -> anyhow::Result<Ipv4Addr> {
        let mut used = self
            .in_use
            .lock()
            .map_err(|_| anyhow::anyhow!("address pool lock poisoned"))?;
        let first = u32::from(self.gateway) + 1;
        let size = 1u32 << (32 - self.prefix_len);
        let last = u32::from(self.gateway) - 1 + size - 2;
        let ip = (first..=last)
            .map(Ipv4Addr::from)
            .find(|ip| !used.contains(ip))
            .context("the node's pod range is full")?;
        used.insert(ip);
        Ok(ip)
    }

    fn release(&self, ip: Ipv4Addr) {
        if let Ok(mut used) = self.in_use.lock() {
            used.remove(&ip);
        }
    }

    pub async fn create(&self, uid: &str) -> anyhow::Result<Sandbox> {
        let (netns, veth) = names_for(uid);
        let ip_addr = self.allocate()?;
        let sandbox = Sandbox {
            netns,
            veth,
            ip: ip_addr,
        };
        if let Err(e) = self.wire(&sandbox).await {
            self.delete(&sandbox).await;
            return Err(e);
        }
        Ok(sandbox)
    }

    async fn wire(&self, s: &Sandbox) -> anyhow::Result<()> {
        let ns = s.netns.as_str();
        ip(&["netns", "add", ns]).await?;
        ip(&[
            "link", "add", &s.veth, "type", "veth", "peer", "name", "eth0", "netns", ns,
        ])
        .await?;
        ip(&["link", "set", &s.veth, "master", &self.bridge, "up"]).await?;
        let addr = format!("{}/{}", s.ip, self.prefix_len);
        ip(&["-n", ns, "addr", "add", &addr, "dev", "eth0"]).await?;
        ip(&["-n", ns, "link", "set", "eth0", "up"]).await?;
        ip(&["-n", ns, "link", "set", "lo", "up"]).await?;
        let gw = self.gateway.to_string();
        ip(&["-n", ns, "route", "add", "default", "via", &gw]).await?;
        Ok(())
    }

    /// Removes the sandbox; every step is tried, whatever failed before.
    pub async fn delete(&self, s: &Sandbox) {
        kill_namespace_processes(&s.netns).await;
        if let Err(e) = ip(&["netns", "del", &s.netns]).await {
            tracing::debug!(netns = %s.netns, "netns del: {e}");
        }
        // Gone with the namespace normally; this catches a half-made pair.
        let _ = ip(&["link", "del", &s.veth]).await;
        self.release(s.ip);
    }

    pub async fn tear_down(&self) {
        if let Err(e) = sweep(&self.bridge).await {
            tracing::warn!("removing the node's network: {e:#}");
        }
    }
}

async fn kill_namespace_processes(netns: &str) {
    let Ok(pids) = ip(&["netns", "pids", netns]).await else {
        return;
    };
    for pid in pids
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
    {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Removes every pod namespace, pod veth and the bridge of this node.
pub async fn sweep(bridge: &str) -> anyhow::Result<()> {
    let list = ip(&["netns", "list"]).await.unwrap_or_default();
    for name in list
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(NETNS_PREFIX))
    {
        kill_namespace_processes(name).await;
        let _ = ip(&["netns", "del", name]).await;
    }
    let links = ip(&["-o", "link", "show"]).await?;
    for name in links
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n))
        .filter(|n| n.starts_with(VETH_PREFIX) || *n == bridge)
    {
        let _ = ip(&["link", "del", name]).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_linux_interface_limits() {
        let (ns, veth) = names_for("0f9b3c2e-1a2b-4c5d-8e9f-001122334455");
        assert_eq!(ns, "mkpod-0f9b3c2e1a2b");
        assert_eq!(veth, "mkv0f9b3c2e1a2");
        assert!(veth.len() <= 15);
    }

    #[test]
    fn addresses_come_from_the_range_after_the_gateway() {
        let net = Network::new("mk0", "10.244.0.0/30").unwrap();
        assert_eq!(net.gateway, Ipv4Addr::new(10, 244, 0, 1));
        let a = net.allocate().unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 244, 0, 2));
        assert!(net.allocate().is_err(), "a /30 holds one pod");
        net.release(a);
        assert_eq!(net.allocate().unwrap(), a);
    }

    #[test]
    fn bad_cidrs_are_named() {
        assert!(parse_cidr("10.244.0.0").is_err());
        assert!(parse_cidr("10.244.0.0/40").is_err());
    }
}
