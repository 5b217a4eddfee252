//! What a step expects: the offers per station (exact, with a tolerance, or
//! bounded, or `"*"` for a station the step does not constrain), the sum
//! under a node (offered or measured, per phase), the spread between
//! stations, and what the car does (its draw and its pilot state), over a
//! window that ends at the next step or at `until`.
//!
//! Owns the step-level expectation keys and their parsing into deciamp
//! bounds; the check that reads them is `checks::convergence`.

use serde::Deserialize;
use toml::Spanned;

use super::{Ctx, ScenarioError, S};
use crate::units;

/// An accepted range of a current, deciamps, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    pub min_da: u32,
    pub max_da: u32,
}

impl Bound {
    /// Anything (`"*"`).
    pub const ANY: Self = Self {
        min_da: 0,
        max_da: u32::MAX,
    };

    /// `value` give or take `tolerance`.
    #[must_use]
    pub fn around(value_da: u32, tolerance_da: u32) -> Self {
        Self {
            min_da: value_da.saturating_sub(tolerance_da),
            max_da: value_da.saturating_add(tolerance_da),
        }
    }

    #[must_use]
    pub fn contains(&self, da: u32) -> bool {
        (self.min_da..=self.max_da).contains(&da)
    }

    #[must_use]
    pub fn is_any(&self) -> bool {
        *self == Self::ANY
    }

    /// The one value accepted, if only one is.
    #[must_use]
    pub fn exact(&self) -> Option<u32> {
        (self.min_da == self.max_da).then_some(self.min_da)
    }

    /// `16.0`, `13.2..13.4`, `<=9.0`, `>=6.0` or `*` (amps).
    #[must_use]
    pub fn text(&self) -> String {
        let a = |da: u32| units::amps(i64::from(da));
        match (self.min_da, self.max_da) {
            (0, u32::MAX) => "*".into(),
            (lo, hi) if lo == hi => a(lo),
            (0, hi) => format!("<={}", a(hi)),
            (lo, u32::MAX) => format!(">={}", a(lo)),
            (lo, hi) => format!("{}..{}", a(lo), a(hi)),
        }
    }
}

/// Offered (from the duty) or measured (the fixture's current sensors, and
/// the meter on the metered node).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantity {
    Offered,
    Measured,
}

impl Quantity {
    #[must_use]
    pub fn word(self) -> &'static str {
        match self {
            Self::Offered => "offered",
            Self::Measured => "measured",
        }
    }
}

/// The sum under a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeExpectation {
    pub node: usize,
    /// Grid phase 0-2; `None`: the node's most loaded phase.
    pub phase: Option<u8>,
    pub of: Quantity,
    pub bound: Bound,
}

/// The largest offer minus the smallest among some stations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spread {
    /// Station indices.
    pub stations: Vec<usize>,
    pub max_da: u32,
}

/// A car's state as its pilot shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CarState {
    /// State A: no car.
    Unplugged,
    /// State B: plugged in, not asking for energy (also a car that is full).
    Connected,
    /// State C or D (asking) with the contactor open: paused, or waiting
    /// for a share.
    Waiting,
    /// State C or D with the contactor closed.
    Charging,
}

impl CarState {
    #[must_use]
    pub fn word(self) -> &'static str {
        match self {
            Self::Unplugged => "unplugged",
            Self::Connected => "connected",
            Self::Waiting => "waiting",
            Self::Charging => "charging",
        }
    }
}

/// An accepted range of an energy, watt-hours, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnergyBound {
    pub min_wh: u32,
    pub max_wh: u32,
}

impl EnergyBound {
    /// `10.000`, `9.500..10.500`, `<=2.000`, `>=10.000` (kWh) or `any`.
    #[must_use]
    pub fn text(&self) -> String {
        let k = |wh: u32| format!("{:.3}", f64::from(wh) / 1_000.0);
        match (self.min_wh, self.max_wh) {
            (0, u32::MAX) => "any".into(),
            (lo, hi) if lo == hi => k(lo),
            (0, hi) => format!("<={}", k(hi)),
            (lo, u32::MAX) => format!(">={}", k(lo)),
            (lo, hi) => format!("{}..{}", k(lo), k(hi)),
        }
    }
}

/// What the car on a station does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarExpectation {
    /// Station index.
    pub station: usize,
    /// Its draw: the station's measured current on its most loaded phase.
    pub draw: Bound,
    pub state: Option<CarState>,
    /// The energy it took since it was plugged in (its pilot last left
    /// state A): the fixture's measured current on each of the station's
    /// phases at a nominal 230 V, integrated over time. Not the firmware's
    /// count, nor the car model's state of charge.
    pub energy: Option<EnergyBound>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNodeExpect {
    node: S,
    phase: Option<S>,
    of: Option<S>,
    sum: Option<S>,
    min: Option<S>,
    max: Option<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSpread {
    max: S,
    stations: Option<Vec<Spanned<u8>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCarExpect {
    station: Spanned<u8>,
    draw: Option<S>,
    draw_min: Option<S>,
    draw_max: Option<S>,
    state: Option<S>,
    energy: Option<S>,
    energy_min: Option<S>,
    energy_max: Option<S>,
}

const BOUND_HELP: &str = "expected a current such as \"16A\" or \"13.3A +/- 0.1A\"";

impl Ctx<'_> {
    /// A site-sized current (up to [`super::MAX_SITE_DA`]).
    fn site_current(&self, v: &S, text: &str) -> Result<u32, ScenarioError> {
        units::deciamps_upto(text, super::MAX_SITE_DA).map_err(|m| self.err(v, m))
    }

    /// `"16A"`, `"13.3A +/- 0.1A"` (or `"*"` when `star`), with `tolerance`
    /// for a value that gives none.
    pub(super) fn bound(
        &self,
        v: &S,
        tolerance_da: u32,
        star: bool,
    ) -> Result<Bound, ScenarioError> {
        let t = v.get_ref().trim();
        if t == "*" {
            return if star {
                Ok(Bound::ANY)
            } else {
                Err(self.err(
                    v,
                    "expected a current such as \"16A\"; \"*\" is for a station list",
                ))
            };
        }
        match t.split_once("+/-") {
            Some((value, tol)) => {
                let value = self
                    .site_current(v, value)
                    .map_err(|e| self.bound_error(v, star, e, ""))?;
                let tol = self
                    .site_current(v, tol)
                    .map_err(|e| self.bound_error(v, star, e, " (the tolerance)"))?;
                Ok(Bound::around(value, tol))
            }
            None => self
                .site_current(v, t)
                .map(|x| Bound::around(x, tolerance_da))
                .map_err(|e| self.bound_error(v, star, e, "")),
        }
    }

    /// A current that is not one: what a bound may be, and what was found
    /// (a range error is kept as it is: it names the range).
    fn bound_error(&self, v: &S, star: bool, e: ScenarioError, part: &str) -> ScenarioError {
        if e.message.starts_with("expected a current from") {
            return ScenarioError {
                message: format!("{}{part}", e.message),
                ..e
            };
        }
        let any = if star { ", or \"*\" for any value" } else { "" };
        ScenarioError {
            message: format!("{BOUND_HELP}{any}{part}, found \"{}\"", v.get_ref()),
            ..e
        }
    }

    /// A one-sided bound (`expect_min`, `expect_max`, `min`, `max`): a
    /// current, or `"*"`.
    pub(super) fn limit(&self, v: &S, star: bool) -> Result<Option<u32>, ScenarioError> {
        if star && v.get_ref().trim() == "*" {
            return Ok(None);
        }
        if v.get_ref().contains("+/-") {
            return Err(self.err(
                v,
                "expected a bound such as \"6A\" (a tolerance is for `expect`, `sum` and `draw`)",
            ));
        }
        self.site_current(v, v.get_ref()).map(Some)
    }

    /// Narrow `b` to at least `min` and at most `max`; refused at `at` when
    /// nothing is left.
    pub(super) fn narrow(
        &self,
        mut b: Bound,
        min: Option<u32>,
        max: Option<u32>,
        at: usize,
    ) -> Result<Bound, ScenarioError> {
        if let Some(m) = min {
            b.min_da = b.min_da.max(m);
        }
        if let Some(m) = max {
            b.max_da = b.max_da.min(m);
        }
        if b.min_da > b.max_da {
            return Err(self.err_at(
                at,
                format!(
                    "expected a lower bound at most the upper one; this leaves nothing (from {} A to {} A)",
                    units::amps(i64::from(b.min_da)),
                    units::amps(i64::from(b.max_da))
                ),
            ));
        }
        Ok(b)
    }

    pub(super) fn node_expectation(
        &self,
        raw: &RawNodeExpect,
        nodes: &[super::Node],
        names: &std::collections::BTreeMap<String, usize>,
        tolerance_da: u32,
    ) -> Result<NodeExpectation, ScenarioError> {
        let node = *names.get(raw.node.get_ref()).ok_or_else(|| {
            self.err(
                &raw.node,
                format!(
                    "unknown node \"{}\"; expected one of {}",
                    raw.node.get_ref(),
                    names
                        .keys()
                        .map(String::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?;
        let phase = match raw.phase.as_ref().map(|p| p.get_ref().as_str()) {
            None => None,
            Some("L1") => Some(0),
            Some("L2") => Some(1),
            Some("L3") => Some(2),
            Some(_) => return Err(self.err(
                raw.phase.as_ref().unwrap_or(&raw.node),
                "expected phase = \"L1\", \"L2\" or \"L3\" (or none: the node's most loaded phase)",
            )),
        };
        let of = match raw.of.as_ref().map(|p| p.get_ref().as_str()) {
            None | Some("offered") => Quantity::Offered,
            Some("measured") => Quantity::Measured,
            Some(_) => {
                return Err(self.err(
                    raw.of.as_ref().unwrap_or(&raw.node),
                    "expected of = \"offered\" or \"measured\"",
                ))
            }
        };
        let mut bound = match &raw.sum {
            None => Bound::ANY,
            Some(s) if s.get_ref().trim() == "limit" => {
                Bound::around(nodes[node].limit_da, tolerance_da)
            }
            Some(s) => self
                .bound(s, tolerance_da, false)
                .map_err(|e| ScenarioError {
                    message: format!("{} (or \"limit\": the node's limit)", e.message),
                    ..e
                })?,
        };
        let min = raw
            .min
            .as_ref()
            .map(|m| self.limit(m, false))
            .transpose()?
            .flatten();
        let max = raw
            .max
            .as_ref()
            .map(|m| self.limit(m, false))
            .transpose()?
            .flatten();
        let at = raw
            .min
            .as_ref()
            .or(raw.max.as_ref())
            .unwrap_or(&raw.node)
            .span()
            .start;
        bound = self.narrow(bound, min, max, at)?;
        if bound.is_any() {
            return Err(self.err(
                &raw.node,
                "expected sum = \"32A\" (or \"limit\"), min or max for the node",
            ));
        }
        Ok(NodeExpectation {
            node,
            phase,
            of,
            bound,
        })
    }

    pub(super) fn spread(
        &self,
        raw: &RawSpread,
        index_of: &dyn Fn(&Spanned<u8>) -> Result<usize, ScenarioError>,
        stations: usize,
    ) -> Result<Spread, ScenarioError> {
        let max_da = self.limit(&raw.max, false)?.unwrap_or_default();
        let stations = match &raw.stations {
            None => (0..stations).collect(),
            Some(list) => {
                let v = list.iter().map(index_of).collect::<Result<Vec<_>, _>>()?;
                if v.len() < 2 {
                    return Err(self.err(&raw.max, "expected at least two stations for a spread"));
                }
                v
            }
        };
        Ok(Spread { stations, max_da })
    }

    pub(super) fn car_expectation(
        &self,
        raw: &RawCarExpect,
        index_of: &dyn Fn(&Spanned<u8>) -> Result<usize, ScenarioError>,
        tolerance_da: u32,
    ) -> Result<CarExpectation, ScenarioError> {
        let station = index_of(&raw.station)?;
        let draw = raw
            .draw
            .as_ref()
            .map(|d| self.bound(d, tolerance_da, false))
            .transpose()?
            .unwrap_or(Bound::ANY);
        let min = raw
            .draw_min
            .as_ref()
            .map(|m| self.limit(m, false))
            .transpose()?
            .flatten();
        let max = raw
            .draw_max
            .as_ref()
            .map(|m| self.limit(m, false))
            .transpose()?
            .flatten();
        let at = raw
            .draw_min
            .as_ref()
            .or(raw.draw_max.as_ref())
            .map_or(raw.station.span().start, |v| v.span().start);
        let draw = self.narrow(draw, min, max, at)?;
        let state = match &raw.state {
            None => None,
            Some(s) if s.get_ref() == "unplugged" => Some(CarState::Unplugged),
            Some(s) if s.get_ref() == "connected" => Some(CarState::Connected),
            Some(s) if s.get_ref() == "waiting" => Some(CarState::Waiting),
            Some(s) if s.get_ref() == "charging" => Some(CarState::Charging),
            Some(s) => {
                return Err(self.err(
                    s,
                    "expected state = \"unplugged\", \"connected\" (plugged in, not asking), \"waiting\" (asking, contactor open) or \"charging\"",
                ))
            }
        };
        let energy = self.energy_bound(raw)?;
        if draw.is_any() && state.is_none() && energy.is_none() {
            return Err(self.err(
                &raw.station,
                "expected draw, draw_min, draw_max, state, energy, energy_min or energy_max for the car",
            ));
        }
        Ok(CarExpectation {
            station,
            draw,
            state,
            energy,
        })
    }

    /// `energy = "10kWh +/- 0.5kWh"`, `energy_min`, `energy_max`.
    fn energy_bound(&self, raw: &RawCarExpect) -> Result<Option<EnergyBound>, ScenarioError> {
        let wh = |v: &S, text: &str| units::watt_hours(text.trim()).map_err(|m| self.err(v, m));
        let mut b = match &raw.energy {
            None => None,
            Some(v) => Some(match v.get_ref().split_once("+/-") {
                Some((value, tol)) => {
                    let (value, tol) = (wh(v, value)?, wh(v, tol)?);
                    EnergyBound {
                        min_wh: value.saturating_sub(tol),
                        max_wh: value.saturating_add(tol),
                    }
                }
                None => {
                    let value = wh(v, v.get_ref())?;
                    EnergyBound {
                        min_wh: value,
                        max_wh: value,
                    }
                }
            }),
        };
        for (v, is_min) in [(&raw.energy_min, true), (&raw.energy_max, false)] {
            let Some(v) = v else { continue };
            if v.get_ref().contains("+/-") {
                return Err(self.err(
                    v,
                    "expected an energy such as \"10kWh\" (a tolerance is for `energy`)",
                ));
            }
            let x = wh(v, v.get_ref())?;
            let e = b.get_or_insert(EnergyBound {
                min_wh: 0,
                max_wh: u32::MAX,
            });
            if is_min {
                e.min_wh = e.min_wh.max(x);
            } else {
                e.max_wh = e.max_wh.min(x);
            }
            if e.min_wh > e.max_wh {
                return Err(self.err(
                    v,
                    format!(
                        "expected a lower bound at most the upper one; this leaves nothing (from {} kWh to {} kWh)",
                        f64::from(e.min_wh) / 1_000.0,
                        f64::from(e.max_wh) / 1_000.0
                    ),
                ));
            }
        }
        Ok(b)
    }
}
