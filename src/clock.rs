//! A cheap clock for timing lock holds: the CPU's time-stamp counter where there
//! is one (x86_64, `rdtsc`: one instruction, where `clock_gettime` costs some
//! sixty on every request), converted to nanoseconds only when statistics are
//! shown, by a rate measured against the monotonic clock since the process began.

use std::sync::OnceLock;
use std::time::Instant;

/// A timestamp in clock ticks.
#[inline]
pub fn ticks() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `rdtsc` has no preconditions; every x86_64 CPU has it.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        origin().1.elapsed().as_nanos() as u64
    }
}

/// The first reading: a tick count and the instant it was taken.
fn origin() -> &'static (u64, Instant) {
    static ORIGIN: OnceLock<(u64, Instant)> = OnceLock::new();
    ORIGIN.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `rdtsc` has no preconditions; every x86_64 CPU has it.
        let t = unsafe { core::arch::x86_64::_rdtsc() };
        #[cfg(not(target_arch = "x86_64"))]
        let t = 0;
        (t, Instant::now())
    })
}

/// Starts the rate measurement; called when a worker starts, so that by the
/// time statistics are shown the rate is measured over a long interval.
pub fn start() {
    origin();
}

/// Converts a number of ticks to nanoseconds.
pub fn to_nanos(ticks: u64) -> u64 {
    if cfg!(not(target_arch = "x86_64")) {
        return ticks;
    }
    let (t0, i0) = *origin();
    let mut elapsed = i0.elapsed();
    if elapsed.as_millis() < 2 {
        // A rate measured over less than 2 ms would be imprecise: only the
        // first statistics of a process that just started wait for it.
        std::thread::sleep(std::time::Duration::from_millis(2) - elapsed);
        elapsed = i0.elapsed();
    }
    let per_ns = (ticks_now().saturating_sub(t0)) as f64 / elapsed.as_nanos().max(1) as f64;
    if per_ns <= 0.0 {
        return 0;
    }
    (ticks as f64 / per_ns) as u64
}

fn ticks_now() -> u64 {
    ticks()
}
