//! The `sharebench` command line.
//!
//! ```text
//! sharebench run [PATH...] [--bench sim|qemu|URL|NAME] [--benches FILE] [--seed N] [--out DIR] [--filter TEXT] [--hardware-set] [--time-scale X] [--jobs N] [--bless [--yes]]
//! sharebench check FILE...
//! sharebench virtual-fixture SCENARIO [--pty] [--time-scale X] [--seed N] [--caps WORD,..] [--inventory FILE [--name NAME]]
//! sharebench selftest --bench serial:PORT[@BAUD] [--channel N]
//! sharebench flash --bench NAME [--benches FILE]
//! ```
//!
//! Exit codes: 0 every scenario passed; 1 a check failed or a golden trace
//! differs (or a self-test failed); 2 setup error (a bad scenario file, no
//! scenario, no fixture, a fixture without the channels or capabilities a
//! scenario needs);
//! 3 a bench stopped answering, made no progress in fixture time, or the
//! fixture lost data (the run is incomplete).
//!
//! Golden traces: a difference prints the golden's path, the first
//! differing line and the diff's path on stderr; a missing golden fails the
//! run when `CI` is set (non-empty) and is listed in the summary otherwise.
//! `--bless` prints each difference (or the whole new trace, for a missing
//! golden) and writes it to the `.snap` file after a `y` on the terminal;
//! `--bless --yes` writes them all (a batch already reviewed). Only runs
//! whose checks passed are blessed. With `--seed N` other than a scenario's
//! own seed, the golden is `snapshots/<name>@seed-N.snap` (see
//! [`golden::golden_name`]).

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use serialport::SerialPort as _;

use crate::artefacts;
use crate::bench::BenchSpec;
use crate::bench::{Bench, BenchError, Record};
use crate::golden::{self, GoldenOutcome};
use crate::runner::{self, ScenarioRun, Verdict};
use crate::scenario::Scenario;
use crate::serial::{SerialBench, Timeouts};
use crate::sim::VirtualBench;
use rig::protocol::{Capability, Caps};

/// Documented exit codes.
pub mod exit {
    pub const PASS: u8 = 0;
    pub const FAILED: u8 = 1;
    pub const SETUP: u8 = 2;
    pub const INCOMPLETE: u8 = 3;
}

#[derive(Debug, Parser)]
#[command(
    name = "sharebench",
    version,
    about = "Hardware-in-the-loop test rig for load-sharing EV charging stations"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run scenarios (files or directories) and check them.
    Run(RunArgs),
    /// Validate scenarios (files or directories) without running them.
    Check(CheckArgs),
    /// Serve a scenario's virtual site as a fixture on a pseudo-terminal.
    VirtualFixture(VirtualFixtureArgs),
    /// Run the fixture's PWM loopback self-test and report its error.
    Selftest(SelftestArgs),
    /// Search random faulted sites for a broken invariant, and shrink what
    /// breaks one to a scenario file.
    Explore(crate::explore::ExploreArgs),
    /// Flash each station of an inventory bench with its image through its
    /// debug probe, then reset it (needs `--features probe`).
    Flash(FlashArgs),
}

/// Options of `flash`.
#[derive(Debug, Args)]
struct FlashArgs {
    /// The bench's name in the inventory.
    #[arg(long, env = "SHAREBENCH_BENCH")]
    bench: String,
    /// The bench inventory (benches.toml).
    #[arg(long, env = "SHAREBENCH_BENCHES")]
    benches: Option<PathBuf>,
}

/// Options of `selftest`.
#[derive(Debug, Args)]
struct SelftestArgs {
    /// `serial:PORT[@BAUD]`: the fixture to test.
    #[arg(long, env = "SHAREBENCH_BENCH")]
    bench: String,
    /// Only this channel (default: every channel the fixture has).
    #[arg(long)]
    channel: Option<u8>,
}

/// Options of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Scenario files or directories of them.
    #[arg(default_value = "fixtures/scenarios")]
    pub paths: Vec<PathBuf>,
    /// Where to run: `sim` (the virtual bench), `qemu` (the station image
    /// in QEMU against the virtual bench's models, in real time; the image
    /// is `target/images/station-qemu.elf` from `cargo xtask images`, or
    /// `SHAREBENCH_QEMU_IMAGE`), `serial:PORT[@BAUD]`,
    /// `tcp:HOST:PORT`, `rfc2217://HOST:PORT[@BAUD]`, or a bench's name
    /// from the inventory.
    #[arg(long, default_value = "sim", env = "SHAREBENCH_BENCH")]
    pub bench: String,
    /// The bench inventory (benches.toml) that `--bench NAME` looks in.
    #[arg(long, env = "SHAREBENCH_BENCHES")]
    pub benches: Option<PathBuf>,
    /// How long to wait for a bench another run holds, seconds.
    #[arg(long, default_value_t = 600, env = "SHAREBENCH_LOCK_WAIT")]
    pub lock_wait_s: u64,
    /// Seed for every scenario (default: each scenario's own).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Where artefacts go.
    #[arg(long, default_value = "target/sharebench")]
    pub out: PathBuf,
    /// Only scenarios whose name contains this.
    #[arg(long)]
    pub filter: Option<String>,
    /// Only the hardware set (`hardware-set = true` in the file): what a
    /// lab bench runs, at most 30 minutes of bench time.
    #[arg(long)]
    pub hardware_set: bool,
    /// Timing tolerance for golden traces on real benches, ms.
    #[arg(long, default_value_t = 50)]
    pub tolerance_ms: u64,
    /// Skip the golden comparison.
    #[arg(long, conflicts_with = "bless")]
    pub no_golden: bool,
    /// Write this run's trace as the golden of each scenario whose golden
    /// differs or is missing, after printing the diff and asking on the
    /// terminal (only scenarios whose checks passed).
    #[arg(long)]
    pub bless: bool,
    /// With `--bless`: write without asking (a batch already reviewed).
    #[arg(long, requires = "bless")]
    pub yes: bool,
    /// Serial benches: the slowest the fixture's clock may run, in fixture
    /// seconds per wall second (1 for hardware). Each wait for fixture time
    /// is bounded by the time waited for over this, plus a margin.
    #[arg(long, default_value_t = 1.0, env = "SHAREBENCH_TIME_SCALE")]
    pub time_scale: f64,
    /// `--bench qemu`: scenarios run at once (each its own QEMU processes).
    #[arg(long, default_value_t = 1, env = "SHAREBENCH_JOBS")]
    pub jobs: usize,
}

#[derive(Debug, Args)]
struct CheckArgs {
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
struct VirtualFixtureArgs {
    scenario: PathBuf,
    /// Serve on a new pseudo-terminal and print its path.
    #[arg(long)]
    pty: bool,
    /// Virtual seconds per wall second.
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    #[arg(long)]
    seed: Option<u64>,
    /// Stop after this long (wall time), e.g. "2min".
    #[arg(long)]
    stop_after: Option<String>,
    /// Announce only these capabilities (comma-separated words, `-` for
    /// none), as a fixture board with less hardware would.
    #[arg(long)]
    caps: Option<String>,
    /// Also write a bench inventory (benches.toml) naming this fixture and
    /// each station's debug pty, for `run --benches FILE --bench NAME`.
    #[arg(long)]
    inventory: Option<PathBuf>,
    /// The bench's name in that inventory.
    #[arg(long, default_value = "virtual")]
    name: String,
}

/// Entry point of the binary.
#[must_use]
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Cmd::Run(a) => run(&a),
        Cmd::Check(a) => check(&a),
        Cmd::VirtualFixture(a) => virtual_fixture(&a),
        Cmd::Selftest(a) => selftest(&a),
        Cmd::Explore(a) => explore(&a),
        Cmd::Flash(a) => flash(&a),
    };
    ExitCode::from(code)
}

/// Scenario files under `paths`, sorted.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let rd = std::fs::read_dir(p)
                .map_err(|e| format!("failed to read directory {}: {e}", p.display()))?;
            let mut v: Vec<PathBuf> = rd
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|f| f.extension().is_some_and(|x| x == "toml"))
                .collect();
            v.sort();
            files.extend(v);
        } else if p.exists() {
            files.push(p.clone());
        } else {
            return Err(format!(
                "failed to find scenario {} (hint: run from the repository root, or give a path)",
                p.display()
            ));
        }
    }
    Ok(files)
}

fn check(a: &CheckArgs) -> u8 {
    // Files or directories, found as `run` finds them.
    let files = match discover(&a.files) {
        Ok(f) if f.is_empty() => {
            eprintln!(
                "error: no scenario files (*.toml) in {}",
                a.files
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            return exit::SETUP;
        }
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::SETUP;
        }
    };
    let mut code = exit::PASS;
    let mut loaded = Vec::new();
    for f in &files {
        match Scenario::load(f) {
            Ok(sc) => {
                println!(
                    "{}: ok ({}, {} stations, {} steps)",
                    f.display(),
                    sc.name,
                    sc.stations.len(),
                    sc.timeline.len()
                );
                loaded.push(sc);
            }
            Err(e) => {
                eprintln!("error: {e}");
                code = exit::SETUP;
            }
        }
    }
    for e in duplicate_names(&loaded) {
        eprintln!("error: {e}");
        code = exit::SETUP;
    }
    code
}

/// Where a scenario's name comes from, for messages.
fn name_source(sc: &Scenario) -> String {
    match sc.name_at {
        Some((line, column)) => format!("{}:{line}:{column}", sc.path.display()),
        None => format!("{} (named after the file)", sc.path.display()),
    }
}

/// Scenarios of one run that share a name: their artefacts (and golden
/// traces) would overwrite each other.
fn duplicate_names(scenarios: &[Scenario]) -> Vec<String> {
    let mut errors = Vec::new();
    for (i, sc) in scenarios.iter().enumerate() {
        if let Some(first) = scenarios[..i].iter().find(|o| o.name == sc.name) {
            errors.push(format!(
                "{}: scenario name \"{}\" is also the name of {}; expected one scenario per name in a run (their artefacts would overwrite each other)",
                name_source(sc),
                sc.name,
                name_source(first)
            ));
        }
    }
    errors
}

/// Load every scenario; any error stops the run before anything runs.
fn load_all(files: &[PathBuf], filter: Option<&str>) -> Result<Vec<Scenario>, Vec<String>> {
    let mut errors = Vec::new();
    let mut out = Vec::new();
    for f in files {
        match Scenario::load(f) {
            Ok(sc) => {
                if filter.is_none_or(|flt| sc.name.contains(flt)) {
                    out.push(sc);
                }
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    errors.extend(duplicate_names(&out));
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Run one scenario on the virtual bench (used by the CLI and the tests).
pub fn run_sim(sc: &Scenario, seed: Option<u64>) -> Result<ScenarioRun, BenchError> {
    run_sim_observed(sc, seed, &mut |_| {})
}

/// [`run_sim`], telling `at` the simulated time (microseconds from the
/// start) as records arrive: the progress a terminal shows for long
/// scenarios. Watching changes nothing in the run.
pub fn run_sim_observed(
    sc: &Scenario,
    seed: Option<u64>,
    at: &mut dyn FnMut(u64),
) -> Result<ScenarioRun, BenchError> {
    let seed = runner::effective_seed(sc, seed);
    if sc.requires_hardware {
        return Ok(runner::skipped(
            sc,
            seed,
            "needs a bench fixture: run with --bench serial:PORT".into(),
        ));
    }
    let mut bench = VirtualBench::new(sc, seed)?;
    let start_us = bench.now_us();
    let mut watched = Watched {
        inner: &mut bench,
        start_us,
        at,
    };
    Ok(runner::run(sc, &mut watched, seed))
}

/// A bench that passes everything through and reports the time of each
/// record it passes on.
struct Watched<'a> {
    inner: &'a mut dyn Bench,
    start_us: u64,
    at: &'a mut dyn FnMut(u64),
}

fn record_time(r: &Record) -> u64 {
    match r {
        Record::Event { t_us, .. }
        | Record::Telemetry { t_us, .. }
        | Record::Garbled { t_us, .. }
        | Record::Loss { t_us, .. } => *t_us,
    }
}

impl Bench for Watched<'_> {
    fn name(&self) -> String {
        self.inner.name()
    }
    fn command(
        &mut self,
        cmd: rig::protocol::Command,
        sink: &mut dyn FnMut(Record),
    ) -> Result<(), BenchError> {
        self.inner.command(cmd, sink)
    }
    fn fault(&mut self, fault: &crate::bench::SimFault) -> Result<(), BenchError> {
        self.inner.fault(fault)
    }
    fn run_until(&mut self, t_us: u64, sink: &mut dyn FnMut(Record)) -> Result<(), BenchError> {
        let start = self.start_us;
        let at = &mut *self.at;
        self.inner.run_until(t_us, &mut |r| {
            at(record_time(&r).saturating_sub(start));
            sink(r);
        })
    }
    fn now_us(&self) -> u64 {
        self.inner.now_us()
    }
    fn is_virtual(&self) -> bool {
        self.inner.is_virtual()
    }
    fn fixture(&self) -> Option<&rig::protocol::FixtureInfo> {
        self.inner.fixture()
    }
    fn commission(
        &mut self,
        station: usize,
        message: &str,
        sink: &mut dyn FnMut(Record),
    ) -> Result<Option<Result<(), firmware::telemetry::Refusal>>, BenchError> {
        self.inner.commission(station, message, sink)
    }
    // Every other method forwarded too: a default here would hide what the
    // bench can do (commission all stations at once, self-test, reach a
    // station's debug channel).
    fn commission_all(
        &mut self,
        messages: &[String],
        sink: &mut dyn FnMut(Record),
    ) -> Result<Vec<Option<Result<(), firmware::telemetry::Refusal>>>, BenchError> {
        self.inner.commission_all(messages, sink)
    }
    fn self_test(
        &mut self,
        ch: u8,
        sink: &mut dyn FnMut(Record),
    ) -> Result<(u8, rig::selftest::SelfTestReport), BenchError> {
        self.inner.self_test(ch, sink)
    }
    fn operator(
        &mut self,
        station: usize,
        line: &str,
        sink: &mut dyn FnMut(Record),
    ) -> Result<(), BenchError> {
        self.inner.operator(station, line, sink)
    }
}

/// The progress line of a scenario `done_us` into `total_us` of simulated
/// time, in the unit that suits its length.
#[must_use]
pub fn sim_progress(name: &str, done_us: u64, total_us: u64) -> String {
    let (unit, word) = if total_us >= 2 * 3_600_000_000 {
        (3_600e6, "h")
    } else if total_us >= 2 * 60_000_000 {
        (60e6, "min")
    } else {
        (1e6, "s")
    };
    let done = done_us.min(total_us) as f64 / unit;
    let total = total_us as f64 / unit;
    format!("{name}: {done:.1} of {total:.1} {word} simulated")
}

/// Run one scenario with its stations as the station image in QEMU
/// (`--bench qemu`), against the virtual bench's models in real time.
pub fn run_qemu(
    sc: &Scenario,
    seed: Option<u64>,
    opts: &crate::qemu::QemuOptions,
) -> Result<ScenarioRun, BenchError> {
    let seed = runner::effective_seed(sc, seed);
    if sc.requires_hardware {
        return Ok(runner::skipped(
            sc,
            seed,
            "needs a bench fixture: run with --bench serial:PORT".into(),
        ));
    }
    let mut bench = VirtualBench::qemu(sc, seed, opts.clone())?;
    Ok(runner::run(sc, &mut bench, seed))
}

/// Every scenario on QEMU, `jobs` at a time, in the order given.
fn run_qemu_all(
    scenarios: &[Scenario],
    seed: Option<u64>,
    opts: &crate::qemu::QemuOptions,
    jobs: usize,
) -> Vec<Result<ScenarioRun, BenchError>> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, scenarios.len().max(1)) {
            s.spawn(|| loop {
                let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(sc) = scenarios.get(k) else { break };
                let r = run_qemu(sc, seed, opts);
                if let Ok(mut d) = done.lock() {
                    d.push((k, r));
                }
            });
        }
    });
    let mut done = done.into_inner().unwrap_or_default();
    done.sort_by_key(|(k, _)| *k);
    done.into_iter().map(|(_, r)| r).collect()
}

/// The line bench `--bench` names, held for this run; `None` for `sim`.
fn open_bench(
    a: &RunArgs,
) -> Result<(Option<SerialBench>, Option<crate::inventory::BenchLock>), String> {
    let spec: BenchSpec = a.bench.parse()?;
    let inventory = crate::inventory::Inventory::from_args(a.benches.as_deref())?;
    let (fixture, entry) = crate::inventory::resolve(spec.clone(), inventory.as_ref())?;
    match fixture {
        BenchSpec::Sim | BenchSpec::Qemu => Ok((None, None)),
        line => {
            check_time_scale(a.time_scale)?;
            let timeouts = Timeouts {
                time_scale: a.time_scale,
                ..Timeouts::default()
            };
            // One run at a time per bench: parallel runs queue here.
            let lock =
                crate::inventory::lock(&spec.to_string(), Duration::from_secs(a.lock_wait_s))
                    .map_err(|e| e.to_string())?;
            let bench = SerialBench::open_bench(&line, entry.as_ref(), timeouts)
                .map_err(|e| e.to_string())?;
            if let Some(note) = bench.telemetry_note() {
                eprintln!("note: {note}");
            }
            Ok((Some(bench), Some(lock)))
        }
    }
}

fn run(a: &RunArgs) -> u8 {
    let files = match discover(&a.paths) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::SETUP;
        }
    };
    let scenarios = match load_all(&files, a.filter.as_deref()) {
        Ok(s) if a.hardware_set => s.into_iter().filter(|sc| sc.hardware_set).collect(),
        Ok(s) => s,
        Err(errs) => {
            for e in errs {
                eprintln!("error: {e}");
            }
            eprintln!("error: failed to load scenarios; nothing ran");
            return exit::SETUP;
        }
    };
    if scenarios.is_empty() {
        eprintln!(
            "error: no scenario matched (paths {}, filter {})",
            a.paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            a.filter.as_deref().unwrap_or("none")
        );
        return exit::SETUP;
    }
    if a.bless && !a.yes && !std::io::stdin().is_terminal() {
        eprintln!(
            "error: --bless asks before writing each golden, and stdin is not a terminal; review the diffs (sharebench run without --bless writes them to golden.diff) and use --bless --yes"
        );
        return exit::SETUP;
    }
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
    let (mut serial, _lock) = match open_bench(a) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::SETUP;
        }
    };
    let qemu = match a.bench.parse::<BenchSpec>() {
        Ok(BenchSpec::Qemu) => match crate::qemu::QemuOptions::from_env() {
            Ok(o) => Some(o),
            Err(e) => {
                eprintln!("error: {e}");
                return exit::SETUP;
            }
        },
        _ => None,
    };
    if let Err(e) = std::fs::create_dir_all(&a.out) {
        eprintln!(
            "error: failed to create output directory {}: {e}",
            a.out.display()
        );
        return exit::SETUP;
    }

    let info = artefacts::report::RunInfo::collect(
        &a.bench,
        serial.is_none() && qemu.is_none(),
        a.seed,
        &a.out,
    );
    // QEMU scenarios run in real time: run them (`--jobs` at once) first.
    let mut on_qemu = qemu
        .as_ref()
        .map(|o| run_qemu_all(&scenarios, a.seed, o, a.jobs))
        .unwrap_or_default()
        .into_iter();
    let bar = indicatif::ProgressBar::new(scenarios.len() as u64);
    // Without a terminal there is no bar: each scenario gets a line as it
    // finishes instead.
    let line_per_scenario = !std::io::stderr().is_terminal();
    if line_per_scenario {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    // Colour only on a terminal, and not with NO_COLOR.
    let template = if use_colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    ) {
        "{bar:30.cyan/blue} {pos}/{len} {msg}"
    } else {
        "{bar:30} {pos}/{len} {msg}"
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut runs = Vec::new();
    let mut setup_failed = false;
    for sc in &scenarios {
        bar.set_message(sc.name.clone());
        let seed = runner::effective_seed(sc, a.seed);
        let result = match serial.as_mut() {
            None if qemu.is_some() => on_qemu
                .next()
                .unwrap_or_else(|| Err(BenchError::Setup("the QEMU run lost a scenario".into()))),
            None => {
                // Progress in simulated time, a step of 1/100 at a time.
                let total = sc.duration_us;
                let step = (total / 100).max(1);
                let mut next = step;
                let bar = &bar;
                run_sim_observed(sc, a.seed, &mut |t| {
                    if t >= next && !line_per_scenario {
                        next = t.saturating_add(step);
                        bar.set_message(sim_progress(&sc.name, t, total));
                    }
                })
            }
            Some(b) if sc.needs_sim() && !b.makes_faults_of(sc) => {
                let _ = b;
                Ok(runner::skipped(
                    sc,
                    seed,
                    "needs the virtual bench (link or node faults, or power faults without the inventory's power commands)".into(),
                ))
            }
            Some(b) => Ok(runner::run(sc, b as &mut dyn Bench, seed)),
        };
        let mut r = match result {
            Ok(r) => r,
            Err(e) => {
                bar.suspend(|| eprintln!("error: {}: {e}", sc.name));
                setup_failed = true;
                bar.inc(1);
                continue;
            }
        };
        if r.verdict != Verdict::Skipped && !a.no_golden {
            let tol = if serial.is_some() || qemu.is_some() {
                a.tolerance_ms
            } else {
                0
            };
            let file =
                golden::snapshot_file(&sc.path, &golden::golden_name(&sc.name, sc.seed, r.seed));
            let canonical = r.trace.golden_text(sc.golden_summary);
            r.golden = Some(golden::compare_file(&file, &canonical, tol, ci));
            if let Some(GoldenOutcome::Differs { first_line, .. }) = &r.golden {
                let diff_path = artefacts::scenario_dir(&a.out, &sc.name).join("golden.diff");
                let shown = golden::read_golden(&file)
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                let (was, now) = golden::lines_at(&shown, &canonical, *first_line);
                bar.suspend(|| {
                    eprintln!(
                        "golden trace of {} differs from {} at line {first_line}:\n  golden:   {was}\n  this run: {now}\n  diff: {}",
                        sc.name,
                        file.display(),
                        diff_path.display()
                    );
                });
            }
            if a.bless
                && r.golden.as_ref().is_some_and(|g| {
                    matches!(
                        g,
                        GoldenOutcome::Differs { .. } | GoldenOutcome::Missing { .. }
                    )
                })
            {
                if r.verdict == Verdict::Pass {
                    let blessed = bar.suspend(|| bless_one(&file, sc, &r, &canonical, a.yes));
                    match blessed {
                        Ok(true) => r.golden = Some(GoldenOutcome::Match),
                        Ok(false) => {}
                        Err(e) => {
                            eprintln!("error: {e}");
                            setup_failed = true;
                        }
                    }
                } else {
                    bar.suspend(|| {
                        eprintln!(
                            "not blessed: {} did not pass its checks; its trace is not a golden",
                            sc.name
                        );
                    });
                }
            }
        }
        if r.verdict != Verdict::Skipped {
            match artefacts::write_scenario(&a.out, &r) {
                Ok(files) => r.artefacts = files,
                Err(e) => bar.suspend(|| {
                    eprintln!("error: failed to write artefacts of {}: {e}", sc.name);
                }),
            }
        }
        if matches!(
            r.verdict,
            Verdict::Fail | Verdict::Incomplete | Verdict::Refused
        ) {
            bar.suspend(|| report_failure(&r));
        }
        if line_per_scenario {
            println!("{}", finished_line(&r, runs.len() + 1, scenarios.len()));
            let _ = std::io::stdout().flush();
        }
        runs.push(r);
        bar.inc(1);
    }
    bar.finish_and_clear();

    let report = artefacts::report::json(&info, &runs);
    let json_path = a.out.join("report.json");
    let written = serde_json::to_string_pretty(&report)
        .map_err(|e| e.to_string())
        .and_then(|text| std::fs::write(&json_path, text).map_err(|e| e.to_string()));
    if let Err(e) = written {
        eprintln!("error: failed to write {}: {e}", json_path.display());
    }
    let html_path = a.out.join("report.html");
    if let Err(e) = std::fs::write(&html_path, artefacts::html::page(&info, &runs, &a.out)) {
        eprintln!("error: failed to write {}: {e}", html_path.display());
    }
    match artefacts::report::junit(&info, &runs) {
        Ok(x) => {
            let path = a.out.join("junit.xml");
            if let Err(e) = std::fs::write(&path, x) {
                eprintln!("error: failed to write {}: {e}", path.display());
            }
        }
        Err(e) => eprintln!("error: {e}"),
    }
    print_table(
        &runs,
        use_colour(
            std::io::stdout().is_terminal(),
            std::env::var_os("NO_COLOR").as_deref(),
        ),
    );
    println!("artefacts: {}", a.out.display());

    let golden_differs = runs.iter().any(|r| {
        matches!(
            r.golden,
            Some(GoldenOutcome::Differs { .. } | GoldenOutcome::Missing { required: true })
        )
    });
    if setup_failed || runs.iter().any(|r| r.verdict == Verdict::Refused) {
        exit::SETUP
    } else if runs.iter().any(|r| r.verdict == Verdict::Incomplete) {
        exit::INCOMPLETE
    } else if golden_differs || runs.iter().any(|r| r.verdict == Verdict::Fail) {
        exit::FAILED
    } else {
        exit::PASS
    }
}

/// Show the change to `file` that blessing `r` makes and, unless `yes`,
/// ask on the terminal; write it on a `y`. Returns whether it was written.
fn bless_one(
    file: &Path,
    sc: &Scenario,
    r: &ScenarioRun,
    canonical: &str,
    yes: bool,
) -> Result<bool, String> {
    let old = golden::read_golden(file).ok().flatten();
    match &old {
        Some(g) => {
            println!("--- {} would change:", sc.name);
            print!("{}", golden::unified_diff(file, g, canonical));
        }
        None => {
            println!(
                "--- {} has no golden trace ({}); this run's (seed {}):",
                sc.name,
                file.display(),
                r.seed
            );
            print!("{}", canonical.trim_end());
            println!();
        }
    }
    if !yes {
        print!("write it to {}? [y/N] ", file.display());
        let _ = std::io::stdout().flush();
        let mut answer = String::new();
        // A person answers on the terminal (checked before the run); end of
        // input is a no.
        if std::io::stdin().read_line(&mut answer).is_err()
            || !matches!(answer.trim(), "y" | "Y" | "yes")
        {
            println!("not written");
            return Ok(false);
        }
    }
    golden::bless(file, &sc.path, canonical)?;
    println!("wrote {}", file.display());
    Ok(true)
}

fn report_failure(r: &ScenarioRun) {
    eprintln!(
        "FAIL {} (seed {}; rerun: sharebench run {} --seed {})",
        r.scenario.name,
        r.seed,
        r.scenario.path.display(),
        r.seed
    );
    if let Some(why) = &r.trace.incomplete {
        let label = if r.verdict == Verdict::Refused {
            "refused"
        } else {
            "incomplete"
        };
        eprintln!("  {label}: {why}");
    }
    for c in r.checks.iter().filter(|c| !c.ok()) {
        if c.known_violation {
            eprintln!(
                "  {}: expected to fail here (a known violation), but passed",
                c.name
            );
        }
        for f in &c.failures {
            eprintln!("  {}: {f}", c.name);
        }
        if c.more_failures > 0 {
            eprintln!("  {}: ... and {} more", c.name, c.more_failures);
        }
    }
    // A golden difference was printed when it was found (path, first
    // differing line, diff file).
}

/// Whether to colour what goes to a terminal: only to a terminal, and not
/// when `NO_COLOR` is set to anything non-empty (<https://no-color.org>).
fn use_colour(is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    is_terminal && no_color.is_none_or(std::ffi::OsStr::is_empty)
}

/// A scenario's verdict as the table shows it, padded to `width` and, with
/// `colour`, in ANSI colour (green pass, yellow skipped, red otherwise).
fn verdict_cell(r: &ScenarioRun, width: usize, colour: bool) -> String {
    let v = artefacts::report::verdict(r);
    let shown = match v {
        "pass" | "skipped" | "golden-diff" => v.to_string(),
        other => other.to_uppercase(),
    };
    let cell = format!("{shown:<width$}");
    if !colour {
        return cell;
    }
    let code = match v {
        "pass" => "32",
        "skipped" => "33",
        _ => "1;31",
    };
    format!("\u{1b}[{code}m{cell}\u{1b}[0m")
}

/// One line for a scenario that just finished, for runs whose output is
/// not a terminal (no progress bar): CI logs show each as it ends.
fn finished_line(r: &ScenarioRun, done: usize, total: usize) -> String {
    let mut line = format!(
        "[{done}/{total}] {} {}",
        artefacts::report::verdict(r),
        r.scenario.name
    );
    if let Some(why) = artefacts::report::reason(r) {
        line.push_str(&format!(": {why}"));
    } else if r.sim_s > 0.0 {
        line.push_str(&format!(
            " ({:.0} s simulated in {:.2} s)",
            r.sim_s, r.wall_s
        ));
    } else {
        // A line bench runs in real time: no simulated time to show.
        line.push_str(&format!(" ({:.1} s)", r.wall_s));
    }
    line
}

fn print_table(runs: &[ScenarioRun], colour: bool) {
    print!("{}", table(runs, colour));
}

/// The summary table of a run; a skipped, incomplete or refused scenario
/// has its reason on the line below it.
fn table(runs: &[ScenarioRun], colour: bool) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<34} {:<11} {:>13} {:>13} {:>14} {:>10}",
        "scenario", "verdict", "slowest conv", "offered/limit", "measured/limit", "speed-up"
    );
    let mut sim = 0.0;
    let mut wall = 0.0;
    for r in runs {
        let verdict = verdict_cell(r, 11, colour);
        let conv = r
            .slowest_convergence_s()
            .map_or("-".into(), |s| format!("{s:.1} s"));
        let ratio = |check| {
            r.peak_ratio(check)
                .map_or("-".into(), |p| format!("{p:.2}"))
        };
        let offered = ratio("breaker-offered");
        let measured = ratio("breaker-measured");
        let speed = r.speedup().map_or("-".into(), |s| format!("{s:.0}x"));
        let _ = writeln!(
            out,
            "{:<34} {} {:>13} {:>13} {:>14} {:>10}",
            r.scenario.name, verdict, conv, offered, measured, speed
        );
        if let Some(why) = artefacts::report::reason(r) {
            let _ = writeln!(out, "  {}: {why}", artefacts::report::verdict(r));
        }
        if let Some(GoldenOutcome::Missing { required }) = r.golden {
            let _ = writeln!(
                out,
                "  {}: no golden trace{}: write it with `sharebench run --bless`",
                artefacts::report::verdict(r),
                if required {
                    ", and CI requires one"
                } else {
                    " yet"
                }
            );
        }
        sim += r.sim_s;
        wall += r.wall_s;
    }
    let count = |f: &dyn Fn(&str) -> bool| {
        runs.iter()
            .filter(|r| f(artefacts::report::verdict(r)))
            .count()
    };
    let _ = writeln!(
        out,
        "{} passed, {} failed, {} skipped",
        count(&|v| v == "pass"),
        count(&|v| !matches!(v, "pass" | "skipped")),
        count(&|v| v == "skipped"),
    );
    let no_golden = runs
        .iter()
        .filter(|r| matches!(r.golden, Some(GoldenOutcome::Missing { .. })))
        .count();
    if no_golden > 0 {
        let _ = writeln!(
            out,
            "{no_golden} without a golden trace (sharebench run --bless writes them)"
        );
    }
    if wall > 0.0 && sim > 0.0 {
        let _ = writeln!(
            out,
            "simulated {:.0} s in {:.2} s of wall time: {:.0}x real time",
            sim,
            wall,
            sim / wall
        );
    }
    out
}

/// A time scale that lets fixture time advance: a positive finite number.
fn check_time_scale(x: f64) -> Result<(), String> {
    if x.is_finite() && x > 0.0 {
        Ok(())
    } else {
        Err(format!(
            "--time-scale {x}: expected a positive number of fixture seconds per wall second"
        ))
    }
}

fn virtual_fixture(a: &VirtualFixtureArgs) -> u8 {
    if let Err(e) = check_time_scale(a.time_scale) {
        eprintln!("error: {e}");
        return exit::SETUP;
    }
    let sc = match Scenario::load(&a.scenario) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::SETUP;
        }
    };
    let seed = runner::effective_seed(&sc, a.seed);
    let mut vb = match VirtualBench::new(&sc, seed).and_then(|mut v| {
        v.commission_all()?;
        Ok(v)
    }) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::SETUP;
        }
    };
    if let Some(words) = &a.caps {
        match parse_caps(words) {
            Ok(c) => vb.set_fixture_caps(c),
            Err(e) => {
                eprintln!("error: --caps {words}: {e}");
                return exit::SETUP;
            }
        }
    }
    let stop_after = match a
        .stop_after
        .as_deref()
        .map(crate::units::duration)
        .transpose()
    {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: --stop-after: {e}");
            return exit::SETUP;
        }
    };
    if !a.pty {
        eprintln!("error: only --pty is supported: the fixture is served on a new pseudo-terminal");
        return exit::SETUP;
    }
    // Both ends stay open for as long as we serve.
    let (mut master, slave) = match serialport::TTYPort::pair() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: failed to open a pseudo-terminal: {e}");
            return exit::SETUP;
        }
    };
    let Some(name) = slave.name() else {
        eprintln!("error: the pseudo-terminal has no name");
        return exit::SETUP;
    };
    // A short wait per loop: the fixture's lines leave within a
    // millisecond of wall time of when they are due.
    if let Err(e) = serialport::SerialPort::set_timeout(&mut master, Duration::from_millis(1)) {
        eprintln!("error: failed to set the pseudo-terminal's timeout: {e}");
        return exit::SETUP;
    }
    // One pty per station: its debug channel, as a UART adapter per
    // station on a lab bench.
    let mut debug = Vec::new();
    for st in &sc.stations {
        let pair = serialport::TTYPort::pair().and_then(|(mut m, sl)| {
            serialport::SerialPort::set_timeout(&mut m, Duration::ZERO)?;
            Ok((m, sl))
        });
        let (m, sl) = match pair {
            Ok(p) => p,
            Err(e) => {
                eprintln!(
                    "error: failed to open a pseudo-terminal for station {}: {e}",
                    st.id
                );
                return exit::SETUP;
            }
        };
        let Some(path) = sl.name() else {
            eprintln!("error: the pseudo-terminal has no name");
            return exit::SETUP;
        };
        debug.push((m, sl, path));
    }
    vb.serve_debug_channels();
    // The stations' power control: one more pty, where `off CH`, `on CH`
    // and `cycle CH` lines switch the station on fixture channel CH (the
    // inventory's power commands write them), as a lab's hub or PDU does.
    let (mut power_master, _power_slave, power_path) =
        match serialport::TTYPort::pair().and_then(|(mut m, sl)| {
            serialport::SerialPort::set_timeout(&mut m, Duration::ZERO)?;
            Ok((m, sl))
        }) {
            Ok((m, sl)) => match sl.name() {
                Some(path) => (m, sl, path),
                None => {
                    eprintln!("error: the power control's pseudo-terminal has no name");
                    return exit::SETUP;
                }
            },
            Err(e) => {
                eprintln!("error: failed to open a pseudo-terminal for the power control: {e}");
                return exit::SETUP;
            }
        };
    // The fixture's pty first (on a line of its own), then each station's
    // debug channel, then the power control; written at once, and a closed
    // stdout is no error.
    let mut said = format!("{name}\n");
    for (st, (_, _, path)) in sc.stations.iter().zip(&debug) {
        said.push_str(&format!("station {} debug {path}\n", st.id));
    }
    said.push_str(&format!("power {power_path}\n"));
    // The inventory first: whoever reads the paths may open it at once.
    if let Some(file) = &a.inventory {
        let text = inventory_text(&a.name, &name, &power_path, &sc, &debug);
        if let Err(e) = std::fs::write(file, text) {
            eprintln!("error: failed to write {}: {e}", file.display());
            return exit::SETUP;
        }
    }
    {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(said.as_bytes()).and_then(|()| out.flush());
    }
    let start = Instant::now();
    let mut buf = [0u8; 1_024];
    let mut power_in = String::new();
    loop {
        if stop_after.is_some_and(|d| start.elapsed() >= d) {
            return exit::PASS;
        }
        let mut out = Vec::new();
        if let Ok(n) = power_master.read(&mut buf) {
            power_in.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        // Each whole line switches a station at the virtual time it came.
        while let Some(end) = power_in.find('\n') {
            let line: String = power_in.drain(..=end).collect();
            out.extend(vb.serve_until((start.elapsed().as_secs_f64() * a.time_scale * 1e6) as u64));
            match parse_power_line(&line).and_then(|(what, ch)| {
                vb.serve_power(ch, what)
                    .map_err(|e| format!("power control: {e}"))
            }) {
                Ok(lines) => out.extend(lines),
                Err(e) => eprintln!("error: {power_path}: {e}"),
            }
        }
        if power_in.len() > 1_024 {
            eprintln!("error: {power_path}: a power control line longer than 1024 bytes, dropped");
            power_in.clear();
        }
        let virtual_now = || (start.elapsed().as_secs_f64() * a.time_scale * 1e6) as u64;
        match master.read(&mut buf) {
            // A command takes effect when it is read, as on a fixture
            // board: the site is brought up to that instant first (the
            // read waited up to a millisecond; a pilot short was stamped
            // 1 ms before its action's time).
            Ok(n) if n > 0 => {
                out.extend(vb.serve_until(virtual_now()));
                out.extend(vb.serve_input(&buf[..n]));
            }
            Ok(_) => {}
            Err(e) if crate::serial::nothing_yet(&e) => {}
            Err(e) => {
                eprintln!("error: failed to read the pseudo-terminal: {e}");
                return exit::INCOMPLETE;
            }
        }
        for (i, (m, _, _)) in debug.iter_mut().enumerate() {
            // A closed or empty debug pty is a station nobody listens to.
            if let Ok(n) = m.read(&mut buf) {
                if n > 0 {
                    out.extend(vb.serve_until(virtual_now()));
                    vb.serve_debug_input(i, &buf[..n]);
                }
            }
        }
        out.extend(vb.serve_until(virtual_now()));
        for line in out {
            if master.write_all(line.as_bytes()).is_err() {
                // Nobody is reading the other end (yet): the line is lost,
                // as on a real UART with no host.
                break;
            }
        }
        for (i, (m, _, _)) in debug.iter_mut().enumerate() {
            for line in vb.serve_debug_output(i) {
                if m.write_all(line.as_bytes()).is_err() {
                    break;
                }
            }
        }
    }
}

/// A bench inventory naming the virtual fixture's pty, its stations' debug
/// ptys and their power commands, which write to the power control's pty
/// (`virtual-fixture --inventory`).
fn inventory_text(
    bench: &str,
    fixture: &str,
    power: &str,
    sc: &Scenario,
    debug: &[(serialport::TTYPort, serialport::TTYPort, String)],
) -> String {
    let mut t = format!(
        "# Written by `sharebench virtual-fixture {}`: valid while it runs.\n[[bench]]\nname = \"{bench}\"\nfixture = \"serial:{fixture}\"\nchannels = {}\n",
        sc.path.display(),
        sc.stations.len()
    );
    for (ch, (st, (_, _, path))) in sc.stations.iter().zip(debug).enumerate() {
        t.push_str(&format!(
            "\n[[bench.station]]\nid = {}\nboard = \"virtual\"\ndebug = \"serial:{path}\"\n",
            st.id
        ));
        for (key, word) in [
            ("power_off", "off"),
            ("power_on", "on"),
            ("power_cycle", "cycle"),
        ] {
            t.push_str(&format!(
                "{key} = \"printf '{word} {ch}\\\\n' > {power}\"\n"
            ));
        }
    }
    t
}

/// One line of the virtual fixture's power control: `off CH`, `on CH` or
/// `cycle CH` (CH the fixture channel, from 0).
fn parse_power_line(line: &str) -> Result<(crate::sim::ServedPower, usize), String> {
    use crate::sim::ServedPower;
    let mut words = line.split_whitespace();
    let what = match words.next() {
        Some("off") => ServedPower::Off,
        Some("on") => ServedPower::On,
        Some("cycle") => ServedPower::Cycle,
        _ => {
            return Err(format!(
            "\"{}\": expected \"off CH\", \"on CH\" or \"cycle CH\" (CH a fixture channel from 0)",
            line.trim()
        ))
        }
    };
    match (words.next().map(str::parse::<usize>), words.next()) {
        (Some(Ok(ch)), None) => Ok((what, ch)),
        _ => Err(format!(
            "\"{}\": expected one fixture channel number after the word",
            line.trim()
        )),
    }
}

fn flash(a: &FlashArgs) -> u8 {
    let entry = crate::inventory::Inventory::from_args(a.benches.as_deref()).and_then(|inv| {
        let inv = inv.ok_or_else(|| {
            format!(
                "no inventory: give --benches FILE or {}",
                crate::inventory::INVENTORY_ENV
            )
        })?;
        inv.get(&a.bench).cloned()
    });
    let entry = match entry {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::SETUP;
        }
    };
    let _lock = match crate::inventory::lock(&entry.name, Duration::from_secs(600)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::SETUP;
        }
    };
    match crate::probe::flash_bench(&entry, crate::probe::default_source().as_ref()) {
        Ok(done) => {
            for d in done {
                match d {
                    crate::probe::Flashed::Done { station, image } => {
                        println!("station {station}: flashed {} and reset", image.display());
                    }
                    crate::probe::Flashed::Left { station, why } => {
                        println!("station {station}: left as it is ({why})");
                    }
                }
            }
            exit::PASS
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::SETUP
        }
    }
}

/// Capability words as `caps=` writes them.
fn parse_caps(words: &str) -> Result<Caps, String> {
    let mut caps = Caps::NONE;
    for w in words.split(',').filter(|w| !w.is_empty() && *w != "-") {
        let c = Capability::from_word(w).ok_or_else(|| {
            let known: Vec<_> = Capability::ALL.iter().map(|c| c.word()).collect();
            format!(
                "unknown capability \"{w}\"; expected some of {}",
                known.join(", ")
            )
        })?;
        caps = caps.with(c);
    }
    Ok(caps)
}

fn explore(a: &crate::explore::ExploreArgs) -> u8 {
    use crate::explore;
    let deadline = match a.time.as_deref().map(crate::units::duration).transpose() {
        Ok(d) => d.map(|d| std::time::Instant::now() + d),
        Err(e) => {
            eprintln!("error: --time: {e}");
            return exit::SETUP;
        }
    };
    let seeds = a
        .seeds
        .unwrap_or(if deadline.is_some() { u64::MAX } else { 200 });
    let bar = indicatif::ProgressBar::new(if seeds == u64::MAX { 0 } else { seeds });
    bar.set_style(
        indicatif::ProgressStyle::with_template("{pos} runs {msg} [{elapsed}]")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let progress = |n: u64, bad: u64| {
        bar.set_position(n);
        bar.set_message(format!("{bad} violation(s)"));
    };
    let s = explore::search(a, seeds, deadline, explore::invariants, &progress);
    bar.finish_and_clear();
    let paths = match explore::write_failures(&a.out, &s, a) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: failed to write to {}: {e}", a.out.display());
            return exit::SETUP;
        }
    };
    let minutes = s.wall.as_secs_f64() / 60.0;
    println!(
        "{} runs, {:.1} site-hours simulated in {:.1} s: {:.0} site-hours per wall minute",
        s.runs,
        s.site_hours,
        s.wall.as_secs_f64(),
        if minutes > 0.0 {
            s.site_hours / minutes
        } else {
            0.0
        }
    );
    let mut kinds: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for (_, _, v) in &s.failures {
        *kinds.entry(v.invariant.as_str()).or_default() += 1;
    }
    println!("{:<20} {:>6}", "violation", "count");
    for k in [
        "breaker-offered",
        "iec-61851",
        "incomplete",
        "panic",
        "setup",
    ] {
        println!("{k:<20} {:>6}", kinds.get(k).copied().unwrap_or(0));
    }
    for ((seed, site, v), path) in s.failures.iter().zip(&paths) {
        println!(
            "\nseed {seed}: {} ({}); shrunk to {} stations, {} steps, {} s:\n  {}\n  rerun: sharebench run {}",
            v.invariant,
            v.detail,
            site.stations.len(),
            site.steps.len(),
            site.duration_s,
            path.display(),
            path.display()
        );
    }
    if s.failures.is_empty() {
        exit::PASS
    } else {
        exit::FAILED
    }
}

fn selftest(a: &SelftestArgs) -> u8 {
    let line = a
        .bench
        .parse::<BenchSpec>()
        .and_then(|spec| {
            let inventory = crate::inventory::Inventory::from_args(None)?;
            crate::inventory::resolve(spec, inventory.as_ref()).map(|(line, _)| line)
        })
        .and_then(|line| match line {
            BenchSpec::Serial { .. } | BenchSpec::Tcp { .. } | BenchSpec::Rfc2217 { .. } => {
                Ok(line)
            }
            other => Err(format!(
                "--bench {other}: the self-test needs a fixture (serial:, tcp: or rfc2217://)"
            )),
        });
    let line = match line {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::SETUP;
        }
    };
    let mut bench = match SerialBench::open(&line, Timeouts::default()) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::SETUP;
        }
    };
    let Some(info) = bench.fixture().cloned() else {
        eprintln!("error: the fixture did not say what it is");
        return exit::SETUP;
    };
    println!(
        "fixture fw {} (protocol {}), {} channels, caps={}",
        info.fw, info.proto, info.channels, info.caps
    );
    if !info.caps.has(Capability::SelfTest) {
        eprintln!("error: this fixture has no selftest capability");
        return exit::SETUP;
    }
    let channels: Vec<u8> = match a.channel {
        Some(c) if u16::from(c) < info.channels => vec![c],
        Some(c) => {
            eprintln!(
                "error: --channel {c}: the fixture has channels 0..{}",
                info.channels
            );
            return exit::SETUP;
        }
        None => (0..info.channels)
            .filter_map(|c| u8::try_from(c).ok())
            .collect(),
    };
    let mut code = exit::PASS;
    for ch in channels {
        match bench.self_test(ch, &mut |_| {}) {
            Ok((_, r)) => {
                let pct = |ppm: u32| f64::from(ppm) / 10_000.0;
                println!(
                    "channel {ch}: duty error {:.4} % (worst 32-period window {:.4} %), frequency error {} ppm, {} periods: {}",
                    pct(r.duty_err_ppm),
                    pct(r.window_duty_err_ppm),
                    r.freq_err_ppm,
                    r.periods,
                    if r.pass() { "pass" } else { "FAIL" }
                );
                if !r.pass() {
                    code = exit::FAILED;
                }
            }
            Err(e) => {
                eprintln!("error: channel {ch}: {e}");
                return match e {
                    BenchError::Timeout { .. } | BenchError::Stalled { .. } | BenchError::Io(_) => {
                        exit::INCOMPLETE
                    }
                    _ => exit::SETUP,
                };
            }
        }
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skipped_run() -> ScenarioRun {
        let sc = crate::scenario::tests::tiny();
        runner::skipped(
            &sc,
            4,
            "needs a bench fixture: run with --bench serial:PORT".into(),
        )
    }

    #[test]
    fn power_control_lines_name_a_word_and_a_channel() {
        use crate::sim::ServedPower;
        assert_eq!(parse_power_line("off 0\n"), Ok((ServedPower::Off, 0)));
        assert_eq!(parse_power_line("on 2\r\n"), Ok((ServedPower::On, 2)));
        assert_eq!(parse_power_line("cycle 1"), Ok((ServedPower::Cycle, 1)));
        for bad in ["reboot 1", "off", "off one", "off 1 2", ""] {
            let e = parse_power_line(bad).unwrap_err();
            assert!(e.contains("expected"), "{bad}: {e}");
        }
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        use std::ffi::OsStr;
        assert!(use_colour(true, None));
        assert!(use_colour(true, Some(OsStr::new(""))));
        assert!(!use_colour(true, Some(OsStr::new("1"))));
        assert!(!use_colour(false, None));
    }

    #[test]
    fn the_table_says_why_a_scenario_was_skipped() {
        let r = skipped_run();
        let plain = table(std::slice::from_ref(&r), false);
        assert!(
            plain.contains("  skipped: needs a bench fixture: run with --bench serial:PORT\n"),
            "{plain}"
        );
        assert!(plain.contains("0 passed, 0 failed, 1 skipped"), "{plain}");
        assert!(
            !plain.contains('\u{1b}'),
            "no colour when not asked: {plain}"
        );
        let coloured = table(std::slice::from_ref(&r), true);
        assert!(
            coloured.contains("\u{1b}[33mskipped    \u{1b}[0m"),
            "{coloured}"
        );
    }

    #[test]
    fn a_watched_run_reports_simulated_time_and_runs_the_same() {
        let sc = crate::scenario::tests::tiny();
        let mut seen: Vec<u64> = Vec::new();
        let watched = run_sim_observed(&sc, None, &mut |t| seen.push(t)).unwrap();
        let plain = run_sim(&sc, None).unwrap();
        assert_eq!(watched.trace.canonical(), plain.trace.canonical());
        assert!(!seen.is_empty());
        assert!(seen.iter().all(|&t| t <= sc.duration_us), "{seen:?}");
        // Records come as the run goes: the last is near the end.
        let last = seen.iter().copied().max().unwrap_or(0);
        assert!(last + 5_000_000 >= sc.duration_us, "{last}");
        assert_eq!(
            sim_progress("scale-256", 22_320_000_000, 86_400_000_000),
            "scale-256: 6.2 of 24.0 h simulated"
        );
        assert_eq!(
            sim_progress("tiny", 30_000_000, 120_000_000),
            "tiny: 0.5 of 2.0 min simulated"
        );
        assert_eq!(
            sim_progress("short", 9_000_000, 5_000_000),
            "short: 5.0 of 5.0 s simulated"
        );
    }

    #[test]
    fn a_finished_scenario_gets_one_line_with_its_verdict() {
        let mut r = skipped_run();
        assert_eq!(
            finished_line(&r, 2, 5),
            format!(
                "[2/5] skipped {}: needs a bench fixture: run with --bench serial:PORT",
                r.scenario.name
            )
        );
        r.verdict = Verdict::Pass;
        r.skipped = None;
        r.sim_s = 600.0;
        r.wall_s = 0.25;
        assert_eq!(
            finished_line(&r, 5, 5),
            format!("[5/5] pass {} (600 s simulated in 0.25 s)", r.scenario.name)
        );
        r.sim_s = 0.0;
        r.wall_s = 612.34;
        assert_eq!(
            finished_line(&r, 5, 5),
            format!("[5/5] pass {} (612.3 s)", r.scenario.name)
        );
    }
}
