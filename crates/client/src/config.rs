//! Settings shared by every client kind: where the name servers are, how this process names
//! itself to brokers, and the timings of the periodic tasks (behaviour.md §1).

use std::time::Duration;

use ferrymq_protocol::acl::Credentials;

use crate::error::{ClientError, Result};

/// Environment variable read when no name server address is configured.
pub const NAMESRV_ADDR_ENV: &str = "NAMESRV_ADDR";

/// Connection and housekeeping settings of a client instance.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Name servers as `host:port;host:port`; `None` reads [`NAMESRV_ADDR_ENV`].
    pub namesrv_addr: Option<String>,
    /// Second half of the client id (`ip@instance`); `None` picks `pid#nanos`, unique per
    /// instance, as Java does for its "DEFAULT" instance name.
    pub instance_name: Option<String>,
    /// First half of the client id; `None` uses the local address that reaches the name server.
    pub client_ip: Option<String>,
    /// Timeout of ordinary requests (offsets, heartbeats, admin calls).
    pub request_timeout: Duration,
    /// How often routes of used topics are refreshed (Java `pollNameServerInterval`, 30 s).
    pub route_refresh_interval: Duration,
    /// How often every broker gets a heartbeat (Java `heartbeatBrokerInterval`, 30 s).
    pub heartbeat_interval: Duration,
    /// ACL credentials: every request is signed with them (Java's `AclClientRPCHook`).
    pub credentials: Option<Credentials>,
    /// Dial name servers and brokers with TLS (Java's `tls.enable`), trusting any certificate
    /// unless [`ClientOptions::tls_ca_file`] is set.
    pub tls: bool,
    /// PEM CA certificates the servers' certificates must chain to (Java's
    /// `tls.client.trustCertPath` with `tls.client.authServer=true`).
    pub tls_ca_file: Option<std::path::PathBuf>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            namesrv_addr: None,
            instance_name: None,
            client_ip: None,
            request_timeout: Duration::from_secs(3),
            route_refresh_interval: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(30),
            credentials: None,
            tls: false,
            tls_ca_file: None,
        }
    }
}

impl ClientOptions {
    /// The transport settings these options ask for.
    pub(crate) fn transport(&self) -> Result<ferrymq_remoting::ClientConfig> {
        let tls = if self.tls || self.tls_ca_file.is_some() {
            let tls = ferrymq_remoting::ClientTls::new(self.tls_ca_file.as_ref(), Vec::new())
                .map_err(|e| ClientError::InvalidArgument(format!("TLS: {e}")))?;
            Some(tls)
        } else {
            None
        };
        Ok(ferrymq_remoting::ClientConfig {
            tls,
            credentials: self.credentials.clone(),
            ..ferrymq_remoting::ClientConfig::default()
        })
    }

    /// The name server addresses: the configured list, else `NAMESRV_ADDR`.
    pub fn namesrv_addrs(&self) -> Result<Vec<String>> {
        let raw = match &self.namesrv_addr {
            Some(s) => s.clone(),
            None => std::env::var(NAMESRV_ADDR_ENV).unwrap_or_default(),
        };
        let addrs = split_addrs(&raw);
        if addrs.is_empty() {
            return Err(ClientError::NoNameServer);
        }
        Ok(addrs)
    }
}

/// Splits `a;b; c` into trimmed, non-empty addresses.
pub fn split_addrs(s: &str) -> Vec<String> {
    s.split(';')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Adds the [`ClientOptions`] setters to a builder that has an `options: ClientOptions` field
/// and an `instance: Option<ClientInstance>` field.
macro_rules! client_option_setters {
    () => {
        /// Name servers as `host:port;host:port` (default: the `NAMESRV_ADDR` variable).
        pub fn namesrv_addr(mut self, addr: impl Into<String>) -> Self {
            self.options.namesrv_addr = Some(addr.into());
            self
        }

        /// The instance name in the client id `ip@instance` (default: unique per instance).
        pub fn instance_name(mut self, name: impl Into<String>) -> Self {
            self.options.instance_name = Some(name.into());
            self
        }

        /// All connection and housekeeping settings at once.
        pub fn options(mut self, options: $crate::config::ClientOptions) -> Self {
            self.options = options;
            self
        }

        /// Signs every request with an ACL access key and secret key.
        pub fn credentials(
            mut self,
            access_key: impl Into<String>,
            secret_key: impl Into<String>,
        ) -> Self {
            self.options.credentials = Some(ferrymq_protocol::acl::Credentials::new(
                access_key, secret_key,
            ));
            self
        }

        /// Connects with TLS (trusting any server certificate, as RocketMQ clients do).
        pub fn tls(mut self, on: bool) -> Self {
            self.options.tls = on;
            self
        }

        /// Timeout of ordinary requests (default 3 s).
        pub fn request_timeout(mut self, timeout: std::time::Duration) -> Self {
            self.options.request_timeout = timeout;
            self
        }

        /// Runs on an existing client instance (sharing its connections, heartbeats and client
        /// id) instead of creating one. The instance then outlives this client: shut it down
        /// yourself.
        pub fn instance(mut self, instance: $crate::instance::ClientInstance) -> Self {
            self.instance = Some(instance);
            self
        }
    };
}
pub(crate) use client_option_setters;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_split_and_trim() {
        assert_eq!(split_addrs(" a:1; b:2;;"), ["a:1", "b:2"]);
        let o = ClientOptions {
            namesrv_addr: Some(" ; ".into()),
            ..Default::default()
        };
        assert!(matches!(o.namesrv_addrs(), Err(ClientError::NoNameServer)));
        let o = ClientOptions {
            namesrv_addr: Some("h:9876".into()),
            ..Default::default()
        };
        assert_eq!(o.namesrv_addrs().unwrap(), ["h:9876"]);
    }
}
