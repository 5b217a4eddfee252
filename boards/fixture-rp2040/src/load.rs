//! The car's draw as electronic-load setpoints: what `rig` says each car
//! draws per phase ([`rig::fixture::Fixture::car_draw_da`]) as MCP4922 DAC
//! words, one DAC output per phase of each channel (12 outputs, six dual
//! DACs on SPI0, chip selects on the switch expanders' spare bits).
//!
//! Each output programs one phase of an AC electronic load through its
//! analog setpoint input (0-3.3 V, scaled to the load's input by an
//! amplifier); the CTs measure what actually flows ([`crate::analog`]),
//! so `CURRENT` is a measurement, never the setpoint echoed. Calibration:
//! the deciamps at full scale per output, from the load's own meter at
//! bring-up.

use crate::pins::CHANNELS;

/// Dual DACs: 2 outputs each, 3 phases per channel.
pub const DACS: usize = CHANNELS * 3 / 2;
/// Code for full scale (12 bits).
pub const DAC_MAX: u16 = 4095;
/// Default full scale: 80 A per phase (a 32 A car with margin for overdraw).
pub const FULL_SCALE_DA: u16 = 800;

/// The DAC and output (0 = A, 1 = B) of channel `ch`'s phase `phase`.
#[must_use]
pub fn dac_of(ch: usize, phase: usize) -> Option<(usize, u8)> {
    if ch >= CHANNELS || phase >= 3 {
        return None;
    }
    let i = 3 * ch + phase;
    Some((i / 2, (i % 2) as u8))
}

/// Where DAC `dac`'s chip select is: expander, port (0 = A, 1 = B), bit
/// mask. Bits 6 and 7 of each port are not used by the switches.
#[must_use]
pub fn chip_select(dac: usize) -> Option<(usize, usize, u8)> {
    (dac < DACS).then(|| (dac / 4, (dac / 2) % 2, 1 << (6 + dac % 2)))
}

/// The code for `da` with `full_scale_da` at [`DAC_MAX`], rounded,
/// saturated at full scale.
#[must_use]
pub fn setpoint_code(da: u16, full_scale_da: u16) -> u16 {
    if full_scale_da == 0 {
        return 0;
    }
    let c = (u32::from(da) * u32::from(DAC_MAX) + u32::from(full_scale_da) / 2)
        / u32::from(full_scale_da);
    u16::try_from(c).unwrap_or(DAC_MAX).min(DAC_MAX)
}

/// The MCP4922 word: output select, buffered reference, gain 1x, active.
#[must_use]
pub fn mcp4922_word(output: u8, code: u16) -> [u8; 2] {
    let w: u16 =
        (u16::from(output & 1) << 15) | (1 << 14) | (1 << 13) | (1 << 12) | code.min(DAC_MAX);
    w.to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_phase_has_its_own_output_and_chip_select() {
        let mut seen = std::collections::BTreeSet::new();
        for ch in 0..CHANNELS {
            for p in 0..3 {
                let (dac, out) = dac_of(ch, p).unwrap();
                assert!(dac < DACS);
                assert!(seen.insert((dac, out)));
            }
        }
        assert_eq!(seen.len(), 12);
        assert_eq!(dac_of(CHANNELS, 0), None);
        let mut cs = std::collections::BTreeSet::new();
        for d in 0..DACS {
            let (chip, port, mask) = chip_select(d).unwrap();
            assert!(chip < 2 && port < 2);
            // Never a switch bit.
            assert_eq!(mask & 0x3f, 0);
            assert!(cs.insert((chip, port, mask)));
        }
        assert_eq!(chip_select(DACS), None);
    }

    #[test]
    fn setpoints_round_and_saturate() {
        assert_eq!(setpoint_code(0, 800), 0);
        assert_eq!(setpoint_code(800, 800), 4095);
        assert_eq!(setpoint_code(160, 800), 819);
        assert_eq!(
            setpoint_code(u16::MAX, 800),
            4095,
            "an overdraw past full scale"
        );
        assert_eq!(setpoint_code(100, 0), 0, "no calibration, no current");
    }

    #[test]
    fn dac_words_follow_the_datasheet() {
        assert_eq!(mcp4922_word(0, 0x123), [0x71, 0x23]);
        assert_eq!(mcp4922_word(1, 0xfff), [0xff, 0xff]);
        assert_eq!(
            mcp4922_word(1, 0xffff),
            [0xff, 0xff],
            "code masked to 12 bits"
        );
    }
}
