//! The station image in QEMU: boots, answers on its debug channel, and
//! drives its pins over the wire bridge (`docs/wire-bridge.md`) through a
//! charge. Needs `qemu-system-arm` and `cargo xtask images`; `.ci/run` runs
//! it with `--ignored`.
//!
//! Every wait has a wall-clock deadline; QEMU is killed on every path (the
//! guard's `Drop`), including a failed assertion.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use firmware::bridge::{PinLine, SenseLine};
use firmware::charge_point::PilotOutput;
use firmware::commission::{Commission, DEFAULT_BENCH_KEY};
use firmware::pilot::PilotLevels;
use firmware::station::Output;
use firmware::telemetry::{parse_line, Refusal, RoleKind, Telemetry};

/// The longest any one step may take before the test gives up.
const STEP: Duration = Duration::from_secs(15);

/// The image `cargo xtask images` built (beside this test's target dir),
/// or `SHAREBENCH_QEMU_IMAGE` (to measure the larger-group images).
fn image() -> PathBuf {
    if let Some(p) = std::env::var_os("SHAREBENCH_QEMU_IMAGE") {
        return PathBuf::from(p);
    }
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let target = tmp.parent().map_or(tmp.clone(), |p| p.to_path_buf());
    target.join("images").join("station-qemu.elf")
}

/// QEMU, killed and reaped when dropped.
struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One UART's socket: bytes read so far, split into lines.
struct Uart {
    name: &'static str,
    stream: TcpStream,
    buf: Vec<u8>,
    lines: Vec<String>,
}

impl Uart {
    fn poll(&mut self) {
        let mut chunk = [0u8; 512];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("{}: read failed: {e}", self.name),
            }
        }
        while let Some(at) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=at).collect();
            self.lines
                .push(String::from_utf8_lossy(&line).trim_end().to_string());
        }
    }

    fn send(&mut self, line: &str) {
        self.stream
            .write_all(line.as_bytes())
            .unwrap_or_else(|e| panic!("{}: write failed: {e}", self.name));
    }
}

struct Bench {
    qemu: Qemu,
    /// QEMU's monitor (for a memory dump at the end).
    monitor: TcpStream,
    debug: Uart,
    bridge: Uart,
    link: Uart,
    meter: Uart,
    started: Instant,
}

impl Bench {
    fn start() -> Self {
        let elf = image();
        assert!(
            elf.is_file(),
            "{} is missing: run `cargo xtask images` first",
            elf.display()
        );
        let listeners: Vec<TcpListener> = (0..5)
            .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a loopback port"))
            .collect();
        let mut cmd = Command::new("qemu-system-arm");
        cmd.args(["-M", "mps2-an386", "-nographic", "-semihosting"])
            .arg("-kernel")
            .arg(&elf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // `SHAREBENCH_QEMU_ICOUNT=shift=5,sleep=off` (for example) runs the
        // guest on instruction-counted time.
        if let Some(icount) = std::env::var_os("SHAREBENCH_QEMU_ICOUNT") {
            cmd.arg("-icount").arg(icount);
        }
        // UART0 debug, UART1 wire bridge, UART2 RS-485 link, UART3 meter,
        // then the monitor.
        for (i, l) in listeners.iter().enumerate() {
            let port = l.local_addr().expect("local address").port();
            let flag = if i < 4 { "-serial" } else { "-monitor" };
            cmd.args([flag, &format!("tcp:127.0.0.1:{port}")]);
        }
        let started = Instant::now();
        let qemu = Qemu(
            cmd.spawn()
                .expect("qemu-system-arm runs (is it installed?)"),
        );
        let mut accepted = Vec::new();
        for (l, name) in listeners
            .iter()
            .zip(["debug", "bridge", "link", "meter", "monitor"])
        {
            l.set_nonblocking(true).expect("nonblocking listener");
            let deadline = Instant::now() + STEP;
            let stream = loop {
                match l.accept() {
                    Ok((s, _)) => break s,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        assert!(
                            Instant::now() < deadline,
                            "QEMU did not connect its {name} UART within {STEP:?}"
                        );
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => panic!("accepting QEMU's {name} UART: {e}"),
                }
            };
            stream.set_nonblocking(true).expect("nonblocking stream");
            accepted.push(Uart {
                name,
                stream,
                buf: Vec::new(),
                lines: Vec::new(),
            });
        }
        let mut it = accepted.into_iter();
        let (Some(debug), Some(bridge), Some(link), Some(meter), Some(monitor)) =
            (it.next(), it.next(), it.next(), it.next(), it.next())
        else {
            unreachable!("four UARTs and the monitor were accepted")
        };
        Self {
            qemu,
            monitor: monitor.stream,
            debug,
            bridge,
            link,
            meter,
            started,
        }
    }

    /// Poll every UART until `found` picks something out of `which`'s lines
    /// (taking the lines up to it), or fail after [`STEP`].
    fn wait_for<T>(
        &mut self,
        which: fn(&mut Self) -> &mut Uart,
        what: &str,
        mut found: impl FnMut(&str) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + STEP;
        loop {
            for u in [
                &mut self.debug,
                &mut self.bridge,
                &mut self.link,
                &mut self.meter,
            ] {
                u.poll();
            }
            let u = which(self);
            if let Some((i, t)) = u
                .lines
                .iter()
                .enumerate()
                .find_map(|(i, l)| found(l).map(|t| (i, t)))
            {
                u.lines.drain(..=i);
                return t;
            }
            if let Ok(Some(status)) = self.qemu.0.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = self.qemu.0.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("QEMU exited ({status}) while waiting for {what}: {err}");
            }
            assert!(
                Instant::now() < deadline,
                "no {what} within {STEP:?}; debug {:?}, bridge {:?}",
                self.debug.lines,
                self.bridge.lines
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn telemetry(&mut self, want: Telemetry) {
        self.wait_for(
            |b| &mut b.debug,
            &format!("telemetry {want:?}"),
            |l| (parse_line(l) == Ok(want)).then_some(()),
        );
    }

    /// The next pin line; every one must parse.
    fn pin(&mut self, want: PinLine) {
        self.wait_for(
            |b| &mut b.bridge,
            &format!("bridge line {want:?}"),
            |l| {
                let got = PinLine::parse(l);
                assert!(
                    got.is_ok(),
                    "the station sent a bad bridge line {l:?}: {got:?}"
                );
                (got == Ok(want)).then_some(())
            },
        );
    }

    fn sense(&mut self, line: SenseLine) {
        self.bridge.send(&line.encode());
    }

    /// The deepest the stack has reached, in bytes: QEMU's RAM starts
    /// zeroed, so the lowest non-zero word between the statics and the top
    /// of RAM (where cortex-m-rt starts the stack) marks it. A lower bound
    /// (a frame that only wrote zeros is missed); a measurement, not a check.
    fn stack_peak_bytes(&mut self) -> usize {
        const RAM: u32 = 0x2000_0000;
        const RAM_LEN: usize = 0x40_0000;
        // Above every image's statics (at most 124.4 KiB), below its stack.
        const SCAN_FROM: usize = 0x4_0000;
        let dump = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("station-qemu-ram.bin");
        let _ = std::fs::remove_file(&dump);
        let cmd = format!("pmemsave {RAM:#x} {RAM_LEN:#x} \"{}\"\n", dump.display());
        self.monitor
            .write_all(cmd.as_bytes())
            .expect("write to QEMU's monitor");
        let deadline = Instant::now() + STEP;
        let ram = loop {
            match std::fs::read(&dump) {
                Ok(b) if b.len() == RAM_LEN => break b,
                _ => {
                    assert!(Instant::now() < deadline, "QEMU did not dump its RAM");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        };
        let lowest = ram[SCAN_FROM..]
            .chunks_exact(4)
            .position(|w| w != [0; 4])
            .map_or(RAM_LEN, |i| SCAN_FROM + 4 * i);
        RAM_LEN - lowest
    }
}

const fn pilot(high_mv: i32, low_mv: i32) -> SenseLine {
    SenseLine::Pilot(PilotLevels { high_mv, low_mv })
}

/// The site plan the test commissions: station 1 leading itself, a 32 A
/// nameplate on a 16 A circuit, signed with `bench_key`.
fn plan(bench_key: &[u8; 32]) -> String {
    use firmware::sharing::config::{GroupConfig, NodeConfig, Phase, StationConfig, Timing};
    let mut group = GroupConfig::<6, 4> {
        group: 1,
        key: *b"sharebench qemu test group key 1",
        enabled: true,
        leader: 1,
        nodes: heapless::Vec::new(),
        stations: heapless::Vec::new(),
        timing: Timing::default(),
        dynamic: None,
    };
    group
        .nodes
        .push(NodeConfig {
            parent: None,
            limit_da: 160,
            breaker_da: None,
        })
        .expect("room");
    group
        .stations
        .push(StationConfig {
            id: 1,
            node: 0,
            nameplate_da: 320,
            breaker_da: None,
            phases: 1,
            rotation: Phase::L1,
            fallback_da: 0,
            priority: 0,
            weight: 1,
        })
        .expect("room");
    let mut text = String::new();
    firmware::commission::encode(&Commission { id: 1, group }, bench_key, |l| {
        text.push_str(l);
    });
    text
}

#[test]
#[ignore = "needs qemu-system-arm and the image (cargo xtask images)"]
fn the_station_image_boots_and_charges_over_the_wire_bridge() {
    let mut bench = Bench::start();

    // Commissioning on the debug channel: a plan signed with another key is
    // refused by name; the bench's plan (one station leading itself on a
    // 16 A circuit) is accepted, then the station reports its role.
    bench.debug.send(&plan(&[0x42; 32]));
    bench.telemetry(Telemetry::ConfigRefused(Refusal::BadMac));
    bench.debug.send(&plan(&DEFAULT_BENCH_KEY));
    bench.telemetry(Telemetry::ConfigAccepted {
        stations: 1,
        nodes: 1,
    });
    let boot_ms = bench.started.elapsed().as_millis();
    bench.telemetry(Telemetry::Boot {
        role: RoleKind::Leader,
    });
    eprintln!("QEMU start to first telemetry line: {boot_ms} ms");
    // The pins start safe.
    bench.pin(PinLine::Pin(Output::Contactor(false)));
    bench.pin(PinLine::Pin(Output::Pilot(PilotOutput::Steady)));

    // A car plugs in (B), then asks for energy (C): the leader grants its
    // 16 A circuit and the pilot offers 16 A (26.67 %), never more.
    bench.sense(pilot(9_000, -12_000));
    bench.sense(pilot(6_000, -12_000));
    let asked = Instant::now();
    let duty_bp = bench.wait_for(
        |b| &mut b.bridge,
        "a PWM offer",
        |l| match PinLine::parse(l) {
            Ok(PinLine::Pin(Output::Pilot(PilotOutput::Pwm { duty_bp }))) => Some(duty_bp),
            _ => None,
        },
    );
    assert_eq!(duty_bp, 2_667, "16 A on a 16 A circuit");
    eprintln!("car asks to PWM offer: {} ms", asked.elapsed().as_millis());
    bench.telemetry(Telemetry::Grant { da: 160 });
    // With PWM on and the diode seen, the contactor closes.
    bench.pin(PinLine::Pin(Output::Contactor(true)));
    bench.sense(SenseLine::Relay(true));
    bench.sense(SenseLine::Amps([150, 0, 0]));

    // A garbled line is refused by name, and the station goes on.
    bench.bridge.send("RELAY 0*0000\n");
    bench.pin(PinLine::Refused(firmware::bridge::ParseError::Checksum));

    // The car stops asking (C -> B): the contactor opens.
    bench.sense(SenseLine::Amps([0, 0, 0]));
    bench.sense(pilot(9_000, -12_000));
    let stopped = Instant::now();
    bench.pin(PinLine::Pin(Output::Contactor(false)));
    eprintln!(
        "car stops asking to coil released: {} ms",
        stopped.elapsed().as_millis()
    );
    // Nothing on the debug channel that is not telemetry.
    bench.debug.poll();
    for l in &bench.debug.lines {
        assert!(
            parse_line(l).is_ok(),
            "not telemetry on the debug UART: {l:?}"
        );
    }
    let _ = (&bench.link, &bench.meter);
    eprintln!(
        "stack peak (lower bound): {} bytes",
        bench.stack_peak_bytes()
    );
}
