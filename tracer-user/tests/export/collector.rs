//! A real OTLP receiver for the tests: the official protobuf types over a
//! tonic gRPC server (accepting gzip), or over a small HTTP/1.1 server
//! decoding `POST /v1/traces` bodies: protobuf, or OTLP/JSON read by the
//! official types' serde mapping, gzip-compressed or not. Either can serve
//! TLS with a test CA's certificate and require client certificates. Each
//! runs on its own runtime, so `stop` kills it at once (like a crashed
//! collector) and `start` on the same port brings it back.

use std::{
    collections::HashMap,
    io::Read as _,
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        trace_service_server::{TraceService, TraceServiceServer},
        ExportTraceServiceRequest, ExportTraceServiceResponse,
    },
    common::v1::{any_value, AnyValue, KeyValue},
    trace::v1::Span,
};
use prost::Message as _;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use crate::common::wait_for_port;

/// The receiver's TLS: its certificate and key, and the CA its clients'
/// certificates must come from (then a client without one is refused).
#[derive(Clone, Debug)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Grpc,
    Http,
}

/// One request as received, with what came with it.
#[derive(Clone, Debug)]
pub struct Received {
    pub request: ExportTraceServiceRequest,
    /// Lower-case header names.
    pub headers: HashMap<String, String>,
    /// The HTTP path (empty for gRPC).
    pub path: String,
    /// The body as it arrived (HTTP only: gRPC frames are tonic's).
    pub raw_body: Vec<u8>,
    /// The body after `Content-Encoding` was undone (HTTP only).
    pub body: Vec<u8>,
}

#[derive(Clone, Default)]
pub struct Inbox(Arc<Mutex<Vec<Received>>>);

impl Inbox {
    pub fn all(&self) -> Vec<Received> {
        self.0.lock().expect("inbox lock").clone()
    }

    /// Every span received, with its resource's attributes.
    pub fn spans(&self) -> Vec<(Vec<KeyValue>, Span)> {
        let mut out = Vec::new();
        for received in self.all() {
            for rs in received.request.resource_spans {
                let resource = rs.resource.map(|r| r.attributes).unwrap_or_default();
                for ss in rs.scope_spans {
                    for span in ss.spans {
                        out.push((resource.clone(), span));
                    }
                }
            }
        }
        out
    }

    fn push(&self, received: Received) {
        self.0.lock().expect("inbox lock").push(received);
    }
}

pub struct Collector {
    pub port: u16,
    pub inbox: Inbox,
    transport: Transport,
    tls: Option<ServerTls>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Collector {
    pub fn start(transport: Transport, port: u16, inbox: Inbox) -> Collector {
        Collector::start_with_tls(transport, port, inbox, None)
    }

    pub fn start_with_tls(
        transport: Transport,
        port: u16,
        inbox: Inbox,
        tls: Option<ServerTls>,
    ) -> Collector {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("collector runtime");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        match transport {
            Transport::Grpc => {
                let service = TraceServiceServer::new(GrpcReceiver(inbox.clone()))
                    .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
                let mut builder = tonic::transport::Server::builder();
                if let Some(tls) = &tls {
                    builder = builder.tls_config(grpc_tls(tls)).expect("server TLS");
                }
                runtime.spawn(async move {
                    if let Err(err) = builder.add_service(service).serve(addr).await {
                        eprintln!("test collector: {err}");
                    }
                });
            }
            Transport::Http => {
                let inbox = inbox.clone();
                let acceptor = tls.as_ref().map(http_tls);
                runtime.spawn(async move {
                    let listener = tokio::net::TcpListener::bind(addr)
                        .await
                        .expect("bind the HTTP collector");
                    loop {
                        let Ok((stream, _)) = listener.accept().await else {
                            continue;
                        };
                        let inbox = inbox.clone();
                        match &acceptor {
                            None => {
                                tokio::spawn(serve_http(stream, inbox));
                            }
                            Some(acceptor) => {
                                let accept = acceptor.accept(stream);
                                tokio::spawn(async move {
                                    match accept.await {
                                        Ok(stream) => serve_http(stream, inbox).await,
                                        Err(err) => eprintln!("test collector: TLS: {err}"),
                                    }
                                });
                            }
                        }
                    }
                });
            }
        }
        wait_for_port(port, Duration::from_secs(10));
        Collector {
            port,
            inbox,
            transport,
            tls,
            runtime: Some(runtime),
        }
    }

    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Kills the collector and every connection it had.
    pub fn stop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
    }

    /// Brings a stopped collector back on the same port.
    pub fn restart(&mut self) {
        assert!(self.runtime.is_none(), "still running");
        *self = Collector::start_with_tls(
            self.transport,
            self.port,
            self.inbox.clone(),
            self.tls.clone(),
        );
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop();
    }
}

struct GrpcReceiver(Inbox);

#[tonic::async_trait]
impl TraceService for GrpcReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let headers = request
            .metadata()
            .clone()
            .into_headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        self.0.push(Received {
            request: request.into_inner(),
            headers,
            path: String::new(),
            raw_body: Vec::new(),
            body: Vec::new(),
        });
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn read(path: &std::path::Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

fn grpc_tls(tls: &ServerTls) -> tonic::transport::ServerTlsConfig {
    let mut config = tonic::transport::ServerTlsConfig::new().identity(
        tonic::transport::Identity::from_pem(read(&tls.cert), read(&tls.key)),
    );
    if let Some(ca) = &tls.client_ca {
        // Required, not optional: tonic's default once a client CA is set.
        config = config.client_ca_root(tonic::transport::Certificate::from_pem(read(ca)));
    }
    config
}

fn http_tls(tls: &ServerTls) -> tokio_rustls::TlsAcceptor {
    use rustls::{
        pki_types::{pem::PemObject as _, CertificateDer, PrivateKeyDer},
        server::WebPkiClientVerifier,
        RootCertStore, ServerConfig,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert)
        .expect("server cert")
        .collect::<Result<_, _>>()
        .expect("server cert");
    let key = PrivateKeyDer::from_pem_file(&tls.key).expect("server key");
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("TLS versions");
    let config = match &tls.client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca).expect("client CA") {
                roots.add(cert.expect("client CA")).expect("client CA");
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    }
    .with_single_cert(certs, key)
    .expect("server certificate and key");
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// The request of a body: protobuf, or OTLP/JSON by `Content-Type`, after
/// gzip if `Content-Encoding` says so.
fn decode_body(
    headers: &HashMap<String, String>,
    raw: &[u8],
) -> Option<(Vec<u8>, ExportTraceServiceRequest)> {
    let body = match headers.get("content-encoding").map(String::as_str) {
        None | Some("identity") => raw.to_vec(),
        Some("gzip") => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(raw)
                .read_to_end(&mut out)
                .ok()?;
            out
        }
        Some(_) => return None,
    };
    let request = match headers.get("content-type").map(String::as_str) {
        Some("application/json") => serde_json::from_slice(&body).ok()?,
        _ => ExportTraceServiceRequest::decode(body.as_slice()).ok()?,
    };
    Some((body, request))
}

/// HTTP/1.1 with keep-alive: head, `Content-Length` body, 200 with an
/// empty response in the request's format.
async fn serve_http(mut stream: impl AsyncRead + AsyncWrite + Unpin, inbox: Inbox) {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or_default().to_owned();
        let headers: HashMap<String, String> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let length: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut chunk = vec![0u8; 65536];
        while buf.len() < head_end + length {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let raw_body: Vec<u8> = buf.drain(..head_end + length).skip(head_end).collect();
        let path = request_line
            .split(' ')
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let json = headers.get("content-type").map(String::as_str) == Some("application/json");
        let status = match decode_body(&headers, &raw_body) {
            Some((body, request)) if request_line.starts_with("POST ") => {
                inbox.push(Received {
                    request,
                    headers,
                    path,
                    raw_body,
                    body,
                });
                "200 OK"
            }
            _ => "400 Bad Request",
        };
        let (content_type, response) = if json {
            ("application/json", b"{}".to_vec())
        } else {
            (
                "application/x-protobuf",
                ExportTraceServiceResponse {
                    partial_success: None,
                }
                .encode_to_vec(),
            )
        };
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            response.len()
        );
        if stream.write_all(head.as_bytes()).await.is_err()
            || stream.write_all(&response).await.is_err()
        {
            return;
        }
    }
}

/// An attribute's value as a string, an integer or a bool.
#[derive(Clone, Debug, PartialEq)]
pub enum Attr {
    Str(String),
    Int(i64),
    Bool(bool),
    Other,
}

pub fn attr(attrs: &[KeyValue], key: &str) -> Option<Attr> {
    let kv = attrs.iter().find(|kv| kv.key == key)?;
    Some(
        match kv.value.as_ref().and_then(|v: &AnyValue| v.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) => Attr::Str(s.clone()),
            Some(any_value::Value::IntValue(i)) => Attr::Int(*i),
            Some(any_value::Value::BoolValue(b)) => Attr::Bool(*b),
            _ => Attr::Other,
        },
    )
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(2 * bytes.len());
    for b in bytes {
        write!(out, "{b:02x}").unwrap();
    }
    out
}
