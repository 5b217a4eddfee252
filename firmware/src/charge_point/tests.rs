//! Timing rows of DOMAIN.md section 2, each driven with explicit timestamps.

use super::*;
use crate::time::{ms, secs, us};

/// Drives one point like a board would: pilot samples on change, and the
/// point's own timeouts in between. Records every event with its time.
struct Rig {
    cp: ChargePoint,
    now: Instant,
    /// The auxiliary contact no longer follows the coil.
    welded: bool,
    log: heapless::Vec<(Instant, Event), 64>,
}

const PWM_LEVELS: fn(i32) -> PilotLevels = |high_mv| PilotLevels {
    high_mv,
    low_mv: -12_000,
};

impl Rig {
    fn new(config: ChargePointConfig) -> Self {
        Self {
            cp: ChargePoint::new(config).unwrap(),
            now: us(0),
            welded: false,
            log: heapless::Vec::new(),
        }
    }

    fn drain(&mut self) {
        while let Some(e) = self.cp.poll_event() {
            self.log.push((self.now, e)).unwrap();
            if let (Event::Contactor(closed), false) = (e, self.welded) {
                self.cp.handle_relay_sense(self.now, closed);
            }
        }
    }

    /// Run the point's timeouts up to `t`.
    fn advance_to(&mut self, t: Instant) {
        let mut same_instant = 0;
        while let Some(due) = self.cp.poll_timeout() {
            if due > t {
                break;
            }
            same_instant = if due == self.now { same_instant + 1 } else { 0 };
            assert!(
                same_instant < 100,
                "the point keeps asking to be woken at {due:?}: {:?}",
                self.cp
            );
            assert!(
                due >= self.now,
                "timeout in the past: {due:?} < {:?}",
                self.now
            );
            self.now = due;
            self.cp.handle_timeout(due);
            self.drain();
        }
        self.now = t;
    }

    fn advance(&mut self, d: Duration) {
        let t = self.now + d;
        self.advance_to(t);
    }

    fn car(&mut self, high_mv: i32) {
        self.cp.handle_pilot(self.now, PWM_LEVELS(high_mv));
        self.drain();
    }

    fn allocate(&mut self, da: u16) {
        self.cp.handle_allocation(self.now, da);
        self.drain();
    }

    fn current(&mut self, da: u16) {
        self.cp.handle_current(self.now, [da, 0, 0]);
        self.drain();
    }

    fn relay(&mut self, closed: bool) {
        self.cp.handle_relay_sense(self.now, closed);
        self.drain();
    }

    fn when(&self, e: Event) -> Option<Instant> {
        self.log.iter().find(|(_, x)| *x == e).map(|(t, _)| *t)
    }

    /// Plug in, offer 16 A, ask for energy, and wait for the contactor.
    fn charging_at_16a() -> Self {
        let mut r = Self::new(ChargePointConfig::new(320));
        r.allocate(160);
        r.car(9_000);
        r.advance(ms(50));
        r.car(6_000);
        r.advance(ms(500));
        assert!(r.cp.status().contactor_closed);
        r.log.clear();
        r
    }
}

#[test]
fn nothing_is_offered_without_an_allocation() {
    let mut r = Rig::new(ChargePointConfig::new(320));
    r.car(9_000);
    r.advance(ms(100));
    r.car(6_000);
    r.advance(secs(10));
    assert_eq!(r.cp.pilot_output(), PilotOutput::Steady);
    assert!(!r.cp.status().contactor_closed);
}

#[test]
fn plug_offer_and_close_within_3_s_after_b_to_c() {
    let mut r = Rig::new(ChargePointConfig::new(320));
    r.allocate(160);
    r.car(9_000);
    r.advance(ms(50));
    assert_eq!(r.cp.pilot_output(), PilotOutput::Pwm { duty_bp: 2_667 });
    let c_at = r.now;
    r.car(6_000);
    r.advance(secs(5));
    let closed = r.when(Event::Contactor(true)).expect("contactor closed");
    assert!(
        closed - c_at <= secs(3),
        "closed {} us after C",
        (closed - c_at).ticks()
    );
    assert_eq!(closed - c_at, ms(20) + ms(100), "debounce + close delay");
}

#[test]
fn never_closes_without_pwm() {
    let mut r = Rig::new(ChargePointConfig::new(320));
    r.car(9_000);
    r.advance(ms(50));
    r.car(6_000);
    r.advance(secs(4));
    assert_eq!(r.when(Event::Contactor(true)), None);
}

#[test]
fn opens_within_100_ms_after_c_to_b() {
    let mut r = Rig::charging_at_16a();
    let b_at = r.now;
    r.car(9_000);
    r.advance(secs(1));
    let opened = r.when(Event::Contactor(false)).expect("opened");
    assert!(opened - b_at <= ms(100));
}

#[test]
fn opens_within_100_ms_on_unplug() {
    let mut r = Rig::charging_at_16a();
    let a_at = r.now;
    r.car(12_000);
    r.advance(secs(1));
    let opened = r.when(Event::Contactor(false)).expect("opened");
    assert!(opened - a_at <= ms(100));
    assert_eq!(r.cp.pilot_output(), PilotOutput::Steady, "{:?}", r.log);
}

#[test]
fn state_d_charges_only_with_ventilation() {
    let mut r = Rig::new(ChargePointConfig::new(320));
    r.allocate(160);
    r.car(9_000);
    r.advance(ms(50));
    r.car(3_000);
    r.advance(secs(4));
    assert_eq!(r.when(Event::Contactor(true)), None);

    let mut cfg = ChargePointConfig::new(320);
    cfg.allow_ventilation = true;
    let mut r = Rig::new(cfg);
    r.allocate(160);
    r.car(9_000);
    r.advance(ms(50));
    r.car(3_000);
    r.advance(secs(4));
    assert!(r.when(Event::Contactor(true)).is_some());
}

#[test]
fn pilot_short_while_charging_opens_at_once_and_holds_f_300_ms() {
    let mut r = Rig::charging_at_16a();
    let e_at = r.now;
    r.car(0);
    r.advance(ms(5));
    r.car(0); // still shorted; the station's own F masks it while held
    r.advance(secs(2));
    let opened = r.when(Event::Contactor(false)).expect("opened");
    assert!(
        opened - e_at <= ms(100),
        "opened {} us after E",
        (opened - e_at).ticks()
    );
    let f_at = r
        .when(Event::Pilot(PilotOutput::MinusTwelve))
        .expect("drove F");
    assert_eq!(r.when(Event::Fault(Fault::PilotShort)), Some(f_at));
    let released = r.when(Event::Pilot(PilotOutput::Steady)).expect("left F");
    assert!(released - f_at >= ms(300));
}

#[test]
fn pwm_removed_while_car_draws_opens_after_6_s() {
    let mut r = Rig::charging_at_16a();
    r.current(160);
    let off_at = r.now;
    r.allocate(0);
    assert_eq!(
        r.cp.pilot_output(),
        PilotOutput::Steady,
        "a cut to zero is not paced"
    );
    r.advance(secs(5));
    assert_eq!(r.when(Event::Contactor(false)), None, "not before 6 s");
    r.advance(secs(2));
    let opened = r.when(Event::Contactor(false)).expect("opened");
    assert_eq!(opened - off_at, secs(6));
}

#[test]
fn reductions_apply_at_once_and_increases_are_paced_to_5_s() {
    let mut r = Rig::charging_at_16a();
    r.advance(secs(10));
    let t0 = r.now;
    r.allocate(100);
    assert_eq!(
        r.cp.pilot_output(),
        PilotOutput::Pwm { duty_bp: 1_667 },
        "reduction at once"
    );
    r.advance(secs(1));
    r.allocate(80);
    assert_eq!(
        r.cp.pilot_output(),
        PilotOutput::Pwm { duty_bp: 1_333 },
        "a second reduction at once too"
    );
    r.advance(secs(1));
    r.allocate(200);
    assert_eq!(
        r.cp.pilot_output(),
        PilotOutput::Pwm { duty_bp: 1_333 },
        "increase waits"
    );
    r.advance(secs(10));
    let up = r
        .when(Event::Pilot(PilotOutput::Pwm { duty_bp: 3_333 }))
        .expect("increased");
    assert_eq!(up, t0 + secs(1) + secs(5), "5 s after the last change");
}

#[test]
fn overcurrent_opens_after_the_configured_time_and_not_within_the_cars_5_s() {
    let mut r = Rig::charging_at_16a();
    r.current(160);
    r.advance(secs(10));
    // Reduce to 10 A; the car keeps drawing 16 A for 5 s, then follows.
    r.allocate(100);
    r.current(160);
    r.advance(secs(5));
    r.current(100);
    r.advance(secs(10));
    assert!(
        r.cp.status().contactor_closed,
        "a car that follows within 5 s is no fault"
    );
    assert_eq!(r.cp.status().fault, None);

    // Now it overdraws: 10 A offered, 11.6 A drawn (> 10 + 1 + 0.5).
    let over_at = r.now;
    r.current(116);
    r.advance(secs(6));
    assert!(r.cp.status().contactor_closed, "not before 7 s");
    r.advance(secs(2));
    let opened = r.when(Event::Contactor(false)).expect("opened");
    assert_eq!(opened - over_at, secs(7));
    assert_eq!(
        r.when(Event::Fault(Fault::Overcurrent {
            measured_da: 116,
            offered_da: 100
        })),
        Some(opened)
    );
    // Just under the threshold is fine.
    let mut r = Rig::charging_at_16a();
    r.current(181); // 16 * 1.1 + 0.5 = 18.1 A
    r.advance(secs(60));
    assert!(r.cp.status().contactor_closed);
}

#[test]
fn after_overcurrent_the_point_waits_for_the_car_to_stop_asking() {
    let mut r = Rig::charging_at_16a();
    r.current(300);
    r.advance(secs(8));
    r.current(0);
    assert!(!r.cp.status().contactor_closed);
    r.advance(secs(1));
    // F released, but no PWM for a car still in C.
    r.car(6_000);
    r.advance(secs(5));
    assert_eq!(r.cp.pilot_output(), PilotOutput::Steady);
    r.car(9_000);
    r.advance(ms(100));
    assert!(matches!(r.cp.pilot_output(), PilotOutput::Pwm { .. }));
}

#[test]
fn with_a_retry_set_the_point_charges_again_after_it_three_times_per_plug_in() {
    let mut config = ChargePointConfig::new(320);
    config.overcurrent_retry = Some(secs(60));
    let mut r = Rig::new(config);
    r.allocate(160);
    r.car(9_000);
    r.advance(ms(50));
    r.car(6_000);
    r.advance(ms(500));
    assert!(r.cp.status().contactor_closed);
    for retry in 1..=OVERCURRENT_RETRIES {
        r.log.clear();
        let over_at = r.now;
        r.current(300);
        r.advance(secs(8));
        let opened = r.when(Event::Contactor(false)).expect("tripped");
        r.current(0);
        // Off, the car still asking (C), until the retry is due.
        r.car(6_000);
        r.advance_to(opened + secs(60) - ms(1));
        assert!(
            !r.cp.status().contactor_closed,
            "retry {retry}: not before 60 s"
        );
        assert_eq!(r.cp.pilot_output(), PilotOutput::Steady, "retry {retry}");
        r.advance(ms(20));
        assert!(
            matches!(r.cp.pilot_output(), PilotOutput::Pwm { .. }),
            "retry {retry}: PWM again at 60 s"
        );
        // The board's next sample, with PWM on: the car is still in C.
        r.car(6_000);
        r.advance(secs(4));
        assert!(
            r.cp.status().contactor_closed,
            "retry {retry}: charging again after 60 s (tripped at {} ms)",
            (opened - over_at).to_millis()
        );
    }
    // The fourth trip stays off until the car stops asking.
    r.log.clear();
    r.current(300);
    r.advance(secs(8));
    r.current(0);
    assert!(!r.cp.status().contactor_closed);
    r.advance(secs(600));
    assert!(!r.cp.status().contactor_closed, "no retry after the third");
    assert_eq!(r.cp.pilot_output(), PilotOutput::Steady, "no PWM either");
    // Unplugged and plugged again: the retries are whole again.
    r.car(12_000);
    r.advance(secs(1));
    r.car(9_000);
    r.advance(ms(50));
    r.car(6_000);
    r.advance(secs(1));
    assert!(r.cp.status().contactor_closed);
    r.log.clear();
    r.current(300);
    r.advance(secs(8));
    r.current(0);
    r.advance(secs(61));
    r.car(6_000);
    r.advance(secs(4));
    assert!(
        r.cp.status().contactor_closed,
        "a new session retries again"
    );
}

#[test]
fn without_a_retry_an_overcurrent_trip_stays_off_while_the_car_asks() {
    let mut r = Rig::charging_at_16a();
    r.current(300);
    r.advance(secs(8));
    r.current(0);
    r.car(6_000);
    r.advance(secs(3_600));
    assert!(!r.cp.status().contactor_closed);
    assert_eq!(r.cp.pilot_output(), PilotOutput::Steady);
}

#[test]
fn a_retry_sooner_than_10_s_is_refused() {
    let mut config = ChargePointConfig::new(320);
    config.overcurrent_retry = Some(secs(9));
    assert!(matches!(
        config.validate(),
        Err(ConfigError::OvercurrentRetryTooShort { .. })
    ));
    config.overcurrent_retry = Some(secs(10));
    assert!(config.validate().is_ok());
}

#[test]
fn missing_diode_never_closes() {
    let mut r = Rig::new(ChargePointConfig::new(320));
    r.allocate(160);
    r.car(9_000);
    r.advance(ms(50));
    // The car asks for C but the low plateau reads -9 V: no diode.
    r.cp.handle_pilot(
        r.now,
        PilotLevels {
            high_mv: 6_000,
            low_mv: -9_000,
        },
    );
    r.drain();
    r.advance(secs(5));
    assert_eq!(r.when(Event::Contactor(true)), None);
    assert!(r.when(Event::Fault(Fault::DiodeMissing)).is_some());
    // Latched until unplug.
    r.car(6_000);
    r.advance(secs(5));
    assert_eq!(r.cp.pilot_output(), PilotOutput::Steady);
    r.car(12_000);
    r.advance(ms(50));
    r.car(9_000);
    r.advance(ms(50));
    assert!(matches!(r.cp.pilot_output(), PilotOutput::Pwm { .. }));
}

#[test]
fn welded_contactor_is_a_fault_and_holds_f_while_welded() {
    let mut r = Rig::charging_at_16a();
    r.welded = true;
    r.car(9_000);
    r.advance(ms(50));
    let open_cmd = r.when(Event::Contactor(false)).expect("open command");
    // The auxiliary contact never opens.
    r.advance(secs(1));
    let fault_at = r.when(Event::Fault(Fault::Welded)).expect("welded fault");
    assert_eq!(fault_at - open_cmd, ms(500));
    r.advance(secs(10));
    assert_eq!(
        r.cp.pilot_output(),
        PilotOutput::MinusTwelve,
        "F while welded"
    );
    r.relay(false);
    assert_eq!(r.cp.status().fault, None, "cleared once the contact opens");
    assert_eq!(
        r.cp.pilot_output(),
        PilotOutput::Pwm { duty_bp: 2_667 },
        "the car in B is offered again"
    );
}

#[test]
fn a_diode_fault_while_the_close_is_pending_does_not_wake_forever() {
    let mut r = Rig::new(ChargePointConfig::new(320));
    r.allocate(160);
    r.car(9_000);
    r.advance(ms(50));
    // C is seen with the diode present: the close is due 100 ms later...
    r.car(6_000);
    r.advance(ms(30));
    // ...then the low plateau shows the diode gone.
    r.cp.handle_pilot(
        r.now,
        PilotLevels {
            high_mv: 6_000,
            low_mv: -5_600,
        },
    );
    r.drain();
    r.advance(secs(2));
    assert_eq!(r.when(Event::Contactor(true)), None);
    assert!(r.when(Event::Fault(Fault::DiodeMissing)).is_some());
}

#[test]
fn timeouts_never_point_into_the_past() {
    // Every scenario above runs through `advance_to`, which asserts it; this
    // one walks a whole session with a long idle tail.
    let mut r = Rig::charging_at_16a();
    r.current(160);
    r.allocate(0);
    r.advance(secs(30));
    r.car(12_000);
    r.advance(secs(30));
    assert_eq!(r.cp.poll_timeout(), None, "an idle point sleeps");
}

#[test]
fn configuration_is_validated() {
    let mut c = ChargePointConfig::new(320);
    c.max_current_da = 400;
    assert_eq!(
        c.validate(),
        Err(ConfigError::MaxAboveNameplate {
            max_da: 400,
            nameplate_da: 320
        })
    );
    c.max_current_da = 50;
    assert_eq!(
        c.validate(),
        Err(ConfigError::MaxBelowMinimum { max_da: 50 })
    );
    let mut c = ChargePointConfig::new(320);
    c.overcurrent_time = secs(5);
    assert!(matches!(
        c.validate(),
        Err(ConfigError::OvercurrentTimeTooShort { .. })
    ));
    let mut c = ChargePointConfig::new(320);
    c.fault_hold = ms(100);
    assert!(matches!(
        c.validate(),
        Err(ConfigError::FaultHoldTooShort { .. })
    ));
    let mut c = ChargePointConfig::new(320);
    c.close_delay = secs(4);
    assert!(matches!(
        c.validate(),
        Err(ConfigError::CloseDelayTooLong { .. })
    ));
    assert!(matches!(
        ChargePointConfig::new(900).validate(),
        Err(ConfigError::NameplateOutOfRange { .. })
    ));
    assert!(ChargePoint::new(ChargePointConfig::new(320)).is_ok());
}

#[test]
fn events_a_driver_does_not_drain_are_counted_as_lost() {
    let mut cp = ChargePoint::new(ChargePointConfig::new(320)).unwrap();
    cp.handle_allocation(us(0), 160);
    // Twenty state changes, never drained: the 16-event queue overflows.
    for k in 0..20u64 {
        let high_mv = if k % 2 == 0 { 9_000 } else { 12_000 };
        cp.handle_pilot(us(k * 100_000), PWM_LEVELS(high_mv));
        cp.handle_timeout(us(k * 100_000 + 50_000));
    }
    let dropped = cp.take_dropped_events();
    assert!(dropped > 0, "an overflow is counted");
    assert_eq!(cp.take_dropped_events(), 0, "and reported once");
    let mut n = 0;
    while cp.poll_event().is_some() {
        n += 1;
    }
    assert_eq!(n, 16, "the newest events are kept");
}

// Regressions from random fault search (issue 10, item 1): a grant that
// flaps within one control step must not restart the safety timers.

#[test]
fn a_pwm_pulse_within_one_step_does_not_restart_the_pwm_off_timer() {
    let mut r = Rig::charging_at_16a();
    r.current(160);
    let off_at = r.now;
    r.allocate(0);
    r.advance(secs(5));
    // The paced raise comes due and a new 0 A grant arrives at the same
    // instant: PWM on and off again within the step.
    r.allocate(160);
    r.allocate(0);
    r.advance(secs(10));
    let opened = r.when(Event::Contactor(false)).expect("opened");
    assert!(
        opened - off_at <= secs(6),
        "contactor still closed {} ms after PWM was removed",
        (opened - off_at).to_millis()
    );
}

#[test]
fn the_station_never_emits_a_pwm_pulse_shorter_than_a_period() {
    let mut r = Rig::charging_at_16a();
    r.allocate(0);
    r.advance(secs(5));
    r.log.clear();
    r.allocate(160);
    r.allocate(0);
    r.advance(secs(1));
    let on = r
        .log
        .iter()
        .find(|(_, e)| matches!(e, Event::Pilot(PilotOutput::Pwm { .. })));
    let off = r
        .log
        .iter()
        .find(|(_, e)| *e == Event::Pilot(PilotOutput::Steady));
    if let (Some((t_on, _)), Some((t_off, _))) = (on, off) {
        assert!(
            *t_off - *t_on >= PWM_PERIOD,
            "PWM pulse of {} us",
            (*t_off - *t_on).ticks()
        );
    }
}

#[test]
fn a_raise_within_one_step_does_not_restart_the_overcurrent_timer() {
    let mut r = Rig::new(ChargePointConfig::new(320));
    r.allocate(320);
    r.car(9_000);
    r.advance(ms(50));
    r.car(6_000);
    r.advance(ms(500));
    r.current(320);
    r.advance(secs(10));
    // Cut to 6 A; the car ignores it and keeps drawing 32 A.
    let cut_at = r.now;
    r.allocate(60);
    r.advance(secs(5));
    // The paced raise to 32 A and a new 6 A grant in the same step.
    r.allocate(320);
    r.allocate(60);
    r.advance(secs(10));
    let opened = r.when(Event::Contactor(false)).expect("opened");
    assert!(
        opened - cut_at <= secs(7),
        "a car ignoring the cut tripped only after {} ms",
        (opened - cut_at).to_millis()
    );
}

// Issue 10, item 2: every fault path reaches the welded-contact check.

#[test]
fn a_weld_followed_by_a_pilot_short_is_reported_and_does_not_spin() {
    let mut r = Rig::charging_at_16a();
    r.welded = true;
    r.car(9_000);
    r.advance(ms(50));
    assert!(r.when(Event::Contactor(false)).is_some(), "open command");
    // The pilot shorts before the weld's allowance has run out.
    r.car(0);
    r.advance(secs(5)); // `advance_to` asserts no wake-up in the past
    assert!(
        r.when(Event::Fault(Fault::Welded)).is_some(),
        "the weld is reported"
    );
    assert_eq!(
        r.cp.pilot_output(),
        PilotOutput::MinusTwelve,
        "F while welded"
    );
}

#[test]
fn a_weld_followed_by_a_missing_diode_is_reported() {
    let mut r = Rig::charging_at_16a();
    r.welded = true;
    r.car(9_000);
    r.advance(ms(50));
    assert!(r.when(Event::Contactor(false)).is_some(), "open command");
    // Before the weld's allowance has run out, the low plateau shows the
    // diode gone (PWM still runs for the car in B).
    r.cp.handle_pilot(
        r.now,
        PilotLevels {
            high_mv: 9_000,
            low_mv: -5_000,
        },
    );
    r.drain();
    r.advance(secs(5));
    assert!(r.when(Event::Fault(Fault::DiodeMissing)).is_some());
    assert!(
        r.when(Event::Fault(Fault::Welded)).is_some(),
        "the weld is reported"
    );
    assert_eq!(
        r.cp.pilot_output(),
        PilotOutput::MinusTwelve,
        "F while welded"
    );
}

#[test]
fn a_diode_fault_while_welded_and_charging_is_reported_with_the_weld() {
    let mut r = Rig::charging_at_16a();
    r.welded = true;
    // The diode disappears while charging: the point opens (the contact
    // stays welded) and raises the diode fault.
    r.cp.handle_pilot(
        r.now,
        PilotLevels {
            high_mv: 6_000,
            low_mv: -5_000,
        },
    );
    r.drain();
    r.advance(secs(5));
    assert!(r.when(Event::Fault(Fault::DiodeMissing)).is_some());
    assert!(
        r.when(Event::Fault(Fault::Welded)).is_some(),
        "the weld is reported"
    );
    assert_eq!(
        r.cp.pilot_output(),
        PilotOutput::MinusTwelve,
        "F while welded"
    );
}
