//! sharebench station firmware: an IEC 61851-1 charge point and power sharing.
//!
//! The contract of this crate: deterministic, no I/O, no OS time, no heap.
//! Every input is a `handle_*` call with `now` passed in, every output is
//! drained with a `poll_*` call, and `poll_timeout()` says when to call again.
//! A station board and the virtual bench are thin drivers around the same
//! cores; [`hal`] is the board's side of that boundary.
//!
//! - [`pilot`]: the duty-cycle table and pilot level sensing.
//! - [`charge_point`]: one charging point's state machine and timing.
//! - [`commission`]: the site plan a station is given, authenticated.
//! - [`sharing`]: leader and followers, allocation, the meter client.
//! - [`station`]: THE station main loop (charge point + role + telemetry).
//! - [`telemetry`]: the station's debug-channel lines, encoded and parsed.
//! - [`hal`]: embedded-hal 1.0 pins and the ADC/current-sensor traits.
//! - [`bridge`]: pins as lines over a UART (the QEMU image's wire bridge).
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]
// Per-phase and per-node loops index several parallel arrays at once;
// iterator chains would hide which index is which.
#![allow(clippy::needless_range_loop)]

/// This firmware's version (its crate's), as run reports name it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub mod bridge;
pub mod charge_point;
pub mod commission;
pub mod hal;
pub mod pilot;
pub mod sharing;
pub mod station;
pub mod telemetry;
pub mod time;

pub use charge_point::{ChargePoint, ChargePointConfig};
pub use time::{Duration, Instant};
