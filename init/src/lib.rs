//! meshkeeper's init container: before the application starts, it installs nat rules in the
//! pod's network namespace so that the pod's TCP traffic goes through the Envoy sidecar
//! (Istio's `istio-iptables` is the behaviour reference).
//!
//! - [`capture`]: the settings (the values of Istio's pod annotations), their validation and
//!   the command-line form the injector uses; pure.
//! - [`rules`]: the settings as `iptables-restore` input for IPv4 and IPv6; pure.
//! - [`apply`]: runs `ip(6)tables-save` and `ip(6)tables-restore`.
//!
//! # Chain layout (nat table, each family; interception mode REDIRECT)
//!
//! ```text
//! PREROUTING -p tcp -> MESHKEEPER_INBOUND
//!     -i <excluded interface>                 RETURN
//!     -i <virtual interface> ...              the outbound decisions below (exclusions,
//!                                             included ports and ranges -> MESHKEEPER_REDIRECT),
//!                                             then RETURN (a VM in the pod: its traffic is
//!                                             outbound, never inbound)
//!     --dport 15090 / 15021 / 15020           RETURN   (sidecar ports, never captured)
//!     --dport <status port>                   RETURN   (status.sidecar.istio.io/port)
//!     --dport <excluded inbound port>         RETURN
//!     all TCP, or --dport <included port>     -> MESHKEEPER_IN_REDIRECT (REDIRECT to 15006)
//!
//! OUTPUT -p tcp -> MESHKEEPER_OUTBOUND
//!     -o <excluded interface>                 RETURN
//!     --dport <excluded outbound port>        RETURN
//!     -o lo -s 127.0.0.6 (::6)                RETURN   (Envoy forwarding inbound to the app)
//!     -o lo, not to 127.0.0.1, proxy uid/gid  -> MESHKEEPER_IN_REDIRECT (proxy calling its
//!                                                own pod address: that is inbound traffic)
//!     -o lo, not the proxy                    RETURN   (the app talking to itself)
//!     proxy uid / gid 1337                    RETURN   (Envoy's upstream connections)
//!     -d 127.0.0.1 (::1)                      RETURN
//!     -d <excluded range>                     RETURN
//!     --dport <included outbound port>        -> MESHKEEPER_REDIRECT (whatever the address)
//!     all, or -d <included range>             -> MESHKEEPER_REDIRECT (REDIRECT to 15001)
//! ```
//!
//! Ranges appear only in the rules of their own family. Interception mode NONE installs
//! nothing; TPROXY is refused.
//!
//! # Reruns
//!
//! The four chains are declared and flushed at the top of the restore input and refilled, and
//! the input first deletes every jump into them that `iptables-save` shows, so running the
//! init container again (a restarted pod sandbox keeps its network namespace) yields the same
//! rule set, with one jump from PREROUTING and one from OUTPUT, in one atomic
//! `iptables-restore --noflush` transaction that leaves other chains alone.

pub mod apply;
pub mod capture;
pub mod rules;
