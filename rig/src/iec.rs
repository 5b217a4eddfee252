//! IEC 61851-1 Annex A as the fixture reads it: pilot states, their level
//! windows, and the duty cycle to current decoding.
//!
//! Owns the instrument's reading of the control pilot, written from the
//! Annex A table (`shared/domain/DOMAIN.md`, section 1) and on purpose not
//! from the station firmware's code: a station whose table is wrong must be
//! caught, not mirrored. The harness has a test that runs every row of the
//! table through the firmware's encoder and this decoder and holds both to
//! the table. Does not capture edges or sample levels: see
//! [`crate::capture`].
//!
//! Units: duty in basis points (1 bp = 0.01 %, 10 000 bp = 100 %), current
//! in deciamps (0.1 A), levels in millivolts. Nothing here panics.

/// Smallest current a duty cycle offers: 6 A (8 % to 10 %).
pub const MIN_CURRENT_DA: u16 = 60;
/// Largest current a duty cycle offers: 80 A (96 % to 97 %).
pub const MAX_CURRENT_DA: u16 = 800;
/// Default window around each nominal level (EVerest's simulator uses
/// +/-1.1 V; +/-1 V is common in practice).
pub const LEVEL_WINDOW_MV: i32 = 1_100;

/// Pilot states (IEC 61851-1 Annex A), by the pilot's high plateau.
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
    /// -12 V: the station is not available.
    F,
}

impl PilotState {
    /// Every state, in order.
    pub const ALL: [Self; 6] = [Self::A, Self::B, Self::C, Self::D, Self::E, Self::F];

    /// Nominal high plateau, millivolts.
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

    /// The state whose nominal level is within `window_mv` of `high_mv`,
    /// or `None` between windows (a pilot no state explains).
    #[must_use]
    pub fn classify(high_mv: i32, window_mv: i32) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|s| high_mv.saturating_sub(s.nominal_mv()).saturating_abs() <= window_mv)
    }

    /// A single letter, as on a tester's display and on the fixture protocol.
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
}

impl core::fmt::Display for PilotState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", self.letter())
    }
}

/// What a car reads from a duty cycle, row by row of the Annex A table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DutyReading {
    /// Below 3 %: no charging.
    NoCharging,
    /// 3 % to below 7 % (5 % nominal): digital communication required.
    Digital,
    /// 7 % to below 8 %, or above 97 % and below 100 %: not a valid duty.
    Error,
    /// The car may draw this many deciamps.
    Current(u16),
    /// 100 % (steady +12 V): no current offered.
    NotOffered,
}

/// Read a duty cycle (basis points) per the Annex A table. Currents are
/// rounded to the nearest 0.1 A (half up).
#[must_use]
pub fn read_duty(duty_bp: u16) -> DutyReading {
    let d = u32::from(duty_bp);
    let da = |x: u32| DutyReading::Current(u16::try_from(x).unwrap_or(MAX_CURRENT_DA));
    if d < 300 {
        DutyReading::NoCharging
    } else if d < 700 {
        DutyReading::Digital
    } else if d < 800 {
        DutyReading::Error
    } else if d < 1_000 {
        da(u32::from(MIN_CURRENT_DA))
    } else if d <= 8_500 {
        // I[A] = D[%] x 0.6  ->  deciamps = bp x 0.06, rounded half up.
        da((d * 6 + 50) / 100)
    } else if d <= 9_600 {
        // I[A] = (D[%] - 64) x 2.5  ->  deciamps = (bp - 6400) / 4, rounded.
        da((d - 6_400 + 2) / 4)
    } else if d <= 9_700 {
        da(u32::from(MAX_CURRENT_DA))
    } else if d < 10_000 {
        DutyReading::Error
    } else {
        DutyReading::NotOffered
    }
}

/// The current a duty cycle allows, deciamps, or `None` when it allows none.
#[must_use]
pub fn current_for_duty(duty_bp: u16) -> Option<u16> {
    match read_duty(duty_bp) {
        DutyReading::Current(da) => Some(da),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_uses_the_windows() {
        assert_eq!(PilotState::classify(12_000, 1_100), Some(PilotState::A));
        assert_eq!(PilotState::classify(10_900, 1_100), Some(PilotState::A));
        assert_eq!(PilotState::classify(10_500, 1_100), None, "between A and B");
        assert_eq!(PilotState::classify(6_200, 1_100), Some(PilotState::C));
        assert_eq!(PilotState::classify(-11_500, 1_100), Some(PilotState::F));
        assert_eq!(PilotState::classify(i32::MIN, 1_100), None);
        for s in PilotState::ALL {
            assert_eq!(PilotState::classify(s.nominal_mv(), 1_000), Some(s));
            assert_eq!(PilotState::from_letter(s.letter() as u8), Some(s));
        }
    }

    #[test]
    fn duty_rows() {
        assert_eq!(read_duty(299), DutyReading::NoCharging);
        assert_eq!(read_duty(500), DutyReading::Digital);
        assert_eq!(read_duty(750), DutyReading::Error);
        assert_eq!(read_duty(800), DutyReading::Current(60));
        assert_eq!(read_duty(1_000), DutyReading::Current(60));
        assert_eq!(read_duty(2_667), DutyReading::Current(160));
        assert_eq!(read_duty(8_500), DutyReading::Current(510));
        assert_eq!(read_duty(9_600), DutyReading::Current(800));
        assert_eq!(read_duty(9_700), DutyReading::Current(800));
        assert_eq!(read_duty(9_800), DutyReading::Error);
        assert_eq!(read_duty(10_000), DutyReading::NotOffered);
        assert_eq!(current_for_duty(5_333), Some(320));
        assert_eq!(current_for_duty(500), None);
    }
}
