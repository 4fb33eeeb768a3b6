//! Reading the smoke suite's verdicts out of a console log, and the
//! kernel × check table.
//!
//! smoke.sh prints `SMOKE <check> PASS|FAIL <detail>` per check and
//! `SMOKE_INFO <key> <value>` for context (`kernel`, `hooks`, `walk`, `summary`).
//! A check without a line is missing, and counts as failed like one that
//! failed: a guest that hung or crashed must not look green.

use std::{fmt::Write as _, fs, path::PathBuf, time::Duration};

use anyhow::{Context as _, Result};

use super::{guest::Run, shown};

/// The checks of smoke.sh, in table order.
pub const CHECKS: &[&str] = &[
    "http_server",
    "http_client",
    "fork_after_attach",
    "https_server",
    "https_client",
    "redis",
    "clean_exit",
    "memlock",
    "cgroup",
];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Verdict {
    Pass,
    Fail,
    Missing,
}

impl Verdict {
    fn cell(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Missing => "—",
        }
    }
}

/// One kernel's column.
pub struct KernelResult {
    pub label: String,
    /// Per entry of [`CHECKS`]: verdict and detail.
    checks: Vec<(Verdict, String)>,
    /// `uname -r` as the suite saw it.
    release: Option<String>,
    /// The tracer's `socket hooks:` choice.
    hooks: Option<String>,
    /// The tracer's `iovec walk:` choice.
    walk: Option<String>,
    elapsed: Option<Duration>,
    log: Option<PathBuf>,
    /// Why the run itself went wrong (timeout, no kernel image, ...).
    problem: Option<String>,
}

impl KernelResult {
    /// The verdicts in `run`'s log; all failed when it timed out.
    pub fn from_run(label: &str, run: &Run) -> Result<KernelResult> {
        let bytes = fs::read(&run.log).with_context(|| format!("reading {}", run.log.display()))?;
        let parsed = parse(&String::from_utf8_lossy(&bytes));
        let release = parsed.info("kernel");
        let hooks = parsed.info("hooks");
        let walk = parsed.info("walk");
        let mut checks = parsed.checks;
        let problem = run.timed_out.then(|| {
            for (verdict, _) in &mut checks {
                *verdict = Verdict::Fail;
            }
            format!("killed at the timeout after {} s", run.elapsed.as_secs())
        });
        Ok(KernelResult {
            label: label.to_owned(),
            checks,
            release,
            hooks,
            walk,
            elapsed: Some(run.elapsed),
            log: Some(run.log.clone()),
            problem,
        })
    }

    /// A kernel that could not be run at all.
    pub fn broken(label: &str, problem: String) -> KernelResult {
        KernelResult {
            label: label.to_owned(),
            checks: vec![(Verdict::Missing, String::new()); CHECKS.len()],
            release: None,
            hooks: None,
            walk: None,
            elapsed: None,
            log: None,
            problem: Some(problem),
        }
    }

    pub fn all_passed(&self) -> bool {
        self.problem.is_none() && self.checks.iter().all(|(v, _)| *v == Verdict::Pass)
    }

    /// E.g. `6.12: 7/7 passed in 95 s`.
    pub fn one_line(&self) -> String {
        let passed = self
            .checks
            .iter()
            .filter(|(v, _)| *v == Verdict::Pass)
            .count();
        let mut line = format!("{}: {passed}/{} passed", self.label, CHECKS.len());
        if let Some(elapsed) = self.elapsed {
            let _ = write!(line, " in {} s", elapsed.as_secs());
        }
        if let Some(problem) = &self.problem {
            let _ = write!(line, " ({problem})");
        }
        line
    }

    /// Lines under the table: what ran, and why checks failed.
    fn notes(&self) -> String {
        let mut out = format!(
            "{}: kernel {}, hooks: {}",
            self.label,
            self.release.as_deref().unwrap_or("?"),
            self.hooks.as_deref().unwrap_or("—"),
        );
        if let Some(walk) = &self.walk {
            let _ = write!(out, ", iovec walk: {walk}");
        }
        if let Some(log) = &self.log {
            let _ = write!(out, ", log {}", shown(log));
        }
        out.push('\n');
        if let Some(problem) = &self.problem {
            let _ = writeln!(out, "    {problem}");
        }
        let failed: Vec<(&str, &str)> = CHECKS
            .iter()
            .zip(&self.checks)
            .filter(|(_, (v, detail))| *v == Verdict::Fail && !detail.is_empty())
            .map(|(name, (_, detail))| (*name, detail.as_str()))
            .collect();
        let same_detail = failed.windows(2).all(|w| w[0].1 == w[1].1);
        if failed.len() == CHECKS.len() && same_detail {
            let _ = writeln!(out, "    every check: {}", failed[0].1);
        } else {
            for (name, detail) in failed {
                let _ = writeln!(out, "    {name}: {detail}");
            }
        }
        out
    }
}

/// The table, then per kernel what ran and why checks failed.
pub fn table(results: &[KernelResult]) -> String {
    let first = CHECKS.iter().map(|c| c.len()).max().unwrap_or(0) + 2;
    let widths: Vec<usize> = results.iter().map(|r| r.label.len().max(4) + 2).collect();
    let mut out = String::new();
    let mut row = |name: &str, cells: Vec<String>| {
        let _ = write!(out, "{name:<first$}");
        for (cell, width) in cells.iter().zip(&widths) {
            let _ = write!(out, "{cell:<width$}");
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
    };
    row("check", results.iter().map(|r| r.label.clone()).collect());
    for (i, check) in CHECKS.iter().enumerate() {
        row(
            check,
            results
                .iter()
                .map(|r| r.checks[i].0.cell().to_owned())
                .collect(),
        );
    }
    row(
        "seconds",
        results
            .iter()
            .map(|r| {
                r.elapsed
                    .map_or("—".to_owned(), |e| e.as_secs().to_string())
            })
            .collect(),
    );
    out.push('\n');
    for result in results {
        out.push_str(&result.notes());
    }
    out
}

/// What smoke.sh said in one log.
struct Parsed {
    /// Per entry of [`CHECKS`].
    checks: Vec<(Verdict, String)>,
    info: Vec<(String, String)>,
}

impl Parsed {
    fn info(&self, key: &str) -> Option<String> {
        self.info
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }
}

/// The `SMOKE` and `SMOKE_INFO` lines of a log; the first line per check
/// counts. Lines may carry console noise before the marker.
fn parse(log: &str) -> Parsed {
    let mut checks = vec![(Verdict::Missing, String::new()); CHECKS.len()];
    let mut info = Vec::new();
    for line in log.lines().map(|l| l.trim_end_matches('\r')) {
        if let Some(at) = line.find("SMOKE_INFO ") {
            let rest = &line[at + "SMOKE_INFO ".len()..];
            let (key, value) = rest.split_once(' ').unwrap_or((rest, ""));
            info.push((key.to_owned(), value.trim().to_owned()));
        } else if let Some(at) = line.find("SMOKE ") {
            let mut words = line[at + "SMOKE ".len()..].splitn(3, ' ');
            let (Some(name), Some(verdict)) = (words.next(), words.next()) else {
                continue;
            };
            let Some(i) = CHECKS.iter().position(|c| *c == name) else {
                continue;
            };
            if checks[i].0 != Verdict::Missing {
                continue;
            }
            let verdict = match verdict {
                "PASS" => Verdict::Pass,
                _ => Verdict::Fail,
            };
            checks[i] = (verdict, words.next().unwrap_or("").trim().to_owned());
        }
    }
    Parsed { checks, info }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "init: up after 3.1 s\r\n\
        SMOKE_INFO kernel 6.12.95+deb12-cloud-amd64\r\n\
        [   40.1] some kernel noise SMOKE http_server PASS 5/5 nginx server spans\r\n\
        SMOKE http_client FAIL 4/5 curl client spans\r\n\
        SMOKE http_client PASS a later line does not count\r\n\
        SMOKE no_such_check PASS x\r\n\
        SMOKE_INFO hooks tracepoint (sock_send_length, sock_recv_length)\r\n";

    #[test]
    fn smoke_lines_give_verdicts_details_and_info() {
        let parsed = parse(LOG);
        assert_eq!(
            parsed.checks[0],
            (Verdict::Pass, "5/5 nginx server spans".to_owned())
        );
        assert_eq!(
            parsed.checks[1],
            (Verdict::Fail, "4/5 curl client spans".to_owned())
        );
        assert!(parsed.checks[2..]
            .iter()
            .all(|(v, _)| *v == Verdict::Missing));
        assert_eq!(
            parsed.info("kernel").as_deref(),
            Some("6.12.95+deb12-cloud-amd64")
        );
        assert_eq!(
            parsed.info("hooks").as_deref(),
            Some("tracepoint (sock_send_length, sock_recv_length)")
        );
    }

    #[test]
    fn missing_checks_and_timeouts_fail_the_kernel() {
        let dir = std::env::temp_dir().join(format!("xtask-vm-report-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let log = dir.join("k.log");
        let all_pass = CHECKS.iter().fold(String::new(), |mut log, check| {
            let _ = writeln!(log, "SMOKE {check} PASS ok");
            log
        });
        fs::write(&log, &all_pass).unwrap();
        let run = |timed_out| Run {
            log: log.clone(),
            elapsed: Duration::from_mins(1),
            timed_out,
        };
        assert!(KernelResult::from_run("k", &run(false))
            .unwrap()
            .all_passed());
        let late = KernelResult::from_run("k", &run(true)).unwrap();
        assert!(!late.all_passed());
        assert!(late.checks.iter().all(|(v, _)| *v == Verdict::Fail));
        fs::write(&log, LOG).unwrap();
        assert!(!KernelResult::from_run("k", &run(false))
            .unwrap()
            .all_passed());
        assert!(!KernelResult::broken("k", "no image".into()).all_passed());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn table_has_a_row_per_check_and_a_column_per_kernel() {
        let results = [
            KernelResult {
                label: "6.12".into(),
                checks: parse(LOG).checks,
                release: None,
                hooks: Some("fd-table".into()),
                walk: Some("unrolled".into()),
                elapsed: Some(Duration::from_secs(95)),
                log: None,
                problem: None,
            },
            KernelResult::broken("5.10", "no image".into()),
        ];
        let table = table(&results);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "check              6.12  5.10");
        assert_eq!(lines[1], "http_server        PASS  —");
        assert_eq!(lines[2], "http_client        FAIL  —");
        assert_eq!(lines[CHECKS.len() + 1], "seconds            95    —");
        assert!(table.contains("6.12: kernel ?, hooks: fd-table, iovec walk: unrolled"));
        assert!(table.contains("    http_client: 4/5 curl client spans"));
        assert!(table.contains("5.10: kernel ?, hooks: —\n    no image"));
    }
}
