//! The leader: allocates the supply tree's current to the group, safely.
//!
//! Owns the group's runtime view (who joined, who is silent, what each
//! station was granted and still holds), make-before-break, dynamic headroom
//! from the mains meter, rotation, and failover reservations. Uses
//! [`super::alloc`] for the arithmetic and [`super::frame`] for the wire.
//! Does not drive its own charging point: [`Leader::poll_local_allocation`]
//! says what to give it.
//!
//! Safety rules, each enforced here:
//! - The sum of `max(granted, held)` under every node never exceeds its
//!   limit: decreases go out first, and a reduced station's old grant stays
//!   held until it confirms the new duty (with the grant that carried the
//!   cut, not an older one) and its current has fallen to within 0.5 A of
//!   it (or the car's 5 s allowance after the confirmation has passed).
//! - A silent follower's grant is never freed early. It is held until the
//!   follower is heard again, or until its own fallback has certainly taken
//!   effect (`leader_timeout + car_allowance + cycle` of silence), and then
//!   `min(grant, fallback)` stays reserved.
//! - With the meter silent, stale or implausible, the configured worst-case
//!   other load is assumed.
//!
//! Sharing quality:
//! - Reclaim: a car steady for its allowance whose highest reading stays
//!   more than [`RECLAIM_THRESHOLD_DA`] under its offer keeps that reading
//!   plus [`RECLAIM_MARGIN_DA`]; within [`GIVE_BACK_BAND_DA`] of that cap it
//!   gets its full cap back at once.
//! - A reclaim or a give-back reallocates at once (not at the next cycle);
//!   a confirmed cut hands its share on 100 ms later.
//! - While a cut is under way, an increase waits until the whole of it
//!   fits: a part would start the car's 5 s pacing and hold back the rest.
//!
//! Sans-IO: time comes in, bytes come in and go out through `handle_*` and
//! `poll_*`. Nothing panics; nothing is allocated.

use heapless::{Deque, Vec};

use super::alloc::{self, Demand, NodeSlot, ScratchBuf, StationSlot, MIN_DA};
use super::config::{DynamicMode, GroupConfig, GroupConfigError, MAX_NODES, MAX_STATIONS};
use super::frame::{self, Deframed, Deframer, Header, Message, PeerStatus, MAX_FRAME};
use super::meter::{MainsReading, MeterClient};
use crate::charge_point::Status;
use crate::telemetry::Refusal;
use crate::time::{Duration, Instant};

/// Reclaim: a car whose draw has been steady for its allowance and stays
/// more than this below its offer (at its highest reading in that time) has
/// the rest taken back. 0.4 A: the highest reading already carries the
/// sensor's noise, so this only needs to clear the offer's 0.1 A step and
/// the reading's own resolution; it is under OpenEVSE's 0.25 A + margin.
pub const RECLAIM_THRESHOLD_DA: u16 = 4;
/// What a reclaimed car keeps above its highest steady reading: room to
/// show that it wants more (a car that wants more draws up to its offer).
/// Above the worst sensor noise the corpus models (+/-0.3 A,
/// `current_noise`) plus the give-back band, so noise alone never looks
/// like a car asking for more.
pub const RECLAIM_MARGIN_DA: u16 = 5;
/// A reclaimed car that draws within this of its capped offer asks for
/// more: it gets its full cap back at once.
pub const GIVE_BACK_BAND_DA: u16 = 2;

/// How soon after a status that frees or asks for a share the leader
/// reallocates: the time to finish handling the frame.
const REALLOC_DELAY: crate::time::Duration = crate::time::ms(1);
/// How long after a cut is confirmed the share it freed is handed on: the
/// reduced duty has then been on the pilot for 100 periods. A step of a few
/// tenths of a percent is within an averaging instrument's jitter bound
/// and is seen only as its window fills (the fixture's 32-period average:
/// about 64 ms), so without this a fixture would see the new grant before
/// the cut. A cycle later, as before this existed, is up to 2 s.
const HANDOVER_DELAY: crate::time::Duration = crate::time::ms(100);

/// Counters of what the leader refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub crc_errors: u32,
    /// Frames whose MAC did not verify: forged, or another group's key.
    pub mac_errors: u32,
    /// Authenticated frames that were old (sequence not increasing) or out of place.
    pub replays: u32,
    /// Frames from ids outside the group.
    pub foreign: u32,
    pub other_errors: u32,
}

impl LinkStats {
    /// Count a frame that did not decode.
    pub fn count(&mut self, e: frame::FrameError) {
        match e {
            frame::FrameError::Crc => self.crc_errors += 1,
            frame::FrameError::Mac => self.mac_errors += 1,
            _ => self.other_errors += 1,
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Peer {
    boot: Option<u32>,
    last_seq: u32,
    challenge: Option<(u64, u32)>,
    joined: bool,
    last_heard: Option<Instant>,
    status: Option<PeerStatus>,
    granted_da: u16,
    hold_da: u16,
    reduce_seq: Option<u32>,
    reduce_pending: bool,
    hold_confirmed_at: Option<Instant>,
    /// When the last reduction that left a hold went out.
    cut_at: Option<Instant>,
    silent_since: Option<Instant>,
    demand_cap_da: u16,
    last_offered_da: u16,
    last_measured_da: u16,
    /// The highest reading since the offer or the draw last moved: the
    /// draw a reclaim leaves room for, sensor noise included.
    peak_measured_da: u16,
    offer_changed_at: Option<Instant>,
    served_since: Option<Instant>,
    waiting_since: Option<Instant>,
    paused_until: Option<Instant>,
    yielded_at: Option<Instant>,
    target_da: u16,
}

impl Peer {
    fn reserved_da(&self) -> u16 {
        self.granted_da.max(self.hold_da)
    }
}

/// A snapshot of one station as the leader sees it (for telemetry and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerView {
    pub id: u8,
    pub joined: bool,
    pub silent: bool,
    pub granted_da: u16,
    pub reserved_da: u16,
    pub target_da: u16,
    /// The car asks for energy (as last reported).
    pub wants: bool,
    /// What the leader believes the car would draw at most.
    pub demand_cap_da: u16,
    pub paused: bool,
}

/// The leader's transmit queue, in order: room for three frames per station
/// (a challenge or its grant, a cut, and a poll), which is the most one
/// cycle queues.
#[derive(Debug)]
struct TxQueue<const S: usize> {
    slots: [[Option<(u8, Message)>; 3]; S],
    head: usize,
    len: usize,
}

impl<const S: usize> TxQueue<S> {
    const fn new() -> Self {
        Self {
            slots: [[None; 3]; S],
            head: 0,
            len: 0,
        }
    }

    /// Queue a frame; a full queue refuses it (the caller's safety never
    /// rests on a frame being sent: reductions stay held until confirmed).
    fn push_back(&mut self, item: (u8, Message)) -> Result<(), (u8, Message)> {
        let flat = self.slots.as_flattened_mut();
        if self.len >= flat.len() {
            return Err(item);
        }
        let at = (self.head + self.len) % flat.len();
        flat[at] = Some(item);
        self.len += 1;
        Ok(())
    }

    fn pop_front(&mut self) -> Option<(u8, Message)> {
        let flat = self.slots.as_flattened_mut();
        if self.len == 0 {
            return None;
        }
        let item = flat[self.head].take();
        self.head = (self.head + 1) % flat.len();
        self.len -= 1;
        item
    }
}

/// The group's leader. See the module documentation.
///
/// `S` and `N` bound the group's stations and tree nodes (see
/// [`GroupConfig`]); every table here is sized by them.
#[derive(Debug)]
pub struct Leader<const S: usize = MAX_STATIONS, const N: usize = MAX_NODES> {
    cfg: GroupConfig<S, N>,
    me: usize,
    boot: u32,
    seq: u32,
    nonce_counter: u32,
    peers: Vec<Peer, S>,
    deframer: Deframer,
    tx: TxQueue<S>,
    next_cycle: Instant,
    /// When a reclaim, a give-back or a released hold is handed on.
    realloc_at: Option<Instant>,
    started: Instant,
    meter: Option<MeterClient>,
    other_hist: Deque<[i32; 3], 16>,
    solar_on: bool,
    solar_since: Option<Instant>,
    ev_at_request: [i32; 3],
    local_alloc: Option<u16>,
    shortage: bool,
    stats: LinkStats,
    nodes: Vec<NodeSlot, N>,
    slots: Vec<StationSlot, S>,
    scratch: ScratchBuf<S, N>,
    /// Station indices in the order increases are handed out.
    by_rank: [u16; S],
    capacity: Vec<[u32; 3], N>,
    /// Each node's limit in the plan: an operator's limit
    /// ([`Leader::set_limit`]) is never above it.
    plan_limits: Vec<u32, N>,
    /// The sequence number of the last operator's limit taken.
    limit_seq: Option<u32>,
}

impl<const S: usize, const N: usize> Leader<S, N> {
    /// A leader for `cfg`. `boot` must differ at every boot (hardware RNG or a
    /// boot counter in flash): it keeps old frames from being replayed.
    pub fn new(cfg: GroupConfig<S, N>, boot: u32, now: Instant) -> Result<Self, GroupConfigError> {
        cfg.validate()?;
        let me = cfg
            .index_of(cfg.leader)
            .ok_or(GroupConfigError::LeaderNotInGroup { leader: cfg.leader })?;
        let mut peers = Vec::new();
        for s in &cfg.stations {
            let _ = peers.push(Peer {
                demand_cap_da: s.cap_da(),
                ..Peer::default()
            });
        }
        // A leader that boots does not know what the followers offer: one
        // may still run on a grant from before (until its own leader timeout
        // sends it to its fallback). So every follower starts held at its
        // full cap, as if silent since now, until it answers or its
        // fallback is certain.
        for (p, s) in peers.iter_mut().zip(cfg.stations.iter()) {
            p.hold_da = s.cap_da();
            p.silent_since = Some(now);
        }
        if let Some(p) = peers.get_mut(me) {
            p.joined = true;
            p.boot = Some(boot);
            p.hold_da = 0;
            p.silent_since = None;
        }
        // The meter is read a fifth of a cycle after the stations were
        // polled, so the reading and their reports describe the same moment.
        let meter_phase = Duration::from_ticks(cfg.timing.cycle.ticks() / 5);
        let meter = cfg
            .dynamic
            .map(|d| MeterClient::new(d.meter, now + meter_phase));
        let plan_limits = cfg.nodes.iter().map(|n| n.limit_da).collect();
        Ok(Self {
            cfg,
            me,
            boot,
            seq: 0,
            nonce_counter: 0,
            peers,
            deframer: Deframer::new(),
            tx: TxQueue::new(),
            next_cycle: now,
            realloc_at: None,
            started: now,
            meter,
            other_hist: Deque::new(),
            solar_on: false,
            solar_since: None,
            ev_at_request: [0; 3],
            local_alloc: Some(0),
            shortage: false,
            stats: LinkStats::default(),
            nodes: Vec::new(),
            slots: Vec::new(),
            scratch: ScratchBuf::new(),
            by_rank: [0; S],
            capacity: Vec::new(),
            plan_limits,
            limit_seq: None,
        })
    }

    /// An operator's limit for `node` (its index in the plan): `Some(da)`
    /// per phase, or `None` for the plan's own limit. Returns the limit now
    /// in force.
    ///
    /// A lower limit is a cut like any other: the stations above it are
    /// reduced at once (decreases first, each held until its car follows,
    /// [`crate::sharing`]), and nothing rises under the node until what is
    /// held fits. A higher one is handed out from the next cycle. Refused,
    /// with nothing changed: a `seq` not above the last one taken
    /// ([`Refusal::Replayed`]); a node the plan does not have or a limit
    /// that breaks a rule of the plan, such as fallbacks or 6 A per station
    /// without rotation ([`Refusal::Invalid`]); a limit above the plan's
    /// ([`Refusal::AbovePlan`]).
    pub fn set_limit(
        &mut self,
        now: Instant,
        node: u16,
        limit_da: Option<u32>,
        seq: u32,
    ) -> Result<u32, Refusal> {
        if self.limit_seq.is_some_and(|last| seq <= last) {
            return Err(Refusal::Replayed);
        }
        let n = usize::from(node);
        let plan = *self.plan_limits.get(n).ok_or(Refusal::Invalid)?;
        let new = limit_da.unwrap_or(plan);
        if new > plan {
            return Err(Refusal::AbovePlan);
        }
        let old = self.cfg.nodes[n].limit_da;
        self.cfg.nodes[n].limit_da = new;
        if self.cfg.validate().is_err() {
            self.cfg.nodes[n].limit_da = old;
            return Err(Refusal::Invalid);
        }
        self.limit_seq = Some(seq);
        // Before the first cycle there is no capacity and nothing granted:
        // the first cycle computes both under the new limit.
        if new < old && self.capacity.len() == self.cfg.nodes.len() {
            if let Some(c) = self.capacity.get_mut(n) {
                for ph in c.iter_mut() {
                    *ph = (*ph).min(new);
                }
            }
            self.reallocate(now);
        }
        Ok(new)
    }

    #[must_use]
    pub fn config(&self) -> &GroupConfig<S, N> {
        &self.cfg
    }

    #[must_use]
    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// How the leader sees every station.
    pub fn peers(&self) -> impl Iterator<Item = PeerView> + '_ {
        self.peers
            .iter()
            .zip(self.cfg.stations.iter())
            .map(|(p, s)| PeerView {
                id: s.id,
                joined: p.joined,
                silent: p.silent_since.is_some(),
                granted_da: p.granted_da,
                reserved_da: p.reserved_da(),
                target_da: p.target_da,
                wants: p.status.is_some_and(|st| st.wants),
                demand_cap_da: p.demand_cap_da,
                paused: p.paused_until.is_some(),
            })
    }

    /// The latest good meter reading, if any.
    #[must_use]
    pub fn meter_reading(&self, now: Instant) -> Option<MainsReading> {
        self.meter.as_ref().and_then(|m| m.reading(now))
    }

    /// The leader's own charging point's status.
    pub fn handle_local_status(&mut self, now: Instant, status: &Status) {
        let st = to_peer_status(status, self.peers[self.me].granted_da);
        self.accept_status(now, self.me, st);
    }

    /// Bytes from the sharing link.
    pub fn handle_rx(&mut self, now: Instant, bytes: &[u8]) {
        for &b in bytes {
            match self.deframer.push(&self.cfg.key, b) {
                Some(Deframed::Frame(h, m)) => self.handle_frame(now, h, m),
                Some(Deframed::Error(e)) => self.stats.count(e),
                None => {}
            }
        }
    }

    /// Bytes from the meter's line.
    pub fn handle_meter_rx(&mut self, now: Instant, bytes: &[u8]) {
        if let Some(m) = self.meter.as_mut() {
            m.handle_rx(now, bytes);
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(m) = self.meter.as_mut() {
            m.handle_timeout(now);
        }
        if now >= self.next_cycle {
            self.realloc_at = None;
            self.cycle(now);
            // Keep the cycle's phase: a board that wakes late does not
            // push every later cycle back (unless it missed a whole one).
            let next = self.next_cycle + self.cfg.timing.cycle;
            self.next_cycle = if next > now {
                next
            } else {
                now + self.cfg.timing.cycle
            };
        } else if self.realloc_at.is_some_and(|t| now >= t) {
            self.realloc_at = None;
            self.reallocate(now);
        }
    }

    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let meter = self.meter.as_ref().and_then(MeterClient::poll_timeout);
        let cycle = crate::time::earliest(Some(self.next_cycle), self.realloc_at);
        crate::time::earliest(cycle, meter)
    }

    /// Between cycles: hand on a share that a reclaim or a released hold
    /// freed, or give a car back what it asks for, with the capacity of the
    /// last cycle. The same safe steps as a cycle (decreases first and held
    /// until confirmed; increases only into room); the stations whose grant
    /// rose are told now rather than at the next poll.
    fn reallocate(&mut self, now: Instant) {
        let before: Vec<u16, S> = self.peers.iter().map(|p| p.granted_da).collect();
        self.compute_targets(now);
        self.apply_targets(now);
        for (i, was) in before.iter().enumerate() {
            let p = &self.peers[i];
            if i != self.me && p.joined && p.granted_da > *was {
                let msg = Message::Grant {
                    grant_da: p.granted_da,
                };
                let _ = self.tx.push_back((self.cfg.stations[i].id, msg));
            }
        }
    }

    /// The next frame for the sharing link, encoded into `buf`.
    #[must_use]
    pub fn poll_transmit(&mut self, buf: &mut [u8; MAX_FRAME]) -> Option<usize> {
        let (dest, msg) = self.tx.pop_front()?;
        self.seq = self.seq.wrapping_add(1);
        if let (Message::Grant { grant_da }, Some(i)) = (msg, self.cfg.index_of(dest)) {
            let p = &mut self.peers[i];
            // Only a grant that carries the cut (or less) can confirm it. A
            // higher grant queued before the cut (a poll, or an increase
            // handed on between cycles) must not: a status answering it
            // would release the hold while the station may still be
            // raising its offer to that older, higher grant.
            if p.reduce_pending && grant_da <= p.granted_da {
                p.reduce_pending = false;
                p.reduce_seq = Some(self.seq);
            }
        }
        let h = Header {
            group: self.cfg.group,
            sender: self.cfg.leader,
            dest,
            boot: self.boot,
            seq: self.seq,
        };
        Some(frame::encode(&self.cfg.key, &h, &msg, buf))
    }

    /// Bytes for the meter's line.
    #[must_use]
    pub fn poll_meter_transmit(&mut self) -> Option<Vec<u8, 16>> {
        let req = self.meter.as_mut().and_then(MeterClient::poll_transmit)?;
        // The stations' currents as reported when the meter is asked: the
        // reading that comes back is compared with these, not with reports
        // that arrive while the answer is on its way.
        if req.get(2..4) == Some(&super::meter::REG_PHASE_BLOCK.to_be_bytes()[..]) {
            self.ev_at_request = self.ev_now();
        }
        Some(req)
    }

    /// EV current per grid phase from the latest reports of the stations
    /// the meter sees: those under its node. A meter on a sub-panel does not
    /// see the stations elsewhere, so their current is not taken off its
    /// reading (that would pass it off as headroom).
    fn ev_now(&self) -> [i32; 3] {
        let mut ev = [0i32; 3];
        let metered = self.cfg.dynamic.map_or(0, |d| usize::from(d.node));
        for (p, s) in self.peers.iter().zip(self.cfg.stations.iter()) {
            if !self.cfg.is_under(s.node, metered) {
                continue;
            }
            if let Some(st) = p.status {
                for (ph, on) in s.loads().into_iter().enumerate() {
                    if on {
                        let k = if s.phases >= 3 { ph } else { 0 };
                        ev[ph] = ev[ph].saturating_add(i32::from(st.measured_da[k]));
                    }
                }
            }
        }
        ev
    }

    /// A new allocation for the leader's own charging point.
    #[must_use]
    pub fn poll_local_allocation(&mut self) -> Option<u16> {
        self.local_alloc.take()
    }

    fn handle_frame(&mut self, now: Instant, h: Header, m: Message) {
        if h.group != self.cfg.group {
            self.stats.foreign += 1;
            return;
        }
        if h.dest != self.cfg.leader {
            return; // for someone else on the bus
        }
        let Some(i) = self.cfg.index_of(h.sender).filter(|&i| i != self.me) else {
            self.stats.foreign += 1;
            return;
        };
        match m {
            Message::Join { nonce } => {
                self.nonce_counter = self.nonce_counter.wrapping_add(1);
                let challenge = (u64::from(self.boot) << 32) | u64::from(self.nonce_counter);
                self.peers[i].challenge = Some((challenge, h.boot));
                let _ = self.tx.push_back((
                    h.sender,
                    Message::Challenge {
                        echo: nonce,
                        nonce: challenge,
                    },
                ));
            }
            Message::Confirm { echo } => {
                let p = &mut self.peers[i];
                if p.challenge != Some((echo, h.boot)) {
                    self.stats.replays += 1;
                    return;
                }
                // A boot id we knew, changed: the follower rebooted and
                // starts from 0. One we never knew (this leader just booted):
                // it may still offer something, so it is held until its
                // status says otherwise.
                let rebooted = p.boot.is_some() && p.boot != Some(h.boot);
                let unknown = p.boot.is_none();
                p.boot = Some(h.boot);
                p.last_seq = h.seq;
                p.joined = true;
                p.challenge = None;
                p.last_heard = Some(now);
                if rebooted && p.boot.is_some() {
                    // A new boot proved by challenge: the follower starts
                    // from 0 (its firmware offers nothing until granted).
                    let cap = p.demand_cap_da.max(self.cfg.stations[i].cap_da());
                    *p = Peer {
                        boot: p.boot,
                        last_seq: p.last_seq,
                        joined: true,
                        last_heard: p.last_heard,
                        demand_cap_da: cap,
                        ..Peer::default()
                    };
                }
                if unknown {
                    // Keep it at its fallback (what it may run on without a
                    // leader anyway, and inside what is held for it) until
                    // its status confirms; no needless cut to 0.
                    let fallback = self.cfg.stations[i].fallback_da;
                    let p = &mut self.peers[i];
                    p.hold_da = p.hold_da.max(p.granted_da);
                    p.granted_da = fallback.min(p.hold_da);
                    p.reduce_pending = true;
                    p.hold_confirmed_at = None;
                }
                let g = self.peers[i].granted_da;
                let _ = self
                    .tx
                    .push_back((h.sender, Message::Grant { grant_da: g }));
            }
            Message::Status(st) => {
                let p = &mut self.peers[i];
                if !p.joined || p.boot != Some(h.boot) || h.seq <= p.last_seq {
                    self.stats.replays += 1;
                    return;
                }
                p.last_seq = h.seq;
                self.accept_status(now, i, st);
            }
            Message::Challenge { .. } | Message::Grant { .. } => self.stats.replays += 1,
        }
    }

    fn accept_status(&mut self, now: Instant, i: usize, st: PeerStatus) {
        let allowance = self.cfg.timing.car_allowance;
        let cap = self.cfg.stations[i].cap_da();
        let p = &mut self.peers[i];
        p.last_heard = Some(now);
        p.silent_since = None;
        // Reclaim what a car does not draw, and give it back when it wants
        // it. A car's draw counts only once it has stopped moving (ramping
        // cars take their time) and the offer has not changed for the car's
        // allowance.
        let measured = st.measured_da.iter().copied().max().unwrap_or(0);
        if st.offered_da != p.last_offered_da || measured.abs_diff(p.last_measured_da) > 5 {
            p.last_offered_da = st.offered_da;
            p.last_measured_da = measured;
            p.peak_measured_da = measured;
            p.offer_changed_at = Some(now);
        }
        p.peak_measured_da = p.peak_measured_da.max(measured);
        let before = p.demand_cap_da;
        if st.contactor && st.offered_da >= MIN_DA {
            let steady = p.offer_changed_at.is_some_and(|t| now >= t + allowance);
            // `measured` comes off the wire: saturating, so a 0xFFFF
            // reading means "draws everything", never a wrap to a cut.
            let peak = p.peak_measured_da;
            let target = peak.saturating_add(RECLAIM_MARGIN_DA).max(MIN_DA);
            if measured.saturating_add(GIVE_BACK_BAND_DA) >= p.demand_cap_da {
                p.demand_cap_da = cap;
            } else if steady
                && peak.saturating_add(RECLAIM_THRESHOLD_DA) < st.offered_da
                && target.saturating_add(RECLAIM_THRESHOLD_DA) <= p.demand_cap_da
            {
                // Only a real fall moves a reclaimed cap again: noise in a
                // new window must not walk it down.
                p.demand_cap_da = target;
            }
        } else if !st.wants {
            p.demand_cap_da = cap;
        }
        // A share freed or asked for is handed on now, not at the next cycle.
        if p.demand_cap_da != before {
            let at = now + REALLOC_DELAY;
            self.realloc_at = Some(self.realloc_at.map_or(at, |t| t.min(at)));
        }
        p.status = Some(st);
        // A held reduction is released once the new duty is confirmed and
        // the current has fallen, or the car's allowance has passed.
        if p.hold_da > p.granted_da {
            let answered = i == self.me || p.reduce_seq.is_some_and(|s| st.grant_seq >= s);
            if answered && st.offered_da <= p.granted_da {
                let at = *p.hold_confirmed_at.get_or_insert(now);
                // Fallen: within 0.5 A of the new grant (sensor noise), so
                // the share handed on is not still being drawn.
                let limit = u32::from(p.granted_da) + 5;
                if u32::from(measured) <= limit || now >= at + allowance {
                    p.hold_da = 0;
                    p.hold_confirmed_at = None;
                    p.reduce_seq = None;
                    let at = now + HANDOVER_DELAY;
                    self.realloc_at = Some(self.realloc_at.map_or(at, |t| t.min(at)));
                }
            }
        }
    }

    fn secs_since_start(&self, t: Instant) -> u32 {
        let d = t
            .checked_duration_since(self.started)
            .map_or(0, |d| d.ticks() / 1_000_000);
        u32::try_from(d).unwrap_or(u32::MAX >> 2).min(0x3FFF_FFFF)
    }

    fn cycle(&mut self, now: Instant) {
        let t = self.cfg.timing;
        // Silence is counted in cycles, at the instants the cycles were due:
        // a board that wakes a little late (a real clock, QEMU) must not
        // count one cycle more or less than the virtual bench does, which
        // `now` would when the lateness differs between two cycles.
        let tick = self.next_cycle.min(now);
        // Silence: hold the grant, reduce what we keep sending to the fallback.
        for i in 0..self.peers.len() {
            if i == self.me {
                continue;
            }
            let fallback = self.cfg.stations[i].fallback_da;
            let p = &mut self.peers[i];
            let heard_recently = p.last_heard.is_some_and(|h| tick < h + t.silent_after);
            let holds_something = p.reserved_da() > 0;
            if (p.joined && !heard_recently) || (!p.joined && holds_something) {
                if p.silent_since.is_none() {
                    p.silent_since = Some(tick);
                    p.hold_da = p.reserved_da();
                    let reduced = p.granted_da.min(fallback);
                    if reduced < p.granted_da {
                        p.granted_da = reduced;
                        p.reduce_pending = true;
                        p.hold_confirmed_at = None;
                    }
                }
                let certain = p
                    .silent_since
                    .is_some_and(|s| tick >= s + t.leader_timeout + t.car_allowance + t.cycle);
                if certain {
                    p.hold_da = p.hold_da.min(fallback);
                }
            }
        }

        self.compute_capacity(now);
        self.compute_targets(now);
        self.apply_targets(now);

        // Poll every joined follower with its grant.
        for i in 0..self.peers.len() {
            if i != self.me && self.peers[i].joined {
                let msg = Message::Grant {
                    grant_da: self.peers[i].granted_da,
                };
                let _ = self.tx.push_back((self.cfg.stations[i].id, msg));
            }
        }
    }

    /// Per node and phase, what the stations may draw in all.
    fn compute_capacity(&mut self, now: Instant) {
        self.capacity.clear();
        for n in &self.cfg.nodes {
            let _ = self.capacity.push([n.limit_da; 3]);
        }
        let Some(d) = self.cfg.dynamic else { return };
        let node = usize::from(d.node);
        let ev = self.ev_at_request;
        let reading = self.meter.as_ref().and_then(|m| m.reading(now));
        let limit = self.cfg.nodes[node].limit_da;
        let cap = match d.mode {
            DynamicMode::Headroom => {
                let other = match reading {
                    Some(r) => {
                        let mut o = [0i32; 3];
                        for ph in 0..3 {
                            o[ph] = (r.current_da[ph] - ev[ph]).max(0);
                        }
                        if self.other_hist.is_full() {
                            self.other_hist.pop_front();
                        }
                        let _ = self.other_hist.push_back(o);
                        while self.other_hist.len() > usize::from(d.peak_hold_readings.max(1)) + 1 {
                            self.other_hist.pop_front();
                        }
                        // A reading and the stations' reports are not taken at
                        // the same instant, so one reading can overstate the
                        // other loads while a car ramps up. A rise is believed
                        // when two consecutive readings show it (one meter
                        // period later); a fall only after the peak-hold window.
                        let mut peak = if self.other_hist.len() == 1 {
                            o
                        } else {
                            [0i32; 3]
                        };
                        let mut prev: Option<[i32; 3]> = None;
                        for h in &self.other_hist {
                            if let Some(p) = prev {
                                for ph in 0..3 {
                                    peak[ph] = peak[ph].max(p[ph].min(h[ph]));
                                }
                            }
                            prev = Some(*h);
                        }
                        peak.map(|x| u32::try_from(x).unwrap_or(0))
                    }
                    None => {
                        self.other_hist.clear();
                        [d.worst_case_other_da; 3]
                    }
                };
                other.map(|o| limit.saturating_sub(o).saturating_sub(d.margin_da))
            }
            DynamicMode::SolarSurplus => {
                let surplus = match reading {
                    // What the stations draw plus what is exported.
                    Some(r) => {
                        let mut s = [0u32; 3];
                        for ph in 0..3 {
                            s[ph] = u32::try_from((ev[ph] - r.current_da[ph]).max(0)).unwrap_or(0);
                        }
                        s
                    }
                    None => [0; 3],
                };
                let best = surplus.into_iter().max().unwrap_or(0);
                let start = u32::from(MIN_DA) + u32::from(d.solar_start_margin_da);
                let stop = u32::from(MIN_DA.saturating_sub(d.solar_stop_margin_da));
                let (cond, delay) = if self.solar_on {
                    (best < stop, d.solar_stop_delay)
                } else {
                    (best >= start, d.solar_start_delay)
                };
                if cond {
                    let since = *self.solar_since.get_or_insert(now);
                    if now >= since + delay {
                        self.solar_on = !self.solar_on;
                        self.solar_since = None;
                    }
                } else {
                    self.solar_since = None;
                }
                if self.solar_on {
                    // While on, run at least 6 A (a little import is the
                    // price of not flapping), at most the surplus.
                    surplus.map(|s| {
                        s.max(u32::from(MIN_DA))
                            .saturating_sub(d.margin_da)
                            .max(u32::from(MIN_DA))
                    })
                } else {
                    [0; 3]
                }
            }
        };
        if let Some(c) = self.capacity.get_mut(node) {
            for ph in 0..3 {
                c[ph] = c[ph].min(cap[ph]);
            }
        }
    }

    /// Admission order (lower first). Served stations keep their slot for
    /// a rotation period; then waiting stations go first, longest waiting
    /// first; then the served ones whose period is over; last, stations that
    /// gave up their slot less than a period ago, so a rotation moves one
    /// car at a time and nobody is re-admitted ahead of those who waited.
    fn rank(&self, now: Instant, p: &Peer) -> u32 {
        let period = self.cfg.timing.rotation_period;
        let (class, since) = if p.granted_da > 0 {
            let served = p.served_since.unwrap_or(now);
            let expired = self.shortage && period.is_some_and(|r| now >= served + r);
            (if expired { 2 } else { 0 }, served)
        } else if let Some(w) = p.waiting_since {
            let recently_yielded = p
                .yielded_at
                .is_some_and(|y| period.is_some_and(|r| now < y + r));
            (if recently_yielded { 3 } else { 1 }, w)
        } else {
            (3, now)
        };
        let t = self.secs_since_start(since);
        // Among those whose period is over, the one served longest yields
        // first: the most recently started keeps its slot.
        let key = if class == 2 { 0x3FFF_FFFF - t } else { t };
        (class << 30) | key
    }

    fn compute_targets(&mut self, now: Instant) {
        let dynamic = self.cfg.dynamic;
        self.nodes.clear();
        for (n, c) in self.cfg.nodes.iter().zip(self.capacity.iter()) {
            let _ = self.nodes.push(NodeSlot::new(n.parent, *c));
        }
        self.slots.clear();
        for i in 0..self.peers.len() {
            let s = self.cfg.stations[i];
            let p = self.peers[i];
            let fresh = i == self.me
                || p.last_heard
                    .is_some_and(|h| now < h + self.cfg.timing.silent_after);
            let wants =
                self.cfg.enabled && fresh && p.joined && p.status.is_some_and(|st| st.wants);
            let paused = p.paused_until.is_some_and(|u| now < u);
            let fixed = if p.silent_since.is_some() {
                p.reserved_da()
            } else {
                0
            };
            let start_da = match dynamic {
                Some(d) if p.granted_da == 0 => MIN_DA.saturating_add(d.resume_margin_da),
                _ => MIN_DA,
            };
            let _ = self.slots.push(StationSlot::new(Demand {
                node: s.node,
                phases: s.loads(),
                cap_da: if wants && !paused && fixed == 0 {
                    p.demand_cap_da.min(s.cap_da())
                } else {
                    0
                },
                weight: s.weight.max(1),
                priority: s.priority,
                rank: self.rank(now, &p),
                start_da,
                fixed_da: fixed,
            }));
        }
        let n = self.slots.len();
        if alloc::allocate(&mut self.nodes, &mut self.slots, self.scratch.as_scratch()).is_err() {
            // The tree was validated at construction, so this cannot happen;
            // if it did, offering nothing is the safe answer.
            for s in self.slots.iter_mut() {
                s.alloc_da = s.demand.fixed_da;
            }
        }
        self.shortage = false;
        for i in 0..n {
            let slot = self.slots[i];
            let p = &mut self.peers[i];
            if slot.demand.fixed_da > 0 {
                p.target_da = p.granted_da;
                continue;
            }
            p.target_da = slot.alloc_da;
            if slot.demand.cap_da > 0 && slot.alloc_da == 0 {
                self.shortage = true;
                if let (Some(d), true) = (dynamic, p.granted_da > 0) {
                    p.paused_until = Some(now + d.min_pause);
                }
            }
        }
    }

    fn apply_targets(&mut self, now: Instant) {
        let dynamic = self.cfg.dynamic.is_some();
        // 1. Decreases go out first.
        for i in 0..self.peers.len() {
            let p = &mut self.peers[i];
            if p.silent_since.is_some() || p.target_da >= p.granted_da {
                continue;
            }
            p.hold_da = p.hold_da.max(p.granted_da);
            p.granted_da = p.target_da;
            p.hold_confirmed_at = None;
            p.cut_at = Some(now);
            if i == self.me {
                self.local_alloc = Some(p.granted_da);
            } else {
                p.reduce_pending = true;
                let _ = self.tx.push_back((
                    self.cfg.stations[i].id,
                    Message::Grant {
                        grant_da: p.granted_da,
                    },
                ));
            }
        }
        // 2. What is held under every node now.
        let mut reserved: Vec<[u32; 3], N> = Vec::new();
        for _ in 0..self.cfg.nodes.len() {
            let _ = reserved.push([0; 3]);
        }
        for (p, s) in self.peers.iter().zip(self.cfg.stations.iter()) {
            self.walk(
                s.node,
                s.loads(),
                |r: &mut [u32; 3], ph| r[ph] = r[ph].saturating_add(u32::from(p.reserved_da())),
                &mut reserved,
            );
        }
        // 3. Increases where room is, best priority and rank first. While
        // a make-before-break is under way (a reduced station still holds
        // its old grant), an increase waits for the whole of its share
        // rather than taking part of it: a part would start the car's
        // pacing window and hold back the rest by another 5 s.
        // A cut that is not confirmed within the car's allowance and two
        // cycles (a lost downlink) stops holding the others back.
        let t = self.cfg.timing;
        let cutting = self.peers.iter().any(|p| {
            p.silent_since.is_none()
                && p.hold_da > p.granted_da
                && p.cut_at
                    .is_some_and(|c| now < c + t.car_allowance + t.cycle + t.cycle)
        });
        let n = self.peers.len();
        for k in 0..n {
            self.by_rank[k] = k as u16;
        }
        let ranks: Vec<(u8, u32), S> = (0..n)
            .map(|i| {
                (
                    self.cfg.stations[i].priority,
                    self.rank(now, &self.peers[i]),
                )
            })
            .collect();
        self.by_rank[..n]
            .sort_unstable_by_key(|&i| (u8::MAX - ranks[i as usize].0, ranks[i as usize].1, i));
        for k in 0..n {
            let i = usize::from(self.by_rank[k]);
            let s = self.cfg.stations[i];
            let p = self.peers[i];
            if p.silent_since.is_some() || p.target_da <= p.granted_da {
                continue;
            }
            let mut room = u32::MAX;
            let mut cur = Some(s.node);
            while let Some(c) = cur {
                let c = usize::from(c);
                for (ph, on) in s.loads().into_iter().enumerate() {
                    if on {
                        room = room.min(self.capacity[c][ph].saturating_sub(reserved[c][ph]));
                    }
                }
                cur = self.cfg.nodes[c].parent;
            }
            // The held part of this station's own reservation is available to it.
            let own_hold = u32::from(p.hold_da.saturating_sub(p.granted_da));
            let room = room.saturating_add(own_hold);
            let want = u32::from(p.target_da - p.granted_da);
            if cutting && room < want {
                continue;
            }
            let inc = want.min(room);
            let new = p.granted_da + u16::try_from(inc).unwrap_or(0);
            if new < MIN_DA || inc == 0 {
                continue;
            }
            if dynamic && p.granted_da > 0 && inc < 5 {
                continue; // no steps under 0.5 A with a meter: no flapping
            }
            let added = u32::from(new.max(p.hold_da)) - u32::from(p.reserved_da());
            self.walk(
                s.node,
                s.loads(),
                |r: &mut [u32; 3], ph| r[ph] += added,
                &mut reserved,
            );
            let p = &mut self.peers[i];
            p.granted_da = new;
            if i == self.me {
                self.local_alloc = Some(new);
            }
        }
        // 4. Who is served and who waits (for rotation).
        for p in self.peers.iter_mut() {
            let wants = p.status.is_some_and(|s| s.wants);
            if p.granted_da > 0 {
                p.served_since.get_or_insert(now);
                p.waiting_since = None;
            } else {
                if p.served_since.take().is_some() && wants {
                    p.yielded_at = Some(now);
                }
                if wants {
                    p.waiting_since.get_or_insert(now);
                } else {
                    p.waiting_since = None;
                }
            }
        }
    }

    fn walk(
        &self,
        node: u16,
        loads: [bool; 3],
        mut f: impl FnMut(&mut [u32; 3], usize),
        acc: &mut Vec<[u32; 3], N>,
    ) {
        let mut cur = Some(node);
        while let Some(c) = cur {
            let c = usize::from(c);
            if let Some(r) = acc.get_mut(c) {
                for (ph, on) in loads.into_iter().enumerate() {
                    if on {
                        f(r, ph);
                    }
                }
            }
            cur = self.cfg.nodes.get(c).and_then(|n| n.parent);
        }
    }
}

/// A charging point's status as the link carries it.
#[must_use]
pub fn to_peer_status(s: &Status, granted_da: u16) -> PeerStatus {
    PeerStatus {
        state: s.state.letter() as u8,
        wants: s.wants_energy,
        contactor: s.contactor_closed,
        fault: s.fault.is_some(),
        offered_da: s.offered_da,
        measured_da: s.measured_da,
        grant_seq: 0,
        granted_da,
    }
}
