//! A private moto server on 127.0.0.1 for one test, and AWS clients pointed at it.
//!
//! The server is `$BERTH_MOTO_SERVER` (what `.ci/run` exports: the venv's `moto_server`),
//! else `moto_server` on PATH. Python snippets run with the interpreter beside that
//! server (the venv's `python`), else `python3`; the AWS CLI is `$BERTH_AWS_CLI`, else
//! `aws` on PATH. moto's gaps and quirks are written up in the shared notes (`notes/moto.md`).
//!
//! Every client gets dummy credentials (`test`/`test`), region us-east-1, the server as
//! `AWS_ENDPOINT_URL`, and no shared config files, so nothing can reach real AWS.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to answer `GET /moto-api/` after it is spawned.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Spawn attempts: another process may take the port between our probe and moto's bind.
const ATTEMPTS: usize = 3;

/// A running `moto_server`, killed when dropped.
pub struct Moto {
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    pub port: u16,
    child: Child,
    log: PathBuf,
    // Holds the server log and the (absent) AWS config files; removed on drop.
    dir: tempfile::TempDir,
}

impl Moto {
    /// Starts a fresh server with moto's defaults (in particular no
    /// `MOTO_ECS_SERVICE_RUNNING`, so services stay `IN_PROGRESS` unless desiredCount is 0).
    pub fn start() -> Moto {
        Self::start_with_env(&[])
    }

    /// Starts a fresh server with extra environment for the server process, e.g.
    /// `[("MOTO_ECS_SERVICE_RUNNING", "2")]`.
    pub fn start_with_env(env: &[(&str, &str)]) -> Moto {
        let bin = server_binary();
        let dir = tempfile::Builder::new().prefix("berth-moto-").tempdir().expect("cannot create a temp dir");
        let mut failures = Vec::new();
        for _ in 0..ATTEMPTS {
            let port = free_port();
            let log = dir.path().join(format!("moto-{port}.log"));
            let file = File::create(&log).expect("cannot create the moto log");
            let mut cmd = Command::new(&bin);
            cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(file.try_clone().expect("cannot clone the log file"))
                .stderr(file)
                .env_remove("MOTO_ECS_SERVICE_RUNNING")
                .env_remove("MOTO_ECS_SERVICE_FAILED_TASKS");
            for (k, v) in env {
                cmd.env(k, v);
            }
            let mut child = cmd.spawn().unwrap_or_else(|e| {
                panic!(
                    "cannot start `{}`: {e}\n(install moto: `bash .ci/run` makes a venv; \
                     or set BERTH_MOTO_SERVER to a moto_server binary)",
                    bin.display()
                )
            });
            match wait_ready(&mut child, port) {
                Ok(()) => {
                    return Moto { endpoint: format!("http://127.0.0.1:{port}"), port, child, log, dir };
                }
                Err(Exited(status)) => {
                    // Most likely the port was taken meanwhile: try another one.
                    failures.push(format!("port {port}: moto exited ({status}):\n{}", read_log(&log)));
                }
                Err(TimedOut) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "moto on port {port} did not answer GET /moto-api/ within {READY_TIMEOUT:?}:\n{}",
                        read_log(&log)
                    );
                }
            }
        }
        panic!("moto did not start after {ATTEMPTS} attempts:\n{}", failures.join("\n"));
    }

    /// The server's log so far (stdout and stderr).
    pub fn log(&self) -> String {
        read_log(&self.log)
    }

    /// The environment every AWS client of this server gets: endpoint, dummy credentials,
    /// region, no IMDS, no shared config or credential files, few retries (moto answers
    /// unimplemented calls with HTTP 500, which SDKs otherwise retry for seconds).
    pub fn client_env(&self) -> Vec<(&'static str, String)> {
        let missing = |name: &str| self.dir.path().join(name).to_string_lossy().into_owned();
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_DEFAULT_REGION", "us-east-1".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("AWS_CONFIG_FILE", missing("aws-config")),
            ("AWS_SHARED_CREDENTIALS_FILE", missing("aws-credentials")),
            ("AWS_MAX_ATTEMPTS", "2".into()),
            ("AWS_PAGER", String::new()),
        ]
    }

    /// A command for `program` with [`Moto::client_env`] and no inherited AWS identity.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.stdin(Stdio::null());
        for k in [
            "AWS_PROFILE",
            "AWS_DEFAULT_PROFILE",
            "AWS_SESSION_TOKEN",
            "AWS_SECURITY_TOKEN",
            "AWS_ROLE_ARN",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        ] {
            cmd.env_remove(k);
        }
        cmd.envs(self.client_env());
        cmd
    }

    /// Runs a Python snippet (`python -c SCRIPT`, boto3 available) against this server and
    /// returns its stdout; panics with its stderr if it fails.
    pub fn python(&self, script: &str) -> String {
        let python = python_binary();
        let out = self
            .command(&python)
            .arg("-c")
            .arg(script)
            .output()
            .unwrap_or_else(|e| panic!("cannot run `{}`: {e}", python.display()));
        if !out.status.success() {
            panic!(
                "python snippet failed ({}):\n--- script\n{script}\n--- stderr\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8(out.stdout).expect("python printed non-UTF-8")
    }

    /// Runs the AWS CLI (`aws ARGS…`) against this server; the caller checks the status.
    pub fn aws(&self, args: &[&str]) -> Output {
        let aws = aws_binary();
        self.command(&aws).args(args).output().unwrap_or_else(|e| {
            panic!(
                "cannot run `{}`: {e}\n(install awscli: `bash .ci/run` makes a venv; or set BERTH_AWS_CLI)",
                aws.display()
            )
        })
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            // Shown with the failing test's output.
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- last lines of the moto log ({})", self.endpoint);
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

enum NotReady {
    Exited(std::process::ExitStatus),
    TimedOut,
}
use NotReady::{Exited, TimedOut};

fn wait_ready(child: &mut Child, port: u16) -> Result<(), NotReady> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("cannot poll moto") {
            return Err(Exited(status));
        }
        if answers(port) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(TimedOut);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether `GET http://127.0.0.1:PORT/moto-api/` answers 200.
fn answers(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /moto-api/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = Vec::new();
    let mut buf = [0u8; 256];
    while !head.windows(2).any(|w| w == b"\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let mut status_line = head.lines().next().unwrap_or("").split_whitespace();
    status_line.next().is_some_and(|v| v.starts_with("HTTP/1.")) && status_line.next() == Some("200")
}

/// A port that was free on 127.0.0.1 a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("cannot bind 127.0.0.1:0");
    listener.local_addr().expect("no local address").port()
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| format!("(cannot read {}: {e})", path.display()))
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// `$BERTH_MOTO_SERVER`, else `moto_server` (looked up on PATH).
pub fn server_binary() -> PathBuf {
    env_path("BERTH_MOTO_SERVER").unwrap_or_else(|| PathBuf::from("moto_server"))
}

/// The `python` beside `$BERTH_MOTO_SERVER` (the venv's), else `python3` on PATH.
pub fn python_binary() -> PathBuf {
    env_path("BERTH_MOTO_SERVER")
        .and_then(|server| server.parent().map(|dir| dir.join("python")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("python3"))
}

/// `$BERTH_AWS_CLI`, else `aws` on PATH.
pub fn aws_binary() -> PathBuf {
    env_path("BERTH_AWS_CLI").unwrap_or_else(|| PathBuf::from("aws"))
}
