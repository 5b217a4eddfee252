//! The board's pin and channel map (`docs/fixture-board.md`, Pin map): one
//! place for which GPIO, ADC input and switch bit serves which channel.

/// Stations one Pico serves: one PIO0 state machine each.
pub const CHANNELS: usize = 4;

/// UART0 TX to the RS-485 transceiver's DI (the meter line).
pub const METER_TX: u8 = 0;
/// UART0 RX from the transceiver's RO.
pub const METER_RX: u8 = 1;
/// The transceiver's DE and /RE: high while the fixture transmits.
pub const METER_DE: u8 = 2;
/// I2C0 to the two MCP23017 switch expanders.
pub const I2C_SDA: u8 = 4;
pub const I2C_SCL: u8 = 5;
/// Pilot comparator outputs, PIO0 SM0-3 (`jmp pin` and `in` base).
pub const COMPARATOR: [u8; CHANNELS] = [6, 7, 8, 9];
/// Contactor auxiliary contacts (through optocouplers, low = closed).
pub const AUX: [u8; CHANNELS] = [10, 11, 12, 13];
/// Self-test PWM, slice 7 A, to the +/-12 V loopback driver.
pub const SELFTEST_PWM: u8 = 14;
/// SPI0 to the two MCP3208 ADCs.
pub const SPI_RX: u8 = 16;
pub const ADC0_CS: u8 = 17;
pub const SPI_SCK: u8 = 18;
pub const SPI_TX: u8 = 19;
pub const ADC1_CS: u8 = 20;

/// An input of the two MCP3208s (8 each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdcInput {
    /// 0: chip select GP17, 1: GP20.
    pub chip: u8,
    /// 0-7.
    pub input: u8,
}

impl AdcInput {
    const fn of(n: usize) -> Self {
        Self {
            chip: (n / 8) as u8,
            input: (n % 8) as u8,
        }
    }
}

/// The ADC input of channel `ch`'s pilot level; `None` past the channels.
#[must_use]
pub fn level_input(ch: usize) -> Option<AdcInput> {
    (ch < CHANNELS).then(|| AdcInput::of(ch))
}

/// The ADC input of channel `ch`'s CT on phase `phase` (0-2): input
/// `4 + 3 ch + phase`; `None` past the channels or phases.
#[must_use]
pub fn ct_input(ch: usize, phase: usize) -> Option<AdcInput> {
    (ch < CHANNELS && phase < 3).then(|| AdcInput::of(4 + 3 * ch + phase))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_adc_input_serves_exactly_one_purpose() {
        let mut used = [0u8; 16];
        for ch in 0..CHANNELS {
            let l = level_input(ch).unwrap();
            used[usize::from(l.chip) * 8 + usize::from(l.input)] += 1;
            for p in 0..3 {
                let c = ct_input(ch, p).unwrap();
                used[usize::from(c.chip) * 8 + usize::from(c.input)] += 1;
            }
        }
        assert_eq!(used, [1; 16]);
        assert_eq!(level_input(CHANNELS), None);
        assert_eq!(ct_input(0, 3), None);
        assert_eq!(ct_input(3, 2), Some(AdcInput { chip: 1, input: 7 }));
    }

    #[test]
    fn no_gpio_is_used_twice() {
        let mut pins = vec![
            METER_TX,
            METER_RX,
            METER_DE,
            I2C_SDA,
            I2C_SCL,
            SELFTEST_PWM,
            SPI_RX,
            ADC0_CS,
            SPI_SCK,
            SPI_TX,
            ADC1_CS,
        ];
        pins.extend(COMPARATOR);
        pins.extend(AUX);
        let n = pins.len();
        pins.sort_unstable();
        pins.dedup();
        assert_eq!(pins.len(), n);
        // The Pico brings out GP0-22 and GP26-28.
        assert!(pins.iter().all(|&p| p <= 22 || (26..=28).contains(&p)));
    }
}
