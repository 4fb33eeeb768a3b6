//! Which processes are traced: children of traced processes, processes that
//! exec a traced executable name, processes of traced cgroups, and removal
//! on exit.

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_ktime_get_ns, bpf_probe_read_kernel,
    },
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
};
use aya_log_ebpf::debug;
use tracer_common::{
    maps::{Counter, TRACED_BY_CGROUP, TRACED_BY_COMM, TRACED_BY_FORK, TRACED_GO},
    EventKind, ProcessEvent,
};

use crate::{
    emit::output_record,
    maps::{
        config, count, GO_PROCESSES, IN_FLIGHT, SSL_IN_FLIGHT, TRACED_CGROUPS, TRACED_COMMS,
        TRACED_PIDS,
    },
};

/// `tp_btf` `sched_process_fork(struct task_struct *parent, struct task_struct *child)`,
/// fired from `copy_process()` for every new task. A new *process* (not a
/// thread) of a traced process is traced too.
#[btf_tracepoint(function = "sched_process_fork")]
pub fn tracer_process_fork(ctx: BtfTracePointContext) -> i32 {
    match try_process_fork(&ctx) {
        Ok(()) => 0,
        Err(ret) => ret,
    }
}

fn try_process_fork(ctx: &BtfTracePointContext) -> Result<(), i32> {
    let parent_tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: plain lookup.
    if unsafe { TRACED_PIDS.get(parent_tgid) }.is_none() {
        return Ok(());
    }
    let child: *const u8 = ctx.arg(1);
    let tgid_offset = config().task_tgid as usize;
    // SAFETY: `child` is a live task_struct; the offset comes from kernel BTF.
    let child_tgid: i32 = unsafe { bpf_probe_read_kernel(child.add(tgid_offset).cast()) }?;
    let child_tgid = child_tgid as u32;
    if child_tgid == parent_tgid {
        return Ok(()); // a new thread: already covered by its process
    }
    if TRACED_PIDS.insert(child_tgid, TRACED_BY_FORK, 0).is_err() {
        count(Counter::PidTableFull);
        return Ok(());
    }
    debug!(
        ctx,
        "tracing forked process {} of {}", child_tgid, parent_tgid
    );
    emit_process(EventKind::ProcessFork, child_tgid, parent_tgid);
    Ok(())
}

/// tracepoint `sched/sched_process_exec`, fired from `exec_binprm()` once the
/// new executable is in place (so `comm` is already its name).
#[tracepoint(category = "sched", name = "sched_process_exec")]
pub fn tracer_process_exec(ctx: TracePointContext) -> u32 {
    let _ = ctx;
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: plain lookups.
    let traced = unsafe { TRACED_PIDS.get(tgid) }.copied();
    if let Some(value) = traced {
        // Not the Go program it may have replaced: user space looks again.
        if value & TRACED_GO != 0 {
            let _ = TRACED_PIDS.insert(tgid, value & !TRACED_GO, 0);
        }
    } else {
        let Ok(comm) = bpf_get_current_comm() else {
            return 0;
        };
        // SAFETY: plain lookup.
        if unsafe { TRACED_COMMS.get(comm) }.is_none() {
            return 0;
        }
        if TRACED_PIDS.insert(tgid, TRACED_BY_COMM, 0).is_err() {
            count(Counter::PidTableFull);
            return 0;
        }
    }
    // The new executable is looked at again by user space; until then it
    // is not taken for the Go program it may have replaced.
    let _ = GO_PROCESSES.remove(tgid);
    // Also sent for traced processes so user space learns the new name.
    emit_process(EventKind::ProcessExec, tgid, 0);
    0
}

/// tracepoint `sched/sched_process_exit`, fired from `do_exit()` for every
/// exiting thread; the thread-group leader's exit ends the process.
#[tracepoint(category = "sched", name = "sched_process_exit")]
pub fn tracer_process_exit(ctx: TracePointContext) -> u32 {
    let _ = ctx;
    let pid_tgid = bpf_get_current_pid_tgid();
    // Threads of traced processes keep their in-flight slot until now; a
    // thread that dies inside a hooked SSL call never reaches its return
    // probe, so its call is dropped here too (else the map fills).
    let _ = IN_FLIGHT.remove(pid_tgid);
    let _ = SSL_IN_FLIGHT.remove(pid_tgid);
    let tgid = (pid_tgid >> 32) as u32;
    if tgid != pid_tgid as u32 {
        return 0;
    }
    let _ = GO_PROCESSES.remove(tgid);
    if TRACED_PIDS.remove(tgid).is_ok() {
        emit_process(EventKind::ProcessExit, tgid, 0);
    }
    0
}

/// `bpf_get_current_cgroup_id()` (Linux 4.18+, the task's cgroup in the v2
/// hierarchy): a process not yet traced whose cgroup is in `TRACED_CGROUPS`
/// is traced from this hooked call on, wherever it came from — started by a
/// container runtime outside the cgroup, or moved in while running. Checked
/// at each hooked call rather than at `cgroup_attach_task`, so a process is
/// never missed for having joined a cgroup before user space listed it.
#[inline(always)]
pub fn join_by_cgroup(tgid: u32) -> bool {
    // SAFETY: no preconditions.
    let cgroup = unsafe { bpf_get_current_cgroup_id() };
    // SAFETY: plain lookup.
    if unsafe { TRACED_CGROUPS.get(cgroup) }.is_none() {
        return false;
    }
    match TRACED_PIDS.insert(tgid, TRACED_BY_CGROUP, u64::from(BPF_NOEXIST)) {
        Ok(()) => {
            emit_process(EventKind::ProcessJoin, tgid, 0);
            true
        }
        // Another thread of the process joined it first.
        Err(err) if err == -EEXIST => true,
        Err(_) => {
            count(Counter::PidTableFull);
            false
        }
    }
}

const EEXIST: i32 = 17;

fn emit_process(kind: EventKind, pid: u32, parent_pid: u32) {
    let comm = bpf_get_current_comm().unwrap_or_default();
    let event = ProcessEvent {
        kind: kind as u8,
        _pad: [0; 3],
        pid,
        parent_pid,
        _pad2: 0,
        // SAFETY: no preconditions.
        timestamp_ns: unsafe { bpf_ktime_get_ns() },
        comm,
    };
    output_record(&event);
}
