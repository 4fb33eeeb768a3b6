//! OTLP over gRPC (tonic), with TLS for https endpoints (a custom CA and a
//! client certificate if configured) and gzip message compression if asked.
//!
//! The request goes out as the bytes [`wire`](super::wire) encoded: the
//! call is the generated `TraceServiceClient::export`, with a codec whose
//! encoder copies those bytes into the gRPC frame instead of encoding a
//! message struct, and whose decoder reads the `ExportTraceServiceResponse`.

use std::{str::FromStr as _, time::Duration};

use bytes::{BufMut as _, Bytes};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message as _;
use tonic::{
    client::Grpc,
    codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder},
    codegen::http::uri::PathAndQuery,
    metadata::{MetadataKey, MetadataMap, MetadataValue},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
    Code, GrpcMethod, Status,
};

use super::{
    config::{Compression, OtlpConfig},
    error_chain,
    tls::TlsMaterial,
    ExportError, OtlpError,
};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const SERVICE: &str = "opentelemetry.proto.collector.trace.v1.TraceService";
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// Requests already encoded out, `ExportTraceServiceResponse` in.
#[derive(Clone, Copy, Debug, Default)]
pub struct PreEncodedCodec;

impl Codec for PreEncodedCodec {
    type Encode = Bytes;
    type Decode = ExportTraceServiceResponse;
    type Encoder = PreEncodedCodec;
    type Decoder = PreEncodedCodec;

    fn encoder(&mut self) -> Self::Encoder {
        PreEncodedCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        PreEncodedCodec
    }
}

impl Encoder for PreEncodedCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for PreEncodedCodec {
    type Item = ExportTraceServiceResponse;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        // As tonic's prost codec answers an undecodable message.
        ExportTraceServiceResponse::decode(src)
            .map(Some)
            .map_err(|err| Status::internal(err.to_string()))
    }
}

pub struct GrpcExporter {
    client: Grpc<Channel>,
    metadata: MetadataMap,
}

impl GrpcExporter {
    /// Must be called inside a tokio runtime: the channel's connection task
    /// lives there. It connects on first use, and reconnects after failures.
    /// `tls` holds the checked custom CA and client certificate, if any.
    pub fn new(config: &OtlpConfig, tls: Option<&TlsMaterial>) -> Result<Self, OtlpError> {
        let mut endpoint = Endpoint::from_shared(config.endpoint.clone())
            .map_err(|err| OtlpError::Endpoint(config.endpoint.clone(), err.to_string()))?
            .timeout(config.timeout)
            .connect_timeout(CONNECT_TIMEOUT.min(config.timeout));
        if config.endpoint.starts_with("https://") {
            let mut tls_config = ClientTlsConfig::new();
            // A configured CA replaces the built-in roots, as in the
            // OpenTelemetry SDKs and the Collector.
            tls_config = match tls.and_then(|t| t.ca_pem.as_ref()) {
                Some(ca) => tls_config.ca_certificate(Certificate::from_pem(ca)),
                None => tls_config.with_webpki_roots(),
            };
            if let Some((cert, key)) = tls.and_then(|t| t.client_pem.as_ref()) {
                tls_config = tls_config.identity(Identity::from_pem(cert, key));
            }
            endpoint = endpoint
                .tls_config(tls_config)
                .map_err(|err| OtlpError::Tls(err.to_string()))?;
        }
        let mut metadata = MetadataMap::new();
        for (name, value) in &config.headers {
            let key = MetadataKey::from_str(name).map_err(|_| OtlpError::Header(name.clone()))?;
            let value = MetadataValue::try_from(value.as_str())
                .map_err(|_| OtlpError::Header(name.clone()))?;
            metadata.insert(key, value);
        }
        let mut client = Grpc::new(endpoint.connect_lazy());
        if config.compression == Compression::Gzip {
            // Sends `grpc-encoding: gzip`; the collector's answer may then
            // be compressed too.
            client = client
                .send_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Gzip);
        }
        Ok(GrpcExporter { client, metadata })
    }

    /// `TraceService/Export` with an encoded request, as the generated
    /// client makes the call.
    async fn call(
        &mut self,
        request: Bytes,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, Status> {
        self.client
            .ready()
            .await
            .map_err(|err| Status::unknown(format!("Service was not ready: {err}")))?;
        let mut request = tonic::Request::new(request);
        *request.metadata_mut() = self.metadata.clone();
        request
            .extensions_mut()
            .insert(GrpcMethod::new(SERVICE, "Export"));
        self.client
            .unary(
                request,
                PathAndQuery::from_static(EXPORT_PATH),
                PreEncodedCodec,
            )
            .await
    }

    /// Sends one encoded request; `Ok` holds the spans the collector
    /// rejected.
    pub async fn export(&mut self, request: Bytes) -> Result<u64, ExportError> {
        match self.call(request).await {
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
                message: message(&status),
            }),
        }
    }
}

/// Code, message, and the causes that say why a call failed before
/// reaching the collector (a refused TLS handshake, say).
fn message(status: &Status) -> String {
    let mut out = format!("gRPC {:?}: {}", status.code(), status.message());
    if let Some(cause) = std::error::Error::source(status) {
        out.push_str(": ");
        out.push_str(&error_chain(cause));
    }
    out
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
