//! Artefacts per scenario, under `--out`: the trace as text, a VCD, a plot
//! (SVG and PNG), and for the whole run `report.json`, `junit.xml` and
//! `report.html`.

pub mod html;
pub mod plot;
pub mod report;
pub mod vcd;

use std::path::{Path, PathBuf};

use crate::runner::ScenarioRun;

/// Where one scenario's artefacts go.
#[must_use]
pub fn scenario_dir(out: &Path, name: &str) -> PathBuf {
    out.join(name)
}

/// Write a scenario's own artefacts; returns the files written.
pub fn write_scenario(out: &Path, run: &ScenarioRun) -> std::io::Result<Vec<PathBuf>> {
    let dir = scenario_dir(out, &run.scenario.name);
    std::fs::create_dir_all(&dir)?;
    let mut files = Vec::new();
    let trace = dir.join("trace.txt");
    std::fs::write(&trace, run.trace.canonical())?;
    files.push(trace);
    let vcd = dir.join("trace.vcd");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&vcd)?);
    vcd::write(&mut f, &run.scenario, &run.trace)?;
    files.push(vcd);
    let d = dir.join("golden.diff");
    if let Some(crate::golden::GoldenOutcome::Differs { diff, .. }) = &run.golden {
        std::fs::write(&d, diff)?;
        files.push(d);
    } else {
        // A diff from an earlier run must not outlive the run that fixed it.
        match std::fs::remove_file(&d) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    for ext in ["svg", "png"] {
        let p = dir.join(format!("plot.{ext}"));
        plot::draw(&p, &run.scenario, &run.trace).map_err(std::io::Error::other)?;
        files.push(p);
    }
    Ok(files)
}
