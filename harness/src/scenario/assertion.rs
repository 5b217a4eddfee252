//! Assertions over time (`[[assert]]`): what must never (or always) happen
//! over a window of the run, in what order, how soon after what, and what
//! a station must report. Owns the keys and their parsing; the check that
//! reads them is `checks::assertions`.

use serde::Deserialize;
use toml::Spanned;

use super::{Ctx, ScenarioError, Station, S};
use crate::units;

/// One assertion and its window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assertion {
    pub kind: AssertKind,
    /// Start of the window (default: the start of the run).
    pub from_us: u64,
    /// End of the window (default: the end of the run).
    pub until_us: Option<u64>,
    /// 1-based line of its `that` key, for messages.
    pub line: usize,
}

/// What an assertion states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssertKind {
    /// No offer strictly between `above_da` and `below_da`. From 0 A this
    /// includes PWM whose duty is no valid reading (7-8 %, 97-100 %): a
    /// station offers 0 or at least the IEC 6 A minimum.
    NoOfferBetween {
        above_da: u32,
        below_da: u32,
        stations: Vec<usize>,
    },
    /// At most `count` stations charging at once (contactor closed and an
    /// offer above 0).
    AtMostCharging { count: usize },
    /// While any car asks (pilot C or D), some station charges: no gap
    /// longer than `longer_than_us` with every waiting car stopped.
    SomeoneCharging { longer_than_us: u64 },
    /// The measured current under `node` never over its limit for longer
    /// than `longer_than_us` at a time.
    NodeWithinLimit { node: usize, longer_than_us: u64 },
    /// `station`'s first non-zero offer in the window comes only after
    /// `after`'s offer dropped (make-before-break).
    FirstOfferAfterDrop { station: usize, after: usize },
    /// Make-before-break on the measured current: after each cut of
    /// `after`'s offer in the window (a drop below what its car then
    /// draws, most loaded phase, by more than `margin_da`), `station`'s
    /// offer does not rise until `after`'s measured current is at most its
    /// offer plus `margin_da`. At least one such cut must be followed by
    /// a rise of `station`'s offer in the window (else nothing was shown).
    IncreaseAfterFall {
        station: usize,
        after: usize,
        margin_da: u32,
    },
    /// After an overcurrent begins on `station` (its measured current over
    /// its offer by more than `margin_da`), its contactor opens between
    /// `min_us` and `max_us` later; an overcurrent that ends sooner (the
    /// car complied) needs no opening.
    OpensAfterOvercurrent {
        station: usize,
        min_us: u64,
        max_us: u64,
        margin_da: u32,
    },
    /// A paused car (its offer cut to 0 while it still asks) is offered
    /// current again no sooner than `at_least_us` later.
    PausesAtLeast {
        stations: Vec<usize>,
        at_least_us: u64,
    },
    /// Every car that waits in the window (its pilot asks, C or D, while
    /// its station is not charging: contactor open or no offer) charges
    /// within `within_us`, or stops asking first. A car already waiting at
    /// the window's start is timed from it; a wait still open at the
    /// window's end fails once it is longer. At least one car must wait in
    /// the window.
    AllChargedWithin {
        stations: Vec<usize>,
        within_us: u64,
    },
    /// `station` reports (telemetry containing `says`) exactly once, or at
    /// least once, in the window.
    Reported {
        station: usize,
        says: String,
        exactly_once: bool,
    },
}

impl AssertKind {
    /// The `that = "..."` word.
    #[must_use]
    pub fn word(&self) -> &'static str {
        match self {
            Self::NoOfferBetween { .. } => "no-offer-between",
            Self::AtMostCharging { .. } => "at-most-charging",
            Self::SomeoneCharging { .. } => "someone-charging",
            Self::NodeWithinLimit { .. } => "node-within-limit",
            Self::FirstOfferAfterDrop { .. } => "first-offer-after-drop",
            Self::IncreaseAfterFall { .. } => "increase-after-fall",
            Self::OpensAfterOvercurrent { .. } => "opens-after-overcurrent",
            Self::PausesAtLeast { .. } => "pauses-at-least",
            Self::AllChargedWithin { .. } => "all-charged-within",
            Self::Reported { .. } => "reported",
        }
    }
}

/// Every `that`, for messages and the reference.
pub const ASSERT_KINDS: &[&str] = &[
    "no-offer-between",
    "at-most-charging",
    "someone-charging",
    "node-within-limit",
    "first-offer-after-drop",
    "increase-after-fall",
    "opens-after-overcurrent",
    "pauses-at-least",
    "all-charged-within",
    "reported",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAssert {
    that: S,
    from: Option<S>,
    until: Option<S>,
    station: Option<Spanned<u8>>,
    stations: Option<Vec<Spanned<u8>>>,
    after: Option<Spanned<u8>>,
    above: Option<S>,
    below: Option<S>,
    count: Option<Spanned<u32>>,
    node: Option<S>,
    longer_than: Option<S>,
    between: Option<Spanned<Vec<S>>>,
    margin: Option<S>,
    says: Option<S>,
    times: Option<S>,
    at_least: Option<S>,
    within: Option<S>,
}

impl Ctx<'_> {
    #[allow(clippy::too_many_lines)]
    pub(super) fn assertion(
        &self,
        raw: &RawAssert,
        stations: &[Station],
        names: &std::collections::BTreeMap<String, usize>,
        duration_us: u64,
        index_of: &dyn Fn(&Spanned<u8>) -> Result<usize, ScenarioError>,
    ) -> Result<Assertion, ScenarioError> {
        let that = &raw.that;
        let need = |v: Option<&Spanned<u8>>, key: &str| -> Result<usize, ScenarioError> {
            v.map_or_else(
                || {
                    Err(self.err(
                        that,
                        format!(
                            "expected {key} = <station id> for that = \"{}\"",
                            that.get_ref()
                        ),
                    ))
                },
                index_of,
            )
        };
        let current =
            |v: Option<&S>, key: &str, default: Option<u32>| -> Result<u32, ScenarioError> {
                match (v, default) {
                    (Some(v), _) => self.q(v, |s| units::deciamps_upto(s, super::MAX_SITE_DA)),
                    (None, Some(d)) => Ok(d),
                    (None, None) => Err(self.err(
                        that,
                        format!("expected {key} = \"6A\" for that = \"{}\"", that.get_ref()),
                    )),
                }
            };
        let longer_than_us = self.opt_us(&raw.longer_than, 0)?;
        let kind = match that.get_ref().as_str() {
            "no-offer-between" => {
                let above_da = current(raw.above.as_ref(), "above", Some(0))?;
                let below_da = current(raw.below.as_ref(), "below", Some(60))?;
                if below_da <= above_da.saturating_add(1) {
                    return Err(self.err(
                        raw.below.as_ref().unwrap_or(that),
                        "expected below at least 0.2A over above: the range between them (both excluded) is empty",
                    ));
                }
                let stations = match &raw.stations {
                    None => (0..stations.len()).collect(),
                    Some(list) => list.iter().map(index_of).collect::<Result<_, _>>()?,
                };
                AssertKind::NoOfferBetween {
                    above_da,
                    below_da,
                    stations,
                }
            }
            "at-most-charging" => {
                let c = raw.count.as_ref().ok_or_else(|| {
                    self.err(
                        that,
                        "expected count = <number of stations> for that = \"at-most-charging\"",
                    )
                })?;
                AssertKind::AtMostCharging {
                    count: usize::try_from(*c.get_ref()).unwrap_or(usize::MAX),
                }
            }
            "someone-charging" => AssertKind::SomeoneCharging { longer_than_us },
            "node-within-limit" => {
                let n = raw.node.as_ref().ok_or_else(|| {
                    self.err(
                        that,
                        "expected node = \"<name>\" for that = \"node-within-limit\"",
                    )
                })?;
                let node = *names.get(n.get_ref()).ok_or_else(|| {
                    self.err(
                        n,
                        format!(
                            "unknown node \"{}\"; expected one of {}",
                            n.get_ref(),
                            names
                                .keys()
                                .map(String::as_str)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                })?;
                AssertKind::NodeWithinLimit {
                    node,
                    longer_than_us,
                }
            }
            "first-offer-after-drop" | "increase-after-fall" => {
                let station = need(raw.station.as_ref(), "station")?;
                let after = need(raw.after.as_ref(), "after")?;
                if station == after {
                    return Err(self.err_at(
                        raw.after
                            .as_ref()
                            .map_or(that.span().start, |a| a.span().start),
                        "expected after = another station than station",
                    ));
                }
                if that.get_ref() == "first-offer-after-drop" {
                    AssertKind::FirstOfferAfterDrop { station, after }
                } else {
                    AssertKind::IncreaseAfterFall {
                        station,
                        after,
                        margin_da: current(raw.margin.as_ref(), "margin", Some(0))?,
                    }
                }
            }
            "opens-after-overcurrent" => {
                let station = need(raw.station.as_ref(), "station")?;
                let b = raw.between.as_ref().ok_or_else(|| {
                    self.err(that, "expected between = [\"6s\", \"8s\"] for that = \"opens-after-overcurrent\"")
                })?;
                let [lo, hi] = b.get_ref().as_slice() else {
                    return Err(self.err(b, "expected between = [\"6s\", \"8s\"]: two durations"));
                };
                let (min_us, max_us) = (self.us(lo)?, self.us(hi)?);
                if min_us > max_us {
                    return Err(self.err(
                        hi,
                        "expected the second duration of between at least the first",
                    ));
                }
                AssertKind::OpensAfterOvercurrent {
                    station,
                    min_us,
                    max_us,
                    margin_da: current(raw.margin.as_ref(), "margin", Some(0))?,
                }
            }
            "pauses-at-least" => {
                let a = raw.at_least.as_ref().ok_or_else(|| {
                    self.err(
                        that,
                        "expected at_least = \"2min\" for that = \"pauses-at-least\"",
                    )
                })?;
                let stations = match &raw.stations {
                    None => (0..stations.len()).collect(),
                    Some(list) => list.iter().map(index_of).collect::<Result<_, _>>()?,
                };
                AssertKind::PausesAtLeast {
                    stations,
                    at_least_us: self.us(a)?,
                }
            }
            "all-charged-within" => {
                let w = raw.within.as_ref().ok_or_else(|| {
                    self.err(
                        that,
                        "expected within = \"20min\" for that = \"all-charged-within\"",
                    )
                })?;
                let within_us = self.us(w)?;
                if within_us == 0 {
                    return Err(self.err(w, "expected within longer than 0 s"));
                }
                let stations = match &raw.stations {
                    None => (0..stations.len()).collect(),
                    Some(list) => list.iter().map(index_of).collect::<Result<_, _>>()?,
                };
                AssertKind::AllChargedWithin {
                    stations,
                    within_us,
                }
            }
            "reported" => {
                let station = need(raw.station.as_ref(), "station")?;
                let says = raw.says.as_ref().ok_or_else(|| {
                    self.err(that, "expected says = \"<text of the station's report>\" for that = \"reported\"")
                })?;
                if says.get_ref().trim().is_empty() {
                    return Err(self.err(says, "expected says = some text the report contains"));
                }
                let exactly_once = match raw.times.as_ref().map(|t| t.get_ref().as_str()) {
                    None | Some("once") => true,
                    Some("at-least-once") => false,
                    Some(_) => {
                        return Err(self.err(
                            raw.times.as_ref().unwrap_or(that),
                            "expected times = \"once\" or \"at-least-once\"",
                        ))
                    }
                };
                AssertKind::Reported {
                    station,
                    says: says.get_ref().clone(),
                    exactly_once,
                }
            }
            other => {
                return Err(self.err(
                    that,
                    format!(
                        "unknown assertion \"{other}\"; expected that = {}",
                        ASSERT_KINDS.join(", ")
                    ),
                ))
            }
        };
        self.only_keys(raw, &kind)?;
        let from_us = self.opt_us(&raw.from, 0)?;
        let until_us = raw.until.as_ref().map(|u| self.us(u)).transpose()?;
        for (key, v) in [("from", &raw.from), ("until", &raw.until)] {
            if let Some(v) = v {
                let t = self.us(v)?;
                if t > duration_us {
                    return Err(
                        self.err(v, format!("expected {key} at most the scenario's duration"))
                    );
                }
            }
        }
        if let (Some(u), Some(v)) = (until_us, &raw.until) {
            if u <= from_us {
                return Err(self.err(v, "expected until after from"));
            }
        }
        Ok(Assertion {
            kind,
            from_us,
            until_us,
            line: self.line_col(that.span().start).0,
        })
    }

    /// A key the assertion does not read is refused, not ignored.
    fn only_keys(&self, raw: &RawAssert, kind: &AssertKind) -> Result<(), ScenarioError> {
        let allowed: &[&str] = match kind {
            AssertKind::NoOfferBetween { .. } => &["above", "below", "stations"],
            AssertKind::AtMostCharging { .. } => &["count"],
            AssertKind::SomeoneCharging { .. } => &["longer_than"],
            AssertKind::NodeWithinLimit { .. } => &["node", "longer_than"],
            AssertKind::FirstOfferAfterDrop { .. } => &["station", "after"],
            AssertKind::IncreaseAfterFall { .. } => &["station", "after", "margin"],
            AssertKind::OpensAfterOvercurrent { .. } => &["station", "between", "margin"],
            AssertKind::PausesAtLeast { .. } => &["stations", "at_least"],
            AssertKind::AllChargedWithin { .. } => &["stations", "within"],
            AssertKind::Reported { .. } => &["station", "says", "times"],
        };
        let span = |v: Option<std::ops::Range<usize>>| v.map(|r| r.start);
        let present = [
            ("station", span(raw.station.as_ref().map(Spanned::span))),
            (
                "stations",
                span(
                    raw.stations
                        .as_ref()
                        .and_then(|v| v.first())
                        .map(Spanned::span),
                ),
            ),
            ("after", span(raw.after.as_ref().map(Spanned::span))),
            ("above", span(raw.above.as_ref().map(Spanned::span))),
            ("below", span(raw.below.as_ref().map(Spanned::span))),
            ("count", span(raw.count.as_ref().map(Spanned::span))),
            ("node", span(raw.node.as_ref().map(Spanned::span))),
            (
                "longer_than",
                span(raw.longer_than.as_ref().map(Spanned::span)),
            ),
            ("between", span(raw.between.as_ref().map(Spanned::span))),
            ("margin", span(raw.margin.as_ref().map(Spanned::span))),
            ("says", span(raw.says.as_ref().map(Spanned::span))),
            ("times", span(raw.times.as_ref().map(Spanned::span))),
            ("at_least", span(raw.at_least.as_ref().map(Spanned::span))),
            ("within", span(raw.within.as_ref().map(Spanned::span))),
        ];
        for (key, at) in present {
            if let Some(at) = at {
                if !allowed.contains(&key) {
                    return Err(self.err_at(
                        at,
                        format!(
                            "that = \"{}\" does not read {key}; expected only from, until, {}",
                            kind.word(),
                            allowed.join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}
