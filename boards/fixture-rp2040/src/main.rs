//! The bench fixture image for the Raspberry Pi Pico (RP2040, 125 MHz):
//! [`rig::fixture::Fixture`] with 4 channels behind USB CDC-ACM. Only
//! peripheral access lives here; every conversion is in the host-tested
//! `fixture_glue` library (`src/lib.rs`). Pins: `docs/fixture-board.md`.
//!
//! - PIO0 SM0-3: pilot comparator edges ([`fixture_glue::edges`]).
//! - SPI0: two MCP3208 (pilot levels, CTs) and six MCP4922 (load setpoints).
//! - I2C0: two MCP23017 (car switches, DAC chip selects).
//! - UART0 + DE (GP2): the meter line, the SDM630 emulation.
//! - PWM slice 7 A (GP14): the self-test loopback generator.
//! - GP10-13: contactor auxiliary contacts, polled each pass and stamped
//!   with the 1 MHz timer.
//!
//! One loop, no interrupts: each pass drains the PIO FIFOs (8 words, 4
//! periods of a 1 kHz pilot), samples what is due, runs the fixture's
//! timers and moves bytes. Nothing in a pass waits for the host or the
//! meter line.
#![no_std]
#![no_main]
#![deny(unsafe_code)]

use embedded_hal::digital::{InputPin, OutputPin};
use embedded_hal::i2c::I2c;
use embedded_hal::pwm::SetDutyCycle;
use embedded_hal::spi::SpiBus;
use fugit::RateExtU32;
use heapless::Deque;
use rp2040_hal as hal;

use hal::clocks::Clock;
use hal::pac;
use hal::pio::{Buffers, PIOBuilder, PIOExt, Rx, ShiftDirection, ValidStateMachine};
use hal::uart::{DataBits, StopBits, UartConfig, UartPeripheral};
use rig::fixture::{Fixture, FixtureConfig};
use rig::protocol::Caps;
use rig::time::us;
use usb_device::class_prelude::UsbBusAllocator;
use usb_device::prelude::{StringDescriptors, UsbDeviceBuilder, UsbVidPid};
use usbd_serial::SerialPort;

use fixture_glue::analog::{self, Linear, Rms};
use fixture_glue::edges::{Edge, EdgeDecoder};
use fixture_glue::link::{LineOut, MeterFramer};
use fixture_glue::load;
use fixture_glue::loopback::{Loopback, PWM_DIV, PWM_TOP};
use fixture_glue::pins::{self, CHANNELS};
use fixture_glue::plateau::Sampler;
use fixture_glue::switches;

/// The second-stage boot loader for the Pico's W25Q16 flash. The ROM
/// copies it from the first 256 bytes of flash; `link_section` is unsafe
/// only in that the linker script must place `.boot2` there (`memory.x`).
#[allow(unsafe_code)]
#[link_section = ".boot2"]
#[used]
pub static BOOT2: [u8; 256] = rp2040_boot2::BOOT_LOADER_W25Q080;

const XTAL_HZ: u32 = 12_000_000;
/// CT sampling: every phase each 500 us (2 kHz, 40 per 50 Hz cycle).
const CT_EVERY_US: u64 = 500;
/// Pilot level calibration per channel (bring-up step 6 replaces these).
const LEVEL_CAL: [Linear; CHANNELS] = [analog::PILOT_NOMINAL; CHANNELS];
/// CT calibration per channel and phase (bring-up: a reference clamp).
const CT_CAL: [[Linear; 3]; CHANNELS] = [[analog::CT_NOMINAL; 3]; CHANNELS];
/// Load setpoint full scale per channel and phase, deciamps.
const LOAD_FULL_SCALE_DA: [[u16; 3]; CHANNELS] = [[load::FULL_SCALE_DA; 3]; CHANNELS];

fn reset() -> ! {
    cortex_m::peripheral::SCB::sys_reset()
}

#[hal::entry]
fn main() -> ! {
    let Some(mut pac) = pac::Peripherals::take() else {
        reset()
    };
    let mut watchdog = hal::Watchdog::new(pac.WATCHDOG);
    let Ok(clocks) = hal::clocks::init_clocks_and_plls(
        XTAL_HZ,
        pac.XOSC,
        pac.CLOCKS,
        pac.PLL_SYS,
        pac.PLL_USB,
        &mut pac.RESETS,
        &mut watchdog,
    ) else {
        reset()
    };
    let timer = hal::Timer::new(pac.TIMER, &mut pac.RESETS, &clocks);
    let sio = hal::Sio::new(pac.SIO);
    let gp = hal::gpio::Pins::new(
        pac.IO_BANK0,
        pac.PADS_BANK0,
        sio.gpio_bank0,
        &mut pac.RESETS,
    );

    // Switches first, all open (and DAC selects idle): I2C0 to the expanders.
    let mut i2c = hal::I2C::i2c0(
        pac.I2C0,
        gp.gpio4.reconfigure(),
        gp.gpio5.reconfigure(),
        400.kHz(),
        &mut pac.RESETS,
        &clocks.system_clock,
    );
    for (chip, &addr) in switches::EXPANDERS.iter().enumerate() {
        for w in switches::init_writes(chip) {
            // A missing expander shows as switches that never change; the
            // loop retries every write until it is taken.
            let _ = i2c.write(addr, &w);
        }
    }

    // SPI0: ADCs and DACs, mode 0, 2 MHz.
    let spi = hal::spi::Spi::<_, _, _, 8>::new(
        pac.SPI0,
        (
            gp.gpio19.into_function::<hal::gpio::FunctionSpi>(),
            gp.gpio16.into_function::<hal::gpio::FunctionSpi>(),
            gp.gpio18.into_function::<hal::gpio::FunctionSpi>(),
        ),
    );
    let spi = spi.init(
        &mut pac.RESETS,
        clocks.peripheral_clock.freq(),
        2.MHz(),
        embedded_hal::spi::MODE_0,
    );
    let mut adcs = Adcs {
        spi,
        cs0: gp
            .gpio17
            .into_push_pull_output_in_state(hal::gpio::PinState::High),
        cs1: gp
            .gpio20
            .into_push_pull_output_in_state(hal::gpio::PinState::High),
    };

    // The meter line: UART0 at 9600 8N1, DE low (receiving).
    let mut de = gp
        .gpio2
        .into_push_pull_output_in_state(hal::gpio::PinState::Low);
    let Ok(uart) = UartPeripheral::new(
        pac.UART0,
        (gp.gpio0.into_function(), gp.gpio1.into_function()),
        &mut pac.RESETS,
    )
    .enable(
        UartConfig::new(9_600.Hz(), DataBits::Eight, None, StopBits::One),
        clocks.peripheral_clock.freq(),
    ) else {
        reset()
    };

    // Contactor auxiliary contacts: optocouplers pull low when closed.
    let mut aux = [
        gp.gpio10.into_pull_up_input().into_dyn_pin(),
        gp.gpio11.into_pull_up_input().into_dyn_pin(),
        gp.gpio12.into_pull_up_input().into_dyn_pin(),
        gp.gpio13.into_pull_up_input().into_dyn_pin(),
    ];

    // The self-test generator: slice 7 A, 125 MHz / 4, TOP 31250, off.
    let mut slices = hal::pwm::Slices::new(pac.PWM, &mut pac.RESETS);
    let pwm = &mut slices.pwm7;
    pwm.set_div_int(PWM_DIV);
    pwm.set_top(PWM_TOP);
    pwm.channel_a.output_to(gp.gpio14);
    let _ = pwm.channel_a.set_duty_cycle(0);
    pwm.enable();

    // Pilot edges: one PIO0 state machine per channel.
    let cmp = [
        gp.gpio6.into_function::<hal::gpio::FunctionPio0>().id().num,
        gp.gpio7.into_function::<hal::gpio::FunctionPio0>().id().num,
        gp.gpio8.into_function::<hal::gpio::FunctionPio0>().id().num,
        gp.gpio9.into_function::<hal::gpio::FunctionPio0>().id().num,
    ];
    debug_assert_eq!(cmp, pins::COMPARATOR);
    let (mut pio, sm0, sm1, sm2, sm3) = pac.PIO0.split(&mut pac.RESETS);
    let Ok(installed) = pio.install(&fixture_glue::edges::program()) else {
        reset()
    };
    let builder = |pin: u8, p| {
        PIOBuilder::from_installed_program(p)
            .jmp_pin(pin)
            .in_pin_base(pin)
            .in_shift_direction(ShiftDirection::Left)
            .autopush(false)
            .buffers(Buffers::OnlyRx)
            .clock_divisor_fixed_point(1, 0)
    };
    // The four state machines run one program that is never uninstalled,
    // which is what `share` asks of its caller.
    #[allow(unsafe_code)]
    let (p0, p1, p2) = unsafe { (installed.share(), installed.share(), installed.share()) };
    let (sm0, mut rx0, _) = builder(cmp[0], p0).build(sm0);
    let (sm1, mut rx1, _) = builder(cmp[1], p1).build(sm1);
    let (sm2, mut rx2, _) = builder(cmp[2], p2).build(sm2);
    let (sm3, mut rx3, _) = builder(cmp[3], installed).build(sm3);
    let start_us = timer.get_counter().ticks();
    let _running = sm0.with(sm1).with(sm2).with(sm3).sync().start();
    let mut decoders: [EdgeDecoder; CHANNELS] =
        core::array::from_fn(|_| EdgeDecoder::new(start_us));

    // USB CDC-ACM.
    let Some(usb_bus) = cortex_m::singleton!(: UsbBusAllocator<hal::usb::UsbBus> =
    UsbBusAllocator::new(hal::usb::UsbBus::new(
        pac.USBCTRL_REGS,
        pac.USBCTRL_DPRAM,
        clocks.usb_clock,
        true,
        &mut pac.RESETS,
    ))) else {
        reset()
    };
    let mut serial = SerialPort::new(usb_bus);
    // 16c0:27dd is the shared VID/PID for CDC-ACM devices the rp-hal
    // examples use; a lab that owns a PID puts it here.
    let Ok(builder) = UsbDeviceBuilder::new(usb_bus, UsbVidPid(0x16c0, 0x27dd)).strings(&[
        StringDescriptors::default()
            .manufacturer("sharebench")
            .product("sharebench fixture")
            .serial_number(fixture_glue::FW_VERSION),
    ]) else {
        reset()
    };
    let mut usb = builder.device_class(usbd_serial::USB_CLASS_CDC).build();

    let cfg = FixtureConfig {
        channels: CHANNELS as u16,
        // No station debug relay yet (`debug`: a PIO UART per channel,
        // docs/fixture-board.md).
        caps: Caps::ALL.without(rig::protocol::Capability::Debug),
        fw_version: fixture_glue::FW_VERSION,
        ..FixtureConfig::default()
    };
    let mut fixture: Fixture<CHANNELS> = Fixture::new(cfg, us(start_us));
    fixture.set_external_selftest(true);

    let mut plateaus: [Sampler; CHANNELS] = Default::default();
    let mut rms: [[Rms; 3]; CHANNELS] = Default::default();
    let mut ct_da: [[Option<u16>; 3]; CHANNELS] = [[None; 3]; CHANNELS];
    let mut next_ct_us = start_us;
    let mut relay: [Option<bool>; CHANNELS] = [None; CHANNELS];
    let mut written_switches: Option<[u8; CHANNELS]> = None;
    let mut written_load: [[Option<u16>; 3]; CHANNELS] = [[None; 3]; CHANNELS];
    let mut out: LineOut<512> = LineOut::default();
    let mut framer = MeterFramer::default();
    let mut meter_tx: Deque<u8, 256> = Deque::new();
    let mut selftest: Option<Loopback> = None;
    let mut reported_lost = [0u32; CHANNELS];

    loop {
        let now_us = timer.get_counter().ticks();
        let now = us(now_us);

        // Host bytes in.
        if usb.poll(&mut [&mut serial]) {
            let mut buf = [0u8; 64];
            if let Ok(n) = serial.read(&mut buf) {
                fixture.handle_host_rx(now, buf.get(..n).unwrap_or(&[]));
            }
        }

        // Pilot edges.
        let mut edges: [heapless::Vec<Edge, 8>; CHANNELS] = Default::default();
        drain(&mut rx0, &mut decoders[0], now_us, &mut edges[0]);
        drain(&mut rx1, &mut decoders[1], now_us, &mut edges[1]);
        drain(&mut rx2, &mut decoders[2], now_us, &mut edges[2]);
        drain(&mut rx3, &mut decoders[3], now_us, &mut edges[3]);
        for (ch, d) in decoders.iter().enumerate() {
            let lost = d.lost();
            if lost != reported_lost[ch] {
                fixture.handle_capture_loss(ch, lost.saturating_sub(reported_lost[ch]));
                reported_lost[ch] = lost;
            }
        }
        let testing = selftest.as_ref().map(|l| usize::from(l.ch));
        for (ch, es) in edges.iter().enumerate() {
            for e in es {
                plateaus[ch].handle_edge(e.t_ns, e.rising);
                match selftest.as_mut() {
                    Some(l) if testing == Some(ch) => l.handle_edge(*e),
                    _ => fixture.handle_edge(now, ch, e.t_us(), e.rising),
                }
            }
        }

        // Pilot levels, mid-plateau.
        for ch in 0..CHANNELS {
            let Some(pl) = plateaus[ch].poll(now_us.saturating_mul(1_000)) else {
                continue;
            };
            let Some(input) = pins::level_input(ch) else {
                continue;
            };
            let Some(code) = adcs.read(input) else {
                continue;
            };
            let mv = analog::pilot_mv(&LEVEL_CAL[ch], code);
            if let Some((high, low)) = plateaus[ch].handle_sample(pl, mv) {
                if testing != Some(ch) {
                    fixture.handle_levels(now, ch, high, low);
                }
            }
        }

        // Currents: every phase at 2 kHz, RMS over 10 cycles.
        if now_us >= next_ct_us {
            next_ct_us = next_ct_us.saturating_add(CT_EVERY_US).max(now_us);
            for ch in 0..CHANNELS {
                for p in 0..3 {
                    let Some(code) = pins::ct_input(ch, p).and_then(|i| adcs.read(i)) else {
                        continue;
                    };
                    if let Some(da) = rms[ch][p].add(&CT_CAL[ch][p], code) {
                        ct_da[ch][p] = Some(da);
                    }
                }
                if let [Some(a), Some(b), Some(c)] = ct_da[ch] {
                    fixture.handle_current(now, ch, [a, b, c]);
                    ct_da[ch] = [None; 3];
                }
            }
        }

        // Contactor auxiliary contacts.
        for (ch, pin) in aux.iter_mut().enumerate() {
            // The dynamic pin's read cannot fail (`Infallible`).
            let Ok(closed) = pin.is_low();
            if relay[ch] != Some(closed) {
                relay[ch] = Some(closed);
                fixture.handle_relay(now, ch, closed);
            }
        }

        // The meter line: whole requests in, answers out without waiting.
        let mut byte = [0u8; 1];
        while let Ok(1) = uart.read_raw(&mut byte) {
            if let Some(req) = framer.handle_byte(now_us, byte[0]) {
                answer(&mut fixture, now, &req, &mut meter_tx);
            }
        }
        if let Some(req) = framer.poll(now_us) {
            answer(&mut fixture, now, &req, &mut meter_tx);
        }
        if !meter_tx.is_empty() {
            let _ = de.set_high();
            while uart.uart_is_writable() {
                let Some(b) = meter_tx.pop_front() else { break };
                let _ = uart.write_raw(&[b]);
            }
        } else if !uart.uart_is_busy() {
            // After the last stop bit.
            let _ = de.set_low();
        }

        // Fixture timers (cars, capture, heartbeat).
        if fixture.poll_timeout().is_some_and(|t| t <= now) {
            fixture.handle_timeout(now);
        }

        // Self-test: one at a time, on the board's own loopback.
        if selftest.is_none() {
            if let Some((seq, ch)) = fixture.take_selftest() {
                selftest = Some(Loopback::new(seq, ch, cfg.capture, now_us));
            }
        }
        if let Some(l) = selftest.as_mut() {
            if let Some(compare) = l.pwm_change(now_us) {
                let _ = slices.pwm7.channel_a.set_duty_cycle(compare);
            }
            if let Some(report) = l.poll(now_us) {
                fixture.finish_selftest(l.seq, l.ch, &report);
                let _ = slices.pwm7.channel_a.set_duty_cycle(0);
                selftest = None;
            }
        }
        let testing = selftest.as_ref().map(|l| usize::from(l.ch));

        // Car switches and load setpoints, written when they change (a
        // failed write is retried next pass).
        let mut bits = [0u8; CHANNELS];
        for (ch, b) in bits.iter_mut().enumerate() {
            *b = switches::bits(&fixture.car_load(ch), testing == Some(ch));
        }
        if written_switches != Some(bits) {
            let ok = switches::EXPANDERS.iter().enumerate().all(|(chip, &addr)| {
                i2c.write(addr, &switches::olat_write(chip, &bits, None))
                    .is_ok()
            });
            if ok {
                written_switches = Some(bits);
            }
        }
        for ch in 0..CHANNELS {
            let draw = if testing == Some(ch) {
                [0; 3]
            } else {
                fixture.car_draw_da(ch)
            };
            for p in 0..3 {
                let code = load::setpoint_code(draw[p], LOAD_FULL_SCALE_DA[ch][p]);
                if written_load[ch][p] == Some(code) {
                    continue;
                }
                let Some((dac, output)) = load::dac_of(ch, p) else {
                    continue;
                };
                let Some((chip, _, _)) = load::chip_select(dac) else {
                    continue;
                };
                let addr = switches::EXPANDERS[chip];
                let sel = i2c.write(addr, &switches::olat_write(chip, &bits, Some(dac)));
                let sent = sel.is_ok()
                    && adcs.spi.write(&load::mcp4922_word(output, code)).is_ok()
                    && adcs.spi.flush().is_ok();
                let idle = i2c.write(addr, &switches::olat_write(chip, &bits, None));
                if sent && idle.is_ok() {
                    written_load[ch][p] = Some(code);
                }
            }
        }

        // Lines out to the host, as the endpoint takes them.
        out.fill(|s| fixture.poll_line(s));
        out.drain(|b| serial.write(b).unwrap_or(0));
    }
}

/// Words from one state machine's FIFO into edges.
fn drain<SM: ValidStateMachine>(
    rx: &mut Rx<SM>,
    dec: &mut EdgeDecoder,
    now_us: u64,
    out: &mut heapless::Vec<Edge, 8>,
) {
    while let Some(w) = rx.read() {
        // The FIFO holds 8 words: `out` has room for all of them.
        let _ = out.push(dec.handle_word(w, now_us));
    }
}

/// The meter emulation's answer to a request, queued for the UART.
fn answer(
    fixture: &mut Fixture<CHANNELS>,
    now: rig::time::Instant,
    req: &[u8],
    tx: &mut Deque<u8, 256>,
) {
    let Some(a) = fixture.handle_meter_rx(now, req) else {
        return;
    };
    // A request while the previous answer is still going out is not
    // answered (the leader times out, as with a slow meter); an answer is
    // never cut.
    if tx.capacity() - tx.len() < a.len() {
        return;
    }
    for &b in &a {
        let _ = tx.push_back(b);
    }
}

/// The two MCP3208s on SPI0.
struct Adcs<S, C0, C1> {
    spi: S,
    cs0: C0,
    cs1: C1,
}

impl<S: SpiBus, C0: OutputPin, C1: OutputPin> Adcs<S, C0, C1> {
    /// One conversion; `None` if the bus failed.
    fn read(&mut self, input: pins::AdcInput) -> Option<u16> {
        let mut buf = analog::mcp3208_command(input.input);
        if input.chip == 0 {
            let _ = self.cs0.set_low();
        } else {
            let _ = self.cs1.set_low();
        }
        let r = self.spi.transfer_in_place(&mut buf);
        let _ = self.cs0.set_high();
        let _ = self.cs1.set_high();
        r.ok().map(|()| analog::mcp3208_code(buf))
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // Every GPIO goes high-impedance with the reset; the expanders keep
    // their latches until the image clears them first thing after boot.
    reset()
}
