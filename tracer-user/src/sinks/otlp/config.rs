//! Where and how to export: flags first, then the standard
//! `OTEL_EXPORTER_OTLP_*` variables (the `_TRACES_` one before the general
//! one), then the OpenTelemetry defaults.

use std::{fmt, path::PathBuf, str::FromStr, time::Duration};

use thiserror::Error;

use crate::sinks::resource::{parse_key_values, KeyValueError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OtlpProtocol {
    Grpc,
    HttpProtobuf,
    HttpJson,
}

impl OtlpProtocol {
    pub const ACCEPTED: &'static str = "grpc, http/protobuf, http/json";

    pub fn as_str(self) -> &'static str {
        match self {
            OtlpProtocol::Grpc => "grpc",
            OtlpProtocol::HttpProtobuf => "http/protobuf",
            OtlpProtocol::HttpJson => "http/json",
        }
    }
}

impl fmt::Display for OtlpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OtlpProtocol {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "grpc" => Ok(OtlpProtocol::Grpc),
            "http/protobuf" => Ok(OtlpProtocol::HttpProtobuf),
            "http/json" => Ok(OtlpProtocol::HttpJson),
            other => Err(UnknownValue {
                value: other.to_owned(),
                accepted: Self::ACCEPTED,
            }),
        }
    }
}

/// How request bodies are compressed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    /// The OpenTelemetry default.
    #[default]
    None,
    Gzip,
}

impl Compression {
    pub const ACCEPTED: &'static str = "gzip, none";

    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Compression {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "gzip" => Ok(Compression::Gzip),
            "none" => Ok(Compression::None),
            other => Err(UnknownValue {
                value: other.to_owned(),
                accepted: Self::ACCEPTED,
            }),
        }
    }
}

/// A setting's value is not one of those it can take.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("unknown value {value:?} (accepted: {accepted})")]
pub struct UnknownValue {
    pub value: String,
    pub accepted: &'static str,
}

/// A PEM file named by a variable; the variable is kept for messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PemFile {
    pub var: &'static str,
    pub path: PathBuf,
}

/// The TLS files of `OTEL_EXPORTER_OTLP_[TRACES_]CERTIFICATE`,
/// `..._CLIENT_CERTIFICATE` and `..._CLIENT_KEY`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// Trusted CA certificates; they replace the built-in roots.
    pub ca: Option<PemFile>,
    /// The client certificate (chain) and its key, for mTLS.
    pub client: Option<(PemFile, PemFile)>,
}

impl TlsFiles {
    pub fn is_empty(&self) -> bool {
        self.ca.is_none() && self.client.is_none()
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{var}: {err}")]
    Unknown {
        var: &'static str,
        err: UnknownValue,
    },
    #[error("OTLP endpoint {0:?} is not an http:// or https:// URL")]
    BadEndpoint(String),
    #[error("OTLP header {0:?} is not KEY=VALUE with a valid header name")]
    BadHeader(String),
    #[error("{0}: {1:?} is not a whole number of milliseconds")]
    BadTimeout(&'static str, String),
    #[error(
        "{0} is set without {1}: a client certificate needs its key, and a key its certificate"
    )]
    HalfClientIdentity(&'static str, &'static str),
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
    pub compression: Compression,
    /// Used with https:// endpoints only.
    pub tls: TlsFiles,
}

/// The OTLP flags of the command line.
#[derive(Clone, Copy, Debug, Default)]
pub struct OtlpFlags<'a> {
    pub endpoint: Option<&'a str>,
    pub protocol: Option<OtlpProtocol>,
    pub headers: &'a [String],
    pub compression: Option<Compression>,
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
        // The traces-specific variable if set, else the general one; the
        // name comes along for messages.
        let either = |traces: &'static str, general: &'static str| {
            env(traces)
                .map(|v| (traces, v))
                .or_else(|| env(general).map(|v| (general, v)))
        };
        let protocol = match flags.protocol {
            Some(p) => p,
            None => match either(
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                "OTEL_EXPORTER_OTLP_PROTOCOL",
            ) {
                Some((var, p)) => p.parse().map_err(|err| ConfigError::Unknown { var, err })?,
                // The OpenTelemetry default.
                None => OtlpProtocol::HttpProtobuf,
            },
        };
        let compression = match flags.compression {
            Some(c) => c,
            None => match either(
                "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
                "OTEL_EXPORTER_OTLP_COMPRESSION",
            ) {
                Some((var, c)) => c.parse().map_err(|err| ConfigError::Unknown { var, err })?,
                None => Compression::None,
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
            compression,
            tls: tls_files(&either)?,
        }))
    }
}

/// The TLS files; `either` reads the traces-specific variable, else the
/// general one.
fn tls_files(
    either: &impl Fn(&'static str, &'static str) -> Option<(&'static str, String)>,
) -> Result<TlsFiles, ConfigError> {
    let pem = |traces, general| {
        either(traces, general).map(|(var, path)| PemFile {
            var,
            path: PathBuf::from(path.trim()),
        })
    };
    let ca = pem(
        "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
        "OTEL_EXPORTER_OTLP_CERTIFICATE",
    );
    let client = match (
        pem(
            "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
        ),
        pem(
            "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
            "OTEL_EXPORTER_OTLP_CLIENT_KEY",
        ),
    ) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        (Some(cert), None) => {
            return Err(ConfigError::HalfClientIdentity(
                cert.var,
                "OTEL_EXPORTER_OTLP_[TRACES_]CLIENT_KEY",
            ))
        }
        (None, Some(key)) => {
            return Err(ConfigError::HalfClientIdentity(
                key.var,
                "OTEL_EXPORTER_OTLP_[TRACES_]CLIENT_CERTIFICATE",
            ))
        }
    };
    Ok(TlsFiles { ca, client })
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
        OtlpProtocol::HttpProtobuf | OtlpProtocol::HttpJson
            if is_base && !url.ends_with(TRACES_PATH) =>
        {
            format!("{url}{TRACES_PATH}")
        }
        OtlpProtocol::HttpProtobuf | OtlpProtocol::HttpJson => url.to_owned(),
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
            compression: None,
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
            compression: None,
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
        assert_eq!(
            with(endpoint, &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/xml")]).to_string(),
            "OTEL_EXPORTER_OTLP_PROTOCOL: unknown value \"http/xml\" \
             (accepted: grpc, http/protobuf, http/json)"
        );
        assert_eq!(
            with(
                endpoint,
                &[
                    ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
                    ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "br")
                ]
            )
            .to_string(),
            "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION: unknown value \"br\" (accepted: gzip, none)"
        );
        assert_eq!(
            with(
                endpoint,
                &[("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "/etc/c.pem")]
            ),
            ConfigError::HalfClientIdentity(
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
                "OTEL_EXPORTER_OTLP_[TRACES_]CLIENT_KEY"
            )
        );
        assert_eq!(
            with(
                endpoint,
                &[("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", "/etc/k.pem")]
            ),
            ConfigError::HalfClientIdentity(
                "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
                "OTEL_EXPORTER_OTLP_[TRACES_]CLIENT_CERTIFICATE"
            )
        );
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

    #[test]
    fn compression_from_flag_then_traces_then_general_variable() {
        let endpoint = OtlpFlags {
            endpoint: Some("http://c:4318"),
            ..Default::default()
        };
        let compression =
            |flags, vars: &[(&str, &str)]| resolve(flags, vars).unwrap().unwrap().compression;
        assert_eq!(compression(endpoint, &[]), Compression::None, "the default");
        assert_eq!(
            compression(endpoint, &[("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")]),
            Compression::Gzip
        );
        let both = [
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "none"),
        ];
        assert_eq!(compression(endpoint, &both), Compression::None);
        let flag = OtlpFlags {
            compression: Some(Compression::Gzip),
            ..endpoint
        };
        assert_eq!(compression(flag, &both), Compression::Gzip);
        // A bad value under a variable that loses to the flag is not read.
        assert_eq!(
            compression(flag, &[("OTEL_EXPORTER_OTLP_COMPRESSION", "br")]),
            Compression::Gzip
        );
        assert_eq!("gzip".parse(), Ok(Compression::Gzip));
        assert_eq!(
            "GZIP".parse::<Compression>().unwrap_err().to_string(),
            "unknown value \"GZIP\" (accepted: gzip, none)"
        );
    }

    #[test]
    fn http_json_posts_to_the_traces_path() {
        let c = resolve(
            OtlpFlags::default(),
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.protocol, OtlpProtocol::HttpJson);
        assert_eq!(c.endpoint, "http://c:4318/v1/traces");
    }

    #[test]
    fn tls_files_traces_variables_first() {
        let c = resolve(
            OtlpFlags::default(),
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c:4318"),
                ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/ca.pem"),
                (
                    "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
                    " /etc/traces-ca.pem ",
                ),
                ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "/etc/client.pem"),
                ("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/etc/client.key"),
                ("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", "/etc/traces.key"),
            ],
        )
        .unwrap()
        .unwrap();
        let file = |var, path: &str| PemFile {
            var,
            path: PathBuf::from(path),
        };
        assert_eq!(
            c.tls,
            TlsFiles {
                ca: Some(file(
                    "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
                    "/etc/traces-ca.pem"
                )),
                client: Some((
                    file("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "/etc/client.pem"),
                    file("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", "/etc/traces.key"),
                )),
            }
        );
        let c = resolve(
            OtlpFlags::default(),
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c:4318")],
        )
        .unwrap()
        .unwrap();
        assert!(c.tls.is_empty());
    }
}
