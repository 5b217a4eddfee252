//! Station images in QEMU: the station half of the QEMU bench
//! (`--bench qemu`, processor in the loop).
//!
//! Owns one `qemu-system-arm -M mps2-an386` process per station and its four
//! UARTs as loopback TCP sockets (debug, wire bridge, RS-485 link, meter;
//! `docs/wire-bridge.md`), read and written without blocking. Turns their
//! bytes into what the virtual bench's models take (pin changes, telemetry
//! lines, link frames, meter requests) and the models' sensor levels into
//! wire-bridge lines. Does not model anything: the models are the virtual
//! bench's ([`crate::sim`]), which runs them in real time against these
//! stations.
//!
//! A QEMU that exits, closes a UART, or prints anything the image never
//! prints (a line that is not telemetry, a bridge line that does not parse,
//! bytes on the link that are not a frame) marks the station failed with the
//! reason; the bench ends the run with it. QEMU is killed and reaped when
//! its [`Remote`] is dropped, on every path out of a run, a panic included.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use firmware::bridge::{PinLine, SenseLine};
use firmware::pilot::PilotLevels;
use firmware::sharing::frame::{CRC_LEN, HEADER_LEN, MAC_LEN, MAX_PAYLOAD, SOF};
use firmware::station::Output;

use crate::bench::BenchError;

/// How long a QEMU may take to connect its UARTs after it starts.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// The longest line the image prints on its debug channel or bridge; more
/// without a newline is garbage.
const MAX_LINE: usize = 256;

/// Where the station image is and how QEMU runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuOptions {
    /// The QEMU binary (`qemu-system-arm` on `PATH`).
    pub qemu: PathBuf,
    /// The station image (ELF).
    pub image: PathBuf,
    /// QEMU's `-icount` argument, if any (`shift=auto`, `shift=7,sleep=off`).
    pub icount: Option<String>,
}

impl QemuOptions {
    /// The image `cargo xtask images` builds (`target/images/station-qemu.elf`
    /// under `CARGO_TARGET_DIR` or `./target`) unless `SHAREBENCH_QEMU_IMAGE`
    /// names another; `SHAREBENCH_QEMU_ICOUNT` passes `-icount`. Refuses,
    /// naming the fix, a missing image or a missing `qemu-system-arm`.
    pub fn from_env() -> Result<Self, BenchError> {
        let image = match std::env::var_os("SHAREBENCH_QEMU_IMAGE") {
            Some(p) => PathBuf::from(p),
            None => std::env::var_os("CARGO_TARGET_DIR")
                .map_or_else(|| PathBuf::from("target"), PathBuf::from)
                .join("images")
                .join("station-qemu.elf"),
        };
        Self::new(image, std::env::var("SHAREBENCH_QEMU_ICOUNT").ok())
    }

    /// Options for `image`, checked.
    pub fn new(image: PathBuf, icount: Option<String>) -> Result<Self, BenchError> {
        if !image.is_file() {
            return Err(BenchError::Setup(format!(
                "the QEMU station image {} is missing: build it with `cargo xtask images` (or set SHAREBENCH_QEMU_IMAGE)",
                image.display()
            )));
        }
        if on_path("qemu-system-arm").is_none() {
            return Err(BenchError::Setup(
                "qemu-system-arm is not on PATH: install it (Debian: apt-get install qemu-system-arm)"
                    .into(),
            ));
        }
        Ok(Self {
            qemu: PathBuf::from("qemu-system-arm"),
            image,
            icount,
        })
    }
}

/// `name`'s path, if it is on `PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// QEMU, killed and reaped when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The image's UARTs, in QEMU's `-serial` order.
const UARTS: [&str; 4] = ["debug", "bridge", "link", "meter"];
const DEBUG: usize = 0;
const BRIDGE: usize = 1;
const LINK: usize = 2;
const METER: usize = 3;

/// One station image in QEMU.
pub struct Remote {
    name: String,
    proc: Proc,
    /// Listeners whose UART has not connected yet.
    listeners: [Option<TcpListener>; 4],
    socks: [Option<TcpStream>; 4],
    connect_by: Instant,
    rx: [Vec<u8>; 4],
    tx: [Vec<u8>; 4],
    pins: VecDeque<Output>,
    telemetry: VecDeque<String>,
    frames: VecDeque<Vec<u8>>,
    meter: Vec<u8>,
    failed: Option<String>,
    /// A plan waits in the image for its final newline.
    staged: bool,
    /// When the oldest telemetry line not yet taken was read.
    telemetry_at: Option<Instant>,
    /// The station changed its pilot output: the next pilot levels go to it
    /// even if they did not change (docs/wire-bridge.md).
    pilot_answer_due: bool,
    sent_pilot: Option<PilotLevels>,
    sent_relay: Option<bool>,
    sent_amps: Option<[u16; 3]>,
}

impl Remote {
    /// Start QEMU for station `name`; its UARTs connect in the background
    /// ([`Self::poll`] accepts them; [`Self::ready`] says when all did).
    pub fn spawn(opts: &QemuOptions, name: &str) -> Result<Self, BenchError> {
        let setup = |what: &str, e: std::io::Error| {
            BenchError::Setup(format!("QEMU for {name}: {what}: {e}"))
        };
        let mut listeners: [Option<TcpListener>; 4] = Default::default();
        // Where util-linux's `setpriv` is at hand, QEMU also dies with the
        // thread that started it, should the harness be killed outright
        // (a signal runs no `Drop`).
        let mut cmd = match on_path("setpriv") {
            Some(setpriv) => {
                let mut c = Command::new(setpriv);
                c.args(["--pdeathsig", "KILL"]).arg(&opts.qemu);
                c
            }
            None => Command::new(&opts.qemu),
        };
        cmd.args(["-M", "mps2-an386", "-nographic", "-semihosting"])
            .args(["-monitor", "none"])
            .arg("-kernel")
            .arg(&opts.image)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(ic) = &opts.icount {
            cmd.args(["-icount", ic]);
        }
        for l in &mut listeners {
            let listener =
                TcpListener::bind("127.0.0.1:0").map_err(|e| setup("bind a loopback port", e))?;
            listener
                .set_nonblocking(true)
                .map_err(|e| setup("set a listener non-blocking", e))?;
            let port = listener
                .local_addr()
                .map_err(|e| setup("read a listener's port", e))?
                .port();
            // nodelay: QEMU's small writes must not wait for Nagle (40 ms).
            cmd.args(["-serial", &format!("tcp:127.0.0.1:{port},nodelay=on")]);
            *l = Some(listener);
        }
        let child = cmd
            .spawn()
            .map_err(|e| setup("start qemu-system-arm (is it installed?)", e))?;
        Ok(Self {
            name: name.to_string(),
            proc: Proc(child),
            listeners,
            socks: Default::default(),
            connect_by: Instant::now() + CONNECT_TIMEOUT,
            rx: Default::default(),
            tx: Default::default(),
            pins: VecDeque::new(),
            telemetry: VecDeque::new(),
            frames: VecDeque::new(),
            meter: Vec::new(),
            failed: None,
            staged: false,
            telemetry_at: None,
            pilot_answer_due: false,
            sent_pilot: None,
            sent_relay: None,
            sent_amps: None,
        })
    }

    /// Every UART connected.
    #[must_use]
    pub fn ready(&self) -> bool {
        self.socks.iter().all(Option::is_some)
    }

    /// Why this station cannot go on, if it cannot.
    #[must_use]
    pub fn failed(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    fn fail(&mut self, why: String) {
        if self.failed.is_none() {
            self.failed = Some(format!("{}'s QEMU: {why}", self.name));
        }
    }

    /// Accept UARTs, read what QEMU sent, write what is queued. Never blocks.
    pub fn poll(&mut self) {
        if self.failed.is_some() {
            return;
        }
        match self.proc.0.try_wait() {
            Ok(Some(status)) => {
                let mut err = String::new();
                if let Some(mut e) = self.proc.0.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                return self.fail(format!("exited ({status}): {}", err.trim()));
            }
            Ok(None) => {}
            Err(e) => return self.fail(format!("cannot be waited on: {e}")),
        }
        for k in 0..4 {
            if self.socks[k].is_some() {
                continue;
            }
            let Some(l) = self.listeners[k].as_ref() else {
                continue;
            };
            match l.accept() {
                Ok((s, _)) => {
                    if let Err(e) = s.set_nonblocking(true).and_then(|()| s.set_nodelay(true)) {
                        return self.fail(format!("its {} UART: {e}", UARTS[k]));
                    }
                    self.socks[k] = Some(s);
                    self.listeners[k] = None;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if Instant::now() > self.connect_by {
                        return self.fail(format!(
                            "did not connect its {} UART within {} s",
                            UARTS[k],
                            CONNECT_TIMEOUT.as_secs()
                        ));
                    }
                }
                Err(e) => return self.fail(format!("accepting its {} UART: {e}", UARTS[k])),
            }
        }
        for k in 0..4 {
            self.read(k);
            self.flush(k);
        }
        self.parse_debug();
        self.parse_bridge();
        self.parse_link();
        self.meter.append(&mut self.rx[METER]);
    }

    fn read(&mut self, k: usize) {
        let Some(s) = self.socks[k].as_mut() else {
            return;
        };
        let mut chunk = [0u8; 1024];
        loop {
            match s.read(&mut chunk) {
                Ok(0) => return self.fail(format!("closed its {} UART", UARTS[k])),
                Ok(n) => self.rx[k].extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return self.fail(format!("reading its {} UART: {e}", UARTS[k])),
            }
        }
    }

    fn flush(&mut self, k: usize) {
        let Some(s) = self.socks[k].as_mut() else {
            return;
        };
        while !self.tx[k].is_empty() {
            match s.write(&self.tx[k]) {
                Ok(0) => return self.fail(format!("closed its {} UART", UARTS[k])),
                Ok(n) => {
                    self.tx[k].drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return self.fail(format!("writing its {} UART: {e}", UARTS[k])),
            }
        }
    }

    fn send(&mut self, k: usize, bytes: &[u8]) {
        self.tx[k].extend_from_slice(bytes);
        self.flush(k);
    }

    /// Whole lines of UART `k`, without their newline; too long a line
    /// fails the station.
    fn lines(&mut self, k: usize) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(at) = self.rx[k].iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.rx[k].drain(..=at).collect();
            out.push(String::from_utf8_lossy(&line).trim_end().to_string());
        }
        if self.rx[k].len() > MAX_LINE {
            let head = String::from_utf8_lossy(&self.rx[k][..32])
                .escape_default()
                .to_string();
            self.fail(format!(
                "sent {} bytes on its {} UART without a newline (garbage: \"{head}...\")",
                self.rx[k].len(),
                UARTS[k]
            ));
        }
        out
    }

    fn parse_debug(&mut self) {
        for line in self.lines(DEBUG) {
            // The image prints telemetry and nothing else.
            match firmware::telemetry::parse_line(&line) {
                Ok(_) => {
                    self.telemetry_at.get_or_insert_with(Instant::now);
                    self.telemetry.push_back(line);
                }
                Err(e) => {
                    return self.fail(format!(
                        "printed garbage on its debug channel ({e}): \"{}\"",
                        line.escape_default()
                    ))
                }
            }
        }
    }

    fn parse_bridge(&mut self) {
        for line in self.lines(BRIDGE) {
            match PinLine::parse(&line) {
                Ok(PinLine::Pin(o)) => {
                    if matches!(o, Output::Pilot(_)) {
                        // Answered with the levels it gives, changed or not.
                        self.pilot_answer_due = true;
                    }
                    self.pins.push_back(o);
                }
                Ok(PinLine::Refused(e)) => {
                    return self.fail(format!("refused a bridge line of the bench: {e}"))
                }
                Err(e) => {
                    return self.fail(format!(
                        "sent a bad bridge line ({e}): \"{}\"",
                        line.escape_default()
                    ))
                }
            }
        }
    }

    /// Split the link's bytes into frames (`firmware::sharing::frame`'s
    /// layout: SOF, version, payload length, ...); the bus models route and
    /// fault them whole. A station sends frames and nothing else.
    fn parse_link(&mut self) {
        loop {
            let buf = &self.rx[LINK];
            let Some(&first) = buf.first() else { return };
            if first != SOF {
                return self.fail(format!(
                    "sent a byte {first:#04x} on the link where a frame must start"
                ));
            }
            let Some(&len) = buf.get(2) else { return };
            if usize::from(len) > MAX_PAYLOAD {
                return self.fail(format!("sent a link frame of payload length {len}"));
            }
            let total = HEADER_LEN + usize::from(len) + MAC_LEN + CRC_LEN;
            if buf.len() < total {
                return;
            }
            let frame: Vec<u8> = self.rx[LINK].drain(..total).collect();
            self.frames.push_back(frame);
        }
    }

    /// The station changed its pilot output and has not been answered yet.
    #[must_use]
    pub fn pilot_answer_due(&self) -> bool {
        self.pilot_answer_due
    }

    /// Pin changes since the last call, oldest first.
    pub fn take_pins(&mut self) -> Vec<Output> {
        self.pins.drain(..).collect()
    }

    /// Telemetry lines since the last call, with when the first of them
    /// was read.
    pub fn telemetry_read_at(&self) -> Option<Instant> {
        self.telemetry_at
    }

    /// Telemetry lines since the last call.
    pub fn take_telemetry(&mut self) -> Vec<String> {
        self.telemetry_at = None;
        self.telemetry.drain(..).collect()
    }

    /// Link frames since the last call.
    pub fn take_frames(&mut self) -> Vec<Vec<u8>> {
        self.frames.drain(..).collect()
    }

    /// Meter-line bytes since the last call.
    pub fn take_meter(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.meter)
    }

    /// Bytes to the station's debug channel (commissioning).
    pub fn debug_rx(&mut self, bytes: &[u8]) {
        self.send(DEBUG, bytes);
    }

    /// Stand in for the flash page the image lacks: give a station that
    /// is powered off (a spare image) its accepted plan without the final
    /// newline, which it cannot act on; [`Self::power_on`] sends that
    /// newline, and the station takes the plan at that instant, as a board
    /// reads its plan from flash at boot, instead of a few hundred bytes of
    /// UART time later.
    pub fn stage_plan(&mut self, plan: &str) {
        if let Some(body) = plan.strip_suffix('\n') {
            self.send(DEBUG, body.as_bytes());
            self.staged = true;
        }
    }

    /// A plan is staged (see [`Self::stage_plan`]).
    #[must_use]
    pub fn staged(&self) -> bool {
        self.staged
    }

    /// Complete a staged plan (see [`Self::stage_plan`]); `false` if none
    /// was staged.
    pub fn power_on(&mut self) -> bool {
        if std::mem::take(&mut self.staged) {
            self.send(DEBUG, b"\n");
            true
        } else {
            false
        }
    }

    /// A frame from the bus to the station's link UART.
    pub fn link_rx(&mut self, bytes: &[u8]) {
        self.send(LINK, bytes);
    }

    /// The meter's answer to the station's meter UART.
    pub fn meter_rx(&mut self, bytes: &[u8]) {
        self.send(METER, bytes);
    }

    /// What the station's pilot ADC reads from now on.
    pub fn set_pilot(&mut self, levels: PilotLevels) {
        if self.sent_pilot != Some(levels) || std::mem::take(&mut self.pilot_answer_due) {
            self.sent_pilot = Some(levels);
            self.send(BRIDGE, SenseLine::Pilot(levels).encode().as_bytes());
        }
    }

    /// What its relay-sense input reads from now on.
    pub fn set_relay(&mut self, closed: bool) {
        if self.sent_relay != Some(closed) {
            self.sent_relay = Some(closed);
            self.send(BRIDGE, SenseLine::Relay(closed).encode().as_bytes());
        }
    }

    /// What its current sensor reads from now on.
    pub fn set_amps(&mut self, da: [u16; 3]) {
        if self.sent_amps != Some(da) {
            self.sent_amps = Some(da);
            self.send(BRIDGE, SenseLine::Amps(da).encode().as_bytes());
        }
    }

    /// Forget what the station said before now (a spare QEMU's boot lines,
    /// before the bench powers it on).
    pub fn discard_input(&mut self) {
        self.pins.clear();
        self.telemetry.clear();
        self.frames.clear();
        self.meter.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_image_names_the_command_that_builds_it() {
        let e = QemuOptions::new(PathBuf::from("/nonexistent/station-qemu.elf"), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("cargo xtask images"), "{e}");
        assert!(e.contains("/nonexistent/station-qemu.elf"), "{e}");
    }

    /// Poll until the station is ready or failed (at most 10 s).
    fn settle(r: &mut Remote) {
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until && r.failed().is_none() {
            r.poll();
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn options(qemu: PathBuf) -> QemuOptions {
        QemuOptions {
            qemu,
            image: PathBuf::from("station-qemu.elf"),
            icount: None,
        }
    }

    #[test]
    fn a_qemu_that_exits_fails_the_station_with_its_status() {
        let mut r = Remote::spawn(&options(PathBuf::from("false")), "st7").unwrap();
        settle(&mut r);
        let why = r.failed().unwrap_or_default().to_string();
        assert!(why.contains("st7's QEMU: exited"), "{why}");
    }

    #[test]
    fn a_station_that_prints_garbage_fails_with_the_line() {
        // A stand-in for QEMU: connects the four UARTs as QEMU does, then
        // prints a line on the debug channel that no station prints.
        let dir = std::env::temp_dir().join(format!("sharebench-fake-qemu-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("fake-qemu");
        std::fs::write(
            &script,
            "#!/bin/bash\nn=3\nfor a in \"$@\"; do case $a in tcp:*) p=${a#tcp:127.0.0.1:}; p=${p%%,*}; eval \"exec $n<>/dev/tcp/127.0.0.1/$p\"; n=$((n+1));; esac; done\necho 'hello from a broken image' >&3\nsleep 20\n",
        )
        .unwrap();
        let mut perm = std::fs::metadata(&script).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
        std::fs::set_permissions(&script, perm).unwrap();
        let mut r = Remote::spawn(&options(script), "st3").unwrap();
        settle(&mut r);
        let why = r.failed().unwrap_or_default().to_string();
        assert!(
            why.contains("printed garbage on its debug channel")
                && why.contains("hello from a broken image"),
            "{why}"
        );
        // Dropping the station kills and reaps the stand-in (it would
        // sleep 20 s): its process is gone.
        let pid = r.proc.0.id();
        drop(r);
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
