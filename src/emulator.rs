//! The Google Cloud Pub/Sub emulator as a child process: for tests, the demo and benchmarks.
//! It is started on a free port in a process group of its own and stopped by that group (the
//! emulator's wrapper script leaves its Java child behind otherwise).

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

const SDK_ROOTS: &[&str] = &[
    "/usr/lib/google-cloud-sdk",
    "/usr/share/google-cloud-sdk",
    "/opt/google-cloud-sdk",
    "/usr/local/google-cloud-sdk",
];
const IN_SDK: &str = "platform/pubsub-emulator/bin/cloud-pubsub-emulator";

/// A running emulator, stopped on drop.
pub struct Emulator {
    host: String,
    child: Child,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

/// Finds the emulator: `PUBSUB_EMULATOR_BIN`, `cloud-pubsub-emulator` on PATH, or the Google
/// Cloud SDK's usual install folders.
pub fn find_binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("PUBSUB_EMULATOR_BIN") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        return Err(Error::Emulator(format!(
            "the Pub/Sub emulator is not installed at PUBSUB_EMULATOR_BIN={} (no such file); \
             install it with `apt-get install google-cloud-cli-pubsub-emulator`, or unset the variable",
            p.display()
        )));
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let p = dir.join("cloud-pubsub-emulator");
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    let home = std::env::var_os("HOME").map(|h| PathBuf::from(h).join("google-cloud-sdk"));
    for root in SDK_ROOTS.iter().map(PathBuf::from).chain(home) {
        let p = root.join(IN_SDK);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(Error::Emulator(
        "the Pub/Sub emulator was not found (looked at PUBSUB_EMULATOR_BIN, PATH and the Google Cloud SDK folders). \
         Install it with `apt-get install google-cloud-cli-pubsub-emulator` (Google Cloud's apt repository) or \
         `gcloud components install pubsub-emulator`; it needs Java 11+. Or set PUBSUB_EMULATOR_HOST to a running one."
            .into(),
    ))
}

/// Finds the emulator ([`find_binary`]) and checks that Java, which it runs on, is installed.
pub fn check_installed() -> Result<PathBuf> {
    let bin = find_binary()?;
    let java_home = std::env::var_os("JAVA_HOME").map(|h| PathBuf::from(h).join("bin/java"));
    let on_path = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join("java").is_file()));
    if on_path || java_home.is_some_and(|j| j.is_file()) {
        Ok(bin)
    } else {
        Err(Error::Emulator(format!(
            "the Pub/Sub emulator at {} needs Java 11+, and Java is not installed \
             (apt-get install default-jre-headless, or set JAVA_HOME)",
            bin.display()
        )))
    }
}

fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|source| Error::Io {
        context: "finding a free port".into(),
        source,
    })?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|source| Error::Io {
            context: "finding a free port".into(),
            source,
        })
}

/// Whether something on `host` answers an HTTP request (the emulator accepts TCP connections a
/// little before it serves requests).
fn answers_http(host: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = TcpStream::connect(host) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET / HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(n) if n > 0)
}

impl Emulator {
    /// Starts an emulator on a free port and waits (up to 90 s) until it accepts connections.
    pub fn start() -> Result<Self> {
        let port = free_port()?;
        Self::start_on(port)
    }

    /// Starts an emulator on `port`. It is stopped when this process exits, however it exits
    /// (a watchdog polls the process), if not stopped before.
    pub fn start_on(port: u16) -> Result<Self> {
        use std::os::unix::process::CommandExt;
        let bin = check_installed()?;
        let log = std::env::temp_dir().join(format!("pubsub-emulator-{port}.log"));
        let out = std::fs::File::create(&log).map_err(|source| Error::Io {
            context: format!("creating {}", log.display()),
            source,
        })?;
        let err = out.try_clone().map_err(|source| Error::Io {
            context: format!("creating {}", log.display()),
            source,
        })?;
        let child = Command::new(&bin)
            .arg("--host=127.0.0.1")
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|source| Error::Io {
                context: format!("starting {}", bin.display()),
                source,
            })?;
        let mut emu = Self {
            host: format!("127.0.0.1:{port}"),
            child,
        };
        // At once, before waiting for it to listen: a process killed during the (slow) start
        // would otherwise leave a JVM behind. It never outlives the process that started it.
        emu.stop_when_process_exits(std::process::id());
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if answers_http(&emu.host) {
                return Ok(emu);
            }
            if let Ok(Some(status)) = emu.child.try_wait() {
                return Err(Error::Emulator(format!(
                    "the emulator exited at start ({status}); see {}",
                    log.display()
                )));
            }
            if Instant::now() > deadline {
                emu.stop();
                return Err(Error::Emulator(format!(
                    "the emulator did not listen on {} within 90 s; see {}",
                    emu.host,
                    log.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `127.0.0.1:PORT`, the value for `PUBSUB_EMULATOR_HOST`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The process id of the emulator's process group.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Makes sure the emulator dies when process `pid` (for instance this test binary) exits,
    /// even if this value is never dropped (a `static`).
    pub fn stop_when_process_exits(&self, pid: u32) {
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; kill -TERM -{pg} 2>/dev/null; sleep 2; kill -KILL -{pg} 2>/dev/null",
            pg = self.child.id()
        );
        let _ = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
    }

    /// Stops the emulator and everything it started.
    pub fn stop(&mut self) {
        let pg = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-TERM", "--", &pg])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &pg])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop();
    }
}

static SHARED: std::sync::OnceLock<std::result::Result<String, String>> =
    std::sync::OnceLock::new();

/// The emulator for this process, for test suites: `PUBSUB_EMULATOR_HOST` when set, otherwise one
/// emulator started on first use, shared by every test of the binary, and stopped (by process
/// group) when the process exits. Returns its `host:port`.
pub fn shared_host() -> Result<&'static str> {
    let host = SHARED.get_or_init(|| {
        if let Some(h) = std::env::var("PUBSUB_EMULATOR_HOST")
            .ok()
            .filter(|h| !h.is_empty())
        {
            return Ok(h);
        }
        let emu = Emulator::start().map_err(|e| e.to_string())?;
        let host = emu.host().to_string();
        // Lives as long as the process; the watchdog stops it at exit.
        #[allow(clippy::mem_forget)]
        std::mem::forget(emu);
        Ok(host)
    });
    host.as_deref()
        .map_err(|e| Error::Emulator(format!("starting the shared emulator: {e}")))
}
