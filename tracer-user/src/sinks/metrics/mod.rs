//! The metrics sink: RED metrics per service and operation and the
//! service graph (who calls whom), computed from the spans every sink
//! gets, plus the tracer's own health, served for Prometheus at
//! `--metrics-addr` (`GET /metrics`).

mod exposition;
mod health;
mod red;
mod server;
mod service_graph;

use std::{
    net::{SocketAddr, TcpListener},
    sync::{atomic::Ordering, Arc, Mutex},
    time::Instant,
};

use thiserror::Error;

pub use exposition::CONTENT_TYPE;
pub use health::{Health, HealthStats};
pub use red::{MAX_SERIES, OTHER};

use crate::sinks::{resource::ResourceConfig, SinkHandle};

#[derive(Debug, Error)]
pub enum MetricsError {
    #[error("--metrics-addr {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("starting the metrics sink: {0}")]
    Io(#[from] std::io::Error),
}

/// Binds `addr` now (so a taken port is an error at start) and serves
/// from the sink's thread until tracing stops.
pub fn spawn(
    addr: SocketAddr,
    resource: Arc<ResourceConfig>,
    health: Arc<Health>,
    capacity: usize,
) -> Result<SinkHandle, MetricsError> {
    let listener = TcpListener::bind(addr).map_err(|err| MetricsError::Bind(addr, err))?;
    let red = Arc::new(Mutex::new(red::Red::default()));
    let graph = Arc::new(Mutex::new(service_graph::ServiceGraph::default()));
    let render_red = red.clone();
    let render_graph = graph.clone();
    let render = move || {
        let mut out = exposition::Exposition::default();
        if let Ok(red) = render_red.lock() {
            red.write(&mut out);
        }
        if let Ok(mut graph) = render_graph.lock() {
            // Ends that waited long enough count now, even without traffic.
            graph.expire(Instant::now());
            graph.write(&mut out);
        }
        health.write(&mut out);
        out.finish()
    };
    let server = server::MetricsServer::start(listener, render)?;
    log::info!("serving metrics at http://{}/metrics", server.addr());
    let sink = SinkHandle::spawn("metrics", capacity, move |queue| {
        while let Some(batch) = queue.recv() {
            if let Ok(mut red) = red.lock() {
                for span in batch.iter() {
                    red.observe(span, &resource);
                }
            }
            if let Ok(mut graph) = graph.lock() {
                let now = Instant::now();
                for span in batch.iter() {
                    graph.observe(span, &resource, now);
                }
            }
            queue
                .counters()
                .written
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
        }
        drop(server);
    })?;
    Ok(sink.unreported())
}
