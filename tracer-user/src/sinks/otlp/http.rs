//! OTLP over HTTP: `POST {endpoint}` (the resolved `.../v1/traces`) with a
//! protobuf or (`http/json`) OTLP/JSON body, gzip-compressed if asked; TLS
//! by rustls with the webpki roots, or the configured CA and client
//! certificate.

use std::{io::Write as _, time::Duration};

use bytes::Bytes;
use flate2::{write::GzEncoder, Compression as GzLevel};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message as _;
use reqwest::{
    header::{HeaderMap, HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER},
    StatusCode,
};
use serde_json::Value;

use super::{
    config::{Compression, OtlpConfig, OtlpProtocol},
    error_chain, json,
    tls::TlsMaterial,
    ExportError, OtlpError,
};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

pub struct HttpExporter {
    client: reqwest::Client,
    url: String,
    as_json: bool,
    gzip: bool,
}

impl HttpExporter {
    /// `tls` holds the checked custom CA and client certificate, if any.
    pub fn new(config: &OtlpConfig, tls: Option<TlsMaterial>) -> Result<Self, OtlpError> {
        let as_json = config.protocol == OtlpProtocol::HttpJson;
        let gzip = config.compression == Compression::Gzip;
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let key = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| OtlpError::Header(name.clone()))?;
            let value =
                HeaderValue::from_str(value).map_err(|_| OtlpError::Header(name.clone()))?;
            headers.insert(key, value);
        }
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static(if as_json { JSON } else { PROTOBUF }),
        );
        if gzip {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        let mut builder = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(config.timeout)
            .connect_timeout(CONNECT_TIMEOUT.min(config.timeout));
        builder = match tls {
            // Its roots are the configured CA (or the webpki ones), with the
            // client certificate if there is one.
            Some(tls) => builder.use_preconfigured_tls(tls.rustls),
            None => builder.use_rustls_tls(),
        };
        let client = builder
            .build()
            .map_err(|err| OtlpError::Tls(err.to_string()))?;
        Ok(HttpExporter {
            client,
            url: config.endpoint.clone(),
            as_json,
            gzip,
        })
    }

    /// The request body: protobuf as encoded, or its OTLP/JSON form, then
    /// compressed if asked.
    fn body(&self, request: Bytes) -> Result<Bytes, ExportError> {
        let body = if self.as_json {
            // The one encoder writes protobuf; JSON is rendered from its
            // decoded request, as the file sink renders it.
            let decoded = ExportTraceServiceRequest::decode(request)
                .map_err(|err| not_retryable(format!("re-reading the request for JSON: {err}")))?;
            let mut out = Vec::new();
            json::write_line(&mut out, &decoded);
            Bytes::from(out)
        } else {
            request
        };
        if !self.gzip {
            return Ok(body);
        }
        let mut gz = GzEncoder::new(Vec::with_capacity(body.len() / 4), GzLevel::default());
        gz.write_all(&body)
            .and_then(|()| gz.finish())
            .map(Bytes::from)
            .map_err(|err| not_retryable(format!("gzip: {err}")))
    }

    /// Sends one encoded request; `Ok` holds the spans the collector
    /// rejected.
    pub async fn export(&mut self, request: Bytes) -> Result<u64, ExportError> {
        let body = self.body(request)?;
        let response = self
            .client
            .post(&self.url)
            .body(body)
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
            let rejected = if self.as_json {
                rejected_in_json(&body)
            } else {
                ExportTraceServiceResponse::decode(body.as_ref())
                    .ok()
                    .and_then(|r| r.partial_success)
                    .map_or(0, |p| u64::try_from(p.rejected_spans).unwrap_or(0))
            };
            return Ok(rejected);
        }
        Err(ExportError {
            retryable: retryable(status),
            retry_after,
            message: format!("POST {}: HTTP {status}", self.url),
        })
    }
}

fn not_retryable(message: String) -> ExportError {
    ExportError {
        retryable: false,
        retry_after: None,
        message,
    }
}

/// `partialSuccess.rejectedSpans` of a JSON answer: an int64, so a decimal
/// string, though a number is read too.
fn rejected_in_json(body: &[u8]) -> u64 {
    let Ok(answer) = serde_json::from_slice::<Value>(body) else {
        return 0;
    };
    match &answer["partialSuccess"]["rejectedSpans"] {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_u64().unwrap_or(0),
        _ => 0,
    }
}

/// The OTLP/HTTP spec's retryable statuses.
fn retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 502 | 503 | 504)
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

    #[test]
    fn rejected_spans_of_a_json_answer() {
        assert_eq!(
            rejected_in_json(br#"{"partialSuccess":{"rejectedSpans":"3","errorMessage":"x"}}"#),
            3
        );
        assert_eq!(
            rejected_in_json(br#"{"partialSuccess":{"rejectedSpans":2}}"#),
            2
        );
        assert_eq!(rejected_in_json(b"{}"), 0);
        assert_eq!(rejected_in_json(b""), 0);
    }

    /// The body as it goes out: gzip of the protobuf, or of the OTLP/JSON
    /// form of the same request.
    #[test]
    fn bodies_are_compressed_and_rendered_as_asked() {
        use std::io::Read as _;

        use crate::sinks::{
            json::tests::sample_span,
            otlp::{encode, wire::WireEncoder, TlsFiles},
            resource::ResourceConfig,
        };

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _inside = runtime.enter();
        let resource = ResourceConfig::from_env(None, |_| None).unwrap();
        let span = sample_span();
        let proto = WireEncoder::new().encode([&span], &resource);
        let exporter = |protocol, compression| {
            let config = OtlpConfig {
                protocol,
                endpoint: "http://127.0.0.1:1/v1/traces".into(),
                headers: Vec::new(),
                timeout: Duration::from_secs(1),
                compression,
                tls: TlsFiles::default(),
            };
            HttpExporter::new(&config, None).unwrap()
        };
        let gunzip = |body: &[u8]| {
            assert_eq!(&body[..2], [0x1f, 0x8b], "gzip magic");
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .unwrap();
            out
        };

        let plain = exporter(OtlpProtocol::HttpProtobuf, Compression::None);
        assert_eq!(plain.body(proto.clone()).unwrap(), proto);
        let gzipped = exporter(OtlpProtocol::HttpProtobuf, Compression::Gzip)
            .body(proto.clone())
            .unwrap();
        assert_eq!(gunzip(&gzipped), proto);

        let want = json::to_value(&encode::request([&span], &resource));
        let json_body = exporter(OtlpProtocol::HttpJson, Compression::None)
            .body(proto.clone())
            .unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&json_body).unwrap(), want);
        let json_gz = exporter(OtlpProtocol::HttpJson, Compression::Gzip)
            .body(proto)
            .unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&gunzip(&json_gz)).unwrap(),
            want
        );
    }
}
