//! What user space knows of traced processes: names, descendants, and which
//! processes to trace at start (from /proc); [`cgroup`] for cgroup targets.

pub mod cgroup;

use std::{collections::HashMap, fs, path::Path, sync::Arc};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ProcessError {
    #[error("no such process: {0}")]
    NoSuchPid(u32),
    #[error("cannot list processes in /proc: {0}")]
    Proc(std::io::Error),
}

/// Executable name (`comm`) of a process, if it is still there.
pub fn comm_of(pid: u32) -> Option<String> {
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(comm.trim_end_matches('\n').to_owned())
}

/// Parent pid of a process from `/proc/PID/stat` (the field after the
/// parenthesised name, which may itself contain spaces and parentheses).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    let _state = fields.next()?;
    fields.next()?.parse().ok()
}

fn all_pids() -> Result<Vec<u32>, ProcessError> {
    let entries = fs::read_dir("/proc").map_err(ProcessError::Proc)?;
    Ok(entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect())
}

/// `pids` and all their living descendants: `--pid` of a server's master
/// process also covers the workers it forked before the tracer started.
pub fn with_descendants(pids: &[u32]) -> Result<Vec<u32>, ProcessError> {
    for &pid in pids {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            return Err(ProcessError::NoSuchPid(pid));
        }
    }
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for pid in all_pids()? {
        if let Some(parent) = parent_of(pid) {
            children.entry(parent).or_default().push(pid);
        }
    }
    let mut result: Vec<u32> = Vec::new();
    let mut stack: Vec<u32> = pids.to_vec();
    while let Some(pid) = stack.pop() {
        if result.contains(&pid) {
            continue;
        }
        result.push(pid);
        if let Some(kids) = children.get(&pid) {
            stack.extend(kids);
        }
    }
    Ok(result)
}

/// Living processes whose `comm` is one of `names` (compared as the kernel
/// stores them: the first 15 bytes).
pub fn pids_with_comm(names: &[String]) -> Result<Vec<u32>, ProcessError> {
    let wanted: Vec<&[u8]> = names.iter().map(|n| truncated_comm(n)).collect();
    Ok(all_pids()?
        .into_iter()
        .filter(|&pid| comm_of(pid).is_some_and(|comm| wanted.contains(&truncated_comm(&comm))))
        .collect())
}

fn truncated_comm(name: &str) -> &[u8] {
    let bytes = name.as_bytes();
    &bytes[..bytes.len().min(15)]
}

/// Names of traced processes, shared by every span of a process.
#[derive(Default)]
pub struct ProcessNames {
    /// Looked up once per span.
    names: foldhash::HashMap<u32, Arc<str>>,
}

impl ProcessNames {
    pub fn get(&mut self, pid: u32) -> Arc<str> {
        self.names
            .entry(pid)
            .or_insert_with(|| Arc::from(comm_of(pid).unwrap_or_else(|| "?".to_owned())))
            .clone()
    }

    pub fn set(&mut self, pid: u32, name: &str) {
        self.names.insert(pid, Arc::from(name));
    }

    pub fn remove(&mut self, pid: u32) {
        self.names.remove(&pid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_own_process_and_children() {
        let me = std::process::id();
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let pids = with_descendants(&[me]).unwrap();
        assert!(pids.contains(&me));
        assert!(
            pids.contains(&child.id()),
            "child {} not in {pids:?}",
            child.id()
        );
        let sleepers = pids_with_comm(&["sleep".to_owned()]).unwrap();
        assert!(sleepers.contains(&child.id()));
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn missing_pid_is_an_error() {
        assert!(matches!(
            with_descendants(&[u32::MAX - 1]),
            Err(ProcessError::NoSuchPid(_))
        ));
    }
}
