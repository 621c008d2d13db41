//! The real function binaries under the Lambda runtime emulator: `cargo lambda watch` serves
//! the Lambda runtime API and `cargo lambda invoke` sends a payload file, exactly as a user does.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// The cargo-lambda executable: `$CARGO_LAMBDA`, else `<workspace>/.venv/bin/cargo-lambda`,
/// else `cargo-lambda` on PATH.
pub fn cargo_lambda() -> PathBuf {
    if let Some(p) = std::env::var_os("CARGO_LAMBDA") {
        return PathBuf::from(p);
    }
    let venv = workspace_root().join(".venv/bin/cargo-lambda");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("cargo-lambda")
}

/// The Cargo workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// A running `cargo lambda watch`; killed on drop.
pub struct LambdaEmulator {
    child: Child,
    port: u16,
    log: PathBuf,
}

/// What `cargo lambda invoke` answered.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// True when the function returned a value (cargo lambda exits 0).
    pub ok: bool,
    /// The function's response, or its error document.
    pub output: serde_json::Value,
    /// Raw stdout + stderr of the invoke command.
    pub raw: String,
}

impl LambdaEmulator {
    /// Starts `cargo lambda watch` on 127.0.0.1 with `env` written to an env file, and waits until
    /// it accepts connections (it compiles the functions first; allow minutes on a cold cache).
    pub async fn start(env: &[(String, String)], ready_timeout: Duration) -> io::Result<Self> {
        let port = free_port()?;
        let dir = std::env::temp_dir().join(format!("ct-lambda-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let env_file = dir.join("function.env");
        let body: String = env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        std::fs::write(&env_file, body)?;
        let log = dir.join("watch.log");
        let log_file = std::fs::File::create(&log)?;
        let child = Command::new(cargo_lambda())
            .arg("lambda")
            .arg("watch")
            .args([
                "--invoke-address",
                "127.0.0.1",
                "--invoke-port",
                &port.to_string(),
            ])
            .arg("--ignore-changes")
            .arg("--quiet")
            .arg("--env-file")
            .arg(&env_file)
            .current_dir(workspace_root())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log_file.try_clone()?))
            .stderr(Stdio::from(log_file))
            .kill_on_drop(true)
            // Its own process group, so stopping it also stops the function processes it runs.
            .process_group(0)
            .spawn()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot start {}: {e}", cargo_lambda().display()),
                )
            })?;
        let mut emu = LambdaEmulator { child, port, log };
        let started = Instant::now();
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(emu);
            }
            if let Some(status) = emu.child.try_wait()? {
                return Err(io::Error::other(format!(
                    "cargo lambda watch exited with {status}: {}",
                    emu.log_text()
                )));
            }
            if started.elapsed() > ready_timeout {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("cargo lambda watch not ready: {}", emu.log_text()),
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `cargo lambda invoke <function> --data-file <file>` against this emulator.
    pub async fn invoke(&self, function: &str, data_file: &Path) -> io::Result<Invocation> {
        let out = Command::new(cargo_lambda())
            .arg("lambda")
            .arg("invoke")
            .arg(function)
            .arg("--data-file")
            .arg(data_file)
            .args([
                "--invoke-address",
                "127.0.0.1",
                "--invoke-port",
                &self.port.to_string(),
            ])
            .args(["--output-format", "json"])
            .current_dir(workspace_root())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await?;
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let output = serde_json::from_str(stdout.trim())
            .unwrap_or(serde_json::Value::String(stdout.clone()));
        Ok(Invocation {
            ok: out.status.success(),
            output,
            raw: format!("{stdout}{stderr}"),
        })
    }

    /// What the emulator and the functions printed so far (the functions' logs are here).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the emulator and its function processes.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for LambdaEmulator {
    fn drop(&mut self) {
        // The whole group: cargo lambda watch and the function binaries it started. Signalled
        // directly (never through a `kill` command: procps 4's `kill -KILL -<pgid>` signals
        // every process of the user instead of the group).
        if let Some(pid) = self
            .child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .filter(|p| *p > 1)
        {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn free_port() -> io::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}
