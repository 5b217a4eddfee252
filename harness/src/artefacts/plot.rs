//! The plot of a run (SVG or PNG by file extension), pure Rust with a
//! vendored font: measured currents stacked per station against the node
//! limits, the duty per station, and contactor bars.

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::scenario::Scenario;
use crate::trace::{at, Trace};

static FONT: Once = Once::new();
const FONT_BYTES: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
const SAMPLES: usize = 1_200;

fn register_font() {
    FONT.call_once(|| {
        // The font is vendored and valid; if registration failed, text would
        // not render and the plot would still be drawn.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT_BYTES);
    });
}

fn color(i: usize) -> RGBColor {
    const P: [RGBColor; 10] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
    ];
    P[i % P.len()]
}

/// Draw the plot of `trace` to `path` (`.svg` or `.png`).
pub fn draw(path: &Path, sc: &Scenario, trace: &Trace) -> Result<(), String> {
    register_font();
    let size = (1_400, 1_000);
    if path.extension().is_some_and(|e| e == "svg") {
        let root = SVGBackend::new(path, size).into_drawing_area();
        panels(&root, sc, trace)?;
        root.present()
            .map_err(|e| format!("failed to write {}: {e}", path.display()))
    } else {
        let root = BitMapBackend::new(path, size).into_drawing_area();
        panels(&root, sc, trace)?;
        root.present()
            .map_err(|e| format!("failed to write {}: {e}", path.display()))
    }
}

fn panels<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    sc: &Scenario,
    trace: &Trace,
) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| format!("failed to draw the plot: {e}");
    root.fill(&WHITE).map_err(err)?;
    let series = trace.series();
    let end_min = (trace.end_us.max(1) as f64) / 60e6;
    let n = sc.stations.len();
    let (top, rest) = root.split_vertically(480);
    let (mid, bottom) = rest.split_vertically(260);
    let times: Vec<f64> = (0..=SAMPLES)
        .map(|k| end_min * k as f64 / SAMPLES as f64)
        .collect();
    let us = |m: f64| (m * 60e6) as u64;

    // Stacked measured currents (busiest station phase) and node limits.
    let stacked: Vec<Vec<f64>> = {
        let mut acc = vec![0.0; times.len()];
        (0..n)
            .map(|i| {
                for (k, &t) in times.iter().enumerate() {
                    let m = at(&series.measured[i], us(t), [0; 3])
                        .into_iter()
                        .max()
                        .unwrap_or(0);
                    acc[k] += f64::from(m) / 10.0;
                }
                acc.clone()
            })
            .collect()
    };
    let max_limit = sc.nodes.iter().map(|x| x.limit_da).max().unwrap_or(0) as f64 / 10.0;
    // The meter's busiest phase, signed (export shows below zero).
    let busiest = |m: [i32; 3]| m.into_iter().max_by_key(|x| x.abs()).unwrap_or(0);
    let meter_max = series.meter.iter().map(|m| busiest(m.1)).max().unwrap_or(0) as f64 / 10.0;
    let ymin = (series
        .meter
        .iter()
        .map(|m| busiest(m.1))
        .min()
        .unwrap_or(0)
        .min(0) as f64
        / 10.0)
        * 1.1;
    let ymax = stacked
        .last()
        .map_or(0.0, |v| v.iter().copied().fold(0.0, f64::max))
        .max(max_limit)
        .max(meter_max)
        * 1.1
        + 1.0;
    let mut ch = ChartBuilder::on(&top)
        .caption(
            format!(
                "{} — measured current, stacked per station, against node limits",
                sc.name
            ),
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..end_min, ymin..ymax)
        .map_err(err)?;
    ch.configure_mesh()
        .x_desc("time (min)")
        .y_desc("current (A)")
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    for i in (0..n).rev() {
        let c = color(i);
        let pts: Vec<(f64, f64)> = times
            .iter()
            .copied()
            .zip(stacked[i].iter().copied())
            .collect();
        ch.draw_series(AreaSeries::new(pts, 0.0, c.mix(0.75)).border_style(c.stroke_width(1)))
            .map_err(err)?
            .label(format!("st{}", sc.stations[i].id))
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
    }
    for node in &sc.nodes {
        let l = f64::from(node.limit_da) / 10.0;
        if l <= ymax {
            ch.draw_series(LineSeries::new(
                vec![(0.0, l), (end_min, l)],
                BLACK.stroke_width(2),
            ))
            .map_err(err)?
            .label(format!("limit {} {:.0} A", node.name, l))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 12, y)], BLACK.stroke_width(2)));
        }
    }
    if !series.meter.is_empty() {
        let pts: Vec<(f64, f64)> = times
            .iter()
            .map(|&t| {
                (
                    t,
                    f64::from(busiest(at(&series.meter, us(t), [0; 3]))) / 10.0,
                )
            })
            .collect();
        ch.draw_series(LineSeries::new(pts, RED.stroke_width(2)))
            .map_err(err)?
            .label("mains meter (busiest phase; export below 0)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 12, y)], RED.stroke_width(2)));
    }
    ch.configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(err)?;

    // Duty per station.
    let mut ch = ChartBuilder::on(&mid)
        .caption("PWM duty per station", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..end_min, 0.0..100.0)
        .map_err(err)?;
    ch.configure_mesh()
        .y_desc("duty (%)")
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    for i in 0..n {
        let pts: Vec<(f64, f64)> = times
            .iter()
            .map(|&t| {
                (
                    t,
                    at(&series.duty[i], us(t), None).map_or(0.0, |(d, _)| f64::from(d) / 100.0),
                )
            })
            .collect();
        ch.draw_series(LineSeries::new(pts, color(i).stroke_width(2)))
            .map_err(err)?;
    }

    // Contactor bars.
    let rows = n.max(1) as f64;
    let mut ch = ChartBuilder::on(&bottom)
        .caption("contactor closed", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..end_min, 0.0..rows)
        .map_err(err)?;
    ch.configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    for i in 0..n {
        let c = &series.contactor[i];
        let y0 = i as f64 + 0.15;
        let y1 = i as f64 + 0.85;
        let mut bars = Vec::new();
        for (k, &(t, closed)) in c.iter().enumerate() {
            if closed {
                let t_end = c.get(k + 1).map_or(trace.end_us, |p| p.0);
                bars.push(Rectangle::new(
                    [(t as f64 / 60e6, y0), (t_end as f64 / 60e6, y1)],
                    color(i).filled(),
                ));
            }
        }
        ch.draw_series(bars).map_err(err)?;
    }
    Ok(())
}
