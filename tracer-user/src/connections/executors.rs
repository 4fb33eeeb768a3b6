//! Who reads a request or sends a call: a thread, or in a Go process a
//! goroutine (Go's scheduler moves goroutines between threads, so there a
//! thread says nothing). Which processes run Go is learnt from their
//! executables; until a new process's is looked at, neither is trusted.

// Looked up on request bytes: seeded foldhash.
use foldhash::HashSet;

use tracer_common::{DataEvent, GoCallEvent};

use super::{activity::Executor, handoffs::Handoffs};

#[derive(Debug, Default)]
pub struct Executors {
    /// Go processes.
    goroutines: HashSet<u32>,
    /// Processes whose executable was not looked at yet (exec'd, forked,
    /// joined since).
    unknown: HashSet<u32>,
    /// Which goroutine Go's HTTP client writes a request for.
    handoffs: Handoffs,
}

impl Executors {
    /// `pid` runs Go code (until it exits or execs).
    pub fn schedules_goroutines(&mut self, pid: u32) {
        self.goroutines.insert(pid);
    }

    /// `pid` started running an executable not looked at yet.
    pub fn unknown(&mut self, pid: u32) {
        self.unknown.insert(pid);
        self.goroutines.remove(&pid);
    }

    /// `pid`'s executable was looked at: Go (`goroutines`) or not.
    pub fn settle(&mut self, pid: u32, goroutines: bool) {
        self.unknown.remove(&pid);
        if goroutines {
            self.goroutines.insert(pid);
        } else {
            self.goroutines.remove(&pid);
        }
    }

    /// Whether `pid`'s threads may say nothing of its requests: it runs Go
    /// code, or its executable was not looked at yet.
    pub fn threads_say_nothing(&self, pid: u32) -> bool {
        self.goroutines.contains(&pid) || self.unknown.contains(&pid)
    }

    pub fn on_go_call(&mut self, event: &GoCallEvent) {
        self.handoffs.on_call(event);
    }

    /// Who moved `event`'s bytes: its thread, or in a Go process its
    /// goroutine; `None` when the kernel could not read the goroutine, or
    /// the process's executable is not known yet.
    pub fn of(&self, event: &DataEvent) -> Option<Executor> {
        if !self.unknown.is_empty() && self.unknown.contains(&event.pid) {
            return None;
        }
        if self.goroutines.is_empty() || !self.goroutines.contains(&event.pid) {
            return Some(Executor::thread(event.pid, event.tid));
        }
        (event.goroutine != 0).then(|| Executor::goroutine(event.pid, event.goroutine))
    }

    /// Who `sender` sends a client request for: in Go, the goroutine whose
    /// HTTP call a connection's writer goroutine writes (`None`: unknown).
    pub fn caller(&self, sender: Executor) -> Option<Executor> {
        if sender.goroutine {
            self.handoffs
                .caller_of(sender.pid, sender.id)
                .map(|caller| Executor::goroutine(sender.pid, caller))
        } else {
            Some(sender)
        }
    }

    pub fn process_exited(&mut self, pid: u32) {
        self.goroutines.remove(&pid);
        self.unknown.remove(&pid);
        self.handoffs.process_exited(pid);
    }

    pub fn prune(&mut self, now_ns: u64) {
        self.handoffs.prune(now_ns);
    }
}
