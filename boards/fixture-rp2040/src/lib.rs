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
    use rig::fixture::Fixture;

    /// The image keeps the fixture on `main`'s stack (the ELF's static RAM
    /// is a few hundred bytes): it must leave most of the Pico's 256 KiB.
    #[test]
    fn the_fixture_fits_the_stack_with_room_to_spare() {
        let bytes = core::mem::size_of::<Fixture<{ crate::pins::CHANNELS }>>();
        println!("Fixture<4>: {bytes} bytes");
        assert!(bytes < 128 * 1024, "{bytes} bytes");
    }
}
