//! Command-line interface.

use std::time::Duration;

use clap::Parser;

use crate::{protocols::Protocol, sinks::OutputFormat};

/// Zero-instrumentation request tracing with eBPF: every request a process
/// serves or makes, as spans, without touching the process.
#[derive(Debug, Parser)]
#[command(name = "tracer", version, about)]
pub struct Args {
    /// Process to trace (with its children, current and future); repeat or
    /// separate with commas.
    #[arg(short, long = "pid", value_name = "PID", value_delimiter = ',')]
    pub pids: Vec<u32>,

    /// Trace every process with this executable name, including ones
    /// started later; repeat or separate with commas.
    #[arg(short, long = "comm", value_name = "NAME", value_delimiter = ',')]
    pub comms: Vec<String>,

    /// Span output on stdout.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,

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

    /// Size of the kernel-to-user ring buffer, in MiB (a power of two).
    #[arg(long, value_name = "MIB", default_value_t = 16,
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

    /// More logging on stderr (-v: debug, -vv: trace).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

impl Args {
    pub fn duration(&self) -> Result<Option<Duration>, String> {
        match self.duration {
            None => Ok(None),
            Some(secs) if secs.is_finite() && secs > 0.0 => Ok(Some(Duration::from_secs_f64(secs))),
            Some(secs) => Err(format!("--duration must be a positive number of seconds, got {secs}")),
        }
    }
}

fn parse_protocol(name: &str) -> Result<Protocol, String> {
    Protocol::parse(name).ok_or_else(|| {
        let known: Vec<&str> = Protocol::ALL.iter().map(|p| p.as_str()).collect();
        format!("unknown protocol {name:?}; known: {}", known.join(","))
    })
}

fn parse_ring_mib(value: &str) -> Result<u32, String> {
    let mib: u32 = value.parse().map_err(|_| format!("{value:?} is not a number"))?;
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
    }
}
