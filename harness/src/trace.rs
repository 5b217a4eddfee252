//! What the fixture saw: the trace of a run, its canonical text, and the
//! per-station time series the checks and plots read.
//!
//! Owns the canonical rendering used for golden snapshots: one line per
//! change, times in milliseconds, currents in 0.1 A, duty in 0.01 %,
//! heartbeats left out (they prove liveness, not behaviour), every loss
//! kept (a sequence gap, a fixture's `LOSS` report: [`Trace::losses`]
//! names them, and the runner marks such a trace incomplete). The
//! rendering is deterministic: the same run gives the same bytes.

use std::fmt::Write as _;

use rig::capture::current_for_duty;
use rig::iec::PilotState;
use rig::protocol::Event;

use crate::bench::Record;
use crate::units::amps;

/// One thing in the trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum What {
    /// A timeline step the harness carried out.
    Action(String),
    Event(Event),
    Telemetry {
        station: u8,
        text: String,
    },
    Garbled(String),
    /// Fixture events the harness knows were lost (a sequence gap).
    Loss(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub t_us: u64,
    pub what: What,
}

/// A run's trace.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    pub scenario: String,
    pub seed: u64,
    pub bench: String,
    /// Station id per fixture channel.
    pub station_ids: Vec<u8>,
    pub entries: Vec<Entry>,
    pub end_us: u64,
    /// Why the run stopped early, if it did: the trace is partial.
    pub incomplete: Option<String>,
}

impl Trace {
    pub fn push_record(&mut self, r: Record) {
        let (t_us, what) = match r {
            Record::Event { t_us, event } => (t_us, What::Event(event)),
            Record::Telemetry {
                t_us,
                station,
                text,
            } => (t_us, What::Telemetry { station, text }),
            Record::Garbled { t_us, text } => (t_us, What::Garbled(text)),
            Record::Loss { t_us, text } => (t_us, What::Loss(text)),
        };
        self.entries.push(Entry { t_us, what });
    }

    pub fn push_action(&mut self, t_us: u64, text: String) {
        self.entries.push(Entry {
            t_us,
            what: What::Action(text),
        });
    }

    /// Order entries by time (stable: same-time entries keep arrival order).
    pub fn finish(&mut self, end_us: u64) {
        self.entries.sort_by_key(|e| e.t_us);
        self.end_us = end_us;
    }

    fn st(&self, ch: u8) -> String {
        self.station_ids
            .get(usize::from(ch))
            .map_or_else(|| format!("ch{ch}"), |id| format!("st{id}"))
    }

    /// The canonical text (golden snapshots, `trace.txt`).
    #[must_use]
    pub fn canonical(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# sharebench trace: {} (seed {})",
            self.scenario, self.seed
        );
        let _ = writeln!(
            out,
            "# time in ms; currents in A to 0.1 A; duty in % to 0.01 %"
        );
        for e in &self.entries {
            let ms = e.t_us / 1_000;
            let line = match &e.what {
                What::Action(a) => format!("action {a}"),
                What::Telemetry { station, text } => {
                    if *station == 255 {
                        format!("bench {text}")
                    } else {
                        format!("st{station} says: {text}")
                    }
                }
                What::Garbled(t) => format!("garbled fixture line: {t}"),
                What::Loss(t) => format!("fixture lost data: {t}"),
                What::Event(ev) => match *ev {
                    // A station's relayed bytes are its telemetry lines
                    // (`crate::debug`), not a fixture observation.
                    Event::Heartbeat | Event::Debug { .. } => continue,
                    Event::Duty {
                        ch,
                        duty_bp,
                        freq_mhz,
                    } => {
                        let offer = current_for_duty(duty_bp).map_or_else(
                            || "no current".to_string(),
                            |da| format!("{} A", amps(i64::from(da))),
                        );
                        format!(
                            "{} offer {offer} (duty {}.{:02} %, {} Hz)",
                            self.st(ch),
                            duty_bp / 100,
                            duty_bp % 100,
                            (freq_mhz + 500) / 1_000
                        )
                    }
                    Event::PwmOff { ch } => format!("{} pwm off", self.st(ch)),
                    Event::Pilot {
                        ch,
                        state,
                        high_mv,
                        low_mv,
                    } => format!(
                        "{} pilot {} ({} V / {} V)",
                        self.st(ch),
                        state.map_or('?', PilotState::letter),
                        volts(high_mv),
                        volts(low_mv)
                    ),
                    Event::Contactor { ch, closed } => format!(
                        "{} contactor {}",
                        self.st(ch),
                        if closed { "closed" } else { "open" }
                    ),
                    Event::Current { ch, da } => {
                        format!(
                            "{} current {} {} {} A",
                            self.st(ch),
                            amps(i64::from(da[0])),
                            amps(i64::from(da[1])),
                            amps(i64::from(da[2]))
                        )
                    }
                    Event::LostLines { total } => {
                        format!("fixture lost lines: {total} in all (its host did not read them)")
                    }
                    Event::LostCapture { ch, total } => format!(
                        "{} capture lost changes: {total} in all (its queue was full)",
                        self.st(ch)
                    ),
                    Event::Meter { da } => {
                        format!(
                            "meter {} {} {} A",
                            amps(i64::from(da[0])),
                            amps(i64::from(da[1])),
                            amps(i64::from(da[2]))
                        )
                    }
                    Event::Car {
                        ch,
                        plugged,
                        soc_permille,
                        draw_da,
                    } => format!(
                        "{} car plugged={} soc={}.{} % draw {} A",
                        self.st(ch),
                        u8::from(plugged),
                        soc_permille / 10,
                        soc_permille % 10,
                        amps(i64::from(draw_da))
                    ),
                },
            };
            let _ = writeln!(out, "{ms:>9} {line}");
        }
        self.footer(&mut out);
        out
    }

    /// Every loss the trace shows, with when: a gap in the fixture's event
    /// sequence, or the fixture's own report of dropped lines or capture
    /// changes. A trace with any is not whole.
    #[must_use]
    pub fn losses(&self) -> Vec<String> {
        let when = |t: u64| format!("t={:.3} s", t as f64 / 1e6);
        self.entries
            .iter()
            .filter_map(|e| match &e.what {
                What::Loss(text) => Some(text.clone()),
                What::Event(Event::LostLines { total }) => Some(format!(
                    "the fixture dropped lines its host did not read ({total} in all, reported at {})",
                    when(e.t_us)
                )),
                What::Event(Event::LostCapture { ch, total }) => Some(format!(
                    "{} capture dropped changes from its full queue ({total} in all, reported at {})",
                    self.st(*ch),
                    when(e.t_us)
                )),
                _ => None,
            })
            .collect()
    }

    /// The golden text: the canonical trace, or for `summary` scenarios the
    /// per-station totals (sessions, energy, peak offer, faults).
    #[must_use]
    pub fn golden_text(&self, summary: bool) -> String {
        if !summary {
            return self.canonical();
        }
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# sharebench trace summary: {} (seed {})",
            self.scenario, self.seed
        );
        let _ = writeln!(out, "# energy from the measured current at 230 V per phase");
        let s = self.series();
        for (i, id) in self.station_ids.iter().enumerate() {
            let sessions = s.contactor[i].iter().filter(|p| p.1).count();
            let mut energy_wh = 0.0f64;
            for (k, &(t, da)) in s.measured[i].iter().enumerate() {
                let next = s.measured[i].get(k + 1).map_or(self.end_us, |p| p.0);
                let amps: f64 = da.iter().map(|&d| f64::from(d) / 10.0).sum();
                energy_wh += amps * 230.0 * (next.saturating_sub(t)) as f64 / 3.6e9;
            }
            let max_offer = s.offered[i].iter().map(|p| p.1).max().unwrap_or(0);
            let charging_us: u64 = s.contactor[i]
                .iter()
                .enumerate()
                .filter(|(_, p)| p.1)
                .map(|(k, p)| s.contactor[i].get(k + 1).map_or(self.end_us, |q| q.0) - p.0)
                .sum();
            let faults = self
                .entries
                .iter()
                .filter(|e| matches!(&e.what, What::Telemetry { station, text } if station == id && text.starts_with("fault")))
                .count();
            let _ = writeln!(
                out,
                "st{id}: {sessions} sessions, {:.1} kWh, max offer {} A, contactor closed {} s, {faults} faults",
                energy_wh / 1_000.0,
                amps(i64::from(max_offer)),
                charging_us / 1_000_000
            );
        }
        self.footer(&mut out);
        out
    }

    /// The last line: where the trace ends, or why it stopped early.
    fn footer(&self, out: &mut String) {
        let _ = match &self.incomplete {
            Some(why) => writeln!(out, "# INCOMPLETE at {} ms: {why}", self.end_us / 1_000),
            None => writeln!(out, "# end {} ms", self.end_us / 1_000),
        };
    }

    /// Time series per channel.
    #[must_use]
    pub fn series(&self) -> Series {
        let n = self.station_ids.len();
        let mut s = Series {
            offered: vec![vec![(0, 0)]; n],
            duty: vec![vec![]; n],
            measured: vec![vec![(0, [0; 3])]; n],
            contactor: vec![vec![(0, false)]; n],
            pilot: vec![vec![]; n],
            meter: vec![],
            weld_reported: vec![vec![]; n],
            end_us: self.end_us,
        };
        let welded = firmware::telemetry::Telemetry::Fault(firmware::charge_point::Fault::Welded)
            .to_string();
        for e in &self.entries {
            if let What::Telemetry { station, text } = &e.what {
                if *text == welded {
                    if let Some(i) = self.station_ids.iter().position(|id| id == station) {
                        s.weld_reported[i].push(e.t_us);
                    }
                }
                continue;
            }
            let What::Event(ev) = &e.what else { continue };
            let t = e.t_us;
            match *ev {
                Event::Duty {
                    ch,
                    duty_bp,
                    freq_mhz,
                } if usize::from(ch) < n => {
                    s.offered[usize::from(ch)].push((t, current_for_duty(duty_bp).unwrap_or(0)));
                    s.duty[usize::from(ch)].push((t, Some((duty_bp, freq_mhz))));
                }
                Event::PwmOff { ch } if usize::from(ch) < n => {
                    s.offered[usize::from(ch)].push((t, 0));
                    s.duty[usize::from(ch)].push((t, None));
                }
                Event::Current { ch, da } if usize::from(ch) < n => {
                    s.measured[usize::from(ch)].push((t, da))
                }
                Event::Contactor { ch, closed } if usize::from(ch) < n => {
                    s.contactor[usize::from(ch)].push((t, closed))
                }
                Event::Pilot {
                    ch,
                    state,
                    high_mv,
                    low_mv,
                } if usize::from(ch) < n => {
                    s.pilot[usize::from(ch)].push((t, state, high_mv, low_mv));
                }
                Event::Meter { da } => s.meter.push((t, da)),
                _ => {}
            }
        }
        s
    }
}

fn volts(mv: i32) -> String {
    let sign = if mv < 0 { "-" } else { "" };
    format!("{sign}{}.{}", mv.abs() / 1_000, (mv.abs() % 1_000) / 100)
}

/// Duty (0.01 %) and frequency (mHz) from a time on; `None` while PWM is off.
pub type DutyPoint = (u64, Option<(u16, u32)>);
/// Pilot state and its high and low plateaus (mV) from a time on.
pub type PilotPoint = (u64, Option<PilotState>, i32, i32);

/// Change points per channel: `(t_us, value)` in time order, each value
/// holding until the next.
#[derive(Debug, Clone, Default)]
pub struct Series {
    /// Offered current from the duty, deciamps (0 without PWM).
    pub offered: Vec<Vec<(u64, u16)>>,
    /// Duty (0.01 %) and frequency (mHz); `None` while PWM is off.
    pub duty: Vec<Vec<DutyPoint>>,
    pub measured: Vec<Vec<(u64, [u16; 3])>>,
    pub contactor: Vec<Vec<(u64, bool)>>,
    pub pilot: Vec<Vec<PilotPoint>>,
    pub meter: Vec<(u64, [i32; 3])>,
    /// When each station said (telemetry) that its contactor is welded.
    pub weld_reported: Vec<Vec<u64>>,
    pub end_us: u64,
}

/// The value of a step series at `t`.
pub fn at<T: Copy>(s: &[(u64, T)], t: u64, default: T) -> T {
    match s.partition_point(|(ts, _)| *ts <= t) {
        0 => default,
        k => s[k - 1].1,
    }
}

/// Every distinct change time across several series, sorted.
#[must_use]
pub fn change_times(all: &[&[u64]]) -> Vec<u64> {
    let mut v: Vec<u64> = all.iter().flat_map(|s| s.iter().copied()).collect();
    v.sort_unstable();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_text_reads_like_a_log() {
        let mut t = Trace {
            scenario: "demo".into(),
            seed: 1,
            bench: "sim".into(),
            station_ids: vec![4],
            ..Trace::default()
        };
        t.push_action(1_000, "arrive st4".into());
        t.push_record(Record::Event {
            t_us: 3_021_500,
            event: Event::Duty {
                ch: 0,
                duty_bp: 2_667,
                freq_mhz: 1_000_000,
            },
        });
        t.push_record(Record::Event {
            t_us: 3_500_000,
            event: Event::Heartbeat,
        });
        t.push_record(Record::Event {
            t_us: 3_130_000,
            event: Event::Contactor {
                ch: 0,
                closed: true,
            },
        });
        t.finish(10_000_000);
        let text = t.canonical();
        assert!(text.contains("        1 action arrive st4\n"), "{text}");
        assert!(
            text.contains("     3021 st4 offer 16.0 A (duty 26.67 %, 1000 Hz)\n"),
            "{text}"
        );
        assert!(
            text.find("contactor closed").unwrap() < text.find("offer").unwrap()
                || text.contains("3130 st4 contactor closed")
        );
        assert!(!text.contains("HB"));
        assert!(text.ends_with("# end 10000 ms\n"));
        let s = t.series();
        assert_eq!(at(&s.offered[0], 3_021_499, 0), 0);
        assert_eq!(at(&s.offered[0], 3_021_500, 0), 160);
    }
}
