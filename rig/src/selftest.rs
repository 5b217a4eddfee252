//! The fixture's self-test: its own PWM generator looped into its capture
//! input, so a lab can prove the instrument before trusting it.
//!
//! Owns the test plan (the setpoints, how long each is measured), the
//! judgement of the capture's measurement against the known setpoint, and
//! the report. Sans-IO: a board drives its PWM generator at
//! [`SelfTest::setpoint`] and feeds the looped-back edges, timestamped by
//! its capture timer, to [`SelfTest::handle_edge`]; the virtual fixture does
//! the same with [`run_virtual`], a generated PWM with seeded edge jitter.
//! Either way the edges go through the same [`ChannelCapture`] code path
//! that measures stations, and the figure judged is that capture's own
//! averaging window ([`ChannelCapture::window_us`]).
//!
//! The goal (issue 12): duty error at most 0.05 % (500 ppm of the period)
//! at 1 kHz over each setpoint's measurement (8 windows of 32 periods),
//! frequency within 0.1 % in every window. The worst single window's duty
//! error (what one `DUTY` report rests on) is reported beside it.
//! Nothing here panics or allocates; arithmetic on measured values is
//! saturating.

use crate::capture::{CaptureConfig, ChannelCapture};
use crate::rng::SplitMix64;

/// Duty setpoints, 0.01 %: 6 A, 16 A, 32 A, 51 A and 80 A at 1 kHz.
pub const SETPOINTS_BP: [u16; 5] = [1_000, 2_667, 5_333, 8_500, 9_600];
/// The generator's period: 1 kHz.
pub const PERIOD_NS: u64 = 1_000_000;
/// Periods per judged window: the capture's averaging window.
pub const WINDOW_PERIODS: u32 = 32;
/// Windows measured per setpoint.
pub const WINDOWS: u32 = 8;
/// Largest duty error that passes, ppm of the period (0.05 %).
pub const DUTY_LIMIT_PPM: u32 = 500;
/// Largest frequency error that passes, ppm (0.1 %).
pub const FREQ_LIMIT_PPM: u32 = 1_000;

/// What the loopback generator must drive now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setpoint {
    /// Duty, 0.01 %.
    pub duty_bp: u16,
    /// Period, nanoseconds.
    pub period_ns: u64,
}

/// The self-test's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SelfTestReport {
    /// Worst duty error of one 32-period window, ppm of the period.
    pub window_duty_err_ppm: u32,
    /// Worst duty error over a setpoint's whole measurement, ppm.
    pub duty_err_ppm: u32,
    /// Worst frequency error of one window, ppm.
    pub freq_err_ppm: u32,
    /// Periods measured in all.
    pub periods: u32,
}

impl SelfTestReport {
    /// Within the goal: every setpoint's duty within 0.05 % and every
    /// window's frequency within 0.1 %, over whole windows. A single
    /// 32-period window's duty error is reported beside it
    /// ([`Self::window_duty_err_ppm`]) but not judged: with 1 us of edge
    /// jitter on a 1 us timer its spread alone reaches about 0.05 % (three
    /// standard deviations), which says more about the jitter than about the
    /// capture.
    #[must_use]
    pub fn pass(&self) -> bool {
        self.periods > 0
            && self.window_duty_err_ppm != u32::MAX
            && self.duty_err_ppm <= DUTY_LIMIT_PPM
            && self.freq_err_ppm <= FREQ_LIMIT_PPM
    }
}

/// The self-test in progress.
#[derive(Debug, Clone)]
pub struct SelfTest {
    cfg: CaptureConfig,
    cap: ChannelCapture,
    step: usize,
    /// Rising edges seen at this setpoint (the first starts no period).
    rises: u32,
    /// Sums of high time and period over this setpoint's windows, us.
    sums: (u64, u64),
    report: SelfTestReport,
}

/// `|h / p - set_bp / 10 000|` in ppm, rounded up.
fn duty_err_ppm(high_us: u64, period_us: u64, set_bp: u16) -> u32 {
    if period_us == 0 {
        return u32::MAX;
    }
    let measured = u128::from(high_us) * 1_000_000;
    let set = u128::from(set_bp) * 100 * u128::from(period_us);
    let diff = measured.abs_diff(set);
    let ppm = diff.div_ceil(u128::from(period_us));
    u32::try_from(ppm).unwrap_or(u32::MAX)
}

/// Frequency error of `n` periods lasting `period_us` in all against
/// `period_ns` each, ppm, rounded up.
fn freq_err_ppm(n: u32, period_us: u64, period_ns: u64) -> u32 {
    let expect_ns = u128::from(period_ns) * u128::from(n);
    if expect_ns == 0 {
        return u32::MAX;
    }
    let diff = (u128::from(period_us) * 1_000).abs_diff(expect_ns);
    u32::try_from((diff * 1_000_000).div_ceil(expect_ns)).unwrap_or(u32::MAX)
}

impl SelfTest {
    /// A self-test measuring with the fixture's capture settings.
    #[must_use]
    pub fn new(cfg: CaptureConfig) -> Self {
        Self {
            cfg,
            cap: ChannelCapture::new(cfg),
            step: 0,
            rises: 0,
            sums: (0, 0),
            report: SelfTestReport::default(),
        }
    }

    /// What the generator must drive now; `None` when the test is done.
    #[must_use]
    pub fn setpoint(&self) -> Option<Setpoint> {
        SETPOINTS_BP.get(self.step).map(|&duty_bp| Setpoint {
            duty_bp,
            period_ns: PERIOD_NS,
        })
    }

    /// One looped-back edge, at the capture timer's `t_us`. Edges after the
    /// test is done are ignored.
    pub fn handle_edge(&mut self, t_us: u64, rising: bool) {
        let Some(sp) = self.setpoint() else { return };
        self.cap.handle_edge(t_us, rising);
        if !rising {
            return;
        }
        self.rises = self.rises.saturating_add(1);
        let periods = self.rises.saturating_sub(1);
        if periods == 0 || !periods.is_multiple_of(WINDOW_PERIODS) {
            return;
        }
        let (n, h, p) = self.cap.window_us().unwrap_or((0, 0, 0));
        let r = &mut self.report;
        if n != WINDOW_PERIODS {
            // The capture restarted its average (a jump or a glitch inside
            // the window): the window is not whole, which is a failure.
            r.window_duty_err_ppm = u32::MAX;
        } else {
            r.window_duty_err_ppm = r.window_duty_err_ppm.max(duty_err_ppm(h, p, sp.duty_bp));
            r.freq_err_ppm = r.freq_err_ppm.max(freq_err_ppm(n, p, sp.period_ns));
        }
        r.periods = r.periods.saturating_add(n);
        self.sums = (self.sums.0.saturating_add(h), self.sums.1.saturating_add(p));
        if periods >= WINDOW_PERIODS * WINDOWS {
            r.duty_err_ppm = r
                .duty_err_ppm
                .max(duty_err_ppm(self.sums.0, self.sums.1, sp.duty_bp));
            self.step += 1;
            self.rises = 0;
            self.sums = (0, 0);
            self.cap = ChannelCapture::new(self.cfg);
        }
    }

    /// The result, once every setpoint was measured.
    #[must_use]
    pub fn report(&self) -> Option<SelfTestReport> {
        self.setpoint().is_none().then_some(self.report)
    }
}

/// The virtual loopback: an ideal PWM at each setpoint, every edge moved by
/// a seeded uniform jitter of up to `jitter_ns` either way, then timestamped
/// by a 1 MHz capture timer (truncated to the microsecond, as a free-running
/// timer latches). Returns the self-test's report.
#[must_use]
pub fn run_virtual(cfg: CaptureConfig, seed: u64, jitter_ns: u64) -> SelfTestReport {
    let mut test = SelfTest::new(cfg);
    let mut rng = SplitMix64::new(seed);
    let mut jitter = move || {
        let span = jitter_ns.saturating_mul(2).saturating_add(1);
        rng.below(span)
    };
    // Start late enough that a negative jitter cannot go below zero.
    let mut start_ns = 1_000_000u64;
    while let Some(sp) = test.setpoint() {
        let high_ns = sp.period_ns.saturating_mul(u64::from(sp.duty_bp)) / 10_000;
        let mut k = 0u64;
        while test.setpoint() == Some(sp) {
            let rise = start_ns + k * sp.period_ns;
            let at = |ideal: u64, j: u64| (ideal + j).saturating_sub(jitter_ns) / 1_000;
            let r = at(rise, jitter());
            test.handle_edge(r, true);
            if test.setpoint() != Some(sp) {
                break;
            }
            let f = at(rise + high_ns, jitter());
            test.handle_edge(f, false);
            k += 1;
        }
        start_ns += (k + 4) * sp.period_ns;
    }
    test.report().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_1_khz_pwm_with_1_us_jitter_is_measured_within_0_05_percent() {
        let mut worst = SelfTestReport::default();
        for seed in 0..100 {
            let r = run_virtual(CaptureConfig::default(), seed, 1_000);
            assert_eq!(r.periods, 5 * 8 * 32, "seed {seed}");
            assert!(r.pass(), "seed {seed}: {r:?}");
            worst.duty_err_ppm = worst.duty_err_ppm.max(r.duty_err_ppm);
            worst.window_duty_err_ppm = worst.window_duty_err_ppm.max(r.window_duty_err_ppm);
            worst.freq_err_ppm = worst.freq_err_ppm.max(r.freq_err_ppm);
        }
        eprintln!("worst over 100 seeds: {worst:?}");
        // One window rests on 32 periods: about 0.016 % standard deviation
        // with this jitter; 0.075 % is over four of them.
        assert!(worst.window_duty_err_ppm <= 750, "{worst:?}");
    }

    #[test]
    fn an_exact_loopback_has_only_the_timer_resolution_error() {
        let r = run_virtual(CaptureConfig::default(), 1, 0);
        // 0.01 % steps of a 1000 us period fall on 0.1 us: the timer's
        // 1 us truncation of a 266.7 us pulse is at most 1 us a period.
        assert!(r.window_duty_err_ppm <= 1_000, "{r:?}");
        assert_eq!(r.freq_err_ppm, 0, "{r:?}");
    }

    #[test]
    fn a_wrong_capture_fails_the_self_test() {
        // A generator 5 us off (or a capture whose timer is) shows.
        let mut t = SelfTest::new(CaptureConfig::default());
        let mut k = 0u64;
        while let Some(sp) = t.setpoint() {
            let high_us = sp.period_ns * u64::from(sp.duty_bp) / 10_000 / 1_000 + 5;
            let rise = 1_000 + k * 1_000;
            t.handle_edge(rise, true);
            t.handle_edge(rise + high_us, false);
            k += 1;
        }
        let r = t.report().expect("done");
        assert!(!r.pass(), "{r:?}");
        assert!(r.window_duty_err_ppm >= 4_000, "{r:?}");
        // A clock 1 % fast fails on frequency.
        let mut t = SelfTest::new(CaptureConfig::default());
        let mut k = 0u64;
        while let Some(sp) = t.setpoint() {
            let high_us = sp.period_ns * u64::from(sp.duty_bp) / 10_000 / 1_000;
            let rise = 1_000 + k * 1_010;
            t.handle_edge(rise, true);
            t.handle_edge(rise + high_us * 1_010 / 1_000, false);
            k += 1;
        }
        let r = t.report().expect("done");
        assert!(r.freq_err_ppm >= 9_000, "{r:?}");
        assert!(!r.pass());
    }

    #[test]
    fn error_arithmetic() {
        assert_eq!(duty_err_ppm(500, 1_000, 5_000), 0);
        assert_eq!(duty_err_ppm(501, 1_000, 5_000), 1_000);
        assert_eq!(duty_err_ppm(16_004, 32_000, 5_000), 125);
        assert_eq!(duty_err_ppm(1, 0, 5_000), u32::MAX);
        assert_eq!(freq_err_ppm(32, 32_000, 1_000_000), 0);
        assert_eq!(freq_err_ppm(32, 32_001, 1_000_000), 32);
    }
}
