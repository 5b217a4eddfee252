//! `SELFTEST` on the board: the Pico's own PWM (slice 7 A, GP14) looped
//! into a channel's comparator, measured by `rig::selftest` through the
//! same edge path that measures stations.
//!
//! Owns the PWM settings for a duty setpoint ([`compare_for`]), the settling
//! after each setpoint change, and the wall-clock bound: a self-test that
//! has not finished in [`TIMEOUT_US`] (no loopback wired, a dead
//! comparator) is answered as failed, never left waiting.

use rig::capture::CaptureConfig;
use rig::selftest::{SelfTest, SelfTestReport};

use crate::edges::Edge;

/// 125 MHz / 4 = 31.25 MHz into the slice.
pub const PWM_DIV: u8 = 4;
/// 31 251 counts of 32 ns: 1.000032 ms, 32 ppm slower than 1 kHz, on
/// purpose. The PWM and the 1 MHz timer run from the same crystal: at
/// exactly 1 kHz every edge would fall at the same fraction of a
/// microsecond, and flooring to `rig`'s microseconds would bias the
/// measured duty by up to 0.1 % (the ideal loopback below measured 700 ppm
/// at 26.67 %). One count more makes the edges walk 32 ns a period across
/// the microsecond, a whole microsecond per 32-period window, so the
/// flooring averages out. The frequency is off by 32 ppm (the limit is
/// 1000); one count is 32 ppm of duty.
pub const PWM_TOP: u16 = 31_250;
/// One PWM period, nanoseconds.
pub const PWM_PERIOD_NS: u64 = (PWM_TOP as u64 + 1) * 32;
/// The longest a self-test may take: 1280 periods and 5 settlings take
/// about 1.3 s.
pub const TIMEOUT_US: u64 = 5_000_000;
/// After a setpoint change, edges are ignored this long (the compare value
/// takes effect at the next wrap; the period in flight is the old duty).
pub const SETTLE_US: u64 = 2_500;

/// The compare value nearest to `duty_bp` (0.01 %), at most 100 %.
#[must_use]
pub fn compare_for(duty_bp: u16) -> u16 {
    let counts = u32::from(PWM_TOP) + 1;
    let c = (counts * u32::from(duty_bp.min(10_000)) + 5_000) / 10_000;
    u16::try_from(c).unwrap_or(u16::MAX)
}

/// A self-test in progress on one channel.
#[derive(Debug, Clone)]
pub struct Loopback {
    /// The command's sequence number and channel, for the answer.
    pub seq: u32,
    pub ch: u8,
    test: SelfTest,
    started_us: u64,
    duty_bp: Option<u16>,
    ignore_until_us: u64,
}

impl Loopback {
    #[must_use]
    pub fn new(seq: u32, ch: u8, cfg: CaptureConfig, now_us: u64) -> Self {
        Self {
            seq,
            ch,
            test: SelfTest::new(cfg),
            started_us: now_us,
            duty_bp: None,
            ignore_until_us: now_us.saturating_add(SETTLE_US),
        }
    }

    /// The compare value to program now, when it changed since the last
    /// call (`now_us` starts the settling).
    pub fn pwm_change(&mut self, now_us: u64) -> Option<u16> {
        let duty = self.test.setpoint()?.duty_bp;
        if self.duty_bp == Some(duty) {
            return None;
        }
        self.duty_bp = Some(duty);
        self.ignore_until_us = now_us.saturating_add(SETTLE_US);
        Some(compare_for(duty))
    }

    /// A looped-back edge.
    pub fn handle_edge(&mut self, e: Edge) {
        if e.t_us() < self.ignore_until_us
            || self.test.setpoint().map(|s| s.duty_bp) != self.duty_bp
        {
            return;
        }
        self.test.handle_edge(e.t_us(), e.rising);
    }

    /// The report when done, or a failed one past [`TIMEOUT_US`].
    #[must_use]
    pub fn poll(&self, now_us: u64) -> Option<SelfTestReport> {
        if let Some(r) = self.test.report() {
            return Some(r);
        }
        (now_us.saturating_sub(self.started_us) >= TIMEOUT_US).then_some(SelfTestReport {
            window_duty_err_ppm: u32::MAX,
            duty_err_ppm: u32::MAX,
            freq_err_ppm: u32::MAX,
            periods: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edges::NS_PER_CYCLE;

    #[test]
    fn setpoints_map_to_compare_values_within_half_a_count() {
        assert_eq!(compare_for(1_000), 3_125);
        assert_eq!(compare_for(9_600), 30_001);
        assert_eq!(compare_for(2_667), 8_335);
        assert_eq!(compare_for(10_000), 31_251);
        assert_eq!(compare_for(u16::MAX), 31_251, "never past 100 %");
        for bp in rig::selftest::SETPOINTS_BP {
            let actual_ppm = u64::from(compare_for(bp)) * 1_000_000 / 31_251;
            assert!(actual_ppm.abs_diff(u64::from(bp) * 100) <= 16, "{bp}");
        }
    }

    /// The board's loopback as the PIO sees it: the PWM's edges on its
    /// 32 ns count grid, period [`PWM_PERIOD_NS`], seen on the PIO's 16 ns grid, with a fixed
    /// comparator delay, the compare taking effect at the next wrap, and
    /// the glue reading edges up to `lag_us` late.
    fn run(delay_ns: u64, lag_us: u64) -> SelfTestReport {
        let mut lb = Loopback::new(7, 2, CaptureConfig::default(), 0);
        let (mut compare, mut pending) = (0u64, None);
        let mut t_ns = 0u64;
        for _ in 0..4_000 {
            let now_us = t_ns / 1_000 + lag_us;
            if let Some(c) = lb.pwm_change(now_us) {
                pending = Some(u64::from(c));
            }
            if let Some(c) = pending.take() {
                compare = c;
            }
            let see = |t: u64| (t + delay_ns).div_ceil(2 * NS_PER_CYCLE) * 2 * NS_PER_CYCLE;
            lb.handle_edge(Edge {
                t_ns: see(t_ns),
                rising: true,
            });
            lb.handle_edge(Edge {
                t_ns: see(t_ns + compare * 32),
                rising: false,
            });
            if let Some(r) = lb.poll(now_us) {
                return r;
            }
            t_ns += PWM_PERIOD_NS;
        }
        panic!("no report in 4 s of loopback")
    }

    #[test]
    fn an_ideal_loopback_passes_well_inside_the_goal() {
        let r = run(40, 300);
        println!("modelled loopback: {r:?}");
        assert!(r.pass(), "{r:?}");
        assert!(r.periods >= 1_280, "{r:?}");
        // The PWM's setpoint offsets (16 ppm at most) and the microsecond
        // timestamps (averaged out by the 32 ns walk) are all the error
        // there is; the frequency is the 32 ppm of the extra count.
        assert!(r.duty_err_ppm <= 100, "{r:?}");
        assert!(r.freq_err_ppm <= 40, "{r:?}");
    }

    #[test]
    fn a_slow_comparator_edge_shows_as_duty_error() {
        // A falling edge 200 us late (a wiring fault) is 20 % of duty.
        let mut lb = Loopback::new(1, 0, CaptureConfig::default(), 0);
        let mut t = 0u64;
        let mut report = None;
        while report.is_none() {
            if let Some(c) = lb.pwm_change(t / 1_000) {
                let _ = c;
            }
            let duty = u64::from(compare_for(lb.duty_bp.unwrap())) * 32;
            lb.handle_edge(Edge {
                t_ns: t,
                rising: true,
            });
            lb.handle_edge(Edge {
                t_ns: t + (duty + 200_000).min(990_000),
                rising: false,
            });
            t += 1_000_000;
            report = lb.poll(t / 1_000);
        }
        assert!(!report.unwrap().pass());
    }

    #[test]
    fn no_loopback_fails_at_the_timeout_instead_of_waiting() {
        let mut lb = Loopback::new(1, 0, CaptureConfig::default(), 1_000);
        assert_eq!(lb.pwm_change(1_000), Some(3_125));
        assert_eq!(lb.pwm_change(1_001), None, "programmed once");
        assert_eq!(lb.poll(1_000 + TIMEOUT_US - 1), None);
        let r = lb.poll(1_000 + TIMEOUT_US).unwrap();
        assert!(!r.pass());
    }
}
