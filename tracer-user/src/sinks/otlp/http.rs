//! OTLP over HTTP with protobuf bodies: `POST {endpoint}` (the resolved
//! `.../v1/traces`), TLS by rustls with the webpki roots.

use std::time::Duration;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message as _;
use reqwest::{
    header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER},
    StatusCode,
};

use super::{config::OtlpConfig, ExportError, OtlpError};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const PROTOBUF: &str = "application/x-protobuf";

pub struct HttpExporter {
    client: reqwest::Client,
    url: String,
}

impl HttpExporter {
    pub fn new(config: &OtlpConfig) -> Result<Self, OtlpError> {
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let key = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| OtlpError::Header(name.clone()))?;
            let value =
                HeaderValue::from_str(value).map_err(|_| OtlpError::Header(name.clone()))?;
            headers.insert(key, value);
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(PROTOBUF));
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .default_headers(headers)
            .timeout(config.timeout)
            .connect_timeout(CONNECT_TIMEOUT.min(config.timeout))
            .build()
            .map_err(|err| OtlpError::Tls(err.to_string()))?;
        Ok(HttpExporter {
            client,
            url: config.endpoint.clone(),
        })
    }

    /// Sends one encoded request; `Ok` holds the spans the collector
    /// rejected.
    pub async fn export(&mut self, request: Bytes) -> Result<u64, ExportError> {
        let response = self
            .client
            .post(&self.url)
            .body(request)
            .send()
            .await
            .map_err(|err| ExportError {
                // Refused, reset, timed out: the collector may come back.
                retryable: true,
                retry_after: None,
                message: format!("POST {}: {}", self.url, error_chain(&err)),
            })?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = response.bytes().await.unwrap_or_default();
        if status.is_success() {
            // An empty or unparsable body means full success.
            let rejected = ExportTraceServiceResponse::decode(body.as_ref())
                .ok()
                .and_then(|r| r.partial_success)
                .map_or(0, |p| u64::try_from(p.rejected_spans).unwrap_or(0));
            return Ok(rejected);
        }
        Err(ExportError {
            retryable: retryable(status),
            retry_after,
            message: format!("POST {}: HTTP {status}", self.url),
        })
    }
}

/// The OTLP/HTTP spec's retryable statuses.
fn retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 502 | 503 | 504)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_statuses() {
        for code in [429, 502, 503, 504] {
            assert!(retryable(StatusCode::from_u16(code).unwrap()), "{code}");
        }
        for code in [400, 401, 404, 413, 500] {
            assert!(!retryable(StatusCode::from_u16(code).unwrap()), "{code}");
        }
    }
}
