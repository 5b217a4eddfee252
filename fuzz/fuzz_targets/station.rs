//! Two commissioned stations (`firmware::station::Station`), a leader and
//! a follower on one link, fed random input: pilot, current and relay
//! readings, link bytes (garbage, and frames authenticated with the group
//! key, so they reach the leader's and follower's state machines), meter
//! bytes, debug-channel bytes, the other station's frames (some dropped)
//! and time. Never panics; after every input at `now` no station asks to
//! wake before `now` (at `now` is allowed: the leader's meter client, after
//! a response timeout with its next round already due, asks for one more
//! call at the same instant); no station ever offers more than its own cap.
#![no_main]

#[path = "common/plan.rs"]
mod plan;

use firmware::commission::{encode, Commission, DEFAULT_BENCH_KEY};
use firmware::pilot::{PilotLevels, PilotState};
use firmware::sharing::frame::{self, Header, Message, PeerStatus, MAX_FRAME};
use firmware::station::Station;
use firmware::time::{us, Duration, Instant};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

type St = Station<4, 2>;

const IDS: [u8; 2] = [1, 2];

fn levels(u: &mut Unstructured<'_>) -> Result<PilotLevels> {
    if u.ratio(1u8, 8)? {
        return Ok(PilotLevels {
            high_mv: u.arbitrary()?,
            low_mv: u.arbitrary()?,
        });
    }
    let s = *u.choose(&[
        PilotState::A,
        PilotState::B,
        PilotState::C,
        PilotState::D,
        PilotState::E,
    ])?;
    Ok(PilotLevels {
        high_mv: s.nominal_mv() + i32::from(u.int_in_range(-500i16..=500)?),
        low_mv: -12_000,
    })
}

fn message(u: &mut Unstructured<'_>) -> Result<Message> {
    Ok(match u.int_in_range(0..=4u8)? {
        0 => Message::Join {
            nonce: u.arbitrary()?,
        },
        1 => Message::Challenge {
            echo: u.arbitrary()?,
            nonce: u.arbitrary()?,
        },
        2 => Message::Confirm {
            echo: u.arbitrary()?,
        },
        3 => Message::Grant {
            grant_da: if u.arbitrary()? {
                u.arbitrary()?
            } else {
                u.int_in_range(0..=900)?
            },
        },
        _ => Message::Status(PeerStatus {
            state: *u.choose(b"ABCDEF?")?,
            wants: u.arbitrary()?,
            contactor: u.arbitrary()?,
            fault: u.arbitrary()?,
            offered_da: u.int_in_range(0..=900)?,
            measured_da: [u.int_in_range(0..=900)?, u.arbitrary()?, u.arbitrary()?],
            grant_seq: u.arbitrary()?,
            granted_da: u.int_in_range(0..=900)?,
        }),
    })
}

/// Every station has handled `now`: none may ask to wake before it, none
/// may offer more than its cap.
fn check(st: &mut [St; 2], caps: [u16; 2], now: Instant) {
    for (s, cap) in st.iter_mut().zip(caps) {
        if let Some(t) = s.poll_timeout() {
            assert!(t >= now, "wake-up at {t} asked at {now}");
        }
        if let Some(status) = s.status() {
            assert!(
                status.offered_da <= cap,
                "offers {} dA over its {cap} dA cap",
                status.offered_da
            );
        }
        while s.poll_output().is_some() {}
        while s.poll_telemetry().is_some() {}
    }
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let group = plan::plan::<4, 2>(u, &IDS)?;
    let key = group.key;
    let mut now: Instant = us(u.arbitrary::<u32>()?.into());
    let mut st = [
        St::awaiting(DEFAULT_BENCH_KEY, u.arbitrary()?),
        St::awaiting(DEFAULT_BENCH_KEY, u.arbitrary()?),
    ];
    let mut caps = [0u16; 2];
    for (k, s) in st.iter_mut().enumerate() {
        let c = Commission {
            id: IDS[k],
            group: group.clone(),
        };
        let mut msg = Vec::new();
        encode(&c, &DEFAULT_BENCH_KEY, |l| {
            msg.extend_from_slice(l.as_bytes())
        });
        s.handle_debug_rx(now, &msg);
        if s.id() != Some(IDS[k]) {
            return Ok(()); // a plan this station refuses
        }
        caps[k] = group.stations[k].cap_da();
    }
    check(&mut st, caps, now);
    let mut buf = [0u8; MAX_FRAME];
    let mut seq = 0u32;
    while !u.is_empty() {
        let k = usize::from(u.arbitrary::<bool>()?);
        match u.int_in_range(0..=9u8)? {
            0 => st[k].handle_pilot(now, levels(u)?),
            1 => {
                let m = [u.int_in_range(0..=900)?, u.arbitrary()?, u.arbitrary()?];
                st[k].handle_current(now, m);
            }
            2 => st[k].handle_relay_sense(now, u.arbitrary()?),
            3 => {
                let n = u.int_in_range(0..=MAX_FRAME * 2)?;
                st[k].handle_link_rx(now, u.bytes(n)?);
            }
            4 => {
                // A frame with a good MAC: a peer, a replay or a forger with the key.
                seq = if u.ratio(1u8, 4)? {
                    u.arbitrary()?
                } else {
                    seq.wrapping_add(1)
                };
                let h = Header {
                    group: if u.ratio(1u8, 8)? {
                        u.arbitrary()?
                    } else {
                        group.group
                    },
                    sender: *u.choose(&[1, 2, 3, 0xFF])?,
                    dest: *u.choose(&[1, 2, 3, 0, 0xFF])?,
                    boot: if u.ratio(1u8, 4)? { u.arbitrary()? } else { 7 },
                    seq,
                };
                let n = frame::encode(&key, &h, &message(u)?, &mut buf);
                st[k].handle_link_rx(now, &buf[..n]);
            }
            5 => {
                let n = u.int_in_range(0..=64)?;
                st[k].handle_meter_rx(now, u.bytes(n)?);
            }
            6 => {
                let n = u.int_in_range(0..=64)?;
                st[k].handle_debug_rx(now, u.bytes(n)?);
            }
            7 => {
                // The link: every frame `k` sends reaches the other, unless dropped.
                while let Some(n) = st[k].poll_transmit(&mut buf) {
                    if !u.ratio(1u8, 8)? {
                        st[1 - k].handle_link_rx(now, &buf[..n]);
                    }
                }
                while st[k].poll_meter_transmit().is_some() {}
            }
            8 => {
                now += Duration::from_ticks(u.int_in_range(0..=10_000_000u64)?);
                for s in &mut st {
                    s.handle_timeout(now);
                }
            }
            _ => {
                // Sleep until the first wake-up either station asked for.
                let next = match (st[0].poll_timeout(), st[1].poll_timeout()) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                now = next.unwrap_or(now + Duration::from_ticks(1_000_000));
                for s in &mut st {
                    s.handle_timeout(now);
                }
            }
        }
        check(&mut st, caps, now);
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
