//! The car emulator's switches: what `rig` says the car presents
//! ([`rig::pilot::CarLoad`]) as PhotoMOS switch bits, and the MCP23017
//! writes that set them.
//!
//! Six switches per channel (`docs/bench.md`, the pilot front end): `plug`
//! (series, connects the car), `S2` (1.3 kOhm), `vent` (270 Ohm), `diode
//! bypass` (`no-diode`, `shorted-diode`), `pilot short` (CP to PE,
//! `short-pilot`) and `loopback select` (the self-test generator instead of
//! the station). Two expanders: 0x20 port A channel 0, port B channel 1;
//! 0x21 port A channel 2, port B channel 3.

use rig::pilot::{CarLoad, Diode};

use crate::pins::CHANNELS;

pub const PLUG: u8 = 1 << 0;
pub const S2: u8 = 1 << 1;
pub const VENT: u8 = 1 << 2;
pub const DIODE_BYPASS: u8 = 1 << 3;
pub const PILOT_SHORT: u8 = 1 << 4;
pub const LOOPBACK: u8 = 1 << 5;

/// MCP23017 I2C addresses (A2-A0 strapped 000 and 001).
pub const EXPANDERS: [u8; 2] = [0x20, 0x21];
/// IOCON.BANK = 0 register addresses.
const IODIRA: u8 = 0x00;
const OLATA: u8 = 0x14;

/// The switch bits for what the car presents. In the self-test the
/// station is disconnected and the loopback connected instead.
#[must_use]
pub fn bits(load: &CarLoad, selftest: bool) -> u8 {
    if selftest {
        return LOOPBACK;
    }
    let mut b = 0;
    if load.plugged {
        b |= PLUG;
        if load.s2_closed {
            // 270 Ohm instead of 1.3 kOhm (rig::pilot: "vent").
            b |= if load.ventilation { VENT } else { S2 };
        }
        if load.diode != Diode::Ok {
            b |= DIODE_BYPASS;
        }
        if load.short {
            b |= PILOT_SHORT;
        }
    }
    b
}

/// The write (register, port A, port B) that sets expander `chip`'s
/// outputs from the four channels' bits, with every load DAC's chip select
/// high (idle) except `select`'s (low: that DAC takes the next SPI word).
#[must_use]
pub fn olat_write(chip: usize, bits: &[u8; CHANNELS], select: Option<usize>) -> [u8; 3] {
    let mut port = [
        bits.get(2 * chip).copied().unwrap_or(0) & 0x3f,
        bits.get(2 * chip + 1).copied().unwrap_or(0) & 0x3f,
    ];
    for dac in 0..crate::load::DACS {
        if let Some((c, p, mask)) = crate::load::chip_select(dac) {
            if c == chip && select != Some(dac) {
                port[p] |= mask;
            }
        }
    }
    [OLATA, port[0], port[1]]
}

/// The writes that bring an expander up safe: switches off and chip
/// selects idle first, then every pin an output.
#[must_use]
pub fn init_writes(chip: usize) -> [[u8; 3]; 2] {
    [olat_write(chip, &[0; CHANNELS], None), [IODIRA, 0, 0]]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugged() -> CarLoad {
        CarLoad {
            plugged: true,
            ..CarLoad::UNPLUGGED
        }
    }

    #[test]
    fn each_state_and_misbehaviour_closes_its_switches() {
        assert_eq!(bits(&CarLoad::UNPLUGGED, false), 0);
        assert_eq!(bits(&plugged(), false), PLUG);
        let c = CarLoad {
            s2_closed: true,
            ..plugged()
        };
        assert_eq!(bits(&c, false), PLUG | S2);
        let d = CarLoad {
            ventilation: true,
            ..c
        };
        assert_eq!(bits(&d, false), PLUG | VENT);
        for diode in [Diode::Missing, Diode::Shorted] {
            assert_eq!(
                bits(&CarLoad { diode, ..c }, false),
                PLUG | S2 | DIODE_BYPASS
            );
        }
        let e = CarLoad {
            short: true,
            ..plugged()
        };
        assert_eq!(bits(&e, false), PLUG | PILOT_SHORT);
        // Ventilation asked without S2 closes nothing more.
        assert_eq!(
            bits(
                &CarLoad {
                    ventilation: true,
                    ..plugged()
                },
                false
            ),
            PLUG
        );
    }

    #[test]
    fn the_selftest_disconnects_the_station_and_the_car() {
        let c = CarLoad {
            s2_closed: true,
            short: true,
            ..plugged()
        };
        assert_eq!(bits(&c, true), LOOPBACK);
    }

    #[test]
    fn expander_writes_put_two_channels_on_each_chip() {
        let b = [1, 2, 3, 4];
        // Chip 0 carries DAC selects 0-3 (bits 6, 7 of both ports), chip 1
        // DACs 4-5 (port A).
        assert_eq!(olat_write(0, &b, None), [0x14, 0xc1, 0xc2]);
        assert_eq!(olat_write(1, &b, None), [0x14, 0xc3, 0x04]);
        assert_eq!(olat_write(1, &b, Some(5)), [0x14, 0x43, 0x04]);
        assert_eq!(
            olat_write(0, &b, Some(5)),
            [0x14, 0xc1, 0xc2],
            "not on this chip"
        );
        assert_eq!(olat_write(2, &b, None), [0x14, 0, 0], "no third chip");
        // A stray bit in a channel's switches cannot pull a select low.
        assert_eq!(olat_write(0, &[0xff, 0, 0, 0], Some(0)), [0x14, 0xbf, 0xc0]);
        // Safe first: switches open, selects idle, then the pins become outputs.
        assert_eq!(init_writes(0), [[0x14, 0xc0, 0xc0], [0x00, 0, 0]]);
    }
}
