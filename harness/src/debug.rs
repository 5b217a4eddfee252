//! The stations' debug channels on a line bench: one link per station (a
//! UART adapter, a pty of the virtual fixture, a TCP export), read on its
//! own thread so each line keeps the wall-clock instant it arrived at; or,
//! on a bench that is a fixture with the `debug` capability and no debug
//! ports of its own, each station's channel relayed by the fixture
//! (`DEBUG` events in, `DEBUG` commands out, sent by [`crate::serial`]).
//! Both kinds of channel go through one line reader (commissioning answers,
//! lines before commissioning dropped, [`crate::bench::station_line`]);
//! only the stamp differs: a relayed line carries the fixture time of the
//! event that brought its newline.
//!
//! Owns reading those links, commissioning over them, and stamping each
//! station line with fixture time. A station's line carries no time (see
//! `docs/station-telemetry.md`); the fixture's events do. A line is stamped
//! by interpolating its arrival between the arrivals of the fixture events
//! before and after it (heartbeats come every fixture second), so no clock
//! rate is assumed: the same code stamps a lab bench in real time and the
//! virtual fixture running faster. Lines a station printed before the
//! harness commissioned it in this run are not the run's and are dropped.
//! Does not own the fixture protocol ([`crate::serial`]) nor the telemetry
//! format (`firmware::telemetry`, read through [`crate::bench::station_line`]).
//!
//! Nothing here panics on what a station sends; every wait is the caller's,
//! bounded by its deadline.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use firmware::telemetry::{Refusal, Telemetry};

use crate::bench::{BenchError, BenchSpec, Record};

/// The read half of a debug link; its reads must time out.
pub type DebugRead = Box<dyn Read + Send>;
/// The write half of a debug link.
pub type DebugWrite = Box<dyn Write + Send>;

/// How long a debug link's read waits before its thread looks at the stop
/// flag again.
const READ_TIMEOUT: Duration = Duration::from_millis(20);
/// A station line longer than this without a newline is noise: dropped.
const MAX_DEBUG_LINE: usize = 512;

enum Chunk {
    Data(Instant, Vec<u8>),
    Failed(String),
}

/// How a station's debug channel reaches the harness.
enum Wire {
    /// Its own link, read on its own thread.
    Link {
        writer: DebugWrite,
        rx: Receiver<Chunk>,
    },
    /// Relayed by the fixture.
    Relay,
}

struct Channel {
    name: String,
    /// The station id it was commissioned with in this run; lines before
    /// that are dropped.
    id: Option<u8>,
    wire: Wire,
    buf: Vec<u8>,
    /// Its answer to the last commissioning message.
    answer: Option<Result<(), Refusal>>,
    /// Left out of this run ([`DebugChannels::park`]): its answer is
    /// noted, its lines are not the run's.
    parked: bool,
    /// Sent a plan, not yet answered: what it says meanwhile is its
    /// previous plan's (a follower joining its old leader), not the run's.
    awaiting: bool,
}

/// A station line waiting for the fixture event that stamps it.
struct Unstamped {
    /// The channel it came on.
    ch: usize,
    at: Instant,
    station: u8,
    line: String,
}

/// Every station's debug channel of one bench, channel `i` for the
/// station on fixture channel `i`.
pub struct DebugChannels {
    chans: Vec<Channel>,
    stop: Arc<AtomicBool>,
    /// The reader threads: each holds its port until it ends.
    readers: Vec<std::thread::JoinHandle<()>>,
    unstamped: Vec<Unstamped>,
    /// The last fixture event: its time and when it arrived.
    anchor: Option<(u64, Instant)>,
    /// Messages for relayed channels, for the fixture's `DEBUG` command.
    outbox: Vec<(usize, Vec<u8>)>,
}

impl Channel {
    /// A channel not yet sent a plan this run.
    fn new(name: String, wire: Wire) -> Self {
        Self {
            name,
            id: None,
            wire,
            buf: Vec::new(),
            answer: None,
            parked: false,
            awaiting: false,
        }
    }

    /// What arrived on the channel, split into lines: commissioning
    /// answers noted, lines from before this run's commissioning dropped.
    /// The station id and text of each line of this run.
    fn lines(&mut self, bytes: &[u8]) -> Vec<(u8, String)> {
        let mut out = Vec::new();
        self.buf.extend_from_slice(bytes);
        while let Some(n) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=n).collect();
            let Some(station) = self.id else { continue };
            let line = String::from_utf8_lossy(&line).into_owned();
            match firmware::telemetry::parse_line(&line) {
                Ok(Telemetry::ConfigAccepted { .. }) => self.answer = Some(Ok(())),
                Ok(Telemetry::ConfigRefused(r)) => self.answer = Some(Err(r)),
                _ if self.awaiting => continue,
                _ => {}
            }
            self.awaiting = false;
            if !self.parked {
                out.push((station, line));
            }
        }
        if self.buf.len() > MAX_DEBUG_LINE {
            self.buf.clear();
        }
        out
    }
}

/// How long dropping the channels waits for their reader threads to end
/// (each looks at the stop flag every [`READ_TIMEOUT`]).
const READERS_END_WITHIN: Duration = Duration::from_secs(1);

impl Drop for DebugChannels {
    /// Stop the readers and wait (bounded) until they have closed their
    /// ports: a serial port is opened exclusively, and the next run (a test
    /// in another thread) opens it as soon as this one is dropped.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let deadline = Instant::now() + READERS_END_WITHIN;
        while self.readers.iter().any(|r| !r.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        for r in self.readers.drain(..) {
            if r.is_finished() {
                let _ = r.join();
            }
        }
    }
}

/// Open one station's debug channel: a serial port (`serial:PORT[@BAUD]`)
/// or a raw TCP export (`tcp:HOST:PORT`).
pub fn open_link(spec: &BenchSpec) -> Result<(DebugRead, DebugWrite), BenchError> {
    let io = |e: std::io::Error| BenchError::Open {
        port: spec.to_string(),
        reason: e.to_string(),
    };
    match spec {
        BenchSpec::Serial { port, baud } => {
            let p = serialport::new(port, *baud)
                .timeout(READ_TIMEOUT)
                .open()
                .map_err(|e| BenchError::Open {
                    port: port.clone(),
                    reason: format!(
                        "{e} (a station's debug channel); ports on this machine: {}",
                        crate::link::available_ports()
                    ),
                })?;
            // What the station printed before we listened is not this run's.
            let _ = p.clear(serialport::ClearBuffer::Input);
            let w = p
                .try_clone()
                .map_err(|e| io(std::io::Error::other(e.to_string())))?;
            Ok((Box::new(p), Box::new(w)))
        }
        BenchSpec::Tcp { host, port } => {
            let s = std::net::TcpStream::connect((host.as_str(), *port)).map_err(io)?;
            s.set_read_timeout(Some(READ_TIMEOUT)).map_err(io)?;
            let w = s.try_clone().map_err(io)?;
            Ok((Box::new(s), Box::new(w)))
        }
        other => Err(BenchError::Setup(format!(
            "a station's debug channel must be serial:PORT[@BAUD] or tcp:HOST:PORT, not \"{other}\""
        ))),
    }
}

fn reader(mut r: DebugRead, tx: std::sync::mpsc::Sender<Chunk>, stop: Arc<AtomicBool>) {
    let mut buf = [0u8; 512];
    while !stop.load(Ordering::Relaxed) {
        match r.read(&mut buf) {
            Ok(0) => std::thread::sleep(READ_TIMEOUT),
            Ok(n) => {
                if tx
                    .send(Chunk::Data(Instant::now(), buf[..n].to_vec()))
                    .is_err()
                {
                    return;
                }
            }
            Err(e) if crate::serial::nothing_yet(&e) => {}
            Err(e) => {
                let _ = tx.send(Chunk::Failed(e.to_string()));
                return;
            }
        }
    }
}

impl DebugChannels {
    /// Open every station's debug channel (in fixture channel order).
    pub fn open(specs: &[BenchSpec]) -> Result<Self, BenchError> {
        let mut links = Vec::new();
        for s in specs {
            let (r, w) = open_link(s)?;
            links.push((s.to_string(), r, w));
        }
        Ok(Self::over(links))
    }

    /// Use already open links (name, read half, write half).
    #[must_use]
    pub fn over(links: Vec<(String, DebugRead, DebugWrite)>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let mut readers = Vec::new();
        let chans = links
            .into_iter()
            .map(|(name, r, writer)| {
                let (tx, rx) = channel();
                let stop = Arc::clone(&stop);
                readers.push(std::thread::spawn(move || reader(r, tx, stop)));
                Channel::new(name, Wire::Link { writer, rx })
            })
            .collect();
        Self {
            chans,
            stop,
            readers,
            unstamped: Vec::new(),
            anchor: None,
            outbox: Vec::new(),
        }
    }

    /// The debug channels of `n` stations relayed by the fixture (channel
    /// `i` for the station on fixture channel `i`).
    #[must_use]
    pub fn relayed(n: usize) -> Self {
        let chans = (0..n)
            .map(|i| Channel::new(format!("fixture channel {i} (relayed)"), Wire::Relay))
            .collect();
        Self {
            chans,
            stop: Arc::new(AtomicBool::new(false)),
            readers: Vec::new(),
            unstamped: Vec::new(),
            anchor: None,
            outbox: Vec::new(),
        }
    }

    /// Whether the fixture relays these channels.
    #[must_use]
    pub fn is_relayed(&self) -> bool {
        self.chans.iter().any(|c| matches!(c.wire, Wire::Relay))
    }

    /// Bytes station `ch` printed, relayed in a `DEBUG` event stamped
    /// `t_us`: the records of the lines they complete, stamped `t_us`.
    /// Ignored when the channel has its own link (it is read there).
    pub fn relay_in(&mut self, ch: u8, t_us: u64, bytes: &[u8]) -> Vec<Record> {
        let Some(c) = self
            .chans
            .get_mut(usize::from(ch))
            .filter(|c| matches!(c.wire, Wire::Relay))
        else {
            return Vec::new();
        };
        c.lines(bytes)
            .into_iter()
            .flat_map(|(station, line)| crate::bench::station_line(t_us, station, &line).1)
            .collect()
    }

    /// The messages for relayed channels since the last call (channel,
    /// bytes), for the fixture's `DEBUG` command.
    pub fn relay_out(&mut self) -> Vec<(usize, Vec<u8>)> {
        std::mem::take(&mut self.outbox)
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.chans.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.chans.is_empty()
    }

    /// Take what arrived: split it into lines, note commissioning answers,
    /// and queue each line for stamping. A dead link is an error.
    pub fn poll(&mut self) -> Result<(), BenchError> {
        for (i, c) in self.chans.iter_mut().enumerate() {
            while let Wire::Link { rx, .. } = &c.wire {
                let (at, bytes) = match rx.try_recv() {
                    Ok(Chunk::Data(at, b)) => (at, b),
                    Ok(Chunk::Failed(e)) => {
                        return Err(BenchError::Io(format!(
                            "failed to read the station debug channel {}: {e}",
                            c.name
                        )))
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        return Err(BenchError::Io(format!(
                            "the station debug channel {} closed",
                            c.name
                        )))
                    }
                };
                for (station, line) in c.lines(&bytes) {
                    self.unstamped.push(Unstamped {
                        ch: i,
                        at,
                        station,
                        line,
                    });
                }
            }
        }
        Ok(())
    }

    /// A fixture event stamped `t_us` arrived at `at`: the records of
    /// every station line that arrived by then, stamped by interpolation
    /// between the previous event and this one.
    pub fn anchor(&mut self, t_us: u64, at: Instant) -> Vec<Record> {
        let prev = self.anchor.replace((t_us, at));
        let mut out = Vec::new();
        let mut keep = Vec::new();
        for u in std::mem::take(&mut self.unstamped) {
            if u.at > at {
                keep.push(u);
                continue;
            }
            let t = match prev {
                Some((t0, w0)) if at > w0 && t_us >= t0 => {
                    let f = u.at.saturating_duration_since(w0).as_secs_f64()
                        / at.duration_since(w0).as_secs_f64();
                    t0.saturating_add(((t_us - t0) as f64 * f.clamp(0.0, 1.0)) as u64)
                }
                _ => t_us,
            };
            out.extend(crate::bench::station_line(t, u.station, &u.line).1);
        }
        self.unstamped = keep;
        out
    }

    /// Send station `i` (commissioned as station `id`) a commissioning
    /// message; its answer comes through [`Self::poll`] (or, relayed,
    /// through [`Self::relay_in`]; the message waits in [`Self::relay_out`]).
    pub fn send(&mut self, i: usize, id: u8, message: &str) -> Result<(), BenchError> {
        let n = self.chans.len();
        let c = self.chans.get_mut(i).ok_or_else(|| {
            BenchError::Lacks(format!(
                "the bench lists {n} station debug channel(s); the scenario's station #{i} has none"
            ))
        })?;
        c.id = Some(id);
        c.answer = None;
        c.parked = false;
        // What it said before is its previous plan's: not stamped into
        // this run, nor a part line to finish.
        c.awaiting = true;
        c.buf.clear();
        self.unstamped.retain(|u| u.ch != i);
        let Wire::Link { writer, .. } = &mut c.wire else {
            self.outbox.push((i, message.as_bytes().to_vec()));
            return Ok(());
        };
        writer
            .write_all(message.as_bytes())
            .and_then(|()| writer.flush())
            .map_err(|e| {
                BenchError::Io(format!(
                    "failed to write to the station debug channel {}: {e}",
                    c.name
                ))
            })
    }

    /// Give station `i`, which this run leaves out, the parked plan
    /// ([`crate::provision::park_text`]): its answer comes as
    /// [`Self::send`]'s does, and nothing it says is the run's.
    pub fn park(&mut self, i: usize, message: &str) -> Result<(), BenchError> {
        self.send(i, crate::provision::PARKED_ID, message)?;
        if let Some(c) = self.chans.get_mut(i) {
            c.parked = true;
        }
        Ok(())
    }

    /// Write `text` to station `i`'s debug channel (an operator's line):
    /// what the station answers comes through [`Self::poll`]. A relayed
    /// channel queues it for the fixture ([`Self::relay_out`]).
    pub fn write(&mut self, i: usize, text: &str) -> Result<(), BenchError> {
        let n = self.chans.len();
        let c = self.chans.get_mut(i).ok_or_else(|| {
            BenchError::Lacks(format!(
                "the bench lists {n} station debug channel(s); the scenario's station #{i} has none"
            ))
        })?;
        let Wire::Link { writer, .. } = &mut c.wire else {
            self.outbox.push((i, text.as_bytes().to_vec()));
            return Ok(());
        };
        writer
            .write_all(text.as_bytes())
            .and_then(|()| writer.flush())
            .map_err(|e| {
                BenchError::Io(format!(
                    "failed to write to the station debug channel {}: {e}",
                    c.name
                ))
            })
    }

    /// Station `i`'s answer to its last commissioning message, once.
    pub fn answer(&mut self, i: usize) -> Option<Result<(), Refusal>> {
        self.chans.get_mut(i).and_then(|c| c.answer.take())
    }
}

/// The station id a commissioning message gives (`C begin <id> ...`).
#[must_use]
pub fn commissioned_id(message: &str) -> Option<u8> {
    message
        .lines()
        .next()?
        .strip_prefix("C begin ")?
        .split([' ', '*'])
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A serial port is opened exclusively: once the channels are dropped
    /// their ports are closed, so the next run opens them at once (tests
    /// on one bench in threads of one process failed with "Unable to
    /// acquire exclusive lock" while a reader thread still held one).
    #[test]
    fn dropping_the_channels_closes_their_ports() {
        let (_master, slave) = serialport::TTYPort::pair().unwrap();
        let spec = BenchSpec::Serial {
            port: serialport::SerialPort::name(&slave).unwrap(),
            baud: 115_200,
        };
        for _ in 0..5 {
            let d = DebugChannels::open(std::slice::from_ref(&spec)).unwrap();
            drop(d);
        }
    }

    /// A debug link fed from a shared buffer.
    struct Fed(Arc<Mutex<Vec<u8>>>);
    impl Read for Fed {
        fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
            let mut v = self.0.lock().unwrap();
            if v.is_empty() {
                drop(v);
                std::thread::sleep(Duration::from_millis(1));
                return Err(std::io::ErrorKind::TimedOut.into());
            }
            let n = v.len().min(b.len());
            b[..n].copy_from_slice(&v[..n]);
            v.drain(..n);
            Ok(n)
        }
    }
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn wait_for(d: &mut DebugChannels, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while d.unstamped.len() < n {
            d.poll().unwrap();
            assert!(Instant::now() < deadline, "lines never arrived");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn lines_are_stamped_between_the_fixture_events_around_them() {
        let input = Arc::new(Mutex::new(Vec::new()));
        let written = Arc::new(Mutex::new(Vec::new()));
        let mut d = DebugChannels::over(vec![(
            "fake".into(),
            Box::new(Fed(Arc::clone(&input))),
            Box::new(Sink(Arc::clone(&written))),
        )]);
        // Before commissioning: not this run's.
        input
            .lock()
            .unwrap()
            .extend_from_slice(Telemetry::Grant { da: 10 }.encode().as_bytes());
        std::thread::sleep(Duration::from_millis(50));
        d.poll().unwrap();
        assert!(d.unstamped.is_empty());
        let w0 = Instant::now();
        assert!(d.anchor(1_000_000, w0).is_empty());
        d.send(0, 7, "C begin 7 1 1*0000\n").unwrap();
        assert_eq!(&*written.lock().unwrap(), b"C begin 7 1 1*0000\n");
        input.lock().unwrap().extend_from_slice(
            Telemetry::ConfigAccepted {
                stations: 1,
                nodes: 1,
            }
            .encode()
            .as_bytes(),
        );
        wait_for(&mut d, 1);
        assert_eq!(d.answer(0), Some(Ok(())));
        assert_eq!(d.answer(0), None, "an answer is taken once");
        let at = d.unstamped[0].at;
        // The next event arrived as long after the line as the line after
        // the previous event: the line is stamped half way.
        let w1 = at + at.duration_since(w0);
        let r = d.anchor(2_000_000, w1);
        match &r[..] {
            [Record::Telemetry {
                t_us,
                station: 7,
                text,
            }] => {
                assert!((1_499_000..=1_501_000).contains(t_us), "{t_us}");
                assert_eq!(text, "configuration accepted (1 station, 1 node)");
            }
            other => panic!("{other:?}"),
        }
        // A line that arrives after the event waits for the next one.
        input
            .lock()
            .unwrap()
            .extend_from_slice(Telemetry::Joined.encode().as_bytes());
        wait_for(&mut d, 1);
        assert!(d.anchor(2_000_000, w1).is_empty());
        assert_eq!(d.anchor(3_000_000, Instant::now()).len(), 1);
    }

    #[test]
    fn a_station_missing_from_the_bench_is_a_clear_error() {
        let mut d = DebugChannels::over(Vec::new());
        let e = d.send(2, 3, "C begin 3 4 1*0000\n").unwrap_err();
        assert!(
            e.to_string().contains("lists 0 station debug channel(s)"),
            "{e}"
        );
        assert!(matches!(
            open_link(&BenchSpec::Qemu),
            Err(BenchError::Setup(_))
        ));
        assert_eq!(commissioned_id("C begin 12 4 1*ABCD\nC group..."), Some(12));
        assert_eq!(commissioned_id("hello"), None);
    }

    /// Relayed channels read lines as linked ones do (nothing before
    /// commissioning, answers noted), stamped with the fixture time of the
    /// event that completed each; what is sent waits for the fixture.
    #[test]
    fn relayed_lines_are_stamped_with_the_event_that_completed_them() {
        let mut d = DebugChannels::relayed(2);
        assert!(d.is_relayed());
        let grant = Telemetry::Grant { da: 10 }.encode();
        assert!(d.relay_in(0, 1_000, grant.as_bytes()).is_empty());
        d.send(0, 7, "C begin 7 1 1*0000\n").unwrap();
        assert_eq!(d.relay_out(), vec![(0, b"C begin 7 1 1*0000\n".to_vec())]);
        assert!(d.relay_out().is_empty());
        let accepted = Telemetry::ConfigAccepted {
            stations: 1,
            nodes: 1,
        }
        .encode();
        let (a, z) = accepted.as_bytes().split_at(7);
        assert!(d.relay_in(0, 2_000, a).is_empty());
        match &d.relay_in(0, 3_000, z)[..] {
            [Record::Telemetry {
                t_us: 3_000,
                station: 7,
                text,
            }] => assert_eq!(text, "configuration accepted (1 station, 1 node)"),
            other => panic!("{other:?}"),
        }
        assert_eq!(d.answer(0), Some(Ok(())));
        // Channel 1 was not commissioned in this run; channel 9 does not exist.
        assert!(d.relay_in(1, 4_000, grant.as_bytes()).is_empty());
        assert!(d.relay_in(9, 4_000, grant.as_bytes()).is_empty());
        // Linked channels take no relayed bytes (they are read on their link).
        let mut linked = DebugChannels::over(Vec::new());
        assert!(!linked.is_relayed());
        assert!(linked.relay_in(0, 1, grant.as_bytes()).is_empty());
    }

    /// A station sent a new plan speaks on its old one until it answers:
    /// that is not the run's, nor a part line from before the plan, nor the
    /// lines of a parked station; all it says after its answer is.
    #[test]
    fn what_a_station_says_before_its_answer_or_parked_is_not_the_runs() {
        let mut d = DebugChannels::relayed(2);
        let joined = Telemetry::Joined.encode();
        let grant = Telemetry::Grant { da: 160 }.encode();
        let accepted = Telemetry::ConfigAccepted {
            stations: 1,
            nodes: 1,
        }
        .encode();
        d.send(0, 3, "C begin 3 1 1*0000\n").unwrap();
        assert!(d.relay_in(0, 1_000, joined.as_bytes()).is_empty());
        // Half a line of the old plan, then the plan again: the half is
        // dropped, not joined to what follows.
        assert!(d.relay_in(0, 1_500, &grant.as_bytes()[..6]).is_empty());
        d.send(0, 4, "C begin 4 1 1*0000\n").unwrap();
        let texts = |r: Vec<Record>| -> Vec<(u8, String)> {
            r.into_iter()
                .filter_map(|r| match r {
                    Record::Telemetry { station, text, .. } => Some((station, text)),
                    _ => None,
                })
                .collect()
        };
        assert_eq!(texts(d.relay_in(0, 2_000, accepted.as_bytes())).len(), 1);
        assert_eq!(d.answer(0), Some(Ok(())));
        assert_eq!(
            texts(d.relay_in(0, 3_000, joined.as_bytes())),
            [(4, "joined the group".to_string())]
        );
        // Parked: its answer is noted, nothing it says is the run's.
        d.park(1, "C begin 250 1 1*0000\n").unwrap();
        assert!(d.relay_in(1, 4_000, accepted.as_bytes()).is_empty());
        assert_eq!(d.answer(1), Some(Ok(())));
        assert!(d.relay_in(1, 5_000, grant.as_bytes()).is_empty());
    }
}
