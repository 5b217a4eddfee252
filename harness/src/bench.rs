//! The one trait every bench implements, and what it reports.
//!
//! A bench is reached only through the fixture protocol (commands in,
//! fixture-timestamped events out) plus, optionally, the stations' debug
//! output. Faults that a fixture cannot make (link and node faults, a welded
//! contactor) are calls on the bench; a hardware bench refuses them and the
//! scenario that needs them is skipped there.

use firmware::telemetry::{Refusal, Telemetry};
use rig::protocol::{Command, Event, FixtureInfo};
use rig::selftest::SelfTestReport;

/// Something the harness learned, stamped with fixture time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A fixture event.
    Event { t_us: u64, event: Event },
    /// A line a station printed on its debug channel.
    Telemetry {
        t_us: u64,
        station: u8,
        text: String,
    },
    /// A fixture line that could not be parsed (reported and skipped).
    Garbled { t_us: u64, text: String },
    /// Fixture events known to be lost (a gap in the event sequence
    /// numbers): the trace is not whole.
    Loss { t_us: u64, text: String },
}

/// Read one line of station `station`'s debug channel, received at `t_us`:
/// its telemetry, if it is a telemetry line, and the records it makes (the
/// telemetry as the trace shows it; a loss the station reports; a garbled
/// line). Every bench reads station output through this, so a line means
/// the same on all of them.
pub fn station_line(t_us: u64, station: u8, line: &str) -> (Option<Telemetry>, Vec<Record>) {
    match firmware::telemetry::parse_line(line) {
        Ok(t) => {
            let mut records = vec![Record::Telemetry {
                t_us,
                station,
                text: t.to_string(),
            }];
            if let Telemetry::Lost { count } = t {
                records.push(Record::Loss {
                    t_us,
                    text: format!(
                        "station {station} lost {count} telemetry line(s) or event(s) at t={:.3} s",
                        t_us as f64 / 1e6
                    ),
                });
            }
            (Some(t), records)
        }
        Err(firmware::telemetry::ParseError::NotTelemetry) => (None, Vec::new()),
        Err(e) => (
            None,
            vec![Record::Garbled {
                t_us,
                text: format!("station {station}: {e}: {}", line.trim_end()),
            }],
        ),
    }
}

/// Follows the fixture's event sequence numbers (one counter for every
/// event it sends): a gap means events were lost on the way.
#[derive(Debug, Clone, Default)]
pub struct EventSeq {
    last: Option<u32>,
}

impl EventSeq {
    /// Note event `seq`, stamped `t_us`; the loss it reveals, if any.
    pub fn check(&mut self, seq: u32, t_us: u64) -> Option<Record> {
        let last = self.last.replace(seq)?;
        let step = seq.wrapping_sub(last);
        let text = if step == 1 {
            return None;
        } else if step == 0 || step > u32::MAX / 2 {
            format!(
                "fixture event sequence went back from {last} to {seq} (did the fixture restart?)"
            )
        } else {
            format!(
                "{} fixture event(s) lost: sequence jumped from {last} to {seq}",
                step - 1
            )
        };
        Some(Record::Loss {
            t_us,
            text: format!("{text}, before the event at t={:.3} s", t_us as f64 / 1e6),
        })
    }
}

/// Why a bench could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BenchError {
    #[error(
        "failed to open fixture port {port}: {reason} (is the fixture's USB cable plugged in?)"
    )]
    Open { port: String, reason: String },
    #[error(
        "fixture did not answer {what} within {timeout_ms} ms (is it powered, and on this port?)"
    )]
    Timeout { what: String, timeout_ms: u64 },
    #[error("fixture refused {what}: {reason}")]
    Refused { what: String, reason: String },
    /// The fixture answers, but fixture time does not advance as it must.
    #[error("fixture made no progress: {what}")]
    Stalled { what: String },
    #[error("fixture link failed: {0}")]
    Io(String),
    /// A station image (QEMU) died, closed a UART or sent garbage: the run
    /// cannot go on.
    #[error("station image failed: {0}")]
    Station(String),
    #[error("{0} needs the virtual bench; this bench cannot make that fault")]
    Unsupported(String),
    #[error("bench setup failed: {0}")]
    Setup(String),
    /// Another run holds the bench.
    #[error("bench {bench} is in use by {holder}; waited {waited_s} s (another test or CI job; it is released when that run ends)")]
    Busy {
        bench: String,
        holder: String,
        waited_s: u64,
    },
    /// The fixture cannot run the scenario: too few channels, or a
    /// capability it does not announce. Nothing ran.
    #[error("the fixture cannot run this scenario: {0}")]
    Lacks(String),
    /// A station refused the site plan it was commissioned with.
    #[error("scenario line {line}: station {station} refused its configuration: {reason}")]
    ConfigRefused {
        station: u8,
        line: usize,
        reason: Refusal,
    },
    #[error("the virtual bench made no progress at t={t_us} us (stuck waking {wake}); this is a bug in a model or the firmware")]
    Stuck { t_us: u64, wake: String },
}

/// A fault only the virtual bench can make.
#[derive(Debug, Clone, PartialEq)]
pub enum SimFault {
    LinkDown,
    OneWay { from: usize, to: usize },
    Partition(Vec<Vec<usize>>),
    Noise { loss: f64, corrupt: f64 },
    Repair,
    Crash(usize),
    Reboot(usize),
    Welded(usize, bool),
    Forge,
}

impl core::fmt::Display for SimFault {
    /// The fault in the scenario's words (station indices, as the bench
    /// knows them).
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::LinkDown => f.write_str("link-down"),
            Self::OneWay { from, to } => write!(f, "one-way from station #{from} to #{to}"),
            Self::Partition(g) => write!(f, "partition into {} groups", g.len()),
            Self::Noise { loss, corrupt } => write!(f, "noise (loss {loss}, corruption {corrupt})"),
            Self::Repair => f.write_str("repair"),
            Self::Crash(i) => write!(f, "crash of station #{i}"),
            Self::Reboot(i) => write!(f, "reboot of station #{i}"),
            Self::Welded(i, on) => {
                write!(f, "{} of station #{i}", if *on { "weld" } else { "unweld" })
            }
            Self::Forge => f.write_str("forge"),
        }
    }
}

/// A bench: the virtual one, or a real fixture on a serial port.
pub trait Bench {
    /// A short name for reports (`sim`, `serial:/dev/ttyACM0`).
    fn name(&self) -> String;

    /// Send a command and wait for its acknowledgement. Events that arrive
    /// meanwhile go to `sink`.
    fn command(&mut self, cmd: Command, sink: &mut dyn FnMut(Record)) -> Result<(), BenchError>;

    /// Make a fault only the virtual bench can make.
    fn fault(&mut self, fault: &SimFault) -> Result<(), BenchError>;

    /// Let the bench run until fixture time `t_us`, passing every record on.
    fn run_until(&mut self, t_us: u64, sink: &mut dyn FnMut(Record)) -> Result<(), BenchError>;

    /// Fixture time now, microseconds.
    fn now_us(&self) -> u64;

    /// Whether time is virtual (a simulation), for the speed-up figure.
    fn is_virtual(&self) -> bool;

    /// What the fixture announced in its HELLO answer (channels, firmware
    /// version, capabilities); `None` for a bench that says no HELLO (a
    /// test double), which is then not checked.
    fn fixture(&self) -> Option<&FixtureInfo> {
        None
    }

    /// Run the fixture's self-test on channel `ch` and read its report.
    fn self_test(
        &mut self,
        ch: u8,
        _sink: &mut dyn FnMut(Record),
    ) -> Result<(u8, SelfTestReport), BenchError> {
        Err(BenchError::Lacks(format!(
            "this bench cannot run a self-test (SELFTEST {ch})"
        )))
    }

    /// Give station `i` its site plan: `message` (commissioning lines, see
    /// `firmware::commission`) on the station's debug channel, and wait for
    /// its answer. `Ok(None)`: this bench cannot reach the stations' debug
    /// channels, and they run what they were flashed with.
    fn commission(
        &mut self,
        _station: usize,
        _message: &str,
        _sink: &mut dyn FnMut(Record),
    ) -> Result<Option<Result<(), Refusal>>, BenchError> {
        Ok(None)
    }

    /// Send station `i` an operator's line on its debug channel (an
    /// operator's limit, `firmware::commission::encode_limit`). Its answer
    /// is station telemetry, which reaches the trace as every line does.
    fn operator(
        &mut self,
        station: usize,
        _line: &str,
        _sink: &mut dyn FnMut(Record),
    ) -> Result<(), BenchError> {
        Err(BenchError::Lacks(format!(
            "this bench cannot reach station #{station}'s debug channel (an operator's limit goes there)"
        )))
    }

    /// Give every station its plan (`messages[i]` to station `i`) and
    /// collect their answers, as [`Self::commission`] does one by one. A
    /// bench whose stations take real time to read a plan sends them all at
    /// once, so that the stations start together.
    fn commission_all(
        &mut self,
        messages: &[String],
        sink: &mut dyn FnMut(Record),
    ) -> Result<Vec<Option<Result<(), Refusal>>>, BenchError> {
        let mut answers = Vec::with_capacity(messages.len());
        for (i, m) in messages.iter().enumerate() {
            answers.push(self.commission(i, m, sink)?);
        }
        Ok(answers)
    }
}

#[cfg(test)]
mod station_line_tests {
    use super::*;

    #[test]
    fn a_station_line_means_the_same_on_every_bench() {
        let (t, r) = station_line(5, 2, &Telemetry::Grant { da: 160 }.encode());
        assert_eq!(t, Some(Telemetry::Grant { da: 160 }));
        assert_eq!(
            r,
            vec![Record::Telemetry {
                t_us: 5,
                station: 2,
                text: "granted 16.0 A".into()
            }]
        );
        // A loss the station reports is a loss of the run.
        let (_, r) = station_line(7, 2, &Telemetry::Lost { count: 3 }.encode());
        assert!(
            matches!(&r[1], Record::Loss { t_us: 7, text } if text.contains("station 2 lost 3"))
        );
        // The station's own log is not telemetry; a garbled line is reported.
        assert_eq!(station_line(1, 2, "booting v0.1\n"), (None, vec![]));
        let (t, r) = station_line(1, 2, "T grant 160*0000\n");
        assert_eq!(t, None);
        assert!(matches!(&r[0], Record::Garbled { text, .. } if text.contains("checksum")));
    }
}

/// Where a run happens: a bench URL or a bench's name, parsed in one place.
///
/// ```text
/// sim                          the virtual bench (default)
/// serial:PORT[@BAUD]           a fixture on a serial port (115200 baud unless given)
/// tcp:HOST:PORT                a fixture's port exported as raw TCP (ser2net, labgrid)
/// rfc2217://HOST:PORT[@BAUD]   a fixture's port exported with RFC 2217 (ser2net telnet(rfc2217))
/// qemu                         station images in QEMU (processor in the loop)
/// NAME                         a bench of the inventory (benches.toml)
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BenchSpec {
    Sim,
    Serial { port: String, baud: u32 },
    Tcp { host: String, port: u16 },
    Rfc2217 { host: String, port: u16, baud: u32 },
    Qemu,
    Named(String),
}

/// The forms a bench can take, for error messages.
pub const BENCH_FORMS: &str =
    "sim, serial:PORT[@BAUD], tcp:HOST:PORT, rfc2217://HOST:PORT[@BAUD], qemu, or a bench name from benches.toml";

const DEFAULT_BAUD: u32 = 115_200;

fn baud_of(spec: &str, rest: &str) -> Result<(String, u32), String> {
    match rest.rsplit_once('@') {
        Some((what, baud)) => match baud.parse::<u32>() {
            Ok(b) if b > 0 => Ok((what.to_string(), b)),
            _ => Err(format!(
                "baud rate \"{baud}\" in \"{spec}\" is not a positive number"
            )),
        },
        None => Ok((rest.to_string(), DEFAULT_BAUD)),
    }
}

fn host_port(spec: &str, rest: &str) -> Result<(String, u16), String> {
    let bad = || format!("\"{spec}\" needs HOST:PORT with a port 1-65535");
    let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || port == 0 {
        return Err(bad());
    }
    // [::1]:4001 -> ::1
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((host.to_string(), port))
}

impl core::str::FromStr for BenchSpec {
    type Err = String;

    fn from_str(spec: &str) -> Result<Self, String> {
        let spec = spec.trim();
        if spec == "sim" {
            return Ok(Self::Sim);
        }
        if spec == "qemu" {
            return Ok(Self::Qemu);
        }
        if let Some(rest) = spec.strip_prefix("serial:") {
            let (port, baud) = baud_of(spec, rest)?;
            if port.is_empty() {
                return Err(format!("\"{spec}\" names no port"));
            }
            return Ok(Self::Serial { port, baud });
        }
        if let Some(rest) = spec.strip_prefix("tcp:") {
            let (host, port) = host_port(spec, rest)?;
            return Ok(Self::Tcp { host, port });
        }
        if let Some(rest) = spec.strip_prefix("rfc2217://") {
            let (hp, baud) = baud_of(spec, rest)?;
            let (host, port) = host_port(spec, &hp)?;
            return Ok(Self::Rfc2217 { host, port, baud });
        }
        let is_name = !spec.is_empty()
            && spec
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
        if is_name {
            return Ok(Self::Named(spec.to_string()));
        }
        Err(format!("unknown bench \"{spec}\"; expected {BENCH_FORMS}"))
    }
}

impl core::fmt::Display for BenchSpec {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Sim => f.write_str("sim"),
            Self::Serial { port, baud } => write!(f, "serial:{port}@{baud}"),
            Self::Tcp { host, port } if host.contains(':') => write!(f, "tcp:[{host}]:{port}"),
            Self::Tcp { host, port } => write!(f, "tcp:{host}:{port}"),
            Self::Rfc2217 { host, port, baud } if host.contains(':') => {
                write!(f, "rfc2217://[{host}]:{port}@{baud}")
            }
            Self::Rfc2217 { host, port, baud } => write!(f, "rfc2217://{host}:{port}@{baud}"),
            Self::Qemu => f.write_str("qemu"),
            Self::Named(n) => f.write_str(n),
        }
    }
}

impl BenchSpec {
    /// Open the line to the fixture of a line bench (serial, tcp, rfc2217);
    /// `None` for the others.
    pub fn open_link(&self) -> Result<Option<Box<dyn crate::serial::Link>>, BenchError> {
        Ok(Some(match self {
            Self::Serial { port, baud } => crate::link::serial(port, *baud)?,
            Self::Tcp { host, port } => crate::link::tcp(host, *port)?,
            Self::Rfc2217 { host, port, baud } => crate::link::rfc2217(host, *port, *baud)?,
            Self::Sim | Self::Qemu | Self::Named(_) => return Ok(None),
        }))
    }
}

#[cfg(test)]
mod spec_tests {
    use super::*;

    #[test]
    fn every_bench_form_parses_and_prints_back() {
        for (text, spec) in [
            ("sim", BenchSpec::Sim),
            ("qemu", BenchSpec::Qemu),
            (
                "serial:/dev/ttyACM0",
                BenchSpec::Serial {
                    port: "/dev/ttyACM0".into(),
                    baud: 115_200,
                },
            ),
            (
                "serial:/dev/pts/3@9600",
                BenchSpec::Serial {
                    port: "/dev/pts/3".into(),
                    baud: 9_600,
                },
            ),
            (
                "tcp:lab-a.local:4001",
                BenchSpec::Tcp {
                    host: "lab-a.local".into(),
                    port: 4_001,
                },
            ),
            (
                "tcp:[::1]:4001",
                BenchSpec::Tcp {
                    host: "::1".into(),
                    port: 4_001,
                },
            ),
            (
                "rfc2217://127.0.0.1:4002@57600",
                BenchSpec::Rfc2217 {
                    host: "127.0.0.1".into(),
                    port: 4_002,
                    baud: 57_600,
                },
            ),
            ("bench-3", BenchSpec::Named("bench-3".into())),
        ] {
            let parsed: BenchSpec = text.parse().unwrap();
            assert_eq!(parsed, spec, "{text}");
            let again: BenchSpec = parsed.to_string().parse().unwrap();
            assert_eq!(again, spec, "{text} prints as {parsed}");
        }
    }

    #[test]
    fn bad_bench_urls_say_what_was_expected() {
        for (text, needle) in [
            ("serial:/dev/x@fast", "baud rate \"fast\""),
            ("serial:", "names no port"),
            ("tcp:host", "HOST:PORT"),
            ("tcp:host:99999", "HOST:PORT"),
            ("rfc2217://h:0", "port 1-65535"),
            ("ftp://x", "expected sim, serial:PORT"),
        ] {
            let e = text.parse::<BenchSpec>().unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
