//! Runs `moto_server` (IAM, STS, Organizations, SQS) on 127.0.0.1 for the lifetime of a
//! [`MotoServer`].

use std::io;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, ChildStdin, Command};

use crate::http;

/// How long moto may take to answer `GET /moto-api/`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A running moto server. Dropping it kills the process.
#[derive(Debug)]
pub struct MotoServer {
    url: String,
    log: PathBuf,
    child: Child,
    /// A watchdog (`sh`) that kills moto when this pipe closes: covers a test process that
    /// dies without running destructors.
    _watchdog: Option<(Child, ChildStdin)>,
}

/// The moto_server command: `$MOTO_SERVER`, else `<workspace>/.venv/bin/moto_server`, else
/// `moto_server` from `PATH`.
pub fn moto_command() -> (PathBuf, Vec<String>) {
    if let Some(path) = std::env::var_os("MOTO_SERVER").filter(|p| !p.is_empty()) {
        return (PathBuf::from(path), Vec::new());
    }
    let manifest_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir.parent().unwrap_or(manifest_dir);
    let venv = workspace.join(".venv").join("bin").join("moto_server");
    if venv.is_file() {
        return (venv, Vec::new());
    }
    (PathBuf::from("moto_server"), Vec::new())
}

fn free_port() -> io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

impl MotoServer {
    /// Starts moto on a free port and waits until it answers.
    pub async fn start() -> io::Result<Self> {
        let mut last_error = None;
        for _ in 0..3 {
            match Self::start_once().await {
                Ok(server) => return Ok(server),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("moto did not start")))
    }

    async fn start_once() -> io::Result<Self> {
        let port = free_port()?;
        let log = std::env::temp_dir().join(format!("local-world-moto-{port}.log"));
        let (program, mut args) = moto_command();
        args.extend(["-H", "127.0.0.1", "-p"].map(String::from));
        args.push(port.to_string());
        let spawn = |program: &PathBuf, args: &[String]| -> io::Result<Child> {
            Command::new(program)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log)?)
                .kill_on_drop(true)
                .spawn()
        };
        let child = match spawn(&program, &args) {
            Ok(child) => child,
            // No moto_server script on PATH: try the module (an explicit $MOTO_SERVER that
            // does not exist is an error, below).
            Err(e)
                if e.kind() == io::ErrorKind::NotFound && program.as_os_str() == "moto_server" =>
            {
                let mut module_args = vec!["-m".to_string(), "moto.server".to_string()];
                module_args.extend(args.iter().cloned());
                spawn(&PathBuf::from("python3"), &module_args).map_err(|e2| {
                    io::Error::new(
                        e2.kind(),
                        format!(
                            "cannot run {} ({e}) nor `python3 -m moto.server` ({e2}); \
                             install it with: pip install 'moto[server]'",
                            program.display()
                        ),
                    )
                })?
            }
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("{}: {e}", program.display()),
                ))
            }
        };
        let watchdog = child.id().and_then(|pid| {
            let mut watchdog = Command::new("sh")
                .arg("-c")
                .arg(format!("cat >/dev/null; kill {pid} 2>/dev/null"))
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .ok()?;
            let stdin = watchdog.stdin.take()?;
            Some((watchdog, stdin))
        });
        let mut server = Self {
            url: format!("http://127.0.0.1:{port}"),
            log,
            child,
            _watchdog: watchdog,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    async fn wait_ready(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let probe = format!("{}/moto-api/", self.url);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(io::Error::other(format!(
                    "moto_server exited with {status} before it was ready; log: {}",
                    self.log_tail()
                )));
            }
            if let Ok(response) = http::get(&probe).await {
                if response.status == 200 {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "moto_server did not answer {probe} within {READY_TIMEOUT:?}; log: {}",
                        self.log_tail()
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The process id (for diagnostics).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Forgets all of moto's state (`POST /moto-api/reset`).
    pub async fn reset(&self) -> io::Result<()> {
        let response = http::send(
            hyper::Method::POST,
            &format!("{}/moto-api/reset", self.url),
            &[],
            bytes::Bytes::new(),
        )
        .await?;
        if response.is_success() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "moto reset: HTTP {}",
                response.status
            )))
        }
    }

    /// Kills moto and waits for it to exit.
    pub async fn stop(mut self) -> io::Result<()> {
        self.child.kill().await
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        // The child itself is killed by `kill_on_drop`.
        let _ = std::fs::remove_file(&self.log);
    }
}
