//! OTLP over gRPC (tonic), with TLS for https endpoints.

use std::{str::FromStr as _, time::Duration};

use opentelemetry_proto::tonic::collector::trace::v1::{
    trace_service_client::TraceServiceClient, ExportTraceServiceRequest,
};
use tonic::{
    metadata::{MetadataKey, MetadataMap, MetadataValue},
    transport::{Channel, ClientTlsConfig, Endpoint},
    Code,
};

use super::{config::OtlpConfig, ExportError, OtlpError};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub struct GrpcExporter {
    client: TraceServiceClient<Channel>,
    metadata: MetadataMap,
}

impl GrpcExporter {
    /// Must be called inside a tokio runtime: the channel's connection task
    /// lives there. It connects on first use, and reconnects after failures.
    pub fn new(config: &OtlpConfig) -> Result<Self, OtlpError> {
        let mut endpoint = Endpoint::from_shared(config.endpoint.clone())
            .map_err(|err| OtlpError::Endpoint(config.endpoint.clone(), err.to_string()))?
            .timeout(config.timeout)
            .connect_timeout(CONNECT_TIMEOUT.min(config.timeout));
        if config.endpoint.starts_with("https://") {
            endpoint = endpoint
                .tls_config(ClientTlsConfig::new().with_webpki_roots())
                .map_err(|err| OtlpError::Tls(err.to_string()))?;
        }
        let mut metadata = MetadataMap::new();
        for (name, value) in &config.headers {
            let key = MetadataKey::from_str(name).map_err(|_| OtlpError::Header(name.clone()))?;
            let value = MetadataValue::try_from(value.as_str())
                .map_err(|_| OtlpError::Header(name.clone()))?;
            metadata.insert(key, value);
        }
        Ok(GrpcExporter {
            client: TraceServiceClient::new(endpoint.connect_lazy()),
            metadata,
        })
    }

    /// Sends one request; `Ok` holds the spans the collector rejected.
    pub async fn export(&mut self, request: ExportTraceServiceRequest) -> Result<u64, ExportError> {
        let mut request = tonic::Request::new(request);
        *request.metadata_mut() = self.metadata.clone();
        match self.client.export(request).await {
            Ok(response) => Ok(response
                .into_inner()
                .partial_success
                .map_or(0, |p| u64::try_from(p.rejected_spans).unwrap_or(0))),
            Err(status) => Err(ExportError {
                // A client-side transport failure (connection reset under a
                // request, say) comes back as Unknown with its cause attached;
                // the collector may well be back on the next connection.
                retryable: retryable(status.code())
                    || (status.code() == Code::Unknown
                        && std::error::Error::source(&status).is_some()),
                retry_after: None,
                message: format!("gRPC {:?}: {}", status.code(), status.message()),
            }),
        }
    }
}

/// The OTLP spec's retryable gRPC codes.
fn retryable(code: Code) -> bool {
    matches!(
        code,
        Code::Cancelled
            | Code::DeadlineExceeded
            | Code::Aborted
            | Code::OutOfRange
            | Code::Unavailable
            | Code::DataLoss
            | Code::ResourceExhausted
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_codes() {
        assert!(retryable(Code::Unavailable));
        assert!(retryable(Code::ResourceExhausted));
        assert!(retryable(Code::DeadlineExceeded));
        assert!(!retryable(Code::InvalidArgument));
        assert!(!retryable(Code::Unauthenticated));
        assert!(!retryable(Code::Unimplemented));
    }
}
