//! Pilot line electrics: what the station's source and the car's resistors
//! and diode make of the control pilot.
//!
//! Owns the circuit arithmetic of IEC 61851-1 Annex A: a +/-12 V source
//! behind 1 kOhm in the station, and on the car a diode, then 2.74 kOhm to
//! ground, with 1.3 kOhm (state C) or 270 Ohm (state D) switched in
//! parallel. Used by the fixture to know what it presents, and by the
//! virtual bench to give the station's ADC and the fixture's capture the
//! same levels. Integer millivolts; nothing panics.

/// What the station drives on the pilot, as the fixture sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Steady +12 V.
    Plus12,
    /// PWM between +12 V and -12 V.
    Pwm,
    /// Steady -12 V (state F).
    Minus12,
    /// No source at all: the station is unpowered.
    Off,
}

/// The car-side diode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Diode {
    #[default]
    Ok,
    /// Left out: the resistors sit on the pilot directly, so the negative
    /// half-wave loads them too.
    Missing,
    /// Shorted: electrically the same as missing, without the diode drop
    /// on the positive half either.
    Shorted,
}

/// What the car presents on the pilot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CarLoad {
    pub plugged: bool,
    /// 1.3 kOhm switched in: the car asks for energy (state C).
    pub s2_closed: bool,
    /// 270 Ohm instead of 1.3 kOhm: ventilation needed (state D).
    pub ventilation: bool,
    pub diode: Diode,
    /// The pilot is shorted to PE (state E).
    pub short: bool,
}

impl CarLoad {
    pub const UNPLUGGED: Self = Self {
        plugged: false,
        s2_closed: false,
        ventilation: false,
        diode: Diode::Ok,
        short: false,
    };

    /// Resistance to ground in ohms, `None` if open.
    #[must_use]
    pub fn resistance_ohm(&self) -> Option<u32> {
        if !self.plugged {
            return None;
        }
        if self.short {
            return Some(0);
        }
        let r1: u64 = 2_740;
        let r = if self.s2_closed {
            let r2: u64 = if self.ventilation { 270 } else { 1_300 };
            r1 * r2 / (r1 + r2)
        } else {
            r1
        };
        Some(r as u32)
    }
}

const SOURCE_MV: i64 = 12_000;
const SOURCE_OHM: i64 = 1_000;
const DIODE_DROP_MV: i64 = 700;

/// The voltage on the pilot for a source level `v_mv` into the car's load.
fn level(v_mv: i64, load: &CarLoad) -> i64 {
    let Some(r) = load.resistance_ohm() else {
        return v_mv;
    };
    let r = i64::from(r);
    if r == 0 {
        return 0;
    }
    if load.diode == Diode::Ok && v_mv <= DIODE_DROP_MV {
        return v_mv; // the diode blocks
    }
    let drop = if load.diode == Diode::Ok {
        DIODE_DROP_MV
    } else {
        0
    };
    // i = (v - drop) / (Rs + R); v_cp = v - i * Rs
    let i_num = v_mv - drop;
    v_mv - i_num * SOURCE_OHM / (SOURCE_OHM + r)
}

/// High and low plateau of the pilot, millivolts.
#[must_use]
pub fn levels(source: Source, load: &CarLoad) -> (i32, i32) {
    let (hi, lo) = match source {
        Source::Plus12 => (level(SOURCE_MV, load), level(SOURCE_MV, load)),
        Source::Pwm => (level(SOURCE_MV, load), level(-SOURCE_MV, load)),
        Source::Minus12 => (level(-SOURCE_MV, load), level(-SOURCE_MV, load)),
        Source::Off => (0, 0),
    };
    (hi as i32, lo as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn car(s2: bool, vent: bool) -> CarLoad {
        CarLoad {
            plugged: true,
            s2_closed: s2,
            ventilation: vent,
            diode: Diode::Ok,
            short: false,
        }
    }

    #[test]
    fn nominal_levels_within_a_volt() {
        let near = |mv: i32, nominal: i32| (mv - nominal).abs() <= 1_000;
        assert_eq!(levels(Source::Pwm, &CarLoad::UNPLUGGED), (12_000, -12_000));
        let (b, lo) = levels(Source::Pwm, &car(false, false));
        assert!(near(b, 9_000), "B {b}");
        assert_eq!(lo, -12_000, "the diode blocks the negative half");
        assert!(near(levels(Source::Pwm, &car(true, false)).0, 6_000));
        assert!(near(levels(Source::Pwm, &car(true, true)).0, 3_000));
        let mut e = car(true, false);
        e.short = true;
        assert_eq!(levels(Source::Pwm, &e), (0, 0));
    }

    #[test]
    fn a_missing_or_shorted_diode_pulls_the_low_plateau_up() {
        for d in [Diode::Missing, Diode::Shorted] {
            let mut c = car(true, false);
            c.diode = d;
            let (_, lo) = levels(Source::Pwm, &c);
            assert!(lo > -11_000, "{d:?}: low {lo} must fail the diode check");
        }
    }
}
