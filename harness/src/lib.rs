//! sharebench harness: drives a bench fixture, runs scenario files, checks
//! allocation convergence, failover and breaker-safe limits, compares traces
//! with golden snapshots, and plots them.
//!
//! - [`scenario`]: TOML scenario files and their validation.
//! - [`bench`]: the bench trait; [`sim`] the virtual bench, [`serial`] a
//!   fixture on a serial port, [`debug`] the stations' debug channels there.
//! - [`provision`]: what a station is given before a run (its site plan),
//!   and its power control; [`probe`] flashing and RTT through debug probes.
//! - [`runner`]: one scenario on one bench; [`trace`] what it saw.
//! - [`checks`]: convergence, failover, breaker safety, IEC 61851-1.
//! - [`oracle`]: the reference allocator (a test oracle, apart from the firmware's).
//! - [`golden`]: golden traces; [`artefacts`]: VCD, plots, report.json, junit.xml.
//! - [`cli`]: the `sharebench` command line.
#![deny(unsafe_code)]
#![allow(clippy::needless_range_loop)]

pub mod artefacts;
pub mod bench;
pub mod checks;
pub mod cli;
pub mod debug;
pub mod explore;
pub mod golden;
pub mod inventory;
pub mod link;
pub mod oracle;
pub mod probe;
pub mod provision;
pub mod qemu;
pub mod runner;
pub mod scenario;
pub mod serial;
pub mod sim;
pub mod trace;
pub mod units;
