//! Unit tests of the station main loop itself: what it does before it has a
//! plan, commissioning, its telemetry, and a leader and a follower over a
//! fake link, stepped from one wake-up to the next.

use super::*;
use crate::charge_point::Fault;
use crate::commission::encode;
use crate::sharing::config::{NodeConfig, Phase, StationConfig, Timing};
use crate::sharing::frame::{self, Deframed, Deframer, Header, Message};
use crate::time::{ms, secs, us, Duration};

/// A station image's size in these tests: four stations, two nodes.
type St = Station<4, 2>;

const BENCH: Key = [9; 32];
const GROUP_KEY: Key = [0x5A; 32];
const LEADER: u8 = 1;
const FOLLOWER: u8 = 2;

/// `s` seconds after boot.
fn at(s: u64) -> Instant {
    us(0) + secs(s)
}

/// Stations `ids` on one circuit of `limit_da`; station 1 leads.
fn plan(ids: &[u8], limit_da: u32) -> GroupConfig<4, 2> {
    let mut nodes = Vec::new();
    nodes
        .push(NodeConfig {
            parent: None,
            limit_da,
            breaker_da: None,
        })
        .unwrap();
    let mut stations = Vec::new();
    for &id in ids {
        stations
            .push(StationConfig {
                id,
                node: 0,
                nameplate_da: 320,
                breaker_da: None,
                phases: 1,
                rotation: Phase::L1,
                fallback_da: 100,
                priority: 0,
                weight: 1,
            })
            .unwrap();
    }
    GroupConfig {
        group: 3,
        key: GROUP_KEY,
        enabled: true,
        leader: LEADER,
        nodes,
        stations,
        timing: Timing::default(),
        dynamic: None,
    }
}

/// The commissioning message for station `id` of `group`, as bytes.
fn message(id: u8, group: &GroupConfig<4, 2>, key: &Key) -> std::vec::Vec<u8> {
    let mut bytes = std::vec::Vec::new();
    let c = Commission {
        id,
        group: group.clone(),
    };
    encode(&c, key, |line| bytes.extend_from_slice(line.as_bytes()));
    bytes
}

fn telemetry(st: &mut St) -> std::vec::Vec<Telemetry> {
    core::iter::from_fn(|| st.poll_telemetry()).collect()
}

fn outputs(st: &mut St) -> std::vec::Vec<Output> {
    core::iter::from_fn(|| st.poll_output()).collect()
}

/// `f`, one input handled at `now`, leaves no deadline at or before `now`
/// (unless one was due already: a board runs it next), and
/// [`Station::handle_timeout`] leaves none at all.
fn handle(st: &mut St, now: Instant, what: &str, f: impl FnOnce(&mut St)) {
    let due = st.poll_timeout().is_some_and(|t| t <= now);
    f(st);
    if let Some(t) = st.poll_timeout() {
        assert!(
            t > now || (due && what != "handle_timeout"),
            "after {what} at {} us the station asks to be woken at {} us",
            now.ticks(),
            t.ticks()
        );
    }
}

/// The pilot plateaus a car's resistors give on what the station drives;
/// `short` shorts the line (0 V, state E).
fn levels(out: PilotOutput, plugged: bool, wants: bool, short: bool) -> PilotLevels {
    let high = match out {
        PilotOutput::MinusTwelve => -12_000,
        _ if short => 0,
        _ if !plugged => 12_000,
        _ if wants => 6_000,
        _ => 9_000,
    };
    let low = match out {
        PilotOutput::Pwm { .. } if !short => -12_000,
        _ => high,
    };
    PilotLevels {
        high_mv: high,
        low_mv: low,
    }
}

/// One station on its board, with a car that draws what it is offered
/// while the contactor is closed, and a relay that follows the coil.
struct Board {
    st: Box<St>,
    plugged: bool,
    wants: bool,
    short: bool,
    coil: bool,
    levels: Option<PilotLevels>,
    /// Every pin change, in order.
    pins: std::vec::Vec<Output>,
    /// Every telemetry line, in order.
    log: std::vec::Vec<Telemetry>,
}

impl Board {
    fn new(st: St) -> Self {
        Self {
            st: Box::new(st),
            plugged: false,
            wants: false,
            short: false,
            coil: false,
            levels: None,
            pins: std::vec::Vec::new(),
            log: std::vec::Vec::new(),
        }
    }

    fn offered_da(&self) -> u16 {
        self.st.status().map_or(0, |s| s.offered_da)
    }

    fn follow_pins(&mut self, now: Instant) {
        while let Some(o) = self.st.poll_output() {
            self.pins.push(o);
            if let Output::Contactor(c) = o {
                self.coil = c;
                handle(&mut self.st, now, "handle_relay_sense", |st| {
                    st.handle_relay_sense(now, c);
                });
            }
        }
    }

    /// The board at `now`: runs the station's timers when due, samples its
    /// inputs until its pins rest, and drains its debug channel.
    fn run(&mut self, now: Instant) {
        self.timers(now);
        self.sample(now);
    }

    fn timers(&mut self, now: Instant) {
        self.follow_pins(now);
        if self.st.poll_timeout().is_some_and(|t| t <= now) {
            handle(&mut self.st, now, "handle_timeout", |st| {
                st.handle_timeout(now)
            });
            self.follow_pins(now);
        }
    }

    fn sample(&mut self, now: Instant) {
        for _ in 0..4 {
            let lv = levels(self.st.pilot_output(), self.plugged, self.wants, self.short);
            if self.levels == Some(lv) {
                break;
            }
            self.levels = Some(lv);
            handle(&mut self.st, now, "handle_pilot", |st| {
                st.handle_pilot(now, lv)
            });
            self.follow_pins(now);
        }
        let draw = if self.coil && self.wants {
            self.offered_da()
        } else {
            0
        };
        handle(&mut self.st, now, "handle_current", |st| {
            st.handle_current(now, [draw, 0, 0]);
        });
        self.follow_pins(now);
        self.log.extend(telemetry(&mut self.st));
    }

    /// Run alone (no link) from `from` to `to`, waking when the station asks.
    fn run_until(&mut self, from: Instant, to: Instant) -> Instant {
        let mut now = from;
        self.run(now);
        while let Some(t) = self.st.poll_timeout().filter(|&t| t <= to) {
            now = t;
            self.run(now);
        }
        self.run(to);
        to
    }
}

#[test]
fn an_awaiting_station_offers_nothing_and_ignores_its_inputs() {
    let mut st = St::awaiting(BENCH, 1);
    let now = at(1);
    st.handle_pilot(
        now,
        PilotLevels {
            high_mv: 6_000,
            low_mv: 6_000,
        },
    );
    st.handle_current(now, [300, 0, 0]);
    st.handle_relay_sense(now, true);
    st.handle_timeout(now);
    // A genuine join from a group's follower, and a meter answer.
    let h = Header {
        group: 3,
        sender: FOLLOWER,
        dest: LEADER,
        boot: 5,
        seq: 1,
    };
    let mut buf = [0; MAX_FRAME];
    let n = frame::encode(&GROUP_KEY, &h, &Message::Join { nonce: 7 }, &mut buf);
    st.handle_link_rx(now, &buf[..n]);
    st.handle_meter_rx(now, &[1, 4, 4, 0, 0, 0, 0, 0, 0]);
    assert_eq!(st.poll_timeout(), None);
    assert_eq!(st.status(), None);
    assert_eq!(st.pilot_output(), PilotOutput::Steady);
    assert_eq!(st.id(), None);
    assert!(st.commission().is_none());
    assert!(st.leader().is_none() && st.follower().is_none());
    assert_eq!(outputs(&mut st), []);
    assert_eq!(st.poll_transmit(&mut buf), None);
    assert_eq!(st.poll_meter_transmit(), None);
    assert_eq!(telemetry(&mut st), []);
}

#[test]
fn an_accepted_plan_is_reported_then_the_boot_in_its_role() {
    for (id, role) in [(LEADER, RoleKind::Leader), (FOLLOWER, RoleKind::Follower)] {
        let mut st = St::awaiting(BENCH, 1);
        let now = at(2);
        // As a UART delivers it: a byte at a time.
        for b in message(id, &plan(&[1, 2, 3], 480), &BENCH) {
            st.handle_debug_rx(now, &[b]);
        }
        assert_eq!(
            telemetry(&mut st),
            [
                Telemetry::ConfigAccepted {
                    stations: 3,
                    nodes: 1
                },
                Telemetry::Boot { role }
            ],
            "station {id}"
        );
        assert_eq!(st.id(), Some(id));
        assert_eq!(st.leader().is_some(), role == RoleKind::Leader);
        assert_eq!(st.follower().is_some(), role == RoleKind::Follower);
        assert!(st.poll_timeout().is_some_and(|t| t > now));
        // It offers nothing on a plan alone: no car, no grant.
        assert_eq!(st.status().map(|s| s.offered_da), Some(0));
        assert_eq!(outputs(&mut st), []);
    }
}

#[test]
fn a_plan_with_the_wrong_bench_key_is_refused_and_nothing_is_offered() {
    let mut b = Board::new(St::awaiting(BENCH, 1));
    b.plugged = true;
    b.wants = true;
    let now = us(0);
    b.st.handle_debug_rx(now, &message(LEADER, &plan(&[1], 320), &[8; 32]));
    b.run_until(now, at(30));
    assert_eq!(b.log, [Telemetry::ConfigRefused(Refusal::BadMac)]);
    assert_eq!(b.st.status(), None);
    assert_eq!(b.offered_da(), 0);
    assert_eq!(b.pins, []);
    assert_eq!(b.st.poll_timeout(), None);

    // A running station keeps its plan when a forged one comes.
    let mut b = Board::new(St::awaiting(BENCH, 1));
    b.plugged = true;
    b.wants = true;
    b.st.handle_debug_rx(now, &message(LEADER, &plan(&[1], 320), &BENCH));
    let now = b.run_until(now, at(30));
    assert_eq!(b.offered_da(), 320);
    let before = b.st.commission();
    b.log.clear();
    b.st.handle_debug_rx(now, &message(LEADER, &plan(&[1], 60), &[8; 32]));
    b.run_until(now, now + secs(30));
    assert_eq!(b.log, [Telemetry::ConfigRefused(Refusal::BadMac)]);
    assert_eq!(b.st.commission(), before);
    assert_eq!(b.offered_da(), 320);
}

#[test]
fn a_second_plan_replaces_the_running_one_and_the_pins_go_safe_first() {
    let mut b = Board::new(St::awaiting(BENCH, 1));
    b.plugged = true;
    b.wants = true;
    b.st.handle_debug_rx(us(0), &message(LEADER, &plan(&[1], 320), &BENCH));
    let now = b.run_until(us(0), at(30));
    assert!(b.coil, "charging on the first plan");
    assert_eq!(b.offered_da(), 320);
    assert_eq!(b.st.commission().unwrap().group.nodes[0].limit_da, 320);
    b.log.clear();
    b.pins.clear();

    let second = plan(&[1], 200);
    // While it charges, a new plan is refused: a swap must not open a
    // loaded contactor.
    b.st.handle_debug_rx(now, &message(LEADER, &second, &BENCH));
    assert_eq!(
        telemetry(&mut b.st),
        [Telemetry::ConfigRefused(Refusal::Busy)]
    );
    assert_eq!(b.st.commission().unwrap().group.nodes[0].limit_da, 320);
    // The car stops; once the contactor is open, the plan is taken.
    b.wants = false;
    let now = b.run_until(now, now + secs(5));
    assert!(!b.coil);
    b.pins.clear();
    let _ = outputs(&mut b.st);
    let _ = telemetry(&mut b.st);
    b.wants = true;
    b.st.handle_debug_rx(now, &message(LEADER, &second, &BENCH));
    assert_eq!(
        outputs(&mut b.st)[..2],
        [Output::Contactor(false), Output::Pilot(PilotOutput::Steady)],
        "the pins go safe before anything else"
    );
    assert_eq!(
        telemetry(&mut b.st),
        [
            Telemetry::ConfigAccepted {
                stations: 1,
                nodes: 1
            },
            Telemetry::Boot {
                role: RoleKind::Leader
            }
        ]
    );
    assert_eq!(b.st.commission().unwrap().group, second);
    // The relay opened with the coil; the station charges again on the
    // new plan, within its limit.
    b.coil = false;
    b.st.handle_relay_sense(now, false);
    b.run_until(now, now + secs(30));
    assert!(b.coil);
    assert_eq!(b.offered_da(), 200);
}

#[test]
fn the_plan_kept_in_flash_boots_the_same_station() {
    let mut first = St::awaiting(BENCH, 1);
    first.handle_debug_rx(us(0), &message(FOLLOWER, &plan(&[1, 2, 3], 480), &BENCH));
    let kept = first.commission().unwrap();
    assert_eq!(kept.id, FOLLOWER);
    assert_eq!(kept.group, plan(&[1, 2, 3], 480));

    // A board writes it to flash with `encode` and feeds it back at boot.
    let mut flash = std::vec::Vec::new();
    encode(&kept, &BENCH, |l| flash.extend_from_slice(l.as_bytes()));
    let mut rebooted = St::awaiting(BENCH, 2);
    rebooted.handle_debug_rx(us(0), &flash);
    assert_eq!(rebooted.commission(), Some(kept));
    assert_eq!(
        telemetry(&mut rebooted)[1],
        Telemetry::Boot {
            role: RoleKind::Follower
        }
    );
}

/// A leader played by hand: joins follower `st` and sends it frames.
struct HandLeader {
    boot: u32,
    seq: u32,
}

impl HandLeader {
    fn send(&mut self, st: &mut St, now: Instant, msg: Message) {
        self.seq += 1;
        let h = Header {
            group: 3,
            sender: LEADER,
            dest: FOLLOWER,
            boot: self.boot,
            seq: self.seq,
        };
        let mut buf = [0; MAX_FRAME];
        let n = frame::encode(&GROUP_KEY, &h, &msg, &mut buf);
        handle(st, now, "handle_link_rx", |st| {
            st.handle_link_rx(now, &buf[..n])
        });
    }

    /// Answer the follower's latest join (waiting for its next one if none
    /// is queued); when it was answered.
    fn join(&mut self, st: &mut St, mut now: Instant) -> Instant {
        let echo = loop {
            let nonce = frames(st).iter().rev().find_map(|f| {
                let mut d = Deframer::new();
                f.iter().find_map(|&b| match d.push(&GROUP_KEY, b) {
                    Some(Deframed::Frame(_, Message::Join { nonce })) => Some(nonce),
                    _ => None,
                })
            });
            if let Some(n) = nonce {
                break n;
            }
            now = st.poll_timeout().expect("the follower asks to join");
            handle(st, now, "handle_timeout", |st| st.handle_timeout(now));
        };
        self.send(st, now, Message::Challenge { echo, nonce: 99 });
        now
    }
}

#[test]
fn grants_are_reported_once_per_change_and_a_lost_leader_as_a_fallback() {
    let t0 = us(0);
    let mut st = St::new(plan(&[1, 2], 480), FOLLOWER, 1, t0).unwrap();
    let mut l = HandLeader { boot: 70, seq: 0 };
    let _ = l.join(&mut st, t0);
    for (i, da) in [200, 200, 300, 300, 300, 100, 100].into_iter().enumerate() {
        l.send(
            &mut st,
            t0 + ms(100 * (i as u64 + 1)),
            Message::Grant { grant_da: da },
        );
    }
    assert_eq!(
        telemetry(&mut st),
        [
            Telemetry::Boot {
                role: RoleKind::Follower
            },
            Telemetry::Joined,
            Telemetry::Grant { da: 200 },
            Telemetry::Grant { da: 300 },
            Telemetry::Grant { da: 100 },
        ]
    );
    // The leader goes quiet: after its timeout the follower falls back to
    // min(grant, fallback), once.
    let mut now = t0 + ms(700);
    while now < t0 + secs(20) {
        now = st.poll_timeout().unwrap();
        handle(&mut st, now, "handle_timeout", |st| st.handle_timeout(now));
        // Its joins go out on the link, unanswered.
        let _ = frames(&mut st);
    }
    assert_eq!(
        telemetry(&mut st),
        [Telemetry::FallbackEntered { da: 100 }, Telemetry::Left]
    );
    // A leader (rebooted) answers and grants: back in the group.
    let mut l = HandLeader { boot: 71, seq: 0 };
    let now = l.join(&mut st, now);
    l.send(&mut st, now + ms(10), Message::Grant { grant_da: 150 });
    l.send(&mut st, now + ms(20), Message::Grant { grant_da: 150 });
    assert_eq!(
        telemetry(&mut st),
        [
            Telemetry::Joined,
            Telemetry::FallbackLeft,
            Telemetry::Grant { da: 150 }
        ]
    );
}

#[test]
fn a_fault_and_its_clearing_are_reported_once_each() {
    let mut b = Board::new(St::new(plan(&[1], 320), LEADER, 1, us(0)).unwrap());
    b.plugged = true;
    b.wants = true;
    let now = b.run_until(us(0), at(20));
    assert!(b.coil);
    b.pins.clear();
    // The pilot shorts to 0 V (state E) and stays shorted.
    b.short = true;
    let now = b.run_until(now, now + secs(30));
    // The fault, then its end (the F hold is over; the latch still keeps
    // the car from charging, so the leader takes its own grant back).
    assert_eq!(
        b.log[1..],
        [
            Telemetry::Grant { da: 320 },
            Telemetry::Fault(Fault::PilotShort),
            Telemetry::FaultCleared,
            Telemetry::Grant { da: 0 },
        ]
    );
    // The contactor opens and the pilot goes to F at once.
    assert_eq!(
        b.pins[..2],
        [
            Output::Contactor(false),
            Output::Pilot(PilotOutput::MinusTwelve)
        ]
    );
    assert_eq!(b.offered_da(), 0);
    // The short is removed: the car charges again, no more fault lines.
    b.short = false;
    b.run_until(now, now + secs(30));
    assert_eq!(b.log[5..], [Telemetry::Grant { da: 320 }], "{:?}", b.log);
    assert_eq!(b.offered_da(), 320);
}

#[test]
fn a_full_telemetry_queue_ends_in_lost_with_the_count() {
    let mut st = St::awaiting(BENCH, 1);
    let forged = message(LEADER, &plan(&[1], 320), &[8; 32]);
    for _ in 0..TELEMETRY_QUEUE + 5 {
        st.handle_debug_rx(us(0), &forged);
    }
    let lines = telemetry(&mut st);
    assert_eq!(lines.len(), TELEMETRY_QUEUE + 1, "{lines:?}");
    assert!(lines[..TELEMETRY_QUEUE]
        .iter()
        .all(|t| *t == Telemetry::ConfigRefused(Refusal::BadMac)));
    assert_eq!(lines[TELEMETRY_QUEUE], Telemetry::Lost { count: 5 });
    // Once said, the loss is not said again.
    st.handle_debug_rx(us(0), &forged);
    assert_eq!(
        telemetry(&mut st),
        [Telemetry::ConfigRefused(Refusal::BadMac)]
    );
}

/// A leader and a follower, each on its board with a car, over a link
/// that delivers every frame to the other after `LATENCY`.
#[test]
fn a_leader_and_a_follower_over_a_link_stay_within_the_limit() {
    const LATENCY: Duration = ms(3);
    const LIMIT_DA: u32 = 320;
    let group = plan(&[1, 2], LIMIT_DA);
    let mut boards = [
        Board::new(St::new(group.clone(), LEADER, 11, us(0)).unwrap()),
        Board::new(St::new(group, FOLLOWER, 12, us(0)).unwrap()),
    ];
    for b in &mut boards {
        b.plugged = true;
        b.wants = true;
    }
    // (deliver at, to board, bytes)
    let mut link: std::vec::Vec<(Instant, usize, std::vec::Vec<u8>)> = std::vec::Vec::new();
    let mut now = us(0);
    let mut steps = 0u32;
    let mut unplugged = false;
    let end = at(120);
    loop {
        steps += 1;
        assert!(steps < 200_000, "runaway");
        let due: std::vec::Vec<_> = link.iter().filter(|l| l.0 <= now).cloned().collect();
        link.retain(|l| l.0 > now);
        for (i, b) in boards.iter_mut().enumerate() {
            b.timers(now);
            for (_, _, bytes) in due.iter().filter(|l| l.1 == i) {
                handle(&mut b.st, now, "handle_link_rx", |st| {
                    st.handle_link_rx(now, bytes)
                });
                b.follow_pins(now);
            }
            b.sample(now);
            let mut buf = [0; MAX_FRAME];
            while let Some(n) = b.st.poll_transmit(&mut buf) {
                link.push((now + LATENCY, 1 - i, buf[..n].to_vec()));
            }
            assert_eq!(b.st.poll_meter_transmit(), None, "no meter in this plan");
        }
        let offered: u32 = boards.iter().map(|b| u32::from(b.offered_da())).sum();
        assert!(
            offered <= LIMIT_DA,
            "at {} ms the stations offer {offered} dA on a {LIMIT_DA} dA circuit",
            now.ticks() / 1000
        );
        if let Some(l) = boards[0].st.leader() {
            let granted: u32 = l.peers().map(|p| u32::from(p.granted_da)).sum();
            assert!(granted <= LIMIT_DA, "the leader granted {granted} dA");
        }
        if !unplugged && now >= at(60) {
            assert_eq!(
                [boards[0].offered_da(), boards[1].offered_da()],
                [160, 160],
                "two cars share the circuit"
            );
            boards[1].plugged = false;
            boards[1].wants = false;
            unplugged = true;
        }
        let next = boards
            .iter()
            .filter_map(|b| b.st.poll_timeout())
            .chain(link.iter().map(|l| l.0))
            .chain((!unplugged).then(|| at(60)))
            .min();
        match next {
            Some(t) if t <= end => {
                assert!(t >= now, "time runs forward");
                now = t;
            }
            _ => break,
        }
    }
    assert_eq!(
        [boards[0].offered_da(), boards[1].offered_da()],
        [320, 0],
        "the car left: the leader's car has the circuit"
    );
    assert_eq!(
        boards[1].log[..2],
        [
            Telemetry::Boot {
                role: RoleKind::Follower
            },
            Telemetry::Joined
        ]
    );
}

#[test]
fn plans_taken_before_the_board_drains_are_reported_in_order() {
    // Two plans in one read of the debug channel (a flash copy and the
    // harness's message, say): each acceptance comes right before the
    // boot it caused, never ahead of lines already queued.
    let mut st = St::awaiting(BENCH, 1);
    let mut bytes = message(LEADER, &plan(&[1], 320), &BENCH);
    bytes.extend(message(FOLLOWER, &plan(&[1, 2], 480), &BENCH));
    st.handle_debug_rx(us(0), &bytes);
    assert_eq!(
        telemetry(&mut st),
        [
            Telemetry::ConfigAccepted {
                stations: 1,
                nodes: 1
            },
            Telemetry::Boot {
                role: RoleKind::Leader
            },
            Telemetry::ConfigAccepted {
                stations: 2,
                nodes: 1
            },
            Telemetry::Boot {
                role: RoleKind::Follower
            },
        ]
    );
    assert_eq!(st.id(), Some(FOLLOWER));
}

/// Frames station `st` queued for the link.
fn frames(st: &mut St) -> std::vec::Vec<std::vec::Vec<u8>> {
    let mut buf = [0; MAX_FRAME];
    core::iter::from_fn(|| st.poll_transmit(&mut buf).map(|n| buf[..n].to_vec())).collect()
}

/// Two stations without cars on a link that delivers in 1 ms, from
/// `from` to `to`, woken when either asks.
fn exchange(a: &mut St, b: &mut St, from: Instant, to: Instant) {
    let mut link: std::vec::Vec<(Instant, usize, std::vec::Vec<u8>)> = std::vec::Vec::new();
    let mut now = from;
    loop {
        let due: std::vec::Vec<_> = link.iter().filter(|l| l.0 <= now).cloned().collect();
        link.retain(|l| l.0 > now);
        for (i, st) in [&mut *a, &mut *b].into_iter().enumerate() {
            if st.poll_timeout().is_some_and(|t| t <= now) {
                handle(st, now, "handle_timeout", |st| st.handle_timeout(now));
            }
            for (_, _, bytes) in due.iter().filter(|l| l.1 == i) {
                handle(st, now, "handle_link_rx", |st| {
                    st.handle_link_rx(now, bytes)
                });
            }
            for f in frames(st) {
                link.push((now + ms(1), 1 - i, f));
            }
        }
        let next = [a.poll_timeout(), b.poll_timeout()]
            .into_iter()
            .flatten()
            .chain(link.iter().map(|l| l.0))
            .min();
        match next {
            Some(t) if t <= to => now = t,
            _ => return,
        }
    }
}

#[test]
fn joins_queued_behind_a_busy_transmitter_still_join() {
    let group = plan(&[1, 2], 480);
    let mut leader = St::new(group.clone(), LEADER, 11, us(0)).unwrap();
    let mut follower = St::new(group, FOLLOWER, 12, us(0)).unwrap();
    // The follower's transmitter is busy (the bus held by others): its
    // join timer runs again before its first Join could go out.
    let again = follower.poll_timeout().unwrap();
    handle(&mut follower, again, "handle_timeout", |st| {
        st.handle_timeout(again);
    });
    let joins = frames(&mut follower);
    let nonces: std::vec::Vec<u64> = joins
        .iter()
        .filter_map(|f| {
            let mut d = Deframer::new();
            f.iter().find_map(|&b| match d.push(&GROUP_KEY, b) {
                Some(Deframed::Frame(_, Message::Join { nonce })) => Some(nonce),
                _ => None,
            })
        })
        .collect();
    assert_eq!(nonces.len(), 2, "two joins queued");
    for f in &joins {
        handle(&mut leader, again, "handle_link_rx", |st| {
            st.handle_link_rx(again, f);
        });
    }
    exchange(&mut leader, &mut follower, again, again + secs(20));
    let seen = leader
        .leader()
        .unwrap()
        .peers()
        .find(|p| p.id == FOLLOWER)
        .unwrap();
    assert!(seen.joined && !seen.silent, "the leader holds it: {seen:?}");
    // Joined once, and never lost its leader.
    assert_eq!(
        telemetry(&mut follower)
            .into_iter()
            .filter(|t| !matches!(t, Telemetry::Grant { .. }))
            .collect::<std::vec::Vec<_>>(),
        [
            Telemetry::Boot {
                role: RoleKind::Follower
            },
            Telemetry::Joined
        ]
    );
    // Each attempt is its own: a challenge to one is no answer to the other.
    assert_ne!(nonces[0], nonces[1], "a join nonce was used twice");
}
