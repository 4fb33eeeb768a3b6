//! Command-line interface.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Parser;

use crate::{
    protocols::Protocol,
    sinks::{
        otlp::{Compression, OtlpProtocol, UnknownValue},
        summary::SummaryFormat,
        OutputFormat,
    },
};

/// Zero-instrumentation request tracing with eBPF: every request a process
/// serves or makes, as spans, without touching the process.
#[derive(Debug, Parser)]
#[command(
    name = "tracer",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Process to trace (with its children, current and future); repeat or
    /// separate with commas.
    #[arg(short, long = "pid", value_name = "PID", value_delimiter = ',')]
    pub pids: Vec<u32>,

    /// Trace every process with this executable name, including ones
    /// started later; repeat or separate with commas.
    #[arg(short, long = "comm", value_name = "NAME", value_delimiter = ',',
          value_parser = parse_comm)]
    pub comms: Vec<String>,

    /// Trace every process in this cgroup v2 directory and below, including
    /// processes that join later; the full path or the one `/proc/PID/cgroup`
    /// shows (e.g. `/system.slice/nginx.service`). Repeat for more.
    #[arg(long = "cgroup", value_name = "PATH")]
    pub cgroups: Vec<PathBuf>,

    /// Trace a container (docker, containerd, CRI-O, podman) by its id or a
    /// unique prefix of it: its cgroup, as with `--cgroup`. Repeat or
    /// separate with commas.
    #[arg(long = "container", value_name = "ID", value_delimiter = ',')]
    pub containers: Vec<String>,

    /// Span output on stdout (`none` when only exporting).
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,

    #[command(flatten)]
    pub export: ExportArgs,

    /// Payload bytes captured per syscall (at most 16384); larger messages
    /// are still timed and paired, their bodies skipped.
    #[arg(long, value_name = "BYTES", default_value_t = 4096,
          value_parser = clap::value_parser!(u32).range(64..=16384))]
    pub max_payload: u32,

    /// Stop after this many seconds.
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,

    /// Only recognise these protocols (comma-separated).
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = parse_protocol)]
    pub protocols: Vec<Protocol>,

    /// Emit HTTP query strings (`url.query`); they often carry secrets.
    #[arg(long)]
    pub include_query: bool,

    /// Emit database statements with their literal values; by default
    /// literals are replaced by `?`.
    #[arg(long)]
    pub raw_statements: bool,

    /// Size of the kernel-to-user ring buffer, in MiB (a power of two). The
    /// kernel maps its pages twice into the tracer, so RSS shows twice this.
    #[arg(long, value_name = "MIB", default_value_t = 8,
          value_parser = parse_ring_mib)]
    pub ring_buffer_mib: u32,

    /// Most connections tracked at once; more are counted and skipped.
    #[arg(long, value_name = "N", default_value_t = 65536)]
    pub max_connections: usize,

    /// Longest a span is held back waiting for its parent (a caller in
    /// another traced process, or the request its process was serving);
    /// 0 turns linking off. Requests longer than this are split into traces.
    #[arg(long, value_name = "MS", default_value_t = 2000,
          value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub link_window_ms: u64,

    /// Most spans the linking stage keeps at once (held ones, and emitted
    /// ones kept for late children); past it the oldest are emitted unlinked.
    #[arg(long, value_name = "N", default_value_t = 65536,
          value_parser = clap::value_parser!(u64).range(16..=16_777_216))]
    pub link_max_spans: u64,

    /// How the kernel programs find the socket of a syscall: `auto` takes
    /// the cheapest this kernel offers (`tracepoint` on Linux 6.3+, else
    /// `fd-table`); the others force one path (`-v` says which was taken).
    #[arg(long, value_enum, value_name = "PATH", default_value_t = SocketHooksArg::Auto,
          env = "TRACER_SOCKET_HOOKS")]
    pub socket_hooks: SocketHooksArg,

    /// More logging on stderr (-v: debug, -vv: trace).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// `--socket-hooks`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SocketHooksArg {
    /// The `sock_send_length`/`sock_recv_length` tracepoints where the
    /// kernel has them, else the file table.
    Auto,
    /// The `sock_send_length`/`sock_recv_length` tracepoints (Linux 6.3+).
    Tracepoint,
    /// Each syscall's fd resolved through the task's file table at its exit.
    FdTable,
}

impl SocketHooksArg {
    /// The forced lookup, `None` for `auto`.
    pub fn forced(self) -> Option<tracer_common::SocketLookup> {
        match self {
            SocketHooksArg::Auto => None,
            SocketHooksArg::Tracepoint => Some(tracer_common::SocketLookup::Tracepoint),
            SocketHooksArg::FdTable => Some(tracer_common::SocketLookup::FdTable),
        }
    }
}

/// Subcommands; without one, `tracer` traces.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// What stored OTLP-JSON span files (e.g. those `--output-file` wrote)
    /// show: the latency table (count, errors, p50/p90/p99 per service and
    /// operation) by default, or traces, the service map, or an HTML page.
    Report(ReportArgs),
}

/// `tracer report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// OTLP-JSON lines files (rotated ones too: `spans.jsonl.1` ...).
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,

    /// The slowest traces as waterfalls: one line per span, indented under
    /// its parent, with a bar on the trace's time axis.
    #[arg(long, conflicts_with_all = ["service_map", "html"])]
    pub traces: bool,

    /// How many traces `--traces` shows.
    #[arg(long, value_name = "N", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: u64,

    /// Only this trace (32 hex digits), as a waterfall.
    #[arg(long, value_name = "ID", conflicts_with_all = ["service_map", "html"])]
    pub trace_id: Option<String>,

    /// Who calls whom: one row per caller, callee and protocol, with
    /// requests, error rate, p50 and p99.
    #[arg(long, conflicts_with = "html")]
    pub service_map: bool,

    /// Write one self-contained HTML page (no network needed to view it):
    /// the service map, latency per operation, errors and the slowest
    /// traces.
    #[arg(long, value_name = "OUT.html")]
    pub html: Option<PathBuf>,
}

impl ReportArgs {
    pub fn view(&self) -> crate::report::View {
        use crate::report::View;
        if let Some(path) = &self.html {
            View::Html(path.clone())
        } else if self.service_map {
            View::ServiceMap
        } else if self.traces || self.trace_id.is_some() {
            View::Traces {
                limit: usize::try_from(self.limit).unwrap_or(usize::MAX),
                trace_id: self.trace_id.clone(),
            }
        } else {
            View::LatencyTable
        }
    }
}

/// Where spans go besides stdout, and what is computed from them.
#[derive(Debug, Default, clap::Args)]
pub struct ExportArgs {
    /// Export spans over OTLP to this collector URL (default from
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_ENDPOINT`);
    /// with http/protobuf, `/v1/traces` is appended.
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,

    /// OTLP transport: grpc, http/protobuf or http/json (default from
    /// `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` / `OTEL_EXPORTER_OTLP_PROTOCOL`,
    /// else http/protobuf).
    #[arg(long, value_name = "PROTOCOL", value_parser = parse_otlp_protocol)]
    pub otlp_protocol: Option<OtlpProtocol>,

    /// OTLP request compression: gzip or none (default from
    /// `OTEL_EXPORTER_OTLP_TRACES_COMPRESSION` /
    /// `OTEL_EXPORTER_OTLP_COMPRESSION`, else none).
    #[arg(long, value_name = "gzip|none", value_parser = parse_otlp_compression)]
    pub otlp_compression: Option<Compression>,

    /// Extra OTLP request header `KEY=VALUE`; repeat for more. Added to
    /// `OTEL_EXPORTER_OTLP_HEADERS`, winning on the same key.
    #[arg(long = "otlp-header", value_name = "KEY=VALUE")]
    pub otlp_headers: Vec<String>,

    /// `service.name` of every traced process (default: `OTEL_SERVICE_NAME`,
    /// else the executable name).
    #[arg(long, value_name = "NAME")]
    pub service_name: Option<String>,

    /// Append spans as OTLP-JSON lines to this file (the OpenTelemetry
    /// Collector file exporter's format), rotated by size.
    #[arg(long, value_name = "PATH")]
    pub output_file: Option<PathBuf>,

    /// Size at which `--output-file` is rotated to PATH.1 (5 kept).
    #[arg(long, value_name = "MIB", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    pub output_file_max_mib: u64,

    /// Serve Prometheus metrics (request rate, errors, latency histograms
    /// and the tracer's own health) at <http://ADDR/metrics>.
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// Also print the latency table on stderr every SECS seconds (it is
    /// always printed on exit).
    #[arg(long, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub summary_every: Option<u64>,

    /// How the summaries on stderr are written: `text` for people, `json`
    /// for programs (the exit summary as one JSON object on one line, with
    /// every counter and the latency table).
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = SummaryFormat::Text,
          env = "TRACER_SUMMARY_FORMAT")]
    pub summary_format: SummaryFormat,
}

impl Args {
    pub fn duration(&self) -> Result<Option<Duration>, String> {
        match self.duration {
            None => Ok(None),
            Some(secs) if secs.is_finite() && secs > 0.0 => Ok(Some(Duration::from_secs_f64(secs))),
            Some(secs) => Err(format!(
                "--duration must be a positive number of seconds, got {secs}"
            )),
        }
    }
}

fn parse_protocol(name: &str) -> Result<Protocol, String> {
    Protocol::parse(name).ok_or_else(|| {
        let known: Vec<&str> = Protocol::ALL.iter().map(|p| p.as_str()).collect();
        format!("unknown protocol {name:?}; known: {}", known.join(","))
    })
}

/// An executable name as the kernel can match it: not empty, no `/` (a
/// path is not a name) and no NUL.
fn parse_comm(name: &str) -> Result<String, String> {
    if name.is_empty() {
        return Err("an executable name cannot be empty".to_owned());
    }
    if name.contains(['/', '\0']) {
        return Err(format!(
            "{name:?} is a path, not an executable name (give e.g. `nginx`)"
        ));
    }
    Ok(name.to_owned())
}

fn parse_otlp_protocol(name: &str) -> Result<OtlpProtocol, String> {
    name.parse().map_err(|err: UnknownValue| err.to_string())
}

fn parse_otlp_compression(name: &str) -> Result<Compression, String> {
    name.parse().map_err(|err: UnknownValue| err.to_string())
}

fn parse_ring_mib(value: &str) -> Result<u32, String> {
    let mib: u32 = value
        .parse()
        .map_err(|_| format!("{value:?} is not a number"))?;
    if !(1..=1024).contains(&mib) || !mib.is_power_of_two() {
        return Err(format!("{mib} is not a power of two between 1 and 1024"));
    }
    Ok(mib)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pids_repeat_and_split_on_commas() {
        let args = Args::try_parse_from(["tracer", "--pid", "1,2", "-p", "3"]).unwrap();
        assert_eq!(args.pids, vec![1, 2, 3]);
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(Args::try_parse_from(["tracer", "--pid", "abc"]).is_err());
        assert!(Args::try_parse_from(["tracer", "--max-payload", "1000000"]).is_err());
        assert!(Args::try_parse_from(["tracer", "--protocols", "smtp"]).is_err());
        assert!(Args::try_parse_from(["tracer", "--ring-buffer-mib", "3"]).is_err());
        assert!(Args::try_parse_from(["tracer", "--link-window-ms", "-1"]).is_err());
        assert!(Args::try_parse_from(["tracer", "--link-max-spans", "0"]).is_err());
        let args = Args::try_parse_from(["tracer", "--duration", "0"]).unwrap();
        assert!(args.duration().is_err());
        assert!(Args::try_parse_from(["tracer", "--otlp-protocol", "http/xml"]).is_err());
        assert!(Args::try_parse_from(["tracer", "--otlp-compression", "br"]).is_err());
        assert!(Args::try_parse_from(["tracer", "--metrics-addr", "localhost"]).is_err());
        assert!(Args::try_parse_from(["tracer", "--summary-every", "0"]).is_err());
        assert!(Args::try_parse_from(["tracer", "--comm", ""]).is_err());
        assert!(Args::try_parse_from(["tracer", "--comm", "nginx,"]).is_err());
        assert!(Args::try_parse_from(["tracer", "--comm", "/usr/sbin/nginx"]).is_err());
        assert!(Args::try_parse_from(["tracer", "--socket-hooks", "kprobe"]).is_err());
        assert!(Args::try_parse_from(["tracer", "--summary-format", "yaml"]).is_err());
        assert!(
            Args::try_parse_from(["tracer", "report"]).is_err(),
            "report needs a file"
        );
    }

    #[test]
    fn report_is_a_subcommand_beside_tracing() {
        use crate::report::View;
        let args = Args::try_parse_from(["tracer", "report", "a.jsonl", "a.jsonl.1"]).unwrap();
        match args.command {
            Some(Command::Report(report)) => {
                assert_eq!(
                    report.files,
                    [PathBuf::from("a.jsonl"), PathBuf::from("a.jsonl.1")]
                );
                assert_eq!(report.view(), View::LatencyTable);
            }
            other => panic!("{other:?}"),
        }
        let view = |argv: &[&str]| match Args::try_parse_from(argv).unwrap().command {
            Some(Command::Report(report)) => report.view(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            view(&["tracer", "report", "--traces", "x"]),
            View::Traces {
                limit: 10,
                trace_id: None
            }
        );
        assert_eq!(
            view(&["tracer", "report", "--trace-id", "ab", "--limit", "3", "x"]),
            View::Traces {
                limit: 3,
                trace_id: Some("ab".into())
            }
        );
        assert_eq!(
            view(&["tracer", "report", "--service-map", "x"]),
            View::ServiceMap
        );
        assert_eq!(
            view(&["tracer", "report", "--html", "o.html", "x"]),
            View::Html("o.html".into())
        );
        let conflicting: [&[&str]; 3] = [
            &["tracer", "report", "--traces", "--service-map", "x"],
            &["tracer", "report", "--html", "o", "--service-map", "x"],
            &["tracer", "report", "--trace-id", "a", "--html", "o", "x"],
        ];
        for conflicting in conflicting {
            assert!(
                Args::try_parse_from(conflicting).is_err(),
                "{conflicting:?}"
            );
        }
        assert!(
            Args::try_parse_from(["tracer", "report", "--limit", "0", "--traces", "x"]).is_err()
        );
        let args = Args::try_parse_from(["tracer", "--pid", "7", "--output", "none"]).unwrap();
        assert!(args.command.is_none());
        assert_eq!(args.output, OutputFormat::None);
        assert!(Args::try_parse_from(["tracer", "--pid", "7", "report", "x"]).is_err());
    }

    #[test]
    fn export_flags() {
        let args = Args::try_parse_from([
            "tracer",
            "--pid",
            "1",
            "--otlp-endpoint",
            "http://c:4317",
            "--otlp-protocol",
            "grpc",
            "--otlp-compression",
            "gzip",
            "--otlp-header",
            "a=b",
            "--otlp-header",
            "c=d",
            "--metrics-addr",
            "127.0.0.1:9464",
            "--output-file",
            "/tmp/x",
            "--summary-every",
            "10",
        ])
        .unwrap();
        assert_eq!(args.export.otlp_protocol, Some(OtlpProtocol::Grpc));
        assert_eq!(args.export.otlp_compression, Some(Compression::Gzip));
        assert_eq!(args.export.otlp_headers, ["a=b", "c=d"]);
        assert_eq!(args.export.output_file_max_mib, 100);
        assert_eq!(args.export.metrics_addr.map(|a| a.port()), Some(9464));
        assert_eq!(args.export.summary_format, SummaryFormat::Text);
        let args =
            Args::try_parse_from(["tracer", "--pid", "1", "--summary-format", "json"]).unwrap();
        assert_eq!(args.export.summary_format, SummaryFormat::Json);
    }
}
