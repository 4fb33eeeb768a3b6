//! Runs `cargo test`, passing its output through while remembering which
//! tests failed and the end of what each printed, so `cargo xtask test` can
//! repeat them after every stage: CI keeps only the tail of a long log, and
//! the fuzz and kernel-matrix stages print plenty after the tests.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _, Result};

/// Lines kept from the end of a failed test's captured output: the panic
/// message and the tracer's last words are at its end.
const KEPT_LINES: usize = 40;

/// One failed test: its name and the end of its captured output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub name: String,
    pub output_tail: Vec<String>,
}

/// Reads libtest's output, line by line.
#[derive(Default)]
pub struct FailureCollector {
    failures: Vec<Failure>,
    current: Option<Failure>,
}

impl FailureCollector {
    pub fn line(&mut self, line: &str) {
        // libtest prints each failed test's capture under
        // `---- NAME stdout ----`, then a `failures:` list of names.
        if let Some(name) = line
            .strip_prefix("---- ")
            .and_then(|rest| rest.strip_suffix(" stdout ----"))
        {
            self.finish_current();
            self.current = Some(Failure {
                name: name.to_owned(),
                output_tail: Vec::new(),
            });
            return;
        }
        if line == "failures:" || line.starts_with("test result:") {
            self.finish_current();
            return;
        }
        if let Some(current) = &mut self.current {
            if current.output_tail.len() == KEPT_LINES {
                current.output_tail.remove(0);
            }
            current.output_tail.push(line.to_owned());
        }
    }

    fn finish_current(&mut self) {
        if let Some(done) = self.current.take() {
            self.failures.push(done);
        }
    }

    pub fn into_failures(mut self) -> Vec<Failure> {
        self.finish_current();
        self.failures
    }
}

/// Runs `cmd` (a `cargo test`) with its stdout passed through; returns the
/// failed tests, and an error when the command failed.
pub fn run_tests(cmd: &mut Command) -> (Vec<Failure>, Result<()>) {
    let mut collector = FailureCollector::default();
    let result = run_collecting(cmd, &mut collector);
    (collector.into_failures(), result)
}

fn run_collecting(cmd: &mut Command, collector: &mut FailureCollector) -> Result<()> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    let stdout = child
        .stdout
        .take()
        .context("cargo test's stdout was not piped")?;
    let mut out = std::io::stdout().lock();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo test's output")?;
        let _ = writeln!(out, "{line}");
        collector.line(&line);
    }
    drop(out);
    let status = child
        .wait()
        .with_context(|| format!("waiting for {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// Prints the failures of one stage, for the end of the run.
pub fn print(stage: &str, failures: &[Failure]) {
    if failures.is_empty() {
        return;
    }
    eprintln!("xtask: {stage}: {} failed test(s):", failures.len());
    for failure in failures {
        eprintln!("xtask: ---- {} (last lines of its output)", failure.name);
        for line in &failure.output_tail {
            eprintln!("    {line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_each_failed_test_with_the_end_of_its_output() {
        let output = "\
running 3 tests
test a ... ok
test b ... FAILED
test c ... FAILED

failures:

---- b stdout ----
tracer: attached
thread 'b' panicked at tests/http.rs:10:5:
expected 50 spans, got 49

---- c stdout ----
thread 'c' panicked at tests/kv.rs:3:1:
boom

failures:
    b
    c

test result: FAILED. 1 passed; 2 failed";
        let mut collector = FailureCollector::default();
        output.lines().for_each(|l| collector.line(l));
        let failures = collector.into_failures();
        assert_eq!(
            failures.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
            ["b", "c"]
        );
        assert_eq!(failures[0].output_tail[2], "expected 50 spans, got 49");
        assert_eq!(failures[1].output_tail[1], "boom");
    }

    #[test]
    fn keeps_only_the_last_lines_of_a_long_capture() {
        let mut collector = FailureCollector::default();
        collector.line("---- long stdout ----");
        for i in 0..100 {
            collector.line(&format!("line {i}"));
        }
        collector.line("failures:");
        let failures = collector.into_failures();
        assert_eq!(failures[0].output_tail.len(), KEPT_LINES);
        assert_eq!(failures[0].output_tail[KEPT_LINES - 1], "line 99");
    }

    #[test]
    fn a_passing_run_has_no_failures() {
        let mut collector = FailureCollector::default();
        for line in [
            "running 1 test",
            "test a ... ok",
            "test result: ok. 1 passed",
        ] {
            collector.line(line);
        }
        assert!(collector.into_failures().is_empty());
    }
}
