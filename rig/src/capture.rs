//! Capture, per channel: what the fixture measures on one station.
//!
//! Owns turning raw measurements into reportable changes: PWM duty and
//! frequency from pilot edge timestamps (1 MHz timer, microseconds), pilot
//! state from the sampled plateaus, PWM on and off, contactor instants from
//! relay sense, and the current. Reports changes only (a duty move of at
//! least the threshold or of the current it decodes to, a state or PWM
//! change, a contactor transition with its exact timestamp, a current
//! change), so a 115200-baud link carries 16 channels. Does not know what
//! the station should do: checks live in the harness.
//!
//! Duty is averaged over up to 32 periods since the last jump, so 1 us of
//! edge jitter costs well under 0.05 %; a jump larger than 0.5 % restarts
//! the average, and a new duty is reported only after it held for
//! `confirm_periods` periods (one short pulse is not a duty change). Edges
//! closer than `glitch_us` to the previous one are dropped with it.
//!
//! A duty is reported when it moved by the threshold (0.05 % by default)
//! or when the current it decodes to (the car's table below) differs from
//! the reported one by 0.1 A or more: above 51 A one 0.1 A step is only
//! 0.04 % of duty. Such a decoded change counts only clear of the boundary
//! it crossed (the duty 0.01 % back toward the reported one must not decode
//! to the reported current: a hysteresis of one step), and only after it
//! held for a whole window (32 periods) in a row, so an average sitting on
//! a decode boundary does not flap. A 0.04 % step moves the 32-period
//! average gradually: it is seen about 64 periods after the change, when
//! the window holds nothing else, so the duty reported is the new one.
//!
//! Current: a move of at least `current_threshold_da` on any phase is
//! reported at once; a smaller difference from the reported value is
//! reported once the readings have differed from it for `current_settle`
//! (1 s by default), with the latest reading, stamped when it is reported.
//! So a settled value is always reported, at most one settled report per
//! `current_settle` per channel, and a noisy reading cannot flood the link.
//! [`ChannelCapture::measured_da`] is the latest reading itself (the mains
//! meter emulation sums those, never the reported ones).
//!
//! Loss is counted, never silent: when the change queue is full the oldest
//! change is dropped and counted in [`ChannelCapture::lost_events`], which
//! the fixture reports on the protocol.
//!
//! Pilot states and the decoding of duty to current are the fixture's own
//! ([`crate::iec`]), written apart from the firmware's encoder on purpose:
//! the fixture must catch a station whose table is wrong. Nothing here
//! panics or allocates.

pub use crate::iec::current_for_duty;
use crate::iec::PilotState;
use crate::time::{Duration, Instant};
use heapless::Deque;

/// Capture settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureConfig {
    /// Report a duty move of at least this, in 0.01 % (default 5 = 0.05 %).
    pub duty_threshold_bp: u16,
    /// A new duty must hold this many periods before it is reported.
    pub confirm_periods: u8,
    /// Edges closer than this to the previous edge are a glitch.
    pub glitch_us: u32,
    /// No edge for this long means PWM stopped (hardware); `None` relies on
    /// the sampled levels alone (the virtual bench samples exactly).
    pub pwm_timeout: Option<Duration>,
    /// Report a current change of at least this at once, deciamps.
    pub current_threshold_da: u16,
    /// Report a smaller current change once the readings have differed
    /// from the reported value for this long.
    pub current_settle: Duration,
    /// Window around each nominal level that classifies a state, millivolts.
    pub level_window_mv: i32,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        Self {
            duty_threshold_bp: 5,
            confirm_periods: 8,
            glitch_us: 5,
            pwm_timeout: Some(crate::time::ms(3)),
            current_threshold_da: 2,
            current_settle: crate::time::secs(1),
            level_window_mv: crate::iec::LEVEL_WINDOW_MV,
        }
    }
}

/// A change the fixture reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureEvent {
    /// PWM running at this duty (0.01 %) and frequency (milli-hertz).
    Duty { duty_bp: u16, freq_mhz: u32 },
    /// PWM stopped; the pilot is steady.
    PwmOff,
    /// The pilot state and the plateaus behind it.
    Pilot {
        state: Option<PilotState>,
        high_mv: i32,
        low_mv: i32,
    },
    /// Relay sense: the contactor closed (`true`) or opened.
    Contactor(bool),
    /// Measured current per phase, deciamps.
    Current([u16; 3]),
}

const WINDOW: usize = 32;
const JUMP_BP: i32 = 50;
/// Changes a channel holds before the fixture drains them.
pub const EVENT_QUEUE: usize = 16;

/// One channel's capture.
#[derive(Debug, Clone)]
pub struct ChannelCapture {
    cfg: CaptureConfig,
    last_rise: Option<u64>,
    last_fall: Option<u64>,
    prev_edge: Option<(u64, bool)>,
    saved: (Option<u64>, Option<u64>),
    periods: Deque<(u32, u32), WINDOW>,
    reported_duty: Option<u16>,
    pwm_on: bool,
    last_edge_at: Option<u64>,
    state: Option<PilotState>,
    levels: (i32, i32),
    /// Whether levels were ever sampled (before that, nothing is known).
    levels_seen: bool,
    /// The frequency reported with the duty, milli-hertz.
    reported_freq_mhz: u32,
    contactor: bool,
    /// The current last reported.
    current: [u16; 3],
    /// The latest reading.
    measured: [u16; 3],
    /// Since when the readings differ (under the threshold) from `current`.
    settle_since: Option<u64>,
    /// A decoded current that differs from the reported one, and for how
    /// many periods in a row the average decoded to it.
    decode_candidate: Option<(Option<u16>, u8)>,
    events: Deque<(u64, CaptureEvent), EVENT_QUEUE>,
    lost: u32,
}

impl ChannelCapture {
    #[must_use]
    pub fn new(cfg: CaptureConfig) -> Self {
        Self {
            cfg,
            last_rise: None,
            last_fall: None,
            prev_edge: None,
            saved: (None, None),
            periods: Deque::new(),
            reported_duty: None,
            pwm_on: false,
            last_edge_at: None,
            state: None,
            levels: (0, 0),
            levels_seen: false,
            reported_freq_mhz: 0,
            contactor: false,
            current: [0; 3],
            measured: [0; 3],
            settle_since: None,
            decode_candidate: None,
            events: Deque::new(),
            lost: 0,
        }
    }

    /// The duty being reported now, if PWM runs.
    #[must_use]
    pub fn duty_bp(&self) -> Option<u16> {
        if self.pwm_on {
            self.reported_duty
        } else {
            None
        }
    }

    #[must_use]
    pub fn state(&self) -> Option<PilotState> {
        self.state
    }

    #[must_use]
    pub fn contactor(&self) -> bool {
        self.contactor
    }

    /// The current last reported, deciamps per phase.
    #[must_use]
    pub fn current_da(&self) -> [u16; 3] {
        self.current
    }

    /// The latest current reading, deciamps per phase (what flows now).
    #[must_use]
    pub fn measured_da(&self) -> [u16; 3] {
        self.measured
    }

    /// Changes dropped since the start because the queue was full
    /// (cumulative; 0 when the fixture drains after every input).
    #[must_use]
    pub fn lost_events(&self) -> u32 {
        self.lost
    }

    /// Changes lost before they reached this capture (a fixture board's
    /// edge FIFO overflowed): counted with the queue's own losses.
    pub fn handle_lost(&mut self, n: u32) {
        self.lost = self.lost.saturating_add(n);
    }

    fn push(&mut self, t_us: u64, e: CaptureEvent) {
        if self.events.is_full() {
            self.events.pop_front();
            self.lost = self.lost.saturating_add(1);
        }
        let _ = self.events.push_back((t_us, e));
    }

    /// One pilot edge from the capture timer.
    pub fn handle_edge(&mut self, t_us: u64, rising: bool) {
        if let Some((pt, _)) = self.prev_edge {
            if t_us.saturating_sub(pt) < u64::from(self.cfg.glitch_us) {
                // A glitch: forget the previous edge and this one.
                (self.last_rise, self.last_fall) = self.saved;
                self.prev_edge = None;
                return;
            }
        }
        self.saved = (self.last_rise, self.last_fall);
        self.prev_edge = Some((t_us, rising));
        self.last_edge_at = Some(t_us);
        if !rising {
            self.last_fall = Some(t_us);
            return;
        }
        if let (Some(r), Some(f)) = (self.last_rise, self.last_fall) {
            if f > r && t_us > f {
                let period = u32::try_from(t_us - r).unwrap_or(u32::MAX);
                let high = u32::try_from(f - r).unwrap_or(u32::MAX);
                self.handle_period(t_us, period, high);
            }
        }
        self.last_rise = Some(t_us);
    }

    /// A steady PWM fed in a batch: `count` periods from the rising edge at
    /// `start_us`. Goes through the same path as single edges.
    pub fn handle_pwm_batch(&mut self, start_us: u64, period_us: u32, high_us: u32, count: u32) {
        for k in 0..u64::from(count) {
            let r = start_us + k * u64::from(period_us);
            self.handle_edge(r, true);
            self.handle_edge(r + u64::from(high_us), false);
        }
        self.handle_edge(start_us + u64::from(count) * u64::from(period_us), true);
    }

    fn handle_period(&mut self, t_us: u64, period: u32, high: u32) {
        if period == 0 {
            return;
        }
        let duty = |h: u64, p: u64| -> i32 { i32::try_from((h * 10_000 + p / 2) / p).unwrap_or(0) };
        let this = duty(u64::from(high), u64::from(period));
        if let Some(avg) = self.average() {
            if (this - i32::from(avg.0)).abs() > JUMP_BP {
                self.periods.clear();
                self.decode_candidate = None;
            }
        }
        if self.periods.is_full() {
            self.periods.pop_front();
        }
        let _ = self.periods.push_back((period, high));
        if self.periods.len() < usize::from(self.cfg.confirm_periods.max(1)) {
            return;
        }
        let Some((avg, freq)) = self.average() else {
            return;
        };
        let moved = match (self.pwm_on, self.reported_duty) {
            (true, Some(r)) => {
                r.abs_diff(avg) >= self.cfg.duty_threshold_bp || self.decoded_step_held(r, avg)
            }
            _ => true,
        };
        if moved {
            self.decode_candidate = None;
            self.pwm_on = true;
            self.reported_duty = Some(avg);
            self.reported_freq_mhz = freq;
            self.push(
                t_us,
                CaptureEvent::Duty {
                    duty_bp: avg,
                    freq_mhz: freq,
                },
            );
        }
    }

    /// Whether `avg` decodes to another current than the reported `r` (by
    /// 0.1 A or more), clear of the boundary (0.01 % back toward `r` does
    /// not decode to `r`'s current: at 85.00 %, the end of the linear
    /// range, one step back is a third current, and 51.0 A is still
    /// reached), and has decoded to that current for a whole window.
    fn decoded_step_held(&mut self, r: u16, avg: u16) -> bool {
        let seen = current_for_duty(avg);
        let reported = current_for_duty(r);
        let back = if avg > r {
            avg.saturating_sub(1)
        } else {
            avg.saturating_add(1)
        };
        if seen == reported || current_for_duty(back) == reported {
            self.decode_candidate = None;
            return false;
        }
        let held = match self.decode_candidate {
            Some((c, n)) if c == seen => n.saturating_add(1),
            _ => 1,
        };
        self.decode_candidate = Some((seen, held));
        usize::from(held) >= WINDOW
    }

    /// The measurement behind the reported duty, at full resolution: the
    /// periods in the averaging window (up to 32), and the sums of their
    /// high times and of their lengths, microseconds. `None` before the
    /// first whole period. The self-test ([`crate::selftest`]) judges this.
    #[must_use]
    pub fn window_us(&self) -> Option<(u32, u64, u64)> {
        let (mut p, mut h) = (0u64, 0u64);
        for &(pp, hh) in &self.periods {
            p = p.saturating_add(u64::from(pp));
            h = h.saturating_add(u64::from(hh));
        }
        (p > 0).then(|| (self.periods.len() as u32, h, p))
    }

    /// Mean duty (0.01 %) and frequency (mHz) over the window.
    fn average(&self) -> Option<(u16, u32)> {
        let (mut p, mut h) = (0u64, 0u64);
        for &(pp, hh) in &self.periods {
            p += u64::from(pp);
            h += u64::from(hh);
        }
        if p == 0 {
            return None;
        }
        let duty = u16::try_from((h * 10_000 + p / 2) / p).unwrap_or(10_000);
        let n = self.periods.len() as u64;
        let freq = u32::try_from(n * 1_000_000_000 / p).unwrap_or(u32::MAX);
        Some((duty, freq))
    }

    /// Sampled plateaus. With both plateaus equal the pilot is steady.
    pub fn handle_levels(&mut self, t_us: u64, high_mv: i32, low_mv: i32) {
        // Levels are measured values: compared with saturating arithmetic.
        let apart = |a: i32, b: i32| a.saturating_sub(b).saturating_abs();
        let steady = apart(high_mv, low_mv) < 1_000;
        if steady && self.pwm_on {
            self.pwm_stopped(t_us);
        }
        let state = self.classify(high_mv);
        if !self.levels_seen
            || state != self.state
            || apart(self.levels.1, low_mv) > 1_000
            || apart(self.levels.0, high_mv) > 1_000
        {
            self.state = state;
            self.levels = (high_mv, low_mv);
            self.levels_seen = true;
            self.push(
                t_us,
                CaptureEvent::Pilot {
                    state,
                    high_mv,
                    low_mv,
                },
            );
        }
    }

    fn pwm_stopped(&mut self, t_us: u64) {
        self.pwm_on = false;
        self.reported_duty = None;
        self.decode_candidate = None;
        self.periods.clear();
        self.last_rise = None;
        self.last_fall = None;
        self.prev_edge = None;
        self.push(t_us, CaptureEvent::PwmOff);
    }

    fn classify(&self, high_mv: i32) -> Option<PilotState> {
        PilotState::classify(high_mv, self.cfg.level_window_mv)
    }

    /// Relay sense changed, at this exact timer value.
    pub fn handle_relay(&mut self, t_us: u64, closed: bool) {
        if closed != self.contactor {
            self.contactor = closed;
            self.push(t_us, CaptureEvent::Contactor(closed));
        }
    }

    /// Measured current per phase: a move of the threshold is reported at
    /// once, a smaller difference once it has lasted `current_settle`.
    pub fn handle_current(&mut self, t_us: u64, da: [u16; 3]) {
        self.measured = da;
        let moved = da
            .iter()
            .zip(self.current.iter())
            .any(|(a, b)| a.abs_diff(*b) >= self.cfg.current_threshold_da)
            || (da != self.current && da.iter().all(|&x| x == 0));
        if moved {
            self.current = da;
            self.settle_since = None;
            self.push(t_us, CaptureEvent::Current(da));
        } else if da == self.current {
            self.settle_since = None;
        } else if self.settle_since.is_none() {
            self.settle_since = Some(t_us);
        }
    }

    /// When a current under the threshold is due to be reported.
    fn settle_due(&self) -> Option<Instant> {
        self.settle_since
            .map(|t| Instant::from_ticks(t.saturating_add(self.cfg.current_settle.ticks())))
    }

    /// The hardware's PWM timeout, and the settling of a small current
    /// change.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let (Some(to), Some(last), true) = (self.cfg.pwm_timeout, self.last_edge_at, self.pwm_on)
        {
            if now.ticks() >= last.saturating_add(to.ticks()) {
                self.pwm_stopped(now.ticks());
            }
        }
        if self.settle_due().is_some_and(|t| now >= t) {
            self.settle_since = None;
            if self.measured != self.current {
                self.current = self.measured;
                self.push(now.ticks(), CaptureEvent::Current(self.measured));
            }
        }
    }

    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let pwm = match (self.cfg.pwm_timeout, self.last_edge_at, self.pwm_on) {
            (Some(to), Some(last), true) => {
                Some(Instant::from_ticks(last.saturating_add(to.ticks())))
            }
            _ => None,
        };
        crate::time::earliest(pwm, self.settle_due())
    }

    /// The state last reported, as the changes that would report it from
    /// scratch: the pilot (once levels were sampled), the PWM duty if it
    /// runs, the contactor if closed, the current if any flows. A host that
    /// starts listening (after `RESET`) learns where each channel stands.
    /// Changes nothing: the queue, the averages and the car are untouched.
    #[must_use]
    pub fn state_report(&self) -> heapless::Vec<CaptureEvent, 4> {
        let mut v = heapless::Vec::new();
        if self.levels_seen {
            let _ = v.push(CaptureEvent::Pilot {
                state: self.state,
                high_mv: self.levels.0,
                low_mv: self.levels.1,
            });
        }
        if let Some(duty_bp) = self.duty_bp() {
            let _ = v.push(CaptureEvent::Duty {
                duty_bp,
                freq_mhz: self.reported_freq_mhz,
            });
        }
        if self.contactor {
            let _ = v.push(CaptureEvent::Contactor(true));
        }
        if self.current != [0; 3] {
            let _ = v.push(CaptureEvent::Current(self.current));
        }
        v
    }

    /// The next change to report, with its timer timestamp.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<(u64, CaptureEvent)> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    /// Levels are measured: at the ends of i32 they are compared, not
    /// overflowed (the firmware's sense had the same panic, found by fuzzing).
    #[test]
    fn levels_at_the_ends_of_i32_do_not_overflow() {
        let mut c = ChannelCapture::new(CaptureConfig::default());
        c.handle_levels(1, i32::MAX, i32::MIN);
        c.handle_levels(2, i32::MIN, i32::MAX);
        c.handle_levels(3, 12_000, 12_000);
        assert!(events(&mut c).len() >= 2);
    }

    #[test]
    fn the_state_report_is_what_was_last_reported() {
        let mut c = ChannelCapture::new(CaptureConfig::default());
        assert!(
            c.state_report().is_empty(),
            "nothing sampled, nothing known"
        );
        c.handle_levels(0, 12_000, 12_000);
        let first = events(&mut c);
        assert_eq!(
            c.state_report().as_slice(),
            &[first[0].1],
            "the first sample is reported, and is the state"
        );
        c.handle_levels(10, 6_000, -12_000);
        c.handle_pwm_batch(10, 1_000, 533, 40);
        c.handle_relay(50_000, true);
        c.handle_current(50_000, [160, 0, 0]);
        let _ = events(&mut c);
        let r = c.state_report();
        assert!(
            matches!(
                r.as_slice(),
                [
                    CaptureEvent::Pilot {
                        state: Some(PilotState::C),
                        high_mv: 6_000,
                        low_mv: -12_000
                    },
                    CaptureEvent::Duty {
                        duty_bp: 5_330,
                        freq_mhz: 1_000_000
                    },
                    CaptureEvent::Contactor(true),
                    CaptureEvent::Current([160, 0, 0]),
                ]
            ),
            "{r:?}"
        );
        // Reporting changes nothing: no new change is queued.
        assert!(events(&mut c).is_empty());
    }

    fn events(c: &mut ChannelCapture) -> Vec<(u64, CaptureEvent)> {
        core::iter::from_fn(|| c.poll_event()).collect()
    }

    /// A 1 kHz PWM at `duty_bp` with +/-1 us of jitter on every edge.
    fn jittered(
        c: &mut ChannelCapture,
        rng: &mut SplitMix64,
        start: u64,
        duty_bp: u16,
        periods: u64,
    ) {
        for k in 0..periods {
            let j = |rng: &mut SplitMix64| rng.below(3) as i64 - 1;
            let r = (start + k * 1_000) as i64 + j(rng);
            let f = (start + k * 1_000) as i64 + i64::from(duty_bp) / 10 + j(rng);
            c.handle_edge(r as u64, true);
            c.handle_edge(f as u64, false);
        }
    }

    #[test]
    fn duty_within_0_05_percent_with_1_us_jitter() {
        for (seed, duty) in [
            (1, 1_000u16),
            (2, 2_670),
            (3, 5_330),
            (4, 8_000),
            (5, 9_600),
        ] {
            let mut rng = SplitMix64::new(seed);
            let mut c = ChannelCapture::new(CaptureConfig::default());
            jittered(&mut c, &mut rng, 0, duty, 200);
            let reported = c.duty_bp().expect("duty");
            assert!(reported.abs_diff(duty) <= 5, "{duty}: reported {reported}");
            let ev = events(&mut c);
            let Some((_, CaptureEvent::Duty { freq_mhz, .. })) = ev.last() else {
                panic!("{ev:?}")
            };
            assert!((999_000..=1_001_000).contains(freq_mhz), "{freq_mhz}");
        }
    }

    #[test]
    fn changes_only_and_a_glitch_is_not_a_change() {
        let mut c = ChannelCapture::new(CaptureConfig::default());
        c.handle_pwm_batch(0, 1_000, 267, 100);
        let first = events(&mut c);
        assert_eq!(first.len(), 1, "one report for a steady duty: {first:?}");
        // One short extra pulse inside a low phase.
        c.handle_edge(100_500, true);
        c.handle_edge(100_502, false);
        c.handle_pwm_batch(101_000, 1_000, 267, 100);
        assert!(events(&mut c).is_empty());
        // A real change is reported once it held.
        c.handle_pwm_batch(201_000, 1_000, 533, 100);
        let ev = events(&mut c);
        assert!(
            matches!(
                ev.first(),
                Some((_, CaptureEvent::Duty { duty_bp: 5_330, .. }))
            ),
            "{ev:?}"
        );
    }

    #[test]
    fn levels_give_the_state_and_steady_means_pwm_off() {
        let mut c = ChannelCapture::new(CaptureConfig {
            pwm_timeout: None,
            ..CaptureConfig::default()
        });
        c.handle_pwm_batch(0, 1_000, 267, 10);
        c.handle_levels(10_000, 6_000, -12_000);
        c.handle_levels(20_000, 9_000, 9_000);
        let ev = events(&mut c);
        assert!(ev.contains(&(
            10_000,
            CaptureEvent::Pilot {
                state: Some(PilotState::C),
                high_mv: 6_000,
                low_mv: -12_000
            }
        )));
        assert!(ev.contains(&(20_000, CaptureEvent::PwmOff)));
        assert_eq!(c.state(), Some(PilotState::B));
    }

    #[test]
    fn relay_instants_are_exact() {
        let mut c = ChannelCapture::new(CaptureConfig::default());
        c.handle_relay(123_457, true);
        c.handle_relay(123_458, true);
        c.handle_relay(223_001, false);
        assert_eq!(
            events(&mut c),
            vec![
                (123_457, CaptureEvent::Contactor(true)),
                (223_001, CaptureEvent::Contactor(false))
            ]
        );
    }

    #[test]
    fn pwm_stops_on_the_hardware_timeout() {
        let mut c = ChannelCapture::new(CaptureConfig::default());
        c.handle_pwm_batch(0, 1_000, 500, 10);
        let due = c.poll_timeout().unwrap();
        assert_eq!(due.ticks(), 10_000 + 3_000);
        c.handle_timeout(due);
        assert_eq!(c.duty_bp(), None);
    }

    /// Exact PWM periods at `duty_bp` (0.01 %), as tenths of a microsecond
    /// dithered against the 1 MHz timer (the virtual bench's feed).
    fn dithered(c: &mut ChannelCapture, start: u64, duty_bp: u16, periods: u64) -> u64 {
        for k in 0..periods {
            let phase = (k * 6_180) % 10_000 / 1_000;
            let rise = (start + k * 1_000) * 10 + phase;
            let fall = rise + u64::from(duty_bp);
            c.handle_edge(rise / 10, true);
            c.handle_edge(fall / 10, false);
        }
        start + periods * 1_000
    }

    fn decoded(ev: &[(u64, CaptureEvent)]) -> Vec<Option<u16>> {
        ev.iter()
            .filter_map(|(_, e)| match e {
                CaptureEvent::Duty { duty_bp, .. } => Some(current_for_duty(*duty_bp)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_0_1_a_step_above_51_a_is_reported() {
        // 63.0 A is 89.20 % and 62.9 A 89.16 %: 0.04 %, under the 0.05 %
        // threshold, but a different current for the car.
        let mut c = ChannelCapture::new(CaptureConfig::default());
        let t = dithered(&mut c, 0, 8_920, 40);
        assert_eq!(decoded(&events(&mut c)), vec![Some(630)]);
        let t = dithered(&mut c, t, 8_916, 96);
        assert_eq!(decoded(&events(&mut c)), vec![Some(629)], "the cut");
        let t = dithered(&mut c, t, 8_920, 96);
        assert_eq!(decoded(&events(&mut c)), vec![Some(630)], "and back");
        // Every 0.1 A step of the table's top range, up and down, from and
        // back to 51.0 A at 85.00 % (the end of the linear range: 52.6 A is
        // 0.04 % above it).
        let mut t = dithered(&mut c, t, 8_500, 96);
        assert_eq!(decoded(&events(&mut c)), vec![Some(510)]);
        for da in (526..=800u16).chain((526..800).rev()) {
            let duty = da * 4 + 6_400;
            t = dithered(&mut c, t, duty, 96);
            assert_eq!(decoded(&events(&mut c)), vec![Some(da)], "{da}");
        }
        dithered(&mut c, t, 8_500, 96);
        assert_eq!(decoded(&events(&mut c)), vec![Some(510)], "51.0 A");
    }

    #[test]
    fn a_duty_on_a_decode_boundary_does_not_flap() {
        // 89.175 % sits between 62.9 A (up to 89.17 %) and 63.0 A: three
        // periods of 892 us and one of 891, and one falling edge in eight
        // 1 us early or late, so the 32-period average wanders across the
        // boundary for ten seconds.
        let mut c = ChannelCapture::new(CaptureConfig::default());
        let mut rng = SplitMix64::new(9);
        let mut reports = Vec::new();
        for k in 0..10_000u64 {
            let high = if k % 4 == 0 { 891 } else { 892 };
            let jitter = match rng.below(16) {
                0 => -1,
                1 => 1,
                _ => 0,
            };
            c.handle_edge(k * 1_000, true);
            c.handle_edge((k * 1_000 + high).saturating_add_signed(jitter), false);
            reports.extend(decoded(&events(&mut c)));
        }
        assert_eq!(c.lost_events(), 0);
        assert!(
            reports.iter().all(|d| matches!(d, Some(629 | 630))),
            "{reports:?}"
        );
        assert!(reports.len() <= 3, "flapping: {reports:?}");
    }

    #[test]
    fn a_settled_current_under_the_deadband_is_reported() {
        let mut c = ChannelCapture::new(CaptureConfig::default());
        c.handle_current(1_000, [126, 0, 0]);
        assert_eq!(
            events(&mut c),
            vec![(1_000, CaptureEvent::Current([126, 0, 0]))]
        );
        // 12.6 -> 12.5 A: under the 0.2 A deadband, reported once it held 1 s.
        c.handle_current(2_000_000, [125, 0, 0]);
        assert!(events(&mut c).is_empty());
        assert_eq!(c.measured_da(), [125, 0, 0]);
        assert_eq!(c.current_da(), [126, 0, 0]);
        let due = c.poll_timeout().expect("settle timer");
        assert_eq!(due.ticks(), 3_000_000);
        c.handle_timeout(due);
        assert_eq!(
            events(&mut c),
            vec![(3_000_000, CaptureEvent::Current([125, 0, 0]))]
        );
        assert_eq!(c.poll_timeout(), None);
        // A blip that comes back before the settle time is not reported.
        c.handle_current(4_000_000, [124, 0, 0]);
        c.handle_current(4_500_000, [125, 0, 0]);
        assert_eq!(c.poll_timeout(), None);
        assert!(events(&mut c).is_empty());
    }

    #[test]
    fn a_full_queue_counts_what_it_drops() {
        let mut c = ChannelCapture::new(CaptureConfig::default());
        for k in 0..20u64 {
            c.handle_relay(k * 1_000, k % 2 == 0);
        }
        assert_eq!(c.lost_events(), 4);
        let ev = events(&mut c);
        assert_eq!(ev.len(), EVENT_QUEUE);
        assert_eq!(ev[0].0, 4_000, "the oldest went first");
    }

    #[test]
    fn the_cars_duty_table() {
        assert_eq!(current_for_duty(1_000), Some(60));
        assert_eq!(current_for_duty(2_667), Some(160));
        assert_eq!(current_for_duty(8_500), Some(510));
        assert_eq!(current_for_duty(9_600), Some(800));
        assert_eq!(current_for_duty(500), None);
        assert_eq!(current_for_duty(10_000), None);
    }
}
