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
    ChargePoint, ChargePointConfig, ConfigError, Event, PilotOutput, Status,
};
use crate::commission::{Commission, LimitCommand, Receiver};
use crate::pilot::PilotLevels;
use crate::sharing::config::{GroupConfig, GroupConfigError, MAX_NODES, MAX_STATIONS};
use crate::sharing::follower::FollowerError;
use crate::sharing::frame::{Key, MAX_FRAME};
use crate::sharing::{Follower, Leader};
use crate::telemetry::{Refusal, RoleKind, Telemetry};
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

/// A station running on a configuration it has validated.
#[derive(Debug)]
struct Running<const S: usize, const N: usize> {
    id: u8,
    point: ChargePoint,
    role: Role<S, N>,
    shown: Shown,
}

/// One station. See the module documentation.
///
/// A station image boots [`Station::awaiting`] its site plan, which the
/// harness sends on the debug channel ([`crate::commission`]); until then
/// it offers nothing. [`Station::new`] starts one on a plan directly (tests,
/// and an image built for one site).
#[derive(Debug)]
pub struct Station<const S: usize = MAX_STATIONS, const N: usize = MAX_NODES> {
    receiver: Receiver<S, N>,
    boot: u32,
    /// Configurations taken since boot: each gets a fresh boot id on the
    /// link, so a peer never takes its frames for replays.
    configs: u32,
    run: Option<Running<S, N>>,
    io: Io,
}

/// What a station has for its driver: pin changes and telemetry lines.
#[derive(Debug, Default)]
struct Io {
    outputs: Deque<Output, 8>,
    telemetry: Deque<Telemetry, TELEMETRY_QUEUE>,
    /// Telemetry lines that did not fit, reported when there is room.
    telemetry_lost: u16,
}

impl Io {
    fn report(&mut self, t: Telemetry) {
        if self.telemetry.push_back(t).is_err() {
            self.telemetry_lost = self.telemetry_lost.saturating_add(1);
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
    c.overcurrent_retry = group.timing.overcurrent_retry;
    c.validate().map_err(StationError::Point)?;
    Ok(c)
}

impl<const S: usize, const N: usize> Station<S, N> {
    /// A station that waits for its site plan, authenticated with
    /// `bench_key`. `boot` must differ at every boot (a boot counter in
    /// flash or a hardware RNG).
    #[must_use]
    pub fn awaiting(bench_key: Key, boot: u32) -> Self {
        Self {
            receiver: Receiver::new(bench_key),
            boot,
            configs: 0,
            run: None,
            io: Io::default(),
        }
    }

    /// Station `id` of `group`, booting at `now` on that plan (validated
    /// here as a commissioned one is).
    pub fn new(
        group: GroupConfig<S, N>,
        id: u8,
        boot: u32,
        now: Instant,
    ) -> Result<Self, StationError> {
        let mut s = Self::awaiting(crate::commission::DEFAULT_BENCH_KEY, boot);
        s.start(group, id, now, None)?;
        Ok(s)
    }

    /// Run on `group` as station `id`. `accepted` is reported right before
    /// the boot, once the plan is known to start (after every line queued
    /// before it).
    fn start(
        &mut self,
        group: GroupConfig<S, N>,
        id: u8,
        now: Instant,
        accepted: Option<Telemetry>,
    ) -> Result<(), StationError> {
        let point = ChargePoint::new(point_config(&group, id)?).map_err(StationError::Point)?;
        let boot = self
            .boot
            .wrapping_add(self.configs.wrapping_mul(0x9E37_79B9));
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
        self.configs = self.configs.wrapping_add(1);
        if self.run.is_some() {
            // A new plan replaces a running one: the pins go safe first.
            self.io.push_output(Output::Contactor(false));
            self.io.push_output(Output::Pilot(PilotOutput::Steady));
        }
        self.run = Some(Running {
            id,
            point,
            role,
            shown: Shown {
                // The leader is its own group.
                joined: kind == RoleKind::Leader,
                // A station starts offering nothing: a first grant of 0 is no news.
                grant: Some(0),
                ..Shown::default()
            },
        });
        if let Some(a) = accepted {
            self.io.report(a);
        }
        self.io.report(Telemetry::Boot { role: kind });
        self.settle(now);
        Ok(())
    }

    /// Charging, holding its contactor (coil or contact closed) or a
    /// fault: it takes no new plan now (a swap must not open a loaded
    /// contactor, nor forget a weld or a latched fault).
    #[must_use]
    pub fn busy(&self) -> bool {
        self.run.as_ref().is_some_and(|r| {
            let st = r.point.status();
            st.contactor_closed || r.point.relay_closed() || st.fault.is_some()
        })
    }

    /// This station's id, once it has a plan.
    #[must_use]
    pub fn id(&self) -> Option<u8> {
        self.run.as_ref().map(|r| r.id)
    }

    /// The plan it runs on, to keep across reboots (a board writes it to
    /// flash with [`crate::commission::encode`] and feeds it back through
    /// [`Self::handle_debug_rx`] at boot).
    #[must_use]
    pub fn commission(&self) -> Option<Commission<S, N>> {
        let r = self.run.as_ref()?;
        let group = match &r.role {
            Role::Leader(l) => l.config().clone(),
            Role::Follower(f) => f.config().clone(),
        };
        Some(Commission { id: r.id, group })
    }

    /// The charge point's status (what a board may show on its display);
    /// `None` before the station has a plan.
    #[must_use]
    pub fn status(&self) -> Option<Status> {
        self.run.as_ref().map(|r| r.point.status())
    }

    /// What the pilot drives now.
    #[must_use]
    pub fn pilot_output(&self) -> PilotOutput {
        self.run
            .as_ref()
            .map_or(PilotOutput::Steady, |r| r.point.pilot_output())
    }

    /// The leader part, if this station leads (for tests).
    #[must_use]
    pub fn leader(&self) -> Option<&Leader<S, N>> {
        match self.run.as_ref().map(|r| &r.role) {
            Some(Role::Leader(l)) => Some(l),
            _ => None,
        }
    }

    /// The follower part, if this station follows.
    #[must_use]
    pub fn follower(&self) -> Option<&Follower<S, N>> {
        match self.run.as_ref().map(|r| &r.role) {
            Some(Role::Follower(f)) => Some(f),
            _ => None,
        }
    }

    /// Bytes from the debug channel: commissioning messages. A plan that
    /// validates replaces the one running (reported `config accepted`); one
    /// that does not is reported with its reason and changes nothing.
    pub fn handle_debug_rx(&mut self, now: Instant, bytes: &[u8]) {
        for &b in bytes {
            match self.receiver.handle_byte(b) {
                Some(Ok(_)) if self.busy() => {
                    // Only an idle station takes a new plan: a swap must not
                    // open a loaded contactor or forget a weld or a latch.
                    self.io.report(Telemetry::ConfigRefused(Refusal::Busy));
                }
                Some(Ok(c)) => {
                    let accepted = Telemetry::ConfigAccepted {
                        stations: u16::try_from(c.group.stations.len()).unwrap_or(u16::MAX),
                        nodes: u16::try_from(c.group.nodes.len()).unwrap_or(u16::MAX),
                    };
                    // The receiver ran every check `start` runs.
                    if self.start(c.group, c.id, now, Some(accepted)).is_err() {
                        self.io.report(Telemetry::ConfigRefused(Refusal::Invalid));
                    }
                }
                Some(Err(r)) => self.io.report(Telemetry::ConfigRefused(r)),
                None => {}
            }
            if let Some(cmd) = self.receiver.take_limit() {
                self.handle_limit(now, cmd);
            }
        }
    }

    /// An operator's limit line, as a [`Receiver`] read it
    /// ([`Receiver::take_limit`]): the leader takes it
    /// ([`Leader::set_limit`]); any other station refuses it. Either way the
    /// answer is telemetry. [`Self::handle_debug_rx`] calls this; a board
    /// with a receiver of its own calls it itself.
    pub fn handle_limit(&mut self, now: Instant, cmd: Result<LimitCommand, Refusal>) {
        let taken = cmd.and_then(|c| match self.run.as_mut().map(|r| &mut r.role) {
            Some(Role::Leader(l)) => l
                .set_limit(now, c.node, c.limit_da, c.seq)
                .map(|da| (c.node, da)),
            _ => Err(Refusal::NotLeader),
        });
        match taken {
            Ok((node, da)) => {
                self.io.report(Telemetry::Limit { node, da });
                self.settle(now);
            }
            Err(r) => self.io.report(Telemetry::LimitRefused(r)),
        }
    }

    /// One pilot sample (high and low plateaus).
    pub fn handle_pilot(&mut self, now: Instant, levels: PilotLevels) {
        if let Some(r) = self.run.as_mut() {
            r.point.handle_pilot(now, levels);
            self.settle(now);
        }
    }

    /// Measured current per phase, deciamps.
    pub fn handle_current(&mut self, now: Instant, measured_da: [u16; 3]) {
        if let Some(r) = self.run.as_mut() {
            r.point.handle_current(now, measured_da);
            self.settle(now);
        }
    }

    /// The contactor's auxiliary contact.
    pub fn handle_relay_sense(&mut self, now: Instant, closed: bool) {
        if let Some(r) = self.run.as_mut() {
            r.point.handle_relay_sense(now, closed);
            self.settle(now);
        }
    }

    /// Bytes from the RS-485 sharing link.
    pub fn handle_link_rx(&mut self, now: Instant, bytes: &[u8]) {
        if let Some(r) = self.run.as_mut() {
            match &mut r.role {
                Role::Leader(l) => l.handle_rx(now, bytes),
                Role::Follower(f) => f.handle_rx(now, bytes),
            }
            self.settle(now);
        }
    }

    /// Bytes from the meter's Modbus line (the leader reads the meter).
    pub fn handle_meter_rx(&mut self, now: Instant, bytes: &[u8]) {
        if let Some(r) = self.run.as_mut() {
            if let Role::Leader(l) = &mut r.role {
                l.handle_meter_rx(now, bytes);
            }
            self.settle(now);
        }
    }

    /// Run every timer that is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(r) = self.run.as_mut() {
            r.point.handle_timeout(now);
            self.settle(now);
        }
    }

    /// The next pin change.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.io.outputs.pop_front()
    }

    /// The next frame for the sharing link, encoded into `buf`.
    #[must_use]
    pub fn poll_transmit(&mut self, buf: &mut [u8; MAX_FRAME]) -> Option<usize> {
        match &mut self.run.as_mut()?.role {
            Role::Leader(l) => l.poll_transmit(buf),
            Role::Follower(f) => f.poll_transmit(buf),
        }
    }

    /// The next request for the meter's line.
    #[must_use]
    pub fn poll_meter_transmit(&mut self) -> Option<Vec<u8, 16>> {
        match &mut self.run.as_mut()?.role {
            Role::Leader(l) => l.poll_meter_transmit(),
            Role::Follower(_) => None,
        }
    }

    /// The next telemetry line for the debug channel
    /// ([`Telemetry::encode`] gives its bytes).
    #[must_use]
    pub fn poll_telemetry(&mut self) -> Option<Telemetry> {
        let io = &mut self.io;
        let t = io.telemetry.pop_front();
        if io.telemetry_lost > 0 && !io.telemetry.is_full() {
            // Say what was lost, once there is room to.
            let _ = io.telemetry.push_back(Telemetry::Lost {
                count: io.telemetry_lost,
            });
            io.telemetry_lost = 0;
        }
        t
    }

    /// When [`Self::handle_timeout`] must be called next; `None` before
    /// the station has a plan.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let r = self.run.as_ref()?;
        let role = match &r.role {
            Role::Leader(l) => l.poll_timeout(),
            Role::Follower(f) => f.poll_timeout(),
        };
        earliest(r.point.poll_timeout(), role)
    }

    /// The loop: role timers, allocation to the point, the point's outputs,
    /// its status back to the role, until nothing moves.
    fn settle(&mut self, now: Instant) {
        let (Some(r), io) = (self.run.as_mut(), &mut self.io) else {
            return;
        };
        // Each round either applies an allocation or moves an output; both
        // settle within a few rounds (an allocation is applied once, and
        // the point's outputs follow from it).
        for _ in 0..8 {
            let alloc = match &mut r.role {
                Role::Leader(l) => {
                    l.handle_timeout(now);
                    l.poll_local_allocation()
                }
                Role::Follower(f) => {
                    f.handle_timeout(now);
                    f.poll_allocation()
                }
            };
            report_link(r, io);
            if let Some(a) = alloc {
                r.point.handle_allocation(now, a);
                report_allocation(r, io, a);
            }
            let mut moved = false;
            while let Some(e) = r.point.poll_event() {
                match e {
                    Event::Pilot(p) => {
                        moved = true;
                        io.push_output(Output::Pilot(p));
                    }
                    Event::Contactor(c) => {
                        moved = true;
                        io.push_output(Output::Contactor(c));
                    }
                    Event::Fault(f) => {
                        r.shown.fault = true;
                        io.report(Telemetry::Fault(f));
                    }
                    Event::State(_) => {}
                }
            }
            let status = r.point.status();
            match &mut r.role {
                Role::Leader(l) => l.handle_local_status(now, &status),
                Role::Follower(f) => f.handle_local_status(&status),
            }
            if !moved && alloc.is_none() {
                break;
            }
        }
        report_link(r, io);
        let dropped = r.point.take_dropped_events();
        if dropped > 0 {
            io.report(Telemetry::Lost { count: dropped });
        }
        if r.shown.fault && r.point.status().fault.is_none() {
            r.shown.fault = false;
            io.report(Telemetry::FaultCleared);
        }
    }
}

fn report_allocation<const S: usize, const N: usize>(r: &mut Running<S, N>, io: &mut Io, da: u16) {
    // A fallback is reported as such (by `report_link`), not as a grant.
    if matches!(&r.role, Role::Follower(f) if f.fallen_back()) {
        return;
    }
    if r.shown.grant != Some(da) {
        r.shown.grant = Some(da);
        io.report(Telemetry::Grant { da });
    }
}

fn report_link<const S: usize, const N: usize>(r: &mut Running<S, N>, io: &mut Io) {
    let Role::Follower(f) = &r.role else { return };
    let (joined, fallen_back, offer) = (f.joined(), f.fallen_back(), f.offer_da());
    if fallen_back != r.shown.fallen_back {
        r.shown.fallen_back = fallen_back;
        if fallen_back {
            r.shown.grant = Some(offer);
            io.report(Telemetry::FallbackEntered { da: offer });
        } else {
            io.report(Telemetry::FallbackLeft);
        }
    }
    if joined != r.shown.joined {
        r.shown.joined = joined;
        io.report(if joined {
            Telemetry::Joined
        } else {
            Telemetry::Left
        });
    }
}

#[cfg(test)]
mod tests;
