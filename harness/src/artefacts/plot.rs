//! The plot of a run (SVG or PNG by file extension), pure Rust with a
//! vendored font. It shows the safety invariant the way the checks read it:
//!
//! - a strip of every timeline action (grey) and fault (red: a fault the
//!   timeline injects, or one a station reports), labelled on the time axis,
//!   with a faint line through every panel below;
//! - one panel per binding node (every node on a site of up to three; else
//!   the service and the two nodes with the least headroom), per grid phase
//!   the sum of the firmware's offers under the node (the invariant, bold)
//!   beside the measured current under it (the mains meter on the metered
//!   node, signed: export below 0), and the node's own limit (and breaker),
//!   labelled;
//! - the offer per station: each station by name up to [`NAMED_MAX`]
//!   stations; beyond, the [`TOP`] stations with the most offered charge by
//!   name and the others as one min/max band with their mean;
//! - the contactor per station, one row per station labelled with its id.
//!
//! Every line is a min/max envelope per pixel column (first, min, max and
//! last value of the column), not a sample: a day-long run keeps every peak
//! and notch, and the drawing costs the same for any length. Colours do not
//! repeat within a panel.

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::checks::breaker::node_sums;
use crate::scenario::{Action, Scenario};
use crate::trace::{Series, Trace, What};

static FONT: Once = Once::new();
const FONT_BYTES: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

/// Stations shown by name when a site has at most this many.
pub const NAMED_MAX: usize = 12;
/// On a larger site, the stations shown by name (most offered charge).
pub const TOP: usize = 8;
/// Node panels at most.
const NODE_PANELS: usize = 3;
/// Timeline actions at most that get a line through every panel (faults
/// always do).
const MARK_LINES_MAX: usize = 60;

const WIDTH: u32 = 1_400;
const MARGIN: u32 = 12;
const Y_AREA: u32 = 76;
const LANES: usize = 6;
const LANE_PX: u32 = 17;

fn register_font() {
    FONT.call_once(|| {
        // The font is vendored and valid; if registration failed, text would
        // not render and the plot would still be drawn.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT_BYTES);
    });
}

/// Twelve colours that differ, for stations (no grey: "others" is grey).
const STATION_COLOURS: [RGBColor; NAMED_MAX] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(0, 0, 128),
    RGBColor(128, 128, 0),
    RGBColor(0, 0, 0),
];
/// Per grid phase: the sum of offers (dark) and the measured current
/// (light, same hue).
const OFFERED: [RGBColor; 3] = [
    RGBColor(8, 69, 148),
    RGBColor(166, 54, 3),
    RGBColor(0, 109, 44),
];
const MEASURED: [RGBColor; 3] = [
    RGBColor(107, 174, 214),
    RGBColor(253, 141, 60),
    RGBColor(116, 196, 118),
];
const LIMIT: RGBColor = RGBColor(0, 0, 0);
const BREAKER: RGBColor = RGBColor(150, 150, 150);
const ACTION: RGBColor = RGBColor(90, 90, 90);
/// The stations not named on a big site: their band and their mean (black:
/// only the first [`TOP`] station colours are in use there).
const OTHERS_BAND: RGBColor = RGBColor(200, 200, 200);
const OTHERS_MEAN: RGBColor = RGBColor(0, 0, 0);
const FAULT: RGBColor = RGBColor(200, 0, 0);

/// One pixel column of a step series: its value where the column starts,
/// its least and greatest value inside, and its value where it ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Column {
    pub first: f64,
    pub min: f64,
    pub max: f64,
    pub last: f64,
}

/// Column `c`'s start in microseconds, of `cols` columns over `end_us`.
fn column_start(c: usize, cols: usize, end_us: u64) -> u64 {
    let v = u128::from(end_us) * c as u128 / cols.max(1) as u128;
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// A step series (`(t_us, value)` change points in time order, each value
/// holding until the next; 0 before the first) reduced to `cols` pixel
/// columns over `0..end_us`, keeping every extreme.
#[must_use]
pub fn columns(s: &[(u64, f64)], end_us: u64, cols: usize) -> Vec<Column> {
    let mut out = Vec::with_capacity(cols);
    let mut k = 0;
    let mut cur = 0.0;
    for c in 0..cols {
        let a = column_start(c, cols, end_us);
        let b = column_start(c + 1, cols, end_us);
        while k < s.len() && s[k].0 <= a {
            cur = s[k].1;
            k += 1;
        }
        let first = cur;
        let (mut min, mut max) = (cur, cur);
        while k < s.len() && s[k].0 < b {
            cur = s[k].1;
            min = min.min(cur);
            max = max.max(cur);
            k += 1;
        }
        out.push(Column {
            first,
            min,
            max,
            last: cur,
        });
    }
    out
}

/// The polyline that draws `cols` as a raster would draw every change: per
/// column its first value, a vertical stroke over its min..max, its last.
#[must_use]
pub fn envelope(cols: &[Column], end_us: u64, unit_us: f64) -> Vec<(f64, f64)> {
    let n = cols.len();
    let mut pts: Vec<(f64, f64)> = Vec::with_capacity(n * 2 + 2);
    for (c, col) in cols.iter().enumerate() {
        let x = column_start(c, n, end_us) as f64 / unit_us;
        let flat = col.min == col.max;
        // A flat column at the height already drawn adds nothing: the
        // segment to the next point drawn is level.
        if flat && c > 0 && pts.last().is_some_and(|p| p.1 == col.first) {
            continue;
        }
        // The value drawn last holds up to here: level, then a step.
        if let Some(&(_, y)) = pts.last() {
            if y != col.first {
                pts.push((x, y));
            }
        }
        pts.push((x, col.first));
        if col.min < col.max {
            // Enter at the end nearer the first value, leave at the other.
            if (col.first - col.min).abs() <= (col.first - col.max).abs() {
                pts.push((x, col.min));
                pts.push((x, col.max));
            } else {
                pts.push((x, col.max));
                pts.push((x, col.min));
            }
        }
        if col.last != col.first || col.min < col.max {
            pts.push((x, col.last));
        }
    }
    if let Some(last) = cols.last() {
        pts.push((end_us as f64 / unit_us, last.last));
    }
    pts
}

/// What the time axis marks: a timeline action, or a fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub t_us: u64,
    pub text: String,
    pub fault: bool,
}

/// Whether a timeline action makes a fault (rather than a car's or a
/// load's move, or a repair).
fn is_fault(a: &Action) -> bool {
    match a {
        Action::Meter(f) => *f != rig::meter::MeterFault::None,
        Action::Misbehave(_, m) => *m != rig::protocol::Misbehave::None,
        Action::Welded(_, on) => *on,
        Action::LinkDown
        | Action::OneWay { .. }
        | Action::Partition(_)
        | Action::Noise { .. }
        | Action::Crash(_)
        | Action::Forge => true,
        _ => false,
    }
}

/// Every timeline action and every fault a station reported, in time order.
#[must_use]
pub fn marks(sc: &Scenario, trace: &Trace) -> Vec<Mark> {
    let mut m: Vec<Mark> = sc
        .timeline
        .iter()
        .filter(|s| s.at_us <= trace.end_us)
        .map(|s| Mark {
            t_us: s.at_us,
            text: crate::runner::describe(sc, &s.action),
            fault: is_fault(&s.action),
        })
        .collect();
    for e in &trace.entries {
        if let What::Telemetry { station, text } = &e.what {
            if text.starts_with("fault ") {
                m.push(Mark {
                    t_us: e.t_us,
                    text: format!("st{station} {text}"),
                    fault: true,
                });
            }
        }
    }
    m.sort_by_key(|x| x.t_us);
    m
}

/// The nodes that get a panel: every node on a site of up to
/// [`NODE_PANELS`]; else the service (the first root) and the others with
/// the least headroom (limit less the highest per-phase sum of offers).
#[must_use]
pub fn panel_nodes(sc: &Scenario, offered: &[Vec<(u64, [u32; 3])>]) -> Vec<usize> {
    if sc.nodes.len() <= NODE_PANELS {
        return (0..sc.nodes.len()).collect();
    }
    let headroom = |n: usize| -> i64 {
        let peak = offered
            .get(n)
            .into_iter()
            .flatten()
            .flat_map(|p| p.1)
            .max()
            .unwrap_or(0);
        i64::from(sc.nodes[n].limit_da) - i64::from(peak)
    };
    let root = sc
        .nodes
        .iter()
        .position(|n| n.parent.is_none())
        .unwrap_or(0);
    let mut rest: Vec<usize> = (0..sc.nodes.len()).filter(|&n| n != root).collect();
    rest.sort_by_key(|&n| (headroom(n), n));
    let mut v = vec![root];
    v.extend(rest.into_iter().take(NODE_PANELS - 1));
    v
}

/// The stations the offer panel names, in station order, and whether the
/// rest are drawn as one "others" band.
#[must_use]
pub fn named_stations(series: &Series, end_us: u64) -> (Vec<usize>, bool) {
    let n = series.offered.len();
    if n <= NAMED_MAX {
        return ((0..n).collect(), false);
    }
    let charge = |i: usize| -> u128 {
        let s = &series.offered[i];
        s.iter()
            .enumerate()
            .map(|(k, &(t, da))| {
                let next = s.get(k + 1).map_or(end_us, |p| p.0);
                u128::from(da) * u128::from(next.saturating_sub(t))
            })
            .sum()
    };
    let mut by: Vec<usize> = (0..n).collect();
    by.sort_by_key(|&i| (std::cmp::Reverse(charge(i)), i));
    let mut top: Vec<usize> = by.into_iter().take(TOP).collect();
    top.sort_unstable();
    (top, true)
}

/// The phases shown, grouped where their series are the same (a
/// three-phase site's phases often are): one line per group, so no line
/// hides another.
#[must_use]
pub fn phase_groups(per_phase: &[Vec<(u64, f64)>], shown: [bool; 3]) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for p in (0..3).filter(|&p| shown[p] && p < per_phase.len()) {
        match groups.iter_mut().find(|g| per_phase[g[0]] == per_phase[p]) {
            Some(g) => g.push(p),
            None => groups.push(vec![p]),
        }
    }
    groups
}

/// `L1`, or `L1 = L2 = L3` for phases that carry the same.
fn phase_names(g: &[usize]) -> String {
    g.iter()
        .map(|p| format!("L{}", p + 1))
        .collect::<Vec<_>>()
        .join(" = ")
}

/// The time axis unit: minutes, or hours for runs over three hours.
fn time_unit(end_us: u64) -> (f64, &'static str) {
    if end_us > 3 * 3_600_000_000 {
        (3_600e6, "time (h)")
    } else {
        (60e6, "time (min)")
    }
}

fn da(v: impl Into<f64>) -> f64 {
    v.into() / 10.0
}

/// Draw the plot of `trace` to `path` (`.svg` or `.png`).
pub fn draw(path: &Path, sc: &Scenario, trace: &Trace) -> Result<(), String> {
    register_font();
    let data = Data::new(sc, trace);
    let size = (WIDTH, data.height());
    if path.extension().is_some_and(|e| e == "svg") {
        let root = SVGBackend::new(path, size).into_drawing_area();
        data.panels(&root)?;
        root.present()
            .map_err(|e| format!("failed to write {}: {e}", path.display()))
    } else {
        let root = BitMapBackend::new(path, size).into_drawing_area();
        data.panels(&root)?;
        root.present()
            .map_err(|e| format!("failed to write {}: {e}", path.display()))
    }
}

/// Draw the plot as SVG text (the HTML report inlines it).
pub fn svg(sc: &Scenario, trace: &Trace) -> Result<String, String> {
    register_font();
    let data = Data::new(sc, trace);
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, (WIDTH, data.height())).into_drawing_area();
        data.panels(&root)?;
        root.present()
            .map_err(|e| format!("failed to draw the plot: {e}"))?;
    }
    Ok(text)
}

/// What the panels draw, computed once for both formats.
struct Data<'a> {
    sc: &'a Scenario,
    trace: &'a Trace,
    series: Series,
    marks: Vec<Mark>,
    offered: Vec<Vec<(u64, [u32; 3])>>,
    measured: Vec<Vec<(u64, [u32; 3])>>,
    nodes: Vec<usize>,
    named: Vec<usize>,
    others: bool,
}

const STRIP_H: u32 = 44 + LANES as u32 * LANE_PX;
const NODE_H: u32 = 300;
const STATION_H: u32 = 300;

impl<'a> Data<'a> {
    fn new(sc: &'a Scenario, trace: &'a Trace) -> Self {
        let series = trace.series();
        let offered = node_sums(sc, &series, false);
        let measured = node_sums(sc, &series, true);
        let nodes = panel_nodes(sc, &offered);
        let (named, others) = named_stations(&series, trace.end_us);
        Self {
            sc,
            trace,
            marks: marks(sc, trace),
            series,
            offered,
            measured,
            nodes,
            named,
            others,
        }
    }

    fn contactor_h(&self) -> u32 {
        let n = u32::try_from(self.sc.stations.len()).unwrap_or(u32::MAX);
        (80u32.saturating_add(n.saturating_mul(18))).clamp(140, 420)
    }

    fn height(&self) -> u32 {
        let nodes = u32::try_from(self.nodes.len()).unwrap_or(0);
        STRIP_H + nodes * NODE_H + STATION_H + self.contactor_h()
    }

    fn panels<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let err = |e: DrawingAreaErrorKind<DB::ErrorType>| format!("failed to draw the plot: {e}");
        root.fill(&WHITE).map_err(err)?;
        let (strip, mut rest) = root.split_vertically(STRIP_H);
        self.strip(&strip)?;
        for &n in &self.nodes {
            let (top, below) = rest.split_vertically(NODE_H);
            self.node_panel(&top, n)?;
            rest = below;
        }
        let (stations, contactors) = rest.split_vertically(STATION_H);
        self.station_panel(&stations)?;
        self.contactor_panel(&contactors)?;
        Ok(())
    }

    fn end_x(&self) -> f64 {
        let (unit, _) = time_unit(self.trace.end_us);
        (self.trace.end_us.max(1) as f64) / unit
    }

    /// Faint lines at every mark, through a panel.
    fn mark_lines<DB: DrawingBackend>(
        &self,
        ch: &mut ChartContext<
            DB,
            Cartesian2d<
                plotters::coord::types::RangedCoordf64,
                plotters::coord::types::RangedCoordf64,
            >,
        >,
        y0: f64,
        y1: f64,
    ) -> Result<(), String> {
        let (unit, _) = time_unit(self.trace.end_us);
        // Many actions would hide the data: then only faults cross panels.
        let actions = self.marks.iter().filter(|m| !m.fault).count();
        let lines = self
            .marks
            .iter()
            .filter(|m| m.fault || actions <= MARK_LINES_MAX)
            .map(|m| {
                let x = m.t_us as f64 / unit;
                let c = if m.fault {
                    FAULT.mix(0.35)
                } else {
                    ACTION.mix(0.25)
                };
                PathElement::new(vec![(x, y0), (x, y1)], c.stroke_width(1))
            });
        ch.draw_series(lines)
            .map_err(|e| format!("failed to draw the plot: {e}"))?;
        Ok(())
    }

    fn strip<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let err = |e: DrawingAreaErrorKind<DB::ErrorType>| format!("failed to draw the plot: {e}");
        let (unit, _) = time_unit(self.trace.end_us);
        let end_x = self.end_x();
        let mut ch = ChartBuilder::on(area)
            .caption(
                format!(
                    "{} — timeline actions (grey) and faults (red)",
                    self.sc.name
                ),
                ("sans-serif", 22),
            )
            .margin(MARGIN)
            .x_label_area_size(0)
            .y_label_area_size(Y_AREA)
            .build_cartesian_2d(0.0..end_x, 0.0..(LANES as f64 + 0.5))
            .map_err(err)?;
        let (px, _) = ch.plotting_area().dim_in_pixel();
        let px_per_x = f64::from(px.max(1)) / end_x;
        // Lanes top to bottom; a label goes in the first lane free at its x.
        let mut lane_end = [f64::NEG_INFINITY; LANES];
        let mut unlabelled = 0usize;
        let mut k = 0;
        let font = ("sans-serif", 12).into_font();
        while k < self.marks.len() {
            // Marks within 4 px of each other share one label.
            let x0 = self.marks[k].t_us as f64 / unit;
            let mut j = k + 1;
            while j < self.marks.len() && (self.marks[j].t_us as f64 / unit - x0) * px_per_x < 4.0 {
                j += 1;
            }
            let group = &self.marks[k..j];
            let fault = group.iter().any(|m| m.fault);
            let first = group.iter().find(|m| m.fault).unwrap_or(&group[0]);
            let text = if group.len() == 1 {
                first.text.clone()
            } else {
                format!("{} (+{} more)", first.text, group.len() - 1)
            };
            let colour = if fault { FAULT } else { ACTION };
            let width_px = font
                .box_size(&text)
                .map_or(text.len() as f64 * 7.0, |(w, _)| f64::from(w));
            let x_px = x0 * px_per_x;
            // A label near the right edge ends at its mark instead.
            let (left_px, anchor_right) = if x_px + width_px + 4.0 > f64::from(px) {
                (x_px - width_px - 4.0, true)
            } else {
                (x_px, false)
            };
            let lane = (0..LANES).find(|&l| lane_end[l] + 6.0 <= left_px);
            let y_top = LANES as f64 + 0.5;
            if let Some(l) = lane {
                lane_end[l] = left_px + width_px + 4.0;
                let y = y_top - 0.3 - l as f64;
                ch.draw_series(std::iter::once(PathElement::new(
                    vec![(x0, 0.7), (x0, y)],
                    colour.stroke_width(1),
                )))
                .map_err(err)?;
                let tx = if anchor_right {
                    x0 - (width_px + 3.0) / px_per_x
                } else {
                    x0 + 3.0 / px_per_x
                };
                ch.draw_series(std::iter::once(Text::new(
                    text,
                    (tx, y + 0.35),
                    ("sans-serif", 12).into_font().color(&colour),
                )))
                .map_err(err)?;
            } else {
                unlabelled += group.len();
                ch.draw_series(std::iter::once(PathElement::new(
                    vec![(x0, 0.0), (x0, 0.8)],
                    colour.stroke_width(1),
                )))
                .map_err(err)?;
            }
            k = j;
        }
        let note = if self.marks.is_empty() {
            "no timeline actions, no faults".to_string()
        } else if unlabelled > 0 {
            format!(
                "{} marks, {unlabelled} without a label (no room): trace.txt lists them all",
                self.marks.len()
            )
        } else {
            format!("{} marks", self.marks.len())
        };
        let mut hidden: Vec<String> = (0..self.sc.nodes.len())
            .filter(|n| !self.nodes.contains(n))
            .map(|n| self.sc.nodes[n].name.clone())
            .collect();
        if hidden.len() > 8 {
            let more = hidden.len() - 6;
            hidden.truncate(6);
            hidden.push(format!("and {more} more"));
        }
        let note = if hidden.is_empty() {
            note
        } else {
            format!(
                "{note}. Node panels: the service and the {} with the least headroom; not shown: {}",
                self.nodes.len().saturating_sub(1),
                hidden.join(", ")
            )
        };
        area.draw(&Text::new(
            note,
            (
                i32::try_from(MARGIN).unwrap_or(0),
                i32::try_from(STRIP_H).unwrap_or(0) - 14,
            ),
            ("sans-serif", 12).into_font().color(&ACTION),
        ))
        .map_err(err)?;
        Ok(())
    }

    fn node_panel<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        n: usize,
    ) -> Result<(), String> {
        let err = |e: DrawingAreaErrorKind<DB::ErrorType>| format!("failed to draw the plot: {e}");
        let node = &self.sc.nodes[n];
        let (unit, x_desc) = time_unit(self.trace.end_us);
        let end = self.trace.end_us;
        let end_x = self.end_x();
        let metered = self
            .sc
            .meter
            .as_ref()
            .is_some_and(|m| m.node == n && !self.series.meter.is_empty());
        // The phases anything under the node loads.
        let mut phases = [false; 3];
        for st in &self.sc.stations {
            if self.sc.is_under(st.node, n) {
                for (p, on) in st.loads().into_iter().enumerate() {
                    phases[p] |= on;
                }
            }
        }
        let offered: Vec<Vec<(u64, f64)>> = (0..3)
            .map(|p| {
                self.offered[n]
                    .iter()
                    .map(|&(t, v)| (t, da(v[p])))
                    .collect()
            })
            .collect();
        let measured: Vec<Vec<(u64, f64)>> = (0..3)
            .map(|p| {
                if metered {
                    self.series
                        .meter
                        .iter()
                        .map(|&(t, v)| (t, da(v[p])))
                        .collect()
                } else {
                    self.measured[n]
                        .iter()
                        .map(|&(t, v)| (t, da(v[p])))
                        .collect()
                }
            })
            .collect();
        if metered {
            for p in 0..3 {
                phases[p] |= measured[p].iter().any(|x| x.1 != 0.0);
            }
        }
        let limit = da(node.limit_da);
        let breaker = node.breaker_da.map(da);
        let peak_offer = offered.iter().flatten().map(|x| x.1).fold(0.0, f64::max);
        let (lo, hi) = measured
            .iter()
            .flatten()
            .map(|x| x.1)
            .fold((0.0f64, 0.0f64), |(l, h), v| (l.min(v), h.max(v)));
        // Room above the lines for the legend.
        let ymax = limit.max(breaker.unwrap_or(0.0)).max(peak_offer).max(hi) * 1.5 + 1.0;
        let ymin = if lo < 0.0 { lo * 1.12 - 1.0 } else { 0.0 };
        let caption = format!(
            "node {} — per phase: sum of offers (the invariant) and measured current, limit {:.1} A; headroom at the highest offer {:.1} A",
            node.name,
            limit,
            limit - peak_offer
        );
        let mut ch = ChartBuilder::on(area)
            .caption(caption, ("sans-serif", 16))
            .margin(MARGIN)
            .x_label_area_size(34)
            .y_label_area_size(Y_AREA)
            .build_cartesian_2d(0.0..end_x, ymin..ymax)
            .map_err(err)?;
        ch.configure_mesh()
            .x_desc(x_desc)
            .y_desc("current (A)")
            .label_style(("sans-serif", 13))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(err)?;
        self.mark_lines(&mut ch, ymin, ymax)?;
        let cols = ch.plotting_area().dim_in_pixel().0.max(1) as usize;
        if let Some(b) = breaker {
            ch.draw_series(DashedLineSeries::new(
                vec![(0.0, b), (end_x, b)],
                6,
                4,
                BREAKER.stroke_width(2),
            ))
            .map_err(err)?
            .label(format!("breaker {} {b:.1} A", node.name))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], BREAKER.stroke_width(2)));
        }
        ch.draw_series(LineSeries::new(
            vec![(0.0, limit), (end_x, limit)],
            LIMIT.stroke_width(2),
        ))
        .map_err(err)?
        .label(format!("limit {} {limit:.1} A (per phase)", node.name))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], LIMIT.stroke_width(2)));
        for g in phase_groups(&measured, phases) {
            let m = MEASURED[g[0]];
            let what = if metered {
                format!("{} measured (mains meter; export below 0)", phase_names(&g))
            } else {
                format!("{} measured (sum of stations)", phase_names(&g))
            };
            ch.draw_series(LineSeries::new(
                envelope(&columns(&measured[g[0]], end, cols), end, unit),
                m.stroke_width(2),
            ))
            .map_err(err)?
            .label(what)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], m.stroke_width(2)));
        }
        for g in phase_groups(&offered, phases) {
            let o = OFFERED[g[0]];
            ch.draw_series(LineSeries::new(
                envelope(&columns(&offered[g[0]], end, cols), end, unit),
                o.stroke_width(2),
            ))
            .map_err(err)?
            .label(format!("{} sum of offers", phase_names(&g)))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], o.stroke_width(3)));
        }
        ch.draw_series(std::iter::once(Text::new(
            format!("limit {} {limit:.1} A", node.name),
            (end_x * 0.005, limit + (ymax - ymin) * 0.07),
            ("sans-serif", 13).into_font().color(&LIMIT),
        )))
        .map_err(err)?;
        ch.configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 12))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(err)?;
        Ok(())
    }

    fn station_panel<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
    ) -> Result<(), String> {
        let err = |e: DrawingAreaErrorKind<DB::ErrorType>| format!("failed to draw the plot: {e}");
        let (unit, x_desc) = time_unit(self.trace.end_us);
        let end = self.trace.end_us;
        let end_x = self.end_x();
        let n = self.sc.stations.len();
        let offer = |i: usize| -> Vec<(u64, f64)> {
            self.series.offered[i]
                .iter()
                .map(|&(t, v)| (t, da(v)))
                .collect()
        };
        let ymax = self
            .series
            .offered
            .iter()
            .flatten()
            .map(|x| da(x.1))
            .fold(0.0, f64::max)
            * 1.4
            + 1.0;
        let caption = if self.others {
            format!(
                "offer per station (A, from the PWM duty): the {} stations with the most offered charge, and the other {} as a band",
                self.named.len(),
                n - self.named.len()
            )
        } else {
            "offer per station (A, from the PWM duty)".to_string()
        };
        let mut ch = ChartBuilder::on(area)
            .caption(caption, ("sans-serif", 16))
            .margin(MARGIN)
            .x_label_area_size(34)
            .y_label_area_size(Y_AREA)
            .build_cartesian_2d(0.0..end_x, 0.0..ymax)
            .map_err(err)?;
        ch.configure_mesh()
            .x_desc(x_desc)
            .y_desc("offer (A)")
            .label_style(("sans-serif", 13))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(err)?;
        self.mark_lines(&mut ch, 0.0, ymax)?;
        let cols = ch.plotting_area().dim_in_pixel().0.max(1) as usize;
        if self.others {
            let rest: Vec<usize> = (0..n).filter(|i| !self.named.contains(i)).collect();
            let per: Vec<Vec<Column>> = rest
                .iter()
                .map(|&i| columns(&offer(i), end, cols))
                .collect();
            let mut band_hi = Vec::with_capacity(cols);
            let mut band_lo = Vec::with_capacity(cols);
            let mut mean = Vec::with_capacity(cols);
            for c in 0..cols {
                let x0 = column_start(c, cols, end) as f64 / unit;
                let x1 = column_start(c + 1, cols, end) as f64 / unit;
                let lo = per.iter().map(|p| p[c].min).fold(f64::INFINITY, f64::min);
                let hi = per
                    .iter()
                    .map(|p| p[c].max)
                    .fold(f64::NEG_INFINITY, f64::max);
                let m = per.iter().map(|p| p[c].first).sum::<f64>() / per.len().max(1) as f64;
                band_hi.push((x0, hi));
                band_hi.push((x1, hi));
                band_lo.push((x0, lo));
                band_lo.push((x1, lo));
                mean.push((x0, m));
            }
            let band: Vec<(f64, f64)> = band_hi
                .into_iter()
                .chain(band_lo.into_iter().rev())
                .collect();
            let grey = OTHERS_BAND;
            ch.draw_series(std::iter::once(Polygon::new(band, grey.filled())))
                .map_err(err)?
                .label(format!("others ({} stations): min to max", rest.len()))
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], grey.filled()));
            let dark = OTHERS_MEAN;
            ch.draw_series(LineSeries::new(mean, dark.stroke_width(2)))
                .map_err(err)?
                .label(format!("others ({} stations): mean", rest.len()))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 14, y)], dark.stroke_width(2))
                });
        }
        for (k, &i) in self.named.iter().enumerate() {
            let c = STATION_COLOURS[k % NAMED_MAX];
            ch.draw_series(LineSeries::new(
                envelope(&columns(&offer(i), end, cols), end, unit),
                c.stroke_width(2),
            ))
            .map_err(err)?
            .label(format!("st{}", self.sc.stations[i].id))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], c.stroke_width(3)));
        }
        ch.configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 12))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(err)?;
        Ok(())
    }

    fn contactor_panel<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
    ) -> Result<(), String> {
        let err = |e: DrawingAreaErrorKind<DB::ErrorType>| format!("failed to draw the plot: {e}");
        let (unit, x_desc) = time_unit(self.trace.end_us);
        let end_x = self.end_x();
        let n = self.sc.stations.len();
        let rows = n.max(1) as f64;
        let ids: Vec<u8> = self.sc.stations.iter().map(|s| s.id).collect();
        let label = |y: &f64| -> String {
            let r = y.round();
            if (y - r).abs() < 1e-6 && r >= 0.0 {
                // Row 0 at the top.
                let row = r as usize;
                ids.get(n.saturating_sub(1).saturating_sub(row))
                    .filter(|_| row < n)
                    .map_or_else(String::new, |id| format!("st{id}"))
            } else {
                String::new()
            }
        };
        let mut ch = ChartBuilder::on(area)
            .caption("contactor closed, per station", ("sans-serif", 16))
            .margin(MARGIN)
            .x_label_area_size(34)
            .y_label_area_size(Y_AREA)
            .build_cartesian_2d(0.0..end_x, -0.5..(rows - 0.5))
            .map_err(err)?;
        ch.configure_mesh()
            .disable_y_mesh()
            .x_desc(x_desc)
            .y_labels(n.clamp(1, 24))
            .y_label_formatter(&label)
            .label_style(("sans-serif", 12))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(err)?;
        self.mark_lines(&mut ch, -0.5, rows - 0.5)?;
        let colour_of = |i: usize| -> RGBColor {
            self.named
                .iter()
                .position(|&j| j == i)
                .map_or(RGBColor(120, 120, 120), |k| STATION_COLOURS[k % NAMED_MAX])
        };
        for i in 0..n {
            let c = &self.series.contactor[i];
            // Station 0 on the top row.
            let y = (n - 1 - i) as f64;
            let half = if n > 40 { 0.5 } else { 0.35 };
            let colour = colour_of(i);
            let mut bars = Vec::new();
            for (k, &(t, closed)) in c.iter().enumerate() {
                if closed {
                    let t_end = c.get(k + 1).map_or(self.trace.end_us, |p| p.0);
                    bars.push(Rectangle::new(
                        [(t as f64 / unit, y - half), (t_end as f64 / unit, y + half)],
                        colour.filled(),
                    ));
                }
            }
            ch.draw_series(bars).map_err(err)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_column_keeps_a_peak_shorter_than_a_pixel() {
        // 10 s at 0, a 1 ms spike to 50, back to 0; one hour over 100
        // columns: a sample per column would miss the spike.
        let s = [(0, 0.0), (10_000_000, 50.0), (10_001_000, 0.0)];
        let cols = columns(&s, 3_600_000_000, 100);
        assert_eq!(cols.len(), 100);
        assert_eq!(
            cols[0],
            Column {
                first: 0.0,
                min: 0.0,
                max: 50.0,
                last: 0.0
            }
        );
        assert!(cols[1..].iter().all(|c| c.max == 0.0));
        let pts = envelope(&cols, 3_600_000_000, 60e6);
        assert!(pts.iter().any(|p| p.1 == 50.0), "{pts:?}");
        assert_eq!(pts.last(), Some(&(60.0, 0.0)));
    }

    #[test]
    fn the_envelope_draws_steps_never_slopes() {
        // Level for many columns, then a step exactly at a column start
        // (a first version drew a slope from the last drawn point).
        let s = [(0, 48.0), (6_000, 36.0), (6_500, 40.0), (8_000, 48.0)];
        let pts = envelope(&columns(&s, 10_000, 10), 10_000, 1.0);
        for w in pts.windows(2) {
            assert!(
                w[0].0 == w[1].0 || w[0].1 == w[1].1,
                "sloped segment {:?} -> {:?} in {pts:?}",
                w[0],
                w[1]
            );
        }
        assert!(pts.contains(&(6_000.0, 36.0)) && pts.contains(&(6_000.0, 40.0)));
    }

    #[test]
    fn a_column_starts_with_the_value_that_holds_there() {
        let s = [(0, 1.0), (500, 7.0), (1_500, 3.0)];
        let cols = columns(&s, 2_000, 2);
        assert_eq!(
            cols,
            vec![
                Column {
                    first: 1.0,
                    min: 1.0,
                    max: 7.0,
                    last: 7.0
                },
                Column {
                    first: 7.0,
                    min: 3.0,
                    max: 7.0,
                    last: 3.0
                }
            ]
        );
    }

    #[test]
    fn big_sites_name_the_busiest_stations_and_band_the_rest() {
        let mut s = Series {
            offered: vec![vec![(0, 0)]; 20],
            ..Series::default()
        };
        // Station 13 offers the most, 5 the second most.
        s.offered[13].push((0, 320));
        s.offered[5].push((10, 160));
        let (named, others) = named_stations(&s, 100);
        assert!(others);
        assert_eq!(named.len(), TOP);
        assert!(named.contains(&13) && named.contains(&5), "{named:?}");
        let small = Series {
            offered: vec![vec![(0, 0)]; NAMED_MAX],
            ..Series::default()
        };
        assert_eq!(
            named_stations(&small, 100),
            ((0..NAMED_MAX).collect(), false)
        );
    }

    fn corpus(name: &str) -> Scenario {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/scenarios")
            .join(format!("{name}.toml"));
        Scenario::load(&p).unwrap()
    }

    #[test]
    fn every_timeline_action_and_fault_is_marked() {
        // The link fault at 2 min and its repair at 5 min, which the plot
        // used not to show at all.
        let sc = corpus("fault-one-way-uplink");
        let trace = Trace {
            end_us: sc.duration_us,
            ..Trace::default()
        };
        let m = marks(&sc, &trace);
        assert_eq!(m.len(), sc.timeline.len());
        let at = |t_us: u64| m.iter().find(|x| x.t_us == t_us).unwrap();
        assert!(at(120_000_000).fault, "{m:?}");
        assert!(at(120_000_000).text.contains("lost"), "{m:?}");
        assert!(!at(300_000_000).fault, "{m:?}");
        assert_eq!(at(300_000_000).text, "link repaired");
        // A station's own fault report is a fault mark too.
        let mut t = trace.clone();
        t.entries.push(crate::trace::Entry {
            t_us: 7_000_000,
            what: What::Telemetry {
                station: 2,
                text: "fault pilot-short".into(),
            },
        });
        let m = marks(&sc, &t);
        assert!(m
            .iter()
            .any(|x| x.fault && x.t_us == 7_000_000 && x.text == "st2 fault pilot-short"));
    }

    #[test]
    fn big_trees_plot_the_service_and_the_tightest_nodes() {
        let sc = corpus("multilevel-4x3");
        assert!(sc.nodes.len() > NODE_PANELS);
        let root = sc.nodes.iter().position(|n| n.parent.is_none()).unwrap();
        // circuit c offers (limit - 10 A * c): the first two are tightest.
        let mut offered = vec![vec![(0, [0; 3])]; sc.nodes.len()];
        let circuits: Vec<usize> = (0..sc.nodes.len()).filter(|&n| n != root).collect();
        for (k, &n) in circuits.iter().rev().enumerate() {
            let peak = sc.nodes[n].limit_da - 100 * u32::try_from(k).unwrap();
            offered[n].push((5, [peak, 0, 0]));
        }
        let shown = panel_nodes(&sc, &offered);
        assert_eq!(shown.len(), NODE_PANELS);
        assert_eq!(shown[0], root);
        let last = circuits.len() - 1;
        assert_eq!(&shown[1..], &[circuits[last], circuits[last - 1]]);
        // A small tree shows every node.
        let small = corpus("circuit-4x48");
        assert_eq!(
            panel_nodes(&small, &[]),
            (0..small.nodes.len()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn equal_phases_share_a_line_and_different_ones_do_not() {
        let a = vec![(0, 0.0), (10, 16.0)];
        let b = vec![(0, 0.0), (10, 32.0)];
        assert_eq!(
            phase_groups(&[a.clone(), a.clone(), a.clone()], [true; 3]),
            vec![vec![0, 1, 2]]
        );
        assert_eq!(
            phase_groups(&[a.clone(), b, a], [true; 3]),
            vec![vec![0, 2], vec![1]]
        );
        assert_eq!(
            phase_groups(&[vec![], vec![], vec![]], [false, true, false]),
            vec![vec![1]]
        );
    }

    #[test]
    fn the_station_colours_do_not_repeat() {
        for (i, a) in STATION_COLOURS.iter().enumerate() {
            for b in &STATION_COLOURS[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // The station panel of a big site: the named ones, the band and the
        // others' mean, and the marks.
        let mut big: Vec<RGBColor> = STATION_COLOURS[..TOP].to_vec();
        big.extend([OTHERS_BAND, OTHERS_MEAN, ACTION, FAULT]);
        for (i, a) in big.iter().enumerate() {
            for b in &big[i + 1..] {
                assert_ne!(a, b);
            }
        }
        let node: Vec<RGBColor> = OFFERED
            .iter()
            .chain(&MEASURED)
            .chain([&LIMIT, &BREAKER, &ACTION, &FAULT])
            .copied()
            .collect();
        for (i, a) in node.iter().enumerate() {
            for b in &node[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
