//! A TCP proxy for fault injection, put between a process and the emulator or PostgreSQL. It
//! forwards; black-holes (reads and drops both directions: calls hang, as behind a dead
//! network path); drops responses (requests reach the server, answers never come back: a
//! publish that Pub/Sub accepted but the caller saw time out); or is down (every connection
//! closed at once and new ones closed on accept, as when the server stops).
//!
//! Plain threads, so it serves tests on any runtime or none. Shared by the library's and the
//! `worker` crate's tests (`#[path]`).
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What the proxy does with traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Fault {
    /// Forward both ways.
    Forward = 0,
    /// Read and drop both ways: every call hangs.
    BlackHole = 1,
    /// Forward requests, drop responses.
    DropResponses = 2,
    /// Close every connection, refuse new ones.
    Down = 3,
}

impl Fault {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => Fault::BlackHole,
            2 => Fault::DropResponses,
            3 => Fault::Down,
            _ => Fault::Forward,
        }
    }
}

/// A running proxy to one upstream address.
pub(crate) struct FaultProxy {
    addr: SocketAddr,
    mode: Arc<AtomicU8>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream` (host:port).
    pub(crate) fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let mode = Arc::new(AtomicU8::new(Fault::Forward as u8));
        let upstream = upstream.to_string();
        let m = mode.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { continue };
                if Fault::from_u8(m.load(Ordering::SeqCst)) == Fault::Down {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                for (from, to, upward) in [
                    (client.try_clone(), server.try_clone(), true),
                    (server.try_clone(), client.try_clone(), false),
                ] {
                    if let (Ok(from), Ok(to)) = (from, to) {
                        let m = m.clone();
                        std::thread::spawn(move || pump(from, to, upward, &m));
                    }
                }
            }
        });
        Self { addr, mode }
    }

    /// The proxy's host:port.
    pub(crate) fn host(&self) -> String {
        self.addr.to_string()
    }

    /// The proxy's port.
    pub(crate) fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Switches what the proxy does, for current and new connections.
    pub(crate) fn set(&self, fault: Fault) {
        self.mode.store(fault as u8, Ordering::SeqCst);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.set(Fault::Down);
    }
}

/// Copies `from` to `to` under the current mode until either side closes or the proxy is down.
fn pump(mut from: TcpStream, mut to: TcpStream, upward: bool, mode: &AtomicU8) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let fault = Fault::from_u8(mode.load(Ordering::SeqCst));
        if fault == Fault::Down {
            break;
        }
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => break,
        };
        // The mode when the bytes arrived decides their fate.
        let forward = match Fault::from_u8(mode.load(Ordering::SeqCst)) {
            Fault::Forward => true,
            Fault::DropResponses => upward,
            Fault::BlackHole | Fault::Down => false,
        };
        if forward && to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
