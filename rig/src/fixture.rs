//! The whole fixture: channels of car emulation and capture, site loads and
//! the mains meter, behind the fixture protocol.
//!
//! Owns the command loop (parse, execute, acknowledge every command with its
//! sequence number, refuse with a reason, never stay silent), the event
//! stream (capture changes, meter values, heartbeats, stamped with fixture
//! time), and the coupling between a channel's capture and its car (the car
//! learns the offer and the power exactly as a real car would, and draws
//! only on the phases its station supplies). Loss is reported, never
//! silent: a line dropped because the host did not read it, or a capture
//! change dropped because a channel's queue was full, is counted, and the
//! cumulative counts go out as `LOSS` events at the next heartbeat (a
//! dropped event also leaves a gap in the event sequence numbers). Does not
//! touch hardware: a fixture board feeds capture inputs from its timers and
//! ADC and applies [`Fixture::car_load`] and [`Fixture::car_draw_da`] to its
//! resistor switches and load bank; the virtual bench does the same with
//! its models.
//!
//! `HELLO` is answered with the channel count, the fixture firmware's
//! version and its capabilities ([`FixtureConfig::caps`]); a command that
//! needs a capability the fixture lacks is refused (`ERR unsupported`).
//! `SELFTEST <ch>` runs [`crate::selftest`] here over a generated loopback
//! (1 kHz, 1 us edge jitter, seeded) through the same capture code; a board
//! with a real loopback drives [`crate::selftest::SelfTest`] from its own
//! PWM generator and capture timer instead.
//!
//! With the `debug` capability the fixture relays each station's debug
//! channel (a UART per channel on a board): what a station prints goes to
//! the host verbatim as `DEBUG` events ([`Fixture::handle_debug_rx`]), sent
//! at each newline, when a line outgrows one event, and at the heartbeat;
//! what the host sends with the `DEBUG` command waits in the channel's
//! queue for the station's RX ([`Fixture::take_debug_tx`]).

use crate::time::{ms, secs, Duration, Instant};
use heapless::{Deque, String, Vec};

use crate::capture::{current_for_duty, CaptureConfig, CaptureEvent, ChannelCapture};
use crate::loads::SiteLoads;
use crate::meter::{MeterEmulator, MeterFault};
use crate::pilot::CarLoad;
use crate::protocol::{
    self, Capability, Caps, CarSetting, Command, DebugBytes, ErrorCode, Event, FixtureInfo, Line,
    Misbehave, Parsed, MAX_INFO, MAX_LINE, PROTOCOL_VERSION,
};
use crate::vehicle::{CarParams, Misbehaviour, ResponseDelay, Vehicle};

/// Fixture settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixtureConfig {
    pub channels: u16,
    pub capture: CaptureConfig,
    /// A heartbeat event this often.
    pub heartbeat: Duration,
    pub meter_unit: u8,
    pub voltage_v: u16,
    /// Seeds the cars' response delays and the meter's garbage.
    pub seed: u64,
    /// What this fixture can do, announced in the HELLO answer.
    pub caps: Caps,
    /// The fixture firmware's version, announced in the HELLO answer.
    pub fw_version: &'static str,
}

/// This build's version, the default [`FixtureConfig::fw_version`].
pub const FIXTURE_VERSION: &str = env!("CARGO_PKG_VERSION");
/// Edge jitter of the virtual self-test's loopback, nanoseconds either way.
pub const VIRTUAL_LOOPBACK_JITTER_NS: u64 = 1_000;

impl Default for FixtureConfig {
    fn default() -> Self {
        Self {
            channels: 16,
            capture: CaptureConfig::default(),
            heartbeat: secs(1),
            meter_unit: 1,
            voltage_v: 230,
            seed: 0,
            caps: Caps::ALL,
            fw_version: FIXTURE_VERSION,
        }
    }
}

#[derive(Debug, Clone)]
struct Chan {
    car: Vehicle,
    cap: ChannelCapture,
    rotation: u8,
    /// The mains meter sees this channel (its station is under the
    /// metered node).
    metered: bool,
    /// What the station printed on its debug channel, not yet sent.
    debug_rx: DebugBytes,
    /// What the host sent for the station's debug RX, not yet written.
    debug_tx: Deque<u8, DEBUG_TX_QUEUE>,
}

/// Bytes a channel holds for its station's debug RX (a commissioning
/// message is about 300); a `DEBUG` command that does not fit is refused
/// with `ERR busy`.
pub const DEBUG_TX_QUEUE: usize = 512;

/// Lines the fixture holds for its host: 256, plus room for the state
/// report `RESET` makes of 256 idle channels (one pilot line each) and its
/// answer.
pub const OUT_QUEUE: usize = 272;

/// A fixture with up to `N` channels.
#[derive(Debug)]
pub struct Fixture<const N: usize> {
    cfg: FixtureConfig,
    chans: Vec<Chan, N>,
    loads: SiteLoads,
    meter: MeterEmulator,
    rx: Vec<u8, { 2 * MAX_LINE }>,
    out: Deque<Line, OUT_QUEUE>,
    event_seq: u32,
    hello: bool,
    next_hb: Instant,
    reported_meter: [i32; 3],
    /// The site current differed (under the threshold) from the reported
    /// one at the last meter request: if the next one still differs, the
    /// site current is reported.
    meter_differed: bool,
    dropped_lines: u32,
    /// The loss counts last reported: lines, and capture changes per channel.
    reported_lines_lost: u32,
    reported_capture_lost: Vec<u32, N>,
    /// `SELFTEST` is run by the board's own loopback, not generated here.
    external_selftest: bool,
    /// A `SELFTEST` (sequence number, channel) waiting for the board.
    selftest_request: Option<(u32, u8)>,
}

impl<const N: usize> Fixture<N> {
    /// A fixture at time `now`; more channels than `N` are not created.
    #[must_use]
    pub fn new(cfg: FixtureConfig, now: Instant) -> Self {
        let mut chans = Vec::new();
        for i in 0..cfg.channels {
            let seed = cfg.seed ^ (u64::from(i) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let _ = chans.push(Chan {
                car: Vehicle::new(CarParams::default(), seed, now),
                cap: ChannelCapture::new(cfg.capture),
                rotation: 0,
                metered: true,
                debug_rx: DebugBytes::new(),
                debug_tx: Deque::new(),
            });
        }
        Self {
            meter: MeterEmulator::new(cfg.meter_unit, cfg.seed),
            cfg,
            chans,
            loads: SiteLoads::default(),
            rx: Vec::new(),
            out: Deque::new(),
            event_seq: 0,
            hello: false,
            next_hb: now + cfg.heartbeat,
            reported_meter: [0; 3],
            meter_differed: false,
            dropped_lines: 0,
            reported_lines_lost: 0,
            reported_capture_lost: Vec::new(),
            external_selftest: false,
            selftest_request: None,
        }
    }

    /// A board with a real loopback runs `SELFTEST` itself: the command is
    /// then held for [`Self::take_selftest`] and answered by
    /// [`Self::finish_selftest`] instead of over a generated loopback.
    pub fn set_external_selftest(&mut self, on: bool) {
        self.external_selftest = on;
    }

    /// The `SELFTEST` the board must run (sequence number, channel), once.
    pub fn take_selftest(&mut self) -> Option<(u32, u8)> {
        self.selftest_request.take()
    }

    /// Answer the `SELFTEST` command `seq` with the board's measurement.
    pub fn finish_selftest(&mut self, seq: u32, ch: u8, report: &crate::selftest::SelfTestReport) {
        let mut info: String<MAX_INFO> = String::new();
        let _ = protocol::emit_selftest(ch, report, &mut info);
        self.ok(seq, &info);
    }

    #[must_use]
    pub fn channels(&self) -> usize {
        self.chans.len()
    }

    /// Change the capabilities announced and honoured (a board learns
    /// which daughter boards are fitted; the virtual fixture is told).
    pub fn set_caps(&mut self, caps: Caps) {
        self.cfg.caps = caps;
    }

    /// What the HELLO answer says.
    #[must_use]
    pub fn info(&self) -> FixtureInfo {
        FixtureInfo {
            proto: PROTOCOL_VERSION,
            // A version over 16 characters is announced empty, not cut.
            fw: String::try_from(self.cfg.fw_version).unwrap_or_default(),
            channels: u16::try_from(self.chans.len()).unwrap_or(u16::MAX),
            caps: self.cfg.caps,
        }
    }

    /// Lines lost because the host did not read them (0 on a healthy link).
    #[must_use]
    pub fn dropped_lines(&self) -> u32 {
        self.dropped_lines
    }

    /// Capture changes channel `ch` dropped because its queue was full.
    #[must_use]
    pub fn capture_lost(&self, ch: usize) -> u32 {
        self.chans.get(ch).map_or(0, |c| c.cap.lost_events())
    }

    /// What the car on `ch` presents on the pilot (resistor and diode switches).
    #[must_use]
    pub fn car_load(&self, ch: usize) -> CarLoad {
        self.chans
            .get(ch)
            .map_or(CarLoad::UNPLUGGED, |c| c.car.load())
    }

    /// What the car on `ch` draws per phase (the load bank's setpoint).
    #[must_use]
    pub fn car_draw_da(&self, ch: usize) -> [u16; 3] {
        self.chans.get(ch).map_or([0; 3], |c| c.car.draw_da())
    }

    /// The channel's car, for inspection.
    #[must_use]
    pub fn car(&self, ch: usize) -> Option<&Vehicle> {
        self.chans.get(ch).map(|c| &c.car)
    }

    /// Site loads other than the stations, per phase.
    #[must_use]
    pub fn site_loads_da(&self) -> [i32; 3] {
        self.loads.total_da()
    }

    fn emit(&mut self, t_us: u64, event: Event) {
        self.event_seq = self.event_seq.wrapping_add(1);
        self.queue(Line::Event {
            seq: self.event_seq,
            t_us,
            event,
        });
    }

    fn queue(&mut self, line: Line) {
        if self.out.is_full() {
            self.out.pop_front();
            self.dropped_lines = self.dropped_lines.saturating_add(1);
        }
        let _ = self.out.push_back(line);
    }

    fn ok(&mut self, seq: u32, info: &str) {
        let mut s = String::new();
        let _ = s.push_str(&info[..info.len().min(MAX_INFO)]);
        self.queue(Line::Ok { seq, info: s });
    }

    fn err(&mut self, seq: u32, code: ErrorCode, message: &str) {
        let mut s = String::new();
        let _ = s.push_str(&message[..message.len().min(96)]);
        self.queue(Line::Err {
            seq,
            code,
            message: s,
        });
    }

    /// Bytes from the host.
    pub fn handle_host_rx(&mut self, now: Instant, bytes: &[u8]) {
        for &b in bytes {
            if self.rx.push(b).is_err() {
                self.rx.clear();
                self.err(0, ErrorCode::Parse, "line too long, dropped");
            }
            if b != b'\n' {
                continue;
            }
            match protocol::parse_next(&self.rx) {
                Parsed::Line(_, Line::Command { seq, cmd }) => self.execute(now, seq, cmd),
                Parsed::Line(_, _) => {
                    self.err(0, ErrorCode::Parse, "fixtures take commands (C lines) only")
                }
                Parsed::Garbled(_, e) => {
                    let (seq, code) = match e {
                        protocol::LineError::Checksum { seq } => (seq, ErrorCode::Checksum),
                        protocol::LineError::Syntax { seq, .. } => (seq, ErrorCode::Parse),
                        _ => (None, ErrorCode::Parse),
                    };
                    let mut msg: String<96> = String::new();
                    let _ = core::fmt::write(&mut msg, format_args!("{e}"));
                    self.err(seq.unwrap_or(0), code, &msg);
                }
                Parsed::Incomplete => {}
            }
            self.rx.clear();
        }
    }

    fn execute(&mut self, now: Instant, seq: u32, cmd: Command) {
        if let Command::Hello { version } = cmd {
            if version != PROTOCOL_VERSION {
                let mut m: String<96> = String::new();
                let _ = core::fmt::write(
                    &mut m,
                    format_args!(
                        "protocol {version} not supported; this fixture speaks {PROTOCOL_VERSION}"
                    ),
                );
                return self.err(seq, ErrorCode::Version, &m);
            }
            self.hello = true;
            let mut info: String<MAX_INFO> = String::new();
            let _ = self.info().emit(&mut info);
            return self.ok(seq, &info);
        }
        if !self.hello {
            return self.err(seq, ErrorCode::NoHello, "say HELLO first");
        }
        if let Some(cap) = cmd.needs().filter(|c| !self.cfg.caps.has(*c)) {
            let mut m: String<96> = String::new();
            let _ = core::fmt::write(
                &mut m,
                format_args!("this fixture has no {} capability", cap.word()),
            );
            return self.err(seq, ErrorCode::Unsupported, &m);
        }
        let channel_of = |c: &Command| c.channel().map(usize::from);
        if let Some(c) = channel_of(&cmd) {
            if c >= self.chans.len() {
                let mut m: String<96> = String::new();
                let _ = core::fmt::write(
                    &mut m,
                    format_args!(
                        "channel {c} does not exist; channels are 0..{}",
                        self.chans.len()
                    ),
                );
                return self.err(seq, ErrorCode::Channel, &m);
            }
        }
        match cmd {
            Command::Hello { .. } => {}
            Command::Reset => {
                for c in self.chans.iter_mut() {
                    c.car.unplug(now);
                    c.car.misbehaviour = Misbehaviour::default();
                    let mut p = *c.car.params();
                    if p.aux_da != 0 {
                        p.aux_da = 0;
                        c.car.change_params(now, p);
                    }
                    c.metered = true;
                }
                self.loads.clear();
                self.meter.set_fault(MeterFault::None);
                self.meter.set_noise(0);
                // Where each channel stands as the run starts (a host that
                // connected after the fixture started has seen nothing):
                // stamped now, before the acknowledgement. What the reset
                // itself changes (a car unplugged) follows as events.
                for ch in 0..self.chans.len() {
                    let c = u8::try_from(ch).unwrap_or(u8::MAX);
                    for e in self.chans[ch].cap.state_report() {
                        self.emit(now.ticks(), Self::event_of(c, e));
                    }
                }
                // Losses before the reset are not the next run's: only
                // what is lost from here on is reported.
                self.reported_lines_lost = self.dropped_lines;
                self.reported_capture_lost.clear();
                for c in &self.chans {
                    if self
                        .reported_capture_lost
                        .push(c.cap.lost_events())
                        .is_err()
                    {
                        break;
                    }
                }
            }
            Command::Plug(c) => self.chans[usize::from(c)].car.plug(now),
            Command::Unplug(c) => self.chans[usize::from(c)].car.unplug(now),
            Command::Request(c) => self.chans[usize::from(c)].car.request(now),
            Command::Stop(c) => self.chans[usize::from(c)].car.stop(now),
            Command::Pause(c) => self.chans[usize::from(c)].car.pause(now),
            Command::Query(c) => {
                let car = &self.chans[usize::from(c)].car;
                let ev = Event::Car {
                    ch: c,
                    plugged: car.plugged(),
                    soc_permille: car.soc_permille(),
                    draw_da: car.draw_da()[0],
                };
                self.emit(now.ticks(), ev);
            }
            Command::Car(c, s) => {
                let chan = &mut self.chans[usize::from(c)];
                let mut p = *chan.car.params();
                match s {
                    CarSetting::MaxDa(v) => p.max_da = v,
                    CarSetting::Phases(v) => p.phases = if v >= 3 { 3 } else { 1 },
                    CarSetting::CapacityWh(v) => p.capacity_wh = v,
                    CarSetting::SocPermille(v) => p.soc_permille = v.min(1_000),
                    CarSetting::KneePermille(v) => p.knee_permille = v.min(1_000),
                    CarSetting::TargetPermille(v) => p.target_permille = v.min(1_000),
                    CarSetting::DelayMs(v) => p.delay = ResponseDelay::Fixed(ms(u64::from(v))),
                    CarSetting::DelayMaxMs(v) => {
                        let min = match p.delay {
                            ResponseDelay::Fixed(d) | ResponseDelay::Range { min: d, .. } => d,
                        };
                        p.delay = ResponseDelay::Range {
                            min,
                            max: ms(u64::from(v)),
                        };
                    }
                    CarSetting::RampDaPerS(v) => p.ramp_da_per_s = v.max(1),
                    CarSetting::Ventilation(v) => p.ventilation = v,
                    CarSetting::Rotation(v) => chan.rotation = v % 3,
                    CarSetting::Metered(v) => chan.metered = v,
                    CarSetting::SupplyPhases(v) => {
                        chan.car.set_supply_phases(now, v);
                        return self.ok(seq, "");
                    }
                    CarSetting::AuxDa(v) => p.aux_da = v,
                }
                // A new SoC sets the charge; any other setting keeps what
                // the car has charged so far (a car changed mid-run).
                if matches!(s, CarSetting::SocPermille(_)) {
                    chan.car.set_params(now, p);
                } else {
                    chan.car.change_params(now, p);
                }
            }
            Command::Misbehave(c, m) => {
                let mb = &mut self.chans[usize::from(c)].car.misbehaviour;
                match m {
                    Misbehave::None => *mb = Misbehaviour::default(),
                    Misbehave::IgnoreReductions => mb.ignores_reductions = true,
                    Misbehave::OverdrawDa(v) => mb.overdraw_da = v,
                    Misbehave::SlowMs(v) => mb.slow_response = Some(ms(u64::from(v))),
                    Misbehave::DrawsInB => mb.draws_in_b = true,
                    Misbehave::NoDiode => mb.no_diode = true,
                    Misbehave::ShortedDiode => mb.shorted_diode = true,
                    Misbehave::ShortPilot => mb.short_pilot = true,
                }
            }
            Command::Load {
                name,
                phases,
                da,
                on,
            } => {
                if self.loads.set(&name, phases, da, on).is_err() {
                    return self.err(seq, ErrorCode::Parse, "too many site loads (16 at most)");
                }
            }
            Command::Meter(f) => self.meter.set_fault(f),
            Command::MeterNoise(da) => self.meter.set_noise(da),
            Command::Debug(c, data) => {
                let q = &mut self.chans[usize::from(c)].debug_tx;
                let free = q.capacity() - q.len();
                if data.as_bytes().len() > free {
                    let mut m: String<96> = String::new();
                    let _ = core::fmt::write(
                        &mut m,
                        format_args!("station debug queue of channel {c} has {free} bytes free"),
                    );
                    return self.err(seq, ErrorCode::Busy, &m);
                }
                for &b in data.as_bytes() {
                    let _ = q.push_back(b);
                }
            }
            Command::SelfTest(c) if self.external_selftest => {
                if self.selftest_request.is_some() {
                    return self.err(
                        seq,
                        ErrorCode::Unsupported,
                        "a self-test is already running",
                    );
                }
                // Answered by `finish_selftest` when the board is done.
                self.selftest_request = Some((seq, c));
                return;
            }
            Command::SelfTest(c) => {
                let seed = self.cfg.seed ^ u64::from(c).wrapping_add(0x5E1F);
                let r = crate::selftest::run_virtual(
                    self.cfg.capture,
                    seed,
                    VIRTUAL_LOOPBACK_JITTER_NS,
                );
                let mut info: String<MAX_INFO> = String::new();
                let _ = protocol::emit_selftest(c, &r, &mut info);
                return self.ok(seq, &info);
            }
        }
        self.ok(seq, "");
    }

    /// A capture change on channel `c` as the protocol reports it.
    fn event_of(c: u8, e: CaptureEvent) -> Event {
        match e {
            CaptureEvent::Duty { duty_bp, freq_mhz } => Event::Duty {
                ch: c,
                duty_bp,
                freq_mhz,
            },
            CaptureEvent::PwmOff => Event::PwmOff { ch: c },
            CaptureEvent::Pilot {
                state,
                high_mv,
                low_mv,
            } => Event::Pilot {
                ch: c,
                state,
                high_mv,
                low_mv,
            },
            CaptureEvent::Contactor(closed) => Event::Contactor { ch: c, closed },
            CaptureEvent::Current(da) => Event::Current { ch: c, da },
        }
    }

    fn drain_capture(&mut self, ch: usize, now: Instant) {
        while let Some((t, e)) = self.chans[ch].cap.poll_event() {
            let c = u8::try_from(ch).unwrap_or(u8::MAX);
            match e {
                CaptureEvent::Duty { duty_bp, .. } => {
                    self.chans[ch]
                        .car
                        .handle_offer(now, current_for_duty(duty_bp));
                }
                CaptureEvent::PwmOff => self.chans[ch].car.handle_offer(now, None),
                CaptureEvent::Contactor(closed) => self.chans[ch].car.handle_power(now, closed),
                CaptureEvent::Pilot { .. } | CaptureEvent::Current(_) => {}
            }
            self.emit(t, Self::event_of(c, e));
        }
    }

    /// A pilot edge on channel `ch` at timer value `t_us`.
    pub fn handle_edge(&mut self, now: Instant, ch: usize, t_us: u64, rising: bool) {
        if let Some(c) = self.chans.get_mut(ch) {
            c.cap.handle_edge(t_us, rising);
            self.drain_capture(ch, now);
        }
    }

    /// Edges channel `ch`'s hardware lost before they were timestamped
    /// (a board's capture FIFO overflowed): reported as `LOSS CAPTURE`
    /// with the queue's own losses.
    pub fn handle_capture_loss(&mut self, ch: usize, n: u32) {
        if let Some(c) = self.chans.get_mut(ch) {
            c.cap.handle_lost(n);
        }
    }

    /// A steady PWM on channel `ch`, fed as a batch of periods.
    pub fn handle_pwm_batch(
        &mut self,
        now: Instant,
        ch: usize,
        start_us: u64,
        period_us: u32,
        high_us: u32,
        count: u32,
    ) {
        if let Some(c) = self.chans.get_mut(ch) {
            c.cap.handle_pwm_batch(start_us, period_us, high_us, count);
            self.drain_capture(ch, now);
        }
    }

    /// Sampled pilot plateaus on channel `ch`.
    pub fn handle_levels(&mut self, now: Instant, ch: usize, high_mv: i32, low_mv: i32) {
        if let Some(c) = self.chans.get_mut(ch) {
            c.cap.handle_levels(now.ticks(), high_mv, low_mv);
            self.drain_capture(ch, now);
        }
    }

    /// Relay sense on channel `ch`.
    pub fn handle_relay(&mut self, now: Instant, ch: usize, closed: bool) {
        if let Some(c) = self.chans.get_mut(ch) {
            c.cap.handle_relay(now.ticks(), closed);
            self.drain_capture(ch, now);
        }
    }

    /// Measured current on channel `ch`, per phase of the station.
    pub fn handle_current(&mut self, now: Instant, ch: usize, da: [u16; 3]) {
        if let Some(c) = self.chans.get_mut(ch) {
            c.cap.handle_current(now.ticks(), da);
            self.drain_capture(ch, now);
        }
    }

    /// The net current per grid phase at the meter's position: the other
    /// loads (which hang at the metered node) plus the current of every
    /// channel the meter sees (a meter on a sub-panel does not see channels
    /// outside it: `CAR <ch> meter=0`), on the phase it is wired to, as it
    /// flows now (the latest reading, never the last reported value).
    #[must_use]
    pub fn site_da(&self) -> [i32; 3] {
        let mut t = self.loads.total_da();
        for c in self.chans.iter().filter(|c| c.metered) {
            let m = c.cap.measured_da();
            for k in 0..3 {
                let ph = (k + usize::from(c.rotation)) % 3;
                t[ph] = t[ph].saturating_add(i32::from(m[k]));
            }
        }
        t
    }

    /// Refresh the meter's register image from the site, and report the
    /// site's true current per phase (what flows at the meter's position,
    /// also while the meter is faulted toward the station) when it moved by
    /// 0.2 A, or when it differed by less at two requests in a row (a
    /// settled value is always reported, and a noisy one at most every
    /// second request).
    fn update_meter(&mut self, now: Instant) {
        let site = self.site_da();
        self.meter.set_site(site, self.cfg.voltage_v);
        let moved = site
            .iter()
            .zip(self.reported_meter.iter())
            .any(|(a, b)| a.abs_diff(*b) >= 2);
        let differs = site != self.reported_meter;
        if moved || (differs && self.meter_differed) {
            self.reported_meter = site;
            self.meter_differed = false;
            self.emit(now.ticks(), Event::Meter { da: site });
        } else {
            self.meter_differed = differs;
        }
    }

    /// Bytes from the leader's Modbus line; the answer, if the meter gives
    /// one (none while silent, garbage while garbled).
    pub fn handle_meter_rx(&mut self, now: Instant, bytes: &[u8]) -> Option<Vec<u8, 256>> {
        self.update_meter(now);
        self.meter.handle_rx(bytes)
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        for ch in 0..self.chans.len() {
            self.handle_channel_timeout(now, ch);
        }
        self.handle_heartbeat(now);
    }

    /// When channel `ch` needs [`Self::handle_channel_timeout`] (a driver
    /// with many channels schedules them one by one instead of scanning).
    #[must_use]
    pub fn channel_timeout(&self, ch: usize) -> Option<Instant> {
        let c = self.chans.get(ch)?;
        crate::time::earliest(c.car.poll_timeout(), c.cap.poll_timeout())
    }

    /// Run channel `ch`'s car and capture timers.
    pub fn handle_channel_timeout(&mut self, now: Instant, ch: usize) {
        let Some(c) = self.chans.get_mut(ch) else {
            return;
        };
        if c.car.poll_timeout().is_some_and(|t| t <= now) {
            c.car.handle_timeout(now);
        }
        if c.cap.poll_timeout().is_some_and(|t| t <= now) {
            c.cap.handle_timeout(now);
            self.drain_capture(ch, now);
        }
    }

    /// When the next heartbeat is due.
    #[must_use]
    pub fn heartbeat_timeout(&self) -> Instant {
        self.next_hb
    }

    /// Emit the heartbeat if it is due, after a `LOSS` event for every
    /// loss count that grew since it was last reported.
    pub fn handle_heartbeat(&mut self, now: Instant) {
        if now >= self.next_hb {
            // A station's partial line (a prompt) is not held forever.
            for ch in 0..self.chans.len() {
                self.flush_debug(now, ch);
            }
            self.report_losses(now);
            self.emit(now.ticks(), Event::Heartbeat);
            self.next_hb = now + self.cfg.heartbeat;
        }
    }

    fn report_losses(&mut self, now: Instant) {
        for ch in 0..self.chans.len() {
            let lost = self.chans[ch].cap.lost_events();
            while self.reported_capture_lost.len() <= ch {
                if self.reported_capture_lost.push(0).is_err() {
                    break;
                }
            }
            if let Some(r) = self.reported_capture_lost.get_mut(ch) {
                if lost != *r {
                    *r = lost;
                    let c = u8::try_from(ch).unwrap_or(u8::MAX);
                    self.emit(now.ticks(), Event::LostCapture { ch: c, total: lost });
                }
            }
        }
        // The LOSS line (and the heartbeat) may push more lines out of a
        // full queue: those are counted and reported at the next heartbeat.
        if self.dropped_lines != self.reported_lines_lost {
            self.reported_lines_lost = self.dropped_lines;
            self.emit(
                now.ticks(),
                Event::LostLines {
                    total: self.dropped_lines,
                },
            );
        }
    }

    /// Bytes station `ch` printed on its debug channel: relayed as `DEBUG`
    /// events when the fixture has the `debug` capability (dropped
    /// otherwise: nothing is wired).
    pub fn handle_debug_rx(&mut self, now: Instant, ch: usize, bytes: &[u8]) {
        if !self.cfg.caps.has(Capability::Debug) || ch >= self.chans.len() {
            return;
        }
        for &b in bytes {
            if !self.chans[ch].debug_rx.push(b) {
                self.flush_debug(now, ch);
                // An empty buffer takes any byte.
                let _ = self.chans[ch].debug_rx.push(b);
            }
            if b == b'\n' {
                self.flush_debug(now, ch);
            }
        }
    }

    fn flush_debug(&mut self, now: Instant, ch: usize) {
        let Some(c) = self.chans.get_mut(ch) else {
            return;
        };
        if c.debug_rx.is_empty() {
            return;
        }
        let data = core::mem::take(&mut c.debug_rx);
        let ch = u8::try_from(ch).unwrap_or(u8::MAX);
        self.emit(now.ticks(), Event::Debug { ch, data });
    }

    /// Bytes the host sent for station `ch`'s debug RX, oldest first, as
    /// many as fit `out`; how many.
    pub fn take_debug_tx(&mut self, ch: usize, out: &mut [u8]) -> usize {
        let Some(c) = self.chans.get_mut(ch) else {
            return 0;
        };
        let mut n = 0;
        while n < out.len() {
            let Some(b) = c.debug_tx.pop_front() else {
                break;
            };
            out[n] = b;
            n += 1;
        }
        n
    }

    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = Some(self.next_hb);
        for c in &self.chans {
            t = crate::time::earliest(t, c.car.poll_timeout());
            t = crate::time::earliest(t, c.cap.poll_timeout());
        }
        t
    }

    /// The next line for the host, encoded into `out`.
    pub fn poll_line(&mut self, out: &mut String<MAX_LINE>) -> bool {
        match self.out.pop_front() {
            Some(l) => protocol::encode(&l, out).is_ok(),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::us;

    fn cmd(f: &mut Fixture<4>, seq: u32, c: Command) {
        let mut s = String::new();
        protocol::encode(&Line::Command { seq, cmd: c }, &mut s).unwrap();
        f.handle_host_rx(us(0), s.as_bytes());
    }

    fn lines(f: &mut Fixture<4>) -> std::vec::Vec<Line> {
        let mut out = std::vec::Vec::new();
        let mut s = String::new();
        while f.poll_line(&mut s) {
            let Parsed::Line(_, l) = protocol::parse_next(s.as_bytes()) else {
                panic!("{s}")
            };
            out.push(l);
        }
        out
    }

    #[test]
    fn hello_first_every_command_answered_errors_are_lines() {
        let mut f = Fixture::<4>::new(
            FixtureConfig {
                channels: 4,
                ..FixtureConfig::default()
            },
            us(0),
        );
        cmd(&mut f, 1, Command::Plug(0));
        assert!(matches!(
            &lines(&mut f)[..],
            [Line::Err {
                seq: 1,
                code: ErrorCode::NoHello,
                ..
            }]
        ));
        cmd(&mut f, 2, Command::Hello { version: 2 });
        assert!(matches!(
            &lines(&mut f)[..],
            [Line::Err {
                seq: 2,
                code: ErrorCode::Version,
                ..
            }]
        ));
        cmd(&mut f, 3, Command::Hello { version: 1 });
        assert!(matches!(&lines(&mut f)[..], [Line::Ok { seq: 3, .. }]));
        cmd(&mut f, 4, Command::Plug(9));
        assert!(matches!(
            &lines(&mut f)[..],
            [Line::Err {
                seq: 4,
                code: ErrorCode::Channel,
                ..
            }]
        ));
        f.handle_host_rx(us(0), b"C 5 PLUG 0*0000\n");
        assert!(matches!(
            &lines(&mut f)[..],
            [Line::Err {
                seq: 5,
                code: ErrorCode::Checksum,
                ..
            }]
        ));
        f.handle_host_rx(us(0), b"C 6 PLUG 0*--\n");
        assert!(matches!(&lines(&mut f)[..], [Line::Ok { seq: 6, .. }]));
        assert!(f.car_load(0).plugged);
    }

    /// A host that connects after the fixture started has seen none of
    /// its events: `RESET` tells it where each channel stands, stamped at
    /// the reset, before the acknowledgement.
    #[test]
    fn reset_reports_each_channels_state_before_its_answer() {
        let mut f = Fixture::<4>::new(
            FixtureConfig {
                channels: 2,
                ..FixtureConfig::default()
            },
            us(0),
        );
        f.handle_levels(us(0), 0, 12_000, 12_000);
        f.handle_levels(us(0), 1, 12_000, 12_000);
        // Nobody was listening: the power-on events are not the run's.
        let _ = lines(&mut f);
        cmd(&mut f, 1, Command::Hello { version: 1 });
        let _ = lines(&mut f);
        let mut s = String::new();
        protocol::encode(
            &Line::Command {
                seq: 2,
                cmd: Command::Reset,
            },
            &mut s,
        )
        .unwrap();
        f.handle_host_rx(us(7_000), s.as_bytes());
        let got = lines(&mut f);
        let pilot_a = |ch: u8| Event::Pilot {
            ch,
            state: Some(crate::iec::PilotState::A),
            high_mv: 12_000,
            low_mv: 12_000,
        };
        assert!(
            matches!(
                &got[..],
                [
                    Line::Event { t_us: 7_000, event: e0, .. },
                    Line::Event { t_us: 7_000, event: e1, .. },
                    Line::Ok { seq: 2, .. },
                ] if *e0 == pilot_a(0) && *e1 == pilot_a(1)
            ),
            "{got:?}"
        );
    }

    #[test]
    fn the_car_follows_what_capture_sees() {
        // Levels tell PWM on and off here, as in the virtual bench.
        let capture = CaptureConfig {
            pwm_timeout: None,
            ..CaptureConfig::default()
        };
        let mut f = Fixture::<4>::new(
            FixtureConfig {
                channels: 1,
                capture,
                ..FixtureConfig::default()
            },
            us(0),
        );
        cmd(&mut f, 1, Command::Hello { version: 1 });
        cmd(&mut f, 2, Command::Plug(0));
        cmd(&mut f, 3, Command::Request(0));
        f.handle_pwm_batch(us(0), 0, 0, 1_000, 267, 40);
        f.handle_relay(us(0) + ms(40), 0, true);
        let mut now = us(0) + ms(40);
        while let Some(t) = f.poll_timeout() {
            if t > us(0) + secs(10) {
                break;
            }
            now = t;
            f.handle_timeout(now);
        }
        let _ = now;
        assert_eq!(f.car_draw_da(0), [160, 0, 0], "16 A read from 26.7 % duty");
        let ls = lines(&mut f);
        assert!(ls.iter().any(|l| matches!(
            l,
            Line::Event {
                event: Event::Duty {
                    ch: 0,
                    duty_bp: 2_670,
                    ..
                },
                ..
            }
        )));
        assert!(ls.iter().any(|l| matches!(
            l,
            Line::Event {
                event: Event::Contactor {
                    ch: 0,
                    closed: true
                },
                t_us: 40_000,
                ..
            }
        )));
        assert!(ls.iter().any(|l| matches!(
            l,
            Line::Event {
                event: Event::Heartbeat,
                ..
            }
        )));
    }

    fn hello(channels: u16) -> Fixture<4> {
        let mut f = Fixture::<4>::new(
            FixtureConfig {
                channels,
                ..FixtureConfig::default()
            },
            us(0),
        );
        cmd(&mut f, 1, Command::Hello { version: 1 });
        let _ = lines(&mut f);
        f
    }

    #[test]
    fn the_meter_sums_true_currents_not_reported_ones() {
        let mut f = hello(1);
        f.handle_current(us(1), 0, [126, 0, 0]);
        // 12.6 -> 12.5 A: under the capture's deadband, not reported yet,
        // but flowing through the meter at once.
        f.handle_current(us(2), 0, [125, 0, 0]);
        assert_eq!(f.site_da(), [125, 0, 0]);
        let currents = |ls: &[Line]| {
            ls.iter()
                .filter_map(|l| match l {
                    Line::Event {
                        event: Event::Current { da, .. },
                        t_us,
                        ..
                    } => Some((*t_us, *da)),
                    _ => None,
                })
                .collect::<std::vec::Vec<_>>()
        };
        assert_eq!(currents(&lines(&mut f)), vec![(1, [126, 0, 0])]);
        // Settled: reported 1 s later.
        let due = f.channel_timeout(0).expect("settle timer");
        f.handle_channel_timeout(due, 0);
        assert_eq!(currents(&lines(&mut f)), vec![(1_000_002, [125, 0, 0])]);
    }

    #[test]
    fn a_settled_meter_value_is_reported_at_the_next_request() {
        let mut f = hello(1);
        let req = {
            let req = [1u8, 4, 0, 0, 0, 18];
            let crc = crc::Crc::<u16>::new(&crc::CRC_16_MODBUS).checksum(&req);
            let mut frame = req.to_vec();
            frame.extend_from_slice(&crc.to_le_bytes());
            frame
        };
        let meters = |f: &mut Fixture<4>| {
            lines(f)
                .into_iter()
                .filter_map(|l| match l {
                    Line::Event {
                        event: Event::Meter { da },
                        ..
                    } => Some(da),
                    _ => None,
                })
                .collect::<std::vec::Vec<_>>()
        };
        f.handle_current(us(1), 0, [126, 0, 0]);
        let _ = f.handle_meter_rx(us(10), &req);
        assert_eq!(meters(&mut f), vec![[126, 0, 0]]);
        f.handle_current(us(20), 0, [125, 0, 0]);
        let _ = f.handle_meter_rx(us(1_000_000), &req);
        assert!(meters(&mut f).is_empty(), "0.1 A: not at the first request");
        let _ = f.handle_meter_rx(us(2_000_000), &req);
        assert_eq!(meters(&mut f), vec![[125, 0, 0]], "held: reported");
    }

    #[test]
    fn dropped_lines_are_reported_and_leave_a_sequence_gap() {
        let mut f = hello(1);
        // The host stops reading: 200 queries give 400 lines (an event and
        // an acknowledgement each) for a queue of OUT_QUEUE (272) lines.
        for k in 0..200 {
            cmd(&mut f, 10 + k, Command::Query(0));
        }
        assert_eq!(f.dropped_lines(), 400 - OUT_QUEUE as u32);
        f.handle_heartbeat(us(0) + secs(1));
        let ls = lines(&mut f);
        let seqs: std::vec::Vec<u32> = ls
            .iter()
            .filter_map(|l| match l {
                Line::Event { seq, .. } => Some(*seq),
                _ => None,
            })
            .collect();
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1) && seqs[0] > 1,
            "events 1.. were dropped: the first left is {}",
            seqs[0]
        );
        assert!(
            ls.iter().any(|l| matches!(
                l,
                Line::Event {
                    event: Event::LostLines { total },
                    ..
                } if *total >= 400 - OUT_QUEUE as u32
            )),
            "{:?}",
            &ls[ls.len() - 3..]
        );
        // The LOSS line and the heartbeat pushed two more out of the full
        // queue: the next heartbeat reports the final count, then nothing.
        f.handle_heartbeat(us(0) + secs(2));
        let lost = |ls: std::vec::Vec<Line>| {
            ls.into_iter()
                .filter_map(|l| match l {
                    Line::Event {
                        event: Event::LostLines { total },
                        ..
                    } => Some(total),
                    _ => None,
                })
                .collect::<std::vec::Vec<_>>()
        };
        let total = 400 - OUT_QUEUE as u32 + 2;
        assert_eq!(lost(lines(&mut f)), vec![total]);
        assert_eq!(f.dropped_lines(), total);
        f.handle_heartbeat(us(0) + secs(3));
        assert!(lost(lines(&mut f)).is_empty());
    }

    #[test]
    fn a_boards_lost_edges_are_reported_as_capture_loss() {
        let mut f = hello(2);
        f.handle_capture_loss(1, 3);
        f.handle_capture_loss(7, 3);
        assert_eq!((f.capture_lost(0), f.capture_lost(1)), (0, 3));
        f.handle_heartbeat(us(0) + secs(1));
        let ls = lines(&mut f);
        assert!(
            ls.iter().any(|l| matches!(
                l,
                Line::Event {
                    event: Event::LostCapture { ch: 1, total: 3 },
                    ..
                }
            )),
            "{ls:?}"
        );
    }

    #[test]
    fn capture_overflow_is_reported() {
        let mut f = hello(1);
        // Twenty relay changes before anyone drains the channel's queue.
        for k in 0..20u64 {
            f.chans[0].cap.handle_relay(k, k % 2 == 0);
        }
        f.drain_capture(0, us(20));
        assert_eq!(f.capture_lost(0), 4);
        f.handle_heartbeat(us(0) + secs(1));
        let ls = lines(&mut f);
        assert!(
            ls.iter().any(|l| matches!(
                l,
                Line::Event {
                    event: Event::LostCapture { ch: 0, total: 4 },
                    ..
                }
            )),
            "{ls:?}"
        );
    }

    #[test]
    fn a_three_phase_car_on_a_one_phase_channel_draws_on_one_phase() {
        let capture = CaptureConfig {
            pwm_timeout: None,
            ..CaptureConfig::default()
        };
        let mut f = Fixture::<4>::new(
            FixtureConfig {
                channels: 1,
                capture,
                ..FixtureConfig::default()
            },
            us(0),
        );
        cmd(&mut f, 1, Command::Hello { version: 1 });
        cmd(&mut f, 2, Command::Car(0, CarSetting::Phases(3)));
        cmd(&mut f, 3, Command::Car(0, CarSetting::SupplyPhases(1)));
        cmd(&mut f, 4, Command::Plug(0));
        cmd(&mut f, 5, Command::Request(0));
        assert!(lines(&mut f).iter().all(|l| !matches!(l, Line::Err { .. })));
        f.handle_pwm_batch(us(0), 0, 0, 1_000, 267, 40);
        f.handle_relay(us(0) + ms(40), 0, true);
        while let Some(t) = f.poll_timeout() {
            if t > us(0) + secs(10) {
                break;
            }
            f.handle_timeout(t);
        }
        assert_eq!(f.car_draw_da(0), [160, 0, 0]);
        assert_eq!(f.car(0).map(Vehicle::supply_phases), Some(1));
    }

    #[test]
    fn the_meter_sees_loads_and_station_currents() {
        let mut f = Fixture::<4>::new(
            FixtureConfig {
                channels: 2,
                ..FixtureConfig::default()
            },
            us(0),
        );
        cmd(&mut f, 1, Command::Hello { version: 1 });
        cmd(&mut f, 2, Command::Car(1, CarSetting::Rotation(1)));
        cmd(
            &mut f,
            3,
            Command::Load {
                name: String::try_from("oven").unwrap(),
                phases: 7,
                da: 130,
                on: true,
            },
        );
        f.handle_current(us(1), 0, [160, 0, 0]);
        f.handle_current(us(2), 1, [100, 0, 0]);
        assert_eq!(f.site_da(), [290, 230, 130]);
        // Channel 1's station is outside a sub-panel meter: not seen.
        cmd(&mut f, 4, Command::Car(1, CarSetting::Metered(false)));
        assert_eq!(f.site_da(), [290, 130, 130]);
        cmd(&mut f, 5, Command::Car(1, CarSetting::Metered(true)));
        // The leader asks the meter (input registers 0..18).
        let req = [1u8, 4, 0, 0, 0, 18];
        let crc = crc::Crc::<u16>::new(&crc::CRC_16_MODBUS).checksum(&req);
        let mut frame = req.to_vec();
        frame.extend_from_slice(&crc.to_le_bytes());
        assert!(f.handle_meter_rx(us(3), &frame).is_some());
        let ls = lines(&mut f);
        assert!(ls.iter().any(|l| matches!(
            l,
            Line::Event {
                event: Event::Meter {
                    da: [290, 230, 130]
                },
                ..
            }
        )));
    }

    #[test]
    fn hello_announces_channels_version_and_caps_and_a_missing_cap_is_refused() {
        let mut f = Fixture::<4>::new(
            FixtureConfig {
                channels: 3,
                caps: Caps::ALL.without(protocol::Capability::Meter),
                ..FixtureConfig::default()
            },
            us(0),
        );
        cmd(&mut f, 1, Command::Hello { version: 1 });
        let [Line::Ok { seq: 1, info }] = &lines(&mut f)[..] else {
            panic!("HELLO answered")
        };
        let hello = FixtureInfo::parse(info).unwrap();
        assert_eq!(hello.channels, 3);
        assert_eq!(hello.fw.as_str(), FIXTURE_VERSION);
        assert!(!hello.caps.has(protocol::Capability::Meter));
        assert!(hello.caps.has(protocol::Capability::SelfTest));
        cmd(&mut f, 2, Command::Meter(MeterFault::Silent));
        assert!(matches!(
            &lines(&mut f)[..],
            [Line::Err { seq: 2, code: ErrorCode::Unsupported, message }]
                if message.contains("no meter capability")
        ));
        assert_eq!(f.meter.fault(), MeterFault::None, "not carried out");
        cmd(&mut f, 3, Command::Plug(0));
        assert!(matches!(&lines(&mut f)[..], [Line::Ok { seq: 3, .. }]));
    }

    #[test]
    fn an_external_selftest_waits_for_the_board_and_is_answered_once() {
        let mut f = Fixture::<4>::new(FixtureConfig::default(), us(0));
        f.set_external_selftest(true);
        cmd(&mut f, 1, Command::Hello { version: 1 });
        cmd(&mut f, 2, Command::SelfTest(3));
        cmd(&mut f, 3, Command::SelfTest(1));
        cmd(&mut f, 4, Command::SelfTest(7));
        let l = lines(&mut f);
        // HELLO answered; seq 2 held; seq 3 refused while 2 runs; 7 is no channel.
        assert_eq!(l.len(), 3, "{l:?}");
        assert!(
            matches!(&l[1], Line::Err { seq: 3, code: ErrorCode::Unsupported, message }
            if message.contains("already running"))
        );
        assert!(matches!(
            &l[2],
            Line::Err {
                seq: 4,
                code: ErrorCode::Channel,
                ..
            }
        ));
        assert_eq!(f.take_selftest(), Some((2, 3)));
        assert_eq!(f.take_selftest(), None, "handed out once");
        let report = crate::selftest::SelfTestReport {
            window_duty_err_ppm: 40,
            duty_err_ppm: 20,
            freq_err_ppm: 3,
            periods: 1_280,
        };
        f.finish_selftest(2, 3, &report);
        let l = lines(&mut f);
        let [Line::Ok { seq: 2, info }] = &l[..] else {
            panic!("{l:?}")
        };
        assert_eq!(protocol::parse_selftest(info).unwrap(), (3, report));
    }

    #[test]
    fn selftest_loops_the_generator_through_the_capture() {
        let mut f = Fixture::<4>::new(FixtureConfig::default(), us(0));
        cmd(&mut f, 1, Command::Hello { version: 1 });
        cmd(&mut f, 2, Command::SelfTest(1));
        cmd(&mut f, 3, Command::SelfTest(9));
        let l = lines(&mut f);
        let Line::Ok { seq: 2, info } = &l[1] else {
            panic!("{l:?}")
        };
        let (ch, r) = protocol::parse_selftest(info).unwrap();
        assert_eq!(ch, 1);
        assert!(r.pass(), "{r:?}");
        assert!(r.duty_err_ppm <= crate::selftest::DUTY_LIMIT_PPM, "{r:?}");
        assert!(r.periods >= 1_000, "{r:?}");
        assert!(matches!(
            &l[2],
            Line::Err {
                seq: 3,
                code: ErrorCode::Channel,
                ..
            }
        ));
        // Deterministic: the same seed, the same figures.
        let mut g = Fixture::<4>::new(FixtureConfig::default(), us(0));
        cmd(&mut g, 1, Command::Hello { version: 1 });
        cmd(&mut g, 2, Command::SelfTest(1));
        assert_eq!(lines(&mut g)[1], l[1]);
        // A fixture without the capability refuses it.
        let mut h = Fixture::<4>::new(
            FixtureConfig {
                caps: Caps::ALL.without(protocol::Capability::SelfTest),
                ..FixtureConfig::default()
            },
            us(0),
        );
        cmd(&mut h, 1, Command::Hello { version: 1 });
        cmd(&mut h, 2, Command::SelfTest(0));
        assert!(matches!(
            &lines(&mut h)[1],
            Line::Err {
                seq: 2,
                code: ErrorCode::Unsupported,
                ..
            }
        ));
    }

    fn relayed(f: &mut Fixture<4>) -> std::vec::Vec<(u64, u8, std::vec::Vec<u8>)> {
        lines(f)
            .into_iter()
            .filter_map(|l| match l {
                Line::Event {
                    t_us,
                    event: Event::Debug { ch, data },
                    ..
                } => Some((t_us, ch, data.as_bytes().to_vec())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn station_debug_lines_are_relayed_verbatim_and_commands_queued() {
        let mut f = hello(2);
        // A whole line at once: one event, stamped when its newline came.
        f.handle_debug_rx(us(5_000), 1, b"T grant 160*1A2B\n");
        // A line in pieces: sent at its newline, stamped then.
        f.handle_debug_rx(us(6_000), 0, b"T joi");
        assert!(relayed(&mut f).len() == 1);
        f.handle_debug_rx(us(7_000), 0, b"ned*0000\r\n");
        assert_eq!(
            relayed(&mut f),
            vec![(7_000, 0, b"T joined*0000\r\n".to_vec())]
        );
        // A line longer than an event: split, nothing lost, in order.
        let long: std::vec::Vec<u8> = (0..300u32).map(|i| b'a' + (i % 26) as u8).collect();
        f.handle_debug_rx(us(8_000), 1, &long);
        f.handle_debug_rx(us(8_000), 1, b"\n");
        let got = relayed(&mut f);
        assert!(got.len() >= 3, "{got:?}");
        let joined: std::vec::Vec<u8> = got.iter().flat_map(|g| g.2.clone()).collect();
        assert_eq!(&joined[..300], &long[..]);
        assert_eq!(&joined[300..], b"\n");
        // A partial line (a prompt) goes out at the heartbeat.
        f.handle_debug_rx(us(9_000), 0, b"> ");
        f.handle_heartbeat(us(1_000_000));
        assert_eq!(relayed(&mut f), vec![(1_000_000, 0, b"> ".to_vec())]);
        // The host writes to a station's debug RX.
        let mut d = DebugBytes::new();
        assert_eq!(d.fill(b"C begin 7 1 1*0000\n"), 19);
        cmd(&mut f, 5, Command::Debug(1, d));
        assert!(matches!(lines(&mut f)[..], [Line::Ok { seq: 5, .. }]));
        let mut out = [0u8; 64];
        assert_eq!(f.take_debug_tx(0, &mut out), 0);
        let n = f.take_debug_tx(1, &mut out);
        assert_eq!(&out[..n], b"C begin 7 1 1*0000\n");
        // A full queue refuses, saying so, and keeps what it has.
        let mut full = DebugBytes::new();
        full.fill(&[b'x'; 128]);
        for seq in 0..4 {
            cmd(&mut f, 10 + seq, Command::Debug(0, full));
        }
        let _ = lines(&mut f);
        cmd(&mut f, 20, Command::Debug(0, full));
        match &lines(&mut f)[..] {
            [Line::Err {
                seq: 20,
                code: ErrorCode::Busy,
                message,
            }] => assert!(message.contains("has 0 bytes free"), "{message}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(f.take_debug_tx(0, &mut [0u8; 1024]), DEBUG_TX_QUEUE);
    }

    #[test]
    fn without_the_debug_capability_nothing_is_relayed_and_debug_is_refused() {
        let mut f = Fixture::<4>::new(
            FixtureConfig {
                channels: 2,
                caps: Caps::ALL.without(Capability::Debug),
                ..FixtureConfig::default()
            },
            us(0),
        );
        cmd(&mut f, 1, Command::Hello { version: 1 });
        let _ = lines(&mut f);
        f.handle_debug_rx(us(5_000), 0, b"T joined*0000\n");
        assert!(relayed(&mut f).is_empty());
        let mut d = DebugBytes::new();
        d.fill(b"hi\n");
        cmd(&mut f, 2, Command::Debug(0, d));
        assert!(matches!(
            lines(&mut f)[..],
            [Line::Err {
                seq: 2,
                code: ErrorCode::Unsupported,
                ..
            }]
        ));
        assert_eq!(f.take_debug_tx(0, &mut [0u8; 8]), 0);
    }
}
