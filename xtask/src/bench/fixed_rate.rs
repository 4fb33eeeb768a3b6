//! nginx at a fixed request rate: the latency a traced service's clients
//! see when it is not saturated, and the CPU each request costs nginx and
//! the tracer.
//!
//! `hey -q` (Debian's `hey`) paces each connection; wrk cannot pace. hey
//! itself is the bottleneck here (about 45-50k req/s untraced on this
//! 2-core machine, nginx alone does 130k under wrk) and paces badly near
//! its own limit (asked for half of it, it delivered three quarters of
//! that), so the rate is a third of what hey reaches untraced.

use std::{fmt::Write as _, path::Path, process::Command};

use anyhow::{anyhow, Context as _, Result};

use super::{children_of, cpu_ns, mean, start_nginx, start_observer, stop_observer, Mode};

/// Connections hey keeps open, each paced to its share of the rate.
const CONNECTIONS: u32 = 16;
/// The fixed rate is hey's untraced saturation divided by this.
const RATE_DIVISOR: f64 = 3.0;

const MODES: [Mode; 4] = [
    Mode::Untraced,
    Mode::Tracer,
    Mode::TracerOtlp,
    Mode::Bpftrace,
];

struct HeyResult {
    /// Responses with status 200.
    requests: u64,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// `hey -z SECONDS s -c 16 [-q PER_CONNECTION]`.
fn run_hey(url: &str, seconds: u32, per_connection: Option<u32>) -> Result<HeyResult> {
    let mut hey = Command::new("hey");
    hey.args(["-z", &format!("{seconds}s"), "-c", &CONNECTIONS.to_string()]);
    if let Some(rate) = per_connection {
        hey.args(["-q", &rate.to_string()]);
    }
    let out = hey.arg(url).output().context("running hey")?;
    parse_hey(&String::from_utf8_lossy(&out.stdout))
}

/// Reads hey's report: `Requests/sec:`, the latency distribution
/// (`  99% in 0.0007 secs`) and the status code counts (`  [200]\t39984
/// responses`).
fn parse_hey(text: &str) -> Result<HeyResult> {
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix)?.split_whitespace().next())
    };
    let rps = field("Requests/sec:")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("no Requests/sec in hey's output: {text}"))?;
    let seconds = |p: &str| -> Result<f64> {
        field(&format!("{p}% in"))
            .and_then(|v| v.parse::<f64>().ok())
            .ok_or_else(|| anyhow!("no {p}% latency in hey's output: {text}"))
    };
    let requests = field("[200]")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("no [200] responses in hey's output: {text}"))?;
    Ok(HeyResult {
        requests,
        rps,
        p50_ms: seconds("50")? * 1000.0,
        p99_ms: seconds("99")? * 1000.0,
    })
}

#[derive(Default)]
struct Row {
    rps: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    requests: u64,
    nginx_cpu_ns: u64,
    tracer_cpu_ns: u64,
    spans: u64,
    events_lost: u64,
}

pub(super) fn bench(scratch: &Path, seconds: u32, rounds: u32, report: &mut String) -> Result<()> {
    let (nginx, port) = start_nginx(scratch)?;
    let pids = children_of(nginx.0.id());
    let worker = *pids.last().ok_or_else(|| anyhow!("nginx has no worker"))?;
    let url = format!("http://127.0.0.1:{port}/hello");
    let saturation = run_hey(&url, 3, None)?.rps;
    let per_connection = ((saturation / RATE_DIVISOR) / f64::from(CONNECTIONS))
        .round()
        .max(1.0);
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a positive request rate of a few thousand"
    )]
    let per_connection = per_connection as u32;
    let target = per_connection * CONNECTIONS;
    eprintln!("bench: hey untraced saturation {saturation:.0} req/s; fixed rate {target} req/s");
    let mut rows: Vec<Row> = MODES.iter().map(|_| Row::default()).collect();
    for round in 0..rounds {
        for (mode, row) in MODES.iter().zip(&mut rows) {
            let observer = start_observer(*mode, &pids, "GET /hello")?;
            let tracer = observer.tracer_pid();
            let nginx_before = cpu_ns(worker);
            let tracer_before = tracer.map_or(0, cpu_ns);
            let result = run_hey(&url, seconds, Some(per_connection))?;
            row.nginx_cpu_ns += cpu_ns(worker).saturating_sub(nginx_before);
            row.tracer_cpu_ns += tracer.map_or(0, |pid| cpu_ns(pid).saturating_sub(tracer_before));
            if let Some(run) = stop_observer(observer)? {
                row.spans += run.spans;
                row.events_lost += run.events_lost;
            }
            eprintln!(
                "bench: fixed rate round {} {}: {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms",
                round + 1,
                mode.name(),
                result.rps,
                result.p50_ms,
                result.p99_ms
            );
            row.rps.push(result.rps);
            row.p50.push(result.p50_ms);
            row.p99.push(result.p99_ms);
            row.requests += result.requests;
        }
    }
    drop(nginx);
    write_report(report, seconds, rounds, saturation, target, &rows);
    Ok(())
}

fn per(total_ns: u64, count: u64) -> f64 {
    total_ns as f64 / 1000.0 / count.max(1) as f64
}

fn write_report(
    report: &mut String,
    seconds: u32,
    rounds: u32,
    saturation: f64,
    target: u32,
    rows: &[Row],
) {
    let _ = writeln!(report, "## nginx at a fixed rate\n");
    let _ = writeln!(
        report,
        "`hey -z {seconds}s -c {CONNECTIONS} -q {q} http://127.0.0.1:PORT/hello`: {target} req/s in all, a third of the \
         {saturation:.0} req/s hey reached untraced (`hey -z 3s -c {CONNECTIONS}`) on the same nginx; {rounds} \
         interleaved rounds per configuration. CPU per request is the schedstat run time of the nginx worker, and of \
         every tracer thread (user and system), over the hey run, divided by the requests answered (tracer: by the \
         spans it emitted for them). The OTLP row runs `tracer --output none --otlp-protocol grpc --otlp-endpoint \
         http://127.0.0.1:PORT` against `target/release/examples/otlp_receiver`, a minimal OTLP/gRPC receiver \
         (its own CPU not counted).\n",
        q = target / CONNECTIONS
    );
    let _ = writeln!(
        report,
        "| configuration | requests/s | p50 ms | p99 ms | p99 vs untraced | nginx CPU µs/request | tracer CPU µs/span |"
    );
    let _ = writeln!(report, "|---|---|---|---|---|---|---|");
    let base_p99 = rows.first().map_or(f64::NAN, |r| mean(&r.p99));
    for (mode, row) in MODES.iter().zip(rows) {
        let tracer_cpu = if row.tracer_cpu_ns > 0 {
            format!("{:.2}", per(row.tracer_cpu_ns, row.spans))
        } else {
            "–".to_owned()
        };
        let _ = writeln!(
            report,
            "| {} | {:.0} | {:.3} | {:.3} | {:.2}x | {:.2} | {tracer_cpu} |",
            mode.name(),
            mean(&row.rps),
            mean(&row.p50),
            mean(&row.p99),
            mean(&row.p99) / base_p99,
            per(row.nginx_cpu_ns, row.requests),
        );
    }
    for (mode, row) in MODES.iter().zip(rows) {
        if row.tracer_cpu_ns > 0 {
            let _ = writeln!(
                report,
                "\n{}: {} `GET /hello` server spans for {} requests hey counted ({:.3}%), {} events lost.",
                mode.name(),
                row.spans,
                row.requests,
                100.0 * row.spans as f64 / row.requests.max(1) as f64,
                row.events_lost
            );
        }
    }
    let _ = writeln!(report);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_hey_output() {
        let text = "\nSummary:\n  Total:\t10.0023 secs\n  Slowest:\t0.0123 secs\n  Requests/sec:\t3997.6422\n\n\
                    Latency distribution:\n  10% in 0.0001 secs\n  50% in 0.0002 secs\n  99% in 0.0007 secs\n\n\
                    Status code distribution:\n  [200]\t39984 responses\n";
        let result = parse_hey(text).unwrap();
        assert_eq!(result.requests, 39984);
        assert!((result.rps - 3997.6422).abs() < 1e-9);
        assert!((result.p50_ms - 0.2).abs() < 1e-9);
        assert!((result.p99_ms - 0.7).abs() < 1e-9);
        assert!(parse_hey("Requests/sec:\t1\n").is_err());
    }
}
