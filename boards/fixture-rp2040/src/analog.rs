//! ADC codes to what `rig` measures: pilot plateaus in millivolts and CT
//! currents in deciamps, and the MCP3208's SPI words.
//!
//! Owns the calibration arithmetic (a zero code and a gain as a fraction,
//! per input, from the bring-up in `docs/bench.md`), the RMS over whole
//! mains cycles, and the ADC's command and answer bytes. All arithmetic on
//! codes is widened or saturating: a stuck or out-of-range code gives a
//! saturated value, never a wrap or a panic.

/// Full scale of the MCP3208 (12 bits).
pub const ADC_MAX: u16 = 4095;

/// The three bytes that start a single-ended conversion of `input` (0-7).
#[must_use]
pub fn mcp3208_command(input: u8) -> [u8; 3] {
    let i = input & 7;
    [0b0000_0110 | (i >> 2), (i & 3) << 6, 0]
}

/// The code in the bytes clocked back during [`mcp3208_command`].
#[must_use]
pub fn mcp3208_code(rx: [u8; 3]) -> u16 {
    (u16::from(rx[1] & 0x0f) << 8) | u16::from(rx[2])
}

/// `value = (code - zero) * num / den`, widened, saturated to `i32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Linear {
    pub zero: i32,
    pub num: i32,
    pub den: i32,
}

impl Linear {
    #[must_use]
    pub fn apply(&self, code: i32) -> i32 {
        if self.den == 0 {
            return 0;
        }
        let v =
            (i64::from(code) - i64::from(self.zero)) * i64::from(self.num) / i64::from(self.den);
        i32::try_from(v).unwrap_or(if v < 0 { i32::MIN } else { i32::MAX })
    }
}

/// The pilot front end (`docs/bench.md`): `V_adc = 1.65 V + 0.123 V_cp`
/// on a 3.3 V reference, so code 2048 is 0 V and one code is
/// `3300 / 4096 / 0.123` = 6.55 mV of pilot. Calibrated per channel at
/// bring-up (step 6): the zero and the gain replace these.
pub const PILOT_NOMINAL: Linear = Linear {
    zero: 2048,
    num: 3_300_000,
    den: 4096 * 123,
};

/// Pilot millivolts for an ADC code.
#[must_use]
pub fn pilot_mv(cal: &Linear, code: u16) -> i32 {
    cal.apply(i32::from(code))
}

/// A 50 A : 1 V (RMS) CT biased to 1.65 V: one code is `3300 / 4096` mV,
/// 20 mV per ampere, so deciamps = code x 1650 / 4096. `zero` is the bias
/// code (measured with no current at bring-up).
pub const CT_NOMINAL: Linear = Linear {
    zero: 2048,
    num: 1650,
    den: 4096,
};

/// Samples per RMS result: 10 mains cycles at 40 samples per cycle
/// (2 kHz per phase, 50 Hz).
pub const RMS_SAMPLES: u32 = 400;

/// RMS of a CT input over [`RMS_SAMPLES`] samples.
#[derive(Debug, Clone, Default)]
pub struct Rms {
    sum_sq: u64,
    n: u32,
}

impl Rms {
    /// One sample; the RMS in deciamps when a whole set is in.
    pub fn add(&mut self, cal: &Linear, code: u16) -> Option<u16> {
        let d = u64::from(i32::from(code).abs_diff(cal.zero));
        self.sum_sq = self.sum_sq.saturating_add(d * d);
        self.n = self.n.saturating_add(1);
        if self.n < RMS_SAMPLES {
            return None;
        }
        let rms_code = (self.sum_sq / u64::from(self.n)).isqrt();
        *self = Self::default();
        // The magnitude: the bias is already taken off.
        let rms = i32::try_from(rms_code).unwrap_or(i32::MAX);
        let da = Linear { zero: 0, ..*cal }.apply(rms).max(0);
        Some(u16::try_from(da).unwrap_or(u16::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nominal_front_end_reads_the_iec_plateaus() {
        // +12 V: 1.65 + 0.123 x 12 = 3.126 V = code 3880.
        let code = |v_cp: f64| ((1.65 + 0.123 * v_cp) / 3.3 * 4096.0).round() as u16;
        for v in [12.0, 9.0, 6.0, 3.0, 0.0, -12.0] {
            let mv = pilot_mv(&PILOT_NOMINAL, code(v));
            assert!(
                (mv - (v * 1000.0) as i32).abs() <= 7,
                "{v} V read as {mv} mV"
            );
        }
    }

    #[test]
    fn codes_at_the_ends_and_a_zero_gain_saturate() {
        let huge = Linear {
            zero: 0,
            num: i32::MAX,
            den: 1,
        };
        assert_eq!(huge.apply(i32::MAX), i32::MAX);
        assert_eq!(huge.apply(i32::MIN), i32::MIN);
        assert_eq!(Linear { den: 0, ..huge }.apply(5), 0);
        assert!(pilot_mv(&PILOT_NOMINAL, ADC_MAX) > 13_000);
        assert!(pilot_mv(&PILOT_NOMINAL, 0) < -13_000);
    }

    #[test]
    fn mcp3208_words_follow_the_datasheet() {
        // Start bit, single-ended, D2 in the first byte; D1 D0 on top of the second.
        assert_eq!(mcp3208_command(0), [0x06, 0x00, 0]);
        assert_eq!(mcp3208_command(5), [0x07, 0x40, 0]);
        assert_eq!(mcp3208_command(7), [0x07, 0xc0, 0]);
        // The null bit and undriven high bits are masked.
        assert_eq!(mcp3208_code([0xff, 0xfa, 0xbc]), 0xabc);
    }

    #[test]
    fn rms_of_a_sine_is_its_amplitude_over_root_two() {
        // 16 A RMS: 0.32 V RMS at the CT, 0.4525 V peak = 561.7 codes.
        let cal = CT_NOMINAL;
        let mut rms = Rms::default();
        let mut out = None;
        for i in 0..RMS_SAMPLES {
            let ph = f64::from(i) / 40.0 * core::f64::consts::TAU;
            let code = (2048.0 + 561.7 * ph.sin()).round() as u16;
            out = rms.add(&cal, code).or(out);
            if i + 1 < RMS_SAMPLES {
                assert_eq!(out, None, "only whole sets");
            }
        }
        let da = out.unwrap();
        assert!((159..=161).contains(&da), "{da} dA");
        // And it starts over.
        assert_eq!(rms.add(&cal, 2048), None);
    }

    #[test]
    fn no_current_reads_zero_and_a_rail_stuck_input_saturates_sanely() {
        let mut rms = Rms::default();
        let mut out = None;
        for _ in 0..RMS_SAMPLES {
            out = rms.add(&CT_NOMINAL, 2048).or(out);
        }
        assert_eq!(out, Some(0));
        let mut stuck = Rms::default();
        let mut out = None;
        for _ in 0..RMS_SAMPLES {
            out = stuck.add(&CT_NOMINAL, ADC_MAX).or(out);
        }
        // 2047 codes off the bias: 82.4 A, the CT's ceiling, not a wrap.
        assert_eq!(out, Some(824));
    }
}
