//! A board's clock: SysTick on the CPU clock, interrupting every
//! millisecond, read as microseconds since boot in a 64-bit [`Instant`].
//!
//! Owns SysTick and its exception handler; nothing else reads the time.

use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::{syst::SystClkSource, SYST};
use cortex_m_rt::exception;
use firmware::time::{us, Instant};

/// Milliseconds since boot, counted by the SysTick exception (wraps after
/// 49 days; [`Clock`] extends it).
static MS: AtomicU32 = AtomicU32::new(0);

#[exception]
fn SysTick() {
    MS.fetch_add(1, Ordering::Relaxed);
}

/// Microseconds since boot, monotonic.
pub struct Clock {
    /// Owned so that nothing else reprograms SysTick.
    _syst: SYST,
    ticks_per_ms: u32,
    ticks_per_us: u32,
    /// Milliseconds seen at the last read, and the 64-bit count they extend.
    last_ms: u32,
    total_ms: u64,
    last: Instant,
}

impl Clock {
    /// Start SysTick on a CPU clock of `cpu_hz` (a whole number of MHz).
    pub fn start(mut syst: SYST, cpu_hz: u32) -> Self {
        let ticks_per_ms = (cpu_hz / 1_000).max(1);
        syst.set_clock_source(SystClkSource::Core);
        syst.set_reload(ticks_per_ms - 1);
        syst.clear_current();
        syst.enable_interrupt();
        syst.enable_counter();
        Self {
            _syst: syst,
            ticks_per_ms,
            ticks_per_us: (cpu_hz / 1_000_000).max(1),
            last_ms: 0,
            total_ms: 0,
            last: us(0),
        }
    }

    /// Now. Never earlier than the last call.
    pub fn now(&mut self) -> Instant {
        // The count and the millisecond must belong together: read the
        // millisecond on both sides of the count and retry if it moved.
        let (ms, left) = loop {
            let before = MS.load(Ordering::Acquire);
            let left = SYST::get_current();
            if MS.load(Ordering::Acquire) == before {
                break (before, left);
            }
        };
        self.total_ms = self
            .total_ms
            .saturating_add(u64::from(ms.wrapping_sub(self.last_ms)));
        self.last_ms = ms;
        let into_ms_us = (self.ticks_per_ms - 1).saturating_sub(left) / self.ticks_per_us;
        let t = us(self
            .total_ms
            .saturating_mul(1_000)
            .saturating_add(u64::from(into_ms_us)));
        // A reload the exception has not counted yet would read as a step
        // back by up to a millisecond: hold the clock still instead.
        if t > self.last {
            self.last = t;
        }
        self.last
    }
}
