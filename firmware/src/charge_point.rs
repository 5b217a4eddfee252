//! One IEC 61851-1 charging point: the pilot offer, the contactor and their timing.
//!
//! Owns the state machine of DOMAIN.md section 2: when PWM runs and at which
//! duty, when the contactor closes and opens, overcurrent supervision, the
//! welded-contact check and the F hold after a fault. Does not touch hardware:
//! [`crate::hal::Station`] applies [`Event`]s to embedded-hal pins, and the
//! virtual bench applies them to its model. Does not decide how much current
//! to offer: that comes in through [`ChargePoint::handle_allocation`] from the
//! sharing layer or a fixed configuration.
//!
//! Sans-IO: inputs are `handle_*(now, ..)`, outputs are drained with
//! [`ChargePoint::poll_event`], and [`ChargePoint::poll_timeout`] says when to
//! call [`ChargePoint::handle_timeout`] next. No clock is read, nothing is
//! allocated, nothing panics.

use heapless::Deque;

use crate::pilot::{self, PilotLevels, PilotSense, PilotState, SenseConfig, MIN_CURRENT_DA};
use crate::time::{earliest, ms, secs, Duration, Instant};

/// One period of the 1 kHz pilot PWM: the station never emits a shorter
/// pulse, so a removal asked for within a period of turning PWM on waits for
/// the period to end.
pub const PWM_PERIOD: Duration = ms(1);

/// How long an offer must hold before it counts as one the car was given.
///
/// Cars take seconds to follow a duty change (DOMAIN.md section 2), and the
/// fixture needs several periods to report one: PWM that returns for less
/// than this does not restart the "PWM removed" timer, and a draw that is
/// under the threshold for less than this does not clear the overcurrent
/// timer. So a grant that flaps within a control step, or faster than a car
/// can follow, cannot keep a closed contactor without PWM past 6 s or an
/// overdrawing car past 7 s.
pub const OFFER_HOLD: Duration = secs(1);

/// What the station drives on the pilot line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PilotOutput {
    /// Steady +12 V: no current offered (states A1, B1, C1).
    Steady,
    /// 1 kHz PWM at this duty, in basis points (0.01 %).
    Pwm { duty_bp: u16 },
    /// Steady -12 V: state F, station not available.
    MinusTwelve,
}

/// Faults a charging point reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The pilot read 0 V (state E): a short.
    PilotShort,
    /// The pilot read -12 V while the station was not driving it.
    PilotUnexpectedF,
    /// The low plateau was not near -12 V while PWM ran: no diode, or a shorted one.
    DiodeMissing,
    /// The car drew more than offer + 10 % + 0.5 A for longer than allowed.
    Overcurrent { measured_da: u16, offered_da: u16 },
    /// The contactor still read closed after an open command and its allowance.
    Welded,
}

impl core::fmt::Display for Fault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::PilotShort => f.write_str("pilot short (state E)"),
            Self::PilotUnexpectedF => f.write_str("pilot read -12 V while not driven"),
            Self::DiodeMissing => f.write_str("pilot diode missing or shorted"),
            Self::Overcurrent {
                measured_da,
                offered_da,
            } => write!(
                f,
                "overcurrent: measured {}.{} A against {}.{} A offered",
                measured_da / 10,
                measured_da % 10,
                offered_da / 10,
                offered_da % 10
            ),
            Self::Welded => f.write_str("contactor welded"),
        }
    }
}

/// Something the driver must act on or may report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Drive the pilot this way from now on.
    Pilot(PilotOutput),
    /// Energise (`true`) or release (`false`) the contactor coil.
    Contactor(bool),
    /// The debounced pilot state changed.
    State(PilotState),
    /// A fault was raised.
    Fault(Fault),
}

/// Settings of one charging point. Build with [`ChargePointConfig::new`] and
/// check with [`ChargePointConfig::validate`] (done by [`ChargePoint::new`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChargePointConfig {
    /// The station's rating, in deciamps.
    pub nameplate_da: u16,
    /// The most this point may ever offer (its own breaker, installer setting).
    pub max_current_da: u16,
    /// Charge in state D (the car needs ventilation) only if the site has it.
    pub allow_ventilation: bool,
    /// Pilot windows and debounce.
    pub sense: SenseConfig,
    /// From state C (PWM on, diode seen) to the close command; at most 3 s.
    pub close_delay: Duration,
    /// PWM removed while the contactor is closed: open after this (6 s).
    pub pwm_off_open_delay: Duration,
    /// At most one duty change per this period, except reductions (5 s).
    pub duty_pacing: Duration,
    /// Overcurrent above offer + 10 % + 0.5 A for this long opens (at least 6 s).
    pub overcurrent_time: Duration,
    /// State F lasts at least this long after a fault (at least 300 ms).
    pub fault_hold: Duration,
    /// The board reads the contactor's auxiliary contact.
    pub has_relay_sense: bool,
    /// After an open command, the contact must read open within this.
    pub open_allowance: Duration,
    /// After an overcurrent trip, charge again after this long if the car
    /// still asks, at most [`OVERCURRENT_RETRIES`] times while it stays
    /// plugged in (IEC 61851-1 leaves a retry to the station). `None`, the
    /// default: stay off until the car stops asking or leaves.
    pub overcurrent_retry: Option<Duration>,
}

/// Retries after an overcurrent trip per plug-in, when they are on.
pub const OVERCURRENT_RETRIES: u8 = 3;
/// The shortest retry delay: sooner would cycle the contactor under a car
/// that keeps overdrawing.
pub const OVERCURRENT_RETRY_MIN: Duration = secs(10);

impl ChargePointConfig {
    /// Defaults from DOMAIN.md section 2 for a station of this rating.
    #[must_use]
    pub fn new(nameplate_da: u16) -> Self {
        Self {
            nameplate_da,
            max_current_da: nameplate_da,
            allow_ventilation: false,
            sense: SenseConfig::default(),
            close_delay: ms(100),
            pwm_off_open_delay: secs(6),
            duty_pacing: secs(5),
            overcurrent_time: secs(7),
            fault_hold: ms(300),
            has_relay_sense: true,
            open_allowance: ms(500),
            overcurrent_retry: None,
        }
    }

    /// Check the configuration; the first problem found is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.nameplate_da < MIN_CURRENT_DA || self.nameplate_da > pilot::MAX_CURRENT_DA {
            return Err(ConfigError::NameplateOutOfRange {
                nameplate_da: self.nameplate_da,
            });
        }
        if self.max_current_da > self.nameplate_da {
            return Err(ConfigError::MaxAboveNameplate {
                max_da: self.max_current_da,
                nameplate_da: self.nameplate_da,
            });
        }
        if self.max_current_da < MIN_CURRENT_DA {
            return Err(ConfigError::MaxBelowMinimum {
                max_da: self.max_current_da,
            });
        }
        if self.close_delay > secs(3) {
            return Err(ConfigError::CloseDelayTooLong {
                close_delay_us: self.close_delay.ticks(),
            });
        }
        if self.duty_pacing < secs(5) {
            return Err(ConfigError::PacingTooShort {
                pacing_us: self.duty_pacing.ticks(),
            });
        }
        if self
            .overcurrent_retry
            .is_some_and(|d| d < OVERCURRENT_RETRY_MIN)
        {
            return Err(ConfigError::OvercurrentRetryTooShort {
                time_us: self.overcurrent_retry.map_or(0, |d| d.ticks()),
            });
        }
        if self.overcurrent_time < secs(6) {
            return Err(ConfigError::OvercurrentTimeTooShort {
                time_us: self.overcurrent_time.ticks(),
            });
        }
        if self.fault_hold < ms(300) {
            return Err(ConfigError::FaultHoldTooShort {
                hold_us: self.fault_hold.ticks(),
            });
        }
        if self.pwm_off_open_delay > secs(6) {
            return Err(ConfigError::PwmOffOpenDelayTooLong {
                delay_us: self.pwm_off_open_delay.ticks(),
            });
        }
        Ok(())
    }
}

/// A charging point configuration that cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigError {
    NameplateOutOfRange { nameplate_da: u16 },
    MaxAboveNameplate { max_da: u16, nameplate_da: u16 },
    MaxBelowMinimum { max_da: u16 },
    CloseDelayTooLong { close_delay_us: u64 },
    PacingTooShort { pacing_us: u64 },
    OvercurrentTimeTooShort { time_us: u64 },
    OvercurrentRetryTooShort { time_us: u64 },
    FaultHoldTooShort { hold_us: u64 },
    PwmOffOpenDelayTooLong { delay_us: u64 },
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::NameplateOutOfRange { nameplate_da } => {
                write!(
                    f,
                    "nameplate {nameplate_da} dA is outside 60..=800 dA (6-80 A)"
                )
            }
            Self::MaxAboveNameplate {
                max_da,
                nameplate_da,
            } => {
                write!(
                    f,
                    "maximum current {max_da} dA is above the nameplate {nameplate_da} dA"
                )
            }
            Self::MaxBelowMinimum { max_da } => {
                write!(
                    f,
                    "maximum current {max_da} dA is below the 60 dA (6 A) minimum"
                )
            }
            Self::CloseDelayTooLong { close_delay_us } => {
                write!(
                    f,
                    "close delay {close_delay_us} us exceeds the 3 s IEC 61851-1 allows"
                )
            }
            Self::PacingTooShort { pacing_us } => {
                write!(
                    f,
                    "duty pacing {pacing_us} us is under the 5 s a car needs to follow"
                )
            }
            Self::OvercurrentRetryTooShort { time_us } => {
                write!(f, "overcurrent retry after {time_us} us is under 10 s: the contactor would cycle under a car that keeps overdrawing")
            }
            Self::OvercurrentTimeTooShort { time_us } => {
                write!(f, "overcurrent time {time_us} us is under 6 s: a car following a reduction would trip it")
            }
            Self::FaultHoldTooShort { hold_us } => {
                write!(f, "fault hold {hold_us} us is under 300 ms")
            }
            Self::PwmOffOpenDelayTooLong { delay_us } => {
                write!(f, "open delay after PWM off {delay_us} us is over 6 s")
            }
        }
    }
}

impl core::error::Error for ConfigError {}

/// Plain-data status of a charging point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// Debounced pilot state as sensed (F while the station drives F).
    pub state: PilotState,
    /// What the PWM offers right now, in deciamps (0 with no PWM).
    pub offered_da: u16,
    /// What the sharing layer allows, clamped to the maximum.
    pub target_da: u16,
    /// Measured current per phase, deciamps.
    pub measured_da: [u16; 3],
    /// Coil command.
    pub contactor_closed: bool,
    /// The current fault, while it holds.
    pub fault: Option<Fault>,
    /// The car asks for energy and the point could give it some: no fault,
    /// not suspended after one, and not in D without ventilation.
    pub wants_energy: bool,
}

/// Why the point is suspended after a fault, waiting for the car.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Latch {
    /// Until the car stops asking (B) or leaves (A).
    NotCharging,
    /// Until the car is unplugged (A).
    Unplugged,
    /// Until the pilot reads a car state again (after E or F).
    PilotClear,
}

/// One charging point. See the module documentation.
#[derive(Debug, Clone)]
pub struct ChargePoint {
    config: ChargePointConfig,
    sense: PilotSense,
    target_da: u16,
    output: PilotOutput,
    last_duty_change: Option<Instant>,
    contactor: bool,
    relay_closed: bool,
    close_at: Option<Instant>,
    /// When the PWM now running was turned on.
    pwm_on_since: Option<Instant>,
    /// When PWM was removed while the contactor was closed. Kept through a
    /// return of PWM shorter than [`OFFER_HOLD`]; only read while PWM is off.
    pwm_off_since: Option<Instant>,
    open_cmd_at: Option<Instant>,
    /// Since when the car has drawn over its threshold.
    over_since: Option<Instant>,
    /// Since when the draw has been back under it (clears `over_since` after
    /// [`OFFER_HOLD`]).
    under_since: Option<Instant>,
    fault: Option<Fault>,
    hold_until: Option<Instant>,
    latch: Option<Latch>,
    /// When an overcurrent latch is lifted for a retry.
    retry_at: Option<Instant>,
    /// Retries used since the car was plugged in.
    retries: u8,
    measured_da: [u16; 3],
    events: Deque<Event, 16>,
    /// Events dropped because the driver did not drain the queue.
    dropped_events: u16,
}

impl ChargePoint {
    /// A point that offers nothing until [`Self::handle_allocation`] says so.
    pub fn new(config: ChargePointConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            config,
            sense: PilotSense::new(config.sense),
            target_da: 0,
            output: PilotOutput::Steady,
            last_duty_change: None,
            contactor: false,
            relay_closed: false,
            close_at: None,
            pwm_on_since: None,
            pwm_off_since: None,
            open_cmd_at: None,
            over_since: None,
            under_since: None,
            fault: None,
            hold_until: None,
            latch: None,
            retry_at: None,
            retries: 0,
            measured_da: [0; 3],
            events: Deque::new(),
            dropped_events: 0,
        })
    }

    #[must_use]
    pub fn config(&self) -> &ChargePointConfig {
        &self.config
    }

    #[must_use]
    pub fn status(&self) -> Status {
        Status {
            state: if self.output == PilotOutput::MinusTwelve {
                PilotState::F
            } else {
                self.sense.state()
            },
            offered_da: self.offered_da(),
            target_da: self.target_da,
            measured_da: self.measured_da,
            contactor_closed: self.contactor,
            fault: self.fault,
            wants_energy: self.wants_energy(),
        }
    }

    /// What the auxiliary contact last read (closed `true`).
    #[must_use]
    pub fn relay_closed(&self) -> bool {
        self.relay_closed
    }

    /// What the pilot offers now, in deciamps.
    #[must_use]
    pub fn offered_da(&self) -> u16 {
        match self.output {
            PilotOutput::Pwm { duty_bp } => match pilot::offer_for_duty(duty_bp) {
                pilot::Offer::Current(da) => da,
                _ => 0,
            },
            _ => 0,
        }
    }

    #[must_use]
    pub fn pilot_output(&self) -> PilotOutput {
        self.output
    }

    /// The car asks for energy and nothing stops it from getting some.
    #[must_use]
    pub fn wants_energy(&self) -> bool {
        let s = self.sense.state();
        self.fault.is_none()
            && self.latch.is_none()
            && (s == PilotState::C || (s == PilotState::D && self.config.allow_ventilation))
    }

    /// One pilot sample from the ADC.
    pub fn handle_pilot(&mut self, now: Instant, levels: PilotLevels) {
        if self.output != PilotOutput::MinusTwelve {
            let pwm_on = matches!(self.output, PilotOutput::Pwm { .. });
            if let Some(s) = self.sense.handle_sample(now, levels, pwm_on) {
                self.push(Event::State(s));
            }
        }
        self.update(now);
    }

    /// Measured current per phase, in deciamps.
    pub fn handle_current(&mut self, now: Instant, measured_da: [u16; 3]) {
        self.measured_da = measured_da;
        self.update(now);
    }

    /// The contactor's auxiliary contact.
    pub fn handle_relay_sense(&mut self, now: Instant, closed: bool) {
        self.relay_closed = closed;
        self.update(now);
    }

    /// The current this point may offer, from sharing or a fixed setting.
    /// Below 6 A means none. Reductions are applied at once; increases are
    /// paced to one duty change per [`ChargePointConfig::duty_pacing`].
    pub fn handle_allocation(&mut self, now: Instant, deciamps: u16) {
        self.target_da = if deciamps < MIN_CURRENT_DA {
            0
        } else {
            deciamps.min(self.config.max_current_da)
        };
        self.update(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(s) = self.sense.handle_timeout(now) {
            self.push(Event::State(s));
        }
        self.update(now);
    }

    /// The next event to act on.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Self::handle_timeout`] must be called next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.sense.poll_timeout();
        t = earliest(t, self.close_at);
        t = earliest(t, self.hold_until);
        if self.latch == Some(Latch::NotCharging) {
            t = earliest(t, self.retry_at);
        }
        let pwm_on = matches!(self.output, PilotOutput::Pwm { .. });
        if self.contactor {
            if !pwm_on {
                t = earliest(
                    t,
                    self.pwm_off_since
                        .map(|s| s + self.config.pwm_off_open_delay),
                );
            }
            if self.under_since.is_none() {
                t = earliest(t, self.over_since.map(|s| s + self.config.overcurrent_time));
            }
        }
        if pwm_on && self.wanted_duty().is_none() {
            // A removal waiting for the end of the first period.
            t = earliest(t, self.pwm_on_since.map(|s| s + PWM_PERIOD));
        }
        if self.config.has_relay_sense
            && self.relay_closed
            && !self.contactor
            && self.fault.is_none()
        {
            t = earliest(t, self.open_cmd_at.map(|s| s + self.config.open_allowance));
        }
        if let Some(want) = self.wanted_duty() {
            let increase = match self.output {
                PilotOutput::Pwm { duty_bp } => want > duty_bp,
                PilotOutput::Steady => true,
                PilotOutput::MinusTwelve => false,
            };
            if increase {
                t = earliest(
                    t,
                    self.last_duty_change.map(|l| l + self.config.duty_pacing),
                );
            }
        }
        t
    }

    /// How many events were dropped since the last call (and reset the
    /// count): a driver reports it, so no loss is silent.
    pub fn take_dropped_events(&mut self) -> u16 {
        core::mem::take(&mut self.dropped_events)
    }

    fn push(&mut self, e: Event) {
        // The queue is drained after every call; if a driver forgets, the
        // oldest events go first, never the newest output, and the loss is
        // counted.
        if self.events.is_full() {
            self.events.pop_front();
            self.dropped_events = self.dropped_events.saturating_add(1);
        }
        let _ = self.events.push_back(e);
    }

    fn raise(&mut self, now: Instant, fault: Fault, latch: Option<Latch>) {
        self.fault = Some(fault);
        // A close that was pending is off: nothing closes during a fault.
        self.close_at = None;
        self.hold_until = Some(now + self.config.fault_hold);
        if latch.is_some() {
            self.latch = latch;
        }
        self.push(Event::Fault(fault));
        self.set_contactor(now, false);
        self.set_output(now, PilotOutput::MinusTwelve);
    }

    fn set_output(&mut self, now: Instant, out: PilotOutput) {
        if out == self.output {
            return;
        }
        let was_pwm = matches!(self.output, PilotOutput::Pwm { .. });
        let is_pwm = matches!(out, PilotOutput::Pwm { .. });
        self.output = out;
        self.last_duty_change = Some(now);
        if was_pwm && !is_pwm {
            // PWM that held less than OFFER_HOLD was no offer the car could
            // follow: the timer keeps running from the earlier removal.
            let held = self.pwm_on_since.is_none_or(|on| now >= on + OFFER_HOLD);
            if self.contactor && (held || self.pwm_off_since.is_none()) {
                self.pwm_off_since = Some(now);
            }
            self.pwm_on_since = None;
        }
        if is_pwm && !was_pwm {
            self.pwm_on_since = Some(now);
            // The contactor closes only on a diode seen during this run.
            self.sense.forget_diode();
        }
        self.push(Event::Pilot(out));
    }

    fn set_contactor(&mut self, now: Instant, closed: bool) {
        if closed == self.contactor {
            return;
        }
        self.contactor = closed;
        self.close_at = None;
        self.over_since = None;
        self.under_since = None;
        self.pwm_off_since = None;
        self.open_cmd_at = if closed { None } else { Some(now) };
        self.push(Event::Contactor(closed));
    }

    /// The duty the point should offer now, ignoring pacing; `None` for no PWM.
    fn wanted_duty(&self) -> Option<u16> {
        let s = self.sense.state();
        let plugged = matches!(s, PilotState::B | PilotState::C | PilotState::D);
        if self.fault.is_some()
            || self.latch.is_some()
            || !plugged
            || self.target_da < MIN_CURRENT_DA
        {
            return None;
        }
        pilot::duty_for_current(self.target_da).ok()
    }

    fn update(&mut self, now: Instant) {
        // State F lasts the hold time, and a welded contact keeps it until
        // the contact reads open.
        if let Some(until) = self.hold_until {
            if now < until {
                return;
            }
            self.hold_until = None;
        }
        // Welded contact: still closed after the open command and its
        // allowance. Checked before every other path, so a pilot fault or a
        // latch cannot hide it (or leave its deadline behind in the past).
        if self.config.has_relay_sense
            && !self.contactor
            && self.relay_closed
            && self.fault != Some(Fault::Welded)
            && self
                .open_cmd_at
                .is_some_and(|at| now >= at + self.config.open_allowance)
        {
            return self.raise(now, Fault::Welded, None);
        }
        if self.fault.is_some() {
            if self.fault == Some(Fault::Welded) && self.relay_closed {
                return;
            }
            self.fault = None;
            // Samples were ignored while the station drove F; the state
            // sensed before stands until a new sample (taken as soon as the
            // pilot is back at +12 V) says otherwise, so no latch is
            // released by the F hold itself.
            self.set_output(now, PilotOutput::Steady);
        }
        let state = self.sense.state();

        // Faults the pilot shows: raised once, then latched (no PWM, open)
        // until the pilot reads a car state again.
        match (state, self.latch) {
            (PilotState::E | PilotState::F, Some(Latch::PilotClear)) => return,
            (PilotState::E, _) => {
                return self.raise(now, Fault::PilotShort, Some(Latch::PilotClear))
            }
            (PilotState::F, _) => {
                return self.raise(now, Fault::PilotUnexpectedF, Some(Latch::PilotClear))
            }
            _ => {}
        }
        if matches!(self.output, PilotOutput::Pwm { .. }) && self.sense.diode_missing() {
            return self.raise(now, Fault::DiodeMissing, Some(Latch::Unplugged));
        }

        // A car that left starts a new session: its retries are whole again.
        if state == PilotState::A {
            self.retries = 0;
            self.retry_at = None;
        }
        // An overcurrent latch is lifted for a retry when its time comes.
        if self.latch == Some(Latch::NotCharging) && self.retry_at.is_some_and(|t| now >= t) {
            self.latch = None;
            self.retry_at = None;
            self.retries = self.retries.saturating_add(1);
        }
        // Release a latch when the car has done what it waits for.
        match (self.latch, state) {
            (Some(Latch::NotCharging), PilotState::A | PilotState::B)
            | (Some(Latch::Unplugged), PilotState::A)
            | (
                Some(Latch::PilotClear),
                PilotState::A | PilotState::B | PilotState::C | PilotState::D,
            ) => self.latch = None,
            _ => {}
        }

        // The pilot offer, reductions at once and increases paced.
        match (self.wanted_duty(), self.output) {
            // Never a pulse shorter than a period: a removal asked for
            // within the first period waits for its end.
            (None, PilotOutput::Pwm { .. })
                if self.pwm_on_since.is_none_or(|on| now >= on + PWM_PERIOD) =>
            {
                self.set_output(now, PilotOutput::Steady);
            }
            (None, PilotOutput::Pwm { .. }) => {}
            (Some(want), PilotOutput::Pwm { duty_bp }) if want < duty_bp => {
                self.set_output(now, PilotOutput::Pwm { duty_bp: want });
            }
            (Some(want), out) if out != (PilotOutput::Pwm { duty_bp: want }) => {
                let paced = self
                    .last_duty_change
                    .is_some_and(|l| now < l + self.config.duty_pacing);
                // Turning PWM on for a car that just arrived is not a change
                // the car has to follow, so it is not paced.
                let first_offer = out == PilotOutput::Steady && !self.contactor;
                if !paced || first_offer {
                    self.set_output(now, PilotOutput::Pwm { duty_bp: want });
                }
            }
            _ => {}
        }

        // PWM still running only to finish its first period is no offer.
        let pwm_on = matches!(self.output, PilotOutput::Pwm { .. }) && self.wanted_duty().is_some();
        let may_charge =
            state == PilotState::C || (state == PilotState::D && self.config.allow_ventilation);

        if self.contactor {
            if !may_charge {
                // C -> B, -> A, or D without ventilation: open now (within 100 ms).
                self.set_contactor(now, false);
            } else if !matches!(self.output, PilotOutput::Pwm { .. })
                && self
                    .pwm_off_since
                    .is_some_and(|s| now >= s + self.config.pwm_off_open_delay)
            {
                self.set_contactor(now, false);
            } else {
                self.supervise_current(now);
            }
        } else if may_charge
            && pwm_on
            && self.sense.diode_ok()
            && self.sense.settled()
            && self.latch.is_none()
        {
            // The close delay runs on a pilot that reads C (or D) now: a
            // level moving away restarts it.
            let at = *self.close_at.get_or_insert(now + self.config.close_delay);
            if now >= at {
                self.set_contactor(now, true);
                // Supervision starts with the close, not at the next sample.
                self.supervise_current(now);
            }
        } else {
            self.close_at = None;
        }
    }

    fn supervise_current(&mut self, now: Instant) {
        let offered = self.offered_da();
        let measured = self.measured_da.iter().copied().max().unwrap_or(0);
        // offer + 10 % + 0.5 A
        let threshold = u32::from(offered) * 11 / 10 + 5;
        if u32::from(measured) > threshold {
            // A dip under the threshold clears the timer only if it held:
            // an offer raised and cut again within a step excuses nothing.
            if self
                .under_since
                .take()
                .is_some_and(|u| now >= u + OFFER_HOLD)
            {
                self.over_since = None;
            }
            let since = *self.over_since.get_or_insert(now);
            if now >= since + self.config.overcurrent_time {
                self.retry_at = self
                    .config
                    .overcurrent_retry
                    .filter(|_| self.retries < OVERCURRENT_RETRIES)
                    .map(|d| now + d);
                self.raise(
                    now,
                    Fault::Overcurrent {
                        measured_da: measured,
                        offered_da: offered,
                    },
                    Some(Latch::NotCharging),
                );
            }
        } else if self.over_since.is_some() {
            let under = *self.under_since.get_or_insert(now);
            if now >= under + OFFER_HOLD {
                self.over_since = None;
                self.under_since = None;
            }
        }
    }
}

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
