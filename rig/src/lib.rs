//! sharebench bench fixture: the fixture's brain, on a fixture board or
//! inside the virtual bench.
//!
//! The contract: deterministic, no I/O, no OS time, no heap. Inputs are
//! `handle_*` calls with time passed in (the fixture timer, microseconds),
//! outputs are drained with `poll_*`. One fixture serves many channels, one
//! per station under test.
//!
//! - [`time`]: the fixture timer's types (`fugit`, as the station's).
//! - [`iec`]: IEC 61851-1 Annex A as the fixture reads it (states, level
//!   windows, duty to current), independent of the firmware it measures.
//! - [`pilot`]: pilot line electrics (source, resistors, diode).
//! - [`vehicle`]: an emulated car: states, draw, battery, misbehaviours.
//! - [`capture`]: duty, frequency, levels, contactor instants, current.
//! - [`loads`]: other site loads on the mains.
//! - [`meter`]: an SDM630 Modbus RTU server with fault injection.
//! - [`selftest`]: the fixture's own PWM looped into its capture.
//! - [`protocol`]: the host <-> fixture lines (the only definition).
//! - [`fixture`]: all of it together behind the protocol.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]
#![allow(clippy::needless_range_loop)]

pub mod capture;
pub mod fixture;
pub mod iec;
pub mod loads;
pub mod meter;
pub mod pilot;
pub mod protocol;
pub mod rng;
pub mod selftest;
pub mod time;
pub mod vehicle;

pub const NO_STD_MARKER: u8 = 0;
