//! The group's configuration: the supply tree, the stations, timing, the
//! meter, and its validation.
//!
//! Every station of a group is commissioned with the same [`GroupConfig`]
//! (like a site plan), so the leader can check that the followers' fallbacks
//! fit the tree, and a follower knows its leader. Owns validation; does not
//! own runtime state.

use heapless::Vec;

use super::alloc::{self, NodeSlot, MIN_DA};
use super::frame::Key;
use super::meter::MeterConfig;
use crate::time::{secs, Duration};

/// Most stations in a group: one leader and 255 followers.
pub const MAX_STATIONS: usize = 256;
/// Most nodes in a supply tree.
pub const MAX_NODES: usize = 128;
/// The longest period, timeout or delay a group may set: 7 days (the most
/// a scenario may take). Longer is a typo, and the bound keeps every
/// `now + timing` far from overflowing a u64 of microseconds.
pub const MAX_TIMING: Duration = secs(7 * 24 * 60 * 60);

/// A grid phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    L1,
    L2,
    L3,
}

impl Phase {
    #[must_use]
    pub const fn index(self) -> usize {
        match self {
            Self::L1 => 0,
            Self::L2 => 1,
            Self::L3 => 2,
        }
    }
}

/// One node of the supply tree: a service, panel or circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeConfig {
    pub parent: Option<u16>,
    /// Continuous current allowed per phase, deciamps.
    pub limit_da: u32,
    /// The breaker's rating, if known (for reports and the 80 % helper).
    pub breaker_da: Option<u32>,
}

/// The continuous limit for a breaker: `percent` of its rating (80 for the
/// North American continuous-load rule, 100 where IEC sites load fully).
#[must_use]
pub const fn continuous_limit_da(breaker_da: u32, percent: u32) -> u32 {
    breaker_da * percent / 100
}

/// One station of the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StationConfig {
    /// Address on the link; unique in the group.
    pub id: u8,
    /// The tree node it hangs from.
    pub node: u16,
    pub nameplate_da: u16,
    /// Its own breaker's continuous limit, if any.
    pub breaker_da: Option<u16>,
    /// 1 or 3.
    pub phases: u8,
    /// The grid phase its first phase is wired to.
    pub rotation: Phase,
    /// What it may offer on its own when it cannot hear the leader (0 or >= 6 A).
    pub fallback_da: u16,
    /// Higher is served first.
    pub priority: u8,
    /// Share above 6 A within its priority (1 = normal).
    pub weight: u8,
}

impl StationConfig {
    /// The grid phases this station loads.
    #[must_use]
    pub fn loads(&self) -> [bool; 3] {
        if self.phases >= 3 {
            [true; 3]
        } else {
            let mut l = [false; 3];
            l[self.rotation.index()] = true;
            l
        }
    }

    /// Its own cap: nameplate and own breaker.
    #[must_use]
    pub fn cap_da(&self) -> u16 {
        self.breaker_da
            .map_or(self.nameplate_da, |b| b.min(self.nameplate_da))
    }
}

/// Link and control timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// The leader recomputes and polls every follower this often.
    pub cycle: Duration,
    /// A follower not heard for this long is silent.
    pub silent_after: Duration,
    /// A follower that hears no valid leader frame for this long falls back.
    pub leader_timeout: Duration,
    /// A car follows a reduced duty within this (IEC 61851-1: 5 s).
    pub car_allowance: Duration,
    /// Unjoined followers ask to join this often.
    pub join_interval: Duration,
    /// With more cars than 6 A each allows, who charges rotates this often.
    pub rotation_period: Option<Duration>,
    /// Every station charges again this long after an overcurrent trip, if
    /// the car still asks (at most three times per plug-in); `None`, the
    /// default: it waits for the car to stop asking or leave.
    pub overcurrent_retry: Option<Duration>,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            cycle: secs(1),
            silent_after: secs(3),
            leader_timeout: secs(5),
            car_allowance: secs(5),
            join_interval: secs(1),
            rotation_period: Some(secs(15 * 60)),
            overcurrent_retry: None,
        }
    }
}

/// How the leader uses its mains meter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DynamicMode {
    /// Stations get the headroom left under the service node's limit by the
    /// other loads the meter sees.
    Headroom,
    /// Stations charge only from what would otherwise be exported.
    SolarSurplus,
}

/// Dynamic load balancing settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DynamicConfig {
    pub mode: DynamicMode,
    /// The node whose limit the meter watches (usually the root).
    pub node: u16,
    pub meter: MeterConfig,
    /// Other-load assumed per phase while the meter is silent, stale or
    /// implausible (deciamps). Safety wins: assume the worst.
    pub worst_case_other_da: u32,
    /// Kept free under the limit, deciamps.
    pub margin_da: u32,
    /// A paused car resumes only with this much above 6 A, deciamps.
    pub resume_margin_da: u16,
    /// A paused car stays paused at least this long.
    pub min_pause: Duration,
    /// Other-load estimates are the peak of this many readings (no flapping).
    pub peak_hold_readings: u8,
    /// Solar: start when surplus >= 6 A + this for `start_delay`.
    pub solar_start_margin_da: u16,
    pub solar_start_delay: Duration,
    /// Solar: stop when surplus < 6 A - this for `stop_delay`.
    pub solar_stop_margin_da: u16,
    pub solar_stop_delay: Duration,
}

/// Everything a group needs.
///
/// `S` and `N` are the most stations and tree nodes it can hold: an image
/// for a small site sizes them to the site, so a group of 6 does not cost
/// the RAM of 256 (see `cargo xtask images`). The defaults are the
/// protocol's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig<const S: usize = MAX_STATIONS, const N: usize = MAX_NODES> {
    pub group: u8,
    pub key: Key,
    /// Nothing charges until sharing is configured and enabled.
    pub enabled: bool,
    /// The leader's station id.
    pub leader: u8,
    pub nodes: Vec<NodeConfig, N>,
    pub stations: Vec<StationConfig, S>,
    pub timing: Timing,
    pub dynamic: Option<DynamicConfig>,
}

/// A configuration that must not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupConfigError {
    NoStations,
    UnknownParent {
        node: u16,
        parent: u16,
    },
    Cycle {
        node: u16,
    },
    UnknownNode {
        station: u8,
        node: u16,
    },
    DuplicateStation {
        station: u8,
    },
    LeaderNotInGroup {
        leader: u8,
    },
    BadPhases {
        station: u8,
        phases: u8,
    },
    BadFallback {
        station: u8,
        fallback_da: u16,
    },
    /// Without rotation, every station under the node must be able to get
    /// 6 A at once.
    LimitBelowMinimum {
        node: u16,
        phase: u8,
        limit_da: u32,
        needed_da: u32,
    },
    /// The fallbacks of the stations under the node could add up to more
    /// than its limit while the leader is lost.
    FallbacksOverLimit {
        node: u16,
        phase: u8,
        sum_da: u32,
        limit_da: u32,
    },
    UnknownMeterNode {
        node: u16,
    },
    /// A timing (named as in [`Timing`], [`DynamicConfig`] or
    /// [`MeterConfig`]) over [`MAX_TIMING`].
    TimingTooLong {
        field: &'static str,
        us: u64,
    },
    TimingUnsafe,
}

impl core::fmt::Display for GroupConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::NoStations => f.write_str("the group has no stations"),
            Self::UnknownParent { node, parent } => write!(f, "node {node} names unknown parent {parent}"),
            Self::Cycle { node } => write!(f, "node {node} is its own ancestor (a cycle in the tree)"),
            Self::UnknownNode { station, node } => write!(f, "station {station} hangs from unknown node {node}"),
            Self::DuplicateStation { station } => write!(f, "station id {station} is used twice"),
            Self::LeaderNotInGroup { leader } => write!(f, "leader {leader} is not one of the stations"),
            Self::BadPhases { station, phases } => write!(f, "station {station} has {phases} phases; expected 1 or 3"),
            Self::BadFallback { station, fallback_da } => {
                write!(f, "station {station} fallback {fallback_da} dA must be 0 or 60 dA..=its cap")
            }
            Self::LimitBelowMinimum { node, phase, limit_da, needed_da } => write!(
                f,
                "node {node} phase L{} allows {limit_da} dA but its stations need {needed_da} dA for 6 A each; lower the station count or turn rotation on",
                phase + 1
            ),
            Self::FallbacksOverLimit { node, phase, sum_da, limit_da } => write!(
                f,
                "fallbacks under node {node} phase L{} add up to {sum_da} dA, over its {limit_da} dA limit; a lost leader would overload it",
                phase + 1
            ),
            Self::UnknownMeterNode { node } => write!(f, "dynamic load names unknown node {node}"),
            Self::TimingTooLong { field, us } => write!(
                f,
                "timing: {field} is {us} us; expected at most {} us (7 days)",
                MAX_TIMING.ticks()
            ),
            Self::TimingUnsafe => f.write_str(
                "timing: cycle and join_interval must be above 0, silent_after at least two cycles and leader_timeout longer than silent_after",
            ),
        }
    }
}

impl core::error::Error for GroupConfigError {}

/// Things that are allowed but worth saying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupConfigWarning {
    /// The node's limit covers every station's full rating: sharing is not needed there.
    SharingNotNeeded {
        node: u16,
        limit_da: u32,
        nameplates_da: u32,
    },
}

impl<const S: usize, const N: usize> GroupConfig<S, N> {
    /// Index of a station id in `stations`.
    #[must_use]
    pub fn index_of(&self, id: u8) -> Option<usize> {
        self.stations.iter().position(|s| s.id == id)
    }

    /// Build the allocator's node slots (static limits).
    pub fn node_slots(&self, out: &mut Vec<NodeSlot, N>) {
        out.clear();
        for n in &self.nodes {
            let _ = out.push(NodeSlot::new(n.parent, [n.limit_da; 3]));
        }
    }

    /// Check everything; returns warnings when the configuration may run.
    pub fn validate(&self) -> Result<Vec<GroupConfigWarning, 8>, GroupConfigError> {
        if self.stations.is_empty() {
            return Err(GroupConfigError::NoStations);
        }
        let mut slots: Vec<NodeSlot, N> = Vec::new();
        self.node_slots(&mut slots);
        alloc::check_tree(&mut slots).map_err(|e| match e {
            alloc::AllocError::UnknownParent { node, parent } => {
                GroupConfigError::UnknownParent { node, parent }
            }
            alloc::AllocError::Cycle { node } => GroupConfigError::Cycle { node },
            _ => GroupConfigError::Cycle { node: 0 },
        })?;
        for (i, s) in self.stations.iter().enumerate() {
            if usize::from(s.node) >= self.nodes.len() {
                return Err(GroupConfigError::UnknownNode {
                    station: s.id,
                    node: s.node,
                });
            }
            if self.stations[..i].iter().any(|o| o.id == s.id) {
                return Err(GroupConfigError::DuplicateStation { station: s.id });
            }
            if s.phases != 1 && s.phases != 3 {
                return Err(GroupConfigError::BadPhases {
                    station: s.id,
                    phases: s.phases,
                });
            }
            if s.fallback_da != 0 && (s.fallback_da < MIN_DA || s.fallback_da > s.cap_da()) {
                return Err(GroupConfigError::BadFallback {
                    station: s.id,
                    fallback_da: s.fallback_da,
                });
            }
        }
        if self.index_of(self.leader).is_none() {
            return Err(GroupConfigError::LeaderNotInGroup {
                leader: self.leader,
            });
        }
        if let Some(d) = &self.dynamic {
            if usize::from(d.node) >= self.nodes.len() {
                return Err(GroupConfigError::UnknownMeterNode { node: d.node });
            }
        }
        if let Some((field, d)) = self.timings().find(|&(_, d)| d > MAX_TIMING) {
            return Err(GroupConfigError::TimingTooLong {
                field,
                us: d.ticks(),
            });
        }
        let t = &self.timing;
        // Bounded by MAX_TIMING above, so the sum cannot overflow.
        // A zero cycle or join interval would wake the leader or a
        // follower at the instant it just handled, forever.
        if t.cycle.ticks() == 0
            || t.join_interval.ticks() == 0
            || t.silent_after < t.cycle + t.cycle
            || t.leader_timeout <= t.silent_after
        {
            return Err(GroupConfigError::TimingUnsafe);
        }

        // Per node and phase: 6 A each, fallbacks, nameplates.
        let mut warnings = Vec::new();
        for (ni, node) in self.nodes.iter().enumerate() {
            let mut count = [0u32; 3];
            let mut fallback = [0u32; 3];
            let mut nameplates = 0u32;
            for s in &self.stations {
                if !self.is_under(s.node, ni) {
                    continue;
                }
                nameplates += u32::from(s.cap_da());
                for (p, on) in s.loads().into_iter().enumerate() {
                    if on {
                        count[p] += 1;
                        fallback[p] += u32::from(s.fallback_da);
                    }
                }
            }
            let rotation = self.timing.rotation_period.is_some();
            for p in 0..3 {
                let needed = count[p] * u32::from(MIN_DA);
                // A dynamic node's limit is what it may carry in all; the 6 A
                // check applies to its static limit too.
                if !rotation && needed > node.limit_da {
                    return Err(GroupConfigError::LimitBelowMinimum {
                        node: ni as u16,
                        phase: p as u8,
                        limit_da: node.limit_da,
                        needed_da: needed,
                    });
                }
                if fallback[p] > node.limit_da {
                    return Err(GroupConfigError::FallbacksOverLimit {
                        node: ni as u16,
                        phase: p as u8,
                        sum_da: fallback[p],
                        limit_da: node.limit_da,
                    });
                }
            }
            if nameplates > 0 && node.limit_da >= nameplates && self.dynamic.is_none() {
                let _ = warnings.push(GroupConfigWarning::SharingNotNeeded {
                    node: ni as u16,
                    limit_da: node.limit_da,
                    nameplates_da: nameplates,
                });
            }
        }
        Ok(warnings)
    }

    /// Every timing of the group, by its field name.
    fn timings(&self) -> impl Iterator<Item = (&'static str, Duration)> + '_ {
        let t = &self.timing;
        let d = self.dynamic.as_ref();
        [
            ("cycle", Some(t.cycle)),
            ("silent_after", Some(t.silent_after)),
            ("leader_timeout", Some(t.leader_timeout)),
            ("car_allowance", Some(t.car_allowance)),
            ("join_interval", Some(t.join_interval)),
            ("rotation_period", t.rotation_period),
            ("overcurrent_retry", t.overcurrent_retry),
            ("min_pause", d.map(|d| d.min_pause)),
            ("solar_start_delay", d.map(|d| d.solar_start_delay)),
            ("solar_stop_delay", d.map(|d| d.solar_stop_delay)),
            ("meter period", d.map(|d| d.meter.period)),
            (
                "meter response_timeout",
                d.map(|d| d.meter.response_timeout),
            ),
            ("meter stale_after", d.map(|d| d.meter.stale_after)),
        ]
        .into_iter()
        .filter_map(|(name, d)| d.map(|d| (name, d)))
    }

    /// Whether `node` is `ancestor` or below it.
    #[must_use]
    pub fn is_under(&self, node: u16, ancestor: usize) -> bool {
        let mut cur = Some(node);
        let mut steps = 0;
        while let Some(c) = cur {
            if usize::from(c) == ancestor {
                return true;
            }
            steps += 1;
            if steps > self.nodes.len() {
                return false;
            }
            cur = self.nodes.get(usize::from(c)).and_then(|n| n.parent);
        }
        false
    }
}
