//! Running one scenario on a bench: set up the fixture, play the timeline,
//! collect the trace, run the checks.

use std::time::Instant as WallClock;

use rig::protocol::{Capability, Caps, CarSetting, Command, FixtureInfo, Misbehave};

use crate::bench::{Bench, BenchError, Record, SimFault};
use crate::checks::{self, CheckResult};
use crate::scenario::{Action, Scenario};
use crate::trace::Trace;

/// How a scenario ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
    /// Not run here (needs hardware, or needs the virtual bench).
    Skipped,
    /// The bench stopped answering: the trace is partial.
    Incomplete,
    /// A station refused the site plan it was commissioned with: nothing ran.
    Refused,
}

/// The outcome of one scenario.
#[derive(Debug, Clone)]
pub struct ScenarioRun {
    pub scenario: Scenario,
    pub seed: u64,
    pub trace: Trace,
    pub checks: Vec<CheckResult>,
    pub verdict: Verdict,
    pub skipped: Option<String>,
    pub sim_s: f64,
    pub wall_s: f64,
    /// Golden comparison, filled in by the caller.
    pub golden: Option<crate::golden::GoldenOutcome>,
    /// The artefact files written for this run, filled in by the caller.
    pub artefacts: Vec<std::path::PathBuf>,
}

impl ScenarioRun {
    /// Simulated seconds per wall second (virtual benches only).
    #[must_use]
    pub fn speedup(&self) -> Option<f64> {
        (self.wall_s > 0.0 && self.sim_s > 0.0).then(|| self.sim_s / self.wall_s)
    }

    /// Slowest convergence over both convergence checks, seconds.
    #[must_use]
    pub fn slowest_convergence_s(&self) -> Option<f64> {
        self.checks
            .iter()
            .filter(|c| c.name == "convergence" || c.name == "failover")
            .filter_map(|c| {
                c.figures
                    .get("slowest_s")
                    .and_then(serde_json::Value::as_f64)
            })
            .reduce(f64::max)
    }

    /// Peak load against its node's limit, as one breaker check saw it:
    /// `"breaker-offered"` (the sum of the firmware's offers, the safety
    /// invariant, never above 1) or `"breaker-measured"` (what flowed).
    #[must_use]
    pub fn peak_ratio(&self, check: &str) -> Option<f64> {
        self.checks
            .iter()
            .find(|c| c.name == check)
            .and_then(|c| c.figures.get("peak_ratio"))
            .and_then(serde_json::Value::as_f64)
    }
}

/// The seed a run uses: the command line's if given, else the scenario's.
#[must_use]
pub fn effective_seed(sc: &Scenario, cli_seed: Option<u64>) -> u64 {
    cli_seed.unwrap_or(sc.seed)
}

/// A timeline action in the scenario's own words, with the station ids.
#[must_use]
pub fn describe(sc: &Scenario, a: &Action) -> String {
    let st = |i: &usize| format!("st{}", sc.stations[*i].id);
    match a {
        Action::Arrive(i) => format!("arrive {}", st(i)),
        Action::Plug(i) => format!("plug {}", st(i)),
        Action::Unplug(i) => format!("unplug {}", st(i)),
        Action::Request(i) => format!("request {}", st(i)),
        Action::Stop(i) => format!("stop {}", st(i)),
        Action::Pause(i) => format!("pause {}", st(i)),
        Action::Load { name, da, on, .. } => {
            if *on {
                format!("load {name} on {} A", crate::units::amps(i64::from(*da)))
            } else {
                format!("load {name} off")
            }
        }
        Action::Meter(f) => format!("meter {}", f.word()),
        Action::Misbehave(i, m) => match m {
            Misbehave::OverdrawDa(da) => format!(
                "misbehave {} overdraw {} A",
                st(i),
                crate::units::amps(i64::from(*da))
            ),
            Misbehave::SlowMs(ms) => format!("misbehave {} slow {} ms", st(i), ms),
            m => format!("misbehave {} {}", st(i), m.word()),
        },
        Action::Car(i, settings) => {
            let parts: Vec<String> = settings
                .iter()
                .map(|s| match s {
                    CarSetting::MaxDa(da) => {
                        format!("max {} A", crate::units::amps(i64::from(*da)))
                    }
                    CarSetting::CapacityWh(wh) => format!("capacity {wh} Wh"),
                    CarSetting::TargetPermille(p) => format!("target {} %", p / 10),
                    CarSetting::SocPermille(p) => format!("soc {} %", p / 10),
                    CarSetting::Phases(n) => format!("phases {n}"),
                    CarSetting::AuxDa(da) => {
                        format!("aux {} A", crate::units::amps(i64::from(*da)))
                    }
                    _ => String::new(),
                })
                .collect();
            format!("car {}: {}", st(i), parts.join(", "))
        }
        Action::LinkDown => "link down".into(),
        Action::OneWay { from, to } => format!("frames from {} to {} lost", st(from), st(to)),
        Action::Partition(g) => format!(
            "partition {}",
            g.iter()
                .map(|grp| grp.iter().map(&st).collect::<Vec<_>>().join("+"))
                .collect::<Vec<_>>()
                .join(" | ")
        ),
        Action::Noise { loss, corrupt } => format!("noisy link: loss {loss}, corruption {corrupt}"),
        Action::Repair => "link repaired".into(),
        Action::Crash(i) => format!("crash {}", st(i)),
        Action::Reboot(i) => format!("reboot {}", st(i)),
        Action::Welded(i, on) => format!(
            "{} contactor {}",
            st(i),
            if *on { "welds" } else { "freed" }
        ),
        Action::Forge => "forged frames injected".into(),
        Action::Check => "checkpoint".into(),
        Action::SetLimit { node, da } => {
            let n = &sc.nodes[*node];
            match da {
                Some(da) => format!(
                    "set-limit {} {} A",
                    n.name,
                    crate::units::amps(i64::from(*da))
                ),
                None => format!(
                    "set-limit {} to the plan's {} A",
                    n.name,
                    crate::units::amps(i64::from(n.limit_da))
                ),
            }
        }
    }
}

/// What a fixture must have to run `sc`: channels (one per station) and
/// capabilities (see `docs/fixture-protocol.md`, Capabilities).
#[must_use]
pub fn fixture_needs(sc: &Scenario) -> (usize, Caps) {
    let mut caps = [
        Capability::Pwm,
        Capability::Levels,
        Capability::Relay,
        Capability::Current,
        Capability::Car,
    ]
    .into_iter()
    .fold(Caps::NONE, Caps::with);
    if sc.meter.is_some() {
        caps = caps.with(Capability::Meter);
    }
    for step in &sc.timeline {
        caps = match step.action {
            Action::Load { .. } => caps.with(Capability::Loads),
            Action::Meter(_) => caps.with(Capability::Meter),
            Action::Misbehave(..) => caps.with(Capability::Misbehave),
            _ => caps,
        };
    }
    (sc.stations.len(), caps)
}

/// Refuse, before anything runs, a scenario the fixture cannot run: more
/// stations than it has channels, or a capability it did not announce.
pub fn check_fixture(sc: &Scenario, fixture: &FixtureInfo) -> Result<(), BenchError> {
    let (channels, caps) = fixture_needs(sc);
    let mut lacks = Vec::new();
    if channels > usize::from(fixture.channels) {
        lacks.push(format!(
            "it needs {channels} channels (one per station), the fixture has {}",
            fixture.channels
        ));
    }
    let missing = fixture.caps.missing(caps);
    if !missing.is_empty() {
        lacks.push(format!(
            "it needs the fixture capabilities {missing}, which the fixture (fw {}, caps={}) does not announce",
            fixture.fw, fixture.caps
        ));
    }
    if lacks.is_empty() {
        Ok(())
    } else {
        Err(BenchError::Lacks(lacks.join("; ")))
    }
}

/// Check that the fixture can run `sc`, and reset it. The fixture reports
/// where each channel stands, stamped at the reset. What arrives before
/// that report (lines from an earlier run, or from before the host
/// connected) is not this run's and is dropped; losses and garbled lines
/// are kept.
fn reset(
    sc: &Scenario,
    bench: &mut dyn Bench,
    sink: &mut dyn FnMut(Record),
) -> Result<(), BenchError> {
    if let Some(f) = bench.fixture() {
        check_fixture(sc, f)?;
    }
    let mut tries = 0;
    let (got, reported_at) = loop {
        let mut got = Vec::new();
        bench.command(Command::Reset, &mut |r| got.push(r))?;
        // The report is the latest of what came: stamped at the reset.
        let reported_at = got
            .iter()
            .filter_map(|r| match r {
                Record::Event { t_us, .. } => Some(*t_us),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        // A bench that ran a scenario before holds its stations as they
        // were (charging, a fault held): the reset unplugs the cars, and
        // the stations wind down in their own time. The run starts from
        // idle stations, so their winding down is not its trace, and an
        // idle station takes its new plan.
        let Some(busy) = not_idle(sc, &got, reported_at) else {
            break (got, reported_at);
        };
        tries += 1;
        if tries > SETTLE_TRIES {
            return Err(BenchError::Setup(format!(
                "the bench is not idle {} s after a reset: {busy}",
                SETTLE_TRIES * SETTLE_US / 1_000_000
            )));
        }
        let until = bench.now_us().saturating_add(SETTLE_US);
        bench.run_until(until, &mut |r| {
            if matches!(r, Record::Loss { .. } | Record::Garbled { .. }) {
                sink(r);
            }
        })?;
    };
    let unused = |ch: &u8| usize::from(*ch) >= sc.stations.len();
    for r in got {
        match &r {
            Record::Event { t_us, .. } | Record::Telemetry { t_us, .. } if *t_us < reported_at => {}
            // A channel the scenario does not use is not its trace.
            Record::Event {
                event:
                    rig::protocol::Event::Pilot { ch, .. }
                    | rig::protocol::Event::Duty { ch, .. }
                    | rig::protocol::Event::Contactor { ch, .. }
                    | rig::protocol::Event::Current { ch, .. },
                ..
            } if unused(ch) => {}
            _ => sink(r),
        }
    }
    Ok(())
}

/// How long the runner lets a bench wind down after a reset that found it
/// busy, and how often.
const SETTLE_US: u64 = 5_000_000;
const SETTLE_TRIES: u64 = 3;

/// What keeps the reset's report from showing idle stations: a channel's
/// pilot other than A at +12 V, PWM, a closed contactor, or current.
fn not_idle(sc: &Scenario, got: &[Record], reported_at: u64) -> Option<String> {
    use rig::iec::PilotState;
    let st = |ch: &u8| {
        sc.stations
            .get(usize::from(*ch))
            .map_or(format!("channel {ch}"), |s| format!("st{}", s.id))
    };
    let busy: Vec<String> = got
        .iter()
        .filter_map(|r| match r {
            Record::Event { t_us, event } if *t_us == reported_at => match event {
                rig::protocol::Event::Pilot { ch, state, .. } if *state != Some(PilotState::A) => {
                    Some(format!("{} pilot not in state A", st(ch)))
                }
                rig::protocol::Event::Duty { ch, .. } => Some(format!("{} offers PWM", st(ch))),
                rig::protocol::Event::Contactor { ch, closed: true } => {
                    Some(format!("{} contactor closed", st(ch)))
                }
                rig::protocol::Event::Current { ch, da } if *da != [0; 3] => {
                    Some(format!("{} current flows", st(ch)))
                }
                _ => None,
            },
            _ => None,
        })
        .collect();
    (!busy.is_empty()).then(|| busy.join(", "))
}

/// Wire the fixture's channels and set its cars up (nothing a trace shows:
/// no car is plugged yet).
fn setup_channels(
    sc: &Scenario,
    bench: &mut dyn Bench,
    sink: &mut dyn FnMut(Record),
) -> Result<(), BenchError> {
    for (i, st) in sc.stations.iter().enumerate() {
        let ch = u8::try_from(i).map_err(|_| BenchError::Setup("more than 256 channels".into()))?;
        bench.command(Command::Car(ch, CarSetting::Rotation(st.rotation)), sink)?;
        bench.command(Command::Car(ch, CarSetting::SupplyPhases(st.phases)), sink)?;
        // A meter on a sub-node sees only the stations under it.
        if let Some(m) = &sc.meter {
            if !sc.is_under(st.node, m.node) {
                bench.command(Command::Car(ch, CarSetting::Metered(false)), sink)?;
            }
        }
    }
    if let Some(m) = sc.meter.as_ref().filter(|m| m.noise_da > 0) {
        bench.command(Command::MeterNoise(m.noise_da), sink)?;
    }
    // A station without a `[[car]]` gets the fixture's default car: a bench
    // keeps the car the last run set (RESET only unplugs it).
    let default = rig::vehicle::CarParams::default();
    let default_delay_ms = match default.delay {
        rig::vehicle::ResponseDelay::Fixed(d)
        | rig::vehicle::ResponseDelay::Range { min: d, .. } => {
            u32::try_from(d.to_millis()).unwrap_or(u32::MAX)
        }
    };
    for i in 0..sc.stations.len() {
        let ch = u8::try_from(i).map_err(|_| BenchError::Setup("more than 256 channels".into()))?;
        let default_car = crate::scenario::Car {
            station: i,
            max_da: default.max_da,
            phases: default.phases,
            capacity_wh: default.capacity_wh,
            soc_permille: default.soc_permille,
            knee_permille: default.knee_permille,
            target_permille: default.target_permille,
            delay_ms: default_delay_ms,
            delay_max_ms: None,
            ramp_da_per_s: default.ramp_da_per_s,
            ventilation: default.ventilation,
            aux_da: 0,
        };
        let car = sc
            .cars
            .iter()
            .find(|c| c.station == i)
            .unwrap_or(&default_car);
        let mut settings = vec![
            CarSetting::MaxDa(car.max_da),
            CarSetting::Phases(car.phases),
            CarSetting::CapacityWh(car.capacity_wh),
            CarSetting::SocPermille(car.soc_permille),
            CarSetting::KneePermille(car.knee_permille),
            CarSetting::TargetPermille(car.target_permille),
            CarSetting::DelayMs(car.delay_ms),
            CarSetting::RampDaPerS(car.ramp_da_per_s),
            CarSetting::Ventilation(car.ventilation),
        ];
        if car.aux_da > 0 {
            settings.push(CarSetting::AuxDa(car.aux_da));
        }
        if let Some(m) = car.delay_max_ms {
            settings.push(CarSetting::DelayMaxMs(m));
        }
        for s in settings {
            bench.command(Command::Car(ch, s), sink)?;
        }
    }
    Ok(())
}

/// Give every station the scenario's site plan before anything runs; a
/// station never charges on a plan it has not validated.
fn commission(
    sc: &Scenario,
    bench: &mut dyn Bench,
    sink: &mut dyn FnMut(Record),
) -> Result<(), BenchError> {
    let key = crate::provision::bench_key().map_err(BenchError::Setup)?;
    let messages: Vec<String> = (0..sc.stations.len())
        .map(|i| crate::provision::commission_text(sc, i, &key))
        .collect();
    let answers = bench.commission_all(&messages, sink)?;
    for (st, answer) in sc.stations.iter().zip(answers) {
        if let Some(Err(reason)) = answer {
            return Err(BenchError::ConfigRefused {
                station: st.id,
                line: st.line,
                reason,
            });
        }
    }
    Ok(())
}

/// Do `a`, the `k`th step of the timeline.
fn act(
    sc: &Scenario,
    bench: &mut dyn Bench,
    a: &Action,
    k: usize,
    sink: &mut dyn FnMut(Record),
) -> Result<(), BenchError> {
    let ch = |i: &usize| u8::try_from(*i).unwrap_or(u8::MAX);
    match a {
        Action::Arrive(i) => {
            bench.command(Command::Plug(ch(i)), sink)?;
            bench.command(Command::Request(ch(i)), sink)
        }
        Action::Plug(i) => bench.command(Command::Plug(ch(i)), sink),
        Action::Unplug(i) => bench.command(Command::Unplug(ch(i)), sink),
        Action::Request(i) => bench.command(Command::Request(ch(i)), sink),
        Action::Stop(i) => bench.command(Command::Stop(ch(i)), sink),
        Action::Pause(i) => bench.command(Command::Pause(ch(i)), sink),
        Action::Load {
            name,
            phases,
            da,
            on,
        } => {
            let mut n = heapless::String::new();
            n.push_str(name)
                .map_err(|_| BenchError::Setup(format!("load name \"{name}\" too long")))?;
            bench.command(
                Command::Load {
                    name: n,
                    phases: *phases,
                    da: *da,
                    on: *on,
                },
                sink,
            )
        }
        Action::Meter(f) => bench.command(Command::Meter(*f), sink),
        Action::Misbehave(i, m) => bench.command(Command::Misbehave(ch(i), *m), sink),
        Action::Car(i, settings) => {
            for s in settings {
                bench.command(Command::Car(ch(i), *s), sink)?;
            }
            Ok(())
        }
        Action::LinkDown => bench.fault(&SimFault::LinkDown),
        Action::OneWay { from, to } => bench.fault(&SimFault::OneWay {
            from: *from,
            to: *to,
        }),
        Action::Partition(g) => bench.fault(&SimFault::Partition(g.clone())),
        Action::Noise { loss, corrupt } => bench.fault(&SimFault::Noise {
            loss: *loss,
            corrupt: *corrupt,
        }),
        Action::Repair => bench.fault(&SimFault::Repair),
        Action::Crash(i) => bench.fault(&SimFault::Crash(*i)),
        Action::Reboot(i) => bench.fault(&SimFault::Reboot(*i)),
        Action::Welded(i, on) => bench.fault(&SimFault::Welded(*i, *on)),
        Action::Forge => bench.fault(&SimFault::Forge),
        Action::Check => Ok(()),
        Action::SetLimit { node, da } => {
            // The step's place in the timeline rises from one limit to the
            // next, as the leader asks of the sequence number.
            let cmd = firmware::commission::LimitCommand {
                node: u16::try_from(*node).unwrap_or(u16::MAX),
                limit_da: *da,
                seq: u32::try_from(k).unwrap_or(u32::MAX).saturating_add(1),
            };
            let key = crate::provision::bench_key().map_err(BenchError::Setup)?;
            let leader = sc.stations.iter().position(|s| s.leader).unwrap_or(0);
            let line = firmware::commission::encode_limit(&cmd, &key);
            bench.operator(leader, &line, sink)
        }
    }
    .map_err(|e| match e {
        BenchError::Refused { what, reason } => BenchError::Refused {
            what: format!("{} ({what})", describe(sc, a)),
            reason,
        },
        e => e,
    })
}

/// Run `sc` on `bench`. Never panics on bench trouble: a bench error ends
/// the run with a partial trace marked incomplete.
pub fn run(sc: &Scenario, bench: &mut dyn Bench, seed: u64) -> ScenarioRun {
    let wall = WallClock::now();
    let mut trace = Trace {
        scenario: sc.name.clone(),
        seed,
        bench: bench.name(),
        station_ids: sc.stations.iter().map(|s| s.id).collect(),
        ..Trace::default()
    };
    let mut records: Vec<Record> = Vec::new();
    let mut outcome = reset(sc, bench, &mut |r| records.push(r))
        .and_then(|()| setup_channels(sc, bench, &mut |r| records.push(r)));
    // Time 0 is when the leader took its plan: its cycle starts then, as
    // on the virtual bench, where commissioning takes no time. On a
    // real-time bench it does (round trips through a relaying fixture, a
    // board writing its flash): the leader's answer, when its stamp is
    // known by the end of commissioning (relayed lines are stamped by the
    // fixture), or else the end of commissioning. What came before, the
    // reset's report and the stations' answers, shows at 0; what a station
    // said before it took this plan is not this run's.
    if outcome.is_ok() {
        let given_at = records.len();
        outcome = commission(sc, bench, &mut |r| records.push(r));
        drop_previous_plans_output(sc, &mut records, given_at);
    }
    let start_us = leader_accepted_at(sc, &records).unwrap_or_else(|| bench.now_us());
    if outcome.is_ok() {
        for (k, step) in sc.timeline.iter().enumerate() {
            if let Err(e) = bench.run_until(start_us.saturating_add(step.at_us), &mut |r| {
                records.push(r)
            }) {
                outcome = Err(e);
                break;
            }
            trace.push_action(step.at_us, describe(sc, &step.action));
            if let Err(e) = act(sc, bench, &step.action, k, &mut |r| records.push(r)) {
                outcome = Err(e);
                break;
            }
        }
    }
    if outcome.is_ok() {
        outcome = bench.run_until(start_us.saturating_add(sc.duration_us), &mut |r| {
            records.push(r)
        });
    }
    for r in records {
        trace.push_record(shift(r, start_us));
    }
    let end = bench.now_us().saturating_sub(start_us).min(sc.duration_us);
    if let Err(e) = &outcome {
        trace.incomplete = Some(e.to_string());
    }
    // Lost data makes the trace partial as surely as a silent fixture: no
    // check may pass on it.
    let losses = trace.losses();
    if !losses.is_empty() {
        let lost = format!("the fixture lost data: {}", losses.join("; "));
        trace.incomplete = Some(match trace.incomplete.take() {
            Some(why) => format!("{why}; {lost}"),
            None => lost,
        });
    }
    trace.finish(end);
    let checks = checks::run_all(sc, &trace);
    let verdict = if matches!(
        outcome,
        Err(BenchError::ConfigRefused { .. } | BenchError::Lacks(_))
    ) {
        Verdict::Refused
    } else if trace.incomplete.is_some() {
        Verdict::Incomplete
    } else if checks.iter().all(CheckResult::ok) {
        Verdict::Pass
    } else {
        Verdict::Fail
    };
    let wall_s = wall.elapsed().as_secs_f64();
    ScenarioRun {
        scenario: sc.clone(),
        seed,
        trace,
        checks,
        verdict,
        skipped: None,
        sim_s: if bench.is_virtual() {
            end as f64 / 1e6
        } else {
            0.0
        },
        wall_s,
        golden: None,
        artefacts: Vec::new(),
    }
}

/// Drop what the stations said before they took this run's plan: on a
/// bench that ran before, a station runs on its previous plan until the new
/// one comes (a follower may join its old leader between the reset and the
/// commissioning), and that is not this run's trace. Everything said before
/// the plans were sent (`records[..given_at]`, under whatever id the line
/// was labelled with), and what a station said before its acceptance.
/// Order, not time, says what came before: one station's lines come in the
/// order it printed them. A station whose acceptance is not among
/// `records` keeps what it said once the plans were sent.
fn drop_previous_plans_output(sc: &Scenario, records: &mut Vec<Record>, given_at: usize) {
    let accepted = config_accepted_text(sc);
    let took_plan_at: Vec<(u8, usize)> = sc
        .stations
        .iter()
        .filter_map(|s| {
            let at = records.iter().rposition(|r| {
                matches!(r, Record::Telemetry { station, text, .. }
                    if *station == s.id && *text == accepted)
            })?;
            Some((s.id, at))
        })
        .collect();
    let mut k = 0;
    records.retain(|r| {
        let keep = match r {
            Record::Telemetry { station, .. } => {
                k >= given_at
                    && took_plan_at
                        .iter()
                        .find(|(id, _)| id == station)
                        .is_none_or(|(_, at)| k >= *at)
            }
            _ => true,
        };
        k += 1;
        keep
    });
}

/// The line a station prints when it takes `sc`'s plan.
fn config_accepted_text(sc: &Scenario) -> String {
    firmware::telemetry::Telemetry::ConfigAccepted {
        stations: u16::try_from(sc.stations.len()).unwrap_or(u16::MAX),
        nodes: u16::try_from(sc.nodes.len()).unwrap_or(u16::MAX),
    }
    .to_string()
}

/// When the leader said it took its plan, if that line is among `records`.
fn leader_accepted_at(sc: &Scenario, records: &[Record]) -> Option<u64> {
    let leader = sc.stations.iter().find(|s| s.leader)?.id;
    let accepted = config_accepted_text(sc);
    records.iter().rev().find_map(|r| match r {
        Record::Telemetry {
            t_us,
            station,
            text,
        } if *station == leader && *text == accepted => Some(*t_us),
        _ => None,
    })
}

fn shift(r: Record, start: u64) -> Record {
    match r {
        Record::Event { t_us, event } => Record::Event {
            t_us: t_us.saturating_sub(start),
            event,
        },
        Record::Telemetry {
            t_us,
            station,
            text,
        } => Record::Telemetry {
            t_us: t_us.saturating_sub(start),
            station,
            text,
        },
        Record::Garbled { t_us, text } => Record::Garbled {
            t_us: t_us.saturating_sub(start),
            text,
        },
        Record::Loss { t_us, text } => Record::Loss {
            t_us: t_us.saturating_sub(start),
            text,
        },
    }
}

/// A skipped scenario's result.
#[must_use]
pub fn skipped(sc: &Scenario, seed: u64, why: String) -> ScenarioRun {
    ScenarioRun {
        scenario: sc.clone(),
        seed,
        trace: Trace {
            scenario: sc.name.clone(),
            seed,
            ..Trace::default()
        },
        checks: Vec::new(),
        verdict: Verdict::Skipped,
        skipped: Some(why),
        sim_s: 0.0,
        wall_s: 0.0,
        golden: None,
        artefacts: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rig::protocol::Event;

    /// A bench that answers every command and, while running, reports what
    /// it was given: a stand-in for a fixture whose data went missing.
    struct Lossy {
        now: u64,
        report: Vec<Record>,
        info: Option<FixtureInfo>,
    }

    impl Bench for Lossy {
        fn name(&self) -> String {
            "lossy".into()
        }
        fn command(&mut self, _: Command, _: &mut dyn FnMut(Record)) -> Result<(), BenchError> {
            Ok(())
        }
        fn fault(&mut self, f: &SimFault) -> Result<(), BenchError> {
            Err(BenchError::Unsupported(format!("{f:?}")))
        }
        fn run_until(&mut self, t_us: u64, sink: &mut dyn FnMut(Record)) -> Result<(), BenchError> {
            for r in self.report.drain(..) {
                sink(r);
            }
            self.now = self.now.max(t_us);
            Ok(())
        }
        fn now_us(&self) -> u64 {
            self.now
        }
        fn is_virtual(&self) -> bool {
            true
        }
        fn fixture(&self) -> Option<&FixtureInfo> {
            self.info.as_ref()
        }
    }

    fn run_with(report: Vec<Record>) -> ScenarioRun {
        let sc = crate::scenario::tests::tiny();
        let mut bench = Lossy {
            now: 0,
            report,
            info: None,
        };
        run(&sc, &mut bench, 1)
    }

    #[test]
    fn a_sequence_gap_makes_the_run_incomplete_and_says_what_and_when() {
        let r = run_with(vec![Record::Loss {
            t_us: 5_000_000,
            text: "2 fixture event(s) lost: sequence jumped from 2 to 5, before the event at t=5.000 s".into(),
        }]);
        assert_eq!(r.verdict, Verdict::Incomplete);
        let why = r.trace.incomplete.clone().unwrap_or_default();
        assert!(
            why.contains("the fixture lost data: 2 fixture event(s) lost")
                && why.contains("t=5.000 s"),
            "{why}"
        );
    }

    #[test]
    fn the_fixtures_own_loss_reports_make_the_run_incomplete() {
        let r = run_with(vec![
            Record::Event {
                t_us: 7_000_000,
                event: Event::LostLines { total: 3 },
            },
            Record::Event {
                t_us: 8_000_000,
                event: Event::LostCapture { ch: 1, total: 4 },
            },
        ]);
        assert_eq!(r.verdict, Verdict::Incomplete);
        let why = r.trace.incomplete.clone().unwrap_or_default();
        assert!(
            why.contains("dropped lines its host did not read (3 in all, reported at t=7.000 s)"),
            "{why}"
        );
        assert!(
            why.contains(
                "st1 capture dropped changes from its full queue (4 in all, reported at t=8.000 s)"
            ),
            "{why}"
        );
        assert!(r.trace.canonical().contains("# INCOMPLETE at"));
    }

    #[test]
    fn a_whole_trace_is_not_incomplete() {
        let r = run_with(vec![Record::Event {
            t_us: 1_000_000,
            event: Event::Heartbeat,
        }]);
        assert!(r.trace.incomplete.is_none(), "{:?}", r.trace.incomplete);
    }

    /// A bench that records the commands it is given.
    #[derive(Default)]
    struct Recorder(Vec<Command>);

    impl Bench for Recorder {
        fn name(&self) -> String {
            "recorder".into()
        }
        fn command(&mut self, c: Command, _: &mut dyn FnMut(Record)) -> Result<(), BenchError> {
            self.0.push(c);
            Ok(())
        }
        fn fault(&mut self, f: &SimFault) -> Result<(), BenchError> {
            Err(BenchError::Unsupported(f.to_string()))
        }
        fn run_until(&mut self, _: u64, _: &mut dyn FnMut(Record)) -> Result<(), BenchError> {
            Ok(())
        }
        fn now_us(&self) -> u64 {
            0
        }
        fn is_virtual(&self) -> bool {
            false
        }
    }

    /// A bench keeps the car the last run set (a 20 A car on channel 0 made
    /// hw-contactor-timing's station offer 20.5 A after circuit-above-51a
    /// on the virtual fixture): a station without a `[[car]]` is given the
    /// default car, one with a `[[car]]` its own.
    #[test]
    fn every_channel_gets_its_car_also_the_default_one() {
        let mut sc = crate::scenario::tests::tiny();
        sc.cars.clear();
        sc.cars.push(crate::scenario::Car {
            station: 1,
            max_da: 200,
            phases: 3,
            capacity_wh: 40_000,
            soc_permille: 500,
            knee_permille: 800,
            target_permille: 900,
            delay_ms: 1_000,
            delay_max_ms: Some(1_500),
            ramp_da_per_s: 50,
            ventilation: false,
            aux_da: 0,
        });
        let mut bench = Recorder::default();
        setup_channels(&sc, &mut bench, &mut |_| {}).unwrap();
        let of = |ch: u8| -> Vec<CarSetting> {
            bench
                .0
                .iter()
                .filter_map(|c| match c {
                    Command::Car(c, s) if *c == ch => Some(*s),
                    _ => None,
                })
                .collect()
        };
        let st0 = of(0);
        for s in [
            CarSetting::MaxDa(320),
            CarSetting::Phases(1),
            CarSetting::SocPermille(200),
            CarSetting::DelayMs(2_000),
            CarSetting::RampDaPerS(100),
        ] {
            assert!(st0.contains(&s), "{s:?} not in {st0:?}");
        }
        let st1 = of(1);
        for s in [
            CarSetting::MaxDa(200),
            CarSetting::Phases(3),
            CarSetting::DelayMaxMs(1_500),
        ] {
            assert!(st1.contains(&s), "{s:?} not in {st1:?}");
        }
    }

    /// A bench whose stations speak while they are commissioned: the
    /// follower first runs on its previous plan (it joins its old leader
    /// between the reset and the new plan), then takes this run's plan.
    struct Recommissioned;

    impl Bench for Recommissioned {
        fn name(&self) -> String {
            "recommissioned".into()
        }
        /// After the reset, before the plans: lines of the previous plans,
        /// one under an id this run does not use.
        fn command(&mut self, c: Command, sink: &mut dyn FnMut(Record)) -> Result<(), BenchError> {
            if matches!(c, Command::Reset) {
                for (station, text) in [(7, "joined the group"), (0, "granted 16.0 A")] {
                    sink(Record::Telemetry {
                        t_us: 50,
                        station,
                        text: text.into(),
                    });
                }
            }
            Ok(())
        }
        fn fault(&mut self, f: &SimFault) -> Result<(), BenchError> {
            Err(BenchError::Unsupported(f.to_string()))
        }
        fn run_until(&mut self, _: u64, _: &mut dyn FnMut(Record)) -> Result<(), BenchError> {
            Ok(())
        }
        fn now_us(&self) -> u64 {
            1_000
        }
        fn is_virtual(&self) -> bool {
            false
        }
        fn commission_all(
            &mut self,
            messages: &[String],
            sink: &mut dyn FnMut(Record),
        ) -> Result<Vec<Option<Result<(), firmware::telemetry::Refusal>>>, BenchError> {
            let said = |t_us, station, text: &str| Record::Telemetry {
                t_us,
                station,
                text: text.to_string(),
            };
            let accepted = "configuration accepted (2 stations, 1 node)";
            for r in [
                said(100, 1, "joined the group"),
                said(200, 0, accepted),
                said(300, 0, "booted as leader"),
                said(300, 1, accepted),
                said(400, 1, "booted as follower"),
                said(900, 1, "joined the group"),
            ] {
                sink(r);
            }
            Ok(vec![Some(Ok(())); messages.len()])
        }
    }

    /// What a station said on its previous plan is not this run's trace,
    /// under whatever id it was labelled with; all it said once it took
    /// this run's plan is, also the same words.
    #[test]
    fn what_a_station_said_before_it_took_this_runs_plan_is_not_traced() {
        let sc = crate::scenario::tests::tiny();
        assert_eq!(sc.stations.iter().map(|s| s.id).collect::<Vec<_>>(), [0, 1]);
        let r = run(&sc, &mut Recommissioned, 1);
        let said: Vec<(u64, u8, String)> = r
            .trace
            .entries
            .iter()
            .filter_map(|e| match &e.what {
                crate::trace::What::Telemetry { station, text } => {
                    Some((e.t_us, *station, text.clone()))
                }
                _ => None,
            })
            .collect();
        let accepted = "configuration accepted (2 stations, 1 node)".to_string();
        // Time 0 is the leader's acceptance, at 200 us.
        assert_eq!(
            said,
            [
                (0, 0, accepted.clone()),
                (100, 0, "booted as leader".into()),
                (100, 1, accepted),
                (200, 1, "booted as follower".into()),
                (700, 1, "joined the group".into()),
            ]
        );
    }

    fn fixture_with(channels: u16, caps: Caps) -> FixtureInfo {
        FixtureInfo {
            proto: 1,
            fw: heapless::String::try_from("0.9").unwrap(),
            channels,
            caps,
        }
    }

    #[test]
    fn a_scenario_the_fixture_cannot_run_is_refused_before_anything_runs() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/scenarios/meter-sub-panel.toml");
        let sc = Scenario::load(&path).unwrap();
        let (channels, needs) = fixture_needs(&sc);
        assert!(needs.has(Capability::Meter), "{needs}");
        assert!(check_fixture(&sc, &fixture_with(16, Caps::ALL)).is_ok());
        let mut bench = Lossy {
            now: 0,
            report: Vec::new(),
            info: Some(fixture_with(
                u16::try_from(channels - 1).unwrap(),
                Caps::ALL.without(Capability::Meter),
            )),
        };
        let r = run(&sc, &mut bench, 1);
        assert_eq!(r.verdict, Verdict::Refused);
        let why = r.trace.incomplete.clone().unwrap_or_default();
        assert!(
            why.contains(&format!(
                "the fixture cannot run this scenario: it needs {channels} channels (one per station), the fixture has {}",
                channels - 1
            )) && why.contains("it needs the fixture capabilities meter, which the fixture (fw 0.9, caps=pwm,levels,relay,current,car,misbehave,loads,selftest,debug) does not announce"),
            "{why}"
        );
        assert_eq!(bench.now, 0, "nothing ran");
    }

    #[test]
    fn every_corpus_scenario_states_its_needs() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/scenarios");
        let mut some_without_meter = false;
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().and_then(|x| x.to_str()) != Some("toml") {
                continue;
            }
            let sc = Scenario::load(&p).unwrap();
            let (channels, needs) = fixture_needs(&sc);
            assert_eq!(channels, sc.stations.len());
            assert_eq!(
                needs.has(Capability::Meter),
                sc.meter.is_some()
                    || sc
                        .timeline
                        .iter()
                        .any(|s| matches!(s.action, Action::Meter(_))),
                "{}",
                p.display()
            );
            assert!(!needs.has(Capability::SelfTest));
            some_without_meter |= !needs.has(Capability::Meter);
            // The virtual fixture can run every one of them.
            assert!(Caps::ALL.missing(needs).is_empty());
        }
        assert!(some_without_meter);
    }
}
