//! Which sinks a run has, from the command line and the environment.

use std::{path::PathBuf, sync::Arc, time::Duration};

use thiserror::Error;

use crate::{
    cli::Args,
    sinks::{
        file,
        metrics::{self, Health, MetricsError},
        otlp::{self, ConfigError, OtlpConfig, OtlpError, OtlpFlags},
        resource::{ResourceConfig, ResourceError},
        stdout_sink, summary, Sinks,
    },
};

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

/// Starts every sink `args` asks for (the latency table always); `health`
/// learns of each so the metrics can report on them.
pub fn start(args: &Args, queue_batches: usize, health: &Arc<Health>) -> Result<Sinks, SetupError> {
    let env = |name: &str| std::env::var(name).ok();
    let export = &args.export;
    let resource = Arc::new(ResourceConfig::from_env(
        export.service_name.as_deref(),
        env,
    )?);
    let otlp_config = OtlpConfig::resolve(
        OtlpFlags {
            endpoint: export.otlp_endpoint.as_deref(),
            protocol: export.otlp_protocol,
            headers: &export.otlp_headers,
        },
        env,
    )?;

    let mut sinks = Sinks::default();
    if let Some(sink) =
        stdout_sink(args.output, queue_batches).map_err(|e| SetupError::Spawn("stdout", e))?
    {
        sinks.add(sink);
    }
    if let Some(config) = &otlp_config {
        sinks.add(otlp::spawn(
            config,
            resource.clone(),
            queue_batches,
            otlp::Timing::default(),
        )?);
        log::info!(
            "exporting spans over OTLP {} to {}",
            config.protocol,
            config.endpoint
        );
    }
    if let Some(path) = &export.output_file {
        let max_bytes = export.output_file_max_mib.saturating_mul(1024 * 1024);
        let sink = file::spawn(path, max_bytes, resource.clone(), queue_batches)
            .map_err(|e| SetupError::File(path.clone(), e))?;
        sinks.add(sink);
    }
    if let Some(addr) = export.metrics_addr {
        sinks.add(metrics::spawn(
            addr,
            resource.clone(),
            health.clone(),
            queue_batches,
        )?);
    }
    let every = export.summary_every.map(Duration::from_secs);
    sinks.add(
        summary::spawn(resource, every, queue_batches)
            .map_err(|e| SetupError::Spawn("summary", e))?,
    );
    health.set_sinks(sinks.counters());
    Ok(sinks)
}
