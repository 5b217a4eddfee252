//! Property test: random pilot, car, grant, sensor and contactor-fault
//! sequences driven into one [`ChargePoint`], with every IEC 61851-1 timing
//! row of DOMAIN.md section 2 checked against what the point emitted.
//!
//! The checker below states the rows from the outside (inputs fed, events
//! emitted); it does not read the point's timers. What it asserts, at every
//! instant the driver handles:
//! - no wake-up at or before the `now` last handled, and a bounded number of
//!   wake-ups per instant (no spinning main loop);
//! - the contactor closes only with PWM offered, the car in C (or D with
//!   ventilation) and the diode seen;
//! - it opens within 100 ms once the car has shown A or B;
//! - with PWM removed while closed, it opens within 6 s of the first removal
//!   that followed an offer that held [`OFFER_HOLD`];
//! - a car over offer + 10 % + 0.5 A is cut within 7 s, unless its draw fell
//!   back under the threshold for [`OFFER_HOLD`];
//! - F holds at least 300 ms after a fault;
//! - a welded contact (relay sense closed, coil open) is always reported, and
//!   F holds while it stays welded;
//! - increases of the offer are at most one per 5 s (a first offer excepted);
//! - no PWM pulse shorter than a period (a fault's F excepted);
//! - the offer never exceeds the grant or the maximum.

use proptest::prelude::*;

use super::*;
use crate::time::{ms, secs, us};

#[derive(Debug, Clone, Copy)]
enum Op {
    /// The car's resistors: the pilot high level it produces, and its diode.
    Pilot {
        high_mv: i32,
        diode: bool,
    },
    Allocate(u16),
    Current(u16),
    /// The contactor's contacts weld (stay as they are) or free themselves.
    Weld(bool),
    Advance(Duration),
}

fn op() -> impl Strategy<Value = Op> {
    let level = prop_oneof![
        Just(12_000),
        Just(9_000),
        Just(6_000),
        Just(3_000),
        Just(0),
        Just(-12_000),
        -13_000i32..13_000,
    ];
    let step = prop_oneof![
        Just(0u64),
        Just(500),
        Just(1_000),
        1u64..30_000,
        30_000u64..1_000_000,
        1_000_000u64..8_000_000,
    ];
    prop_oneof![
        3 => (level, prop::bool::weighted(0.85))
            .prop_map(|(high_mv, diode)| Op::Pilot { high_mv, diode }),
        3 => prop_oneof![Just(0u16), Just(60), Just(160), Just(320), 0u16..900]
            .prop_map(Op::Allocate),
        2 => prop_oneof![Just(0u16), Just(60), Just(160), Just(330), 0u16..900]
            .prop_map(Op::Current),
        1 => prop::bool::weighted(0.3).prop_map(Op::Weld),
        5 => step.prop_map(|t| Op::Advance(Duration::from_ticks(t))),
    ]
}

/// The driver of a board, plus the checker of the rows.
struct Bench {
    cp: ChargePoint,
    config: ChargePointConfig,
    now: Instant,
    // What the driver feeds.
    high_mv: i32,
    diode: bool,
    grant_da: u16,
    welded: bool,
    relay: bool,
    // What the point drives.
    coil: bool,
    output: PilotOutput,
    pwm_on_at: Option<Instant>,
    // What the checker tracks.
    coil_open_at: Option<Instant>,
    weld_reported: bool,
    /// The car has shown A or B on the pilot since this instant.
    ab_since: Option<Instant>,
    /// When the pilot last left C or D, and when the diode was last lost
    /// (`None` while in C/D, or with the diode): a close may still follow
    /// within the debounce.
    left_cd_at: Option<Instant>,
    diode_lost_at: Option<Instant>,
    /// PWM removal while closed: the start of the 6 s row.
    pwm_off_base: Option<Instant>,
    over_base: Option<Instant>,
    under_since: Option<Instant>,
    fault_f_at: Option<Instant>,
    last_change: Option<Instant>,
    wakeups_at_now: u32,
}

impl Bench {
    fn new(config: ChargePointConfig) -> Self {
        Self {
            cp: ChargePoint::new(config).unwrap(),
            config,
            now: us(0),
            high_mv: 12_000,
            diode: true,
            grant_da: 0,
            welded: false,
            relay: false,
            coil: false,
            output: PilotOutput::Steady,
            pwm_on_at: None,
            coil_open_at: Some(us(0)),
            weld_reported: false,
            ab_since: None,
            left_cd_at: Some(us(0)),
            diode_lost_at: None,
            pwm_off_base: None,
            over_base: None,
            under_since: None,
            fault_f_at: None,
            last_change: None,
            wakeups_at_now: 0,
        }
    }

    fn levels(&self) -> PilotLevels {
        let pwm = matches!(self.output, PilotOutput::Pwm { .. });
        let high_mv = match self.output {
            // The station drives -12 V: the ADC reads what it drives.
            PilotOutput::MinusTwelve => -12_000,
            _ => self.high_mv,
        };
        let low_mv = if !pwm {
            high_mv
        } else if self.diode {
            -12_000
        } else {
            -high_mv.abs().min(9_000)
        };
        PilotLevels { high_mv, low_mv }
    }

    fn pilot_in_ab(&self) -> bool {
        (self.high_mv - 12_000).abs() <= 800 || (self.high_mv - 9_000).abs() <= 800
    }

    fn apply(&mut self, op: Op) -> Result<(), TestCaseError> {
        match op {
            Op::Pilot { high_mv, diode } => {
                self.high_mv = high_mv;
                self.diode = diode;
                self.sample()?;
            }
            Op::Allocate(da) => {
                self.grant_da = da;
                self.cp.handle_allocation(self.now, da);
                self.after_handle()?;
            }
            Op::Current(da) => {
                self.cp.handle_current(self.now, [da, da / 2, 0]);
                self.after_handle()?;
            }
            Op::Weld(w) => {
                self.welded = w;
                if !w && self.relay != self.coil {
                    self.relay = self.coil;
                    self.cp.handle_relay_sense(self.now, self.relay);
                    self.after_handle()?;
                }
            }
            Op::Advance(d) => self.advance(self.now + d)?,
        }
        Ok(())
    }

    /// A board samples the pilot on every change of what it drives.
    fn sample(&mut self) -> Result<(), TestCaseError> {
        self.cp.handle_pilot(self.now, self.levels());
        self.after_handle()
    }

    fn advance(&mut self, to: Instant) -> Result<(), TestCaseError> {
        while let Some(due) = self.cp.poll_timeout() {
            if due > to {
                break;
            }
            if due == self.now {
                self.wakeups_at_now += 1;
                prop_assert!(self.wakeups_at_now < 50, "spinning at {}", due);
            } else {
                self.wakeups_at_now = 0;
            }
            self.check_rows_until(due)?;
            self.now = due;
            self.cp.handle_timeout(due);
            self.after_handle()?;
        }
        self.check_rows_until(to)?;
        if to > self.now {
            self.wakeups_at_now = 0;
        }
        self.now = to;
        // The pilot is sampled continuously on a board.
        self.sample()
    }

    /// Drain the events, then check the instant.
    fn after_handle(&mut self) -> Result<(), TestCaseError> {
        let mut resample = false;
        while let Some(e) = self.cp.poll_event() {
            match e {
                Event::Pilot(out) => {
                    self.on_output(out)?;
                    resample = true;
                }
                Event::Contactor(closed) => {
                    self.on_coil(closed)?;
                }
                Event::Fault(f) => {
                    if f == Fault::Welded {
                        prop_assert!(self.relay && !self.coil, "weld reported while not welded");
                        self.weld_reported = true;
                    }
                }
                Event::State(_) => {}
            }
        }
        if let Some(t) = self.cp.poll_timeout() {
            prop_assert!(
                t > self.now,
                "wake-up at {} at or before the now handled, {}",
                t,
                self.now
            );
        }
        self.check_instant()?;
        if resample {
            self.sample()?;
        }
        Ok(())
    }

    fn on_output(&mut self, out: PilotOutput) -> Result<(), TestCaseError> {
        let now = self.now;
        let was = self.output;
        let was_pwm = matches!(was, PilotOutput::Pwm { .. });
        let is_pwm = matches!(out, PilotOutput::Pwm { .. });
        // F after a fault holds at least 300 ms.
        if was == PilotOutput::MinusTwelve {
            if let Some(f) = self.fault_f_at {
                prop_assert!(now >= f + ms(300), "F held only {} us", (now - f).ticks());
            }
            if self.config.has_relay_sense && self.weld_reported && self.relay && !self.coil {
                prop_assert!(false, "F released at {} while still welded", now);
            }
        }
        if out == PilotOutput::MinusTwelve {
            self.fault_f_at = Some(now);
        }
        // No pulse shorter than a period, unless a fault cuts it.
        if was_pwm && !is_pwm && out != PilotOutput::MinusTwelve {
            let on = self.pwm_on_at.unwrap();
            prop_assert!(
                now >= on + PWM_PERIOD,
                "PWM pulse of {} us",
                (now - on).ticks()
            );
        }
        // Increases at most once per 5 s, except the first offer to a car
        // with the contactor open.
        let increase = match (was, out) {
            (PilotOutput::Pwm { duty_bp: a }, PilotOutput::Pwm { duty_bp: b }) => b > a,
            (_, PilotOutput::Pwm { .. }) => self.coil,
            _ => false,
        };
        if increase {
            if let Some(l) = self.last_change {
                prop_assert!(
                    now >= l + secs(5),
                    "offer raised {} us after the last change",
                    (now - l).ticks()
                );
            }
        }
        self.last_change = Some(now);
        // The PWM-removed row starts at the first removal after a held offer.
        if was_pwm && !is_pwm && self.coil {
            let held = now >= self.pwm_on_at.unwrap() + OFFER_HOLD;
            if held || self.pwm_off_base.is_none() {
                self.pwm_off_base = Some(now);
            }
        }
        if is_pwm && !was_pwm {
            self.pwm_on_at = Some(now);
        }
        if !is_pwm {
            self.pwm_on_at = None;
        }
        self.output = out;
        Ok(())
    }

    fn on_coil(&mut self, closed: bool) -> Result<(), TestCaseError> {
        if closed {
            let debounce = self.config.sense.debounce;
            let recent = |at: Option<Instant>| at.is_none_or(|at| self.now <= at + debounce);
            prop_assert!(
                matches!(self.output, PilotOutput::Pwm { .. }),
                "closed without PWM at {}",
                self.now
            );
            prop_assert!(self.grant_da >= 60, "closed with no grant at {}", self.now);
            prop_assert!(
                recent(self.left_cd_at),
                "closed with the pilot at {} mV",
                self.high_mv
            );
            prop_assert!(
                recent(self.diode_lost_at),
                "closed with the diode missing at {}",
                self.now
            );
            self.coil_open_at = None;
            self.pwm_off_base = None;
        } else {
            self.coil_open_at = Some(self.now);
            self.weld_reported = false;
        }
        self.coil = closed;
        self.over_base = None;
        self.under_since = None;
        if !self.welded {
            self.relay = closed;
            self.cp.handle_relay_sense(self.now, closed);
            // Events from this call are drained by the caller's loop.
        }
        Ok(())
    }

    /// Rows that are about state at an instant.
    fn check_instant(&mut self) -> Result<(), TestCaseError> {
        let now = self.now;
        let offered = self.cp.offered_da();
        prop_assert!(
            offered <= self.config.max_current_da,
            "offered {} dA over the maximum",
            offered
        );
        let just_on = self.pwm_on_at.is_some_and(|on| now < on + PWM_PERIOD);
        prop_assert!(
            offered <= self.grant_da.max(if just_on { offered } else { 0 }),
            "offered {} dA with {} dA granted",
            offered,
            self.grant_da
        );
        // C and D with the point's hysteresis band: a level that stays in it
        // is still the state.
        let band = self.config.sense.stay_window_mv;
        let level_c = (self.high_mv - 6_000).abs() <= band;
        let level_d = self.config.allow_ventilation && (self.high_mv - 3_000).abs() <= band;
        if level_c || level_d {
            self.left_cd_at = None;
        } else {
            self.left_cd_at.get_or_insert(now);
        }
        if self.diode {
            self.diode_lost_at = None;
        } else {
            self.diode_lost_at.get_or_insert(now);
        }
        if self.pilot_in_ab() {
            self.ab_since.get_or_insert(now);
        } else {
            self.ab_since = None;
        }
        // Overcurrent bookkeeping, from the outside.
        if self.coil {
            let measured = self.cp.status().measured_da[0];
            let threshold = u32::from(offered) * 11 / 10 + 5;
            if u32::from(measured) > threshold {
                if self
                    .under_since
                    .take()
                    .is_some_and(|u| now >= u + OFFER_HOLD)
                {
                    self.over_base = None;
                }
                self.over_base.get_or_insert(now);
            } else if self.over_base.is_some() {
                self.under_since.get_or_insert(now);
            }
        }
        Ok(())
    }

    /// Deadlines that must not pass between `self.now` and `t`.
    fn check_rows_until(&mut self, t: Instant) -> Result<(), TestCaseError> {
        // Every row is checked at the last instant of the interval, with the
        // state that held through it: a deadline strictly before `t` that
        // still applies is a violation.
        if self.coil {
            if let Some(ab) = self.ab_since {
                prop_assert!(
                    t <= ab + ms(100),
                    "car in A/B since {} and the contactor still closed at {}",
                    ab,
                    t
                );
            }
            let pwm = matches!(self.output, PilotOutput::Pwm { .. });
            if let (false, Some(base)) = (pwm, self.pwm_off_base) {
                prop_assert!(
                    t <= base + self.config.pwm_off_open_delay,
                    "PWM removed at {} and the contactor still closed at {}",
                    base,
                    t
                );
            }
            if let (None, Some(base)) = (self.under_since, self.over_base) {
                prop_assert!(
                    t <= base + self.config.overcurrent_time,
                    "overcurrent since {} and the contactor still closed at {}",
                    base,
                    t
                );
            }
        }
        // A welded contact is reported once its allowance (and a fault hold
        // that may delay the check) has passed.
        if self.config.has_relay_sense && self.relay && !self.coil && !self.weld_reported {
            if let Some(open) = self.coil_open_at {
                prop_assert!(
                    t <= open + self.config.open_allowance + self.config.fault_hold,
                    "welded since {} and not reported at {}",
                    open,
                    t
                );
            }
        }
        Ok(())
    }
}

proptest! {
    // 2,000 cases by default (about 0.3 s); `SHAREBENCH_LONG_PROPS=1` runs
    // 200,000 for a release check.
    #![proptest_config(ProptestConfig {
        cases: if std::env::var_os("SHAREBENCH_LONG_PROPS").is_some() { 200_000 } else { 2_000 },
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_timing_row_holds_whatever_the_inputs(
        ops in prop::collection::vec(op(), 1..120),
        ventilation in any::<bool>(),
        relay_sense in prop::bool::weighted(0.9),
    ) {
        let mut config = ChargePointConfig::new(320);
        config.allow_ventilation = ventilation;
        config.has_relay_sense = relay_sense;
        let mut b = Bench::new(config);
        for op in ops {
            b.apply(op)?;
        }
        // Let every pending timer run out.
        let end = b.now + secs(30);
        b.advance(end)?;
    }
}
