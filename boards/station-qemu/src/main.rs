//! The station image for QEMU `mps2-an386` (Cortex-M4): only glue between
//! the machine's peripherals and [`firmware::station::Station`].
//!
//! - UART0 (`0x4000_4000`): the debug channel. Telemetry out
//!   (`docs/station-telemetry.md`), commissioning in. The image prints
//!   nothing else.
//! - UART1 (`0x4000_5000`): the wire bridge (`docs/wire-bridge.md`): pin
//!   changes out, sensor levels in, through [`firmware::hal::Board`].
//! - UART2 (`0x4000_6000`): the RS-485 sharing link, raw frames.
//! - UART3 (`0x4000_7000`): the meter's Modbus RTU line.
//! - TIMER0: the clock ([`timer`]; SysTick only wakes the image every
//!   millisecond, see there why it is not the clock); the board samples its inputs every
//!   millisecond and runs the station's timers then.
//!
//! Boots a [`Station::awaiting`] its site plan and hands the debug
//! channel's bytes to [`Station::handle_debug_rx`]: the station's own
//! commissioning path (it answers `config accepted` / `config refused` and
//! starts), the same on every bench. The image has no flash: after a reset
//! the harness commissions it again. Once its UARTs have been quiet for a
//! few milliseconds it sleeps (`wfi`) between passes until the next
//! interrupt, at most the millisecond SysTick, so an idle QEMU costs the
//! host little CPU. A panic resets the machine (as a watchdog
//! would). Needs QEMU's `-semihosting`: the boot nonce reads the host's
//! clock through it.
#![no_std]
#![no_main]
#![deny(unsafe_code)]

mod pins;
mod timer;
mod uart;

use cortex_m_rt::entry;
use firmware::bridge::{LineReader, PinLine, SenseLine};
use firmware::charge_point::PilotOutput;
use firmware::commission::DEFAULT_BENCH_KEY;
use firmware::hal::Board;
use firmware::station::Station;
use firmware::time::{ms, Instant};

use pins::Sensed;
use station_common::clock::Clock;
use uart::{Port, Uart};

/// The group this image holds: stations `S` on supply nodes `N`.
#[cfg(feature = "group-256")]
const S_N: (usize, usize) = (256, 128);
#[cfg(all(feature = "group-64", not(feature = "group-256")))]
const S_N: (usize, usize) = (64, 32);
#[cfg(not(any(feature = "group-64", feature = "group-256")))]
const S_N: (usize, usize) = (6, 4);
const S: usize = S_N.0;
const N: usize = S_N.1;

type QemuBoard = Board<pins::Pwm, pins::Coil, pins::Sense, pins::Adc, pins::Amps, S, N>;

/// The bench commissioning key of QEMU images: the harness's default (a
/// test bench's key, not a secret: it keeps a stray message from
/// commissioning a station). A lab builds its images with its own.
const BENCH_KEY: [u8; 32] = DEFAULT_BENCH_KEY;

const BAUD: u32 = 115_200;

/// After the image drives a new pilot output it does not sample its inputs
/// until the host answers with the `PILOT` levels that output gives (a real
/// board's ADC reads its own output at once; over the bridge the level
/// comes back a round trip later, and sampling the old level meanwhile
/// would read as a missing diode or a -12 V fault). At most this long.
const SETTLE_MAX_MS: u64 = 100;

/// How long the image keeps polling without sleeping after the last byte.
const SPIN_MS: u64 = 5;

/// The CPU clock of the MPS2 FPGA images (QEMU's `SYSCLK_FRQ`).
const CPU_HZ: u32 = 25_000_000;

/// Everything the image drives.
struct Image {
    clock: timer::Monotonic,
    /// Owned so that SysTick keeps interrupting (the `wfi` wake-up).
    _tick: Clock,
    debug: Port<512>,
    bridge: Port<256>,
    link: Port<512>,
    meter: Port<64>,
    bridge_rx: LineReader,
    sensed: Sensed,
    board: &'static mut QemuBoard,
    next_sample: Instant,
    /// The pilot output last driven, and, until the host has answered it
    /// with the levels it gives, when to stop waiting (see [`SETTLE_MAX_MS`]).
    pilot_driven: PilotOutput,
    settled_at: Option<Instant>,
}

#[entry]
fn main() -> ! {
    let Some(cp) = cortex_m::Peripherals::take() else {
        // Taken once, here: cannot happen. Start over if it ever does.
        cortex_m::peripheral::SCB::sys_reset();
    };
    let tick = Clock::start(cp.SYST, CPU_HZ);
    let mut clock = timer::Monotonic::start(uart::PCLK_HZ);
    let station = Station::awaiting(BENCH_KEY, boot_nonce(clock.now()));
    let s = Sensed::UNPLUGGED;
    // Pins come up safe (+12 V steady, coil released); they are bridge
    // lines, which cannot fail.
    let Ok(board) = Board::new(
        station,
        pins::Pwm,
        pins::Coil,
        Some(pins::Sense(s.relay_closed)),
        pins::Adc(s.pilot),
        pins::Amps(s.amps_da),
    ) else {
        cortex_m::peripheral::SCB::sys_reset();
    };
    // Several kilobytes (the group plan): a static, not the stack.
    let Some(board) = cortex_m::singleton!(: QemuBoard = board) else {
        cortex_m::peripheral::SCB::sys_reset();
    };
    let mut image = Image {
        clock,
        _tick: tick,
        debug: Port::new(Uart::at(0x4000_4000), BAUD),
        bridge: Port::new(Uart::at(0x4000_5000), BAUD),
        link: Port::new(Uart::at(0x4000_6000), BAUD),
        meter: Port::new(Uart::at(0x4000_7000), BAUD),
        bridge_rx: LineReader::new(),
        sensed: s,
        board,
        next_sample: Instant::from_ticks(0),
        pilot_driven: PilotOutput::Steady,
        settled_at: None,
    };
    // The UARTs raise no interrupt here: a byte waits in the one-byte
    // receive register until the image polls, and QEMU hands over the next
    // one only then. So the image polls without pause while bytes flow, and
    // sleeps only once they have stopped for a while.
    let mut last_busy = Instant::from_ticks(0);
    loop {
        let now = image.clock.now();
        let timer_due_soon = image
            .board
            .station
            .poll_timeout()
            .is_some_and(|t| t <= now + ms(1));
        if image.poll() {
            last_busy = now;
        } else if now >= last_busy + ms(SPIN_MS) && !timer_due_soon {
            // Quiet: sleep until the next interrupt (SysTick, every
            // millisecond), the most a byte then waits.
            cortex_m::asm::wfi();
        }
    }
}

impl Image {
    /// One pass over every input and output; never blocks. Whether
    /// anything came in or is still going out.
    fn poll(&mut self) -> bool {
        let now = self.clock.now();
        let mut busy = false;
        let board = &mut *self.board;
        // Commissioning: the station's own path (answered on this channel).
        while let Some(b) = self.debug.uart.try_read() {
            board.station.handle_debug_rx(now, &[b]);
            busy = true;
        }
        while let Some(b) = self.bridge.uart.try_read() {
            self.bridge_byte(b);
            busy = true;
        }
        let board = &mut *self.board;
        let station = &mut board.station;
        // An uncommissioned station ignores the link and the meter.
        while let Some(b) = self.link.uart.try_read() {
            station.handle_link_rx(now, &[b]);
            busy = true;
        }
        while let Some(b) = self.meter.uart.try_read() {
            station.handle_meter_rx(now, &[b]);
            busy = true;
        }
        let pilot = board.station.pilot_output();
        if pilot != self.pilot_driven {
            // The pilot the host models moves only once it has read the new
            // output: until it answers, the sensed levels are the old
            // circuit's (docs/wire-bridge.md, "the pilot answer").
            self.pilot_driven = pilot;
            self.settled_at = Some(now + ms(SETTLE_MAX_MS));
        }
        if self.settled_at.is_some_and(|t| now >= t) {
            // No answer: sample what there is (a real fault, if it is one).
            self.settled_at = None;
        }
        if now >= self.next_sample {
            if self.settled_at.is_none() {
                // The pins are bridge lines: they cannot fail.
                let _ = board.step(now);
            } else {
                // Settling: the timers run, the inputs are not sampled.
                board.station.handle_timeout(now);
            }
            self.next_sample = now + ms(1);
        } else if board.station.poll_timeout().is_some_and(|t| now >= t) {
            // A timer falls between samples: run it on time (a timer run
            // late would shift the leader's cycle by as much, every cycle).
            board.station.handle_timeout(now);
        }
        let _ = board.apply();
        station_common::drain_output(
            &mut board.station,
            &mut self.link.tx,
            &mut self.meter.tx,
            &mut self.debug.tx,
        );
        let bridge = &mut self.bridge.tx;
        pins::send_changes(|o| {
            let line = PinLine::Pin(o).encode();
            // Checked first, so a full bridge does not count as refused.
            bridge.room() >= line.len() && bridge.send(line.as_bytes())
        });
        self.debug.pump();
        self.bridge.pump();
        self.link.pump();
        self.meter.pump();
        busy || !(self.debug.tx.is_empty()
            && self.bridge.tx.is_empty()
            && self.link.tx.is_empty()
            && self.meter.tx.is_empty())
    }

    /// A bridge byte; a finished line sets a sensor level.
    fn bridge_byte(&mut self, b: u8) {
        let Some(line) = self.bridge_rx.push(b) else {
            return;
        };
        match line.and_then(SenseLine::parse) {
            Ok(SenseLine::Pilot(l)) => {
                self.sensed.pilot = l;
                // The host's answer to a new pilot output (or a newer level).
                self.settled_at = None;
            }
            Ok(SenseLine::Relay(closed)) => self.sensed.relay_closed = closed,
            Ok(SenseLine::Amps(da)) => self.sensed.amps_da = da,
            Err(e) => {
                // Refused lines are told to the host; if even that does
                // not fit, the bridge is too far behind to say more.
                self.bridge.tx.send(PinLine::Refused(e).encode().as_bytes());
                return;
            }
        }
        let (adc, amps, sense) = self.board.inputs_mut();
        adc.0 = self.sensed.pilot;
        amps.0 = self.sensed.amps_da;
        if let Some(sense) = sense {
            sense.0 = self.sensed.relay_closed;
        }
    }
}

/// A value that differs at every boot (the sharing protocol's replay guard;
/// the station derives a fresh one for every plan it takes): the host's
/// clock in seconds (semihosting `SYS_TIME`) and the microsecond of boot.
#[allow(unsafe_code)]
fn boot_nonce(now: Instant) -> u32 {
    // SAFETY: SYS_TIME takes no argument block; QEMU runs with
    // `-semihosting`, which this image requires (see the crate docs).
    let host_s = unsafe { cortex_m_semihosting::syscall!(TIME) } as u32;
    let us = now.ticks() as u32;
    host_s.wrapping_mul(2_654_435_761) ^ us.rotate_left(16)
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // A station that cannot go on starts over in its safe state.
    cortex_m::peripheral::SCB::sys_reset()
}
