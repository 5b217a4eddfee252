//! An emulated car on one fixture channel.
//!
//! Owns the car's side of IEC 61851-1: which resistors and diode it
//! presents (through [`CarLoad`]), how it follows the offer it reads from
//! the duty cycle (after a response delay, with a ramp), its onboard
//! charger limit and phases (it draws only on the phases its station
//! supplies: a three-phase car on a one-phase station charges on one), its
//! battery with a constant-current /
//! constant-voltage taper, an auxiliary load (pre-conditioning: a car that
//! keeps drawing a little in state C while full or paused), the user's
//! actions, and misbehaviours for fault tests. Does not measure anything: the fixture's capture tells it the
//! offer and the contactor state, exactly as a real car learns them.
//!
//! Sans-IO, time passed in; nothing panics.

use crate::time::{ms, secs, Duration, Instant};

use crate::pilot::{CarLoad, Diode};
use crate::rng::SplitMix64;

/// How long a car takes to follow a new offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseDelay {
    Fixed(Duration),
    /// Drawn uniformly in `min..=max` from the car's seed, per change.
    Range {
        min: Duration,
        max: Duration,
    },
}

/// What kind of car this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CarParams {
    /// Onboard charger maximum, per phase, deciamps.
    pub max_da: u16,
    /// 1 or 3.
    pub phases: u8,
    /// Usable battery, watt-hours.
    pub capacity_wh: u32,
    /// State of charge at plug-in, permille.
    pub soc_permille: u16,
    /// Above this state of charge the current tapers (CV phase), permille.
    pub knee_permille: u16,
    /// Charging stops (the car goes to B) at this state of charge, permille.
    pub target_permille: u16,
    /// Phase voltage used for energy, volts.
    pub voltage_v: u16,
    pub delay: ResponseDelay,
    /// How fast the draw moves once the car reacts, deciamps per second.
    pub ramp_da_per_s: u16,
    /// The car asks for ventilation (state D instead of C).
    pub ventilation: bool,
    /// Auxiliary load (heating, cooling), deciamps per phase, 0 for none.
    /// While charging the charger draws it on top of the battery's current
    /// (the battery gets the draw less this); full or paused, the car stays
    /// in state C and draws it alone. Always within the offer and the
    /// on-board maximum.
    pub aux_da: u16,
}

impl Default for CarParams {
    fn default() -> Self {
        Self {
            max_da: 320,
            phases: 1,
            capacity_wh: 60_000,
            soc_permille: 200,
            knee_permille: 800,
            target_permille: 1_000,
            voltage_v: 230,
            delay: ResponseDelay::Fixed(secs(2)),
            ramp_da_per_s: 100,
            ventilation: false,
            aux_da: 0,
        }
    }
}

/// Fault behaviours, any combination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Misbehaviour {
    /// Never draws less once it drew more.
    pub ignores_reductions: bool,
    /// Draws this much over what it is offered, deciamps.
    pub overdraw_da: u16,
    /// Follows changes only after this (over the 5 s IEC 61851-1 allows).
    pub slow_response: Option<Duration>,
    /// Keeps drawing after it signals B (stops asking), as long as power flows.
    pub draws_in_b: bool,
    /// Asks for C with the diode left out.
    pub no_diode: bool,
    /// Diode shorted.
    pub shorted_diode: bool,
    /// Pilot shorted to PE (state E).
    pub short_pilot: bool,
}

/// One emulated car.
#[derive(Debug, Clone)]
pub struct Vehicle {
    params: CarParams,
    /// Phases the station supplies on this channel (1 or 3).
    supply_phases: u8,
    pub misbehaviour: Misbehaviour,
    rng: SplitMix64,
    plugged: bool,
    requesting: bool,
    paused: bool,
    done: bool,
    offer_da: Option<u16>,
    power: bool,
    draw_da: u16,
    /// Where the draw is heading, and when the car starts moving there.
    pending: Option<(Instant, u16)>,
    ramp_to: Option<u16>,
    next_step: Option<Instant>,
    energy_mwh: u64,
    last_integrated: Instant,
    next_taper: Option<Instant>,
}

const RAMP_STEP: Duration = ms(200);
const TAPER_STEP: Duration = secs(30);

impl Vehicle {
    #[must_use]
    pub fn new(params: CarParams, seed: u64, now: Instant) -> Self {
        Self {
            energy_mwh: u64::from(params.capacity_wh) * u64::from(params.soc_permille),
            params,
            supply_phases: 3,
            misbehaviour: Misbehaviour::default(),
            rng: SplitMix64::new(seed),
            plugged: false,
            requesting: false,
            paused: false,
            done: false,
            offer_da: None,
            power: false,
            draw_da: 0,
            pending: None,
            ramp_to: None,
            next_step: None,
            last_integrated: now,
            next_taper: None,
        }
    }

    #[must_use]
    pub fn params(&self) -> &CarParams {
        &self.params
    }

    /// Change the car (before plug-in, or live: the next change uses it).
    pub fn set_params(&mut self, now: Instant, params: CarParams) {
        self.integrate(now);
        self.params = params;
        self.energy_mwh = u64::from(params.capacity_wh) * u64::from(params.soc_permille);
        self.done = false;
        self.retarget(now);
    }

    /// Change the car's parameters mid-session (a new maximum, phases,
    /// target...), keeping the energy it holds: only [`Car::set_params`]
    /// (a new SoC) sets it. A full car whose target is raised above its
    /// charge asks again.
    pub fn change_params(&mut self, now: Instant, params: CarParams) {
        self.integrate(now);
        self.params = params;
        let cap_mwh = u64::from(params.capacity_wh) * 1_000;
        self.energy_mwh = self.energy_mwh.min(cap_mwh);
        let target = u64::from(params.capacity_wh) * u64::from(params.target_permille);
        if self.done && self.energy_mwh < target {
            self.done = false;
        }
        self.retarget(now);
    }

    /// The phases the station supplies (channel wiring: 1 or 3; 3 until
    /// told). The car draws only on those.
    pub fn set_supply_phases(&mut self, now: Instant, phases: u8) {
        self.integrate(now);
        self.supply_phases = if phases >= 3 { 3 } else { 1 };
    }

    #[must_use]
    pub fn supply_phases(&self) -> u8 {
        self.supply_phases
    }

    /// Phases the car draws on: its own, limited to the station's.
    fn drawing_phases(&self) -> u8 {
        if self.params.phases >= 3 && self.supply_phases >= 3 {
            3
        } else {
            1
        }
    }

    /// The battery takes charge: plugged, asked, not paused, not full.
    fn charging_battery(&self) -> bool {
        self.plugged && self.requesting && !self.paused && !self.done
    }

    /// The car keeps S2 closed (state C or D): to charge, or, with an
    /// auxiliary load, also while full or paused.
    fn asks(&self) -> bool {
        self.charging_battery() || self.params.aux_da > 0 && self.plugged && self.requesting
    }

    /// What the car presents on the pilot.
    #[must_use]
    pub fn load(&self) -> CarLoad {
        let m = self.misbehaviour;
        let asks = self.asks();
        CarLoad {
            plugged: self.plugged,
            s2_closed: asks,
            ventilation: self.params.ventilation,
            diode: if m.no_diode {
                Diode::Missing
            } else if m.shorted_diode {
                Diode::Shorted
            } else {
                Diode::Ok
            },
            short: self.plugged && m.short_pilot,
        }
    }

    /// Current drawn per phase, deciamps.
    #[must_use]
    pub fn draw_da(&self) -> [u16; 3] {
        let d = if self.power { self.draw_da } else { 0 };
        match self.drawing_phases() {
            3 => [d; 3],
            _ => [d, 0, 0],
        }
    }

    #[must_use]
    pub fn soc_permille(&self) -> u16 {
        let cap = u64::from(self.params.capacity_wh.max(1));
        u16::try_from(self.energy_mwh / cap)
            .unwrap_or(u16::MAX)
            .min(1_000)
    }

    #[must_use]
    pub fn plugged(&self) -> bool {
        self.plugged
    }

    /// The car finished ("I'm done") and went back to B.
    #[must_use]
    pub fn done(&self) -> bool {
        self.done
    }

    pub fn plug(&mut self, now: Instant) {
        self.integrate(now);
        self.plugged = true;
        self.retarget(now);
    }

    pub fn unplug(&mut self, now: Instant) {
        self.integrate(now);
        self.plugged = false;
        self.requesting = false;
        self.paused = false;
        self.done = false;
        self.pending = None;
        self.ramp_to = None;
        self.next_step = None;
        self.draw_da = 0;
    }

    /// The user (or the car's schedule) asks for energy.
    pub fn request(&mut self, now: Instant) {
        self.integrate(now);
        self.requesting = true;
        self.paused = false;
        self.retarget(now);
    }

    /// The user stops charging from the car.
    pub fn stop(&mut self, now: Instant) {
        self.integrate(now);
        self.requesting = false;
        self.retarget(now);
    }

    /// The user pauses (resumed by [`Self::request`]).
    pub fn pause(&mut self, now: Instant) {
        self.integrate(now);
        self.paused = true;
        self.retarget(now);
    }

    /// The offer read from the pilot: `None` with no PWM, else deciamps.
    pub fn handle_offer(&mut self, now: Instant, offer_da: Option<u16>) {
        if offer_da == self.offer_da {
            return;
        }
        self.integrate(now);
        self.offer_da = offer_da;
        self.retarget(now);
    }

    /// Power on the car's inlet (the station's contactor).
    pub fn handle_power(&mut self, now: Instant, on: bool) {
        if on == self.power {
            return;
        }
        self.integrate(now);
        self.power = on;
        if !on {
            // No power, no current; the charger restarts from zero.
            self.draw_da = 0;
            self.ramp_to = None;
            self.next_step = None;
        }
        self.retarget(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.integrate(now);
        if let Some((at, to)) = self.pending {
            if now >= at {
                self.pending = None;
                self.ramp_to = Some(to);
                self.next_step = Some(now);
            }
        }
        if self.next_step.is_some_and(|t| now >= t) {
            self.step_ramp(now);
        }
        if self.next_taper.is_some_and(|t| now >= t) {
            self.next_taper = None;
            self.retarget(now);
        }
    }

    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.pending.map(|p| p.0);
        for c in [self.next_step, self.next_taper, self.full_at()] {
            t = crate::time::earliest(t, c);
        }
        t
    }

    fn step_ramp(&mut self, now: Instant) {
        let Some(to) = self.ramp_to else {
            self.next_step = None;
            return;
        };
        let step = u16::try_from(u32::from(self.params.ramp_da_per_s) * 200 / 1_000)
            .unwrap_or(u16::MAX)
            .max(1);
        self.draw_da = if to > self.draw_da {
            (self.draw_da + step).min(to)
        } else {
            self.draw_da.saturating_sub(step).max(to)
        };
        if self.draw_da == to {
            self.ramp_to = None;
            self.next_step = None;
        } else {
            self.next_step = Some(now + RAMP_STEP);
        }
    }

    /// When the battery reaches its target at the present draw.
    fn full_at(&self) -> Option<Instant> {
        if !self.power || self.draw_da == 0 || self.done {
            return None;
        }
        let target = u64::from(self.params.capacity_wh) * u64::from(self.params.target_permille);
        let left = target.saturating_sub(self.energy_mwh);
        let mw = self.power_mw();
        if mw == 0 {
            return None;
        }
        // mWh / mW = h; in microseconds, rounded up so that integrating to
        // that instant really reaches the target (no endless tiny steps).
        Some(
            self.last_integrated + Duration::from_ticks((left * 3_600_000_000).div_ceil(mw).max(1)),
        )
    }

    /// What goes into the battery, deciamps per phase: the draw less the
    /// auxiliary load while charging; nothing while the car only runs its
    /// auxiliary load (full or paused).
    fn battery_da(&self) -> u16 {
        let aux = self.params.aux_da;
        if aux == 0 {
            self.draw_da
        } else if self.charging_battery() {
            self.draw_da.saturating_sub(aux)
        } else {
            0
        }
    }

    fn power_mw(&self) -> u64 {
        let phases = u64::from(self.drawing_phases());
        // deciamps * volts * 100 = mW
        u64::from(self.battery_da()) * u64::from(self.params.voltage_v) * 100 * phases
    }

    fn integrate(&mut self, now: Instant) {
        if let Some(dt) = now.checked_duration_since(self.last_integrated) {
            if self.power {
                let added = self.power_mw() * dt.ticks() / 3_600_000_000;
                let cap = u64::from(self.params.capacity_wh) * 1_000;
                self.energy_mwh = (self.energy_mwh + added).min(cap);
            }
            self.last_integrated = now;
        }
        let target = u64::from(self.params.capacity_wh) * u64::from(self.params.target_permille);
        if !self.done && self.plugged && self.energy_mwh >= target && self.draw_da > 0 {
            // Full: stop charging and go back to B; with an auxiliary load
            // stay in C and keep drawing it.
            self.done = true;
            self.pending = None;
            self.ramp_to = None;
            self.next_step = None;
            self.next_taper = None;
            if self.params.aux_da > 0 {
                self.draw_da = self.draw_da.min(self.desired_da());
                self.retarget(now);
            } else {
                self.draw_da = 0;
            }
        }
    }

    /// What the car's charger would draw now, per phase.
    fn desired_da(&self) -> u16 {
        let m = self.misbehaviour;
        let asks = self.asks();
        let offered = match self.offer_da {
            Some(o) if o >= crate::iec::MIN_CURRENT_DA => o,
            _ => 0,
        };
        if !self.power {
            return 0;
        }
        if !asks {
            return if m.draws_in_b { self.draw_da } else { 0 };
        }
        if offered == 0 {
            return 0;
        }
        let aux = self.params.aux_da;
        if !self.charging_battery() {
            // Full or paused, in C for its auxiliary load only.
            return offered
                .min(self.params.max_da)
                .min(aux)
                .saturating_add(m.overdraw_da);
        }
        let soc = self.soc_permille();
        let knee = self.params.knee_permille.min(999);
        let taper = if soc > knee {
            let span = u32::from(1_000 - knee);
            let left = u32::from(1_000u16.saturating_sub(soc));
            u16::try_from(u32::from(self.params.max_da) * left / span)
                .unwrap_or(0)
                .max(10)
        } else {
            self.params.max_da
        };
        offered
            .min(self.params.max_da)
            .min(taper.saturating_add(aux))
            .saturating_add(m.overdraw_da)
    }

    fn retarget(&mut self, now: Instant) {
        let mut want = self.desired_da();
        if self.misbehaviour.ignores_reductions && want < self.draw_da && want > 0 {
            want = self.draw_da;
        }
        let heading = self
            .pending
            .map(|p| p.1)
            .or(self.ramp_to)
            .unwrap_or(self.draw_da);
        if self.power && self.soc_permille() > self.params.knee_permille && !self.done {
            self.next_taper = Some(now + TAPER_STEP);
        }
        if want == heading {
            return;
        }
        if !self.power || want == 0 && !self.plugged {
            self.draw_da = 0;
            self.pending = None;
            self.ramp_to = None;
            return;
        }
        let delay = match (self.misbehaviour.slow_response, self.params.delay) {
            (Some(d), _) => d,
            (None, ResponseDelay::Fixed(d)) => d,
            (None, ResponseDelay::Range { min, max }) => {
                let span = max.ticks().saturating_sub(min.ticks());
                Duration::from_ticks(
                    min.ticks()
                        + if span == 0 {
                            0
                        } else {
                            self.rng.next_u64() % (span + 1)
                        },
                )
            }
        };
        self.pending = Some((now + delay, want));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::us;

    fn charging(params: CarParams) -> Vehicle {
        let mut v = Vehicle::new(params, 1, us(0));
        v.plug(us(0));
        v.request(us(0));
        v.handle_offer(us(0), Some(160));
        v.handle_power(us(0), true);
        v
    }

    fn run(v: &mut Vehicle, until: Instant) {
        while let Some(t) = v.poll_timeout() {
            if t > until {
                break;
            }
            v.handle_timeout(t);
        }
    }

    #[test]
    fn follows_the_offer_after_its_delay_with_a_ramp() {
        let mut v = charging(CarParams::default());
        assert_eq!(v.draw_da(), [0, 0, 0]);
        run(&mut v, us(0) + ms(1_999));
        assert_eq!(v.draw_da()[0], 0, "not before the 2 s delay");
        run(&mut v, us(0) + secs(2));
        assert_eq!(v.draw_da()[0], 20, "first ramp step: 10 A/s for 200 ms");
        run(&mut v, us(0) + secs(4));
        assert_eq!(v.draw_da()[0], 160);
        assert!(v.load().s2_closed);
    }

    #[test]
    fn onboard_charger_and_phases_limit_the_draw() {
        let mut v = charging(CarParams {
            max_da: 100,
            phases: 3,
            ..CarParams::default()
        });
        run(&mut v, us(0) + secs(10));
        assert_eq!(v.draw_da(), [100, 100, 100]);
    }

    #[test]
    fn a_three_phase_car_on_a_one_phase_station_draws_on_one_phase() {
        let mut v = charging(CarParams {
            max_da: 100,
            phases: 3,
            capacity_wh: 10_000,
            ..CarParams::default()
        });
        v.set_supply_phases(us(0), 1);
        run(&mut v, us(0) + secs(10));
        assert_eq!(v.draw_da(), [100, 0, 0]);
        // Energy from one phase: 10 A x 230 V for an hour is 2.3 kWh, 23 %
        // of 10 kWh on top of the 20 % it started with.
        run(&mut v, us(0) + secs(3_610));
        v.set_supply_phases(us(0) + secs(3_610), 3);
        assert!(
            (425..=435).contains(&v.soc_permille()),
            "one phase of energy: {}",
            v.soc_permille()
        );
        assert_eq!(v.draw_da(), [100, 100, 100]);
    }

    #[test]
    fn reductions_are_followed_and_ignored_by_a_misbehaving_car() {
        let mut v = charging(CarParams::default());
        run(&mut v, us(0) + secs(10));
        v.handle_offer(us(0) + secs(10), Some(60));
        run(&mut v, us(0) + secs(20));
        assert_eq!(v.draw_da()[0], 60);

        let mut v = charging(CarParams::default());
        v.misbehaviour.ignores_reductions = true;
        run(&mut v, us(0) + secs(10));
        v.handle_offer(us(0) + secs(10), Some(60));
        run(&mut v, us(0) + secs(20));
        assert_eq!(v.draw_da()[0], 160);
    }

    #[test]
    fn overdraw_and_slow_response() {
        let mut v = charging(CarParams::default());
        v.misbehaviour.overdraw_da = 30;
        v.misbehaviour.slow_response = Some(secs(8));
        v.handle_offer(us(0), Some(100));
        run(&mut v, us(0) + secs(7));
        assert_eq!(v.draw_da()[0], 0, "slow: nothing before 8 s");
        run(&mut v, us(0) + secs(12));
        assert_eq!(v.draw_da()[0], 130);
    }

    #[test]
    fn a_full_battery_stops_and_returns_to_b() {
        // 1 kWh from 90 %: above the 80 % knee the current tapers (half of
        // the 32 A charger at 90 %, so the 16 A offer is just reached).
        let mut v = charging(CarParams {
            capacity_wh: 1_000,
            soc_permille: 900,
            ..CarParams::default()
        });
        run(&mut v, us(0) + secs(90));
        let d = v.draw_da()[0];
        assert!(!v.done() && d > 0 && d < 160, "tapering, not done: {d}");
        run(&mut v, us(0) + secs(7_200));
        assert!(v.done(), "soc {} draw {:?}", v.soc_permille(), v.draw_da());
        assert!(!v.load().s2_closed, "back to B");
        assert_eq!(v.draw_da(), [0, 0, 0]);
        assert_eq!(v.soc_permille(), 1_000);
    }

    #[test]
    fn a_car_changed_mid_run_keeps_its_charge_and_asks_again_above_its_target() {
        let p = CarParams {
            capacity_wh: 1_000,
            soc_permille: 500,
            target_permille: 600,
            ..CarParams::default()
        };
        let mut v = charging(p);
        run(&mut v, us(0) + secs(600));
        assert!(v.done(), "full at its 60 % target");
        let soc = v.soc_permille();
        assert!(soc >= 600, "{soc}");
        // A new maximum keeps the charge (set_params would reset it to 50 %).
        v.change_params(us(0) + secs(601), CarParams { max_da: 100, ..p });
        assert_eq!(v.soc_permille(), soc);
        assert!(v.done(), "still full");
        // The target raised above its charge: it asks again.
        v.change_params(
            us(0) + secs(602),
            CarParams {
                max_da: 100,
                target_permille: 900,
                ..p
            },
        );
        assert!(!v.done());
        run(&mut v, us(0) + secs(610));
        assert_eq!(
            v.draw_da()[0],
            100,
            "charging again at its new 10 A maximum"
        );
        assert!(v.load().s2_closed);
    }

    #[test]
    fn an_auxiliary_load_keeps_a_full_or_paused_car_in_c_drawing_it_within_the_offer() {
        // 1 kWh from 59 % to a 60 % target at 16 A: full within a minute.
        let p = CarParams {
            capacity_wh: 1_000,
            soc_permille: 590,
            target_permille: 600,
            aux_da: 20,
            ..CarParams::default()
        };
        let mut v = charging(p);
        run(&mut v, us(0) + secs(5));
        assert_eq!(v.draw_da()[0], 160, "charging: the offer");
        run(&mut v, us(0) + secs(600));
        assert!(v.done(), "full at its target");
        assert!(v.load().s2_closed, "still in C for its auxiliary load");
        assert_eq!(v.draw_da()[0], 20, "the auxiliary load alone");
        let soc = v.soc_permille();
        run(&mut v, us(0) + secs(3_600));
        assert_eq!(v.soc_permille(), soc, "the auxiliary load charges nothing");
        assert_eq!(
            v.poll_timeout(),
            None,
            "nothing left to do: no endless wake-ups"
        );
        // Capped by the offer: no PWM, nothing; 6 A with a larger load, 6 A.
        v.handle_offer(us(0) + secs(3_601), None);
        run(&mut v, us(0) + secs(3_610));
        assert_eq!(v.draw_da()[0], 0);
        let mut big = charging(CarParams { aux_da: 80, ..p });
        big.handle_offer(us(0), Some(60));
        run(&mut big, us(0) + secs(3_600));
        assert_eq!(big.draw_da()[0], 60, "never over the offer");
        assert!(
            !big.done(),
            "6 A under an 8 A load leaves nothing for the battery"
        );
        assert_eq!(big.soc_permille(), 590);

        // Paused: in C, drawing the load; asked again, charging again.
        let mut v = charging(CarParams {
            aux_da: 20,
            ..CarParams::default()
        });
        run(&mut v, us(0) + secs(10));
        v.pause(us(0) + secs(10));
        run(&mut v, us(0) + secs(20));
        assert!(v.load().s2_closed);
        assert_eq!(v.draw_da()[0], 20);
        v.request(us(0) + secs(20));
        run(&mut v, us(0) + secs(30));
        assert_eq!(v.draw_da()[0], 160);
        // Without one, a paused car goes to B and draws nothing.
        let mut v = charging(CarParams::default());
        run(&mut v, us(0) + secs(10));
        v.pause(us(0) + secs(10));
        run(&mut v, us(0) + secs(20));
        assert!(!v.load().s2_closed);
        assert_eq!(v.draw_da()[0], 0);
    }

    #[test]
    fn delay_range_is_seeded() {
        let p = CarParams {
            delay: ResponseDelay::Range {
                min: secs(1),
                max: secs(4),
            },
            ..CarParams::default()
        };
        let first_draw_at = |seed: u64| {
            let mut v = Vehicle::new(p, seed, us(0));
            v.plug(us(0));
            v.request(us(0));
            v.handle_offer(us(0), Some(160));
            v.handle_power(us(0), true);
            v.poll_timeout().unwrap()
        };
        assert_eq!(first_draw_at(7), first_draw_at(7));
        assert!((1..50).any(|s| first_draw_at(s) != first_draw_at(7)));
        for s in 0..50 {
            let t = first_draw_at(s);
            assert!(t >= us(0) + secs(1) && t <= us(0) + secs(4));
        }
    }

    #[test]
    fn pilot_faults_show_on_the_load() {
        let mut v = charging(CarParams::default());
        v.misbehaviour.no_diode = true;
        assert_eq!(v.load().diode, Diode::Missing);
        v.misbehaviour.short_pilot = true;
        assert!(v.load().short);
        v.unplug(us(1));
        assert!(!v.load().plugged);
    }
}
