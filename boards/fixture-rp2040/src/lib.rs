//! The fixture board's glue that runs on the host too: everything between
//! the RP2040's peripherals and [`rig::fixture::Fixture`] that is not a
//! register access. The image (`main.rs`) only moves bytes and words
//! between the peripherals and these modules.
//!
//! - [`pins`]: which GPIO, ADC input and switch serves which channel.
//! - [`edges`]: the PIO edge program, its words to edge instants.
//! - [`plateau`]: when to sample the pilot levels, from the edges.
//! - [`analog`]: ADC codes to millivolts and deciamps; MCP3208 words.
//! - [`switches`]: the car's load to PhotoMOS bits; MCP23017 words.
//! - [`load`]: the car's draw to electronic-load setpoints; MCP4922 words.
//! - [`link`]: USB line output with backpressure; Modbus framing.
//! - [`loopback`]: `SELFTEST` with the Pico's own PWM.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

pub mod analog;
pub mod edges;
pub mod link;
pub mod load;
pub mod loopback;
pub mod pins;
pub mod plateau;
pub mod switches;

/// This image's version, announced in the `HELLO` answer.
pub const FW_VERSION: &str = env!("CARGO_PKG_VERSION");

#[cfg(test)]
mod tests {
    use heapless::String;
    use rig::fixture::{Fixture, FixtureConfig};
    use rig::protocol::{self, Command, Event, Line, Parsed};
    use rig::time::us;

    use crate::edges::{self, EdgeDecoder, NS_PER_CYCLE};

    /// A station's PWM at 26.67 % on its own crystal (30 ppm fast), through
    /// the PIO program (interpreted), the FIFO drained every 500 us, the
    /// decoder and `rig`'s capture: the fixture reports the duty and the
    /// frequency the station drives.
    #[test]
    fn a_station_pwm_through_pio_and_decoder_is_reported_as_its_duty() {
        let (period_ns, high_ns, start_ns) = (999_970u64, 266_692u64, 123_457u64);
        let level = |c: u64| {
            let t = c * NS_PER_CYCLE;
            t >= start_ns && (t - start_ns) % period_ns < high_ns
        };
        let periods = 60;
        let cycles = (start_ns + periods * period_ns) / NS_PER_CYCLE;
        let words = edges::sim::run(&edges::program(), level, cycles, 0);
        let mut f: Fixture<1> = Fixture::new(
            FixtureConfig {
                channels: 1,
                ..FixtureConfig::default()
            },
            us(0),
        );
        let mut hello = String::new();
        protocol::encode(
            &Line::Command {
                seq: 1,
                cmd: Command::Hello { version: 1 },
            },
            &mut hello,
        )
        .unwrap();
        f.handle_host_rx(us(0), hello.as_bytes());
        let mut dec = EdgeDecoder::new(0);
        for (pushed, w) in words {
            // Drained at the next 500 us poll.
            let drained_us = (pushed * NS_PER_CYCLE / 1_000).next_multiple_of(500);
            let e = dec.handle_word(w, drained_us);
            f.handle_edge(us(drained_us), 0, e.t_us(), e.rising);
        }
        let mut duties = std::vec::Vec::new();
        let mut line = String::new();
        while f.poll_line(&mut line) {
            if let Parsed::Line(
                _,
                Line::Event {
                    event:
                        Event::Duty {
                            duty_bp, freq_mhz, ..
                        },
                    ..
                },
            ) = protocol::parse_next(line.as_bytes())
            {
                duties.push((duty_bp, freq_mhz));
            }
        }
        let &(duty_bp, freq_mhz) = duties.last().expect("a DUTY event");
        assert!(duty_bp.abs_diff(2_667) <= 1, "{duties:?}");
        // 1 000 030 mHz within the microsecond timestamps' reach.
        assert!(freq_mhz.abs_diff(1_000_030) <= 100, "{duties:?}");
        assert_eq!(dec.lost(), 0);
    }

    /// The image keeps the fixture on `main`'s stack (the ELF's static RAM
    /// is a few hundred bytes): it must leave most of the Pico's 256 KiB.
    #[test]
    fn the_fixture_fits_the_stack_with_room_to_spare() {
        let bytes = core::mem::size_of::<Fixture<{ crate::pins::CHANNELS }>>();
        println!("Fixture<4>: {bytes} bytes");
        assert!(bytes < 128 * 1024, "{bytes} bytes");
    }
}
