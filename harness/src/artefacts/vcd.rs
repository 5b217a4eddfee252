//! The trace as a VCD file for GTKWave and Surfer: per station its pilot
//! state (a 3-bit code, A=0 .. F=5, 7 = unknown), duty (real, %), offered
//! and measured current (real, A), and the contactor (1 bit). Timescale 1 us.

use std::io::Write;

use ::vcd::{IdCode, SimulationCommand, TimescaleUnit, Value, VarType, Writer};
use rig::capture::current_for_duty;
use rig::iec::PilotState;
use rig::protocol::Event;

use crate::scenario::Scenario;
use crate::trace::{Trace, What};

struct Ids {
    state: IdCode,
    duty: IdCode,
    offered: IdCode,
    measured: IdCode,
    contactor: IdCode,
}

fn state_bits(s: Option<PilotState>) -> [Value; 3] {
    let code: u8 = match s {
        Some(PilotState::A) => 0,
        Some(PilotState::B) => 1,
        Some(PilotState::C) => 2,
        Some(PilotState::D) => 3,
        Some(PilotState::E) => 4,
        Some(PilotState::F) => 5,
        None => 7,
    };
    [2, 1, 0].map(|b| {
        if code >> b & 1 == 1 {
            Value::V1
        } else {
            Value::V0
        }
    })
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
            state: v.add_var(VarType::Wire, 3, "pilot_state", None)?,
            duty: v.add_var(VarType::Real, 64, "duty_pct", None)?,
            offered: v.add_var(VarType::Real, 64, "offered_a", None)?,
            measured: v.add_var(VarType::Real, 64, "measured_a", None)?,
            contactor: v.add_wire(1, "contactor")?,
        });
        v.upscope()?;
    }
    let meter = v.add_var(VarType::Real, 64, "meter_l1_a", None)?;
    v.upscope()?;
    v.enddefinitions()?;
    v.begin(SimulationCommand::Dumpvars)?;
    for id in &ids {
        v.change_vector(id.state, state_bits(None))?;
        v.change_real(id.duty, 0.0)?;
        v.change_real(id.offered, 0.0)?;
        v.change_real(id.measured, 0.0)?;
        v.change_scalar(id.contactor, Value::V0)?;
    }
    v.change_real(meter, 0.0)?;
    v.end()?;
    let mut last_t = 0;
    for e in &trace.entries {
        let What::Event(ev) = &e.what else { continue };
        if matches!(ev, Event::Heartbeat | Event::Car { .. }) {
            continue;
        }
        if e.t_us != last_t {
            v.timestamp(e.t_us)?;
            last_t = e.t_us;
        }
        let get = |ch: u8| ids.get(usize::from(ch));
        match *ev {
            Event::Duty { ch, duty_bp, .. } => {
                if let Some(id) = get(ch) {
                    v.change_real(id.duty, f64::from(duty_bp) / 100.0)?;
                    v.change_real(
                        id.offered,
                        f64::from(current_for_duty(duty_bp).unwrap_or(0)) / 10.0,
                    )?;
                }
            }
            Event::PwmOff { ch } => {
                if let Some(id) = get(ch) {
                    v.change_real(id.duty, 0.0)?;
                    v.change_real(id.offered, 0.0)?;
                }
            }
            Event::Pilot { ch, state, .. } => {
                if let Some(id) = get(ch) {
                    v.change_vector(id.state, state_bits(state))?;
                }
            }
            Event::Contactor { ch, closed } => {
                if let Some(id) = get(ch) {
                    v.change_scalar(id.contactor, if closed { Value::V1 } else { Value::V0 })?;
                }
            }
            Event::Current { ch, da } => {
                if let Some(id) = get(ch) {
                    v.change_real(id.measured, f64::from(da[0]) / 10.0)?;
                }
            }
            Event::Meter { da } => v.change_real(meter, f64::from(da[0]) / 10.0)?,
            Event::Heartbeat
            | Event::Car { .. }
            | Event::LostLines { .. }
            | Event::LostCapture { .. } => {}
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
        t.finish(100);
        let mut buf = Vec::new();
        write(&mut buf, &sc, &t).unwrap();
        let mut parser = ::vcd::Parser::new(&buf[..]);
        let header = parser.parse_header().unwrap();
        assert!(header.find_var(&["site", "st0", "duty_pct"]).is_some());
        let commands: Vec<_> = parser.collect::<Result<Vec<_>, _>>().unwrap();
        assert!(commands
            .iter()
            .any(|c| matches!(c, ::vcd::Command::ChangeReal(_, x) if (*x - 26.67).abs() < 1e-9)));
    }
}
