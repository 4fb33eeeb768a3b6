//! The OTLP sink: spans to an OpenTelemetry collector over gRPC,
//! HTTP/protobuf or HTTP/JSON (gzip-compressed if asked, over TLS with a
//! custom CA and client certificates if asked), from its own thread and
//! runtime, batched by size and time, retried with backoff, and counted when
//! they cannot be delivered.

mod config;
pub mod encode;
mod grpc;
mod http;
pub mod json;
mod tls;
pub mod wire;
mod worker;

use std::{path::PathBuf, sync::Arc, time::Duration};

use bytes::Bytes;
use thiserror::Error;

pub use config::{
    Compression, ConfigError, OtlpConfig, OtlpFlags, OtlpProtocol, PemFile, TlsFiles, UnknownValue,
};
pub use worker::Timing;

use crate::sinks::{resource::ResourceConfig, SinkHandle, SinkVerbs};

/// The OTLP sink could not be set up.
#[derive(Debug, Error)]
pub enum OtlpError {
    #[error("OTLP endpoint {0:?}: {1}")]
    Endpoint(String, String),
    #[error("OTLP TLS set-up: {0}")]
    Tls(String),
    #[error("{var}={}: {why}", path.display())]
    TlsFile {
        var: &'static str,
        path: PathBuf,
        why: String,
    },
    #[error("OTLP header {0:?} is not valid in a request")]
    Header(String),
    #[error("starting the OTLP exporter: {0}")]
    Io(#[from] std::io::Error),
}

/// One export attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportError {
    /// Whether the same request may succeed later.
    pub retryable: bool,
    /// How long the collector asked us to wait (HTTP `Retry-After`).
    pub retry_after: Option<Duration>,
    pub message: String,
}

/// An error and its causes on one line (a TLS alert is often the last).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// What the worker needs from a transport: send one request (an encoded
/// `ExportTraceServiceRequest`, see [`wire`]), block until answered or
/// `timeout`; `Ok` holds the spans the collector rejected.
pub(crate) trait Transport {
    fn export(&mut self, request: Bytes, timeout: Duration) -> Result<u64, ExportError>;
}

#[expect(
    clippy::large_enum_variant,
    reason = "one per run, built once and never moved"
)]
enum Exporter {
    Grpc(grpc::GrpcExporter),
    Http(http::HttpExporter),
}

/// A transport on its own single-threaded runtime, owned by the sink thread.
struct RuntimeTransport {
    runtime: tokio::runtime::Runtime,
    exporter: Exporter,
}

impl Transport for RuntimeTransport {
    fn export(&mut self, request: Bytes, timeout: Duration) -> Result<u64, ExportError> {
        let exporter = &mut self.exporter;
        self.runtime.block_on(async move {
            let send = async {
                match exporter {
                    Exporter::Grpc(e) => e.export(request).await,
                    Exporter::Http(e) => e.export(request).await,
                }
            };
            match tokio::time::timeout(timeout, send).await {
                Ok(result) => result,
                Err(_) => Err(ExportError {
                    retryable: true,
                    retry_after: None,
                    message: format!("no answer within {timeout:?}"),
                }),
            }
        })
    }
}

/// The TLS files `config` names, read and checked; `None` when there are
/// none or the endpoint is not https.
fn tls_material(config: &OtlpConfig) -> Result<Option<tls::TlsMaterial>, OtlpError> {
    if config.tls.is_empty() {
        return Ok(None);
    }
    if !config.endpoint.starts_with("https://") {
        log::warn!(
            "otlp: the OTEL_EXPORTER_OTLP_*CERTIFICATE/_CLIENT_KEY files are not used: {} is not https://",
            config.endpoint
        );
        return Ok(None);
    }
    tls::TlsMaterial::load(&config.tls).map(Some)
}

/// The transport `config` asks for. Must be called inside a tokio runtime.
fn exporter(config: &OtlpConfig, tls: Option<tls::TlsMaterial>) -> Result<Exporter, OtlpError> {
    Ok(match config.protocol {
        OtlpProtocol::Grpc => Exporter::Grpc(grpc::GrpcExporter::new(config, tls.as_ref())?),
        OtlpProtocol::HttpProtobuf | OtlpProtocol::HttpJson => {
            Exporter::Http(http::HttpExporter::new(config, tls)?)
        }
    })
}

/// Starts the OTLP sink; it connects on the first export, so a collector
/// that is down at start is retried like one that goes down later.
pub fn spawn(
    config: &OtlpConfig,
    resource: Arc<ResourceConfig>,
    capacity: usize,
    timing: Timing,
) -> Result<SinkHandle, OtlpError> {
    let tls = tls_material(config)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let exporter = {
        let _inside = runtime.enter();
        exporter(config, tls)
    };
    let exporter = match exporter {
        Ok(exporter) => exporter,
        Err(err) => {
            // The caller may be async: a runtime dropped there panics.
            runtime.shutdown_background();
            return Err(err);
        }
    };
    let mut transport = RuntimeTransport { runtime, exporter };
    let timing = Timing {
        request_timeout: config.timeout,
        ..timing
    };
    let sink = SinkHandle::spawn("otlp", capacity, move |queue| {
        worker::run(&queue, &mut transport, &resource, &timing);
    })?;
    Ok(sink.with_verbs(SinkVerbs {
        written: "exported",
        failed: "dropped after retries",
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// TLS set-up (rustls, ring, webpki roots) works for both transports,
    /// and a collector that is not there is a retryable error.
    #[test]
    fn https_endpoints_set_up_tls_and_refusal_is_retryable() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        for protocol in [
            OtlpProtocol::Grpc,
            OtlpProtocol::HttpProtobuf,
            OtlpProtocol::HttpJson,
        ] {
            let config = OtlpConfig {
                protocol,
                endpoint: format!("https://127.0.0.1:{port}"),
                headers: vec![("x-key".into(), "v".into())],
                timeout: Duration::from_secs(2),
                compression: Compression::Gzip,
                tls: TlsFiles::default(),
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let exporter = {
                let _inside = runtime.enter();
                exporter(&config, tls_material(&config).unwrap()).unwrap()
            };
            let mut transport = RuntimeTransport { runtime, exporter };
            let err = transport
                .export(Bytes::new(), Duration::from_secs(2))
                .unwrap_err();
            assert!(err.retryable, "{protocol}: {err:?}");
        }
    }

    /// The tracer sets its sinks up from async code: a bad file there is
    /// the error naming it, not a panic of the runtime made for the sink.
    #[test]
    fn a_bad_tls_file_is_an_error_when_set_up_from_async_code() {
        for protocol in [OtlpProtocol::Grpc, OtlpProtocol::HttpJson] {
            let config = OtlpConfig {
                protocol,
                endpoint: "https://127.0.0.1:1".into(),
                headers: Vec::new(),
                timeout: Duration::from_secs(1),
                compression: Compression::None,
                tls: TlsFiles {
                    ca: Some(PemFile {
                        var: "OTEL_EXPORTER_OTLP_CERTIFICATE",
                        path: "/nonexistent/ca.pem".into(),
                    }),
                    client: None,
                },
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let result = runtime.block_on(async {
                spawn(
                    &config,
                    Arc::new(ResourceConfig::default()),
                    4,
                    Timing::default(),
                )
            });
            match result {
                Ok(_) => panic!("{protocol}: a missing CA file was accepted"),
                Err(err) => assert_eq!(
                    err.to_string(),
                    "OTEL_EXPORTER_OTLP_CERTIFICATE=/nonexistent/ca.pem: \
                     No such file or directory (os error 2)"
                ),
            }
        }
    }
}
