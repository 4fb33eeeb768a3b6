//! Which sinks a run has, from its settings and the environment.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use thiserror::Error;

use crate::sinks::{
    file,
    metrics::{self, Health, MetricsError},
    otlp::{self, Compression, ConfigError, OtlpConfig, OtlpError, OtlpFlags, OtlpProtocol},
    resource::{ResourceConfig, ResourceError},
    stdout_sink,
    summary::{self, FinalTable, SummaryFormat},
    OutputFormat, Sinks,
};

/// What the command line asks of the sinks (the environment is read here).
#[derive(Debug)]
pub struct SinkConfig {
    /// Span output on stdout.
    pub output: OutputFormat,
    pub otlp_endpoint: Option<String>,
    pub otlp_protocol: Option<OtlpProtocol>,
    pub otlp_compression: Option<Compression>,
    /// `KEY=VALUE` OTLP request headers.
    pub otlp_headers: Vec<String>,
    pub service_name: Option<String>,
    /// OTLP-JSON lines file, rotated at `output_file_max_mib`.
    pub output_file: Option<PathBuf>,
    pub output_file_max_mib: u64,
    /// Where Prometheus metrics are served.
    pub metrics_addr: Option<SocketAddr>,
    /// How often the latency table is printed during the run.
    pub summary_every: Option<Duration>,
    /// How the periodic latency table is written.
    pub summary_format: SummaryFormat,
}

#[derive(Debug, Error)]
pub enum SetupError {
    #[error(transparent)]
    Resource(#[from] ResourceError),
    #[error(transparent)]
    OtlpConfig(#[from] ConfigError),
    #[error(transparent)]
    Otlp(#[from] OtlpError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error("--output-file {0}: {1}")]
    File(PathBuf, std::io::Error),
    #[error("starting the {0} sink: {1}")]
    Spawn(&'static str, std::io::Error),
}

/// Starts every sink `config` asks for (the latency table always);
/// `health` learns of each so the metrics can report on them. The
/// [`FinalTable`] has the latency table once the sinks are finished.
pub fn start(
    config: &SinkConfig,
    queue_batches: usize,
    health: &Arc<Health>,
) -> Result<(Sinks, FinalTable), SetupError> {
    let env = |name: &str| std::env::var(name).ok();
    let resource = Arc::new(ResourceConfig::from_env(
        config.service_name.as_deref(),
        env,
    )?);
    let otlp_config = OtlpConfig::resolve(
        OtlpFlags {
            endpoint: config.otlp_endpoint.as_deref(),
            protocol: config.otlp_protocol,
            headers: &config.otlp_headers,
            compression: config.otlp_compression,
        },
        env,
    )?;

    let mut sinks = Sinks::default();
    if let Some(sink) =
        stdout_sink(config.output, queue_batches).map_err(|e| SetupError::Spawn("stdout", e))?
    {
        sinks.add(sink);
    }
    if let Some(otlp) = &otlp_config {
        sinks.add(otlp::spawn(
            otlp,
            resource.clone(),
            queue_batches,
            otlp::Timing::default(),
        )?);
        log::info!(
            "exporting spans over OTLP {} to {} (compression: {})",
            otlp.protocol,
            otlp.endpoint,
            otlp.compression
        );
    }
    if let Some(path) = &config.output_file {
        let max_bytes = config.output_file_max_mib.saturating_mul(1024 * 1024);
        let sink = file::spawn(path, max_bytes, resource.clone(), queue_batches)
            .map_err(|e| SetupError::File(path.clone(), e))?;
        sinks.add(sink);
    }
    if let Some(addr) = config.metrics_addr {
        sinks.add(metrics::spawn(
            addr,
            resource.clone(),
            health.clone(),
            queue_batches,
        )?);
    }
    let (summary, latency) = summary::spawn(resource, config.summary_every, config.summary_format)
        .map_err(|e| SetupError::Spawn("summary", e))?;
    sinks.add(summary);
    health.set_sinks(sinks.counters());
    Ok((sinks, latency))
}
