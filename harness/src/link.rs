//! The line to a fixture: a serial port, a raw TCP socket (ser2net's or
//! labgrid's `tcp` export) or RFC 2217 (Telnet COM port control, ser2net's
//! `telnet(rfc2217)`), all as one byte stream whose reads time out.
//!
//! Owns opening each kind and the Telnet layer of RFC 2217 (negotiation on
//! open, the baud rate, IAC escaping both ways). Does not own the fixture
//! protocol ([`crate::serial`] speaks it over any [`Link`]) nor the bench
//! URL ([`crate::bench::BenchSpec`]).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use rfc2217_rs::negotiation::{Intent, Option as TelnetOption};
use rfc2217_rs::parser::Event;
use rfc2217_rs::{Negotiation, Parser, Subnegotiation};

use crate::bench::BenchError;
use crate::serial::Link;

/// How long one read waits before it reports "nothing yet": short, so a
/// wait for a station's answer on its debug channel is not held up by a
/// quiet fixture line.
pub const READ_TIMEOUT: Duration = Duration::from_millis(1);
/// How long connecting may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The ports this machine has, for an error that names a bad one.
#[must_use]
pub fn available_ports() -> String {
    match serialport::available_ports() {
        Ok(ports) if !ports.is_empty() => ports
            .iter()
            .map(|p| p.port_name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        Ok(_) => "none found".into(),
        Err(e) => format!("could not list them: {e}"),
    }
}

/// A serial port (a fixture on USB CDC-ACM, a UART adapter, a pty).
pub fn serial(port: &str, baud: u32) -> Result<Box<dyn Link>, BenchError> {
    let p = serialport::new(port, baud)
        .timeout(READ_TIMEOUT)
        .open()
        .map_err(|e| BenchError::Open {
            port: port.to_string(),
            reason: format!("{e}; ports on this machine: {}", available_ports()),
        })?;
    Ok(Box::new(p))
}

fn connect(host: &str, port: u16) -> Result<TcpStream, BenchError> {
    let what = format!("{host}:{port}");
    let open_err = |reason: String| BenchError::Open {
        port: what.clone(),
        reason,
    };
    let addrs = (host, port)
        .to_socket_addrs()
        .map_err(|e| open_err(format!("cannot resolve it: {e}")))?;
    let mut last = String::from("no address");
    for a in addrs {
        match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
            Ok(s) => {
                s.set_read_timeout(Some(READ_TIMEOUT))
                    .and_then(|()| s.set_nodelay(true))
                    .map_err(|e| open_err(e.to_string()))?;
                return Ok(s);
            }
            Err(e) => last = e.to_string(),
        }
    }
    Err(open_err(format!(
        "{last} (is ser2net or labgrid exporting the fixture there?)"
    )))
}

/// A raw TCP export of the fixture's port.
pub fn tcp(host: &str, port: u16) -> Result<Box<dyn Link>, BenchError> {
    Ok(Box::new(connect(host, port)?))
}

/// An RFC 2217 export: Telnet with COM port control, at `baud`.
pub fn rfc2217(host: &str, port: u16, baud: u32) -> Result<Box<dyn Link>, BenchError> {
    let stream = connect(host, port)?;
    let mut link = Rfc2217 {
        stream,
        parser: Parser::new(),
        data: VecDeque::new(),
    };
    link.negotiate(baud)
        .map_err(|e| BenchError::Io(format!("RFC 2217 negotiation with {host}:{port}: {e}")))?;
    Ok(Box::new(link))
}

/// The Telnet layer of an RFC 2217 connection.
struct Rfc2217 {
    stream: TcpStream,
    parser: Parser,
    /// Data bytes already taken out of the Telnet stream.
    data: VecDeque<u8>,
}

impl Rfc2217 {
    fn negotiate(&mut self, baud: u32) -> io::Result<()> {
        let mut out = Vec::new();
        // Binary both ways (the fixture's lines are ASCII, but a garbled
        // byte must come through as it is), no go-aheads, COM port control.
        for (intent, option) in [
            (Intent::Will, TelnetOption::Binary),
            (Intent::Do, TelnetOption::Binary),
            (Intent::Will, TelnetOption::SuppressGoAhead),
            (Intent::Do, TelnetOption::SuppressGoAhead),
            (Intent::Will, TelnetOption::ComPort),
        ] {
            let mut b = [0u8; 3];
            Negotiation { intent, option }.serialize(&mut b);
            out.extend_from_slice(&b);
        }
        let mut b = [0u8; rfc2217_rs::subnegotiation::MAX_SIZE];
        for sub in [
            Subnegotiation::SetBaudRate(baud),
            Subnegotiation::SetDataSize(8),
            Subnegotiation::SetParity(1),   // none
            Subnegotiation::SetStopSize(1), // one stop bit
        ] {
            let n = sub.serialize_client(&mut b);
            out.extend_from_slice(&b[..n]);
        }
        self.stream.write_all(&out)?;
        self.stream.flush()
    }

    /// Answer the server's negotiation: agree to what we asked for, refuse
    /// anything else (so it never waits on us).
    fn answer(&mut self, n: Negotiation) -> io::Result<()> {
        let ours = matches!(
            n.option,
            TelnetOption::Binary | TelnetOption::SuppressGoAhead | TelnetOption::ComPort
        );
        let reply = match (n.intent, ours) {
            (Intent::Will | Intent::Do, true) | (Intent::Wont | Intent::Dont, _) => return Ok(()),
            (Intent::Will, false) => Intent::Dont,
            (Intent::Do, false) => Intent::Wont,
        };
        let mut b = [0u8; 3];
        Negotiation {
            intent: reply,
            option: n.option,
        }
        .serialize(&mut b);
        self.stream.write_all(&b)
    }
}

impl Read for Rfc2217 {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.data.is_empty() {
            let mut raw = [0u8; 512];
            let n = self.stream.read(&mut raw)?;
            if n == 0 {
                return Ok(0);
            }
            for &b in &raw[..n] {
                match self.parser.process_byte(b) {
                    Ok(Some(Event::Data(d))) => self.data.push_back(d),
                    Ok(Some(Event::Negotiation(neg))) => self.answer(neg)?,
                    // Line and modem state notifications, acks of our
                    // settings: nothing the fixture protocol needs.
                    Ok(Some(Event::Command(_) | Event::Subnegotiation(_)) | None) => {}
                    // A broken Telnet sequence: start over; the fixture
                    // protocol's checksums catch what it garbled.
                    Err(_) => self.parser.reset(),
                }
            }
        }
        let n = buf.len().min(self.data.len());
        for (slot, b) in buf.iter_mut().zip(self.data.drain(..n)) {
            *slot = b;
        }
        Ok(n)
    }
}

impl Write for Rfc2217 {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // IAC in the data is doubled.
        let mut out = Vec::with_capacity(buf.len());
        for &b in buf {
            out.push(b);
            if b == 0xFF {
                out.push(0xFF);
            }
        }
        self.stream.write_all(&out)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A Telnet peer that negotiates, then echoes data with IAC doubled.
    #[test]
    fn rfc2217_strips_telnet_and_escapes_iac() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut got = Vec::new();
            let mut b = [0u8; 256];
            // The client's negotiation and settings, then its data line.
            while !got.ends_with(b"hello\xFF\xFF\n") {
                let n = s.read(&mut b).unwrap();
                assert!(n > 0, "client closed early: {got:?}");
                got.extend_from_slice(&b[..n]);
            }
            // WILL COM-PORT-OPTION from the client, and SET-BAUDRATE 9600.
            assert!(got.windows(3).any(|w| w == [255, 251, 44]), "{got:?}");
            assert!(
                got.windows(8)
                    .any(|w| w == [255, 250, 44, 1, 0, 0, 0x25, 0x80]),
                "{got:?}"
            );
            // Answer: DO COM-PORT-OPTION, a notification, data with an IAC.
            s.write_all(&[255, 253, 44]).unwrap();
            s.write_all(&[255, 250, 44, 107, 0x30, 255, 240]).unwrap();
            s.write_all(b"A 1 OK\xFF\xFFx\n").unwrap();
            std::thread::sleep(Duration::from_millis(200));
        });
        let mut link = rfc2217("127.0.0.1", port, 9_600).unwrap();
        link.write_all(b"hello\xFF\n").unwrap();
        let mut got = Vec::new();
        let mut b = [0u8; 64];
        while !got.ends_with(b"\n") {
            match link.read(&mut b) {
                Ok(n) => got.extend_from_slice(&b[..n]),
                Err(e) if crate::serial::nothing_yet(&e) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, b"A 1 OK\xFFx\n");
        server.join().unwrap();
    }

    #[test]
    fn a_dead_tcp_port_is_a_clear_open_error() {
        // Bind and drop: nothing listens there any more.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = tcp("127.0.0.1", port).err().expect("refused");
        assert!(e.to_string().contains("ser2net"), "{e}");
    }

    #[test]
    fn a_bad_serial_port_lists_the_ports_that_exist() {
        let e = serial("/dev/no-such-fixture", 115_200)
            .err()
            .expect("no port");
        assert!(e.to_string().contains("ports on this machine"), "{e}");
    }
}
