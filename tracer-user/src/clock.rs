//! Converting kernel timestamps (`CLOCK_MONOTONIC`, as `bpf_ktime_get_ns`
//! reads it) to wall-clock time, once at start.

fn read(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; both clocks always exist on Linux.
    unsafe { libc::clock_gettime(clock, &raw mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

/// Nanoseconds to add to a monotonic timestamp to get Unix time.
pub fn wall_offset_ns() -> i128 {
    read(libc::CLOCK_REALTIME) - read(libc::CLOCK_MONOTONIC)
}

/// The kernel's monotonic clock now.
pub fn monotonic_ns() -> u64 {
    u64::try_from(read(libc::CLOCK_MONOTONIC)).unwrap_or(0)
}
