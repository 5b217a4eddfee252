//! The one trait every bench implements, and what it reports.
//!
//! A bench is reached only through the fixture protocol (commands in,
//! fixture-timestamped events out) plus, optionally, the stations' debug
//! output. Faults that a fixture cannot make (link and node faults, a welded
//! contactor) are calls on the bench; a hardware bench refuses them and the
//! scenario that needs them is skipped there.

use firmware::telemetry::Refusal;
use rig::protocol::{Command, Event};

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
    #[error("{0} needs the virtual bench; this bench cannot make that fault")]
    Unsupported(String),
    #[error("bench setup failed: {0}")]
    Setup(String),
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
}
