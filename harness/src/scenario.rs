//! Scenario files (TOML) and their validation.
//!
//! Owns the file format and turning a file into a [`Scenario`] that can run:
//! every quantity parsed into its unit (refused with the accepted range, never
//! wrapped or clamped), every reference resolved, every rule of the site
//! checked: the firmware's own validation of the stations and the group
//! (called, not copied), the link's capacity for the sharing cycle, the
//! longest simulated time ([`MAX_DURATION_US`]), and expectations the
//! firmware could meet. A bad file gives a [`ScenarioError`] naming the file,
//! line and column of the offending key and what was expected; nothing runs.
//! Seeded `[[arrivals]]` are expanded here, at load time, into ordinary cars
//! and steps (`arrivals`). Does not run anything.
//!
//! The format is documented by example in `fixtures/scenarios/` and in the
//! README; the fields are the `Raw*` structs below.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use firmware::sharing::config as fw;
use serde::Deserialize;
use toml::Spanned;

use crate::units;
mod arrivals;
mod assertion;
mod expect;
pub use assertion::{AssertKind, Assertion, ASSERT_KINDS};
pub use expect::{Bound, CarExpectation, CarState, EnergyBound, NodeExpectation, Quantity, Spread};
use firmware::charge_point::{ChargePointConfig, ConfigError};
use firmware::sharing::frame::MAX_FRAME;
use firmware::sharing::meter::MeterConfig;
use firmware::time::{secs, Duration};
use rig::meter::MeterFault;
use rig::protocol::{CarSetting, Misbehave};

/// Every timeline action (`do = "..."`), for messages and the reference.
pub const ACTIONS: &[&str] = &[
    "arrive",
    "plug",
    "unplug",
    "request",
    "stop",
    "pause",
    "load-on",
    "load-off",
    "meter",
    "misbehave",
    "car",
    "link-down",
    "one-way",
    "partition",
    "noise",
    "repair",
    "crash",
    "reboot",
    "weld",
    "unweld",
    "forge",
    "check",
    "set-limit",
];

/// The limit in force at `t_us` in a schedule from
/// [`Scenario::limit_schedule`].
#[must_use]
pub fn limit_in(schedule: &[(u64, u32)], t_us: u64) -> u32 {
    schedule
        .iter()
        .take_while(|&&(t, _)| t <= t_us)
        .last()
        .map_or(0, |&(_, l)| l)
}

/// A scenario that failed to load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}:{line}:{column}: {message}")]
pub struct ScenarioError {
    pub path: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

type S = Spanned<String>;

/// The most simulated time a scenario may take, and the longest any of its
/// durations: 7 days.
pub const MAX_DURATION_US: u64 = 7 * 24 * 3_600 * 1_000_000;

/// The largest site current (node limits and breakers, the meter's figures,
/// other loads either way), deciamps: 10 kA, above any low-voltage service.
pub const MAX_SITE_DA: u32 = 100_000;

/// Bits on the wire per byte on the sharing link (8N1: start, 8 data, stop).
const LINK_BITS_PER_BYTE: u64 = 10;

/// Frames per follower per cycle: the leader's grant and the follower's status.
const FRAMES_PER_STATION: u64 = 2;

/// The shortest sharing cycle that can poll the whole group at `baud`, in
/// microseconds: `stations x 2 frames x MAX_FRAME bytes x 10 bits / baud`
/// (rounded up). Each cycle the leader sends every follower its grant and
/// each follower answers with its status, every frame at most `MAX_FRAME`
/// bytes; a shorter cycle queues frames without end.
#[must_use]
pub fn min_cycle_us(stations: usize, baud: u32) -> u64 {
    let bits = (stations as u64)
        .saturating_mul(FRAMES_PER_STATION * MAX_FRAME as u64 * LINK_BITS_PER_BYTE);
    bits.saturating_mul(1_000_000)
        .div_ceil(u64::from(baud.max(1)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: Option<S>,
    description: Option<String>,
    system: Option<String>,
    duration: S,
    #[serde(default)]
    seed: u64,
    /// `sim` (default) or `hardware`: a hardware scenario is skipped without a fixture.
    #[serde(default)]
    requires: Option<S>,
    /// In the hardware set: the scenarios a lab bench runs
    /// (`run --hardware-set`).
    #[serde(default, rename = "hardware-set")]
    hardware_set: Option<Spanned<bool>>,
    /// `full` (default): the whole canonical trace is the golden file;
    /// `summary`: per-station totals (for long, large scenarios).
    golden: Option<S>,
    #[serde(default, rename = "node")]
    nodes: Vec<RawNode>,
    #[serde(default, rename = "station")]
    stations: Vec<RawStation>,
    #[serde(default, rename = "car")]
    cars: Vec<RawCar>,
    #[serde(default)]
    sharing: RawSharing,
    meter: Option<RawMeter>,
    #[serde(default)]
    bench: RawBench,
    #[serde(default, rename = "at")]
    timeline: Vec<RawStep>,
    #[serde(default)]
    expect: RawExpect,
    /// Assertions over time.
    #[serde(default, rename = "assert")]
    assertions: Vec<assertion::RawAssert>,
    /// Seeded sessions, expanded into cars and steps at load time.
    #[serde(default)]
    arrivals: Vec<arrivals::RawArrivals>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    name: S,
    parent: Option<S>,
    limit: S,
    breaker: Option<S>,
    /// `iec` (60898-1, default) or `ul` (489).
    standard: Option<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStation {
    id: Spanned<u8>,
    node: S,
    nameplate: S,
    breaker: Option<S>,
    phases: Option<Spanned<u8>>,
    rotation: Option<S>,
    fallback: Option<S>,
    #[serde(default)]
    priority: u8,
    weight: Option<Spanned<u8>>,
    #[serde(default)]
    leader: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCar {
    station: Spanned<u8>,
    max: Option<S>,
    phases: Option<Spanned<u8>>,
    capacity: Option<S>,
    soc: Option<Spanned<u16>>,
    knee: Option<Spanned<u16>>,
    target: Option<Spanned<u16>>,
    delay: Option<S>,
    delay_max: Option<S>,
    ramp: Option<S>,
    #[serde(default)]
    ventilation: bool,
    /// Auxiliary load drawn while full or paused (in state C).
    aux: Option<S>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSharing {
    enabled: Option<bool>,
    cycle: Option<S>,
    /// A duration, or "off".
    rotation: Option<S>,
    silent_after: Option<S>,
    leader_timeout: Option<S>,
    /// A duration: every station charges again this long after an
    /// overcurrent trip (off by default).
    overcurrent_retry: Option<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMeter {
    mode: S,
    node: S,
    worst_case_other: S,
    margin: Option<S>,
    resume_margin: Option<S>,
    min_pause: Option<S>,
    peak_hold: Option<u8>,
    solar_start_margin: Option<S>,
    solar_start_delay: Option<S>,
    solar_stop_margin: Option<S>,
    solar_stop_delay: Option<S>,
    /// Every reading off by up to this much per phase (seeded).
    noise: Option<S>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBench {
    contactor_close: Option<S>,
    contactor_open: Option<S>,
    link_baud: Option<Spanned<u32>>,
    link_latency: Option<S>,
    current_noise: Option<S>,
    current_offset: Option<S>,
    meter_baud: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    time: S,
    #[serde(rename = "do")]
    action: S,
    station: Option<Spanned<u8>>,
    name: Option<S>,
    /// `load-on`: "L1".."L123"; `car`: 1 or 3.
    phases: Option<Spanned<StepPhases>>,
    current: Option<S>,
    from: Option<Spanned<u8>>,
    to: Option<Spanned<u8>>,
    groups: Option<Vec<Vec<u8>>>,
    mode: Option<S>,
    kind: Option<S>,
    value: Option<S>,
    loss: Option<Spanned<f64>>,
    corrupt: Option<Spanned<f64>>,
    /// `car`: the car's new maximum, SoC, target, battery.
    max: Option<S>,
    soc: Option<Spanned<u16>>,
    target: Option<Spanned<u16>>,
    capacity: Option<S>,
    /// `car`: its auxiliary load.
    aux: Option<S>,
    expect: Option<Spanned<Vec<S>>>,
    expect_min: Option<Spanned<Vec<S>>>,
    expect_max: Option<Spanned<Vec<S>>>,
    /// Give or take, for every `expect`, `sum` and `draw` of the step that
    /// states none of its own.
    tolerance: Option<S>,
    expect_node: Option<Vec<expect::RawNodeExpect>>,
    expect_spread: Option<expect::RawSpread>,
    expect_car: Option<Vec<expect::RawCarExpect>>,
    within: Option<S>,
    /// The expectation holds until this time, not only until the next step.
    until: Option<S>,
    /// `set-limit`: the node, and its new limit (or `"plan"`).
    node: Option<S>,
    limit: Option<S>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    converge_within: Option<S>,
    #[serde(default)]
    reference: bool,
    breaker_safe: Option<bool>,
    iec: Option<bool>,
    measured_overload_max: Option<S>,
    /// Checks this scenario is built to fail (a demonstration of a fault the
    /// firmware cannot prevent, such as a car that ignores a reduction).
    #[serde(default)]
    known_violations: Vec<S>,
    /// Checks that do not apply to this scenario (say why in its description).
    #[serde(default)]
    skip: Vec<S>,
}

/// A step's `phases`: grid lines for a load (`"L123"`), a count for a
/// car (`3`).
#[derive(Debug)]
enum StepPhases {
    Lines(String),
    Count(u8),
}

impl<'de> Deserialize<'de> for StepPhases {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = StepPhases;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "phases = \"L1\", \"L2\", \"L3\" or \"L123\" (a load) or 1 or 3 (a car)",
                )
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<StepPhases, E> {
                Ok(StepPhases::Lines(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<StepPhases, E> {
                u8::try_from(v)
                    .map(StepPhases::Count)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
            }
        }
        d.deserialize_any(V)
    }
}

/// Which breaker standard a node's trip model follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerStandard {
    Iec60898,
    Ul489,
}

impl core::fmt::Display for BreakerStandard {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Iec60898 => "IEC 60898-1",
            Self::Ul489 => "UL 489",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub parent: Option<usize>,
    /// Continuous limit per phase, deciamps.
    pub limit_da: u32,
    pub breaker_da: Option<u32>,
    pub standard: BreakerStandard,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Station {
    pub id: u8,
    pub node: usize,
    pub nameplate_da: u16,
    pub breaker_da: Option<u16>,
    pub phases: u8,
    /// Grid phase of the station's first phase (0 = L1).
    pub rotation: u8,
    pub fallback_da: u16,
    pub priority: u8,
    pub weight: u8,
    pub leader: bool,
    /// 1-based line of the station's `id` in the file, for messages.
    pub line: usize,
}

impl Station {
    /// The station as the firmware is commissioned with it: the one
    /// conversion to the firmware's config (commissioning and the virtual
    /// bench). The checks and the reference allocator read the scenario
    /// itself ([`Station::loads`], [`Station::cap_da`]), so a wrong reading
    /// in the firmware's config code is not mirrored by the instrument.
    #[must_use]
    pub fn config(&self) -> fw::StationConfig {
        fw::StationConfig {
            id: self.id,
            node: self.node as u16,
            nameplate_da: self.nameplate_da,
            breaker_da: self.breaker_da,
            phases: self.phases,
            rotation: match self.rotation % 3 {
                1 => fw::Phase::L2,
                2 => fw::Phase::L3,
                _ => fw::Phase::L1,
            },
            fallback_da: self.fallback_da,
            priority: self.priority,
            weight: self.weight,
        }
    }

    /// The station's charging point as the firmware is configured with it:
    /// its rating, and at most its own cap.
    #[must_use]
    pub fn charge_point_config(&self) -> ChargePointConfig {
        let mut cpc = ChargePointConfig::new(self.nameplate_da);
        cpc.max_current_da = self.config().cap_da();
        cpc
    }

    /// Grid phases loaded, as the instrument reads the scenario (not the
    /// firmware's config code): a three-phase station loads L1-L3, a
    /// single-phase one the grid phase its rotation names.
    #[must_use]
    pub fn loads(&self) -> [bool; 3] {
        if self.phases >= 3 {
            [true; 3]
        } else {
            let mut l = [false; 3];
            l[usize::from(self.rotation % 3)] = true;
            l
        }
    }

    /// Its own cap, as the instrument reads the scenario: the nameplate,
    /// or the station's own breaker when that is lower.
    #[must_use]
    pub fn cap_da(&self) -> u16 {
        match self.breaker_da {
            Some(b) if b < self.nameplate_da => b,
            _ => self.nameplate_da,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Car {
    /// Index into `stations`.
    pub station: usize,
    pub max_da: u16,
    pub phases: u8,
    pub capacity_wh: u32,
    pub soc_permille: u16,
    pub knee_permille: u16,
    pub target_permille: u16,
    pub delay_ms: u32,
    pub delay_max_ms: Option<u32>,
    pub ramp_da_per_s: u16,
    pub ventilation: bool,
    /// Auxiliary load, deciamps per phase (0: none).
    pub aux_da: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sharing {
    pub enabled: bool,
    pub cycle_us: u64,
    pub rotation_us: Option<u64>,
    /// Stations retry this long after an overcurrent trip (`None`: off).
    pub overcurrent_retry_us: Option<u64>,
    pub silent_after_us: u64,
    pub leader_timeout_us: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeterMode {
    Headroom,
    Solar,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meter {
    pub mode: MeterMode,
    pub node: usize,
    pub worst_case_other_da: u32,
    pub margin_da: u32,
    pub resume_margin_da: u16,
    pub min_pause_us: u64,
    pub peak_hold: u8,
    pub solar_start_margin_da: u16,
    pub solar_start_delay_us: u64,
    pub solar_stop_margin_da: u16,
    pub solar_stop_delay_us: u64,
    /// Each reading the station gets is off by up to this, per phase.
    pub noise_da: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bench {
    pub contactor_close_us: u64,
    pub contactor_open_us: u64,
    pub link_baud: u32,
    pub link_latency_us: u64,
    pub current_noise_da: u16,
    pub current_offset_da: i16,
    pub meter_baud: u32,
}

/// Something that happens at a time in a scenario.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Plug in and ask for energy at once.
    Arrive(usize),
    Plug(usize),
    Unplug(usize),
    Request(usize),
    Stop(usize),
    Pause(usize),
    Load {
        name: String,
        phases: u8,
        da: i32,
        on: bool,
    },
    Meter(MeterFault),
    Misbehave(usize, Misbehave),
    /// The car on the station changes (a new maximum, target, battery; a
    /// new SoC sets its charge, anything else keeps it).
    Car(usize, Vec<CarSetting>),
    /// Sim only: the whole sharing link drops every frame.
    LinkDown,
    /// Sim only: frames from `from` to `to` are lost.
    OneWay {
        from: usize,
        to: usize,
    },
    /// Sim only: only stations in the same group hear each other.
    Partition(Vec<Vec<usize>>),
    /// Sim only: per-frame loss and corruption probabilities.
    Noise {
        loss: f64,
        corrupt: f64,
    },
    /// Sim only: every link fault cleared.
    Repair,
    /// Sim only: the station loses power (pins drop, state lost).
    Crash(usize),
    /// Sim only: the station boots again.
    Reboot(usize),
    /// Sim only: the station's contactor welds (or is freed).
    Welded(usize, bool),
    /// Sim only: a station outside the group sends a forged grant.
    Forge,
    /// Nothing happens: a checkpoint for an expectation (for example after
    /// a car finished charging on its own).
    Check,
    /// An operator's limit for a node (index), sent to the leader on its
    /// debug channel (`firmware::commission::LimitCommand`); `None`: back to
    /// the node's limit in the plan.
    SetLimit {
        node: usize,
        da: Option<u32>,
    },
}

impl Action {
    /// Whether the action needs the virtual bench (hardware cannot do it).
    #[must_use]
    pub fn sim_only(&self) -> bool {
        matches!(
            self,
            Self::LinkDown
                | Self::OneWay { .. }
                | Self::Partition(_)
                | Self::Noise { .. }
                | Self::Repair
                | Self::Crash(_)
                | Self::Reboot(_)
                | Self::Welded(..)
                | Self::Forge
        )
    }

    /// Whether it is a fault (for the failover check).
    #[must_use]
    pub fn is_fault(&self) -> bool {
        self.sim_only() && !matches!(self, Self::Repair)
            || matches!(self, Self::Meter(f) if *f != MeterFault::None)
            || matches!(self, Self::Misbehave(_, m) if *m != Misbehave::None)
    }
}

/// What must settle after a step, within `within_us`, and hold to the end
/// of its window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    /// The offered current per station (by index), deciamps; empty when
    /// the step states no offers, [`Bound::ANY`] for a station it leaves free.
    pub offers: Vec<Bound>,
    pub nodes: Vec<NodeExpectation>,
    pub spread: Option<Spread>,
    pub cars: Vec<CarExpectation>,
    pub within_us: u64,
    /// The end of the window; `None`: the next step (or the end of the run).
    pub until_us: Option<u64>,
    /// Computed by the harness's reference allocator, not written in the file.
    pub from_reference: bool,
}

impl Expectation {
    /// The exact offers, when the step states one value for every station.
    #[must_use]
    pub fn exact_offers(&self) -> Option<Vec<u32>> {
        if self.offers.is_empty() {
            return None;
        }
        self.offers.iter().map(Bound::exact).collect()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub at_us: u64,
    pub action: Action,
    pub expect: Option<Expectation>,
    /// 1-based line of the step in the file, for messages.
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    pub converge_within_us: u64,
    pub reference: bool,
    pub breaker_safe: bool,
    pub iec: bool,
    pub measured_overload_max_us: u64,
    pub known_violations: Vec<String>,
    pub skip: Vec<String>,
    /// With `reference`: where the reference allocator stopped computing
    /// expectations and where it resumed, for the report (filled by
    /// [`crate::oracle::fill_expectations`]).
    pub reference_notes: Vec<String>,
}

/// A validated scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub name: String,
    /// Line and column of the `name` key (none when named after the file).
    pub name_at: Option<(usize, usize)>,
    pub description: String,
    pub system: String,
    pub path: PathBuf,
    pub duration_us: u64,
    pub seed: u64,
    pub requires_hardware: bool,
    /// In the hardware set (`hardware-set = true`): what a lab bench runs.
    pub hardware_set: bool,
    /// The golden file holds the per-station summary, not every change.
    pub golden_summary: bool,
    pub nodes: Vec<Node>,
    pub stations: Vec<Station>,
    pub cars: Vec<Car>,
    pub sharing: Sharing,
    pub meter: Option<Meter>,
    pub bench: Bench,
    pub timeline: Vec<Step>,
    pub expect: Expect,
    /// `[[assert]]`: checked by the `assertions` check.
    pub assertions: Vec<Assertion>,
}

impl Scenario {
    /// Load and validate a file.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let bytes = std::fs::read(path).map_err(|e| ScenarioError {
            path: path.display().to_string(),
            line: 0,
            column: 0,
            message: format!("failed to read scenario: {e}"),
        })?;
        match std::str::from_utf8(&bytes) {
            Ok(text) => Self::parse(path, text),
            Err(e) => {
                let good = e.valid_up_to();
                // The prefix is valid UTF-8 by definition of `valid_up_to`.
                let text = std::str::from_utf8(&bytes[..good]).unwrap_or_default();
                let ctx = Ctx {
                    path: path.display().to_string(),
                    text,
                };
                Err(ctx.err_at(
                    good,
                    format!(
                        "the file is not UTF-8 text (byte 0x{:02X}); expected a TOML scenario file",
                        bytes[good]
                    ),
                ))
            }
        }
    }

    /// Parse and validate text (named `path` in messages).
    pub fn parse(path: &Path, text: &str) -> Result<Self, ScenarioError> {
        let ctx = Ctx {
            path: path.display().to_string(),
            text,
        };
        // TOML allows no control characters but tab and line ends: a file
        // with them is binary, or not meant for us.
        if let Some((i, b)) = text
            .bytes()
            .enumerate()
            .find(|(_, b)| b.is_ascii_control() && !matches!(b, b'\t' | b'\n' | b'\r'))
        {
            return Err(ctx.err_at(
                i,
                format!(
                    "control byte 0x{b:02X}: the file looks binary; expected a TOML scenario file"
                ),
            ));
        }
        let raw: RawScenario = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map_or((0, 0), |s| ctx.line_col(s.start));
            ScenarioError {
                path: ctx.path.clone(),
                line,
                column,
                message: e.message().trim().to_string(),
            }
        })?;
        ctx.validate(raw, path)
    }

    /// Index of the station with this id.
    #[must_use]
    pub fn station_index(&self, id: u8) -> Option<usize> {
        self.stations.iter().position(|s| s.id == id)
    }

    /// Whether `node` is `ancestor` or below it.
    #[must_use]
    pub fn is_under(&self, node: usize, ancestor: usize) -> bool {
        let mut cur = Some(node);
        for _ in 0..=self.nodes.len() {
            match cur {
                Some(c) if c == ancestor => return true,
                Some(c) => cur = self.nodes[c].parent,
                None => return false,
            }
        }
        false
    }

    /// The group configuration every station of the scenario is commissioned
    /// with: the one place the site is turned into the firmware's terms.
    #[must_use]
    pub fn group_config(&self) -> fw::GroupConfig {
        let mut nodes = heapless::Vec::new();
        for n in &self.nodes {
            let _ = nodes.push(fw::NodeConfig {
                parent: n.parent.map(|p| p as u16),
                limit_da: n.limit_da,
                breaker_da: n.breaker_da,
            });
        }
        let mut stations = heapless::Vec::new();
        for s in &self.stations {
            let _ = stations.push(s.config());
        }
        let timing = fw::Timing {
            cycle: Duration::from_ticks(self.sharing.cycle_us),
            silent_after: Duration::from_ticks(self.sharing.silent_after_us),
            leader_timeout: Duration::from_ticks(self.sharing.leader_timeout_us),
            car_allowance: secs(5),
            join_interval: secs(1),
            rotation_period: self.sharing.rotation_us.map(Duration::from_ticks),
            overcurrent_retry: self.sharing.overcurrent_retry_us.map(Duration::from_ticks),
        };
        let dynamic = self.meter.as_ref().map(|m| fw::DynamicConfig {
            mode: match m.mode {
                MeterMode::Headroom => fw::DynamicMode::Headroom,
                MeterMode::Solar => fw::DynamicMode::SolarSurplus,
            },
            node: m.node as u16,
            meter: MeterConfig::default(),
            worst_case_other_da: m.worst_case_other_da,
            margin_da: m.margin_da,
            resume_margin_da: m.resume_margin_da,
            min_pause: Duration::from_ticks(m.min_pause_us),
            peak_hold_readings: m.peak_hold,
            solar_start_margin_da: m.solar_start_margin_da,
            solar_start_delay: Duration::from_ticks(m.solar_start_delay_us),
            solar_stop_margin_da: m.solar_stop_margin_da,
            solar_stop_delay: Duration::from_ticks(m.solar_stop_delay_us),
        });
        let mut key = [0x5Bu8; 32];
        for (i, b) in self.name.bytes().enumerate() {
            key[i % 32] ^= b;
        }
        fw::GroupConfig {
            group: 1,
            key,
            enabled: self.sharing.enabled,
            leader: self.stations.iter().find(|s| s.leader).map_or(0, |s| s.id),
            nodes,
            stations,
            timing,
            dynamic,
        }
    }

    /// The limit the stations under `node` must keep, as change points
    /// `(t_us, limit_da)` from time 0 (the plan's limit). An operator's
    /// limit (`set-limit`) lower than the one in force binds one sharing
    /// cycle after it is sent (the leader cuts at once; each station
    /// follows when its grant reaches it, which a cycle bounds), a higher
    /// one at once. While the link is faulty a follower may not hear its
    /// cut: it binds a leader timeout later (by then a follower that hears
    /// nothing runs on its fallback, which the limit holds). A limit sent to
    /// a crashed leader is lost, and the leader's reboot gives the plan's
    /// limit back (it does not keep an operator's limit).
    #[must_use]
    pub fn limit_schedule(&self, node: usize) -> Vec<(u64, u32)> {
        let plan = self.nodes.get(node).map_or(0, |n| n.limit_da);
        let leader = self.stations.iter().position(|s| s.leader).unwrap_or(0);
        let mut out = vec![(0, plan)];
        let mut now = plan;
        let mut link_fault = false;
        let mut leader_down = false;
        for st in &self.timeline {
            let new = match st.action {
                Action::LinkDown
                | Action::OneWay { .. }
                | Action::Partition(_)
                | Action::Noise { .. } => {
                    link_fault = true;
                    continue;
                }
                Action::Repair => {
                    link_fault = false;
                    continue;
                }
                Action::Crash(i) if i == leader => {
                    leader_down = true;
                    continue;
                }
                Action::SetLimit { node: n, da } if n == node && !leader_down => da.unwrap_or(plan),
                Action::Reboot(i) if i == leader => {
                    leader_down = false;
                    plan
                }
                _ => continue,
            };
            let grace = if link_fault {
                self.sharing.cycle_us + self.sharing.leader_timeout_us
            } else {
                self.sharing.cycle_us
            };
            let at = if new < now {
                st.at_us.saturating_add(grace)
            } else {
                st.at_us
            };
            // A later change at an earlier instant (a raise right after a
            // cut) replaces what was due after it.
            while out.len() > 1 && out.last().is_some_and(|&(t, _)| t >= at) {
                out.pop();
            }
            out.push((at, new));
            now = new;
        }
        out
    }

    /// The limit of `node` in force at `t_us` ([`Self::limit_schedule`]).
    #[must_use]
    pub fn limit_at(&self, node: usize, t_us: u64) -> u32 {
        limit_in(&self.limit_schedule(node), t_us)
    }

    /// Whether any step needs the virtual bench.
    #[must_use]
    pub fn needs_sim(&self) -> bool {
        self.timeline.iter().any(|s| s.action.sim_only())
    }

    /// Whether it needs the virtual bench for more than power faults
    /// (`crash`, `reboot`), which a lab bench with power control makes.
    #[must_use]
    pub fn needs_sim_beyond_power(&self) -> bool {
        self.timeline.iter().any(|s| {
            s.action.sim_only() && !matches!(s.action, Action::Crash(_) | Action::Reboot(_))
        })
    }
}

struct Ctx<'a> {
    path: String,
    text: &'a str,
}

impl Ctx<'_> {
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before
            .rfind('\n')
            .map_or(before.len(), |i| before.len() - i - 1)
            + 1;
        (line, column)
    }

    fn err_at(&self, offset: usize, message: impl Into<String>) -> ScenarioError {
        let (line, column) = self.line_col(offset);
        ScenarioError {
            path: self.path.clone(),
            line,
            column,
            message: message.into(),
        }
    }

    fn err<T>(&self, v: &Spanned<T>, message: impl Into<String>) -> ScenarioError {
        self.err_at(v.span().start, message)
    }

    fn q<T>(&self, v: &S, f: impl Fn(&str) -> Result<T, String>) -> Result<T, ScenarioError> {
        f(v.get_ref()).map_err(|m| self.err(v, m))
    }

    /// Where nothing can be pointed at: the end of the file, where the
    /// missing part would go.
    fn err_end(&self, message: impl Into<String>) -> ScenarioError {
        self.err_at(self.text.len(), message)
    }

    /// A station current (16 bits of deciamps).
    fn da16(&self, v: &S) -> Result<u16, ScenarioError> {
        let da = self.q(v, |s| units::deciamps_upto(s, u32::from(u16::MAX)))?;
        u16::try_from(da).map_err(|_| self.err(v, "expected a current up to 6553.5A"))
    }

    /// A site current, up to [`MAX_SITE_DA`].
    fn site_da(&self, v: &S) -> Result<u32, ScenarioError> {
        self.q(v, |s| units::deciamps_upto(s, MAX_SITE_DA))
    }

    /// A duration, up to [`MAX_DURATION_US`].
    fn us(&self, v: &S) -> Result<u64, ScenarioError> {
        let us = self.q(v, units::micros)?;
        if us > MAX_DURATION_US {
            return Err(self.err(
                v,
                format!(
                    "expected a duration up to 7 days (\"7days\", the most simulated time a scenario may take), found \"{}\"",
                    v.get_ref()
                ),
            ));
        }
        Ok(us)
    }

    /// A duration in whole milliseconds (7 days fit 32 bits).
    fn ms(&self, v: &S) -> Result<u32, ScenarioError> {
        self.us(v)
            .map(|us| u32::try_from(us / 1_000).unwrap_or(u32::MAX))
    }

    fn opt_us(&self, v: &Option<S>, default_us: u64) -> Result<u64, ScenarioError> {
        v.as_ref().map_or(Ok(default_us), |v| self.us(v))
    }

    /// A percentage 0..=100 as permille.
    fn permille(
        &self,
        v: Option<&Spanned<u16>>,
        what: &str,
        default: u16,
    ) -> Result<u16, ScenarioError> {
        match v {
            None => Ok(default),
            Some(p) if *p.get_ref() <= 100 => Ok(p.get_ref() * 10),
            Some(p) => Err(self.err(
                p,
                format!(
                    "expected {what} from 0 to 100 (percent), found {}",
                    p.get_ref()
                ),
            )),
        }
    }

    /// A probability: a number from 0 to 1.
    fn probability(&self, v: Option<&Spanned<f64>>, what: &str) -> Result<f64, ScenarioError> {
        match v {
            None => Ok(0.0),
            Some(p) if (0.0..=1.0).contains(p.get_ref()) => Ok(*p.get_ref()),
            Some(p) => Err(self.err(
                p,
                format!(
                    "expected {what} from 0 to 1 (a probability per frame), found {}",
                    p.get_ref()
                ),
            )),
        }
    }

    /// A baud rate: at least 1.
    fn baud(
        &self,
        v: Option<&Spanned<u32>>,
        what: &str,
        default: u32,
    ) -> Result<u32, ScenarioError> {
        match v {
            None => Ok(default),
            Some(b) if *b.get_ref() >= 1 => Ok(*b.get_ref()),
            Some(b) => Err(self.err(
                b,
                format!("expected {what} of at least 1 (bits per second), found 0"),
            )),
        }
    }

    #[allow(clippy::too_many_lines)]
    fn validate(&self, raw: RawScenario, path: &Path) -> Result<Scenario, ScenarioError> {
        let file_name = path.file_stem().map_or_else(
            || "scenario".to_string(),
            |s| s.to_string_lossy().into_owned(),
        );
        let duration_us = self.us(&raw.duration)?;
        let requires_hardware = match &raw.requires {
            None => false,
            Some(r) if r.get_ref() == "sim" => false,
            Some(r) if r.get_ref() == "hardware" => true,
            Some(r) => return Err(self.err(r, "expected requires = \"sim\" or \"hardware\"")),
        };

        let hardware_set = raw.hardware_set.as_ref().is_some_and(|h| *h.get_ref());
        let golden_summary = match &raw.golden {
            None => false,
            Some(g) if g.get_ref() == "full" => false,
            Some(g) if g.get_ref() == "summary" => true,
            Some(g) => return Err(self.err(g, "expected golden = \"full\" or \"summary\"")),
        };

        // The supply tree.
        if raw.nodes.is_empty() {
            return Err(self.err_end("expected at least one [[node]] (the supply tree)"));
        }
        if let Some(n) = raw.nodes.get(fw::MAX_NODES) {
            return Err(self.err(
                &n.name,
                format!(
                    "expected at most {} nodes (the firmware's MAX_NODES); this is node {}",
                    fw::MAX_NODES,
                    fw::MAX_NODES + 1
                ),
            ));
        }
        let mut names: BTreeMap<String, usize> = BTreeMap::new();
        for (i, n) in raw.nodes.iter().enumerate() {
            if names.insert(n.name.get_ref().clone(), i).is_some() {
                return Err(self.err(
                    &n.name,
                    format!("node name \"{}\" is used twice", n.name.get_ref()),
                ));
            }
        }
        let mut nodes = Vec::new();
        for n in &raw.nodes {
            let parent = match &n.parent {
                None => None,
                Some(p) => Some(*names.get(p.get_ref()).ok_or_else(|| {
                    self.err(
                        p,
                        format!(
                            "unknown parent node \"{}\"; expected one of {}",
                            p.get_ref(),
                            names
                                .keys()
                                .map(String::as_str)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                })?),
            };
            let standard = match n.standard.as_ref().map(|s| s.get_ref().as_str()) {
                None | Some("iec") => BreakerStandard::Iec60898,
                Some("ul") => BreakerStandard::Ul489,
                Some(_) => {
                    return Err(self.err(
                        n.standard.as_ref().unwrap_or(&n.name),
                        "expected standard = \"iec\" or \"ul\"",
                    ))
                }
            };
            nodes.push(Node {
                name: n.name.get_ref().clone(),
                parent,
                limit_da: self.site_da(&n.limit)?,
                breaker_da: n.breaker.as_ref().map(|b| self.site_da(b)).transpose()?,
                standard,
            });
        }
        for (i, n) in raw.nodes.iter().enumerate() {
            let mut cur = nodes[i].parent;
            for _ in 0..=nodes.len() {
                match cur {
                    Some(c) if c == i => {
                        return Err(self.err(
                            &n.name,
                            format!(
                                "node \"{}\" is its own ancestor (a cycle)",
                                n.name.get_ref()
                            ),
                        ))
                    }
                    Some(c) => cur = nodes[c].parent,
                    None => break,
                }
            }
        }

        // Stations.
        if raw.stations.is_empty() {
            return Err(self.err_end("expected at least one [[station]]"));
        }
        if let Some(s) = raw.stations.get(fw::MAX_STATIONS) {
            return Err(self.err(
                &s.id,
                format!(
                    "expected at most {} stations (the firmware's MAX_STATIONS)",
                    fw::MAX_STATIONS
                ),
            ));
        }
        let mut stations: Vec<Station> = Vec::new();
        for s in &raw.stations {
            if stations.iter().any(|o| o.id == *s.id.get_ref()) {
                return Err(self.err(
                    &s.id,
                    format!("station id {} is used twice", s.id.get_ref()),
                ));
            }
            let node = *names.get(s.node.get_ref()).ok_or_else(|| {
                self.err(&s.node, format!("unknown node \"{}\"", s.node.get_ref()))
            })?;
            let phases = s.phases.as_ref().map_or(1, |p| *p.get_ref());
            if phases != 1 && phases != 3 {
                return Err(self.err(
                    s.phases.as_ref().unwrap_or(&s.id),
                    "expected phases = 1 or 3",
                ));
            }
            let rotation = match s.rotation.as_ref().map(|r| r.get_ref().as_str()) {
                None | Some("L1") => 0,
                Some("L2") => 1,
                Some("L3") => 2,
                Some(_) => {
                    return Err(self.err(
                        s.rotation.as_ref().unwrap_or(&s.node),
                        "expected rotation = \"L1\", \"L2\" or \"L3\"",
                    ))
                }
            };
            let nameplate_da = self.da16(&s.nameplate)?;
            let weight = s.weight.as_ref().map_or(1, |w| *w.get_ref());
            if weight == 0 {
                return Err(self.err(s.weight.as_ref().unwrap_or(&s.id), "expected weight >= 1"));
            }
            stations.push(Station {
                id: *s.id.get_ref(),
                node,
                nameplate_da,
                breaker_da: s.breaker.as_ref().map(|b| self.da16(b)).transpose()?,
                phases,
                rotation,
                fallback_da: s
                    .fallback
                    .as_ref()
                    .map(|f| self.da16(f))
                    .transpose()?
                    .unwrap_or(0),
                priority: s.priority,
                weight,
                leader: s.leader,
                line: self.line_col(s.id.span().start).0,
            });
            self.check_charge_point(s, &stations[stations.len() - 1])?;
        }
        let leaders = stations.iter().filter(|s| s.leader).count();
        if leaders != 1 {
            // At the second leader, or the first station when there is none.
            let at = raw
                .stations
                .iter()
                .filter(|s| s.leader)
                .nth(1)
                .unwrap_or(&raw.stations[0]);
            return Err(self.err(
                &at.id,
                format!("expected exactly one station with leader = true, found {leaders}"),
            ));
        }
        let index_of = |id: &Spanned<u8>| -> Result<usize, ScenarioError> {
            stations
                .iter()
                .position(|s| s.id == *id.get_ref())
                .ok_or_else(|| self.err(id, format!("unknown station {}", id.get_ref())))
        };

        // Cars.
        let mut cars = Vec::new();
        for c in &raw.cars {
            let station = index_of(&c.station)?;
            let phases = c.phases.as_ref().map_or(1, |p| *p.get_ref());
            if phases != 1 && phases != 3 {
                return Err(self.err(
                    c.phases.as_ref().unwrap_or(&c.station),
                    "expected phases = 1 or 3",
                ));
            }
            let ms = |v: &Option<S>| -> Result<Option<u32>, ScenarioError> {
                v.as_ref().map(|d| self.ms(d)).transpose()
            };
            let ramp = match &c.ramp {
                None => 200,
                Some(r) => {
                    let per_s = r
                        .get_ref()
                        .strip_suffix("/s")
                        .ok_or_else(|| self.err(r, "expected a ramp such as \"10A/s\""))?;
                    u16::try_from(
                        units::deciamps_upto(per_s, u32::from(u16::MAX))
                            .map_err(|m| self.err(r, m))?,
                    )
                    .map_err(|_| self.err(r, "expected a ramp up to 6553.5A/s"))?
                }
            };
            cars.push(Car {
                station,
                max_da: c
                    .max
                    .as_ref()
                    .map(|m| self.da16(m))
                    .transpose()?
                    .unwrap_or(320),
                phases,
                capacity_wh: c
                    .capacity
                    .as_ref()
                    .map(|e| self.q(e, units::watt_hours))
                    .transpose()?
                    .unwrap_or(60_000),
                soc_permille: self.permille(c.soc.as_ref(), "soc", 200)?,
                knee_permille: self.permille(c.knee.as_ref(), "knee", 800)?,
                target_permille: self.permille(c.target.as_ref(), "target", 1_000)?,
                delay_ms: ms(&c.delay)?.unwrap_or(2_000),
                delay_max_ms: ms(&c.delay_max)?,
                ramp_da_per_s: ramp,
                ventilation: c.ventilation,
                aux_da: c
                    .aux
                    .as_ref()
                    .map(|a| self.da16(a))
                    .transpose()?
                    .unwrap_or(0),
            });
        }

        // Sharing.
        let rotation_us = match &raw.sharing.rotation {
            None => Some(15 * 60 * 1_000_000),
            Some(r) if r.get_ref() == "off" => None,
            Some(r) => Some(self.us(r)?),
        };
        let sharing = Sharing {
            enabled: raw.sharing.enabled.unwrap_or(true),
            cycle_us: self.opt_us(&raw.sharing.cycle, 1_000_000)?,
            rotation_us,
            overcurrent_retry_us: match &raw.sharing.overcurrent_retry {
                None => None,
                Some(r) => {
                    let us = self.us(r)?;
                    let min = firmware::charge_point::OVERCURRENT_RETRY_MIN.ticks();
                    if us < min {
                        return Err(self.err(
                            r,
                            format!(
                                "overcurrent_retry must be at least {} s: sooner, the contactor would cycle under a car that keeps overdrawing",
                                min / 1_000_000
                            ),
                        ));
                    }
                    Some(us)
                }
            },
            silent_after_us: self.opt_us(&raw.sharing.silent_after, 3_000_000)?,
            leader_timeout_us: self.opt_us(&raw.sharing.leader_timeout, 5_000_000)?,
        };

        // Meter.
        let meter = match &raw.meter {
            None => None,
            Some(m) => {
                let mode = match m.mode.get_ref().as_str() {
                    "headroom" => MeterMode::Headroom,
                    "solar" => MeterMode::Solar,
                    _ => return Err(self.err(&m.mode, "expected mode = \"headroom\" or \"solar\"")),
                };
                let node = *names.get(m.node.get_ref()).ok_or_else(|| {
                    self.err(&m.node, format!("unknown node \"{}\"", m.node.get_ref()))
                })?;
                let da = |v: &Option<S>, d: u32| -> Result<u32, ScenarioError> {
                    v.as_ref().map_or(Ok(d), |v| self.site_da(v))
                };
                let da16 = |v: &Option<S>, d: u16| -> Result<u16, ScenarioError> {
                    v.as_ref().map_or(Ok(d), |v| self.da16(v))
                };
                Some(Meter {
                    mode,
                    node,
                    worst_case_other_da: self.site_da(&m.worst_case_other)?,
                    margin_da: da(&m.margin, 10)?,
                    resume_margin_da: da16(&m.resume_margin, 20)?,
                    min_pause_us: self.opt_us(&m.min_pause, 60_000_000)?,
                    peak_hold: m.peak_hold.unwrap_or(10),
                    solar_start_margin_da: da16(&m.solar_start_margin, 10)?,
                    solar_start_delay_us: self.opt_us(&m.solar_start_delay, 60_000_000)?,
                    solar_stop_margin_da: da16(&m.solar_stop_margin, 10)?,
                    solar_stop_delay_us: self.opt_us(&m.solar_stop_delay, 120_000_000)?,
                    noise_da: da16(&m.noise, 0)?,
                })
            }
        };
        // The margin is all the leader holds back for a reading's error: a
        // meter that reads low by more lets the node carry more than its
        // limit (80.9 A on dynamic-home's 80 A service for 1.9 s, with 8 A
        // of noise and a 2 A margin). A margin of at least the meter's
        // error is the installer's rule; the firmware cannot know the error.
        if let (Some(m), Some(noise)) = (&meter, raw.meter.as_ref().and_then(|r| r.noise.as_ref()))
        {
            if m.mode == MeterMode::Headroom && u32::from(m.noise_da) > m.margin_da {
                return Err(self.err(
                    noise,
                    format!(
                        "the meter's noise ({}) is more than its margin ({}): the leader holds back only the margin for a reading's error, so a low reading could let the node carry more than its limit; expected a margin of at least the noise",
                        crate::units::amps_text(i64::from(m.noise_da)),
                        crate::units::amps_text(i64::from(m.margin_da))
                    ),
                ));
            }
        }

        let b = &raw.bench;
        let bench = Bench {
            contactor_close_us: self.opt_us(&b.contactor_close, 110_000)?,
            contactor_open_us: self.opt_us(&b.contactor_open, 100_000)?,
            link_baud: self.baud(b.link_baud.as_ref(), "link_baud", 115_200)?,
            link_latency_us: self.opt_us(&b.link_latency, 1_000)?,
            current_noise_da: b
                .current_noise
                .as_ref()
                .map(|v| self.da16(v))
                .transpose()?
                .unwrap_or(0),
            current_offset_da: b
                .current_offset
                .as_ref()
                .map(|v| {
                    self.q(v, |s| units::signed_deciamps_within(s, i16::MAX as u32))
                        .map(|x| i16::try_from(x).unwrap_or(0))
                })
                .transpose()?
                .unwrap_or(0),
            meter_baud: self.baud(b.meter_baud.as_ref(), "meter_baud", 9_600)?,
        };
        self.check_cycle(&raw, &sharing, &bench, stations.len())?;

        let e = &raw.expect;
        let expect = Expect {
            converge_within_us: self.opt_us(&e.converge_within, 30_000_000)?,
            reference: e.reference,
            breaker_safe: e.breaker_safe.unwrap_or(true),
            iec: e.iec.unwrap_or(true),
            measured_overload_max_us: self.opt_us(&e.measured_overload_max, 0)?,
            known_violations: e
                .known_violations
                .iter()
                .map(|k| k.get_ref().clone())
                .collect(),
            skip: e.skip.iter().map(|k| k.get_ref().clone()).collect(),
            reference_notes: Vec::new(),
        };
        for (list, k) in e
            .known_violations
            .iter()
            .map(|k| ("known_violations", k))
            .chain(e.skip.iter().map(|k| ("skip", k)))
        {
            if !crate::checks::CHECK_NAMES.contains(&k.get_ref().as_str()) {
                return Err(self.err(
                    k,
                    format!(
                        "{list} names unknown check \"{}\"; expected one of {}",
                        k.get_ref(),
                        crate::checks::CHECK_NAMES.join(", ")
                    ),
                ));
            }
        }

        // Timeline.
        let mut timeline = Vec::new();
        let mut last = 0;
        let mut load_names = std::collections::BTreeSet::new();
        // The nodes with the limits in force at each step (`set-limit`),
        // for a node expectation of `sum = "limit"`.
        let mut in_force = nodes.clone();
        for st in &raw.timeline {
            let at_us = self.us(&st.time)?;
            if st.action.get_ref() != "car" {
                let car_key = [
                    ("max", st.max.as_ref().map(|v| v.span().start)),
                    ("soc", st.soc.as_ref().map(|v| v.span().start)),
                    ("target", st.target.as_ref().map(|v| v.span().start)),
                    ("capacity", st.capacity.as_ref().map(|v| v.span().start)),
                    ("aux", st.aux.as_ref().map(|v| v.span().start)),
                ]
                .into_iter()
                .find_map(|(k, at)| at.map(|at| (k, at)));
                if let Some((key, at)) = car_key {
                    return Err(self.err_at(
                        at,
                        format!(
                            "{key} is for do = \"car\"; this step does \"{}\"",
                            st.action.get_ref()
                        ),
                    ));
                }
            }
            if st.action.get_ref() != "set-limit" {
                if let Some(v) = st.node.as_ref().or(st.limit.as_ref()) {
                    return Err(self.err(
                        v,
                        format!(
                            "node and limit are for do = \"set-limit\"; this step does \"{}\"",
                            st.action.get_ref()
                        ),
                    ));
                }
            }
            if at_us < last {
                return Err(self.err(&st.time, "timeline steps must be in time order"));
            }
            if at_us > duration_us {
                return Err(self.err(&st.time, "step is after the end of the scenario (duration)"));
            }
            last = at_us;
            let need_station = || -> Result<usize, ScenarioError> {
                st.station.as_ref().map_or_else(
                    || Err(self.err(&st.action, "expected station = <id> for this action")),
                    &index_of,
                )
            };
            let action = match st.action.get_ref().as_str() {
                "arrive" => Action::Arrive(need_station()?),
                "plug" => Action::Plug(need_station()?),
                "unplug" => Action::Unplug(need_station()?),
                "request" => Action::Request(need_station()?),
                "stop" => Action::Stop(need_station()?),
                "pause" => Action::Pause(need_station()?),
                "load-on" | "load-off" => {
                    let name = st.name.as_ref().ok_or_else(|| {
                        self.err(&st.action, "expected name = \"...\" for a load")
                    })?;
                    if name.get_ref().len() > 15 || name.get_ref().contains(' ') {
                        return Err(self.err(
                            name,
                            "expected a load name under 16 characters without spaces",
                        ));
                    }
                    load_names.insert(name.get_ref().as_str());
                    if load_names.len() > rig::loads::MAX_LOADS {
                        return Err(self.err(name, format!("expected at most {} distinct load names (the fixture's MAX_LOADS); this is load {}", rig::loads::MAX_LOADS, load_names.len())));
                    }
                    let lines = st.phases.as_ref().map(|p| match p.get_ref() {
                        StepPhases::Lines(l) => l.as_str(),
                        StepPhases::Count(_) => "",
                    });
                    let phases = match lines {
                        None | Some("L1") => 1,
                        Some("L2") => 2,
                        Some("L3") => 4,
                        Some("L123") => 7,
                        Some(_) => {
                            let at = st
                                .phases
                                .as_ref()
                                .map_or(name.span().start, |p| p.span().start);
                            return Err(self.err_at(
                                at,
                                "expected phases = \"L1\", \"L2\", \"L3\" or \"L123\" for a load",
                            ));
                        }
                    };
                    let da = match &st.current {
                        Some(c) => self.q(c, |s| units::signed_deciamps_within(s, MAX_SITE_DA))?,
                        None if st.action.get_ref() == "load-off" => 0,
                        None => {
                            return Err(
                                self.err(&st.action, "expected current = \"13A\" for load-on")
                            )
                        }
                    };
                    Action::Load {
                        name: name.get_ref().clone(),
                        phases,
                        da,
                        on: st.action.get_ref() == "load-on",
                    }
                }
                "meter" => {
                    let m = st.mode.as_ref().ok_or_else(|| self.err(&st.action, "expected mode = \"ok\"|\"silent\"|\"garbage\"|\"stale\"|\"implausible\""))?;
                    Action::Meter(match m.get_ref().as_str() {
                        "ok" => MeterFault::None,
                        "silent" => MeterFault::Silent,
                        "garbage" => MeterFault::Garbage,
                        "stale" => MeterFault::Stale,
                        "implausible" => MeterFault::Implausible,
                        _ => return Err(self.err(m, "expected mode = \"ok\"|\"silent\"|\"garbage\"|\"stale\"|\"implausible\"")),
                    })
                }
                "misbehave" => {
                    let station = need_station()?;
                    let k = st
                        .kind
                        .as_ref()
                        .ok_or_else(|| self.err(&st.action, "expected kind = \"...\""))?;
                    let value_da = || -> Result<u16, ScenarioError> {
                        let v = st
                            .value
                            .as_ref()
                            .ok_or_else(|| self.err(k, "expected value = \"3A\""))?;
                        self.da16(v)
                    };
                    let value_ms = || -> Result<u32, ScenarioError> {
                        let v = st
                            .value
                            .as_ref()
                            .ok_or_else(|| self.err(k, "expected value = \"8s\""))?;
                        self.ms(v)
                    };
                    let m = match k.get_ref().as_str() {
                        "none" => Misbehave::None,
                        "ignore-reductions" => Misbehave::IgnoreReductions,
                        "overdraw" => Misbehave::OverdrawDa(value_da()?),
                        "slow" => Misbehave::SlowMs(value_ms()?),
                        "draws-in-b" => Misbehave::DrawsInB,
                        "no-diode" => Misbehave::NoDiode,
                        "shorted-diode" => Misbehave::ShortedDiode,
                        "short-pilot" => Misbehave::ShortPilot,
                        _ => return Err(self.err(k, "expected kind = none, ignore-reductions, overdraw, slow, draws-in-b, no-diode, shorted-diode or short-pilot")),
                    };
                    Action::Misbehave(station, m)
                }
                "car" => {
                    let station = need_station()?;
                    let mut settings = Vec::new();
                    if let Some(m) = &st.max {
                        settings.push(CarSetting::MaxDa(self.da16(m)?));
                    }
                    if let Some(c) = &st.capacity {
                        settings.push(CarSetting::CapacityWh(self.q(c, units::watt_hours)?));
                    }
                    if let Some(p) = &st.phases {
                        match p.get_ref() {
                            StepPhases::Count(n @ (1 | 3)) => settings.push(CarSetting::Phases(*n)),
                            _ => {
                                return Err(self.err(
                                    p,
                                    "expected phases = 1 or 3 (the phases the car draws on) for do = \"car\"",
                                ))
                            }
                        }
                    }
                    if let Some(a) = &st.aux {
                        settings.push(CarSetting::AuxDa(self.da16(a)?));
                    }
                    if st.target.is_some() {
                        settings.push(CarSetting::TargetPermille(self.permille(
                            st.target.as_ref(),
                            "target",
                            1_000,
                        )?));
                    }
                    // Last: a new SoC is of the battery as now set.
                    if st.soc.is_some() {
                        settings.push(CarSetting::SocPermille(self.permille(
                            st.soc.as_ref(),
                            "soc",
                            0,
                        )?));
                    }
                    if settings.is_empty() {
                        return Err(self.err(
                            &st.action,
                            "expected max, soc, target, capacity, phases or aux for do = \"car\"",
                        ));
                    }
                    Action::Car(station, settings)
                }
                "link-down" => Action::LinkDown,
                "one-way" => {
                    let from = st
                        .from
                        .as_ref()
                        .ok_or_else(|| self.err(&st.action, "expected from = <station id>"))?;
                    let to = st
                        .to
                        .as_ref()
                        .ok_or_else(|| self.err(&st.action, "expected to = <station id>"))?;
                    Action::OneWay {
                        from: index_of(from)?,
                        to: index_of(to)?,
                    }
                }
                "partition" => {
                    let g = st
                        .groups
                        .as_ref()
                        .ok_or_else(|| self.err(&st.action, "expected groups = [[0, 1], [2]]"))?;
                    let mut groups = Vec::new();
                    for grp in g {
                        let mut v = Vec::new();
                        for id in grp {
                            v.push(stations.iter().position(|s| s.id == *id).ok_or_else(|| {
                                self.err(&st.action, format!("unknown station {id} in groups"))
                            })?);
                        }
                        groups.push(v);
                    }
                    Action::Partition(groups)
                }
                "noise" => Action::Noise {
                    loss: self.probability(st.loss.as_ref(), "loss")?,
                    corrupt: self.probability(st.corrupt.as_ref(), "corrupt")?,
                },
                "repair" => Action::Repair,
                "crash" => Action::Crash(need_station()?),
                "reboot" => Action::Reboot(need_station()?),
                "weld" => Action::Welded(need_station()?, true),
                "unweld" => Action::Welded(need_station()?, false),
                "forge" => Action::Forge,
                "check" => Action::Check,
                "set-limit" => {
                    let node = st.node.as_ref().ok_or_else(|| {
                        self.err(&st.action, "expected node = \"<node name>\" for set-limit")
                    })?;
                    let index = nodes
                        .iter()
                        .position(|n| n.name == *node.get_ref())
                        .ok_or_else(|| {
                            self.err(
                                node,
                                format!(
                                    "unknown node \"{}\"; expected one of {}",
                                    node.get_ref(),
                                    nodes
                                        .iter()
                                        .map(|n| n.name.as_str())
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                ),
                            )
                        })?;
                    let limit = st.limit.as_ref().ok_or_else(|| {
                        self.err(
                            &st.action,
                            "expected limit = \"20A\" (or \"plan\") for set-limit",
                        )
                    })?;
                    let da = if limit.get_ref().trim() == "plan" {
                        None
                    } else {
                        let da = self.site_da(limit)?;
                        if da > nodes[index].limit_da {
                            return Err(self.err(
                                limit,
                                format!(
                                    "expected a limit at most the node's {} A in the plan (an operator's limit never raises it)",
                                    crate::units::amps(i64::from(nodes[index].limit_da))
                                ),
                            ));
                        }
                        Some(da)
                    };
                    Action::SetLimit { node: index, da }
                }
                other => {
                    return Err(self.err(
                        &st.action,
                        format!(
                            "unknown action \"{other}\"; expected one of {}",
                            ACTIONS.join(", ")
                        ),
                    ))
                }
            };
            match action {
                Action::SetLimit { node, da } => {
                    in_force[node].limit_da = da.unwrap_or(nodes[node].limit_da);
                }
                Action::Reboot(i) if stations[i].leader => {
                    for (n, plan) in in_force.iter_mut().zip(&nodes) {
                        n.limit_da = plan.limit_da;
                    }
                }
                _ => {}
            }
            let expectation = self.step_expectation(
                st,
                at_us,
                duration_us,
                &expect,
                &stations,
                &in_force,
                &names,
                &index_of,
            )?;
            let line = self.line_col(st.time.span().start).0;
            timeline.push(Step {
                at_us,
                action,
                expect: expectation,
                line,
            });
        }

        let (generated_cars, generated_steps) =
            self.arrivals(&raw.arrivals, &stations, &cars, duration_us, raw.seed)?;
        cars.extend(generated_cars);

        let assertions = raw
            .assertions
            .iter()
            .map(|a| self.assertion(a, &stations, &names, duration_us, &index_of))
            .collect::<Result<Vec<_>, _>>()?;
        let mut sc = Scenario {
            name: raw.name.as_ref().map_or(file_name, |n| n.get_ref().clone()),
            name_at: raw.name.as_ref().map(|n| self.line_col(n.span().start)),
            description: raw.description.clone().unwrap_or_default(),
            system: raw.system.clone().unwrap_or_default(),
            path: path.to_path_buf(),
            duration_us,
            seed: raw.seed,
            requires_hardware,
            hardware_set,
            golden_summary,
            nodes,
            stations,
            cars,
            sharing,
            meter,
            bench,
            timeline,
            expect,
            assertions,
        };
        if let Some(h) = raw.hardware_set.as_ref().filter(|h| *h.get_ref()) {
            // Power faults (crash, reboot) a lab bench makes with its
            // stations' power commands; nothing else that is sim-only.
            if sc.needs_sim_beyond_power() {
                return Err(self.err(
                    h,
                    "a scenario in the hardware set cannot use a fault only the virtual bench makes (link-down, one-way, partition, noise, repair, weld, unweld, forge; crash and reboot are power faults a lab bench makes)",
                ));
            }
        }
        // The firmware's own rules for the group (fallbacks over a limit,
        // 6 A each without rotation...) are the scenario's rules too.
        if let Err(e) = sc.group_config().validate() {
            return Err(self.group_rule_broken(&raw, &sc, e));
        }
        // An operator's limit must keep those rules too: the leader refuses
        // one that breaks them, so the file does first.
        for (raw_step, step) in raw.timeline.iter().zip(&sc.timeline) {
            if let (Action::SetLimit { node, da: Some(da) }, Some(at)) =
                (&step.action, raw_step.limit.as_ref())
            {
                let mut g = sc.group_config();
                g.nodes[*node].limit_da = *da;
                if let Err(e) = g.validate() {
                    return Err(self.err(
                        at,
                        format!(
                            "the leader would refuse this limit: {e} (node {node} is \"{}\")",
                            sc.nodes[*node].name
                        ),
                    ));
                }
            }
        }
        for (raw_step, step) in raw.timeline.iter().zip(&sc.timeline) {
            if let (Some(v), Some(x)) = (
                raw_step.expect.as_ref().or(raw_step.expect_min.as_ref()),
                step.expect.as_ref(),
            ) {
                let least: Vec<u32> = x.offers.iter().map(|b| b.min_da).collect();
                self.check_expected_offers(&sc, v, &least)?;
            }
        }
        sc.timeline = merge_steps(std::mem::take(&mut sc.timeline), generated_steps);
        if sc.expect.reference {
            crate::oracle::fill_expectations(&mut sc);
        }
        Ok(sc)
    }
}

/// The written steps with the generated ones (both in time order): a
/// generated step at the same instant as a written one comes first, so the
/// written step's expectation window starts after it.
fn merge_steps(written: Vec<Step>, generated: Vec<Step>) -> Vec<Step> {
    let mut out = Vec::with_capacity(written.len() + generated.len());
    let mut g = generated.into_iter().peekable();
    for s in written {
        while let Some(x) = g.next_if(|x| x.at_us <= s.at_us) {
            out.push(x);
        }
        out.push(s);
    }
    out.extend(g);
    out
}

/// The rules the firmware and the link impose, each refused at its key.
impl Ctx<'_> {
    /// A step's expectation, if it states any.
    #[allow(clippy::too_many_arguments)]
    fn step_expectation(
        &self,
        st: &RawStep,
        at_us: u64,
        duration_us: u64,
        expect: &Expect,
        stations: &[Station],
        nodes: &[Node],
        names: &BTreeMap<String, usize>,
        index_of: &dyn Fn(&Spanned<u8>) -> Result<usize, ScenarioError>,
    ) -> Result<Option<Expectation>, ScenarioError> {
        let tolerance_da = st
            .tolerance
            .as_ref()
            .map(|t| self.q(t, |s| units::deciamps_upto(s, MAX_SITE_DA)))
            .transpose()?
            .unwrap_or(0);
        let per_station = |v: &Spanned<Vec<S>>| -> Result<(), ScenarioError> {
            if v.get_ref().len() == stations.len() {
                return Ok(());
            }
            Err(self.err(
                v,
                format!(
                    "expected one current per station ({}), found {}; \"*\" leaves a station free",
                    stations.len(),
                    v.get_ref().len()
                ),
            ))
        };
        let mut offers = Vec::new();
        if st.expect.is_some() || st.expect_min.is_some() || st.expect_max.is_some() {
            offers = vec![Bound::ANY; stations.len()];
        }
        if let Some(v) = &st.expect {
            per_station(v)?;
            for (b, a) in offers.iter_mut().zip(v.get_ref()) {
                *b = self.bound(a, tolerance_da, true)?;
            }
        }
        for (list, lower) in [(&st.expect_min, true), (&st.expect_max, false)] {
            let Some(v) = list else { continue };
            per_station(v)?;
            for (b, a) in offers.iter_mut().zip(v.get_ref()) {
                let x = self.limit(a, true)?;
                let (min, max) = if lower { (x, None) } else { (None, x) };
                *b = self.narrow(*b, min, max, a.span().start)?;
            }
        }
        let nodes_x = st
            .expect_node
            .iter()
            .flatten()
            .map(|n| self.node_expectation(n, nodes, names, tolerance_da))
            .collect::<Result<Vec<_>, _>>()?;
        let spread = st
            .expect_spread
            .as_ref()
            .map(|s| self.spread(s, index_of, stations.len()))
            .transpose()?;
        let cars = st
            .expect_car
            .iter()
            .flatten()
            .map(|c| self.car_expectation(c, index_of, tolerance_da))
            .collect::<Result<Vec<_>, _>>()?;
        let until_us = match &st.until {
            None => None,
            Some(u) => {
                let t = self.us(u)?;
                if t <= at_us || t > duration_us {
                    return Err(self.err(
                        u,
                        format!(
                            "expected until after the step ({}) and at most the scenario's duration ({}), found \"{}\"",
                            crate::checks::when(at_us),
                            crate::checks::when(duration_us),
                            u.get_ref()
                        ),
                    ));
                }
                Some(t)
            }
        };
        let any = !offers.is_empty() || !nodes_x.is_empty() || spread.is_some() || !cars.is_empty();
        if !any {
            for (key, v) in [
                ("tolerance", &st.tolerance),
                ("until", &st.until),
                ("within", &st.within),
            ] {
                if let Some(v) = v {
                    return Err(self.err(v, format!("{key} without an expectation: expected expect, expect_min, expect_max, expect_node, expect_spread or expect_car in this step")));
                }
            }
            return Ok(None);
        }
        Ok(Some(Expectation {
            offers,
            nodes: nodes_x,
            spread,
            cars,
            within_us: self.opt_us(&st.within, expect.converge_within_us)?,
            until_us,
            from_reference: false,
        }))
    }

    /// The firmware's own check of the station's charging point (a breaker
    /// under 6 A, a nameplate outside 6-80 A), at the key that breaks it.
    fn check_charge_point(&self, raw: &RawStation, st: &Station) -> Result<(), ScenarioError> {
        let Err(e) = st.charge_point_config().validate() else {
            return Ok(());
        };
        let at = match e {
            ConfigError::MaxBelowMinimum { .. } | ConfigError::MaxAboveNameplate { .. } => {
                // The cap is the smaller of nameplate and breaker.
                match &raw.breaker {
                    Some(b) if st.breaker_da.is_some_and(|b| b < st.nameplate_da) => b,
                    _ => &raw.nameplate,
                }
            }
            _ => &raw.nameplate,
        };
        Err(self.err(at, format!("station {} cannot run: {e}", st.id)))
    }

    /// The sharing cycle must leave time to poll every station at the
    /// link's baud rate ([`min_cycle_us`]); a cycle of 0 never advances.
    fn check_cycle(
        &self,
        raw: &RawScenario,
        sharing: &Sharing,
        bench: &Bench,
        stations: usize,
    ) -> Result<(), ScenarioError> {
        let min_us = min_cycle_us(stations, bench.link_baud);
        if sharing.cycle_us >= min_us.max(1) {
            return Ok(());
        }
        let message = format!(
            "expected cycle of at least {min_us}us ({:.3} s) = {stations} stations x {FRAMES_PER_STATION} frames x {MAX_FRAME} bytes x {LINK_BITS_PER_BYTE} bits / {} baud: the time to poll the whole group on the link, found {}us",
            min_us as f64 / 1e6,
            bench.link_baud,
            sharing.cycle_us
        );
        // At the cycle; with the default cycle, at the first station that
        // does not fit in it.
        let first_over = raw
            .stations
            .iter()
            .enumerate()
            .find(|(i, _)| min_cycle_us(i + 1, bench.link_baud) > sharing.cycle_us)
            .map(|(_, s)| &s.id);
        Err(match (&raw.sharing.cycle, first_over) {
            (Some(c), _) => self.err(c, message),
            (None, Some(id)) => self.err(id, message),
            (None, None) => self.err_end(message),
        })
    }

    /// A rule of the firmware's [`fw::GroupConfig::validate`], at the key
    /// that breaks it.
    fn group_rule_broken(
        &self,
        raw: &RawScenario,
        sc: &Scenario,
        e: fw::GroupConfigError,
    ) -> ScenarioError {
        use fw::GroupConfigError as E;
        let station = |id: u8| raw.stations.iter().find(|s| *s.id.get_ref() == id);
        let node = |i: u16| raw.nodes.get(usize::from(i));
        let sh = &raw.sharing;
        let (at, node_index): (Option<usize>, Option<u16>) = match e {
            E::NoStations | E::LeaderNotInGroup { .. } => (None, None),
            E::UnknownParent { node: n, .. } | E::Cycle { node: n } => (
                node(n).map(|r| {
                    r.parent
                        .as_ref()
                        .map_or(r.name.span().start, |p| p.span().start)
                }),
                Some(n),
            ),
            E::LimitBelowMinimum { node: n, .. } | E::FallbacksOverLimit { node: n, .. } => {
                (node(n).map(|r| r.limit.span().start), Some(n))
            }
            E::UnknownNode { station: id, .. } => (station(id).map(|s| s.node.span().start), None),
            E::DuplicateStation { station: id } | E::BadPhases { station: id, .. } => {
                (station(id).map(|s| s.id.span().start), None)
            }
            E::BadFallback { station: id, .. } => (
                station(id).map(|s| {
                    s.fallback
                        .as_ref()
                        .map_or(s.id.span().start, |f| f.span().start)
                }),
                None,
            ),
            E::UnknownMeterNode { .. } => (raw.meter.as_ref().map(|m| m.node.span().start), None),
            // Not reached from a scenario: every duration in one is refused
            // over 7 days (`MAX_DURATION_US`) before the firmware sees it.
            E::TimingTooLong { .. } => (None, None),
            E::TimingUnsafe => {
                let t = &sc.sharing;
                let key = if t.silent_after_us < t.cycle_us.saturating_mul(2) {
                    sh.silent_after.as_ref().or(sh.cycle.as_ref())
                } else {
                    sh.leader_timeout.as_ref().or(sh.silent_after.as_ref())
                };
                (key.map(|k| k.span().start), None)
            }
        };
        let named = node_index
            .and_then(|i| sc.nodes.get(usize::from(i)).map(|n| (i, &n.name)))
            .map_or(String::new(), |(i, name)| {
                format!(" (node {i} is \"{name}\")")
            });
        let timing = if e == E::TimingUnsafe {
            format!(
                " (cycle {}us, silent_after {}us, leader_timeout {}us)",
                sc.sharing.cycle_us, sc.sharing.silent_after_us, sc.sharing.leader_timeout_us
            )
        } else {
            String::new()
        };
        let message = format!("the firmware refuses this site: {e}{named}{timing}");
        match at {
            Some(offset) => self.err_at(offset, message),
            None => self.err_end(message),
        }
    }

    /// Expected offers the firmware could make: the least each accepts at
    /// most the station's own cap, and per node and phase at most the
    /// node's limit.
    fn check_expected_offers(
        &self,
        sc: &Scenario,
        raw: &Spanned<Vec<S>>,
        exact_da: &[u32],
    ) -> Result<(), ScenarioError> {
        for ((st, da), v) in sc.stations.iter().zip(exact_da).zip(raw.get_ref()) {
            if *da > u32::from(st.cap_da()) {
                return Err(self.err(
                    v,
                    format!(
                        "expected an offer for station {} of at most its {} cap (nameplate and own breaker), found \"{}\"",
                        st.id,
                        units::amps_text(i64::from(st.cap_da())),
                        v.get_ref()
                    ),
                ));
            }
        }
        for (ni, node) in sc.nodes.iter().enumerate() {
            let mut sum_da = [0u32; 3];
            for (st, da) in sc.stations.iter().zip(exact_da) {
                if sc.is_under(st.node, ni) {
                    for (ph, on) in st.loads().into_iter().enumerate() {
                        if on {
                            sum_da[ph] = sum_da[ph].saturating_add(*da);
                        }
                    }
                }
            }
            if let Some(ph) = (0..3).find(|&ph| sum_da[ph] > node.limit_da) {
                return Err(self.err(
                    raw,
                    format!(
                        "expected offers add up to {} on L{} under node \"{}\", over its {} limit: the firmware never offers that",
                        units::amps_text(i64::from(sum_da[ph])),
                        ph + 1,
                        node.name,
                        units::amps_text(i64::from(node.limit_da)),
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests;
