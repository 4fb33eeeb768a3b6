//! A real OTLP receiver for the tests: the official protobuf types over a
//! tonic gRPC server, or over a small HTTP/1.1 server decoding
//! `POST /v1/traces` protobuf bodies. Each runs on its own runtime, so
//! `stop` kills it at once (like a crashed collector) and `start` on the
//! same port brings it back.

use std::{
    collections::HashMap,
    net::SocketAddr,
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
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::common::wait_for_port;

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
    runtime: Option<tokio::runtime::Runtime>,
}

impl Collector {
    pub fn start(transport: Transport, port: u16, inbox: Inbox) -> Collector {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("collector runtime");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        match transport {
            Transport::Grpc => {
                let service = TraceServiceServer::new(GrpcReceiver(inbox.clone()));
                runtime.spawn(async move {
                    if let Err(err) = tonic::transport::Server::builder()
                        .add_service(service)
                        .serve(addr)
                        .await
                    {
                        eprintln!("test collector: {err}");
                    }
                });
            }
            Transport::Http => {
                let inbox = inbox.clone();
                runtime.spawn(async move {
                    let listener = tokio::net::TcpListener::bind(addr)
                        .await
                        .expect("bind the HTTP collector");
                    loop {
                        let Ok((stream, _)) = listener.accept().await else {
                            continue;
                        };
                        tokio::spawn(serve_http(stream, inbox.clone()));
                    }
                });
            }
        }
        wait_for_port(port, Duration::from_secs(10));
        Collector {
            port,
            inbox,
            transport,
            runtime: Some(runtime),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
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
        *self = Collector::start(self.transport, self.port, self.inbox.clone());
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
        });
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// HTTP/1.1 with keep-alive: head, `Content-Length` body, 200 with an
/// empty protobuf response.
async fn serve_http(mut stream: tokio::net::TcpStream, inbox: Inbox) {
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
        let body: Vec<u8> = buf.drain(..head_end + length).skip(head_end).collect();
        let path = request_line
            .split(' ')
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let status = match ExportTraceServiceRequest::decode(body.as_slice()) {
            Ok(request) if request_line.starts_with("POST ") => {
                inbox.push(Received {
                    request,
                    headers,
                    path,
                });
                "200 OK"
            }
            _ => "400 Bad Request",
        };
        let response = ExportTraceServiceResponse {
            partial_success: None,
        }
        .encode_to_vec();
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n",
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
