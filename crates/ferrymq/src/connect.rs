//! How `admin` and `bench` reach a cluster: name servers plus the security flags (ACL
//! credentials, TLS) shared by both, turned into the client library's options.

use clap::Args;
use ferrymq_client::ClientOptions;
use ferrymq_protocol::acl::Credentials;

/// `--access-key/--secret-key` (ACL) and `--tls`.
#[derive(Debug, Args, Clone, Default)]
pub struct SecurityArgs {
    /// ACL access key: every request is signed (needs --secret-key).
    #[arg(
        long = "access-key",
        visible_alias = "accessKey",
        requires = "secret_key",
        global = true
    )]
    pub access_key: Option<String>,
    /// ACL secret key.
    #[arg(
        long = "secret-key",
        visible_alias = "secretKey",
        requires = "access_key",
        global = true
    )]
    pub secret_key: Option<String>,
    /// Connect with TLS (trusting any server certificate, as RocketMQ clients do).
    #[arg(long, global = true)]
    pub tls: bool,
}

impl SecurityArgs {
    /// Client options for `namesrv` with these flags applied.
    pub fn client_options(&self, namesrv: &str) -> ClientOptions {
        ClientOptions {
            namesrv_addr: Some(namesrv.to_owned()),
            credentials: match (&self.access_key, &self.secret_key) {
                (Some(ak), Some(sk)) => Some(Credentials::new(ak, sk)),
                _ => None,
            },
            tls: self.tls,
            ..ClientOptions::default()
        }
    }
}
