//! The Prometheus text exposition format, version 0.0.4: `# HELP`,
//! `# TYPE`, then one `name{label="value"} number` line per sample.

use std::fmt::Write as _;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// Starts a metric family; its samples must follow before the next one.
    pub fn family(&mut self, name: &str, help: &str, kind: &str) {
        let _ = writeln!(self.out, "# HELP {name} {}", escape(help, false));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{label}=\"{}\"", escape(value, true));
            }
            self.out.push('}');
        }
        self.out.push(' ');
        self.out.push_str(&float(value));
        self.out.push('\n');
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// Label values escape `\`, `"` and newlines; help text `\` and newlines.
fn escape(s: &str, quotes: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quotes => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out
}

/// Go-compatible float text: `+Inf`, `-Inf`, `NaN`, or a plain decimal
/// (Rust never writes exponents in `Display`, which Prometheus reads fine).
pub fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_samples_and_escaping() {
        let mut e = Exposition::default();
        e.family("x_total", "Things\\counted\nhere.", "counter");
        e.sample("x_total", &[("a", "q\"u\\o\nte"), ("b", "2")], 3.0);
        e.sample("x_total", &[], 0.25);
        e.sample("y", &[("le", &float(f64::INFINITY))], 1e-7);
        assert_eq!(
            e.finish(),
            "# HELP x_total Things\\\\counted\\nhere.\n# TYPE x_total counter\n\
             x_total{a=\"q\\\"u\\\\o\\nte\",b=\"2\"} 3\nx_total 0.25\ny{le=\"+Inf\"} 0.0000001\n"
        );
    }
}
