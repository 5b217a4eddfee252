//! The one time type of sharebench: microseconds since an arbitrary epoch.
//!
//! Firmware and rig both use these aliases of `fugit`, so a timestamp taken by
//! the fixture and a deadline inside a station mean the same thing. Nothing in
//! the cores reads a clock: every `handle_*` call passes `now` in.

/// A point in time, in microseconds since the driver's epoch (boot, or the
/// start of a simulation).
pub type Instant = fugit::TimerInstantU64<1_000_000>;
/// A span of time, in microseconds.
pub type Duration = fugit::MicrosDurationU64;

/// `Instant` from microseconds.
#[must_use]
pub const fn us(ticks: u64) -> Instant {
    Instant::from_ticks(ticks)
}

/// Milliseconds as a `Duration` (const helper for configuration defaults).
#[must_use]
pub const fn ms(ms: u64) -> Duration {
    Duration::from_ticks(ms * 1_000)
}

/// Seconds as a `Duration` (const helper for configuration defaults).
#[must_use]
pub const fn secs(s: u64) -> Duration {
    Duration::from_ticks(s * 1_000_000)
}

/// The earlier of two optional deadlines.
#[must_use]
pub fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if a <= b { a } else { b }),
        (a, None) => a,
        (None, b) => b,
    }
}
