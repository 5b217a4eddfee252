//! The image's clock: CMSDK APB TIMER0 (`0x4000_0000`, ARM DDI 0479)
//! counting down freely at the 25 MHz APB clock, read as microseconds since
//! boot in a 64-bit [`Instant`].
//!
//! Owns TIMER0. Why not SysTick's interrupt count
//! (`station_common::clock`): QEMU delivers one SysTick exception however
//! many periods passed while its vCPU thread was not running, so on a busy
//! host the count falls behind the wall clock (about 1 % at a load of 7 on
//! two cores, measured), and the station's timers with it. The timer's
//! count is computed from QEMU's virtual clock whenever it is read, so
//! nothing is lost as long as it is read once per wrap (171 s); the image
//! reads it every pass. SysTick still interrupts every millisecond to wake
//! the image from `wfi`.
// MMIO: the registers are memory-mapped; reading and writing them is a
// volatile access to a fixed address, which Rust can only do in `unsafe`.
#![allow(unsafe_code)]

use firmware::time::{us, Instant};

const BASE: usize = 0x4000_0000;
const CTRL: usize = 0x000;
const VALUE: usize = 0x004;
const RELOAD: usize = 0x008;
const CTRL_ENABLE: u32 = 1 << 0;

fn read(off: usize) -> u32 {
    // SAFETY: `BASE + off` is a register of TIMER0 on this machine, owned
    // by the one `Monotonic`; a volatile read has no other effect.
    unsafe { core::ptr::read_volatile((BASE + off) as *const u32) }
}

fn write(off: usize, v: u32) {
    // SAFETY: as in `read`.
    unsafe { core::ptr::write_volatile((BASE + off) as *mut u32, v) }
}

/// Microseconds since boot, monotonic.
pub struct Monotonic {
    ticks_per_us: u64,
    last_value: u32,
    total_ticks: u64,
}

impl Monotonic {
    /// Start TIMER0 from its top on an APB clock of `pclk_hz`.
    pub fn start(pclk_hz: u32) -> Self {
        write(CTRL, 0);
        write(RELOAD, u32::MAX);
        write(VALUE, u32::MAX);
        write(CTRL, CTRL_ENABLE);
        Self {
            ticks_per_us: u64::from(pclk_hz / 1_000_000).max(1),
            last_value: u32::MAX,
            total_ticks: 0,
        }
    }

    /// Now.
    pub fn now(&mut self) -> Instant {
        let v = read(VALUE);
        // Counting down: what went by since the last read, across a wrap.
        let elapsed = self.last_value.wrapping_sub(v);
        self.last_value = v;
        self.total_ticks = self.total_ticks.saturating_add(u64::from(elapsed));
        us(self.total_ticks / self.ticks_per_us)
    }
}
