//! A minimal OTLP/gRPC receiver for benchmarks: accepts
//! `TraceService/Export` on 127.0.0.1:PORT, counts the spans, answers OK.
//!
//! `otlp_receiver PORT [EVERY_SECS]`: prints `listening on 127.0.0.1:PORT`
//! once serving, then `spans N requests M` every `EVERY_SECS` seconds (0,
//! the default: never) and once more on SIGINT or SIGTERM, when it exits.
//! Export the tracer to it with `--otlp-endpoint http://127.0.0.1:PORT`.
//!
//! Requests are decoded into the official protobuf types, as a collector
//! would (not merely counted on the wire).

use std::{
    io::Write as _,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use opentelemetry_proto::tonic::collector::trace::v1::{
    trace_service_server::{TraceService, TraceServiceServer},
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tokio::signal::unix::{signal, SignalKind};
use tonic::transport::server::TcpIncoming;

#[derive(Default)]
struct Counts {
    spans: AtomicU64,
    requests: AtomicU64,
}

impl Counts {
    fn print(&self) {
        println!(
            "spans {} requests {}",
            self.spans.load(Ordering::Relaxed),
            self.requests.load(Ordering::Relaxed)
        );
        let _ = std::io::stdout().flush();
    }
}

struct Receiver(Arc<Counts>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans: usize = request
            .get_ref()
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .map(|ss| ss.spans.len())
            .sum();
        self.0.spans.fetch_add(spans as u64, Ordering::Relaxed);
        self.0.requests.fetch_add(1, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn usage() -> ! {
    eprintln!("usage: otlp_receiver PORT [EVERY_SECS]");
    std::process::exit(2);
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let port: u16 = args
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| usage());
    let every: u64 = match args.next() {
        Some(s) => s.parse().unwrap_or_else(|_| usage()),
        None => 0,
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    // Bound before saying so: once the line is out, connections succeed.
    let incoming = match TcpIncoming::bind(addr) {
        Ok(incoming) => incoming.with_nodelay(Some(true)),
        Err(err) => {
            eprintln!("otlp_receiver: binding {addr}: {err}");
            std::process::exit(1);
        }
    };
    let counts = Arc::new(Counts::default());
    let (Ok(mut sigint), Ok(mut sigterm)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        eprintln!("otlp_receiver: cannot handle signals");
        std::process::exit(1);
    };
    let stop = async move {
        tokio::select! {
            _ = sigint.recv() => {}
            _ = sigterm.recv() => {}
        }
    };
    if every > 0 {
        let counts = counts.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(every));
            tick.tick().await;
            loop {
                tick.tick().await;
                counts.print();
            }
        });
    }
    println!("listening on {addr}");
    let _ = std::io::stdout().flush();
    let served = tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(Receiver(counts.clone())))
        .serve_with_incoming_shutdown(incoming, stop)
        .await;
    counts.print();
    if let Err(err) = served {
        eprintln!("otlp_receiver: {err}");
        std::process::exit(1);
    }
}
