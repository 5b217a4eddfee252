//! THE station main loop: one charge point, its part in the sharing group
//! (leader or follower, with the leader's meter client), and telemetry.
//!
//! Owns the order in which the parts are driven (what `sharing`'s module
//! documentation asks of a driver): inputs reach the charge point or the
//! role; then, until nothing moves, the role's timers run, its allocation
//! goes to the charge point, the point's outputs are queued for the pins,
//! and the point's status goes back to the role, so a status sent confirms
//! the duty really on the pilot. Every board and the virtual bench drive
//! this and nothing else: the loop exists once.
//!
//! Does not touch hardware: a board applies [`Output`]s to its pins (see
//! [`crate::hal`]), sends [`Station::poll_transmit`] frames on the RS-485
//! link, the meter requests on the Modbus line, and the
//! [`Telemetry`] lines on its debug channel.
//!
//! Sans-IO: inputs are `handle_*(now, ..)`, outputs `poll_*`, and
//! [`Station::poll_timeout`] says when to call [`Station::handle_timeout`].
//! Nothing panics, nothing is allocated; the group's size is the const
//! generics `S` (stations) and `N` (nodes).

use heapless::{Deque, Vec};

use crate::charge_point::{
    ChargePoint, ChargePointConfig, ConfigError, Event, Fault, PilotOutput, Status,
};
use crate::pilot::PilotLevels;
use crate::sharing::config::{GroupConfig, GroupConfigError, MAX_NODES, MAX_STATIONS};
use crate::sharing::follower::FollowerError;
use crate::sharing::frame::MAX_FRAME;
use crate::sharing::{Follower, Leader};
use crate::telemetry::{RoleKind, Telemetry};
use crate::time::{earliest, Instant};

/// A change a board applies to its pins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Drive the pilot this way from now on.
    Pilot(PilotOutput),
    /// Energise (`true`) or release the contactor coil.
    Contactor(bool),
}

/// Why a station cannot start with a configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StationError {
    /// The group has no station with this id.
    NotInGroup {
        id: u8,
    },
    Group(GroupConfigError),
    Point(ConfigError),
    Follower(FollowerError),
}

impl core::fmt::Display for StationError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NotInGroup { id } => write!(f, "station {id} is not in the group"),
            Self::Group(e) => write!(f, "group configuration: {e}"),
            Self::Point(e) => write!(f, "charge point configuration: {e}"),
            Self::Follower(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for StationError {}

// A station is one or the other for its whole life, and there is no heap to
// box the larger one into.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Role<const S: usize, const N: usize> {
    Leader(Leader<S, N>),
    Follower(Follower<S, N>),
}

/// What telemetry last said, to report changes only.
#[derive(Debug, Clone, Copy, Default)]
struct Shown {
    joined: bool,
    fallen_back: bool,
    grant: Option<u16>,
    fault: bool,
}

/// Telemetry lines a station holds before the driver drains them.
const TELEMETRY_QUEUE: usize = 16;

/// One station. See the module documentation.
#[derive(Debug)]
pub struct Station<const S: usize = MAX_STATIONS, const N: usize = MAX_NODES> {
    id: u8,
    point: ChargePoint,
    role: Role<S, N>,
    outputs: Deque<Output, 8>,
    telemetry: Deque<Telemetry, TELEMETRY_QUEUE>,
    /// Telemetry lines that did not fit, reported when there is room.
    telemetry_lost: u16,
    shown: Shown,
}

/// The charge point settings a station derives from its entry in the
/// site plan: its nameplate, capped by its own breaker.
pub fn point_config<const S: usize, const N: usize>(
    group: &GroupConfig<S, N>,
    id: u8,
) -> Result<ChargePointConfig, StationError> {
    let me = group
        .stations
        .iter()
        .find(|s| s.id == id)
        .ok_or(StationError::NotInGroup { id })?;
    let mut c = ChargePointConfig::new(me.nameplate_da);
    c.max_current_da = me.cap_da();
    c.validate().map_err(StationError::Point)?;
    Ok(c)
}

impl<const S: usize, const N: usize> Station<S, N> {
    /// Station `id` of `group`, booting at `now`. `boot` must differ at
    /// every boot (a boot counter in flash or a hardware RNG).
    pub fn new(
        group: GroupConfig<S, N>,
        id: u8,
        boot: u32,
        now: Instant,
    ) -> Result<Self, StationError> {
        let point = ChargePoint::new(point_config(&group, id)?).map_err(StationError::Point)?;
        let (role, kind) = if id == group.leader {
            (
                Role::Leader(Leader::new(group, boot, now).map_err(StationError::Group)?),
                RoleKind::Leader,
            )
        } else {
            group.validate().map_err(StationError::Group)?;
            (
                Role::Follower(
                    Follower::new(group, id, boot, now).map_err(StationError::Follower)?,
                ),
                RoleKind::Follower,
            )
        };
        let mut s = Self {
            id,
            point,
            role,
            outputs: Deque::new(),
            telemetry: Deque::new(),
            telemetry_lost: 0,
            shown: Shown {
                // The leader is its own group.
                joined: kind == RoleKind::Leader,
                // A station boots offering nothing: a first grant of 0 is no news.
                grant: Some(0),
                ..Shown::default()
            },
        };
        s.report(Telemetry::Boot { role: kind });
        s.settle(now);
        Ok(s)
    }

    #[must_use]
    pub fn id(&self) -> u8 {
        self.id
    }

    /// The charge point's status (what a board may show on its display).
    #[must_use]
    pub fn status(&self) -> Status {
        self.point.status()
    }

    /// What the pilot drives now.
    #[must_use]
    pub fn pilot_output(&self) -> PilotOutput {
        self.point.pilot_output()
    }

    /// The leader part, if this station leads (for tests and telemetry).
    #[must_use]
    pub fn leader(&self) -> Option<&Leader<S, N>> {
        match &self.role {
            Role::Leader(l) => Some(l),
            Role::Follower(_) => None,
        }
    }

    /// The follower part, if this station follows.
    #[must_use]
    pub fn follower(&self) -> Option<&Follower<S, N>> {
        match &self.role {
            Role::Follower(f) => Some(f),
            Role::Leader(_) => None,
        }
    }

    /// One pilot sample (high and low plateaus).
    pub fn handle_pilot(&mut self, now: Instant, levels: PilotLevels) {
        self.point.handle_pilot(now, levels);
        self.settle(now);
    }

    /// Measured current per phase, deciamps.
    pub fn handle_current(&mut self, now: Instant, measured_da: [u16; 3]) {
        self.point.handle_current(now, measured_da);
        self.settle(now);
    }

    /// The contactor's auxiliary contact.
    pub fn handle_relay_sense(&mut self, now: Instant, closed: bool) {
        self.point.handle_relay_sense(now, closed);
        self.settle(now);
    }

    /// Bytes from the RS-485 sharing link.
    pub fn handle_link_rx(&mut self, now: Instant, bytes: &[u8]) {
        match &mut self.role {
            Role::Leader(l) => l.handle_rx(now, bytes),
            Role::Follower(f) => f.handle_rx(now, bytes),
        }
        self.settle(now);
    }

    /// Bytes from the meter's Modbus line (the leader reads the meter).
    pub fn handle_meter_rx(&mut self, now: Instant, bytes: &[u8]) {
        if let Role::Leader(l) = &mut self.role {
            l.handle_meter_rx(now, bytes);
        }
        self.settle(now);
    }

    /// Run every timer that is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.point.handle_timeout(now);
        self.settle(now);
    }

    /// The next pin change.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The next frame for the sharing link, encoded into `buf`.
    #[must_use]
    pub fn poll_transmit(&mut self, buf: &mut [u8; MAX_FRAME]) -> Option<usize> {
        match &mut self.role {
            Role::Leader(l) => l.poll_transmit(buf),
            Role::Follower(f) => f.poll_transmit(buf),
        }
    }

    /// The next request for the meter's line.
    #[must_use]
    pub fn poll_meter_transmit(&mut self) -> Option<Vec<u8, 16>> {
        match &mut self.role {
            Role::Leader(l) => l.poll_meter_transmit(),
            Role::Follower(_) => None,
        }
    }

    /// The next telemetry line for the debug channel
    /// ([`Telemetry::encode`] gives its bytes).
    #[must_use]
    pub fn poll_telemetry(&mut self) -> Option<Telemetry> {
        let t = self.telemetry.pop_front();
        if self.telemetry_lost > 0 && !self.telemetry.is_full() {
            // Say what was lost, once there is room to.
            let _ = self.telemetry.push_back(Telemetry::Lost {
                count: self.telemetry_lost,
            });
            self.telemetry_lost = 0;
        }
        t
    }

    /// When [`Self::handle_timeout`] must be called next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let role = match &self.role {
            Role::Leader(l) => l.poll_timeout(),
            Role::Follower(f) => f.poll_timeout(),
        };
        earliest(self.point.poll_timeout(), role)
    }

    fn report(&mut self, t: Telemetry) {
        if self.telemetry.push_back(t).is_err() {
            self.telemetry_lost = self.telemetry_lost.saturating_add(1);
        }
    }

    /// The loop: role timers, allocation to the point, the point's outputs,
    /// its status back to the role, until nothing moves.
    fn settle(&mut self, now: Instant) {
        // Each round either applies an allocation or moves an output; both
        // settle within a few rounds (an allocation is applied once, and
        // the point's outputs follow from it).
        for _ in 0..8 {
            let alloc = match &mut self.role {
                Role::Leader(l) => {
                    l.handle_timeout(now);
                    l.poll_local_allocation()
                }
                Role::Follower(f) => {
                    f.handle_timeout(now);
                    f.poll_allocation()
                }
            };
            self.report_link();
            if let Some(a) = alloc {
                self.point.handle_allocation(now, a);
                self.report_allocation(a);
            }
            let mut moved = false;
            while let Some(e) = self.point.poll_event() {
                match e {
                    Event::Pilot(p) => {
                        moved = true;
                        self.push_output(Output::Pilot(p));
                    }
                    Event::Contactor(c) => {
                        moved = true;
                        self.push_output(Output::Contactor(c));
                    }
                    Event::Fault(f) => self.report_fault(f),
                    Event::State(_) => {}
                }
            }
            let status = self.point.status();
            match &mut self.role {
                Role::Leader(l) => l.handle_local_status(now, &status),
                Role::Follower(f) => f.handle_local_status(&status),
            }
            if !moved && alloc.is_none() {
                break;
            }
        }
        self.report_link();
        if self.shown.fault && self.point.status().fault.is_none() {
            self.shown.fault = false;
            self.report(Telemetry::FaultCleared);
        }
    }

    fn push_output(&mut self, o: Output) {
        // The board drains outputs after every call; should one not, the
        // newest pin state wins: an older change of the same pin is dropped.
        if self.outputs.is_full() {
            let same_pin = |x: &Output| core::mem::discriminant(x) == core::mem::discriminant(&o);
            let mut kept: Deque<Output, 8> = Deque::new();
            while let Some(x) = self.outputs.pop_front() {
                if !same_pin(&x) {
                    let _ = kept.push_back(x);
                }
            }
            self.outputs = kept;
        }
        let _ = self.outputs.push_back(o);
    }

    fn report_fault(&mut self, f: Fault) {
        self.shown.fault = true;
        self.report(Telemetry::Fault(f));
    }

    fn report_allocation(&mut self, da: u16) {
        // A fallback is reported as such (by `report_link`), not as a grant.
        if self.follower().is_some_and(Follower::fallen_back) {
            return;
        }
        if self.shown.grant != Some(da) {
            self.shown.grant = Some(da);
            self.report(Telemetry::Grant { da });
        }
    }

    fn report_link(&mut self) {
        let Some(f) = self.follower() else { return };
        let (joined, fallen_back, offer) = (f.joined(), f.fallen_back(), f.offer_da());
        if fallen_back != self.shown.fallen_back {
            self.shown.fallen_back = fallen_back;
            if fallen_back {
                self.shown.grant = Some(offer);
                self.report(Telemetry::FallbackEntered { da: offer });
            } else {
                self.report(Telemetry::FallbackLeft);
            }
        }
        if joined != self.shown.joined {
            self.shown.joined = joined;
            self.report(if joined {
                Telemetry::Joined
            } else {
                Telemetry::Left
            });
        }
    }
}

#[cfg(test)]
mod tests;
