//! The `ferrymq` command line: parses arguments and wires the components together —
//! `namesrv`, `controller`, `broker`, `proxy` (the 5.x gRPC endpoint), `standalone` (name server, broker and
//! gRPC endpoint in one process), `dashboard` (the web dashboard on its own) and the offline `store`
//! tools.

mod admin;
mod bench;
mod connect;
mod logging;
mod store_cmd;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use ferrymq_broker::{Broker, BrokerConfig};
use ferrymq_controller::{Controller, ControllerConfig};
use ferrymq_dashboard::{Dashboard, DashboardConfig, LoginMode};
use ferrymq_metrics::prometheus_client::registry::Registry;
use ferrymq_metrics::MetricsEndpoint;
use ferrymq_namesrv::{NameServer, NamesrvConfig};
use ferrymq_proxy::{Proxy, ProxyConfig, TlsFiles, TlsMode};

#[derive(Parser)]
#[command(
    name = "ferrymq",
    version,
    about = "A RocketMQ-compatible message broker"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a NameServer.
    Namesrv {
        /// Listen address (overrides `listenPort` of the config file).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// A RocketMQ namesrv.conf (property file).
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
    },
    /// Run a controller (5.x controller mode: elects masters per broker group over Raft).
    Controller {
        /// A RocketMQ controller.conf (controllerDLegerPeers, controllerDLegerSelfId, ...).
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
        /// Listen address of the controller port (overrides `listenPort`).
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Run a broker.
    Broker {
        /// A RocketMQ broker.conf (property file).
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
        /// NameServer addresses, `host:port;host:port` (overrides `namesrvAddr`).
        #[arg(short = 'n', long = "namesrv-addr", env = "NAMESRV_ADDR")]
        namesrv_addr: Option<String>,
    },
    /// Run the RocketMQ 5.x gRPC endpoint (for the official 5.x SDKs) in front of a cluster.
    Proxy {
        /// NameServer addresses, `host:port;host:port`.
        #[arg(short = 'n', long = "namesrv-addr", env = "NAMESRV_ADDR")]
        namesrv_addr: String,
        /// gRPC listen address (TLS and plaintext on the same port).
        #[arg(long, default_value = "0.0.0.0:8081")]
        listen: SocketAddr,
        /// Check every call against this plain_acl.yml (the brokers' ACL file); the proxy signs
        /// its own broker requests with the file's admin account.
        #[arg(long)]
        acl_file: Option<PathBuf>,
        /// Serve Prometheus `/metrics` here (RocketMQ's PROM exporter port is 5557).
        #[arg(long)]
        metrics_listen: Option<SocketAddr>,
        /// Furthest a delay message's delivery time may lie ahead, ms (Java proxy's
        /// maxDelayTimeMills; keep it within the brokers' timerMaxDelaySec).
        #[arg(long = "max-delay-time-mills", default_value_t = 86_400_000)]
        max_delay_time_mills: u64,
    },
    /// Run a NameServer, a broker and the gRPC endpoint in one process, zero configuration.
    Standalone {
        /// A RocketMQ broker.conf for the broker part.
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
        /// Listen address of the embedded NameServer.
        #[arg(long, default_value = "0.0.0.0:9876")]
        namesrv_listen: SocketAddr,
        /// Listen address of the embedded gRPC endpoint (5.x SDKs) [default: 0.0.0.0:8081;
        /// if that port is taken the endpoint is skipped with a warning].
        #[arg(long)]
        grpc_listen: Option<SocketAddr>,
        /// Do not start the gRPC endpoint.
        #[arg(long)]
        no_grpc: bool,
        /// Listen address of the web dashboard [default: 0.0.0.0:8080, or `dashboardPort`;
        /// if 8080 is taken the dashboard is skipped with a warning].
        #[arg(long)]
        dashboard_listen: Option<SocketAddr>,
        /// Do not start the web dashboard (as `dashboardEnable=false`).
        #[arg(long)]
        no_dashboard: bool,
    },
    /// Run the web dashboard alone, in front of a cluster's name servers.
    Dashboard {
        /// NameServer addresses, `host:port;host:port`.
        #[arg(short = 'n', long = "namesrv-addr", env = "NAMESRV_ADDR")]
        namesrv_addr: String,
        /// HTTP listen address.
        #[arg(long, default_value = "0.0.0.0:8080")]
        listen: SocketAddr,
        /// Visitors sign in with ACL credentials the brokers accept (use when ACL is on).
        #[arg(long)]
        login: bool,
        /// Topic traces are read from.
        #[arg(long, default_value = "RMQ_SYS_TRACE_TOPIC")]
        trace_topic: String,
        #[command(flatten)]
        security: connect::SecurityArgs,
    },
    /// Administer topics, groups, brokers and messages (mqadmin's commands and flags).
    Admin(admin::AdminCommand),
    /// Offline tools for a store directory.
    #[command(subcommand)]
    Store(store_cmd::StoreCommand),
    /// Producer/consumer benchmarks (RocketMQ's producer.sh / consumer.sh flags).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return admin::parse_error(e),
    };
    if let Command::Admin(cmd) = cli.command {
        return admin::run(cmd);
    }
    if let Command::Store(cmd) = cli.command {
        return match store_cmd::run(cmd) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    // Tools print their own output; servers log at info.
    let quiet = matches!(cli.command, Command::Bench(_));
    logging::init(if quiet { "warn" } else { "info" });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Namesrv { listen, config } => run_namesrv(listen, config.as_deref()).await,
            Command::Controller { config, listen } => {
                run_controller(config.as_deref(), listen).await
            }
            Command::Broker {
                config,
                namesrv_addr,
            } => run_broker(config.as_deref(), namesrv_addr).await,
            Command::Proxy {
                namesrv_addr,
                listen,
                acl_file,
                metrics_listen,
                max_delay_time_mills,
            } => {
                let config = ProxyConfig {
                    listen,
                    acl_file,
                    metrics: metrics_listen.is_some(),
                    max_delay: std::time::Duration::from_millis(max_delay_time_mills),
                    ..ProxyConfig::new(namesrv_addr.clone())
                };
                run_proxy(config, metrics_listen).await
            }
            Command::Standalone {
                config,
                namesrv_listen,
                grpc_listen,
                no_grpc,
                dashboard_listen,
                no_dashboard,
            } => {
                let grpc = Listen::from_flags(no_grpc, grpc_listen);
                let dashboard = (no_dashboard || dashboard_listen.is_some())
                    .then(|| Listen::from_flags(no_dashboard, dashboard_listen));
                run_standalone(config.as_deref(), namesrv_listen, grpc, dashboard).await
            }
            Command::Dashboard {
                namesrv_addr,
                listen,
                login,
                trace_topic,
                security,
            } => {
                if namesrv_addr.trim().is_empty() {
                    bail!("no name server configured (-n or NAMESRV_ADDR)");
                }
                let config = DashboardConfig {
                    client: security.client_options(&namesrv_addr),
                    login: if login {
                        LoginMode::Required
                    } else {
                        LoginMode::Open
                    },
                    trace_topic,
                    ..DashboardConfig::new(listen, namesrv_addr.clone())
                };
                let dashboard = Dashboard::serve(config).await?;
                logging::shutdown_signal().await;
                dashboard.shutdown().await;
                Ok(())
            }
            Command::Bench(cmd) => bench::run(cmd).await,
            Command::Store(_) | Command::Admin(_) => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Reads a config file. A `tls.config.file` key names RocketMQ's `tls.properties`, whose
/// `tls.*` keys are read as if they were in the file (keys in the file itself win).
fn read_conf(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    let tls_file = ferrymq_protocol::java_properties::parse(&text)
        .into_iter()
        .rev()
        .find(|(k, _)| k == "tls.config.file")
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| !v.is_empty());
    let Some(tls_file) = tls_file else {
        return Ok(text);
    };
    let tls_path = path.parent().unwrap_or(Path::new(".")).join(&tls_file);
    let tls_text = std::fs::read_to_string(&tls_path)
        .with_context(|| format!("cannot read tls.config.file {}", tls_path.display()))?;
    // Later lines win, so the tls file goes first.
    Ok(format!("{tls_text}\n{text}"))
}

/// Where `aclEnable=true` looks for `plain_acl.yml` when `rocketmq.acl.plain.file` is not
/// set: `$ROCKETMQ_HOME/conf/plain_acl.yml` as Java, else beside the config file (RocketMQ's
/// distribution keeps both in `conf/`).
fn default_acl_file(config_path: Option<&Path>) -> PathBuf {
    match std::env::var_os("ROCKETMQ_HOME") {
        Some(home) => PathBuf::from(home).join("conf").join("plain_acl.yml"),
        None => config_path
            .and_then(Path::parent)
            .unwrap_or(Path::new("."))
            .join("plain_acl.yml"),
    }
}

/// The NameServer's config, and the embedded controller's from the same file when
/// `enableControllerInNamesrv=true` (RocketMQ keeps both in namesrv.conf).
fn namesrv_config(path: Option<&Path>) -> Result<(NamesrvConfig, Option<ControllerConfig>)> {
    let Some(path) = path else {
        return Ok((NamesrvConfig::default(), None));
    };
    let text = read_conf(path)?;
    let (config, mut unknown) = NamesrvConfig::from_conf(&text)
        .with_context(|| format!("invalid config file {}", path.display()))?;
    let controller = if config.enable_controller_in_namesrv {
        let (controller, not_controller) = ControllerConfig::from_conf(&text)
            .with_context(|| format!("invalid controller keys in {}", path.display()))?;
        unknown.retain(|k| not_controller.contains(k));
        Some(controller)
    } else {
        None
    };
    for key in unknown {
        tracing::warn!(key, file = %path.display(), "unknown namesrv config key ignored");
    }
    Ok((config, controller))
}

fn broker_config(path: Option<&Path>) -> Result<BrokerConfig> {
    let Some(path) = path else {
        return Ok(BrokerConfig::default());
    };
    let (mut config, unknown) = BrokerConfig::from_conf(&read_conf(path)?)
        .with_context(|| format!("invalid config file {}", path.display()))?;
    for key in unknown {
        tracing::warn!(key, file = %path.display(), "unknown broker config key ignored");
    }
    if config.acl_enable && config.plain_acl_file.is_none() {
        config.plain_acl_file = Some(default_acl_file(Some(path)).to_string_lossy().into_owned());
    }
    Ok(config)
}

async fn run_namesrv(listen: Option<SocketAddr>, config: Option<&Path>) -> Result<()> {
    let (config, controller_config) = namesrv_config(config)?;
    let metrics_addr = config.metrics_addr();
    let listen = listen.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], config.listen_port)));
    let controller = match controller_config {
        Some(c) => Some(
            Controller::start_embedded(c)
                .await
                .context("cannot start the embedded controller")?,
        ),
        None => None,
    };
    let namesrv = NameServer::start_with_controller(
        config,
        listen,
        controller.as_ref().map(Controller::handler),
    )
    .await
    .context("cannot start the name server")?;
    if let Some(c) = &controller {
        c.serving_on(namesrv.local_addr());
        tracing::info!(addr = %namesrv.local_addr(), "controller embedded in the name server");
    }
    let metrics = serve_metrics(metrics_addr, |r| namesrv.register_metrics(r)).await?;
    tracing::info!(addr = %namesrv.local_addr(), "name server ready");
    logging::shutdown_signal().await;
    if let Some(m) = metrics {
        m.shutdown().await;
    }
    namesrv.shutdown().await;
    if let Some(c) = controller {
        c.shutdown().await;
    }
    Ok(())
}

async fn run_controller(config: Option<&Path>, listen: Option<SocketAddr>) -> Result<()> {
    let config = match config {
        None => ControllerConfig::default(),
        Some(path) => {
            let (config, unknown) = ControllerConfig::from_conf(&read_conf(path)?)
                .with_context(|| format!("invalid config file {}", path.display()))?;
            for key in unknown {
                tracing::warn!(key, file = %path.display(), "unknown controller config key ignored");
            }
            config
        }
    };
    let listen = listen.unwrap_or_else(|| {
        let ip = config
            .bind_address
            .parse()
            .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
        SocketAddr::new(ip, config.listen_port)
    });
    let controller = Controller::start(config, listen)
        .await
        .context("cannot start the controller")?;
    tracing::info!(addr = ?controller.local_addr(), "controller ready");
    logging::shutdown_signal().await;
    controller.shutdown().await;
    Ok(())
}

/// Serves `/metrics` at `addr` (when the config asks for it) with what `fill` registers.
async fn serve_metrics(
    addr: Option<SocketAddr>,
    fill: impl FnOnce(&mut Registry),
) -> Result<Option<MetricsEndpoint>> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    let mut registry = Registry::default();
    fill(&mut registry);
    let endpoint = MetricsEndpoint::serve(addr, registry)
        .await
        .with_context(|| format!("cannot serve /metrics on {addr} (metricsPromExporterPort)"))?;
    Ok(Some(endpoint))
}

async fn run_broker(config: Option<&Path>, namesrv_addr: Option<String>) -> Result<()> {
    let mut config = broker_config(config)?;
    if let Some(addr) = namesrv_addr.filter(|a| !a.trim().is_empty()) {
        config.namesrv_addr = Some(addr);
    }
    if config.namesrv_addrs().is_empty() {
        tracing::warn!("no name server configured (namesrvAddr, -n or NAMESRV_ADDR): clients will not find this broker");
    }
    let dashboard_config = config.clone();
    let broker = Broker::start(config)
        .await
        .context("cannot start the broker")?;
    let metrics = match serve_metrics(broker.metrics_addr(), |r| broker.register_metrics(r)).await {
        Ok(m) => m,
        Err(e) => {
            broker.shutdown().await;
            return Err(e);
        }
    };
    let dashboard = match start_dashboard(
        Listen::dashboard_of(&dashboard_config),
        &dashboard_config,
        dashboard_config.namesrv_addr.clone().unwrap_or_default(),
        dashboard_config.tls_enable,
    )
    .await
    {
        Ok(d) => d,
        Err(e) => {
            if let Some(m) = metrics {
                m.shutdown().await;
            }
            broker.shutdown().await;
            return Err(e);
        }
    };
    logging::shutdown_signal().await;
    if let Some(d) = dashboard {
        d.shutdown().await;
    }
    if let Some(m) = metrics {
        m.shutdown().await;
    }
    broker.shutdown().await;
    Ok(())
}

/// Where standalone keeps its data when no config says otherwise.
fn default_standalone_root() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".ferrymq")
        .join("store")
}

async fn run_proxy(config: ProxyConfig, metrics_listen: Option<SocketAddr>) -> Result<()> {
    if config.namesrv_addr.trim().is_empty() {
        bail!("no name server configured (-n or NAMESRV_ADDR)");
    }
    let proxy = Proxy::start(config)
        .await
        .context("cannot start the gRPC proxy")?;
    let metrics = match serve_metrics(metrics_listen, |r| proxy.register_metrics(r)).await {
        Ok(m) => m,
        Err(e) => {
            proxy.shutdown().await;
            return Err(e);
        }
    };
    logging::shutdown_signal().await;
    if let Some(m) = metrics {
        m.shutdown().await;
    }
    proxy.shutdown().await;
    Ok(())
}

/// Whether and where an optional endpoint (gRPC, dashboard) is served.
#[derive(Debug, Clone, Copy)]
enum Listen {
    Off,
    /// The well-known port if free: a second process on one host still starts, without it.
    Default,
    /// An address given explicitly; failing to bind it fails the start.
    Required(SocketAddr),
}

impl Listen {
    fn from_flags(off: bool, addr: Option<SocketAddr>) -> Listen {
        match (off, addr) {
            (true, _) => Listen::Off,
            (false, Some(a)) => Listen::Required(a),
            (false, None) => Listen::Default,
        }
    }

    /// What broker.conf says about the dashboard (`dashboardEnable`, `dashboardPort`).
    fn dashboard_of(config: &BrokerConfig) -> Listen {
        match (config.dashboard_enable, config.dashboard_port) {
            (false, _) => Listen::Off,
            (true, Some(p)) => Listen::Required(SocketAddr::from(([0, 0, 0, 0], p))),
            (true, None) => Listen::Default,
        }
    }
}

/// Starts the dashboard a broker (or standalone) serves, over the name servers `namesrv`;
/// sign-in is required when the broker checks ACL 1.0 or 2.0.
async fn start_dashboard(
    listen: Listen,
    config: &BrokerConfig,
    namesrv: String,
    tls: bool,
) -> Result<Option<Dashboard>> {
    let (addr, required) = match listen {
        Listen::Off => return Ok(None),
        Listen::Default => (
            SocketAddr::from(([0, 0, 0, 0], ferrymq_dashboard::DEFAULT_PORT)),
            false,
        ),
        Listen::Required(a) => (a, true),
    };
    if namesrv.trim().is_empty() {
        tracing::warn!("dashboard not started: no name server configured");
        return Ok(None);
    }
    let acl = config.acl_enable || config.authentication_enabled;
    let mut dashboard = DashboardConfig::new(addr, namesrv);
    dashboard.client.tls = tls;
    dashboard.login = if acl {
        LoginMode::Required
    } else {
        LoginMode::Open
    };
    dashboard.trace_topic = config.msg_trace_topic_name.clone();
    match Dashboard::serve(dashboard).await {
        Ok(d) => Ok(Some(d)),
        Err(e) if !required => {
            tracing::warn!(error = %e, "dashboard not started (set dashboardPort or --dashboard-listen to pick another port)");
            Ok(None)
        }
        Err(e) => Err(anyhow::Error::new(e).context("cannot start the dashboard")),
    }
}

async fn run_standalone(
    config_path: Option<&Path>,
    namesrv_listen: SocketAddr,
    grpc_listen: Listen,
    dashboard_listen: Option<Listen>,
) -> Result<()> {
    let mut config = broker_config(config_path)?;
    let text = config_path.map(read_conf).transpose()?.unwrap_or_default();
    let has_key = |key: &str| {
        text.lines().map(str::trim).any(|l| {
            !l.starts_with('#') && l.split(['=', ':']).next().is_some_and(|k| k.trim() == key)
        })
    };
    if !has_key("storePathRootDir") {
        config.store_path_root_dir = default_standalone_root().to_string_lossy().into_owned();
    }
    if config.broker_ip1.as_deref().is_none_or(str::is_empty) {
        config.broker_ip1 = Some("127.0.0.1".to_owned());
    }
    let namesrv_dir = Path::new(&config.store_path_root_dir).join("namesrv");
    let namesrv_config = NamesrvConfig {
        kv_config_path: namesrv_dir
            .join("kvConfig.json")
            .to_string_lossy()
            .into_owned(),
        config_store_path: namesrv_dir
            .join("namesrv.properties")
            .to_string_lossy()
            .into_owned(),
        // One process, one TLS setting: the embedded NameServer follows the broker's.
        tls_server_mode: config.tls_server_mode.clone(),
        tls_server_cert_path: config.tls_server_cert_path.clone(),
        tls_server_key_path: config.tls_server_key_path.clone(),
        ..NamesrvConfig::default()
    };
    // Under `enforcing` the parts must talk to each other over TLS too.
    let internal_tls = config.tls_server_mode.eq_ignore_ascii_case("enforcing");
    if internal_tls {
        config.tls_enable = true;
    }
    let namesrv = NameServer::start(namesrv_config, namesrv_listen)
        .await
        .context("cannot start the embedded name server")?;
    let ns_addr = namesrv.local_addr();
    let ns_local = if ns_addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], ns_addr.port()))
    } else {
        ns_addr
    };
    if !has_key("namesrvAddr") {
        config.namesrv_addr = Some(ns_local.to_string());
    }
    tracing::info!(data = %config.store_path_root_dir, namesrv = %ns_addr, "standalone: name server ready");
    // The gRPC port follows the broker's TLS settings.
    let grpc_tls_mode = config
        .tls_server_mode
        .parse::<TlsMode>()
        .map_err(|e| anyhow::anyhow!("tls.server.mode: {e}"))?;
    let grpc_tls_files = match (&config.tls_server_cert_path, &config.tls_server_key_path) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert_chain: cert.into(),
            private_key: key.into(),
        }),
        _ => None,
    };
    let dashboard_listen = dashboard_listen.unwrap_or_else(|| Listen::dashboard_of(&config));
    let timer_max_delay_sec = config.timer_max_delay_sec;
    let dashboard_broker_config = config.clone();
    let broker = match Broker::start(config).await {
        Ok(b) => b,
        Err(e) => {
            namesrv.shutdown().await;
            bail!("cannot start the broker: {e}");
        }
    };
    let (listen, required) = match grpc_listen {
        Listen::Off => (None, false),

        Listen::Default => (Some(SocketAddr::from(([0, 0, 0, 0], 8081))), false),
        Listen::Required(addr) => (Some(addr), true),
    };
    let proxy = match listen {
        Some(listen) => match Proxy::start(ProxyConfig {
            listen,
            tls: grpc_tls_files,
            tls_mode: grpc_tls_mode,
            upstream_tls: internal_tls,
            // The gRPC port checks the same accounts, users and policies as the broker.
            shared_access: broker
                .access_control()
                .map(|access| (access, broker.own_credentials())),
            metrics: broker.metrics_addr().is_some(),
            // One process, one delay limit: the broker's timerMaxDelaySec.
            max_delay: std::time::Duration::from_secs(timer_max_delay_sec),
            ..ProxyConfig::new(ns_local.to_string())
        })
        .await
        {
            Ok(p) => Some(p),
            Err(e) if !required => {
                tracing::warn!(error = %e, "gRPC endpoint not started (use --grpc-listen to pick another address)");
                None
            }
            Err(e) => {
                broker.shutdown().await;
                namesrv.shutdown().await;
                bail!("cannot start the gRPC proxy: {e}");
            }
        },
        None => None,
    };
    let grpc = proxy
        .as_ref()
        .map(|p| p.local_addr().to_string())
        .unwrap_or_else(|| "off".to_owned());
    // One process, one /metrics: the NameServer's and the broker's series together.
    let metrics = match serve_metrics(broker.metrics_addr(), |r| {
        namesrv.register_metrics(r);
        broker.register_metrics(r);
        if let Some(p) = &proxy {
            p.register_metrics(r);
        }
    })
    .await
    {
        Ok(m) => m,
        Err(e) => {
            if let Some(p) = proxy {
                p.shutdown().await;
            }
            broker.shutdown().await;
            namesrv.shutdown().await;
            return Err(e);
        }
    };
    let dashboard = match start_dashboard(
        dashboard_listen,
        &dashboard_broker_config,
        ns_local.to_string(),
        internal_tls,
    )
    .await
    {
        Ok(d) => d,
        Err(e) => {
            if let Some(m) = metrics {
                m.shutdown().await;
            }
            if let Some(p) = proxy {
                p.shutdown().await;
            }
            broker.shutdown().await;
            namesrv.shutdown().await;
            return Err(e);
        }
    };
    let dashboard_addr = dashboard
        .as_ref()
        .map(|d| d.local_addr().to_string())
        .unwrap_or_else(|| "off".to_owned());
    tracing::info!(broker = %broker.broker_addr(), namesrv = %ns_local, %grpc, dashboard = %dashboard_addr, "standalone ready: NAMESRV_ADDR={ns_local}");
    logging::shutdown_signal().await;
    if let Some(d) = dashboard {
        d.shutdown().await;
    }
    if let Some(m) = metrics {
        m.shutdown().await;
    }
    if let Some(p) = proxy {
        p.shutdown().await;
    }
    broker.shutdown().await;
    namesrv.shutdown().await;
    Ok(())
}
