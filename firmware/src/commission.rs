//! Commissioning: the site plan a station is given on its debug channel.
//!
//! Owns the message's format (encode for the harness, a streaming
//! [`Receiver`] for the station) and its authentication: an HMAC-SHA256 with
//! the bench commissioning key over every line of the message. Does not own
//! what is in the plan ([`GroupConfig`] and its validation) nor what the
//! station does with it ([`crate::station::Station`]). Documented for people
//! in `docs/station-telemetry.md`, with the telemetry it answers with.
//!
//! ```text
//! C begin <station id> <stations> <nodes>*CRC
//! C group <group> <leader id> <enabled 0|1>*CRC
//! C key <64 hex digits: the group's link key>*CRC
//! C node <parent index|-> <limit dA> <breaker dA|->*CRC              one per node, in order
//! C station <id> <node> <nameplate dA> <breaker dA|-> <phases 1|3> <rotation 0-2>
//!           <fallback dA> <priority> <weight>*CRC                        one per station (one line)
//! C timing <cycle us> <silent after us> <leader timeout us> <car allowance us>
//!          <join interval us> <rotation period us|-> [<overcurrent retry us|->]*CRC
//!                                                                         (one line; the
//!                                                                         last field may be
//!                                                                         left out: no retry)
//! C meter <headroom|solar> <node> <worst-case other dA> <margin dA> <resume margin dA>
//!         <min pause us> <peak hold> <solar start margin dA> <solar start delay us>
//!         <solar stop margin dA> <solar stop delay us>*CRC               optional (one line)
//! C end <64 hex digits: HMAC-SHA256(bench key, every line above, bodies and newlines)>*CRC
//! ```
//!
//! An operator's limit for one node (a load shed, an installer's cut; see
//! [`LimitCommand`]) is one line, authenticated on its own:
//!
//! ```text
//! L <node index> <limit dA|-> <sequence> <64 hex digits: HMAC-SHA256(bench key, "L <node> <limit> <sequence>")>*CRC
//! ```
//!
//! `-` gives the node its plan's limit back. The leader takes it and answers
//! `T limit <node> <dA>`, or `T limit refused <why>` (`docs/station-telemetry.md`).
//!
//! `*CRC` is the CRC-16/XMODEM of the line before `*` (as on the fixture
//! protocol and in telemetry): a garbled line is caught before the MAC is.
//! Lines that do not start with `C ` are ignored (a terminal's noise). A
//! station keeps an accepted message as it is (a flash page on a board) and
//! feeds it to a new [`Receiver`] at boot, so the same checks run again.
//!
//! Nothing here panics or allocates.

use core::fmt::Write as _;

use crc::{Crc, CRC_16_XMODEM};
use heapless::{String, Vec};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::sharing::config::{
    DynamicConfig, DynamicMode, GroupConfig, NodeConfig, Phase, StationConfig, Timing,
};
use crate::sharing::frame::Key;
use crate::sharing::meter::MeterConfig;
use crate::telemetry::Refusal;
use crate::time::Duration;

const CRC16: Crc<u16> = Crc::<u16>::new(&CRC_16_XMODEM);

/// Longest commissioning line, newline included.
pub const MAX_LINE: usize = 160;

/// The bench commissioning key used when a bench sets none (the virtual
/// bench and QEMU). A lab sets its own, in the station image and in the
/// harness (`SHAREBENCH_COMMISSION_KEY`).
pub const DEFAULT_BENCH_KEY: Key = *b"sharebench default bench key!!!!";

/// A site plan for one station: who it is and the group it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commission<const S: usize, const N: usize> {
    pub id: u8,
    pub group: GroupConfig<S, N>,
}

/// An operator's limit for one node of the running plan, taken by the
/// group's leader ([`crate::sharing::Leader::set_limit`]).
///
/// It can lower a node's limit or give back, up to the plan's own limit,
/// what an earlier one took: never more than the plan. It lasts until the
/// next plan or the leader's next boot (it is not kept in flash: the plan's
/// limit is the breaker-safe one, and an operator who sheds load repeats
/// the command after a reboot). `seq` must rise from one command to the
/// next within a plan, so a recorded command cannot be played again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitCommand {
    /// The node's index in the plan.
    pub node: u16,
    /// The new limit per phase, deciamps; `None`: the plan's limit.
    pub limit_da: Option<u32>,
    pub seq: u32,
}

fn limit_body(cmd: &LimitCommand) -> String<MAX_LINE> {
    let mut body: String<MAX_LINE> = String::new();
    let _ = write!(body, "L {}", cmd.node);
    opt(&mut body, cmd.limit_da);
    let _ = write!(body, " {}", cmd.seq);
    body
}

/// The line (with its newline) that gives a station `cmd`, authenticated
/// with `bench_key`.
#[must_use]
pub fn encode_limit(cmd: &LimitCommand, bench_key: &Key) -> String<MAX_LINE> {
    let mut line = limit_body(cmd);
    if let Some(mut m) = new_mac(bench_key) {
        m.update(line.as_bytes());
        let _ = line.push(' ');
        hex_into(&mut line, &m.finalize().into_bytes());
    }
    let crc = CRC16.checksum(line.as_bytes());
    let _ = writeln!(line, "*{crc:04X}");
    line
}

fn hex_into(out: &mut String<MAX_LINE>, bytes: &[u8]) {
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
}

fn opt(out: &mut String<MAX_LINE>, v: Option<impl core::fmt::Display>) {
    let _ = match v {
        Some(v) => write!(out, " {v}"),
        None => out.write_str(" -"),
    };
}

/// Encode `c` as commissioning lines (each with its newline), authenticated
/// with `bench_key`; `emit` is called once per line.
pub fn encode<const S: usize, const N: usize>(
    c: &Commission<S, N>,
    bench_key: &Key,
    mut emit: impl FnMut(&str),
) {
    let g = &c.group;
    let mut mac = new_mac(bench_key);
    let mut put = |body: &String<MAX_LINE>, mac: &mut Option<Hmac<Sha256>>| {
        if let Some(m) = mac.as_mut() {
            m.update(body.as_bytes());
            m.update(b"\n");
        }
        let mut line = body.clone();
        let crc = CRC16.checksum(body.as_bytes());
        let _ = writeln!(line, "*{crc:04X}");
        emit(&line);
    };
    let mut l: String<MAX_LINE> = String::new();
    let _ = write!(l, "C begin {} {} {}", c.id, g.stations.len(), g.nodes.len());
    put(&l, &mut mac);
    l.clear();
    let _ = write!(
        l,
        "C group {} {} {}",
        g.group,
        g.leader,
        u8::from(g.enabled)
    );
    put(&l, &mut mac);
    l.clear();
    let _ = l.push_str("C key ");
    hex_into(&mut l, &g.key);
    put(&l, &mut mac);
    for n in &g.nodes {
        l.clear();
        let _ = l.push_str("C node");
        opt(&mut l, n.parent);
        let _ = write!(l, " {}", n.limit_da);
        opt(&mut l, n.breaker_da);
        put(&l, &mut mac);
    }
    for s in &g.stations {
        l.clear();
        let _ = write!(l, "C station {} {} {}", s.id, s.node, s.nameplate_da);
        opt(&mut l, s.breaker_da);
        let _ = write!(
            l,
            " {} {} {} {} {}",
            s.phases,
            s.rotation.index(),
            s.fallback_da,
            s.priority,
            s.weight
        );
        put(&l, &mut mac);
    }
    let t = &g.timing;
    l.clear();
    let _ = write!(
        l,
        "C timing {} {} {} {} {}",
        t.cycle.ticks(),
        t.silent_after.ticks(),
        t.leader_timeout.ticks(),
        t.car_allowance.ticks(),
        t.join_interval.ticks()
    );
    opt(&mut l, t.rotation_period.map(|d| d.ticks()));
    opt(&mut l, t.overcurrent_retry.map(|d| d.ticks()));
    put(&l, &mut mac);
    if let Some(d) = &g.dynamic {
        l.clear();
        let _ = write!(
            l,
            "C meter {} {} {} {} {} {} {} {} {} {} {}",
            match d.mode {
                DynamicMode::Headroom => "headroom",
                DynamicMode::SolarSurplus => "solar",
            },
            d.node,
            d.worst_case_other_da,
            d.margin_da,
            d.resume_margin_da,
            d.min_pause.ticks(),
            d.peak_hold_readings,
            d.solar_start_margin_da,
            d.solar_start_delay.ticks(),
            d.solar_stop_margin_da,
            d.solar_stop_delay.ticks()
        );
        put(&l, &mut mac);
    }
    let tag = mac.map(|m| m.finalize().into_bytes());
    l.clear();
    let _ = l.push_str("C end ");
    if let Some(tag) = tag {
        hex_into(&mut l, &tag);
    }
    put(&l, &mut None);
}

fn new_mac(key: &Key) -> Option<Hmac<Sha256>> {
    Hmac::<Sha256>::new_from_slice(key).ok()
}

/// What the receiver has taken so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// Waiting for `C begin`.
    Idle,
    Group,
    Key,
    Nodes,
    Stations,
    Timing,
    /// After timing: an optional meter, then the end.
    Tail,
}

/// A station's side: takes debug-channel bytes, returns a message when one
/// is complete. See the module documentation.
pub struct Receiver<const S: usize, const N: usize> {
    bench_key: Key,
    line: String<MAX_LINE>,
    overlong: bool,
    part: Part,
    id: u8,
    want: (usize, usize),
    group: GroupConfig<S, N>,
    mac: Option<Hmac<Sha256>>,
    /// The last operator's limit line, until [`Receiver::take_limit`].
    limit: Option<Result<LimitCommand, Refusal>>,
}

impl<const S: usize, const N: usize> core::fmt::Debug for Receiver<S, N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Receiver")
            .field("part", &self.part)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

fn empty_group<const S: usize, const N: usize>() -> GroupConfig<S, N> {
    GroupConfig {
        group: 0,
        key: [0; 32],
        enabled: false,
        leader: 0,
        nodes: Vec::new(),
        stations: Vec::new(),
        timing: Timing::default(),
        dynamic: None,
    }
}

/// Whitespace-separated fields with typed reads; every failure is malformed.
struct Fields<'a>(core::str::SplitAsciiWhitespace<'a>);

impl<'a> Fields<'a> {
    fn word(&mut self) -> Result<&'a str, Refusal> {
        self.0.next().ok_or(Refusal::Malformed)
    }
    fn num<T: core::str::FromStr>(&mut self) -> Result<T, Refusal> {
        self.word()?.parse().map_err(|_| Refusal::Malformed)
    }
    fn opt<T: core::str::FromStr>(&mut self) -> Result<Option<T>, Refusal> {
        match self.word()? {
            "-" => Ok(None),
            w => w.parse().map(Some).map_err(|_| Refusal::Malformed),
        }
    }
    /// An optional last field that may also be left out.
    fn opt_last<T: core::str::FromStr>(&mut self) -> Result<Option<T>, Refusal> {
        match self.0.next() {
            None | Some("-") => Ok(None),
            Some(w) => w.parse().map(Some).map_err(|_| Refusal::Malformed),
        }
    }
    fn us(&mut self) -> Result<Duration, Refusal> {
        Ok(Duration::from_ticks(self.num()?))
    }
    fn hex32(&mut self) -> Result<[u8; 32], Refusal> {
        let w = self.word()?.as_bytes();
        if w.len() != 64 {
            return Err(Refusal::Malformed);
        }
        let mut out = [0u8; 32];
        for (k, o) in out.iter_mut().enumerate() {
            let pair =
                core::str::from_utf8(&w[2 * k..2 * k + 2]).map_err(|_| Refusal::Malformed)?;
            *o = u8::from_str_radix(pair, 16).map_err(|_| Refusal::Malformed)?;
        }
        Ok(out)
    }
    fn done(mut self) -> Result<(), Refusal> {
        match self.0.next() {
            None => Ok(()),
            Some(_) => Err(Refusal::Malformed),
        }
    }
}

impl<const S: usize, const N: usize> Receiver<S, N> {
    #[must_use]
    pub fn new(bench_key: Key) -> Self {
        Self {
            bench_key,
            line: String::new(),
            overlong: false,
            part: Part::Idle,
            id: 0,
            want: (0, 0),
            group: empty_group(),
            mac: None,
            limit: None,
        }
    }

    /// The operator's limit line that the last bytes completed (checked:
    /// its CRC, its fields and its MAC), or why it was refused. A limit line
    /// in the middle of a commissioning message leaves the message whole.
    pub fn take_limit(&mut self) -> Option<Result<LimitCommand, Refusal>> {
        self.limit.take()
    }

    /// One byte from the debug channel. Returns the message, or why it was
    /// refused, when its `C end` line arrives (or when a line breaks it).
    pub fn handle_byte(&mut self, b: u8) -> Option<Result<Commission<S, N>, Refusal>> {
        if b != b'\n' {
            if !self.overlong && self.line.push(char::from(b)).is_err() {
                self.overlong = true;
            }
            return None;
        }
        let overlong = core::mem::replace(&mut self.overlong, false);
        let line = core::mem::take(&mut self.line);
        if overlong {
            return self.broken();
        }
        let done = self.take_line(line.trim_end_matches('\r'));
        if done.is_some() {
            self.part = Part::Idle;
            self.mac = None;
        }
        done
    }

    /// Bytes from the debug channel; the outcome of the last message that
    /// ended in them (one message per exchange is the protocol).
    pub fn handle_rx(&mut self, bytes: &[u8]) -> Option<Result<Commission<S, N>, Refusal>> {
        let mut out = None;
        for &b in bytes {
            if let Some(r) = self.handle_byte(b) {
                out = Some(r);
            }
        }
        out
    }

    /// One line: `None` to go on, `Some` when the message ends.
    fn take_line(&mut self, line: &str) -> Option<Result<Commission<S, N>, Refusal>> {
        if line.starts_with("L ") {
            self.limit = Some(self.limit_line(line));
            return None;
        }
        if !line.starts_with("C ") {
            return None; // not commissioning
        }
        let Some((body, crc)) = line.rsplit_once('*') else {
            return self.broken();
        };
        if u16::from_str_radix(crc, 16).ok() != Some(CRC16.checksum(body.as_bytes())) {
            return self.broken();
        }
        let mut f = Fields(body[2..].split_ascii_whitespace());
        let kind = f.word().ok()?;
        if kind == "begin" {
            // A new message restarts, whatever came before.
            return match self.begin(f) {
                Ok(()) => {
                    self.mac = new_mac(&self.bench_key);
                    self.mac_line(body);
                    None
                }
                Err(e) => Some(Err(e)),
            };
        }
        if self.part == Part::Idle {
            return None; // a stray line outside a message
        }
        if kind == "end" {
            return Some(self.end(f));
        }
        match self.take_part(kind, f) {
            Ok(()) => {
                self.mac_line(body);
                None
            }
            Err(e) => Some(Err(e)),
        }
    }

    fn limit_line(&self, line: &str) -> Result<LimitCommand, Refusal> {
        let (body, crc) = line.rsplit_once('*').ok_or(Refusal::Malformed)?;
        if u16::from_str_radix(crc, 16).ok() != Some(CRC16.checksum(body.as_bytes())) {
            return Err(Refusal::Malformed);
        }
        let mut f = Fields(body[2..].split_ascii_whitespace());
        let cmd = LimitCommand {
            node: f.num()?,
            limit_da: f.opt()?,
            seq: f.num()?,
        };
        let tag = f.hex32()?;
        f.done()?;
        // The MAC covers the fields as the encoder writes them: a line with
        // the same numbers spelt otherwise does not verify.
        let mut mac = new_mac(&self.bench_key).ok_or(Refusal::BadMac)?;
        mac.update(limit_body(&cmd).as_bytes());
        mac.verify_slice(&tag).map_err(|_| Refusal::BadMac)?;
        Ok(cmd)
    }

    fn broken(&mut self) -> Option<Result<Commission<S, N>, Refusal>> {
        if self.part == Part::Idle {
            None
        } else {
            Some(Err(Refusal::Malformed))
        }
    }

    fn mac_line(&mut self, body: &str) {
        if let Some(m) = self.mac.as_mut() {
            m.update(body.as_bytes());
            m.update(b"\n");
        }
    }

    fn begin(&mut self, mut f: Fields<'_>) -> Result<(), Refusal> {
        self.part = Part::Idle;
        let id = f.num()?;
        let want = (f.num::<usize>()?, f.num::<usize>()?);
        f.done()?;
        if want.0 > S || want.1 > N {
            return Err(Refusal::TooLarge);
        }
        self.id = id;
        self.want = want;
        self.group = empty_group();
        self.part = Part::Group;
        Ok(())
    }

    fn take_part(&mut self, kind: &str, mut f: Fields<'_>) -> Result<(), Refusal> {
        let g = &mut self.group;
        match (self.part, kind) {
            (Part::Group, "group") => {
                g.group = f.num()?;
                g.leader = f.num()?;
                g.enabled = match f.word()? {
                    "0" => false,
                    "1" => true,
                    _ => return Err(Refusal::Malformed),
                };
                self.part = Part::Key;
            }
            (Part::Key, "key") => {
                g.key = f.hex32()?;
                self.part = if self.want.1 > 0 {
                    Part::Nodes
                } else {
                    Part::Stations
                };
            }
            (Part::Nodes, "node") => {
                let node = NodeConfig {
                    parent: f.opt()?,
                    limit_da: f.num()?,
                    breaker_da: f.opt()?,
                };
                g.nodes.push(node).map_err(|_| Refusal::TooLarge)?;
                if g.nodes.len() == self.want.1 {
                    self.part = Part::Stations;
                }
            }
            (Part::Stations, "station") => {
                let st = StationConfig {
                    id: f.num()?,
                    node: f.num()?,
                    nameplate_da: f.num()?,
                    breaker_da: f.opt()?,
                    phases: f.num()?,
                    rotation: match f.num::<u8>()? {
                        0 => Phase::L1,
                        1 => Phase::L2,
                        2 => Phase::L3,
                        _ => return Err(Refusal::Malformed),
                    },
                    fallback_da: f.num()?,
                    priority: f.num()?,
                    weight: f.num()?,
                };
                g.stations.push(st).map_err(|_| Refusal::TooLarge)?;
                if g.stations.len() == self.want.0 {
                    self.part = Part::Timing;
                }
            }
            (Part::Timing, "timing") => {
                g.timing = Timing {
                    cycle: f.us()?,
                    silent_after: f.us()?,
                    leader_timeout: f.us()?,
                    car_allowance: f.us()?,
                    join_interval: f.us()?,
                    rotation_period: f.opt::<u64>()?.map(Duration::from_ticks),
                    overcurrent_retry: f.opt_last::<u64>()?.map(Duration::from_ticks),
                };
                self.part = Part::Tail;
            }
            (Part::Tail, "meter") if g.dynamic.is_none() => {
                g.dynamic = Some(DynamicConfig {
                    mode: match f.word()? {
                        "headroom" => DynamicMode::Headroom,
                        "solar" => DynamicMode::SolarSurplus,
                        _ => return Err(Refusal::Malformed),
                    },
                    node: f.num()?,
                    meter: MeterConfig::default(),
                    worst_case_other_da: f.num()?,
                    margin_da: f.num()?,
                    resume_margin_da: f.num()?,
                    min_pause: f.us()?,
                    peak_hold_readings: f.num()?,
                    solar_start_margin_da: f.num()?,
                    solar_start_delay: f.us()?,
                    solar_stop_margin_da: f.num()?,
                    solar_stop_delay: f.us()?,
                });
            }
            _ => return Err(Refusal::Malformed),
        }
        f.done()
    }

    fn end(&mut self, mut f: Fields<'_>) -> Result<Commission<S, N>, Refusal> {
        if self.part != Part::Tail {
            return Err(Refusal::Malformed);
        }
        let tag = f.hex32()?;
        f.done()?;
        let mac = self.mac.take().ok_or(Refusal::BadMac)?;
        // Constant-time comparison (hmac's verify).
        mac.verify_slice(&tag).map_err(|_| Refusal::BadMac)?;
        let group = core::mem::replace(&mut self.group, empty_group());
        if group.index_of(self.id).is_none() {
            return Err(Refusal::NotInGroup);
        }
        group.validate().map_err(|_| Refusal::Invalid)?;
        crate::station::point_config(&group, self.id).map_err(|_| Refusal::InvalidPoint)?;
        Ok(Commission { id: self.id, group })
    }
}

#[cfg(test)]
mod tests;
