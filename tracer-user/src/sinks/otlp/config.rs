//! Where and how to export: flags first, then the standard
//! `OTEL_EXPORTER_OTLP_*` variables, then the OpenTelemetry defaults.

use std::{fmt, str::FromStr, time::Duration};

use thiserror::Error;

use crate::sinks::resource::{parse_key_values, KeyValueError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OtlpProtocol {
    Grpc,
    HttpProtobuf,
}

impl OtlpProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            OtlpProtocol::Grpc => "grpc",
            OtlpProtocol::HttpProtobuf => "http/protobuf",
        }
    }
}

impl fmt::Display for OtlpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OtlpProtocol {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "grpc" => Ok(OtlpProtocol::Grpc),
            "http/protobuf" => Ok(OtlpProtocol::HttpProtobuf),
            other => Err(ConfigError::UnknownProtocol(other.to_owned())),
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("unknown OTLP protocol {0:?} (supported: grpc, http/protobuf)")]
    UnknownProtocol(String),
    #[error("OTLP endpoint {0:?} is not an http:// or https:// URL")]
    BadEndpoint(String),
    #[error("OTLP header {0:?} is not KEY=VALUE with a valid header name")]
    BadHeader(String),
    #[error("{0}: {1:?} is not a whole number of milliseconds")]
    BadTimeout(&'static str, String),
}

/// Everything the OTLP sink needs to reach a collector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtlpConfig {
    pub protocol: OtlpProtocol,
    /// Full URL: `{base}/v1/traces` for HTTP, scheme and authority for gRPC.
    pub endpoint: String,
    /// Lower-case names (as gRPC metadata requires), flag values last.
    pub headers: Vec<(String, String)>,
    /// Time one export request may take.
    pub timeout: Duration,
}

/// The OTLP flags of the command line.
#[derive(Clone, Copy, Debug, Default)]
pub struct OtlpFlags<'a> {
    pub endpoint: Option<&'a str>,
    pub protocol: Option<OtlpProtocol>,
    pub headers: &'a [String],
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const TRACES_PATH: &str = "/v1/traces";

impl OtlpConfig {
    /// The configuration, or `None` when no endpoint is set anywhere (OTLP
    /// export is then off).
    pub fn resolve(
        flags: OtlpFlags<'_>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<OtlpConfig>, ConfigError> {
        let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let protocol = match flags.protocol {
            Some(p) => p,
            None => match env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"))
            {
                Some(p) => p.parse()?,
                // The OpenTelemetry default.
                None => OtlpProtocol::HttpProtobuf,
            },
        };
        // A base URL gets the signal path appended; the traces-specific
        // variable is used as it is (per the OTLP exporter spec).
        let (url, is_base) = if let Some(url) = flags.endpoint {
            (url.trim().to_owned(), true)
        } else if let Some(url) = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            (url.trim().to_owned(), false)
        } else if let Some(url) = env("OTEL_EXPORTER_OTLP_ENDPOINT") {
            (url.trim().to_owned(), true)
        } else {
            return Ok(None);
        };
        let endpoint = endpoint_url(&url, protocol, is_base)?;

        let mut headers: Vec<(String, String)> = Vec::new();
        for var in [
            "OTEL_EXPORTER_OTLP_HEADERS",
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        ] {
            if let Some(list) = env(var) {
                let parsed = parse_key_values(&list).map_err(|err| match err {
                    KeyValueError::NotKeyValue(s) | KeyValueError::BadEncoding(s) => {
                        ConfigError::BadHeader(s)
                    }
                })?;
                for (k, v) in parsed {
                    set_header(&mut headers, &k, v)?;
                }
            }
        }
        for header in flags.headers {
            let Some((k, v)) = header.split_once('=') else {
                return Err(ConfigError::BadHeader(header.clone()));
            };
            set_header(&mut headers, k.trim(), v.trim().to_owned())?;
        }

        let timeout = match [
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
        ]
        .into_iter()
        .find_map(|var| env(var).map(|v| (var, v)))
        {
            Some((var, ms)) => match ms.trim().parse::<u64>() {
                Ok(ms) if ms > 0 => Duration::from_millis(ms),
                _ => return Err(ConfigError::BadTimeout(var, ms)),
            },
            None => DEFAULT_TIMEOUT,
        };
        Ok(Some(OtlpConfig {
            protocol,
            endpoint,
            headers,
            timeout,
        }))
    }
}

fn endpoint_url(url: &str, protocol: OtlpProtocol, is_base: bool) -> Result<String, ConfigError> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(ConfigError::BadEndpoint(url.to_owned()));
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    if !matches!(scheme, "http" | "https") || authority_end == 0 {
        return Err(ConfigError::BadEndpoint(url.to_owned()));
    }
    let url = url.trim_end_matches('/');
    Ok(match protocol {
        // gRPC routes by method name; a path in the URL means nothing to it.
        OtlpProtocol::Grpc => format!("{scheme}://{}", &rest[..authority_end]),
        OtlpProtocol::HttpProtobuf if is_base && !url.ends_with(TRACES_PATH) => {
            format!("{url}{TRACES_PATH}")
        }
        OtlpProtocol::HttpProtobuf => url.to_owned(),
    })
}

fn set_header(
    headers: &mut Vec<(String, String)>,
    name: &str,
    value: String,
) -> Result<(), ConfigError> {
    let valid_name = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !valid_name || value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(ConfigError::BadHeader(format!("{name}={value}")));
    }
    let name = name.to_ascii_lowercase();
    match headers.iter_mut().find(|(k, _)| *k == name) {
        Some(slot) => slot.1 = value,
        None => headers.push((name, value)),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| vars.get(k).cloned()
    }

    fn resolve(
        flags: OtlpFlags<'_>,
        vars: &[(&str, &str)],
    ) -> Result<Option<OtlpConfig>, ConfigError> {
        OtlpConfig::resolve(flags, env(vars))
    }

    #[test]
    fn off_without_an_endpoint() {
        assert_eq!(
            resolve(
                OtlpFlags::default(),
                &[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]
            ),
            Ok(None)
        );
    }

    #[test]
    fn base_endpoint_gets_the_traces_path_for_http_only() {
        let c = resolve(
            OtlpFlags::default(),
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")],
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.protocol, OtlpProtocol::HttpProtobuf, "the spec's default");
        assert_eq!(c.endpoint, "http://collector:4318/v1/traces");
        assert_eq!(c.timeout, Duration::from_secs(10));
        let c = resolve(
            OtlpFlags::default(),
            &[
                (
                    "OTEL_EXPORTER_OTLP_ENDPOINT",
                    "https://collector:4317/ignored",
                ),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.endpoint, "https://collector:4317");
        // Already a traces URL: not doubled.
        let flags = OtlpFlags {
            endpoint: Some("http://c:4318/v1/traces"),
            ..Default::default()
        };
        assert_eq!(
            resolve(flags, &[]).unwrap().unwrap().endpoint,
            "http://c:4318/v1/traces"
        );
    }

    #[test]
    fn traces_endpoint_is_used_as_is_and_flags_win() {
        let vars = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://base:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://traces:9999/custom/path",
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
        ];
        let c = resolve(OtlpFlags::default(), &vars).unwrap().unwrap();
        assert_eq!(c.endpoint, "http://traces:9999/custom/path");
        assert_eq!(
            c.protocol,
            OtlpProtocol::HttpProtobuf,
            "the traces variable wins"
        );
        let flags = OtlpFlags {
            endpoint: Some("http://flag:4317"),
            protocol: Some(OtlpProtocol::Grpc),
            headers: &[],
        };
        let c = resolve(flags, &vars).unwrap().unwrap();
        assert_eq!(c.endpoint, "http://flag:4317");
        assert_eq!(c.protocol, OtlpProtocol::Grpc);
    }

    #[test]
    fn headers_from_env_then_flags() {
        let flags_headers = ["X-Token=flag".to_owned(), "extra = 1".to_owned()];
        let flags = OtlpFlags {
            endpoint: Some("http://c:4318"),
            protocol: None,
            headers: &flags_headers,
        };
        let c = resolve(
            flags,
            &[
                ("OTEL_EXPORTER_OTLP_HEADERS", "x-token=env,api-key=a%20b"),
                ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "api-key=traces"),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            c.headers,
            [
                ("x-token".into(), "flag".into()),
                ("api-key".into(), "traces".into()),
                ("extra".into(), "1".into())
            ]
        );
        assert_eq!(c.timeout, Duration::from_millis(2500));
    }

    #[test]
    fn bad_values_are_errors() {
        let with = |flags: OtlpFlags<'_>, vars: &[(&str, &str)]| resolve(flags, vars).unwrap_err();
        let endpoint = OtlpFlags {
            endpoint: Some("http://c:4318"),
            ..Default::default()
        };
        assert!(matches!(
            with(
                OtlpFlags {
                    endpoint: Some("collector:4317"),
                    ..Default::default()
                },
                &[]
            ),
            ConfigError::BadEndpoint(_)
        ));
        assert!(matches!(
            with(
                OtlpFlags {
                    endpoint: Some("ftp://c"),
                    ..Default::default()
                },
                &[]
            ),
            ConfigError::BadEndpoint(_)
        ));
        assert!(matches!(
            with(
                OtlpFlags {
                    endpoint: Some("http://"),
                    ..Default::default()
                },
                &[]
            ),
            ConfigError::BadEndpoint(_)
        ));
        assert!(matches!(
            with(endpoint, &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]),
            ConfigError::UnknownProtocol(_)
        ));
        assert!(matches!(
            with(endpoint, &[("OTEL_EXPORTER_OTLP_HEADERS", "novalue")]),
            ConfigError::BadHeader(_)
        ));
        assert!(matches!(
            with(endpoint, &[("OTEL_EXPORTER_OTLP_HEADERS", "bad name=1")]),
            ConfigError::BadHeader(_)
        ));
        assert!(matches!(
            with(endpoint, &[("OTEL_EXPORTER_OTLP_TIMEOUT", "soon")]),
            ConfigError::BadTimeout(..)
        ));
        let headers = ["nope".to_owned()];
        assert!(matches!(
            with(
                OtlpFlags {
                    headers: &headers,
                    ..endpoint
                },
                &[]
            ),
            ConfigError::BadHeader(_)
        ));
    }
}
