//! The fixture's time: microseconds of the fixture timer since an arbitrary
//! epoch (the board's boot, or the start of a simulation).
//!
//! Owns the time vocabulary of `rig`: plain aliases of `fugit`'s types, the
//! same types the station firmware uses, so a fixture timestamp and a station
//! deadline are interchangeable values without `rig` depending on the code it
//! measures. Behaviour here is limited to constructors and `earliest`.
//! Nothing here reads a clock or panics.

/// A point in time, in microseconds since the fixture's epoch.
pub type Instant = fugit::TimerInstantU64<1_000_000>;
/// A span of time, in microseconds.
pub type Duration = fugit::MicrosDurationU64;

/// `Instant` from microseconds.
#[must_use]
pub const fn us(ticks: u64) -> Instant {
    Instant::from_ticks(ticks)
}

/// Milliseconds as a `Duration` (saturating).
#[must_use]
pub const fn ms(ms: u64) -> Duration {
    Duration::from_ticks(ms.saturating_mul(1_000))
}

/// Seconds as a `Duration` (saturating).
#[must_use]
pub const fn secs(s: u64) -> Duration {
    Duration::from_ticks(s.saturating_mul(1_000_000))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_and_earliest() {
        assert_eq!(us(5) + ms(2), us(2_005));
        assert_eq!(secs(3).ticks(), 3_000_000);
        assert_eq!(earliest(Some(us(7)), Some(us(3))), Some(us(3)));
        assert_eq!(earliest(None, Some(us(3))), Some(us(3)));
        assert_eq!(earliest(Some(us(9)), None), Some(us(9)));
        assert_eq!(earliest(None, None), None);
        assert_eq!(secs(u64::MAX).ticks(), u64::MAX);
    }
}
