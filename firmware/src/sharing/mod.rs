//! Power sharing: a leader and its followers split a supply tree's current.
//!
//! - [`config`]: the group's site plan and its validation.
//! - [`alloc`]: the allocation arithmetic (max-min fair over a tree).
//! - [`frame`]: the authenticated wire format of the sharing link.
//! - [`meter`]: the leader's Modbus RTU client for an SDM630 mains meter.
//! - [`leader`]: allocation, make-before-break, dynamic load, failover.
//! - [`follower`]: join, apply grants, fall back.
//!
//! Drivers (a station board, the virtual bench) must, after feeding a
//! follower's received bytes, apply [`follower::Follower::poll_allocation`]
//! to the charging point and hand its new status back with
//! `handle_local_status` before calling `poll_transmit`, so that the status
//! a follower sends confirms the duty that is really on the pilot.

pub mod alloc;
pub mod config;
pub mod follower;
pub mod frame;
pub mod leader;
pub mod meter;

#[cfg(test)]
mod tests;

pub use config::{
    DynamicConfig, DynamicMode, GroupConfig, NodeConfig, Phase, StationConfig, Timing,
};
pub use follower::Follower;
pub use leader::Leader;
