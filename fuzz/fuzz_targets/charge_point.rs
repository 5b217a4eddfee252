//! One charge point (`firmware::charge_point::ChargePoint`) fed a random
//! sequence of pilot levels, allocations, currents, relay sense and time
//! steps. Never panics; after every input at `now` its next wake-up is
//! after `now`; it never offers more than its own limit, nor more than it
//! was last allocated except to finish the first period of a PWM it just
//! started (never a pulse shorter than a period), and it offers current
//! only on a PWM pilot.
#![no_main]

use firmware::charge_point::{ChargePoint, ChargePointConfig, Event, PilotOutput, PWM_PERIOD};
use firmware::pilot::{PilotLevels, PilotState};
use firmware::time::{us, Duration, Instant};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

const STATES: [PilotState; 6] = [
    PilotState::A,
    PilotState::B,
    PilotState::C,
    PilotState::D,
    PilotState::E,
    PilotState::F,
];

/// A pilot sample: a car state's level with noise, or raw millivolts.
fn levels(u: &mut Unstructured<'_>) -> Result<PilotLevels> {
    if u.ratio(1u8, 8)? {
        return Ok(PilotLevels {
            high_mv: u.arbitrary()?,
            low_mv: u.arbitrary()?,
        });
    }
    let s = *u.choose(&STATES)?;
    let noise = i32::from(u.int_in_range(-600i16..=600)?);
    Ok(PilotLevels {
        high_mv: s.nominal_mv() + noise,
        // The diode: -12 V below, or missing (the low plateau follows the high).
        low_mv: if u.ratio(1u8, 10)? {
            s.nominal_mv()
        } else {
            -12_000
        },
    })
}

fn config(u: &mut Unstructured<'_>) -> Result<ChargePointConfig> {
    let nameplate_da = u.int_in_range(60..=800)?;
    let mut c = ChargePointConfig::new(nameplate_da);
    c.max_current_da = u.int_in_range(60..=nameplate_da)?;
    c.allow_ventilation = u.arbitrary()?;
    c.has_relay_sense = u.arbitrary()?;
    Ok(c)
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let Ok(mut cp) = ChargePoint::new(config(u)?) else {
        return Ok(());
    };
    let max_da = cp.config().max_current_da;
    let mut now: Instant = us(u.arbitrary::<u32>()?.into());
    let mut allocated = 0u16;
    // When the PWM now on the pilot was turned on.
    let mut pwm_since: Option<Instant> = None;
    while !u.is_empty() {
        match u.int_in_range(0..=6u8)? {
            0 => cp.handle_pilot(now, levels(u)?),
            1 => {
                allocated = if u.ratio(1u8, 4)? {
                    u.arbitrary()?
                } else {
                    u.int_in_range(0..=900)?
                };
                cp.handle_allocation(now, allocated);
            }
            2 => {
                let mut m = [0u16; 3];
                for x in &mut m {
                    *x = if u.ratio(1u8, 8)? {
                        u.arbitrary()?
                    } else {
                        u.int_in_range(0..=900)?
                    };
                }
                cp.handle_current(now, m);
            }
            3 => cp.handle_relay_sense(now, u.arbitrary()?),
            4 => {
                now += Duration::from_ticks(u.int_in_range(0..=10_000_000u64)?);
                cp.handle_timeout(now);
            }
            _ => {
                // Sleep until the wake-up asked for, as a driver does.
                match cp.poll_timeout() {
                    Some(t) => now = t,
                    None => now += Duration::from_ticks(u.int_in_range(1..=60_000_000u64)?),
                }
                cp.handle_timeout(now);
            }
        }
        while let Some(e) = cp.poll_event() {
            if let Event::Pilot(out) = e {
                let pwm = matches!(out, PilotOutput::Pwm { .. });
                pwm_since = match (pwm, pwm_since) {
                    (true, Some(since)) => Some(since),
                    (true, None) => Some(now),
                    (false, _) => None,
                };
            }
        }
        if let Some(t) = cp.poll_timeout() {
            assert!(t > now, "wake-up at {t} asked at {now}");
        }
        let offered = cp.offered_da();
        assert!(
            offered <= max_da,
            "offers {offered} dA over its {max_da} dA limit"
        );
        let target = if allocated < 60 {
            0
        } else {
            allocated.min(max_da)
        };
        let first_period = pwm_since.is_some_and(|since| now < since + PWM_PERIOD);
        assert!(
            offered <= target || first_period,
            "offers {offered} dA with {allocated} dA allocated"
        );
        if offered > 0 {
            assert!(matches!(cp.pilot_output(), PilotOutput::Pwm { .. }));
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
