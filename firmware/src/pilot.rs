//! The control pilot: duty cycle <-> allowed current, and pilot level sensing.
//!
//! Owns the IEC 61851-1 Annex A arithmetic (the duty table) and the
//! classification of sampled pilot levels into states A to F, with hysteresis,
//! debounce and the diode check. Does not drive the PWM or read the ADC: see
//! [`crate::hal`] for that.
//!
//! Units: duty in basis points (1 bp = 0.01 % duty, so 10 000 bp = 100 %),
//! current in deciamps (0.1 A), levels in millivolts.
//!
//! Nothing here panics.

use crate::time::{Duration, Instant};

/// Smallest current a car may be offered: 6 A.
pub const MIN_CURRENT_DA: u16 = 60;
/// Largest current the duty cycle can express: 80 A.
pub const MAX_CURRENT_DA: u16 = 800;
/// Nominal duty that asks for digital communication (ISO 15118): 5 %.
pub const DIGITAL_DUTY_BP: u16 = 500;

/// What a car may draw, read from a duty cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Below 3 %: no charging allowed (state E/F semantics).
    NoCharging,
    /// 3 % to 7 %: digital communication required; the current comes from ISO 15118.
    Digital,
    /// 7 % to 8 %, or above 97 % and below 100 %: not a valid duty.
    Invalid,
    /// The car may draw this many deciamps.
    Current(u16),
    /// 100 % (steady +12 V): no current offered.
    NotOffered,
}

/// Why a current cannot be put on the pilot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// Below the 6 A the duty cycle can express.
    BelowMinimum { deciamps: u16 },
}

impl core::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BelowMinimum { deciamps } => write!(
                f,
                "{}.{} A is below the 6 A minimum a duty cycle can offer",
                deciamps / 10,
                deciamps % 10
            ),
        }
    }
}

impl core::error::Error for EncodeError {}

/// The duty cycle, in basis points, that offers at most `deciamps`.
///
/// Rounds to the nearest basis point, so [`offer_for_duty`] gives back exactly
/// the deciamps asked for (the error is under 0.003 A, far below what a car or
/// a 1 MHz capture timer resolves). 51-52.5 A has no duty cycle and is clamped
/// to 51 A; above 80 A is clamped to 80 A.
pub fn duty_for_current(deciamps: u16) -> Result<u16, EncodeError> {
    if deciamps < MIN_CURRENT_DA {
        return Err(EncodeError::BelowMinimum { deciamps });
    }
    let da = u32::from(deciamps.min(MAX_CURRENT_DA));
    let bp = if da <= 510 {
        // D[%] = I / 0.6  ->  bp = da * 100 / 6, rounded
        (da * 200 + 6) / 12
    } else if da <= 525 {
        8_500
    } else {
        // D[%] = I / 2.5 + 64  ->  bp = da * 4 + 6400
        da * 4 + 6_400
    };
    // bp <= 9600 here, so the conversion cannot fail.
    Ok(u16::try_from(bp).unwrap_or(9_600))
}

/// What a duty cycle (basis points) allows, per the IEC 61851-1 table.
///
/// Currents are rounded to the nearest 0.1 A.
#[must_use]
pub fn offer_for_duty(duty_bp: u16) -> Offer {
    let d = u32::from(duty_bp);
    let current = |da: u32| Offer::Current(u16::try_from(da).unwrap_or(MAX_CURRENT_DA));
    match d {
        0..=299 => Offer::NoCharging,
        300..=699 => Offer::Digital,
        700..=799 => Offer::Invalid,
        800..=999 => current(60),
        // I = D * 0.6  ->  da = bp * 6 / 100, rounded
        1_000..=8_500 => current((d * 6 + 50) / 100),
        // I = (D - 64) * 2.5  ->  da = (bp - 6400) / 4, rounded
        8_501..=9_600 => current((d - 6_400 + 2) / 4),
        9_601..=9_700 => current(800),
        10_000.. => Offer::NotOffered,
        _ => Offer::Invalid,
    }
}

/// Pilot states as the station sees them (IEC 61851-1 Annex A).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PilotState {
    /// +12 V: no car.
    A,
    /// +9 V: car connected, not asking for energy.
    B,
    /// +6 V: car asks for energy.
    C,
    /// +3 V: car asks for energy and needs ventilation.
    D,
    /// 0 V: pilot shorted, or a station or pilot fault.
    E,
    /// -12 V: the station is not available (the station drives it).
    F,
}

impl PilotState {
    /// Nominal high level in millivolts.
    #[must_use]
    pub const fn nominal_mv(self) -> i32 {
        match self {
            Self::A => 12_000,
            Self::B => 9_000,
            Self::C => 6_000,
            Self::D => 3_000,
            Self::E => 0,
            Self::F => -12_000,
        }
    }

    /// The car asks for energy (C or D).
    #[must_use]
    pub const fn wants_energy(self) -> bool {
        matches!(self, Self::C | Self::D)
    }

    /// A single letter, as on a tester's display.
    #[must_use]
    pub const fn letter(self) -> char {
        match self {
            Self::A => 'A',
            Self::B => 'B',
            Self::C => 'C',
            Self::D => 'D',
            Self::E => 'E',
            Self::F => 'F',
        }
    }

    /// Parse a single letter.
    #[must_use]
    pub const fn from_letter(c: u8) -> Option<Self> {
        Some(match c {
            b'A' => Self::A,
            b'B' => Self::B,
            b'C' => Self::C,
            b'D' => Self::D,
            b'E' => Self::E,
            b'F' => Self::F,
            _ => return None,
        })
    }

    const ALL: [Self; 6] = [Self::A, Self::B, Self::C, Self::D, Self::E, Self::F];
}

impl core::fmt::Display for PilotState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", self.letter())
    }
}

/// One sample of the pilot: the high and the low plateau of the square wave.
/// With no PWM running (steady +12 V) both read the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PilotLevels {
    pub high_mv: i32,
    pub low_mv: i32,
}

/// Classification windows and debounce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenseConfig {
    /// A level within this distance of a nominal level enters that state.
    pub enter_window_mv: i32,
    /// Once in a state, it is kept while the level stays within this distance.
    pub stay_window_mv: i32,
    /// A new state must be seen this long before it is taken.
    pub debounce: Duration,
    /// Debounce toward state A (unplug), usually shorter.
    pub debounce_to_a: Duration,
    /// While PWM runs, the low plateau must be at or below this (about -12 V);
    /// otherwise the diode is missing or shorted.
    pub diode_low_max_mv: i32,
}

impl Default for SenseConfig {
    fn default() -> Self {
        Self {
            enter_window_mv: 1_000,
            stay_window_mv: 1_500,
            debounce: crate::time::ms(20),
            debounce_to_a: crate::time::ms(10),
            diode_low_max_mv: -11_000,
        }
    }
}

/// Classifies pilot samples into a debounced state, and checks the diode.
#[derive(Debug, Clone)]
pub struct PilotSense {
    config: SenseConfig,
    stable: PilotState,
    candidate: Option<(PilotState, Instant)>,
    /// What the last sample taken with PWM running showed of the diode;
    /// `None` until one was taken since PWM last started.
    diode: Option<bool>,
}

impl PilotSense {
    #[must_use]
    pub fn new(config: SenseConfig) -> Self {
        Self {
            config,
            stable: PilotState::A,
            candidate: None,
            diode: None,
        }
    }

    /// The debounced state.
    #[must_use]
    pub fn state(&self) -> PilotState {
        self.stable
    }

    /// The last sample read the debounced state (no other state pending).
    #[must_use]
    pub fn settled(&self) -> bool {
        self.candidate.is_none()
    }

    /// The last sample taken with PWM running showed the diode. `false`
    /// until one was taken: the contactor closes only on a diode seen.
    #[must_use]
    pub fn diode_ok(&self) -> bool {
        self.diode == Some(true)
    }

    /// The last sample taken with PWM running showed no diode (or a
    /// shorted one).
    #[must_use]
    pub fn diode_missing(&self) -> bool {
        self.diode == Some(false)
    }

    /// PWM (re)started: what an earlier run showed of the diode no longer
    /// counts.
    pub fn forget_diode(&mut self) {
        self.diode = None;
    }

    /// Classify one level without history: the state whose enter window holds it.
    #[must_use]
    pub fn classify(&self, high_mv: i32) -> Option<PilotState> {
        PilotState::ALL
            .into_iter()
            .find(|s| within(high_mv, s.nominal_mv(), self.config.enter_window_mv))
    }

    /// Feed one sample. `pwm_on` says whether the station was running PWM
    /// when it was taken (the diode can only be checked then). Returns the new
    /// debounced state if it changed.
    pub fn handle_sample(
        &mut self,
        now: Instant,
        levels: PilotLevels,
        pwm_on: bool,
    ) -> Option<PilotState> {
        if pwm_on && levels.high_mv > 1_500 {
            self.diode = Some(levels.low_mv <= self.config.diode_low_max_mv);
        }
        // Hysteresis: stay while within the wider window.
        let within_stable = within(
            levels.high_mv,
            self.stable.nominal_mv(),
            self.config.stay_window_mv,
        );
        let seen = if within_stable {
            Some(self.stable)
        } else {
            self.classify(levels.high_mv)
        };
        match seen {
            Some(s) if s == self.stable => self.candidate = None,
            Some(s) => match self.candidate {
                Some((c, _)) if c == s => {}
                _ => self.candidate = Some((s, now)),
            },
            // Between windows: the stable state stays for a moment (a level
            // sliding from one plateau to the next), but a level that fits
            // no state for the debounce is a pilot fault, as E.
            None => match self.candidate {
                Some((PilotState::E, _)) => {}
                _ => self.candidate = Some((PilotState::E, now)),
            },
        }
        self.handle_timeout(now)
    }

    /// Take the candidate if its debounce has elapsed.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<PilotState> {
        let (c, since) = self.candidate?;
        let due = since + self.debounce_for(c);
        if now >= due {
            self.stable = c;
            self.candidate = None;
            Some(c)
        } else {
            None
        }
    }

    /// When the pending candidate matures.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.candidate
            .map(|(c, since)| since + self.debounce_for(c))
    }

    /// Forget everything (the station drives F, or reboots).
    pub fn reset(&mut self, state: PilotState) {
        self.stable = state;
        self.candidate = None;
        self.diode = None;
    }

    fn debounce_for(&self, s: PilotState) -> Duration {
        if s == PilotState::A {
            self.config.debounce_to_a
        } else {
            self.config.debounce
        }
    }
}

/// `level_mv` is within `window_mv` of `nominal_mv`. In i64: a measured
/// level may be any i32, and the difference of two i32 may not fit one.
fn within(level_mv: i32, nominal_mv: i32, window_mv: i32) -> bool {
    (i64::from(level_mv) - i64::from(nominal_mv)).abs() <= i64::from(window_mv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{ms, us};

    #[test]
    fn duty_table_rows() {
        assert_eq!(offer_for_duty(0), Offer::NoCharging);
        assert_eq!(offer_for_duty(299), Offer::NoCharging);
        assert_eq!(offer_for_duty(300), Offer::Digital);
        assert_eq!(offer_for_duty(500), Offer::Digital);
        assert_eq!(offer_for_duty(699), Offer::Digital);
        assert_eq!(offer_for_duty(700), Offer::Invalid);
        assert_eq!(offer_for_duty(799), Offer::Invalid);
        // 8 % to < 10 %: 6 A
        assert_eq!(offer_for_duty(800), Offer::Current(60));
        assert_eq!(offer_for_duty(999), Offer::Current(60));
        // 10 % .. 85 %: D * 0.6
        assert_eq!(offer_for_duty(1_000), Offer::Current(60));
        assert_eq!(offer_for_duty(2_667), Offer::Current(160));
        assert_eq!(offer_for_duty(5_333), Offer::Current(320));
        assert_eq!(offer_for_duty(5_334), Offer::Current(320));
        assert_eq!(offer_for_duty(8_000), Offer::Current(480));
        assert_eq!(offer_for_duty(8_500), Offer::Current(510));
        // > 85 % .. 96 %: (D - 64) * 2.5
        assert_eq!(offer_for_duty(8_504), Offer::Current(526));
        assert_eq!(offer_for_duty(9_000), Offer::Current(650));
        assert_eq!(offer_for_duty(9_600), Offer::Current(800));
        // > 96 % .. 97 %: 80 A
        assert_eq!(offer_for_duty(9_650), Offer::Current(800));
        assert_eq!(offer_for_duty(9_700), Offer::Current(800));
        assert_eq!(offer_for_duty(9_800), Offer::Invalid);
        assert_eq!(offer_for_duty(10_000), Offer::NotOffered);
    }

    #[test]
    fn current_to_duty_examples_from_the_table() {
        assert_eq!(duty_for_current(60), Ok(1_000)); // 6 A = 10 %
        assert_eq!(duty_for_current(160), Ok(2_667)); // 16 A = 26.67 %
        assert_eq!(duty_for_current(320), Ok(5_333)); // 32 A = 53.3 %
        assert_eq!(duty_for_current(480), Ok(8_000)); // 48 A = 80 %
        assert_eq!(duty_for_current(510), Ok(8_500)); // 51 A = 85 %
        assert_eq!(duty_for_current(800), Ok(9_600)); // 80 A = 96 %
        assert_eq!(
            duty_for_current(59),
            Err(EncodeError::BelowMinimum { deciamps: 59 })
        );
    }

    #[test]
    fn the_51_to_52_5_a_gap_is_clamped_to_51_a() {
        for da in 511..=525 {
            assert_eq!(duty_for_current(da), Ok(8_500), "{da}");
            assert_eq!(offer_for_duty(8_500), Offer::Current(510));
        }
        assert_eq!(duty_for_current(526), Ok(8_504));
        assert_eq!(
            duty_for_current(900),
            Ok(9_600),
            "above 80 A clamps to 80 A"
        );
    }

    #[test]
    fn round_trip_is_exact_to_0_1_a() {
        for da in 60..=800u16 {
            let bp = duty_for_current(da).unwrap();
            let Offer::Current(back) = offer_for_duty(bp) else {
                panic!("{da}: {bp}")
            };
            let expect = if (511..=525).contains(&da) { 510 } else { da };
            assert_eq!(back, expect, "{da} -> {bp} -> {back}");
        }
    }

    fn levels(high_mv: i32) -> PilotLevels {
        PilotLevels {
            high_mv,
            low_mv: -12_000,
        }
    }

    #[test]
    fn classify_each_level() {
        let s = PilotSense::new(SenseConfig::default());
        assert_eq!(s.classify(11_600), Some(PilotState::A));
        assert_eq!(s.classify(8_990), Some(PilotState::B));
        assert_eq!(s.classify(5_990), Some(PilotState::C));
        assert_eq!(s.classify(2_930), Some(PilotState::D));
        assert_eq!(s.classify(200), Some(PilotState::E));
        assert_eq!(s.classify(-12_000), Some(PilotState::F));
        assert_eq!(s.classify(7_500), None, "between B and C is no state");
    }

    /// Found by the `charge_point` fuzz target: `high_mv - nominal` overflowed
    /// i32 for a level near its ends (an ADC glitch, or a `PILOT` line on the
    /// wire bridge, which carries any i32) and panicked.
    #[test]
    fn levels_at_the_ends_of_i32_fit_no_state_and_do_not_overflow() {
        let mut s = PilotSense::new(SenseConfig::default());
        assert_eq!(s.classify(i32::MIN), None);
        assert_eq!(s.classify(i32::MAX), None);
        for high_mv in [i32::MIN, i32::MAX, i32::MIN + 1, i32::MAX - 1] {
            s.reset(PilotState::A);
            assert_eq!(s.handle_sample(us(0), levels(high_mv), true), None);
            // A level that fits no state for the debounce is a pilot fault.
            assert_eq!(
                s.handle_timeout(us(1_000_000)),
                Some(PilotState::E),
                "{high_mv}"
            );
        }
    }

    #[test]
    fn debounce_takes_a_state_only_after_it_held() {
        let mut s = PilotSense::new(SenseConfig::default());
        assert_eq!(s.handle_sample(us(0), levels(9_000), false), None);
        assert_eq!(s.poll_timeout(), Some(us(0) + ms(20)));
        assert_eq!(s.handle_timeout(us(19_999)), None);
        assert_eq!(s.handle_timeout(us(20_000)), Some(PilotState::B));
        // A one-sample glitch to C is not a state change.
        assert_eq!(s.handle_sample(us(30_000), levels(6_000), false), None);
        assert_eq!(s.handle_sample(us(31_000), levels(9_000), false), None);
        assert_eq!(s.handle_timeout(us(60_000)), None);
        assert_eq!(s.state(), PilotState::B);
    }

    #[test]
    fn hysteresis_keeps_the_state_inside_the_wider_window() {
        let mut s = PilotSense::new(SenseConfig::default());
        s.reset(PilotState::B);
        // 7.6 V is outside B's enter window but inside its stay window.
        s.handle_sample(us(0), levels(7_600), false);
        assert_eq!(s.handle_timeout(us(1_000_000)), None);
        assert_eq!(s.state(), PilotState::B);
    }

    #[test]
    fn diode_check_needs_the_low_plateau_near_minus_12_v() {
        let mut s = PilotSense::new(SenseConfig::default());
        assert!(!s.diode_ok() && !s.diode_missing(), "unknown before PWM");
        s.handle_sample(
            us(0),
            PilotLevels {
                high_mv: 6_000,
                low_mv: -12_000,
            },
            true,
        );
        assert!(s.diode_ok());
        s.handle_sample(
            us(1),
            PilotLevels {
                high_mv: 6_000,
                low_mv: -5_000,
            },
            true,
        );
        assert!(!s.diode_ok());
        assert!(s.diode_missing());
        // Without PWM the low plateau says nothing.
        s.handle_sample(
            us(2),
            PilotLevels {
                high_mv: 6_000,
                low_mv: 6_000,
            },
            false,
        );
        assert!(!s.diode_ok());
    }
}
