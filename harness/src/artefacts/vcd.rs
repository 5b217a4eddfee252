//! The trace as a VCD file for GTKWave and Surfer, timescale 1 us, so a
//! waveform viewer shows the safety invariant beside what flowed:
//!
//! - `site.stN` per station: `pilot_state` as a named value (a VCD
//!   `$var string`, which GTKWave and Surfer show as text: `A_standby`,
//!   `B_connected`, `C_charging`, `D_ventilation`, `E_no_power`, `F_fault`,
//!   `unknown`; checked with GTKWave 3.3's `vcd2fst`, which keeps every one), `duty_pct` (real, %), `offered_a` (real, A, from the duty),
//!   `measured_p1_a` .. `measured_p3_a` (real, A, per station phase as the
//!   fixture measures it) and `contactor` (1 bit);
//! - `site.meter_l1_a` .. `meter_l3_a`: the mains meter per grid phase
//!   (real, A, signed: export below 0);
//! - `site.node_NAME` per node: `offered_l1_a` .. `offered_l3_a`, the sum
//!   of the offers under the node per grid phase (the firmware's safety
//!   invariant, as the breaker-offered check sums it), and `limit_a`, the
//!   node's limit per phase (constant).

use std::io::Write;

use ::vcd::{IdCode, SimulationCommand, TimescaleUnit, Value, VarType, Writer};
use rig::capture::current_for_duty;
use rig::iec::PilotState;
use rig::protocol::Event;

use crate::checks::breaker::node_sums;
use crate::scenario::Scenario;
use crate::trace::{Trace, What};

struct Ids {
    state: IdCode,
    duty: IdCode,
    offered: IdCode,
    measured: [IdCode; 3],
    contactor: IdCode,
}

/// A pilot state as the VCD names it (no spaces: VCD values are tokens).
#[must_use]
pub fn state_name(s: Option<PilotState>) -> &'static str {
    match s {
        Some(PilotState::A) => "A_standby",
        Some(PilotState::B) => "B_connected",
        Some(PilotState::C) => "C_charging",
        Some(PilotState::D) => "D_ventilation",
        Some(PilotState::E) => "E_no_power",
        Some(PilotState::F) => "F_fault",
        None => "unknown",
    }
}

/// A scope name VCD readers accept: ASCII letters, digits and `_`.
fn scope_name(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// A variable's value, to skip changes that change nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    Real(u64),
    Str(&'static str),
    Bit(bool),
}

/// One value change, to be written in time order.
enum Change {
    Real(IdCode, f64),
    Str(IdCode, &'static str),
    Bit(IdCode, bool),
}

/// Write the VCD.
pub fn write(w: &mut impl Write, sc: &Scenario, trace: &Trace) -> std::io::Result<()> {
    let mut v = Writer::new(w);
    v.timescale(1, TimescaleUnit::US)?;
    v.add_module("site")?;
    let mut ids = Vec::new();
    for st in &sc.stations {
        v.add_module(&format!("st{}", st.id))?;
        ids.push(Ids {
            state: v.add_var(VarType::String, 1, "pilot_state", None)?,
            duty: v.add_var(VarType::Real, 64, "duty_pct", None)?,
            offered: v.add_var(VarType::Real, 64, "offered_a", None)?,
            measured: [
                v.add_var(VarType::Real, 64, "measured_p1_a", None)?,
                v.add_var(VarType::Real, 64, "measured_p2_a", None)?,
                v.add_var(VarType::Real, 64, "measured_p3_a", None)?,
            ],
            contactor: v.add_wire(1, "contactor")?,
        });
        v.upscope()?;
    }
    let meter = [
        v.add_var(VarType::Real, 64, "meter_l1_a", None)?,
        v.add_var(VarType::Real, 64, "meter_l2_a", None)?,
        v.add_var(VarType::Real, 64, "meter_l3_a", None)?,
    ];
    let mut nodes = Vec::new();
    for node in &sc.nodes {
        v.add_module(&format!("node_{}", scope_name(&node.name)))?;
        let offered = [
            v.add_var(VarType::Real, 64, "offered_l1_a", None)?,
            v.add_var(VarType::Real, 64, "offered_l2_a", None)?,
            v.add_var(VarType::Real, 64, "offered_l3_a", None)?,
        ];
        let limit = v.add_var(VarType::Real, 64, "limit_a", None)?;
        nodes.push((offered, limit));
        v.upscope()?;
    }
    v.upscope()?;
    v.enddefinitions()?;
    v.begin(SimulationCommand::Dumpvars)?;
    for id in &ids {
        v.change_real(id.duty, 0.0)?;
        v.change_real(id.offered, 0.0)?;
        for m in id.measured {
            v.change_real(m, 0.0)?;
        }
        v.change_scalar(id.contactor, Value::V0)?;
    }
    for m in meter {
        v.change_real(m, 0.0)?;
    }
    for (node, (offered, limit)) in sc.nodes.iter().zip(&nodes) {
        for o in offered {
            v.change_real(*o, 0.0)?;
        }
        v.change_real(*limit, f64::from(node.limit_da) / 10.0)?;
    }
    v.end()?;
    // GTKWave (vcd2fst 3.3) drops string values inside `$dumpvars` and
    // before the first timestamp: the pilot states start at an explicit #0.
    v.timestamp(0)?;
    for id in &ids {
        v.change_string(id.state, state_name(None))?;
    }

    // Every change with its time; a stable sort keeps the trace's order
    // among changes at the same time.
    let amps = |da: i64| da as f64 / 10.0;
    let mut changes: Vec<(u64, Change)> = Vec::new();
    for e in &trace.entries {
        let What::Event(ev) = &e.what else { continue };
        let t = e.t_us;
        let get = |ch: u8| ids.get(usize::from(ch));
        match *ev {
            Event::Duty { ch, duty_bp, .. } => {
                if let Some(id) = get(ch) {
                    changes.push((t, Change::Real(id.duty, f64::from(duty_bp) / 100.0)));
                    let offer = current_for_duty(duty_bp).unwrap_or(0);
                    changes.push((t, Change::Real(id.offered, amps(i64::from(offer)))));
                }
            }
            Event::PwmOff { ch } => {
                if let Some(id) = get(ch) {
                    changes.push((t, Change::Real(id.duty, 0.0)));
                    changes.push((t, Change::Real(id.offered, 0.0)));
                }
            }
            Event::Pilot { ch, state, .. } => {
                if let Some(id) = get(ch) {
                    changes.push((t, Change::Str(id.state, state_name(state))));
                }
            }
            Event::Contactor { ch, closed } => {
                if let Some(id) = get(ch) {
                    changes.push((t, Change::Bit(id.contactor, closed)));
                }
            }
            Event::Current { ch, da } => {
                if let Some(id) = get(ch) {
                    for p in 0..3 {
                        changes.push((t, Change::Real(id.measured[p], amps(i64::from(da[p])))));
                    }
                }
            }
            Event::Meter { da } => {
                for p in 0..3 {
                    changes.push((t, Change::Real(meter[p], amps(i64::from(da[p])))));
                }
            }
            Event::Heartbeat
            | Event::Car { .. }
            | Event::LostLines { .. }
            | Event::LostCapture { .. }
            | Event::Debug { .. } => {}
        }
    }
    let series = trace.series();
    for (n, points) in node_sums(sc, &series, false).into_iter().enumerate() {
        let Some((offered, _)) = nodes.get(n) else {
            continue;
        };
        // The first point is the zero every sum starts from (dumped above).
        for (t, sums) in points.into_iter().skip(1) {
            for p in 0..3 {
                changes.push((t, Change::Real(offered[p], amps(i64::from(sums[p])))));
            }
        }
    }
    changes.sort_by_key(|c| c.0);

    // What each variable holds (the dump above set them all), so a change
    // that changes nothing is not written.
    let mut now: std::collections::HashMap<IdCode, Held> = std::collections::HashMap::new();
    let zero = Held::Real(0.0f64.to_bits());
    for id in &ids {
        now.insert(id.state, Held::Str(state_name(None)));
        for r in [
            id.duty,
            id.offered,
            id.measured[0],
            id.measured[1],
            id.measured[2],
        ] {
            now.insert(r, zero);
        }
        now.insert(id.contactor, Held::Bit(false));
    }
    for (offered, _) in &nodes {
        for o in offered {
            now.insert(*o, zero);
        }
    }
    for m in meter {
        now.insert(m, zero);
    }
    let mut last_t = 0;
    for (t, c) in changes {
        let (id, held) = match &c {
            Change::Real(id, x) => (*id, Held::Real(x.to_bits())),
            Change::Str(id, s) => (*id, Held::Str(s)),
            Change::Bit(id, b) => (*id, Held::Bit(*b)),
        };
        if now.insert(id, held) == Some(held) {
            continue;
        }
        if t != last_t {
            v.timestamp(t)?;
            last_t = t;
        }
        match c {
            Change::Real(id, x) => v.change_real(id, x)?,
            Change::Str(id, s) => v.change_string(id, s)?,
            Change::Bit(id, b) => v.change_scalar(id, if b { Value::V1 } else { Value::V0 })?,
        }
    }
    v.timestamp(trace.end_us.max(last_t))?;
    v.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::Record;

    #[test]
    fn a_vcd_that_the_vcd_crate_reads_back() {
        let sc = crate::scenario::tests::tiny();
        let mut t = Trace {
            scenario: "x".into(),
            station_ids: vec![0, 1],
            ..Trace::default()
        };
        t.push_record(Record::Event {
            t_us: 10,
            event: Event::Duty {
                ch: 0,
                duty_bp: 2_667,
                freq_mhz: 1_000_000,
            },
        });
        t.push_record(Record::Event {
            t_us: 20,
            event: Event::Contactor {
                ch: 0,
                closed: true,
            },
        });
        t.push_record(Record::Event {
            t_us: 30,
            event: Event::Pilot {
                ch: 0,
                state: Some(PilotState::C),
                high_mv: 6_000,
                low_mv: -12_000,
            },
        });
        t.push_record(Record::Event {
            t_us: 40,
            event: Event::Meter { da: [10, 20, -50] },
        });
        t.push_record(Record::Event {
            t_us: 50,
            event: Event::Meter { da: [10, 20, -60] },
        });
        t.finish(100);
        let mut buf = Vec::new();
        write(&mut buf, &sc, &t).unwrap();
        // String values only after an explicit #0 (GTKWave drops them in
        // $dumpvars and before the first timestamp).
        let text = String::from_utf8(buf.clone()).unwrap();
        let dump = &text[text.find("$dumpvars").unwrap()..];
        let dump = &dump[..dump.find("$end").unwrap()];
        assert!(!dump.lines().any(|l| l.starts_with('s')), "{dump}");
        let first_string = text.lines().position(|l| l.starts_with('s')).unwrap();
        let first_time = text.lines().position(|l| l.starts_with('#')).unwrap();
        assert!(first_time < first_string, "{text}");
        let mut parser = ::vcd::Parser::new(&buf[..]);
        let header = parser.parse_header().unwrap();
        assert!(header.find_var(&["site", "st0", "duty_pct"]).is_some());
        let commands: Vec<_> = parser.collect::<Result<Vec<_>, _>>().unwrap();
        assert!(commands
            .iter()
            .any(|c| matches!(c, ::vcd::Command::ChangeReal(_, x) if (*x - 26.67).abs() < 1e-9)));
        // Nothing is written twice: the meter's L1 of 1.0 A once.
        let l1 = header
            .find_var(&["site", "meter_l1_a"])
            .expect("meter_l1_a")
            .code;
        assert_eq!(
            commands
                .iter()
                .filter(|c| matches!(c, ::vcd::Command::ChangeReal(id, _) if *id == l1))
                .count(),
            2,
            "the dump's 0 and the change to 1 A"
        );
        // The pilot state by name.
        let state = header
            .find_var(&["site", "st0", "pilot_state"])
            .expect("pilot_state")
            .code;
        assert!(commands.iter().any(
            |c| matches!(c, ::vcd::Command::ChangeString(id, s) if *id == state && s == "C_charging")
        ));
        // The node's sum of offers (16 A from the duty) and its limit.
        let node = &sc.nodes[0];
        let scope = format!("node_{}", scope_name(&node.name));
        let offered = header
            .find_var(&["site", scope.as_str(), "offered_l1_a"])
            .expect("offered_l1_a")
            .code;
        let limit = header
            .find_var(&["site", scope.as_str(), "limit_a"])
            .expect("limit_a")
            .code;
        assert!(commands.iter().any(
            |c| matches!(c, ::vcd::Command::ChangeReal(id, x) if *id == offered && (*x - 16.0).abs() < 1e-9)
        ));
        assert!(commands.iter().any(
            |c| matches!(c, ::vcd::Command::ChangeReal(id, x) if *id == limit && (*x - f64::from(node.limit_da) / 10.0).abs() < 1e-9)
        ));
        // The meter per phase.
        let l3 = header
            .find_var(&["site", "meter_l3_a"])
            .expect("meter_l3_a")
            .code;
        assert!(commands.iter().any(
            |c| matches!(c, ::vcd::Command::ChangeReal(id, x) if *id == l3 && (*x + 5.0).abs() < 1e-9)
        ));
    }
}
