//! A bench fixture on a serial port (USB serial, or a pseudo-terminal in
//! front of the virtual fixture), in real time.
//!
//! Owns the host side of the line protocol over a byte link: HELLO and the
//! version check, one command at a time with its acknowledgement, events
//! read as they come with their sequence numbers followed (a gap is
//! reported as a loss), garbled lines reported and skipped. Every wait has a
//! wall-clock bound: a silent fixture, one that sends only garbled lines, or
//! a dead port ends the run with [`BenchError::Timeout`]; a fixture whose
//! clock is frozen or creeps (fixture time does not reach the time waited
//! for within the wait's bound) ends it with [`BenchError::Stalled`]. The
//! trace is then marked incomplete, never a hang. Faults only the virtual
//! bench can make are refused. Station telemetry and commissioning go over
//! the stations' debug ports when the inventory lists them, else through a
//! fixture with the `debug` capability (it relays each station's debug
//! channel), else nowhere ([`SerialBench::telemetry_note`]).

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use heapless::String as HString;
use rig::protocol::{
    self, Capability, Command, DebugBytes, Event, FixtureInfo, Line, Parsed, MAX_LINE,
    PROTOCOL_VERSION,
};
use rig::selftest::SelfTestReport;

use crate::bench::{Bench, BenchError, BenchSpec, EventSeq, Record, SimFault};

/// A byte link to a fixture: a serial port, a pty, or a test double.
pub trait Link: Read + Write + Send {}
impl<T: Read + Write + Send> Link for T {}

/// How long a fixture may take to measure its self-test, on top of the
/// acknowledgement timeout.
const SELFTEST_TIME: Duration = Duration::from_secs(3);

/// Timeouts of the serial bench: the wall-clock bounds of its waits.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// An acknowledgement must come within this.
    pub ack: Duration,
    /// With no valid line for this long the fixture is silent (heartbeats
    /// come every fixture second). Garbled lines do not count.
    pub silence: Duration,
    /// With fixture time standing still for this long the fixture's clock
    /// is frozen (heartbeats move it every fixture second).
    pub progress: Duration,
    /// The slowest the fixture's clock may run, in fixture seconds per wall
    /// second: 1 for hardware, a virtual fixture's `--time-scale`.
    pub time_scale: f64,
    /// Waiting for fixture time `t` may take `(t - now) / time_scale` plus
    /// this much wall time.
    pub margin: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            ack: Duration::from_secs(2),
            silence: Duration::from_secs(5),
            progress: Duration::from_secs(5),
            time_scale: 1.0,
            margin: Duration::from_secs(5),
        }
    }
}

impl Timeouts {
    /// The wall-clock bound for fixture time to advance by `wait_us`:
    /// `wait_us / time_scale + margin`. `None` when that is beyond what a
    /// clock can hold (a time scale near zero); the progress bound still
    /// applies then.
    #[must_use]
    pub fn wait_bound(&self, wait_us: u64) -> Option<Duration> {
        let scaled = Duration::try_from_secs_f64(wait_us as f64 / 1e6 / self.time_scale).ok()?;
        scaled.checked_add(self.margin)
    }
}

/// How far past the last fixture event [`Bench::now_us`] may estimate.
const NOW_AHEAD_US: u64 = 1_000_000;

/// A fixture reached over a byte link.
pub struct SerialBench {
    name: String,
    link: Box<dyn Link>,
    timeouts: Timeouts,
    seq: u32,
    rx: Vec<u8>,
    now_us: u64,
    /// When the last valid line came (garbled lines do not count).
    last_line: Instant,
    /// Garbled lines since the last valid one.
    garbled_since: u64,
    /// Lines read but not yet handed on.
    pending: Vec<Record>,
    /// The fixture's event sequence: a gap is a loss.
    event_seq: EventSeq,
    /// What the fixture announced in its HELLO answer.
    info: Option<FixtureInfo>,
    /// When the fixture's last bytes arrived (what stamps station lines).
    rx_at: Instant,
    /// The stations' debug channels, when the bench lists them.
    debug: Option<crate::debug::DebugChannels>,
    /// Each station's power control (channel order), and whether it is
    /// off (a crash fault).
    power: Vec<(crate::provision::Power, bool)>,
    /// The fixture's clock as last seen: (event time, arrival), the event
    /// at least 0.9 fixture s before it, and whether the clock ran at the
    /// time scale between them (within a factor of 2).
    clock: Clock,
}

/// What the harness knows of the fixture's clock, to act on time between
/// heartbeats.
#[derive(Debug, Clone, Copy, Default)]
struct Clock {
    last: Option<(u64, Instant)>,
    base: Option<(u64, Instant)>,
    steady: bool,
}

impl Clock {
    /// Fixture events more than this apart measure the clock's rate.
    const SPAN_US: u64 = 900_000;
    /// The furthest ahead of the last event the harness estimates.
    const AHEAD_US: u64 = 2_000_000;

    fn seen(&mut self, t_us: u64, at: Instant, time_scale: f64) {
        self.last = Some((t_us, at));
        match self.base {
            Some((bt, bw)) if t_us >= bt.saturating_add(Self::SPAN_US) => {
                let wall = at.duration_since(bw).as_secs_f64();
                let rate = (t_us - bt) as f64 / 1e6 / wall.max(1e-9);
                self.steady = rate >= time_scale * 0.5 && rate <= time_scale * 2.0;
                self.base = Some((t_us, at));
            }
            Some((bt, _)) if t_us < bt => self.base = Some((t_us, at)),
            Some(_) => {}
            None => self.base = Some((t_us, at)),
        }
    }

    /// Fixture time now, estimated from the last event while the clock is
    /// seen to run at the time scale; `None` otherwise (the harness then
    /// waits for an event).
    fn estimate(&self, time_scale: f64) -> Option<u64> {
        self.ahead(time_scale, Self::AHEAD_US)
            .filter(|_| self.steady)
    }

    /// The last event's time plus the wall time since it arrived at the
    /// time scale, at most `cap_us` ahead.
    fn ahead(&self, time_scale: f64, cap_us: u64) -> Option<u64> {
        let (t, w) = self.last?;
        let ahead = (w.elapsed().as_secs_f64() * time_scale * 1e6) as u64;
        Some(t.saturating_add(ahead.min(cap_us)))
    }
}

/// A read that ended without bytes but without a failure either: the
/// port's read timeout ran out, or a signal interrupted it. Callers poll
/// again under their own deadline.
pub(crate) fn nothing_yet(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::TimedOut
            | std::io::ErrorKind::WouldBlock
            | std::io::ErrorKind::Interrupted
    )
}

impl SerialBench {
    /// Open the line to a fixture (serial, TCP or RFC 2217) and say HELLO.
    pub fn open(spec: &BenchSpec, timeouts: Timeouts) -> Result<Self, BenchError> {
        let link = spec.open_link()?.ok_or_else(|| {
            BenchError::Setup(format!("bench \"{spec}\" is not a line to a fixture"))
        })?;
        Self::over(spec.to_string(), link, timeouts)
    }

    /// Open a line bench and, when its inventory entry lists them, every
    /// station's debug channel (in channel order).
    pub fn open_bench(
        spec: &BenchSpec,
        entry: Option<&crate::inventory::BenchEntry>,
        timeouts: Timeouts,
    ) -> Result<Self, BenchError> {
        let debug: Vec<BenchSpec> = entry
            .map(|e| e.stations.iter().filter_map(|s| s.debug.clone()).collect())
            .unwrap_or_default();
        let mut bench = Self::open(spec, timeouts)?;
        if let Some(e) = entry {
            bench = bench.with_power(e.stations.iter().map(|s| s.power.clone()).collect());
        }
        if !debug.is_empty() {
            return Ok(bench.with_debug(crate::debug::DebugChannels::open(&debug)?));
        }
        let wired = entry.map(|e| e.stations.len()).filter(|&n| n > 0);
        Ok(bench.with_relayed_debug_of(wired))
    }

    /// No debug ports of their own: read the stations' debug channels
    /// through the fixture, if it relays them (the `debug` capability),
    /// one per fixture channel.
    #[must_use]
    pub fn with_relayed_debug(self) -> Self {
        self.with_relayed_debug_of(None)
    }

    /// As [`Self::with_relayed_debug`], on the first `wired` channels when
    /// a bench inventory lists the stations wired (fewer than the fixture
    /// has channels: a channel without a station has nothing to park).
    #[must_use]
    pub fn with_relayed_debug_of(self, wired: Option<usize>) -> Self {
        match self.info.as_ref() {
            Some(f) if f.caps.has(Capability::Debug) => {
                let n = usize::from(f.channels);
                let n = wired.map_or(n, |w| w.min(n));
                self.with_debug(crate::debug::DebugChannels::relayed(n))
            }
            _ => self,
        }
    }

    /// Why the trace will have no station telemetry, when it will not: the
    /// bench lists no debug ports and the fixture cannot relay them.
    #[must_use]
    pub fn telemetry_note(&self) -> Option<&'static str> {
        self.debug
            .is_none()
            .then_some("no station telemetry: goldens need a named bench or a fixture with `debug`")
    }

    /// Control each station's power (channel order): crash and reboot
    /// faults then run the inventory's commands.
    #[must_use]
    pub fn with_power(mut self, power: Vec<crate::provision::Power>) -> Self {
        self.power = power.into_iter().map(|p| (p, false)).collect();
        self
    }

    /// Whether this bench makes every fault `sc` needs: it needs none that
    /// only the virtual bench makes, or only power faults, and every station
    /// they touch has the commands (`power_off` and `power_on` for a crash,
    /// `power_cycle` or both for a reboot).
    #[must_use]
    pub fn makes_faults_of(&self, sc: &crate::scenario::Scenario) -> bool {
        use crate::scenario::Action;
        if sc.needs_sim_beyond_power() {
            return false;
        }
        sc.timeline.iter().all(|s| {
            let p = |i: &usize| self.power.get(*i).map(|(p, _)| p);
            match &s.action {
                Action::Crash(i) => p(i).is_some_and(|p| p.off.is_some() && p.on.is_some()),
                Action::Reboot(i) => {
                    p(i).is_some_and(|p| p.cycle.is_some() || (p.off.is_some() && p.on.is_some()))
                }
                _ => true,
            }
        })
    }

    /// Use an already open link (reads must time out, not block forever).
    pub fn over(name: String, link: Box<dyn Link>, timeouts: Timeouts) -> Result<Self, BenchError> {
        let mut b = Self {
            name,
            link,
            timeouts,
            seq: 0,
            rx: Vec::new(),
            now_us: 0,
            last_line: Instant::now(),
            garbled_since: 0,
            pending: Vec::new(),
            event_seq: EventSeq::default(),
            info: None,
            rx_at: Instant::now(),
            debug: None,
            power: Vec::new(),
            clock: Clock::default(),
        };
        // What the fixture said before HELLO is not a run's: RESET reports
        // where each channel stands.
        let answer = b.exchange(
            Command::Hello {
                version: PROTOCOL_VERSION,
            },
            &mut |_| {},
        )?;
        b.info = Some(FixtureInfo::parse(&answer).map_err(|what| {
            BenchError::Setup(format!(
                "the fixture's HELLO answer \"{answer}\" is not understood: expected {what}"
            ))
        })?);
        Ok(b)
    }

    /// Commission stations `from..messages.len()` (`messages[i]` for
    /// station `i`); `None` for each without a debug channel on this bench.
    /// Commissioning them all (`from` 0) needs every station of the bench.
    fn commission_from(
        &mut self,
        from: usize,
        messages: &[String],
        sink: &mut dyn FnMut(Record),
    ) -> Result<Vec<Option<Result<(), firmware::telemetry::Refusal>>>, BenchError> {
        let mut answers: Vec<Option<Result<(), firmware::telemetry::Refusal>>> =
            vec![None; messages.len()];
        let Some(d) = self.debug.as_mut() else {
            return Ok(answers);
        };
        // The parked stations' answers follow the scenario's.
        answers.resize(d.len().max(messages.len()), None);
        if from == 0 && d.len() < messages.len() {
            let has = if d.is_relayed() {
                format!("the fixture relays {} station debug channel(s)", d.len())
            } else {
                format!("the bench has {}", d.len())
            };
            return Err(BenchError::Lacks(format!(
                "it has {} station(s); {has}",
                messages.len()
            )));
        }
        let mut ids = Vec::new();
        for (i, message) in messages.iter().enumerate().skip(from) {
            let id = crate::debug::commissioned_id(message).ok_or_else(|| {
                BenchError::Setup("a commissioning message without its \"C begin\" line".into())
            })?;
            d.send(i, id, message)?;
            ids.push((i, id));
        }
        // The bench's other stations are parked: left on their last plan
        // they would join (or lead) this run's group on the shared link.
        if from == 0 && d.len() > messages.len() {
            let key = crate::provision::bench_key().map_err(BenchError::Setup)?;
            let park = crate::provision::park_text(&key);
            for i in messages.len()..d.len() {
                d.park(i, &park)?;
                ids.push((i, crate::provision::PARKED_ID));
            }
        }
        self.flush_relay(sink)?;
        let limit = self.timeouts.ack + Duration::from_secs(1);
        let deadline = Instant::now() + limit;
        loop {
            let mut lines = Vec::new();
            self.pump(&mut lines)?;
            for r in std::mem::take(&mut self.pending) {
                sink(r);
            }
            for l in lines {
                self.event(l, sink);
            }
            if let Some(d) = self.debug.as_mut() {
                for &(i, _) in &ids {
                    if let (Some(a), Some(slot)) = (d.answer(i), answers.get_mut(i)) {
                        *slot = Some(a);
                    }
                }
            }
            let who = |i: usize, id: u8| {
                if i < messages.len() {
                    format!("st{id}")
                } else {
                    format!("the spare station on fixture channel {i}")
                }
            };
            let waiting: Vec<String> = ids
                .iter()
                .filter(|(i, _)| answers.get(*i).is_some_and(Option::is_none))
                .map(|&(i, id)| who(i, id))
                .collect();
            if waiting.is_empty() {
                let parked = answers.split_off(messages.len());
                if let Some((i, Some(Err(why)))) = parked
                    .iter()
                    .enumerate()
                    .find(|(_, a)| matches!(a, Some(Err(_))))
                {
                    return Err(BenchError::Setup(format!(
                        "{} refused the plan that leaves it out of the run ({why}); a station left on its last plan would share the link",
                        who(messages.len() + i, 0)
                    )));
                }
                return Ok(answers);
            }
            if Instant::now() > deadline {
                let spare = ids.iter().any(|&(i, _)| {
                    i >= messages.len() && answers.get(i).is_some_and(Option::is_none)
                });
                return Err(BenchError::Timeout {
                    what: format!(
                        "the answer of {} to its commissioning on its debug channel (is the station powered, and its debug channel in the inventory right?{})",
                        waiting.join(", "),
                        if spare {
                            " A fixture channel without a station: list the stations wired in a bench inventory."
                        } else {
                            ""
                        }
                    ),
                    timeout_ms: limit.as_millis() as u64,
                });
            }
        }
    }

    /// What the stations' relayed debug channels have to send: through the
    /// fixture, in as many DEBUG commands as needed, one at a time per
    /// station (in order), every station at once.
    fn flush_relay(&mut self, sink: &mut dyn FnMut(Record)) -> Result<(), BenchError> {
        let Some(d) = self.debug.as_mut() else {
            return Ok(());
        };
        let mut queues = Vec::new();
        for (i, bytes) in d.relay_out() {
            let ch = u8::try_from(i).map_err(|_| {
                BenchError::Lacks(format!("station #{i} is beyond the fixture's channels"))
            })?;
            let mut chunks = std::collections::VecDeque::new();
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                let mut chunk = DebugBytes::new();
                rest = &rest[chunk.fill(rest)..];
                chunks.push_back(chunk);
            }
            queues.push((ch, chunks));
        }
        self.relay_chunks(queues, sink)
    }

    /// Send each channel its chunks with `DEBUG`, in order, one outstanding
    /// per channel and every channel at once. A board writes the station's
    /// RX at its baud rate: a full queue (`ERR busy`) is waited out and the
    /// chunk sent again, within the ack timeout; any other refusal is an
    /// error.
    fn relay_chunks(
        &mut self,
        mut queues: Vec<(u8, std::collections::VecDeque<DebugBytes>)>,
        sink: &mut dyn FnMut(Record),
    ) -> Result<(), BenchError> {
        let busy_until = Instant::now() + self.timeouts.ack;
        loop {
            queues.retain(|(_, q)| !q.is_empty());
            let cmds: Vec<Command> = queues
                .iter()
                .filter_map(|(ch, q)| q.front().map(|c| Command::Debug(*ch, *c)))
                .collect();
            if cmds.is_empty() {
                return Ok(());
            }
            let answers = self.exchange_many(cmds, self.timeouts.ack, sink)?;
            let mut busy = false;
            for ((_, q), answer) in queues.iter_mut().zip(answers) {
                match answer {
                    Ok(_) => {
                        q.pop_front();
                    }
                    Err(BenchError::Refused { reason, .. })
                        if reason.starts_with(protocol::ErrorCode::Busy.word())
                            && Instant::now() < busy_until =>
                    {
                        busy = true;
                    }
                    Err(e) => return Err(e),
                }
            }
            if busy {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// Read the stations' debug channels too (channel `i` for the station
    /// on fixture channel `i`): their telemetry reaches the trace, and
    /// stations are commissioned over them.
    #[must_use]
    pub fn with_debug(mut self, debug: crate::debug::DebugChannels) -> Self {
        self.debug = Some(debug);
        self
    }

    fn send(&mut self, cmd: Command) -> Result<u32, BenchError> {
        self.seq = self.seq.wrapping_add(1);
        let mut line: HString<MAX_LINE> = HString::new();
        protocol::encode(&Line::Command { seq: self.seq, cmd }, &mut line)
            .map_err(|_| BenchError::Io("command too long".into()))?;
        self.link
            .write_all(line.as_bytes())
            .map_err(|e| BenchError::Io(format!("failed to write to the fixture: {e}")))?;
        self.link
            .flush()
            .map_err(|e| BenchError::Io(format!("failed to write to the fixture: {e}")))?;
        Ok(self.seq)
    }

    /// Read whatever is there (up to the port's read timeout) and parse lines.
    fn pump(&mut self, out: &mut Vec<Line>) -> Result<(), BenchError> {
        let mut buf = [0u8; 512];
        match self.link.read(&mut buf) {
            Ok(0) => {}
            Ok(n) => {
                self.rx_at = Instant::now();
                self.rx.extend_from_slice(&buf[..n]);
            }
            Err(e) if nothing_yet(&e) => {}
            Err(e) => {
                return Err(BenchError::Io(format!(
                    "failed to read from the fixture: {e}"
                )))
            }
        }
        loop {
            match protocol::parse_next(&self.rx) {
                Parsed::Incomplete => break,
                Parsed::Line(n, l) => {
                    self.rx.drain(..n);
                    self.last_line = Instant::now();
                    self.garbled_since = 0;
                    out.push(l);
                }
                Parsed::Garbled(n, e) => {
                    let text = String::from_utf8_lossy(&self.rx[..n])
                        .trim_end()
                        .to_string();
                    self.rx.drain(..n);
                    // Not a sign of life: a fixture that only babbles is
                    // as good as a silent one.
                    self.garbled_since = self.garbled_since.saturating_add(1);
                    self.pending.push(Record::Garbled {
                        t_us: self.now_us,
                        text: format!("{e}: {text}"),
                    });
                }
            }
        }
        if let Some(d) = self.debug.as_mut() {
            d.poll()?;
        }
        Ok(())
    }

    /// Send a command and wait for its answer (within the ack timeout):
    /// the `OK` info, or the refusal. Events that arrive meanwhile go to
    /// `sink`.
    fn exchange(
        &mut self,
        cmd: Command,
        sink: &mut dyn FnMut(Record),
    ) -> Result<String, BenchError> {
        let ack = match cmd {
            // A board measures 1280 periods (about 1.3 s) before it answers.
            Command::SelfTest(_) => self.timeouts.ack + SELFTEST_TIME,
            _ => self.timeouts.ack,
        };
        self.exchange_many(vec![cmd], ack, sink)?
            .pop()
            .unwrap_or_else(|| Err(BenchError::Io("a command went unanswered".into())))
    }

    /// Send commands one after the other without waiting, then wait for
    /// every answer (all within `ack`): each command's `OK` info or its
    /// refusal, in the order sent. Events that arrive meanwhile go to
    /// `sink`, in order, also those after an answer.
    fn exchange_many(
        &mut self,
        cmds: Vec<Command>,
        ack: Duration,
        sink: &mut dyn FnMut(Record),
    ) -> Result<Vec<Result<String, BenchError>>, BenchError> {
        let mut sent = Vec::new();
        for cmd in cmds {
            let what = cmd.to_string();
            sent.push((self.send(cmd)?, what));
        }
        let mut answers: Vec<Option<Result<String, BenchError>>> =
            sent.iter().map(|_| None).collect();
        let deadline = Instant::now() + ack;
        for r in std::mem::take(&mut self.pending) {
            sink(r);
        }
        loop {
            let mut lines = Vec::new();
            self.pump(&mut lines)?;
            for r in std::mem::take(&mut self.pending) {
                sink(r);
            }
            for l in lines {
                match l {
                    Line::Ok { seq, info } => {
                        if let Some(i) = sent.iter().position(|(s, _)| *s == seq) {
                            answers[i] = Some(Ok(info.as_str().to_string()));
                        }
                    }
                    Line::Err { seq, code, message } => {
                        if let Some(i) = sent.iter().position(|(s, _)| *s == seq) {
                            answers[i] = Some(Err(BenchError::Refused {
                                what: sent[i].1.clone(),
                                reason: format!("{code}: {message}"),
                            }));
                        }
                    }
                    other => self.event(other, sink),
                }
            }
            if answers.iter().all(Option::is_some) {
                return Ok(answers.into_iter().flatten().collect());
            }
            if Instant::now() > deadline {
                let what = sent
                    .iter()
                    .zip(&answers)
                    .find(|(_, a)| a.is_none())
                    .map(|((_, w), _)| w.clone())
                    .unwrap_or_default();
                return Err(BenchError::Timeout {
                    what: format!("the acknowledgement of {what}"),
                    timeout_ms: ack.as_millis() as u64,
                });
            }
        }
    }

    fn event(&mut self, l: Line, sink: &mut dyn FnMut(Record)) {
        if let Line::Event { seq, t_us, event } = l {
            self.now_us = self.now_us.max(t_us);
            self.clock.seen(t_us, self.rx_at, self.timeouts.time_scale);
            if let Some(loss) = self.event_seq.check(seq, t_us) {
                sink(loss);
            }
            if let Some(d) = self.debug.as_mut() {
                for r in d.anchor(t_us, self.rx_at) {
                    sink(r);
                }
            }
            if let Event::Debug { ch, data } = event {
                // A station's own bytes: its lines, when the fixture is
                // where the harness reads it (not a fixture observation).
                if let Some(d) = self.debug.as_mut() {
                    for r in d.relay_in(ch, t_us, data.as_bytes()) {
                        sink(r);
                    }
                }
                return;
            }
            sink(Record::Event { t_us, event });
        }
    }
}

impl Bench for SerialBench {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn fixture(&self) -> Option<&FixtureInfo> {
        self.info.as_ref()
    }

    fn self_test(
        &mut self,
        ch: u8,
        sink: &mut dyn FnMut(Record),
    ) -> Result<(u8, SelfTestReport), BenchError> {
        let answer = self.exchange(Command::SelfTest(ch), sink)?;
        protocol::parse_selftest(&answer).map_err(|what| {
            BenchError::Io(format!(
                "the fixture's SELFTEST answer \"{answer}\" is not understood: expected {what}"
            ))
        })
    }

    fn is_virtual(&self) -> bool {
        false
    }

    /// The last event's time, or a little later when wall time has passed
    /// since it arrived (at most [`NOW_AHEAD_US`]): right after `RESET`
    /// this is the fixture's time as the stations are commissioned, the
    /// run's time 0, as on the virtual bench.
    fn now_us(&self) -> u64 {
        let ahead = self.clock.ahead(self.timeouts.time_scale, NOW_AHEAD_US);
        self.now_us.max(ahead.unwrap_or(0))
    }

    fn command(&mut self, cmd: Command, sink: &mut dyn FnMut(Record)) -> Result<(), BenchError> {
        self.exchange(cmd, sink).map(drop)
    }

    /// Crash and reboot faults through the station's power control (the
    /// inventory's commands); every other fault needs the virtual bench.
    fn fault(&mut self, fault: &SimFault) -> Result<(), BenchError> {
        let (i, crash) = match fault {
            SimFault::Crash(i) => (*i, true),
            SimFault::Reboot(i) => (*i, false),
            other => return Err(BenchError::Unsupported(other.to_string())),
        };
        let unsupported = || BenchError::Unsupported(fault.to_string());
        let (power, off) = self.power.get_mut(i).ok_or_else(unsupported)?;
        let (what, command) = match (crash, *off) {
            (true, _) => ("power off", power.off.clone()),
            (false, true) => ("power on", power.on.clone()),
            (false, false) => match (&power.cycle, &power.off, &power.on) {
                (Some(c), _, _) => ("power cycle", Some(c.clone())),
                (None, Some(o), Some(_)) => ("power off", Some(o.clone())),
                _ => ("power cycle", None),
            },
        };
        let command = command.ok_or_else(unsupported)?;
        crate::provision::run_power(&format!("station #{i} {what}"), &command)
            .map_err(BenchError::Setup)?;
        *off = crash;
        // A reboot without a cycle command: off, then on.
        if !crash && what == "power off" {
            if let Some(on) = power.on.clone() {
                crate::provision::run_power(&format!("station #{i} power on"), &on)
                    .map_err(BenchError::Setup)?;
            }
        }
        Ok(())
    }

    /// Commission station `station` over its debug channel and wait for
    /// its answer (see [`Bench::commission_all`]).
    fn commission(
        &mut self,
        station: usize,
        message: &str,
        sink: &mut dyn FnMut(Record),
    ) -> Result<Option<Result<(), firmware::telemetry::Refusal>>, BenchError> {
        let mut padded = vec![String::new(); station];
        padded.push(message.to_string());
        let mut all = self.commission_from(station, &padded, sink)?;
        Ok(all.pop().flatten())
    }

    /// Send every station its message, then wait (within the
    /// acknowledgement timeout, plus a second for a board's flash write)
    /// for every answer, reading the fixture meanwhile.
    fn operator(
        &mut self,
        station: usize,
        line: &str,
        sink: &mut dyn FnMut(Record),
    ) -> Result<(), BenchError> {
        let Some(d) = self.debug.as_mut() else {
            return Err(BenchError::Lacks(format!(
                "the bench lists no station debug channels; station #{station}'s is needed for an operator's limit"
            )));
        };
        d.write(station, line)?;
        self.flush_relay(sink)
    }

    fn commission_all(
        &mut self,
        messages: &[String],
        sink: &mut dyn FnMut(Record),
    ) -> Result<Vec<Option<Result<(), firmware::telemetry::Refusal>>>, BenchError> {
        self.commission_from(0, messages, sink)
    }

    fn run_until(&mut self, t_us: u64, sink: &mut dyn FnMut(Record)) -> Result<(), BenchError> {
        // Already there (an action at the run's time 0).
        if t_us <= self.now_us() {
            self.now_us = self.now_us.max(t_us);
            return Ok(());
        }
        let start = Instant::now();
        self.last_line = start;
        self.garbled_since = 0;
        let from_us = self.now_us;
        let bound = self.timeouts.wait_bound(t_us.saturating_sub(from_us));
        let deadline = bound.and_then(|b| start.checked_add(b));
        // Fixture time and when it last moved.
        let mut moved = (self.now_us, start);
        let secs = |us: u64| us as f64 / 1e6;
        while self.now_us < t_us {
            let mut lines = Vec::new();
            self.pump(&mut lines)?;
            for r in std::mem::take(&mut self.pending) {
                sink(r);
            }
            for l in lines {
                self.event(l, sink);
            }
            // Between heartbeats (a fixture second apart) a running clock
            // is read from the wall clock, so an action is not late by up
            // to a second.
            if self
                .clock
                .estimate(self.timeouts.time_scale)
                .is_some_and(|est| est >= t_us)
            {
                self.now_us = self.now_us.max(t_us);
                break;
            }
            let now = Instant::now();
            if self.now_us > moved.0 {
                moved = (self.now_us, now);
            }
            if now.duration_since(self.last_line) > self.timeouts.silence {
                let garbled = match self.garbled_since {
                    0 => String::new(),
                    n => format!("; only {n} garbled lines meanwhile: is the baud rate right?"),
                };
                return Err(BenchError::Timeout {
                    what: format!(
                        "with any valid line (waiting for fixture time {:.3} s{garbled})",
                        secs(t_us)
                    ),
                    timeout_ms: self.timeouts.silence.as_millis() as u64,
                });
            }
            if now.duration_since(moved.1) > self.timeouts.progress {
                return Err(BenchError::Stalled {
                    what: format!(
                        "fixture time stayed at {:.3} s for {} ms of wall time while waiting for {:.3} s: is its clock frozen?",
                        secs(self.now_us),
                        self.timeouts.progress.as_millis(),
                        secs(t_us)
                    ),
                });
            }
            if deadline.is_some_and(|d| now > d) {
                return Err(BenchError::Stalled {
                    what: format!(
                        "fixture time went from {:.3} s only to {:.3} s of {:.3} s within {} ms of wall time (the bound at time scale {}): its clock runs slow",
                        secs(from_us),
                        secs(self.now_us),
                        secs(t_us),
                        bound.map_or(0, |b| b.as_millis()),
                        self.timeouts.time_scale
                    ),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// What a fake fixture answers to the command line `b`: a full HELLO
    /// answer (16 channels, every capability), otherwise nothing.
    fn answer_info(b: &[u8]) -> HString<{ protocol::MAX_INFO }> {
        let mut info = HString::new();
        if let Parsed::Line(
            _,
            Line::Command {
                cmd: Command::Hello { .. },
                ..
            },
        ) = protocol::parse_next(b)
        {
            FixtureInfo {
                proto: PROTOCOL_VERSION,
                fw: HString::try_from("fake").unwrap(),
                channels: 16,
                caps: protocol::Caps::ALL,
            }
            .emit(&mut info)
            .unwrap();
        }
        info
    }

    /// A link that never answers: reads time out, writes vanish.
    struct Silent;
    impl Read for Silent {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            std::thread::sleep(Duration::from_millis(5));
            Err(std::io::ErrorKind::TimedOut.into())
        }
    }
    impl Write for Silent {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_silent_fixture_is_a_timeout_not_a_hang() {
        let t = Timeouts {
            ack: Duration::from_millis(50),
            silence: Duration::from_millis(50),
            ..Timeouts::default()
        };
        let err = SerialBench::over("test".into(), Box::new(Silent), t)
            .err()
            .expect("timeout");
        assert!(matches!(err, BenchError::Timeout { .. }), "{err}");
        assert!(err.to_string().contains("did not answer"), "{err}");
    }

    /// A link to a scripted fixture: answers HELLO, then sends garbage and events.
    struct Scripted {
        out: Arc<Mutex<Vec<u8>>>,
    }
    impl Read for Scripted {
        fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
            let mut o = self.out.lock().unwrap();
            if o.is_empty() {
                return Err(std::io::ErrorKind::TimedOut.into());
            }
            let n = o.len().min(b.len());
            b[..n].copy_from_slice(&o[..n]);
            o.drain(..n);
            Ok(n)
        }
    }
    impl Write for Scripted {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let text = String::from_utf8_lossy(b).to_string();
            let seq: u32 = text.split(' ').nth(1).unwrap().parse().unwrap();
            let mut o = self.out.lock().unwrap();
            let mut l: HString<MAX_LINE> = HString::new();
            protocol::encode(
                &Line::Ok {
                    seq,
                    info: answer_info(b),
                },
                &mut l,
            )
            .unwrap();
            o.extend_from_slice(b"garbage without a checksum\n");
            o.extend_from_slice(l.as_bytes());
            protocol::encode(
                &Line::Event {
                    seq: 1,
                    t_us: 2_000_000,
                    event: rig::protocol::Event::Heartbeat,
                },
                &mut l,
            )
            .unwrap();
            o.extend_from_slice(l.as_bytes());
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn garbled_lines_are_reported_and_skipped() {
        let link = Scripted {
            out: Arc::new(Mutex::new(Vec::new())),
        };
        let mut b = SerialBench::over("test".into(), Box::new(link), Timeouts::default()).unwrap();
        let mut got = Vec::new();
        b.command(Command::Plug(0), &mut |r| got.push(r)).unwrap();
        b.run_until(1_000_000, &mut |r| got.push(r)).unwrap();
        assert!(
            got.iter().any(|r| matches!(r, Record::Garbled { .. })),
            "{got:?}"
        );
        assert!(got.iter().any(|r| matches!(
            r,
            Record::Event {
                t_us: 2_000_000,
                ..
            }
        )));
        assert!(b.fault(&SimFault::LinkDown).is_err());
    }

    /// Run `f` on its own thread and fail (instead of hanging the test run)
    /// if it has not returned within `limit`.
    fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(limit)
            .unwrap_or_else(|_| panic!("still waiting after {limit:?}: a hang"))
    }

    /// A fixture that answers every command, and between answers sends
    /// whatever `chatter` makes, forever (a line per read).
    struct Chatty {
        answers: Vec<u8>,
        chatter: fn(u64) -> Vec<u8>,
        reads: u64,
    }
    impl Chatty {
        fn new(chatter: fn(u64) -> Vec<u8>) -> Self {
            Self {
                answers: Vec::new(),
                chatter,
                reads: 0,
            }
        }
    }
    impl Read for Chatty {
        fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
            std::thread::sleep(Duration::from_millis(1));
            self.reads += 1;
            let mut out = std::mem::take(&mut self.answers);
            out.extend((self.chatter)(self.reads));
            let n = out.len().min(b.len());
            b[..n].copy_from_slice(&out[..n]);
            self.answers = out[n..].to_vec();
            Ok(n)
        }
    }
    impl Write for Chatty {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if let Parsed::Line(_, Line::Command { seq, .. }) = protocol::parse_next(b) {
                let mut l: HString<MAX_LINE> = HString::new();
                protocol::encode(
                    &Line::Ok {
                        seq,
                        info: answer_info(b),
                    },
                    &mut l,
                )
                .unwrap();
                self.answers.extend_from_slice(l.as_bytes());
            }
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A fixture that answers every command, then sends events 1, 2 and 5:
    /// events 3 and 4 were lost on the way.
    struct Gappy {
        out: Vec<u8>,
    }
    impl Read for Gappy {
        fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
            if self.out.is_empty() {
                return Err(std::io::ErrorKind::TimedOut.into());
            }
            let n = self.out.len().min(b.len());
            b[..n].copy_from_slice(&self.out[..n]);
            self.out.drain(..n);
            Ok(n)
        }
    }
    impl Write for Gappy {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let text = String::from_utf8_lossy(b).to_string();
            let seq: u32 = text.split(' ').nth(1).unwrap().parse().unwrap();
            let mut lines = vec![Line::Ok {
                seq,
                info: answer_info(b),
            }];
            if seq == 2 {
                for (seq, t_us) in [(1, 1_000_000), (2, 2_000_000), (5, 3_000_000)] {
                    lines.push(Line::Event {
                        seq,
                        t_us,
                        event: rig::protocol::Event::Heartbeat,
                    });
                }
            }
            for l in lines {
                let mut s: HString<MAX_LINE> = HString::new();
                protocol::encode(&l, &mut s).unwrap();
                self.out.extend_from_slice(s.as_bytes());
            }
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn heartbeat_at(t_us: u64) -> Vec<u8> {
        let mut l: HString<MAX_LINE> = HString::new();
        protocol::encode(
            &Line::Event {
                seq: 1,
                t_us,
                event: rig::protocol::Event::Heartbeat,
            },
            &mut l,
        )
        .unwrap();
        l.as_bytes().to_vec()
    }

    /// Garbled lines forever, and never a valid one (but the answers).
    fn babble(_: u64) -> Vec<u8> {
        b"~~ line noise at the wrong baud rate ~~\n".to_vec()
    }

    /// Valid heartbeats whose timestamp never moves.
    fn frozen_clock(_: u64) -> Vec<u8> {
        heartbeat_at(1_000_000)
    }

    /// Valid heartbeats whose timestamp creeps: a microsecond per line.
    fn slow_clock(reads: u64) -> Vec<u8> {
        heartbeat_at(1_000_000 + reads)
    }

    fn quick() -> Timeouts {
        Timeouts {
            ack: Duration::from_millis(200),
            silence: Duration::from_millis(100),
            progress: Duration::from_millis(100),
            ..Timeouts::default()
        }
    }

    #[test]
    fn a_babbling_fixture_is_a_timeout_not_a_hang() {
        let (err, garbled) = within(Duration::from_secs(30), || {
            let mut b = SerialBench::over("test".into(), Box::new(Chatty::new(babble)), quick())
                .expect("HELLO is answered");
            let mut garbled = 0;
            let err = b
                .run_until(5_000_000, &mut |r| {
                    garbled += usize::from(matches!(r, Record::Garbled { .. }));
                })
                .expect_err("no valid line: the wait ends");
            (err, garbled)
        });
        assert!(matches!(err, BenchError::Timeout { .. }), "{err}");
        assert!(err.to_string().contains("garbled"), "{err}");
        assert!(garbled > 0, "the garbled lines are still reported");
    }

    #[test]
    fn a_frozen_fixture_clock_is_a_stall_not_a_hang() {
        let err = within(Duration::from_secs(30), || {
            let mut b =
                SerialBench::over("test".into(), Box::new(Chatty::new(frozen_clock)), quick())
                    .expect("HELLO is answered");
            b.run_until(5_000_000, &mut |_| {})
                .expect_err("fixture time never moves: the wait ends")
        });
        assert!(matches!(err, BenchError::Stalled { .. }), "{err}");
        assert!(err.to_string().contains("stayed at 1.000 s"), "{err}");
    }

    #[test]
    fn a_slow_fixture_clock_ends_at_the_waits_bound() {
        let err = within(Duration::from_secs(30), || {
            let t = Timeouts {
                margin: Duration::from_millis(100),
                ..quick()
            };
            let mut b = SerialBench::over("test".into(), Box::new(Chatty::new(slow_clock)), t)
                .expect("HELLO is answered");
            b.run_until(1_200_000, &mut |_| {})
                .expect_err("fixture time creeps: the wait ends at its bound")
        });
        assert!(matches!(err, BenchError::Stalled { .. }), "{err}");
        assert!(err.to_string().contains("of 1.200 s"), "{err}");
    }

    /// The runner turns a stalled bench into a partial trace marked
    /// incomplete (the CLI's exit 3).
    #[test]
    fn a_stalled_serial_run_is_incomplete_with_a_partial_trace() {
        for chatter in [babble as fn(u64) -> Vec<u8>, frozen_clock] {
            let run = within(Duration::from_secs(30), move || {
                let sc = crate::scenario::tests::tiny();
                let mut b =
                    SerialBench::over("test".into(), Box::new(Chatty::new(chatter)), quick())
                        .expect("HELLO is answered");
                crate::runner::run(&sc, &mut b, 1)
            });
            assert_eq!(run.verdict, crate::runner::Verdict::Incomplete);
            let text = run.trace.canonical();
            assert!(
                text.lines()
                    .last()
                    .is_some_and(|l| l.starts_with("# INCOMPLETE")),
                "{text}"
            );
        }
    }

    /// Heartbeats stamped at the end of the fixture's clock.
    fn clock_at_its_end(_: u64) -> Vec<u8> {
        heartbeat_at(u64::MAX - 1)
    }

    /// Fixture time is received, not trusted: the runner's sums with it
    /// saturate instead of overflowing.
    #[test]
    fn a_fixture_clock_at_its_end_is_incomplete_not_a_panic() {
        let run = within(Duration::from_secs(30), || {
            let sc = crate::scenario::tests::tiny();
            let mut b = SerialBench::over(
                "test".into(),
                Box::new(Chatty::new(clock_at_its_end)),
                quick(),
            )
            .expect("HELLO is answered");
            crate::runner::run(&sc, &mut b, 1)
        });
        assert_eq!(run.verdict, crate::runner::Verdict::Incomplete);
    }

    #[test]
    fn a_gap_in_the_event_sequence_is_a_loss() {
        let link = Gappy { out: Vec::new() };
        let mut b = SerialBench::over("test".into(), Box::new(link), Timeouts::default()).unwrap();
        let mut got = Vec::new();
        b.command(Command::Plug(0), &mut |r| got.push(r)).unwrap();
        b.run_until(3_000_000, &mut |r| got.push(r)).unwrap();
        let losses: Vec<&Record> = got
            .iter()
            .filter(|r| matches!(r, Record::Loss { .. }))
            .collect();
        assert_eq!(
            losses,
            vec![&Record::Loss {
                t_us: 3_000_000,
                text: "2 fixture event(s) lost: sequence jumped from 2 to 5, before the event at t=3.000 s"
                    .into()
            }],
            "{got:?}"
        );
        // The loss comes before the event after the gap.
        let at = got.iter().position(|r| matches!(r, Record::Loss { .. }));
        assert!(matches!(
            got.get(at.unwrap() + 1),
            Some(Record::Event {
                t_us: 3_000_000,
                ..
            })
        ));
    }

    #[test]
    fn a_missing_port_is_a_clear_open_error() {
        let spec: BenchSpec = "serial:/dev/does-not-exist".parse().unwrap();
        let e = SerialBench::open(&spec, Timeouts::default()).err().unwrap();
        assert!(
            e.to_string()
                .starts_with("failed to open fixture port /dev/does-not-exist"),
            "{e}"
        );
    }

    /// A fixture that answers each command with `info(cmd)`.
    struct Answers {
        out: Vec<u8>,
        info: fn(&Command) -> &'static str,
    }
    impl Read for Answers {
        fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
            if self.out.is_empty() {
                return Err(std::io::ErrorKind::TimedOut.into());
            }
            let n = self.out.len().min(b.len());
            b[..n].copy_from_slice(&self.out[..n]);
            self.out.drain(..n);
            Ok(n)
        }
    }
    impl Write for Answers {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if let Parsed::Line(_, Line::Command { seq, cmd }) = protocol::parse_next(b) {
                let mut l: HString<MAX_LINE> = HString::new();
                let info = HString::try_from((self.info)(&cmd)).unwrap();
                protocol::encode(&Line::Ok { seq, info }, &mut l).unwrap();
                self.out.extend_from_slice(l.as_bytes());
            }
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn answering(info: fn(&Command) -> &'static str) -> Result<SerialBench, BenchError> {
        let t = Timeouts {
            ack: Duration::from_millis(200),
            ..Timeouts::default()
        };
        SerialBench::over(
            "test".into(),
            Box::new(Answers {
                out: Vec::new(),
                info,
            }),
            t,
        )
    }

    #[test]
    fn hello_tells_channels_version_and_capabilities() {
        let b = answering(|_| {
            "sharebench-fixture proto=1 fw=0.3.1 channels=4 caps=pwm,levels,relay,current,car"
        })
        .unwrap();
        let f = b.fixture().expect("HELLO answered");
        assert_eq!((f.channels, f.fw.as_str()), (4, "0.3.1"));
        assert!(!f.caps.has(protocol::Capability::Meter));
        // A fixture too old to announce them is a setup error saying so.
        let err = answering(|_| "sharebench-fixture proto=1 channels=16")
            .err()
            .expect("refused");
        assert!(matches!(err, BenchError::Setup(_)), "{err}");
        assert!(
            err.to_string().contains("HELLO answer \"sharebench-fixture proto=1 channels=16\" is not understood: expected fw="),
            "{err}"
        );
    }

    #[test]
    fn selftest_answers_are_read_and_checked() {
        let mut b = answering(|c| match c {
            Command::Hello { .. } => "sharebench-fixture proto=1 fw=1 channels=2 caps=selftest",
            Command::SelfTest(0) => "selftest ch=0 duty_err_ppm=120 window_err_ppm=300 freq_err_ppm=20 periods=1280 pass",
            _ => "selftest ch=1 duty_err_ppm=900 window_err_ppm=900 freq_err_ppm=20 periods=1280 pass",
        })
        .unwrap();
        let (ch, r) = b.self_test(0, &mut |_| {}).unwrap();
        assert_eq!((ch, r.duty_err_ppm, r.pass()), (0, 120, true));
        // A verdict that contradicts its figures is not believed.
        let err = b.self_test(1, &mut |_| {}).unwrap_err();
        assert!(
            err.to_string()
                .contains("expected a verdict that agrees with the figures"),
            "{err}"
        );
    }

    /// Crash and reboot faults on a lab bench are the inventory's power
    /// commands; a station without them cannot have them.
    #[test]
    fn power_faults_run_the_stations_power_commands() {
        let log = std::env::temp_dir().join(format!("sharebench-power-{}", std::process::id()));
        let cmd = |w: &str| Some(format!("echo {w} >> {}", log.display()));
        let mut b = answering(|_| "sharebench-fixture proto=1 fw=1 channels=2 caps=pwm")
            .unwrap()
            .with_power(vec![
                crate::provision::Power {
                    cycle: cmd("cycle-0"),
                    ..Default::default()
                },
                crate::provision::Power {
                    cycle: None,
                    off: cmd("off-1"),
                    on: cmd("on-1"),
                },
            ]);
        b.fault(&SimFault::Reboot(0)).unwrap();
        b.fault(&SimFault::Crash(1)).unwrap();
        b.fault(&SimFault::Reboot(1)).unwrap();
        b.fault(&SimFault::Reboot(1)).unwrap(); // running: off, then on
        let ran = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_file(&log);
        assert_eq!(ran, "cycle-0\noff-1\non-1\noff-1\non-1\n");
        for f in [SimFault::Crash(0), SimFault::Crash(5), SimFault::LinkDown] {
            assert!(
                matches!(b.fault(&f), Err(BenchError::Unsupported(_))),
                "{f}"
            );
        }
        // What the bench can run: station 0 reboots, only station 1 crashes.
        let sc = |extra: &str| {
            crate::scenario::Scenario::parse(
                std::path::Path::new("p.toml"),
                &format!("{}{extra}", crate::scenario::tests::TINY),
            )
            .unwrap()
        };
        let at = |what: &str, st: u8| {
            format!("[[at]]\ntime = \"50s\"\ndo = \"{what}\"\nstation = {st}\n")
        };
        assert!(b.makes_faults_of(&sc(&at("reboot", 0))));
        assert!(b.makes_faults_of(&sc(&(at("crash", 1) + &at("reboot", 1)))));
        assert!(!b.makes_faults_of(&sc(&at("crash", 0))));
        assert!(!b.makes_faults_of(&sc("[[at]]\ntime = \"50s\"\ndo = \"link-down\"\n")));
    }

    /// A fixture with 2 channels that relays its stations' debug channels:
    /// what the host sends with DEBUG is kept per channel; a station that
    /// got a whole commissioning message answers it, in two DEBUG events
    /// (the line split), stamped 4.5 s.
    struct Relaying {
        caps: &'static str,
        /// Refuse the first DEBUG command (`ERR busy`), as a board whose
        /// queue is full.
        busy_once: bool,
        /// Its event sequence.
        events: u32,
        out: Vec<u8>,
        got: Arc<Mutex<[Vec<u8>; 2]>>,
        /// The channel whose station refuses its plan (a bad key).
        refuses: Option<u8>,
    }
    impl Read for Relaying {
        fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
            if self.out.is_empty() {
                return Err(std::io::ErrorKind::TimedOut.into());
            }
            let n = self.out.len().min(b.len());
            b[..n].copy_from_slice(&self.out[..n]);
            self.out.drain(..n);
            Ok(n)
        }
    }
    impl Write for Relaying {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let Parsed::Line(_, Line::Command { seq, cmd }) = protocol::parse_next(b) else {
                return Ok(b.len());
            };
            let mut lines = Vec::new();
            let mut info = HString::new();
            match cmd {
                Command::Hello { .. } => {
                    info = HString::try_from(self.caps).unwrap();
                }
                Command::Debug(..) if std::mem::take(&mut self.busy_once) => {
                    let mut s: HString<MAX_LINE> = HString::new();
                    protocol::encode(
                        &Line::Err {
                            seq,
                            code: protocol::ErrorCode::Busy,
                            message: HString::try_from("queue full").unwrap(),
                        },
                        &mut s,
                    )
                    .unwrap();
                    self.out.extend_from_slice(s.as_bytes());
                    return Ok(b.len());
                }
                Command::Debug(ch, data) => {
                    let mut got = self.got.lock().unwrap();
                    let got = &mut got[usize::from(ch)];
                    got.extend_from_slice(data.as_bytes());
                    // A message ends with its END (these tests') or its
                    // `C end` line (a real one).
                    let last = got
                        .strip_suffix(b"\n")
                        .and_then(|g| g.rsplit(|&b| b == b'\n').next());
                    if got.ends_with(b"END\n") || last.is_some_and(|l| l.starts_with(b"C end ")) {
                        let answer = if self.refuses == Some(ch) {
                            firmware::telemetry::Telemetry::ConfigRefused(
                                firmware::telemetry::Refusal::BadMac,
                            )
                        } else {
                            firmware::telemetry::Telemetry::ConfigAccepted {
                                stations: 2,
                                nodes: 1,
                            }
                        }
                        .encode();
                        let (a, z) = answer.as_bytes().split_at(5);
                        for (n, part) in [a, z].into_iter().enumerate() {
                            let mut d = DebugBytes::new();
                            assert_eq!(d.fill(part), part.len());
                            self.events += 1;
                            lines.push(Line::Event {
                                seq: self.events,
                                t_us: 4_000_000 + 500_000 * n as u64,
                                event: Event::Debug { ch, data: d },
                            });
                        }
                    }
                }
                _ => {}
            }
            lines.insert(0, Line::Ok { seq, info });
            for l in lines {
                let mut s: HString<MAX_LINE> = HString::new();
                protocol::encode(&l, &mut s).unwrap();
                self.out.extend_from_slice(s.as_bytes());
            }
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What the fake fixture has been sent for channel `ch`'s station.
    fn got_on(got: &Arc<Mutex<[Vec<u8>; 2]>>, ch: usize) -> Vec<u8> {
        got.lock().unwrap()[ch].clone()
    }

    /// On a fixture by URL with `debug`, stations are commissioned through
    /// DEBUG commands (a long message split over several, arriving whole,
    /// a busy fixture waited out)
    /// and their lines reach the trace stamped with the fixture time of the
    /// event that completed them; without `debug` there is a note instead.
    #[test]
    fn a_fixture_with_debug_relays_commissioning_and_telemetry() {
        let got = Arc::new(Mutex::new([Vec::new(), Vec::new()]));
        let mut b = SerialBench::over(
            "test".into(),
            Box::new(Relaying {
                caps: "sharebench-fixture proto=1 fw=1 channels=2 caps=pwm,car,debug",
                busy_once: true,
                events: 0,
                out: Vec::new(),
                got: Arc::clone(&got),
                refuses: None,
            }),
            Timeouts::default(),
        )
        .unwrap()
        .with_relayed_debug();
        assert_eq!(b.telemetry_note(), None);
        let long = format!(
            "C begin 7 2 1*0000\n{}END\n",
            "C node 1 320 0*0000\n".repeat(20)
        );
        let messages = vec![long.clone(), "C begin 8 2 1*0000\nEND\n".to_string()];
        let mut records = Vec::new();
        let answers = b
            .commission_all(&messages, &mut |r| records.push(r))
            .unwrap();
        assert_eq!(answers, vec![Some(Ok(())), Some(Ok(()))]);
        let sent = got.lock().unwrap();
        assert_eq!(sent[0], long.as_bytes());
        assert_eq!(sent[1], messages[1].as_bytes());
        let mut said: Vec<_> = records
            .iter()
            .filter_map(|r| match r {
                Record::Telemetry {
                    t_us,
                    station,
                    text,
                } => Some((*t_us, *station, text.as_str())),
                _ => None,
            })
            .collect();
        // Both messages go out at once: the shorter one is answered first.
        said.sort_unstable();
        assert_eq!(
            said,
            vec![
                (4_500_000, 7, "configuration accepted (2 stations, 1 node)"),
                (4_500_000, 8, "configuration accepted (2 stations, 1 node)")
            ],
            "{records:?}"
        );
        assert!(
            !records.iter().any(|r| matches!(
                r,
                Record::Event {
                    event: Event::Debug { .. },
                    ..
                } | Record::Loss { .. }
            )),
            "relayed bytes are station lines, not fixture events: {records:?}"
        );
        // More stations than the fixture relays: refused, saying so.
        let three = vec![messages[1].clone(); 3];
        let e = b.commission_all(&three, &mut |_| {}).unwrap_err();
        assert!(
            e.to_string()
                .contains("it has 3 station(s); the fixture relays 2 station debug channel(s)"),
            "{e}"
        );
        // Fewer: the spare station is parked (a group of its own, sharing
        // off), and what it says is not the run's.
        drop(sent);
        let before = got_on(&got, 1).len();
        let mut records = Vec::new();
        let answers = b
            .commission_all(&three[..1], &mut |r| records.push(r))
            .unwrap();
        assert_eq!(answers, vec![Some(Ok(()))]);
        let key = crate::provision::bench_key().unwrap();
        assert_eq!(
            got_on(&got, 1).get(before..),
            Some(crate::provision::park_text(&key).as_bytes())
        );
        let speakers: Vec<u8> = records
            .iter()
            .filter_map(|r| match r {
                Record::Telemetry { station, .. } => Some(*station),
                _ => None,
            })
            .collect();
        assert_eq!(speakers, [8], "{records:?}");
        // A spare station that refuses its parked plan (another key) is an
        // error naming it: left on its last plan it would share the link.
        let mut b = SerialBench::over(
            "test".into(),
            Box::new(Relaying {
                caps: "sharebench-fixture proto=1 fw=1 channels=2 caps=pwm,car,debug",
                busy_once: false,
                events: 0,
                out: Vec::new(),
                got: Arc::new(Mutex::new([Vec::new(), Vec::new()])),
                refuses: Some(1),
            }),
            Timeouts::default(),
        )
        .unwrap()
        .with_relayed_debug();
        let e = b.commission_all(&three[..1], &mut |_| {}).unwrap_err();
        assert!(
            e.to_string().contains(
                "the spare station on fixture channel 1 refused the plan that leaves it out of the run (the commissioning message's MAC does not verify)"
            ),
            "{e}"
        );
        // An inventory listing one station wired: one channel, none parked.
        let b = SerialBench::over(
            "test".into(),
            Box::new(Relaying {
                caps: "sharebench-fixture proto=1 fw=1 channels=2 caps=pwm,car,debug",
                busy_once: false,
                events: 0,
                out: Vec::new(),
                got: Arc::new(Mutex::new([Vec::new(), Vec::new()])),
                refuses: Some(1),
            }),
            Timeouts::default(),
        )
        .unwrap()
        .with_relayed_debug_of(Some(1));
        assert_eq!(
            b.debug.as_ref().map(crate::debug::DebugChannels::len),
            Some(1)
        );
        // Without the capability: no relay, and the note says why.
        let b = SerialBench::over(
            "test".into(),
            Box::new(Relaying {
                caps: "sharebench-fixture proto=1 fw=1 channels=2 caps=pwm,car",
                busy_once: false,
                events: 0,
                out: Vec::new(),
                got: Arc::new(Mutex::new([Vec::new(), Vec::new()])),
                refuses: None,
            }),
            Timeouts::default(),
        )
        .unwrap()
        .with_relayed_debug();
        assert_eq!(
            b.telemetry_note(),
            Some("no station telemetry: goldens need a named bench or a fixture with `debug`")
        );
    }
}
