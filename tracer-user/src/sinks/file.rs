//! Embedded storage: spans appended to a file as OTLP-JSON lines (one
//! `ExportTraceServiceRequest` per line, as the OpenTelemetry Collector's
//! file exporter writes), rotated by size to `PATH.1` ... `PATH.N`.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write},
    path::{Path, PathBuf},
    sync::Arc,
};

use crate::sinks::{
    otlp::{encode, json},
    resource::ResourceConfig,
    SinkHandle,
};

/// Rotated files kept beside the current one.
pub const KEEP_ROTATED: u32 = 5;

/// A size-rotated file of lines.
pub struct RotatingFile {
    path: PathBuf,
    file: File,
    size: u64,
    max_bytes: u64,
    keep: u32,
}

impl RotatingFile {
    /// Opens `path` for appending (what it holds counts toward its size).
    pub fn open(path: &Path, max_bytes: u64, keep: u32) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(RotatingFile {
            path: path.to_owned(),
            file,
            size,
            max_bytes,
            keep,
        })
    }

    /// Appends whole lines; rotates first when they would not fit (a file
    /// never ends mid-line, and one oversized request still gets written).
    pub fn write(&mut self, lines: &[u8]) -> io::Result<()> {
        if self.size > 0 && self.size + lines.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(lines)?;
        self.size += lines.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        let numbered = |n: u32| {
            let mut name = self.path.clone().into_os_string();
            name.push(format!(".{n}"));
            PathBuf::from(name)
        };
        if self.keep == 0 {
            fs::remove_file(&self.path)?;
        } else {
            // PATH.N falls off; PATH.N-1 .. PATH.1 move up; PATH becomes PATH.1.
            match fs::remove_file(numbered(self.keep)) {
                Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
                _ => {}
            }
            for n in (1..self.keep).rev() {
                match fs::rename(numbered(n), numbered(n + 1)) {
                    Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
                    _ => {}
                }
            }
            fs::rename(&self.path, numbered(1))?;
        }
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// The `--output-file` sink.
pub fn spawn(
    path: &Path,
    max_bytes: u64,
    resource: Arc<ResourceConfig>,
    capacity: usize,
) -> io::Result<SinkHandle> {
    let mut file = RotatingFile::open(path, max_bytes, KEEP_ROTATED)?;
    let mut line = Vec::with_capacity(64 * 1024);
    SinkHandle::spawn_blocking("file", capacity, move |spans| {
        line.clear();
        json::write_line(&mut line, &encode::request(spans, &resource));
        file.write(&line)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::{json::tests::sample_span, Sinks};

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tracer-unit-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn rotates_by_size_and_keeps_n() {
        let dir = temp_dir("rotate");
        let path = dir.join("spans.jsonl");
        let mut file = RotatingFile::open(&path, 10, 2).unwrap();
        for line in [
            "aaaa\n",
            "bbbb\n",
            "cccc\n",
            "dddd\n",
            "eeee\n",
            "ffff\n",
            "gggggggggggggggg\n",
        ] {
            file.write(line.as_bytes()).unwrap();
        }
        assert_eq!(fs::read_to_string(&path).unwrap(), "gggggggggggggggg\n");
        assert_eq!(
            fs::read_to_string(dir.join("spans.jsonl.1")).unwrap(),
            "eeee\nffff\n"
        );
        assert_eq!(
            fs::read_to_string(dir.join("spans.jsonl.2")).unwrap(),
            "cccc\ndddd\n"
        );
        assert!(!dir.join("spans.jsonl.3").exists());
        // Reopening appends and counts what is there.
        let mut file = RotatingFile::open(&path, 20, 2).unwrap();
        file.write(b"hhhh\n").unwrap();
        assert_eq!(
            fs::read_to_string(dir.join("spans.jsonl.1")).unwrap(),
            "gggggggggggggggg\n"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn writes_one_otlp_json_line_per_batch() {
        let dir = temp_dir("file-sink");
        let path = dir.join("out.jsonl");
        let mut sinks = Sinks::default();
        sinks.add(spawn(&path, 1 << 20, Arc::new(ResourceConfig::default()), 8).unwrap());
        sinks.send(crate::sinks::Batch::new(vec![sample_span(), sample_span()]));
        sinks.send(crate::sinks::Batch::new(vec![sample_span()]));
        let reports = sinks.finish();
        assert_eq!(reports[0].written, 3);
        let text = fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[0]["resourceSpans"][0]["scopeSpans"][0]["spans"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
