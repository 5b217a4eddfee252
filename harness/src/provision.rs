//! Provisioning: what the harness gives a station before a run: its site
//! plan (commissioning), authenticated with the bench commissioning key; and
//! its power, through the shell commands a lab's inventory gives each
//! station (`power_cycle`, `power_off`, `power_on`: a USB hub port, a PDU
//! outlet, a relay), each bounded in wall time. Flashing is [`crate::probe`]'s.
//!
//! The message format is `firmware::commission`'s (one definition); this
//! module only picks the key and builds each station's message from the
//! scenario.

use firmware::commission::{self, Commission, DEFAULT_BENCH_KEY};
use firmware::sharing::frame::Key;

use crate::scenario::Scenario;

/// The environment variable that sets the bench commissioning key: 64 hex
/// digits, the same key the station images were built with.
pub const KEY_ENV: &str = "SHAREBENCH_COMMISSION_KEY";

/// The bench commissioning key: `SHAREBENCH_COMMISSION_KEY`, or the default
/// key of the virtual bench and the QEMU images.
pub fn bench_key() -> Result<Key, String> {
    match std::env::var(KEY_ENV) {
        Err(_) => Ok(DEFAULT_BENCH_KEY),
        Ok(hex) => parse_key(&hex).ok_or_else(|| {
            format!(
                "{KEY_ENV} must be 64 hex digits (a 32-byte key), got {} characters",
                hex.len()
            )
        }),
    }
}

fn parse_key(hex: &str) -> Option<Key> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut k = [0u8; 32];
    for (i, b) in k.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(k)
}

/// Station `i`'s commissioning message: its id and the scenario's site plan.
#[must_use]
pub fn commission_text(sc: &Scenario, i: usize, key: &Key) -> String {
    let c = Commission {
        id: sc.stations[i].id,
        group: sc.group_config(),
    };
    let mut text = String::new();
    commission::encode(&c, key, |l| text.push_str(l));
    text
}

/// The sharing group a parked station is put in: not the scenarios' (1),
/// so it ignores their link frames and they ignore its.
pub const PARKED_GROUP: u8 = 2;

/// The id a parked station takes in its group of one.
pub const PARKED_ID: u8 = 250;

/// The plan for a station on the bench that a scenario leaves out: a group
/// of its own (another group id and key), sharing disabled, so it offers
/// nothing and takes no part in the scenario's group. Left on its last
/// plan it would join the scenario's group on the shared link, or lead it.
#[must_use]
pub fn park_text(key: &Key) -> String {
    use firmware::sharing::config as fw;
    let mut nodes = heapless::Vec::new();
    let _ = nodes.push(fw::NodeConfig {
        parent: None,
        limit_da: u32::from(firmware::sharing::alloc::MIN_DA),
        breaker_da: None,
    });
    let mut stations = heapless::Vec::new();
    let _ = stations.push(fw::StationConfig {
        id: PARKED_ID,
        node: 0,
        nameplate_da: firmware::sharing::alloc::MIN_DA,
        breaker_da: None,
        phases: 1,
        rotation: fw::Phase::L1,
        fallback_da: 0,
        priority: 0,
        weight: 1,
    });
    let c: Commission<1, 1> = Commission {
        id: PARKED_ID,
        group: fw::GroupConfig {
            group: PARKED_GROUP,
            key: [0xA7; 32],
            enabled: false,
            leader: PARKED_ID,
            nodes,
            stations,
            timing: fw::Timing::default(),
            dynamic: None,
        },
    };
    let mut text = String::new();
    commission::encode(&c, key, |l| text.push_str(l));
    text
}

/// How long a power command may take.
pub const POWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A station's power control: shell commands from the inventory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Power {
    pub cycle: Option<String>,
    pub off: Option<String>,
    pub on: Option<String>,
}

/// Run one power command (`sh -c`), within [`POWER_TIMEOUT`]: a non-zero
/// exit, or one that does not end, is an error saying which.
pub fn run_power(what: &str, command: &str) -> Result<(), String> {
    run_bounded(what, command, POWER_TIMEOUT)
}

fn run_bounded(what: &str, command: &str, limit: std::time::Duration) -> Result<(), String> {
    let mut child = std::process::Command::new("sh")
        .args(["-c", command])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("{what}: failed to start `{command}`: {e}"))?;
    let deadline = std::time::Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                return Err(format!(
                    "{what}: `{command}` failed ({status}): {}",
                    err.trim()
                ));
            }
            Ok(None) if std::time::Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{what}: `{command}` did not end within {} s",
                    limit.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(std::time::Duration::from_millis(20)),
            Err(e) => return Err(format!("{what}: `{command}`: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_commands_are_run_and_bounded() {
        assert_eq!(run_power("station 1 power cycle", "true"), Ok(()));
        let e = run_power(
            "station 1 power cycle",
            "echo 'hub 1-1 not found' >&2; exit 3",
        )
        .unwrap_err();
        assert!(
            e.starts_with("station 1 power cycle: `echo") && e.contains("hub 1-1 not found"),
            "{e}"
        );
        let t0 = std::time::Instant::now();
        let e = run_bounded(
            "station 2 power off",
            "sleep 10",
            std::time::Duration::from_millis(200),
        )
        .unwrap_err();
        assert!(e.contains("did not end within"), "{e}");
        assert!(t0.elapsed() < std::time::Duration::from_secs(5));
    }

    /// A parked station takes its plan and then stays off the link: no
    /// frame, no meter request, in a minute of its timers.
    #[test]
    fn a_parked_station_takes_its_plan_and_stays_silent() {
        use firmware::station::Station;
        use firmware::telemetry::Telemetry;
        use firmware::time::us;
        let key = [0x3C; 32];
        let mut st: Station<4, 2> = Station::awaiting(key, 9);
        st.handle_debug_rx(us(0), park_text(&key).as_bytes());
        let said: Vec<Telemetry> = core::iter::from_fn(|| st.poll_telemetry()).collect();
        assert!(
            said.contains(&Telemetry::ConfigAccepted {
                stations: 1,
                nodes: 1
            }),
            "{said:?}"
        );
        assert_eq!(st.id(), Some(PARKED_ID));
        let mut frame = [0u8; firmware::sharing::frame::MAX_FRAME];
        assert_eq!(st.poll_transmit(&mut frame), None, "a frame at its boot");
        let mut wakes = 0;
        while let Some(t) = st.poll_timeout().filter(|t| t.ticks() <= 60_000_000) {
            st.handle_timeout(t);
            assert_eq!(st.poll_transmit(&mut frame), None, "a frame at {t:?}");
            assert_eq!(st.poll_meter_transmit(), None);
            wakes += 1;
        }
        assert!(wakes >= 60, "its timers ran {wakes} times in a minute");
        // Another key's station refuses it: the plan is the bench's.
        let mut other: Station<4, 2> = Station::awaiting([0x3D; 32], 9);
        other.handle_debug_rx(us(0), park_text(&key).as_bytes());
        assert_eq!(other.id(), None);
    }

    #[test]
    fn a_key_is_64_hex_digits() {
        assert_eq!(parse_key(&"ab".repeat(32)), Some([0xAB; 32]));
        assert_eq!(parse_key("abc"), None);
        assert_eq!(parse_key(&"zz".repeat(32)), None);
        assert_eq!(parse_key(&"é".repeat(32)), None);
    }
}
