//! The virtual bench: a whole charging site in virtual time.
//!
//! Owns the models between the real cores: N station firmwares (the real
//! `firmware` crate: charge points, leader and followers), the real `rig`
//! fixture, and the electrics and wires between them: the pilot line (the
//! station's source and the car's resistors give the levels both the
//! station's ADC and the fixture see), contactor mechanics (close and open
//! times, welding), current sensors with noise and offset, the RS-485
//! sharing bus (bit rate, latency, loss, one-way loss, partitions,
//! corruption, crashes and reboots) and the Modbus line from the leader to
//! the fixture's meter.
//!
//! It is a discrete-event simulation: a queue of wake-ups ordered by time
//! and insertion, jumping from one to the next, never ticking. The same seed
//! gives the same run, byte for byte. The harness reaches it only through
//! fixture protocol lines ([`Bench`]) and the stations' telemetry.
//!
//! A station is a [`Unit`]: the firmware in-process on host pins (the
//! virtual bench, `--bench sim`), or the station image in QEMU behind its
//! UARTs ([`crate::qemu`], `--bench qemu`, built with
//! [`VirtualBench::qemu`]). With QEMU stations the same models run in real
//! time: the queue is worked off as the wall clock reaches each wake-up, and
//! the stations' pins, telemetry, frames and meter requests are read as they
//! arrive, stamped with the bench's time then.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};

use firmware::charge_point::PilotOutput;
use firmware::pilot::PilotLevels;
use firmware::sharing::config::GroupConfig;
use firmware::sharing::frame::Key;
use firmware::sharing::frame::MAX_FRAME;
use firmware::station::Station as Firmware;
use firmware::telemetry::{Refusal, Telemetry};
use firmware::time::us;
use heapless::String as HString;
use rig::fixture::{Fixture, FixtureConfig};
use rig::pilot::Source;
use rig::protocol::{self, Caps, Command, FixtureInfo, Line, Parsed, MAX_LINE};
use rig::rng::SplitMix64;
use rig::selftest::SelfTestReport;

use crate::bench::{Bench, BenchError, EventSeq, Record, SimFault};
use crate::qemu::{QemuOptions, Remote};
use crate::scenario::Scenario;

/// Most stations (and fixture channels) in one virtual site.
pub const MAX_STATIONS: usize = 256;

/// Server mode: the most a host's unfinished commissioning message is kept
/// (a plan for 256 stations is well under it).
const MAX_SERVED_MESSAGE: usize = 256 * 1_024;

/// Server mode: what a host's power control does to a station.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServedPower {
    Off,
    On,
    Cycle,
}

/// The station board's pins in the virtual bench: the firmware drives them
/// through embedded-hal 1.0 and its own ADC and sensor traits, exactly as on
/// a board, and the models read and write the other side.
mod board {
    use core::convert::Infallible;

    use embedded_hal::digital::{ErrorType as DigitalErrorType, InputPin, OutputPin};
    use embedded_hal::pwm::{ErrorType as PwmErrorType, SetDutyCycle};
    use firmware::hal::{CurrentSensor, PilotAdc};
    use firmware::pilot::PilotLevels;

    /// The pilot PWM: 10,000 steps (0.01 %); fully on is steady +12 V,
    /// fully off is -12 V.
    #[derive(Debug)]
    pub struct Pwm {
        pub duty: u16,
    }
    impl PwmErrorType for Pwm {
        type Error = Infallible;
    }
    impl SetDutyCycle for Pwm {
        fn max_duty_cycle(&self) -> u16 {
            10_000
        }
        fn set_duty_cycle(&mut self, duty: u16) -> Result<(), Infallible> {
            self.duty = duty;
            Ok(())
        }
    }

    /// The contactor coil.
    #[derive(Debug, Default)]
    pub struct Coil {
        pub on: bool,
    }
    impl DigitalErrorType for Coil {
        type Error = Infallible;
    }
    impl OutputPin for Coil {
        fn set_low(&mut self) -> Result<(), Infallible> {
            self.on = false;
            Ok(())
        }
        fn set_high(&mut self) -> Result<(), Infallible> {
            self.on = true;
            Ok(())
        }
    }

    /// The contactor's auxiliary contact.
    #[derive(Debug, Default)]
    pub struct Sense {
        pub closed: bool,
    }
    impl DigitalErrorType for Sense {
        type Error = Infallible;
    }
    impl InputPin for Sense {
        fn is_high(&mut self) -> Result<bool, Infallible> {
            Ok(self.closed)
        }
        fn is_low(&mut self) -> Result<bool, Infallible> {
            Ok(!self.closed)
        }
    }

    /// The pilot plateaus the station's ADC samples.
    #[derive(Debug)]
    pub struct Adc {
        pub levels: PilotLevels,
    }
    impl PilotAdc for Adc {
        type Error = Infallible;
        fn sample_pilot(&mut self) -> Result<PilotLevels, Infallible> {
            Ok(self.levels)
        }
    }

    /// The station's current sensor.
    #[derive(Debug, Default)]
    pub struct Amps {
        pub da: [u16; 3],
    }
    impl CurrentSensor for Amps {
        type Error = Infallible;
        fn read_current(&mut self) -> Result<[u16; 3], Infallible> {
            Ok(self.da)
        }
    }

    pub type Board = firmware::hal::Board<Pwm, Coil, Sense, Adc, Amps>;
}

/// A station's firmware: in this process on host pins, or the station
/// image in QEMU behind its UARTs. Everything the models do to a station
/// goes through here, so both are driven by the same models.
enum Unit {
    Local(Box<board::Board>),
    Remote(Box<Remote>),
}

impl Unit {
    fn set_pilot(&mut self, levels: PilotLevels) {
        match self {
            Self::Local(b) => b.inputs_mut().0.levels = levels,
            Self::Remote(r) => r.set_pilot(levels),
        }
    }

    fn set_amps(&mut self, da: [u16; 3]) {
        match self {
            Self::Local(b) => b.inputs_mut().1.da = da,
            Self::Remote(r) => r.set_amps(da),
        }
    }

    fn set_relay(&mut self, closed: bool) {
        match self {
            Self::Local(b) => {
                if let Some(sense) = b.inputs_mut().2 {
                    sense.closed = closed;
                }
            }
            Self::Remote(r) => r.set_relay(closed),
        }
    }

    fn debug_rx(&mut self, now: u64, bytes: &[u8]) {
        match self {
            Self::Local(b) => b.station.handle_debug_rx(us(now), bytes),
            Self::Remote(r) => r.debug_rx(bytes),
        }
    }

    fn link_rx(&mut self, now: u64, bytes: &[u8]) {
        match self {
            Self::Local(b) => b.station.handle_link_rx(us(now), bytes),
            Self::Remote(r) => r.link_rx(bytes),
        }
    }

    fn meter_rx(&mut self, now: u64, bytes: &[u8]) {
        match self {
            Self::Local(b) => b.station.handle_meter_rx(us(now), bytes),
            Self::Remote(r) => r.meter_rx(bytes),
        }
    }

    /// Local: the board samples its inputs and runs the station's timers.
    /// Remote: read what the image sent (it runs on its own clock).
    fn step(&mut self, now: u64) {
        match self {
            Self::Local(b) => {
                let _ = b.step(us(now));
            }
            Self::Remote(r) => r.poll(),
        }
    }

    /// Telemetry lines the station printed, as they are on the wire.
    fn telemetry(&mut self) -> Vec<String> {
        match self {
            Self::Local(b) => {
                let mut v = Vec::new();
                while let Some(t) = b.station.poll_telemetry() {
                    v.push(t.encode().as_str().to_string());
                }
                v
            }
            Self::Remote(r) => r.take_telemetry(),
        }
    }

    /// The pins' states (duty steps, coil) since `seen`, oldest first.
    fn pin_states(&mut self, seen: (u16, bool)) -> Vec<(u16, bool)> {
        match self {
            Self::Local(b) => {
                let _ = b.apply();
                vec![(b.pwm().duty, b.coil().on)]
            }
            Self::Remote(r) => {
                let mut state = seen;
                let mut v = Vec::new();
                for o in r.take_pins() {
                    match o {
                        firmware::station::Output::Pilot(p) => {
                            state.0 = match p {
                                PilotOutput::Steady => 10_000,
                                PilotOutput::MinusTwelve => 0,
                                PilotOutput::Pwm { duty_bp } => duty_bp,
                            };
                        }
                        firmware::station::Output::Contactor(on) => state.1 = on,
                    }
                    v.push(state);
                }
                v
            }
        }
    }

    /// Link frames and a meter request the station sent.
    fn transmit(&mut self) -> (Vec<Vec<u8>>, Option<Vec<u8>>) {
        match self {
            Self::Local(b) => {
                let mut frames = Vec::new();
                let mut buf = [0u8; MAX_FRAME];
                while let Some(n) = b.station.poll_transmit(&mut buf) {
                    frames.push(buf[..n].to_vec());
                }
                (frames, b.station.poll_meter_transmit().map(|r| r.to_vec()))
            }
            Self::Remote(r) => {
                let meter = r.take_meter();
                (r.take_frames(), (!meter.is_empty()).then_some(meter))
            }
        }
    }

    /// When a local station must run next; a remote one runs on its own.
    fn poll_timeout(&self) -> Option<u64> {
        match self {
            Self::Local(b) => b.station.poll_timeout().map(|t| t.ticks()),
            Self::Remote(_) => None,
        }
    }

    fn failed(&self) -> Option<&str> {
        match self {
            Self::Local(_) => None,
            Self::Remote(r) => r.failed(),
        }
    }
}

/// The QEMU bench's real-time clock and how it starts images.
struct RealTime {
    opts: QemuOptions,
    /// Bench time zero.
    epoch: std::time::Instant,
}

/// How long the QEMU bench gives the images to read their plans (all but
/// the last byte) before it completes them all at once.
const STAGE_WAIT: std::time::Duration = std::time::Duration::from_millis(1_000);

/// How long a QEMU station may take to answer its commissioning.
const COMMISSION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

struct Station {
    id: u8,
    /// The firmware on its board: `firmware::station` behind embedded-hal
    /// pins, or the image in QEMU; `None` while unpowered (crashed) until
    /// rebooted.
    board: Option<Unit>,
    /// QEMU bench: an image started when the station lost power, booted
    /// and waiting, so that powering it on takes no QEMU start-up time.
    spare: Option<Box<Remote>>,
    /// What the pins showed last (duty steps, coil), to see what changed.
    pins_seen: (u16, bool),
    /// The accepted commissioning message, kept across reboots (the
    /// board's flash page).
    flash: Option<String>,
    /// The station's last answer to a commissioning message, as it
    /// reported it on its debug channel.
    answer: Option<Result<(), Refusal>>,
    boots: u32,
    coil: bool,
    relay_closed: bool,
    welded: bool,
    source: Source,
    duty_bp: Option<u16>,
    /// A PWM started at this time with this duty, and how many of its
    /// periods capture was fed so far.
    pwm_feed: Option<(u64, u16, u64)>,
    levels: Option<(i32, i32)>,
    draw: [u16; 3],
    sensor: SplitMix64,
    scheduled: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Wake {
    Station(usize),
    Channel(usize),
    Heartbeat,
    Frame(u64),
    Contactor(usize),
    PwmFeed(usize),
    MeterRequest(u64),
    MeterReply(u64),
}

struct Frame {
    from: usize,
    bytes: Vec<u8>,
}

#[derive(Default)]
struct Link {
    free_at: u64,
    down: bool,
    cut: BTreeSet<(usize, usize)>,
    group_of: Option<Vec<usize>>,
    loss_ppm: u32,
    corrupt_ppm: u32,
    last_genuine: Option<(usize, Vec<u8>)>,
}

/// The virtual bench. See the module documentation.
pub struct VirtualBench {
    sc: Scenario,
    cfg: GroupConfig,
    /// The bench commissioning key the stations check their plans with.
    key: Key,
    now: u64,
    queue: BinaryHeap<Reverse<(u64, u64, Wake)>>,
    order: u64,
    rng: SplitMix64,
    seed: u64,
    stations: Vec<Station>,
    channel_scheduled: Vec<Option<u64>>,
    fixture: Box<Fixture<MAX_STATIONS>>,
    link: Link,
    frames: BTreeMap<u64, Frame>,
    meter_msgs: BTreeMap<u64, Vec<u8>>,
    meter_free_at: u64,
    next_id: u64,
    host_seq: u32,
    records: VecDeque<Record>,
    /// The fixture's event sequence, as the harness reads it.
    event_seq: EventSeq,
    steps: u64,
    /// The instant being processed and how many steps it took so far.
    stuck_at: (u64, u64),
    /// The `OK` info of the last command answered, and what HELLO said.
    last_info: String,
    info: Option<FixtureInfo>,
    /// Set when the stations are QEMU images (real time).
    realtime: Option<RealTime>,
    /// Server mode (`virtual-fixture --pty`): each station's debug channel
    /// as the lines it printed, for its own pty; `None` in a run.
    debug_out: Option<Vec<Vec<String>>>,
    /// Server mode: what the host wrote to each station's debug channel
    /// since its last answer (a commissioning message arrives in pieces);
    /// an accepted one becomes the station's flash and id.
    debug_in: Vec<String>,
}

/// Periods of a new PWM fed to the fixture's capture (then it holds): the
/// capture's 32-period average must fill with the new duty, and a 0.1 A
/// step above 51 A (0.04 %) must then hold a whole window to be reported.
const PWM_FEED_PERIODS: u64 = 96;
/// Periods fed at once when a PWM starts (a new duty is reported after 8,
/// and the car hears it when they are fed); the rest follow in one go.
const PWM_FIRST_FEED_PERIODS: u64 = 32;

/// More wake-ups than this at one instant means a model is stuck.
const MAX_STEPS_AT_ONE_INSTANT: u64 = 200_000;

fn boot_id(seed: u64, station: usize, boots: u32) -> u32 {
    let mut r = SplitMix64::new(
        seed ^ ((station as u64) << 32) ^ u64::from(boots).wrapping_mul(0xA24B_AED4_963E_E407),
    );
    (r.next_u64() >> 32) as u32
}

impl VirtualBench {
    /// A site for `sc`, seeded with `seed`.
    pub fn new(sc: &Scenario, seed: u64) -> Result<Self, BenchError> {
        Self::build(sc, seed, None)
    }

    /// A site for `sc` whose stations are the station image in QEMU, one
    /// `qemu-system-arm` each, run against the same models in real time.
    pub fn qemu(sc: &Scenario, seed: u64, opts: QemuOptions) -> Result<Self, BenchError> {
        Self::build(sc, seed, Some(opts))
    }

    fn build(sc: &Scenario, seed: u64, qemu: Option<QemuOptions>) -> Result<Self, BenchError> {
        if sc.stations.len() > MAX_STATIONS {
            return Err(BenchError::Setup(format!(
                "{} stations; the virtual bench holds {MAX_STATIONS}",
                sc.stations.len()
            )));
        }
        let cfg = sc.group_config();
        let key = crate::provision::bench_key().map_err(BenchError::Setup)?;
        let capture = rig::capture::CaptureConfig {
            pwm_timeout: None,
            ..rig::capture::CaptureConfig::default()
        };
        let fixture = Box::new(Fixture::new(
            FixtureConfig {
                channels: sc.stations.len() as u16,
                capture,
                seed,
                ..FixtureConfig::default()
            },
            us(0),
        ));
        let mut vb = Self {
            sc: sc.clone(),
            cfg,
            key,
            now: 0,
            queue: BinaryHeap::new(),
            order: 0,
            rng: SplitMix64::new(seed ^ 0x5EED),
            seed,
            stations: Vec::new(),
            channel_scheduled: vec![None; sc.stations.len()],
            fixture,
            link: Link::default(),
            frames: BTreeMap::new(),
            meter_msgs: BTreeMap::new(),
            meter_free_at: 0,
            next_id: 0,
            host_seq: 0,
            records: VecDeque::new(),
            event_seq: EventSeq::default(),
            steps: 0,
            stuck_at: (u64::MAX, 0),
            last_info: String::new(),
            info: None,
            realtime: qemu.map(|opts| RealTime {
                opts,
                epoch: std::time::Instant::now(),
            }),
            debug_out: None,
            debug_in: Vec::new(),
        };
        for i in 0..sc.stations.len() {
            let st = vb.boot_station(i, 0)?;
            vb.stations.push(st);
        }
        // QEMU: time starts once every image is up.
        if vb.realtime.is_some() {
            loop {
                let mut ready = true;
                for st in &mut vb.stations {
                    if let Some(Unit::Remote(r)) = st.board.as_mut() {
                        r.poll();
                        if let Some(why) = r.failed() {
                            return Err(BenchError::Setup(why.to_string()));
                        }
                        ready &= r.ready();
                    }
                }
                if ready {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            if let Some(rt) = vb.realtime.as_mut() {
                rt.epoch = std::time::Instant::now();
            }
        }
        let hb = vb.fixture.heartbeat_timeout().ticks();
        vb.schedule(hb, Wake::Heartbeat);
        for i in 0..vb.stations.len() {
            vb.apply_pilot(i);
            vb.drive(i);
        }
        // The harness meets the fixture as it meets a real one.
        let mut early = Vec::new();
        vb.command(
            Command::Hello {
                version: protocol::PROTOCOL_VERSION,
            },
            &mut |r| early.push(r),
        )?;
        // What the fixture said before its host's HELLO (its power-on
        // events) is not the run's: RESET reports where each channel
        // stands, as a real fixture's does.
        drop(early);
        vb.info = Some(FixtureInfo::parse(&vb.last_info).map_err(|what| {
            BenchError::Setup(format!("the virtual fixture's HELLO answer lacks {what}"))
        })?);
        Ok(vb)
    }

    fn boot_station(&self, i: usize, boots: u32) -> Result<Station, BenchError> {
        let s = &self.sc.stations[i];
        let boot = boot_id(self.seed, i, boots);
        // The board boots waiting for its site plan (from flash, or from
        // the harness on its debug channel).
        let unit = if let Some(rt) = &self.realtime {
            Unit::Remote(Box::new(Remote::spawn(&rt.opts, &format!("st{}", s.id))?))
        } else {
            Unit::Local(Box::new(self.local_board(i, boot)?))
        };
        Ok(self.fresh_station(i, unit, boots))
    }

    fn local_board(&self, i: usize, boot: u32) -> Result<board::Board, BenchError> {
        let s = &self.sc.stations[i];
        let firmware = Firmware::awaiting(self.key, boot);
        // Pins come up in the safe state (+12 V steady, coil released).
        board::Board::new(
            firmware,
            board::Pwm { duty: 10_000 },
            board::Coil::default(),
            Some(board::Sense::default()),
            board::Adc {
                levels: PilotLevels {
                    high_mv: 12_000,
                    low_mv: 12_000,
                },
            },
            board::Amps::default(),
        )
        .map_err(|e| BenchError::Setup(format!("station {}: {e}", s.id)))
    }

    fn fresh_station(&self, i: usize, unit: Unit, boots: u32) -> Station {
        Station {
            id: self.sc.stations[i].id,
            board: Some(unit),
            spare: None,
            pins_seen: (10_000, false),
            flash: None,
            answer: None,
            boots,
            coil: false,
            relay_closed: false,
            welded: false,
            source: Source::Plus12,
            duty_bp: None,
            pwm_feed: None,
            levels: None,
            draw: [0; 3],
            sensor: SplitMix64::new(self.seed ^ 0xC0FF_EE00 ^ i as u64),
            scheduled: None,
        }
    }

    /// Commission every station with the scenario's plan, as a lab's
    /// stations were before the fixture is served (`virtual-fixture`).
    pub fn commission_all(&mut self) -> Result<(), BenchError> {
        let sc = self.sc.clone();
        for (i, st) in sc.stations.iter().enumerate() {
            let message = crate::provision::commission_text(&sc, i, &self.key);
            if let Some(Err(reason)) = self.commission(i, &message, &mut |_| {})? {
                return Err(BenchError::ConfigRefused {
                    station: st.id,
                    line: st.line,
                    reason,
                });
            }
        }
        Ok(())
    }

    fn schedule(&mut self, t: u64, w: Wake) {
        self.order += 1;
        self.queue.push(Reverse((t.max(self.now), self.order, w)));
    }

    /// Read station `i`'s debug channel: telemetry lines as a real bench
    /// receives them (encoded by the station, parsed here), never its state.
    fn read_debug_channel(&mut self, i: usize) {
        let station = self.stations[i].id;
        let Some(b) = self.stations[i].board.as_mut() else {
            return;
        };
        let mut answer = None;
        for line in b.telemetry() {
            if let Some(out) = self.debug_out.as_mut().and_then(|o| o.get_mut(i)) {
                out.push(line.clone());
                // Served: the fixture is wired to the station's debug
                // channel too, and relays it (`debug` capability).
                self.fixture
                    .handle_debug_rx(us(self.now), i, line.as_bytes());
            }
            let (seen, records) = crate::bench::station_line(self.now, station, &line);
            match seen {
                Some(Telemetry::ConfigAccepted { .. }) => answer = Some(Ok(())),
                Some(Telemetry::ConfigRefused(r)) => answer = Some(Err(r)),
                _ => {}
            }
            self.records.extend(records);
        }
        if answer.is_some() {
            self.stations[i].answer = answer;
        }
    }

    /// Recompute the pilot levels of channel `i`: the station's ADC input
    /// (sampled at its next step) and the fixture's capture.
    fn apply_pilot(&mut self, i: usize) {
        let load = self.fixture.car_load(i);
        let source = self.stations[i].source;
        let (hi, lo) = rig::pilot::levels(source, &load);
        let now = us(self.now);
        if hi == lo && self.stations[i].pwm_feed.is_some() {
            // A pilot with no swing (shorted) carries no PWM edges: what ran
            // before is captured, nothing after (a station may still turn
            // PWM on; no fixture can see it on a shorted line).
            self.flush_pwm(i, self.now);
        }
        if let Some(b) = self.stations[i].board.as_mut() {
            b.set_pilot(PilotLevels {
                high_mv: hi,
                low_mv: lo,
            });
        }
        if self.stations[i].levels != Some((hi, lo)) {
            self.stations[i].levels = Some((hi, lo));
            self.fixture.handle_levels(now, i, hi, lo);
        }
        // Whatever the fixture learned may have moved the car's timers.
        self.reschedule_channel(i);
    }

    /// Feed the fixture's capture the edges of the PWM that started at `t0`,
    /// up to `until` (at most [`PWM_FEED_PERIODS`] periods), through its
    /// timer path, with the station's edges dithered against the fixture's
    /// 1 MHz timer, and stop feeding it. Edges are fed only once they have
    /// happened, so a PWM cut short is captured as exactly as long as it ran.
    fn flush_pwm(&mut self, i: usize, until: u64) {
        self.feed_pwm(i, until);
        self.stations[i].pwm_feed = None;
    }

    /// Feed the PWM's periods from those fed so far up to `until`; whether
    /// all [`PWM_FEED_PERIODS`] are fed.
    fn feed_pwm(&mut self, i: usize, until: u64) -> bool {
        let Some((t0, duty_bp, fed)) = self.stations[i].pwm_feed else {
            return true;
        };
        let now = us(self.now);
        let periods = (until.saturating_sub(t0) / 1_000).min(PWM_FEED_PERIODS);
        let start_t10 = t0 * 10;
        for k in fed..periods {
            // Phase of the station's clock against the fixture's timer, in
            // tenths of a microsecond (a golden-ratio sequence). A feed that
            // goes on starts from the rising edge that closed the last one.
            let phase = if k == fed && fed > 0 {
                0
            } else {
                (k * 6_180) % 10_000 / 1_000
            };
            let rise = start_t10 + k * 10_000 + phase;
            let fall = rise + u64::from(duty_bp);
            if k > fed || fed == 0 {
                self.fixture.handle_edge(now, i, rise / 10, true);
            }
            self.fixture.handle_edge(now, i, fall / 10, false);
        }
        if periods > fed {
            self.fixture
                .handle_edge(now, i, (start_t10 + periods * 10_000) / 10, true);
        }
        self.stations[i].pwm_feed = Some((t0, duty_bp, periods.max(fed)));
        periods >= PWM_FEED_PERIODS
    }

    fn set_output(&mut self, i: usize, out: PilotOutput) {
        let (source, duty) = match out {
            PilotOutput::Steady => (Source::Plus12, None),
            PilotOutput::Pwm { duty_bp } => (Source::Pwm, Some(duty_bp)),
            PilotOutput::MinusTwelve => (Source::Minus12, None),
        };
        self.flush_pwm(i, self.now);
        self.stations[i].source = source;
        let changed = self.stations[i].duty_bp != duty;
        self.stations[i].duty_bp = duty;
        if let (true, Some(d)) = (changed, duty) {
            self.stations[i].pwm_feed = Some((self.now, d, 0));
            self.schedule(self.now + PWM_FIRST_FEED_PERIODS * 1_000, Wake::PwmFeed(i));
            self.schedule(self.now + PWM_FEED_PERIODS * 1_000, Wake::PwmFeed(i));
        }
        self.apply_pilot(i);
    }

    fn set_coil(&mut self, i: usize, on: bool) {
        if self.stations[i].coil == on {
            return;
        }
        self.stations[i].coil = on;
        let b = &self.sc.bench;
        let t = self.now
            + if on {
                b.contactor_close_us
            } else {
                b.contactor_open_us
            };
        self.schedule(t, Wake::Contactor(i));
    }

    fn contactor_settles(&mut self, i: usize) {
        let st = &mut self.stations[i];
        let target = st.coil || (st.welded && st.relay_closed);
        if target == st.relay_closed {
            return;
        }
        st.relay_closed = target;
        let now = us(self.now);
        self.fixture.handle_relay(now, i, target);
        if let Some(b) = self.stations[i].board.as_mut() {
            b.set_relay(target);
        }
        self.sync_channel(i);
        self.drive(i);
    }

    /// The car's draw into both current sensors, and its pilot load.
    fn sync_channel(&mut self, i: usize) {
        self.apply_pilot(i);
        let flowing = self.stations[i].relay_closed;
        let draw = if flowing {
            self.fixture.car_draw_da(i)
        } else {
            [0; 3]
        };
        if draw != self.stations[i].draw {
            self.stations[i].draw = draw;
            let now = us(self.now);
            self.fixture.handle_current(now, i, draw);
            let noise = self.sc.bench.current_noise_da;
            let offset = self.sc.bench.current_offset_da;
            let st = &mut self.stations[i];
            let mut measured = [0u16; 3];
            for k in 0..3 {
                let n = if noise > 0 {
                    st.sensor.below(u64::from(noise) * 2 + 1) as i32 - i32::from(noise)
                } else {
                    0
                };
                let v = if draw[k] == 0 {
                    0
                } else {
                    i32::from(draw[k]) + n + i32::from(offset)
                };
                measured[k] = u16::try_from(v.max(0)).unwrap_or(0);
            }
            if let Some(b) = st.board.as_mut() {
                b.set_amps(measured);
            }
        }
        self.reschedule_channel(i);
    }

    fn reschedule_channel(&mut self, i: usize) {
        let next = self.fixture.channel_timeout(i).map(|t| t.ticks());
        if next.is_some() && next != self.channel_scheduled[i] {
            self.channel_scheduled[i] = next;
            if let Some(t) = next {
                self.schedule(t, Wake::Channel(i));
            }
        }
    }

    /// Run station `i`'s board: it samples its inputs and runs
    /// `firmware::station` (timers, sharing, the charge point), the models
    /// follow its pins, and what it sends goes on the link and meter line.
    fn drive(&mut self, i: usize) {
        if self.stations[i].board.is_none() {
            return;
        }
        // The models follow the pins before every sample, so the board's
        // ADC reads what it drives (a real board samples in sync with its
        // PWM); it samples again whenever its pins moved, until they rest.
        self.follow_pins(i);
        for _round in 0..8 {
            let Some(b) = self.stations[i].board.as_mut() else {
                return;
            };
            b.step(self.now);
            self.read_debug_channel(i);
            if !self.follow_pins(i) {
                break;
            }
        }
        let Some(b) = self.stations[i].board.as_mut() else {
            return;
        };
        let (frames, meter_tx) = b.transmit();
        for f in frames {
            self.send_frame(i, f);
        }
        if let Some(req) = meter_tx {
            let at =
                self.meter_free_at.max(self.now) + bytes_time(req.len(), self.sc.bench.meter_baud);
            self.meter_free_at = at;
            self.next_id += 1;
            self.meter_msgs.insert(self.next_id, req);
            self.schedule(at, Wake::MeterRequest(self.next_id));
        }
        self.reschedule_station(i);
    }

    /// Apply the station's pending outputs to its pins and the pins to the
    /// models; whether anything moved.
    fn follow_pins(&mut self, i: usize) -> bool {
        let seen = self.stations[i].pins_seen;
        let Some(b) = self.stations[i].board.as_mut() else {
            return false;
        };
        let mut moved = false;
        for pins in b.pin_states(seen) {
            let seen = self.stations[i].pins_seen;
            if pins == seen {
                continue;
            }
            moved = true;
            self.stations[i].pins_seen = pins;
            if pins.0 != seen.0 {
                let out = match pins.0 {
                    10_000 => PilotOutput::Steady,
                    0 => PilotOutput::MinusTwelve,
                    d => PilotOutput::Pwm { duty_bp: d },
                };
                self.set_output(i, out);
            }
            if pins.1 != seen.1 {
                self.set_coil(i, pins.1);
            }
        }
        // A QEMU station waits for the pilot answer even when its new
        // output changed nothing here (docs/wire-bridge.md).
        if let Some(Unit::Remote(r)) = self.stations[i].board.as_ref() {
            if r.pilot_answer_due() {
                self.apply_pilot(i);
            }
        }
        moved
    }

    fn reschedule_station(&mut self, i: usize) {
        let st = &self.stations[i];
        let Some(b) = st.board.as_ref() else { return };
        let next = b.poll_timeout().map(|t| t.max(self.now));
        if next.is_some() && next != st.scheduled {
            self.stations[i].scheduled = next;
            if let Some(t) = next {
                self.schedule(t, Wake::Station(i));
            }
        }
    }

    fn send_frame(&mut self, from: usize, bytes: Vec<u8>) {
        let start = self.link.free_at.max(self.now);
        let end = start + bytes_time(bytes.len(), self.sc.bench.link_baud);
        self.link.free_at = end;
        self.next_id += 1;
        let id = self.next_id;
        if from == self.leader_index() && bytes.get(5).is_some_and(|&d| d != self.stations[from].id)
        {
            self.link.last_genuine = Some((from, bytes.clone()));
        }
        self.frames.insert(id, Frame { from, bytes });
        // A QEMU image's UART takes its bytes one at a time (QEMU hands over
        // the next when the image has read one), which takes about as long
        // as the line's byte time: the frame goes to it when it starts, not
        // when its bytes would have ended, so the transfer is not counted
        // twice. The bus is busy as long as either way.
        let arrives = if self.realtime.is_some() { start } else { end };
        self.schedule(arrives + self.sc.bench.link_latency_us, Wake::Frame(id));
    }

    fn leader_index(&self) -> usize {
        self.sc.stations.iter().position(|s| s.leader).unwrap_or(0)
    }

    fn deliver_frame(&mut self, id: u64) {
        let Some(mut f) = self.frames.remove(&id) else {
            return;
        };
        let dest = f.bytes.get(5).copied();
        let Some(to) = dest.and_then(|d| self.stations.iter().position(|s| s.id == d)) else {
            return;
        };
        if to == f.from || self.link.down || self.link.cut.contains(&(f.from, to)) {
            return;
        }
        if let Some(g) = &self.link.group_of {
            if f.from < g.len() && to < g.len() && g[f.from] != g[to] {
                return;
            }
        }
        if self.link.loss_ppm > 0 && self.rng.chance_ppm(self.link.loss_ppm) {
            return;
        }
        if self.link.corrupt_ppm > 0
            && self.rng.chance_ppm(self.link.corrupt_ppm)
            && !f.bytes.is_empty()
        {
            let k = self.rng.below(f.bytes.len() as u64) as usize;
            f.bytes[k] ^= 1 << self.rng.below(8);
        }
        let Some(b) = self.stations[to].board.as_mut() else {
            return;
        };
        b.link_rx(self.now, &f.bytes);
        self.drive(to);
    }

    fn step(&mut self, t: u64, w: Wake) {
        self.now = t;
        self.steps += 1;
        match w {
            Wake::Station(i) => {
                if self.stations[i].scheduled == Some(t) {
                    self.stations[i].scheduled = None;
                    self.drive(i);
                }
            }
            Wake::Channel(i) => {
                if self.channel_scheduled[i] == Some(t) {
                    self.channel_scheduled[i] = None;
                    self.fixture.handle_channel_timeout(us(t), i);
                    self.sync_channel(i);
                    self.drive(i);
                }
            }
            Wake::Heartbeat => {
                self.fixture.handle_heartbeat(us(t));
                let next = self.fixture.heartbeat_timeout().ticks();
                self.schedule(next, Wake::Heartbeat);
            }
            Wake::Frame(id) => self.deliver_frame(id),
            Wake::Contactor(i) => self.contactor_settles(i),
            Wake::PwmFeed(i) => {
                if self.stations[i].pwm_feed.is_some_and(|(t0, _, _)| {
                    t0 + PWM_FIRST_FEED_PERIODS * 1_000 == t || t0 + PWM_FEED_PERIODS * 1_000 == t
                }) {
                    if self.feed_pwm(i, t) {
                        self.stations[i].pwm_feed = None;
                    }
                    self.reschedule_channel(i);
                    self.sync_channel(i);
                }
            }
            Wake::MeterRequest(id) => {
                if let Some(req) = self.meter_msgs.remove(&id) {
                    if let Some(ans) = self.fixture.handle_meter_rx(us(t), &req) {
                        let at = t + 2_000 + bytes_time(ans.len(), self.sc.bench.meter_baud);
                        self.next_id += 1;
                        self.meter_msgs.insert(self.next_id, ans.to_vec());
                        self.schedule(at, Wake::MeterReply(self.next_id));
                    }
                }
            }
            Wake::MeterReply(id) => {
                if let Some(ans) = self.meter_msgs.remove(&id) {
                    let li = self.leader_index();
                    if let Some(b) = self.stations[li].board.as_mut() {
                        b.meter_rx(t, &ans);
                    }
                    self.drive(li);
                }
            }
        }
    }

    /// Announce (and honour) only these capabilities from now on, as a
    /// fixture board with less hardware would (`virtual-fixture --caps`).
    pub fn set_fixture_caps(&mut self, caps: Caps) {
        self.fixture.set_caps(caps);
    }

    /// Server mode: keep what each station prints on its debug channel
    /// for [`Self::serve_debug_output`] (a pty per station), and relay it
    /// through the fixture as `DEBUG` events, a fixture wired to each
    /// station's debug channel (what the host sends with `DEBUG` reaches
    /// the station in [`Self::serve_input`]).
    pub fn serve_debug_channels(&mut self) {
        self.debug_out = Some(vec![Vec::new(); self.stations.len()]);
        self.debug_in = vec![String::new(); self.stations.len()];
    }

    /// Server mode: bytes a host wrote to station `i`'s debug channel
    /// (commissioning messages). A plan the station accepts is kept in its
    /// flash (a power cycle boots with it) and the station answers to the
    /// id it gives on the sharing link, as a board does.
    pub fn serve_debug_input(&mut self, i: usize, bytes: &[u8]) {
        let now = self.now;
        let Some(b) = self.stations.get_mut(i).and_then(|s| s.board.as_mut()) else {
            return;
        };
        b.debug_rx(now, bytes);
        if let Some(buf) = self.debug_in.get_mut(i) {
            buf.push_str(&String::from_utf8_lossy(bytes));
            // A host that never finishes a message cannot grow it forever.
            if buf.len() > MAX_SERVED_MESSAGE {
                let from = buf.len() - MAX_SERVED_MESSAGE;
                let from = (from..buf.len())
                    .find(|&k| buf.is_char_boundary(k))
                    .unwrap_or(buf.len());
                buf.drain(..from);
            }
        }
        self.drive(i);
        let answer = self.stations[i].answer.take();
        let message = match (&answer, self.debug_in.get_mut(i)) {
            (Some(_), Some(buf)) => std::mem::take(buf),
            _ => return,
        };
        if answer == Some(Ok(())) {
            let plan = message
                .rfind("C begin ")
                .map_or(message.as_str(), |k| &message[k..]);
            if let Some(id) = crate::debug::commissioned_id(plan) {
                self.stations[i].id = id;
            }
            self.stations[i].flash = Some(plan.to_string());
        }
    }

    /// Server mode: station `i`'s power switched by the host's power
    /// control (`virtual-fixture --pty`: `off`, `on`, `cycle`): off is the
    /// virtual bench's crash, on its reboot, a cycle both at this instant.
    /// Switching a station to the state it is in does nothing, as with a
    /// hub port. Returns the fixture's lines.
    pub fn serve_power(&mut self, i: usize, power: ServedPower) -> Result<Vec<String>, BenchError> {
        let Some(st) = self.stations.get(i) else {
            return Err(BenchError::Setup(format!(
                "no station on channel {i}: the site has {} (channels 0 to {})",
                self.stations.len(),
                self.stations.len().saturating_sub(1)
            )));
        };
        let powered = st.board.is_some();
        if powered && matches!(power, ServedPower::Off | ServedPower::Cycle) {
            self.fault(&SimFault::Crash(i))?;
        }
        if power != ServedPower::Off && (!powered || power == ServedPower::Cycle) {
            self.fault(&SimFault::Reboot(i))?;
        }
        Ok(self.raw_lines())
    }

    /// Server mode: the lines station `i` printed since the last call.
    pub fn serve_debug_output(&mut self, i: usize) -> Vec<String> {
        self.debug_out
            .as_mut()
            .and_then(|o| o.get_mut(i))
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Server mode: bytes from a host (a real tty), straight to the fixture.
    /// Every channel and station is brought up to date afterwards, since a
    /// command may have changed any car. Returns the fixture's lines.
    pub fn serve_input(&mut self, bytes: &[u8]) -> Vec<String> {
        self.fixture.handle_host_rx(us(self.now), bytes);
        // What the host sent through the fixture to a station's debug RX
        // (`DEBUG`), as on its own debug channel.
        let mut relayed = [0u8; rig::fixture::DEBUG_TX_QUEUE];
        for i in 0..self.stations.len() {
            let n = self.fixture.take_debug_tx(i, &mut relayed);
            if n > 0 {
                self.serve_debug_input(i, &relayed[..n]);
            }
        }
        for i in 0..self.stations.len() {
            self.sync_channel(i);
            self.drive(i);
        }
        self.raw_lines()
    }

    /// Server mode: run to `t_us`, returning every fixture line on the way
    /// (station telemetry goes to [`Self::serve_debug_output`], as a real
    /// station prints it on its own channel).
    pub fn serve_until(&mut self, t_us: u64) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(Reverse((t, _, _))) = self.queue.peek() {
            if *t > t_us {
                break;
            }
            let Some(Reverse((t, _, w))) = self.queue.pop() else {
                break;
            };
            self.step(t, w);
            out.extend(self.raw_lines());
        }
        self.now = self.now.max(t_us);
        self.records.clear();
        out
    }

    fn raw_lines(&mut self) -> Vec<String> {
        let mut v = Vec::new();
        let mut line: HString<MAX_LINE> = HString::new();
        while self.fixture.poll_line(&mut line) {
            v.push(line.as_str().to_string());
        }
        v
    }

    fn drain_fixture(&mut self) {
        let mut line: HString<MAX_LINE> = HString::new();
        while self.fixture.poll_line(&mut line) {
            match protocol::parse_next(line.as_bytes()) {
                Parsed::Line(_, Line::Event { seq, t_us, event }) => {
                    self.records.extend(self.event_seq.check(seq, t_us));
                    self.records.push_back(Record::Event { t_us, event })
                }
                Parsed::Line(_, _) => {}
                Parsed::Garbled(_, e) => self.records.push_back(Record::Garbled {
                    t_us: self.now,
                    text: format!("{e}: {line}"),
                }),
                Parsed::Incomplete => {}
            }
        }
    }

    /// Forge: a grant from outside the group (wrong key), then a replay of
    /// an old genuine frame.
    fn forge(&mut self) {
        let Some(victim) = self
            .stations
            .iter()
            .position(|s| !self.sc.stations.iter().any(|c| c.leader && c.id == s.id))
        else {
            return;
        };
        let h = firmware::sharing::frame::Header {
            group: self.cfg.group,
            sender: self.cfg.leader,
            dest: self.stations[victim].id,
            boot: 0xBAD0_BAD0,
            seq: u32::MAX,
        };
        let mut buf = [0u8; MAX_FRAME];
        let n = firmware::sharing::frame::encode(
            &[0xEE; 32],
            &h,
            &firmware::sharing::frame::Message::Grant { grant_da: 800 },
            &mut buf,
        );
        let from = self.stations.len(); // not a station of the group
        self.next_id += 1;
        let id = self.next_id;
        self.frames.insert(
            id,
            Frame {
                from,
                bytes: buf[..n].to_vec(),
            },
        );
        self.schedule(self.now + 1_000, Wake::Frame(id));
        if let Some((from, bytes)) = self.link.last_genuine.clone() {
            self.next_id += 1;
            self.frames.insert(self.next_id, Frame { from, bytes });
            self.schedule(self.now + 2_000, Wake::Frame(self.next_id));
        }
        self.records.push_back(Record::Telemetry {
            t_us: self.now,
            station: 255,
            text: "forged grant and replayed frame injected".into(),
        });
    }
}

impl VirtualBench {
    /// QEMU bench: bench time now, from the wall clock.
    fn wall_us(&self) -> u64 {
        self.realtime
            .as_ref()
            .map_or(self.now, |rt| rt.epoch.elapsed().as_micros() as u64)
    }

    /// The first QEMU station that cannot go on, as a bench error.
    fn remote_failure(&self) -> Result<(), BenchError> {
        for st in &self.stations {
            if let Some(why) = st.board.as_ref().and_then(Unit::failed) {
                return Err(BenchError::Station(why.to_string()));
            }
            if let Some(why) = st.spare.as_ref().and_then(|r| r.failed()) {
                return Err(BenchError::Station(why.to_string()));
            }
        }
        Ok(())
    }

    /// QEMU bench: wait (bounded by the QEMU connect timeout) until station
    /// `i`'s image has connected its UARTs; what it said before is dropped.
    fn wait_until_up(&mut self, i: usize) -> Result<(), BenchError> {
        loop {
            let Some(Unit::Remote(r)) = self.stations[i].board.as_mut() else {
                return Ok(());
            };
            r.poll();
            if let Some(why) = r.failed() {
                return Err(BenchError::Station(why.to_string()));
            }
            if r.ready() {
                r.discard_input();
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// QEMU bench: run the models in real time until bench time `t_us`,
    /// reading the stations as their bytes arrive. Bounded by `t_us` itself
    /// (the wall clock reaches it); a station that fails ends it.
    fn run_realtime(&mut self, t_us: u64, sink: &mut dyn FnMut(Record)) -> Result<(), BenchError> {
        loop {
            let wall = self.wall_us().min(t_us).max(self.now);
            while let Some(Reverse((t, _, _))) = self.queue.peek() {
                if *t > wall {
                    break;
                }
                let Some(Reverse((t, _, w))) = self.queue.pop() else {
                    break;
                };
                self.step(t, w);
                self.drain_fixture();
            }
            self.now = wall;
            for i in 0..self.stations.len() {
                self.drive(i);
                if let Some(spare) = self.stations[i].spare.as_mut() {
                    spare.poll();
                }
            }
            self.drain_fixture();
            while let Some(r) = self.records.pop_front() {
                sink(r);
            }
            self.remote_failure()?;
            if self.now >= t_us {
                return Ok(());
            }
            // Sleep until the next wake-up, at most a millisecond (the
            // images sample their inputs every millisecond).
            let next = self
                .queue
                .peek()
                .map_or(t_us, |Reverse((t, _, _))| (*t).min(t_us));
            let nap = next.saturating_sub(self.wall_us()).min(1_000);
            if nap > 0 {
                std::thread::sleep(std::time::Duration::from_micros(nap));
            }
        }
    }
}

fn bytes_time(n: usize, baud: u32) -> u64 {
    (n as u64 * 10 * 1_000_000).div_ceil(u64::from(baud.max(1)))
}

impl Bench for VirtualBench {
    fn name(&self) -> String {
        if self.realtime.is_some() {
            "qemu".into()
        } else {
            "sim".into()
        }
    }

    fn fixture(&self) -> Option<&FixtureInfo> {
        self.info.as_ref()
    }

    fn self_test(
        &mut self,
        ch: u8,
        sink: &mut dyn FnMut(Record),
    ) -> Result<(u8, SelfTestReport), BenchError> {
        self.command(Command::SelfTest(ch), sink)?;
        protocol::parse_selftest(&self.last_info).map_err(|what| {
            BenchError::Io(format!(
                "the virtual fixture's SELFTEST answer lacks {what}"
            ))
        })
    }

    fn is_virtual(&self) -> bool {
        self.realtime.is_none()
    }

    fn now_us(&self) -> u64 {
        self.now
    }

    fn command(&mut self, cmd: Command, sink: &mut dyn FnMut(Record)) -> Result<(), BenchError> {
        self.host_seq += 1;
        let seq = self.host_seq;
        let channel = match &cmd {
            Command::Plug(c)
            | Command::Unplug(c)
            | Command::Request(c)
            | Command::Stop(c)
            | Command::Pause(c)
            | Command::Query(c) => Some(usize::from(*c)),
            Command::Car(c, _) | Command::Misbehave(c, _) => Some(usize::from(*c)),
            _ => None,
        };
        let what = cmd.to_string();
        let mut line: HString<MAX_LINE> = HString::new();
        protocol::encode(&Line::Command { seq, cmd }, &mut line)
            .map_err(|_| BenchError::Io("command line too long".into()))?;
        self.fixture.handle_host_rx(us(self.now), line.as_bytes());
        if let Some(c) = channel {
            self.sync_channel(c);
            self.drive(c);
        }
        // The acknowledgement comes back on the same lines as the events.
        let mut out: HString<MAX_LINE> = HString::new();
        let mut acked = Err(BenchError::Timeout {
            what: what.clone(),
            timeout_ms: 0,
        });
        while self.fixture.poll_line(&mut out) {
            match protocol::parse_next(out.as_bytes()) {
                Parsed::Line(_, Line::Ok { seq: s, info }) if s == seq => {
                    self.last_info = info.as_str().to_string();
                    acked = Ok(());
                }
                Parsed::Line(
                    _,
                    Line::Err {
                        seq: s,
                        code,
                        message,
                    },
                ) if s == seq => {
                    acked = Err(BenchError::Refused {
                        what: what.clone(),
                        reason: format!("{code}: {message}"),
                    });
                }
                Parsed::Line(_, Line::Event { seq, t_us, event }) => {
                    self.records.extend(self.event_seq.check(seq, t_us));
                    self.records.push_back(Record::Event { t_us, event })
                }
                Parsed::Garbled(_, e) => self.records.push_back(Record::Garbled {
                    t_us: self.now,
                    text: format!("{e}"),
                }),
                _ => {}
            }
        }
        while let Some(r) = self.records.pop_front() {
            sink(r);
        }
        acked
    }

    fn fault(&mut self, fault: &SimFault) -> Result<(), BenchError> {
        match fault {
            SimFault::LinkDown => self.link.down = true,
            SimFault::OneWay { from, to } => {
                self.link.cut.insert((*from, *to));
            }
            SimFault::Partition(groups) => {
                let mut g = vec![usize::MAX; self.stations.len()];
                for (k, grp) in groups.iter().enumerate() {
                    for &s in grp {
                        if s < g.len() {
                            g[s] = k;
                        }
                    }
                }
                self.link.group_of = Some(g);
            }
            SimFault::Noise { loss, corrupt } => {
                self.link.loss_ppm = (loss * 1e6) as u32;
                self.link.corrupt_ppm = (corrupt * 1e6) as u32;
            }
            SimFault::Repair => {
                self.link.down = false;
                self.link.cut.clear();
                self.link.group_of = None;
                self.link.loss_ppm = 0;
                self.link.corrupt_ppm = 0;
            }
            SimFault::Crash(i) => {
                let i = *i;
                self.flush_pwm(i, self.now);
                self.stations[i].board = None;
                // QEMU: the image is killed; a fresh one boots now and waits
                // powered off (no QEMU start-up delay at the reboot).
                if let Some(rt) = &self.realtime {
                    let name = format!("st{}", self.stations[i].id);
                    let mut spare = Remote::spawn(&rt.opts, &name)?;
                    if let Some(plan) = &self.stations[i].flash {
                        spare.stage_plan(plan);
                    }
                    self.stations[i].spare = Some(Box::new(spare));
                }
                self.stations[i].scheduled = None;
                self.stations[i].source = Source::Off;
                self.stations[i].duty_bp = None;
                self.set_coil(i, false);
                self.apply_pilot(i);
            }
            SimFault::Reboot(i) => {
                let i = *i;
                self.flush_pwm(i, self.now);
                let boots = self.stations[i].boots + 1;
                let mut fresh = match self.stations[i].spare.take() {
                    Some(spare) => self.fresh_station(i, Unit::Remote(spare), boots),
                    None => self.boot_station(i, boots)?,
                };
                fresh.coil = self.stations[i].coil;
                fresh.relay_closed = self.stations[i].relay_closed;
                fresh.welded = self.stations[i].welded;
                fresh.draw = self.stations[i].draw;
                fresh.flash = self.stations[i].flash.take();
                // The id it was commissioned with (served: a host's plan).
                fresh.id = self.stations[i].id;
                self.stations[i] = fresh;
                self.wait_until_up(i)?;
                let staged = matches!(
                    self.stations[i].board.as_ref(),
                    Some(Unit::Remote(r)) if r.staged()
                );
                // The board reads its plan back from flash (the QEMU image
                // has none: the bench completes the plan it staged, below,
                // or sends it again).
                let now = self.now;
                let st = &mut self.stations[i];
                if let (false, Some(b), Some(plan)) = (staged, st.board.as_mut(), st.flash.as_ref())
                {
                    b.debug_rx(now, plan.as_bytes());
                }
                // Pins come up in the safe state.
                self.set_coil(i, false);
                self.set_output(i, PilotOutput::Steady);
                let closed = self.stations[i].relay_closed;
                let draw = self.stations[i].draw;
                if let Some(b) = self.stations[i].board.as_mut() {
                    b.set_amps(draw);
                    b.set_relay(closed);
                }
                self.apply_pilot(i);
                // A staged plan is completed once the image's inputs read
                // the circuit, so that its first sample is the circuit's,
                // as on the virtual bench.
                if let Some(Unit::Remote(r)) = self.stations[i].board.as_mut() {
                    r.power_on();
                }
                self.drive(i);
            }
            SimFault::Welded(i, on) => {
                self.stations[*i].welded = *on;
                if !*on {
                    self.contactor_settles(*i);
                }
            }
            SimFault::Forge => self.forge(),
        }
        Ok(())
    }

    fn commission(
        &mut self,
        station: usize,
        message: &str,
        sink: &mut dyn FnMut(Record),
    ) -> Result<Option<Result<(), Refusal>>, BenchError> {
        let now = self.now;
        let count = self.stations.len();
        let Some(st) = self.stations.get_mut(station) else {
            return Err(BenchError::Setup(format!(
                "no station at position {station} on this bench ({count} stations)"
            )));
        };
        st.answer = None;
        let id = st.id;
        let Some(b) = st.board.as_mut() else {
            return Err(BenchError::Setup(format!("station st{id} is not powered")));
        };
        b.debug_rx(now, message.as_bytes());
        self.drive(station);
        if self.realtime.is_some() {
            // The image answers when it has read the message: run the site
            // on until it does, or give up.
            let give_up = std::time::Instant::now() + COMMISSION_TIMEOUT;
            while self.stations[station].answer.is_none() {
                if std::time::Instant::now() > give_up {
                    return Err(BenchError::Timeout {
                        what: format!(
                            "station st{}'s answer to its commissioning (QEMU)",
                            self.stations[station].id
                        ),
                        timeout_ms: COMMISSION_TIMEOUT.as_millis() as u64,
                    });
                }
                let t = self.now + 1_000;
                self.run_realtime(t, sink)?;
            }
        }
        while let Some(r) = self.records.pop_front() {
            sink(r);
        }
        let answer = self.stations[station].answer.take();
        if answer == Some(Ok(())) {
            self.stations[station].flash = Some(message.to_owned());
        }
        // The virtual station answers at once; silence is a bug.
        answer.map(Some).ok_or_else(|| BenchError::Timeout {
            what: format!(
                "station st{}'s answer to its commissioning",
                self.stations[station].id
            ),
            timeout_ms: 0,
        })
    }

    fn operator(
        &mut self,
        station: usize,
        line: &str,
        sink: &mut dyn FnMut(Record),
    ) -> Result<(), BenchError> {
        let now = self.now;
        let count = self.stations.len();
        let Some(st) = self.stations.get_mut(station) else {
            return Err(BenchError::Setup(format!(
                "no station at position {station} on this bench ({count} stations)"
            )));
        };
        // A station without power hears nothing: the line is lost, as on a
        // real debug channel, and the trace shows no answer.
        if let Some(b) = st.board.as_mut() {
            b.debug_rx(now, line.as_bytes());
            self.drive(station);
        }
        while let Some(r) = self.records.pop_front() {
            sink(r);
        }
        Ok(())
    }

    fn commission_all(
        &mut self,
        messages: &[String],
        sink: &mut dyn FnMut(Record),
    ) -> Result<Vec<Option<Result<(), Refusal>>>, BenchError> {
        if self.realtime.is_none() {
            let mut answers = Vec::with_capacity(messages.len());
            for (i, m) in messages.iter().enumerate() {
                answers.push(self.commission(i, m, sink)?);
            }
            return Ok(answers);
        }
        // QEMU: every image reads its plan at once (a few hundred bytes of
        // UART each); bench time stands still meanwhile, so the stations
        // start together at the bench time the virtual ones start at.
        let wall0 = std::time::Instant::now();
        let mut leader_started = None;
        let now = self.now;
        for (i, m) in messages.iter().enumerate() {
            let Some(st) = self.stations.get_mut(i) else {
                return Err(BenchError::Setup(format!("no station {i} on this bench")));
            };
            st.answer = None;
            let Some(b) = st.board.as_mut() else {
                return Err(BenchError::Setup(format!("station {i} is not powered")));
            };
            // Staged: every plan but its last byte, which all get at once
            // below, so that the stations start together and their first
            // frames do not queue behind the others' plans.
            match b {
                Unit::Remote(r) => r.stage_plan(m),
                Unit::Local(_) => b.debug_rx(now, m.as_bytes()),
            }
        }
        // The images read a plan in well under this (a few hundred bytes);
        // one that has not yet answers later, which is only later.
        let staged_by = wall0 + STAGE_WAIT;
        while std::time::Instant::now() < staged_by {
            for st in &mut self.stations {
                if let Some(Unit::Remote(r)) = st.board.as_mut() {
                    r.poll();
                }
            }
            self.remote_failure()?;
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        for st in &mut self.stations {
            if let Some(Unit::Remote(r)) = st.board.as_mut() {
                if !r.power_on() {
                    return Err(BenchError::Setup(format!(
                        "st{}'s commissioning message does not end with a newline",
                        st.id
                    )));
                }
            }
        }
        while self.stations.iter().any(|s| s.answer.is_none()) {
            if wall0.elapsed() > COMMISSION_TIMEOUT {
                let silent: Vec<String> = self
                    .stations
                    .iter()
                    .filter(|s| s.answer.is_none())
                    .map(|s| format!("st{}", s.id))
                    .collect();
                return Err(BenchError::Timeout {
                    what: format!(
                        "the answer of {} to commissioning (QEMU)",
                        silent.join(", ")
                    ),
                    timeout_ms: COMMISSION_TIMEOUT.as_millis() as u64,
                });
            }
            for i in 0..self.stations.len() {
                let read_at = match self.stations[i].board.as_ref() {
                    Some(Unit::Remote(r)) => r.telemetry_read_at(),
                    _ => None,
                };
                self.drive(i);
                if i == self.leader_index() && self.stations[i].answer.is_some() {
                    leader_started = leader_started.or(read_at);
                }
            }
            self.drain_fixture();
            while let Some(r) = self.records.pop_front() {
                sink(r);
            }
            self.remote_failure()?;
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        // Bench time resumes from where it stood, counted from when the
        // leader took its plan: its allocation cycles, which pace the
        // site, then fall where the virtual leader's do.
        let resume = leader_started.unwrap_or_else(std::time::Instant::now);
        if let Some(rt) = self.realtime.as_mut() {
            if let Some(e) = resume.checked_sub(std::time::Duration::from_micros(now)) {
                rt.epoch = e;
            }
        }
        let mut answers = Vec::with_capacity(messages.len());
        for (st, m) in self.stations.iter_mut().zip(messages) {
            let answer = st.answer.take();
            if answer == Some(Ok(())) {
                st.flash = Some(m.clone());
            }
            answers.push(answer);
        }
        Ok(answers)
    }

    fn run_until(&mut self, t_us: u64, sink: &mut dyn FnMut(Record)) -> Result<(), BenchError> {
        if self.realtime.is_some() {
            return self.run_realtime(t_us, sink);
        }
        while let Some(Reverse((t, _, _))) = self.queue.peek() {
            if *t > t_us {
                break;
            }
            let Some(Reverse((t, _, w))) = self.queue.pop() else {
                break;
            };
            // A model that wakes itself at the same instant forever would
            // hang the run: end it instead, with the partial trace.
            if t == self.stuck_at.0 {
                self.stuck_at.1 += 1;
                if self.stuck_at.1 > MAX_STEPS_AT_ONE_INSTANT {
                    let what = match w {
                        Wake::Station(i) => {
                            let st = &self.stations[i];
                            match st.board.as_ref().and_then(Unit::poll_timeout) {
                                Some(at) => format!(
                                    "station st{} (it asks to be woken at {} us)",
                                    st.id, at
                                ),
                                None => format!("station st{}", st.id),
                            }
                        }
                        Wake::Channel(i) => format!("fixture channel {i}"),
                        Wake::Heartbeat => "the fixture's heartbeat".into(),
                        Wake::Frame(_) => "a link frame".into(),
                        Wake::Contactor(i) => format!("contactor of channel {i}"),
                        Wake::PwmFeed(i) => format!("PWM feed of channel {i}"),
                        Wake::MeterRequest(_) | Wake::MeterReply(_) => "the meter line".into(),
                    };
                    return Err(BenchError::Stuck {
                        t_us: t,
                        wake: what,
                    });
                }
            } else {
                self.stuck_at = (t, 0);
            }
            self.step(t, w);
            // The fixture's line queue is bounded, like a UART buffer: read
            // it after every step so nothing is dropped.
            self.drain_fixture();
            while let Some(r) = self.records.pop_front() {
                sink(r);
            }
        }
        self.now = self.now.max(t_us);
        self.drain_fixture();
        while let Some(r) = self.records.pop_front() {
            sink(r);
        }
        Ok(())
    }
}
