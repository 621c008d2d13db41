//! The release a team deploys without Rust (`make release VERSION=x.y.z`, scripts/release.py):
//! the script refuses what it must, its artifacts are reproducible, its packaged template points
//! at the zips, and each zipped bootstrap starts and answers an event under a local Lambda
//! runtime API (the protocol of "Using the Lambda runtime API for custom runtimes",
//! https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html).
//!
//! Each answers an event that needs no AWS call (AWS endpoints point at a closed local port); the
//! reconciler also answers a dry run against the local AWS world (moto and the emulator).
//!
//! The last test reads `dist/ct-entitlements-<version>/`; without it the test says SKIPPED,
//! unless `CT_REQUIRE_RELEASE=1` (CI, after `make release`) makes the absence a failure.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use local_world::lambda::workspace_root;
use local_world::seed::{self, demo_spec};
use local_world::World;
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, Notify};

/// The workspace's version (Cargo.toml's `version`, which this crate inherits): the release must
/// carry it everywhere.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The six binaries of template.yaml (AccountBackfillFunction runs account-lifecycle's).
const BINARIES: [&str; 6] = [
    "account-lifecycle",
    "reconciler",
    "org-bootstrap",
    "catalog-provisioning",
    "account-vending",
    "notifier",
];

/// Set by CI after `make release`: a missing release directory fails instead of skipping.
const REQUIRE_RELEASE: &str = "CT_REQUIRE_RELEASE";

fn release_script() -> PathBuf {
    workspace_root().join("scripts/release.py")
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ct-release-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run_script(args: &[&str]) -> std::process::Output {
    Command::new("python3")
        .arg(release_script())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("python3 runs scripts/release.py")
}

/// Stand-in bootstraps: a 64-bit little-endian ELF header for x86_64 (e_machine 0x3e), then
/// bytes that differ per binary, so the script can be run without a release build.
fn fake_lambda_dir(dir: &Path) -> PathBuf {
    let lambda = dir.join("lambda");
    for (n, binary) in BINARIES.iter().enumerate() {
        let mut bytes = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0];
        bytes.resize(18, 0);
        bytes.extend_from_slice(&0x3e_u16.to_le_bytes());
        bytes.extend(std::iter::repeat_n(n as u8, 4096));
        std::fs::create_dir_all(lambda.join(binary)).unwrap();
        std::fs::write(lambda.join(binary).join("bootstrap"), bytes).unwrap();
    }
    lambda
}

#[test]
fn release_refuses_another_version_or_one_without_a_changelog_entry() {
    let out = run_script(&["--check", "9.9.9"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Cargo.toml") && err.contains(VERSION), "{err}");
    let out = run_script(&["--check", "banana"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");

    // A workspace bumped to 0.99.0 whose CHANGELOG.md has no entry for it.
    let root = temp_dir("nochangelog");
    std::fs::write(
        root.join("Cargo.toml"),
        "[workspace.package]\nversion = \"0.99.0\"\n",
    )
    .unwrap();
    std::fs::write(
        root.join("CHANGELOG.md"),
        "# Changelog\n\n## 0.2.0\n\n- a\n",
    )
    .unwrap();
    let out = run_script(&["--check", "0.99.0", "--root", root.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("CHANGELOG.md has no `## 0.99.0`"));
    // With the entry it passes.
    std::fs::write(
        root.join("CHANGELOG.md"),
        "# Changelog\n\n## 0.99.0\n\n- b\n\n## 0.2.0\n\n- a\n",
    )
    .unwrap();
    let out = run_script(&["--check", "0.99.0", "--root", root.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");

    // Missing bootstraps: refused, naming `make package`.
    let empty = temp_dir("nobootstraps");
    let out = run_script(&[
        VERSION,
        "--lambda-dir",
        empty.to_str().unwrap(),
        "--out",
        empty.join("dist").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("make package"));
    assert!(!empty.join("dist").exists(), "nothing written when refused");
}

#[test]
fn release_artifacts_are_reproducible_and_the_template_points_at_them() {
    let dir = temp_dir("repro");
    let lambda = fake_lambda_dir(&dir);
    let mut sums = Vec::new();
    let mut tarballs = Vec::new();
    for run in ["a", "b"] {
        let out_dir = dir.join(run);
        let out = run_script(&[
            VERSION,
            "--lambda-dir",
            lambda.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{out:?}");
        let release = out_dir.join(format!("ct-entitlements-{VERSION}"));
        sums.push(std::fs::read_to_string(release.join("SHA256SUMS")).unwrap());
        tarballs.push(
            std::fs::read(out_dir.join(format!("ct-entitlements-{VERSION}-x86_64.tar.gz")))
                .unwrap(),
        );
        // Two runs a second apart would differ if any timestamp leaked in.
        std::thread::sleep(Duration::from_millis(1100));
    }
    assert_eq!(sums[0], sums[1], "SHA256SUMS differ between two runs");
    assert!(
        tarballs[0] == tarballs[1],
        "the tarballs differ between two runs"
    );
    let release = dir.join("a").join(format!("ct-entitlements-{VERSION}"));
    check_release_dir(&release, "x86_64");
    // The fakes differ per binary, so each zip must too: no zip stands for another.
    let zips: Vec<&str> = sums[0]
        .lines()
        .filter(|l| l.ends_with(".zip"))
        .map(|l| &l[..64])
        .collect();
    assert_eq!(zips.len(), 6);
    let mut unique = zips.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 6, "{zips:?}");
    check_packaged_template(&release, "x86_64");
}

/// What a release directory must hold, whatever built it.
fn check_release_dir(release: &Path, arch: &str) {
    // SHA256SUMS lists every other file with its checksum (`sha256sum -c` format).
    let sums = std::fs::read_to_string(release.join("SHA256SUMS")).unwrap();
    let listed: BTreeMap<String, String> = sums
        .lines()
        .map(|l| {
            let (sum, name) = l.split_once("  ").unwrap();
            (name.to_string(), sum.to_string())
        })
        .collect();
    let mut present: Vec<String> = std::fs::read_dir(release)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n != "SHA256SUMS")
        .collect();
    present.sort();
    assert_eq!(listed.keys().cloned().collect::<Vec<_>>(), present);
    for (name, sum) in &listed {
        let bytes = std::fs::read(release.join(name)).unwrap();
        assert_eq!(&sha256_hex(&bytes), sum, "{name}");
    }
    for binary in BINARIES {
        assert!(
            listed.contains_key(&format!("{binary}.zip")),
            "{binary}.zip"
        );
        let listing = unzip_listing(&release.join(format!("{binary}.zip")));
        assert_eq!(
            listing,
            vec![("bootstrap".to_string(), 0o100755)],
            "{binary}"
        );
    }
    let notes = std::fs::read_to_string(release.join("RELEASE-NOTES.md")).unwrap();
    assert!(notes.contains(&format!("Changes in {VERSION}")), "{notes}");
    assert!(notes.contains(arch), "the notes name the architecture");
}

/// The packaged template of a release just built from this checkout: template.yaml with the
/// functions' code at the zips.
fn check_packaged_template(release: &Path, arch: &str) {
    let text = std::fs::read_to_string(release.join(format!("template-{arch}.yaml"))).unwrap();
    let packaged: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let source: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(workspace_root().join("template.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(packaged["Parameters"]["Architecture"]["Default"], arch);
    assert!(packaged["Description"]
        .as_str()
        .unwrap()
        .contains(&format!("{VERSION}, built for {arch}")));
    let resources = packaged["Resources"].as_mapping().unwrap();
    assert_eq!(
        resources.keys().collect::<Vec<_>>(),
        source["Resources"]
            .as_mapping()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        "the same resources"
    );
    let mut functions = 0;
    for (name, resource) in resources {
        if resource["Type"] != "AWS::Serverless::Function" {
            assert_eq!(resource, &source["Resources"][name], "{name:?} unchanged");
            continue;
        }
        functions += 1;
        let binary = source["Resources"][name]["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .unwrap();
        assert_eq!(
            resource["Properties"]["CodeUri"],
            format!("{binary}.zip"),
            "{name:?}"
        );
        assert!(
            resource["Metadata"].get("BuildMethod").is_none(),
            "{name:?}"
        );
        assert!(
            resource["Metadata"].get("BuildProperties").is_none(),
            "{name:?}"
        );
        // Everything else as in template.yaml.
        let mut expected = source["Resources"][name].clone();
        expected["Properties"]["CodeUri"] = format!("{binary}.zip").into();
        let metadata = expected["Metadata"].as_mapping_mut().unwrap();
        metadata.remove("BuildMethod");
        metadata.remove("BuildProperties");
        assert_eq!(resource, &expected, "{name:?}");
    }
    assert_eq!(
        functions, 7,
        "seven functions (the backfill reuses account-lifecycle)"
    );
    assert_eq!(packaged["Outputs"], source["Outputs"]);
    assert_eq!(packaged["Globals"], source["Globals"]);
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// (name, unix mode) of each entry of a zip, read with Python's zipfile.
fn unzip_listing(zip: &Path) -> Vec<(String, u32)> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile\nfor i in zipfile.ZipFile(sys.argv[1]).infolist(): print(i.filename, i.external_attr >> 16)",
        ])
        .arg(zip)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (name, mode) = l.rsplit_once(' ').unwrap();
            (name.to_string(), mode.parse().unwrap())
        })
        .collect()
}

fn unzip_to(zip: &Path, dir: &Path) {
    let out = Command::new("python3")
        .args([
            "-c",
            "import os, sys, zipfile\nz = zipfile.ZipFile(sys.argv[1])\nfor i in z.infolist():\n    p = z.extract(i, sys.argv[2])\n    os.chmod(p, i.external_attr >> 16 & 0o7777)",
        ])
        .arg(zip)
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

// ---- A minimal Lambda runtime API -------------------------------------------------------

/// What the function posted back for an invocation (or for its initialization). Some fields are
/// read only through `Debug`, in failure messages.
#[derive(Debug, Clone)]
#[allow(dead_code)]
enum Answer {
    Response {
        request_id: String,
        body: Value,
    },
    Error {
        request_id: String,
        error_type: String,
        body: Value,
    },
    InitError {
        error_type: String,
        body: Value,
    },
}

/// The runtime API on 127.0.0.1: `GET /2018-06-01/runtime/invocation/next` hands out the queued
/// events (waiting while there is none), `POST …/invocation/{id}/response`, `…/{id}/error` and
/// `/2018-06-01/runtime/init/error` are recorded as [`Answer`]s.
struct RuntimeApi {
    port: u16,
    events: Arc<Mutex<VecDeque<(String, Value)>>>,
    queued: Arc<Notify>,
    answers: mpsc::UnboundedReceiver<Answer>,
    task: tokio::task::JoinHandle<()>,
}

const FUNCTION_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:ct-release-check";

impl RuntimeApi {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let events: Arc<Mutex<VecDeque<(String, Value)>>> = Arc::default();
        let queued = Arc::new(Notify::new());
        let (tx, answers) = mpsc::unbounded_channel();
        let (ev, q) = (events.clone(), queued.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (ev, q, tx) = (ev.clone(), q.clone(), tx.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let (ev, q, tx) = (ev.clone(), q.clone(), tx.clone());
                        async move { Ok::<_, Infallible>(serve(request, &ev, &q, &tx).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        RuntimeApi {
            port,
            events,
            queued,
            answers,
            task,
        }
    }

    fn push(&self, request_id: &str, event: Value) {
        self.events
            .lock()
            .unwrap()
            .push_back((request_id.to_string(), event));
        self.queued.notify_one();
    }

    async fn answer(&mut self, within: Duration) -> Option<Answer> {
        tokio::time::timeout(within, self.answers.recv())
            .await
            .ok()
            .flatten()
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    request: Request<hyper::body::Incoming>,
    events: &Mutex<VecDeque<(String, Value)>>,
    queued: &Notify,
    answers: &mpsc::UnboundedSender<Answer>,
) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body_json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let path = parts.uri.path().to_string();
    // The runtime client sends `Lambda-Runtime-Function-Error-Type: unhandled`; the function's
    // classification is the body's `errorType`.
    let error_type = body_json["errorType"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let accepted = || {
        Response::builder()
            .status(StatusCode::ACCEPTED)
            .body(Full::new(Bytes::from_static(b"{\"status\":\"OK\"}")))
            .unwrap()
    };
    match (parts.method.as_str(), path.as_str()) {
        ("GET", "/2018-06-01/runtime/invocation/next") => {
            let (id, event) = loop {
                let next = events.lock().unwrap().pop_front();
                match next {
                    Some(e) => break e,
                    None => queued.notified().await,
                }
            };
            // A deadline a minute out: the functions read it for their own time budget.
            let deadline = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis()
                + 60_000;
            Response::builder()
                .status(StatusCode::OK)
                .header("Lambda-Runtime-Aws-Request-Id", &id)
                .header("Lambda-Runtime-Deadline-Ms", deadline.to_string())
                .header("Lambda-Runtime-Invoked-Function-Arn", FUNCTION_ARN)
                .header(
                    "Lambda-Runtime-Trace-Id",
                    "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=0",
                )
                .header("Content-Type", "application/json")
                .body(Full::new(Bytes::from(serde_json::to_vec(&event).unwrap())))
                .unwrap()
        }
        ("POST", "/2018-06-01/runtime/init/error") => {
            let _ = answers.send(Answer::InitError {
                error_type,
                body: body_json,
            });
            accepted()
        }
        ("POST", p) if p.starts_with("/2018-06-01/runtime/invocation/") => {
            let rest = &p["/2018-06-01/runtime/invocation/".len()..];
            let answer = match rest.split_once('/') {
                Some((id, "response")) => Answer::Response {
                    request_id: id.to_string(),
                    body: body_json,
                },
                Some((id, "error")) => Answer::Error {
                    request_id: id.to_string(),
                    error_type,
                    body: body_json,
                },
                _ => {
                    return Response::builder()
                        .status(StatusCode::NOT_FOUND)
                        .body(Full::new(Bytes::new()))
                        .unwrap()
                }
            };
            let _ = answers.send(answer);
            accepted()
        }
        _ => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Full::new(Bytes::new()))
            .unwrap(),
    }
}

// ---- The released bootstraps -------------------------------------------------------------

/// The release directory `make release` wrote, or None (SKIPPED) unless CT_REQUIRE_RELEASE.
fn release_dir_or_skip(test: &str) -> Option<PathBuf> {
    let dir = workspace_root().join(format!("dist/ct-entitlements-{VERSION}"));
    if dir.join("SHA256SUMS").is_file() {
        return Some(dir);
    }
    let required = std::env::var(REQUIRE_RELEASE).is_ok_and(|v| v == "1" || v == "true");
    assert!(
        !required,
        "{REQUIRE_RELEASE} is set but {} does not exist: run `make release VERSION={VERSION}` first",
        dir.display()
    );
    eprintln!(
        "SKIPPED {test}: no {} (run `make release VERSION={VERSION}`)",
        dir.display()
    );
    None
}

/// The environment every function gets from the Lambda service and from template.yaml's
/// Globals, and AWS endpoints pointed at a closed port on 127.0.0.1: an event that calls AWS
/// by mistake fails at once, and nothing leaves the machine.
fn base_env(function: &str, dead_endpoint: &str) -> Vec<(String, String)> {
    [
        ("AWS_LAMBDA_FUNCTION_NAME", function),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/ct-release-check"),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "2026/01/01/[$LATEST]0123456789",
        ),
        ("AWS_REGION", "us-east-1"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE"),
        (
            "AWS_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        ),
        ("AWS_ENDPOINT_URL", dead_endpoint),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("RUST_LOG", "info"),
        ("SELF_ACCOUNT_ID", "123456789012"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Per function: the configuration it needs (as template.yaml sets it, with its defaults), one
/// event that needs no AWS call, and what the answer must be.
struct Case {
    binary: &'static str,
    env: &'static [(&'static str, &'static str)],
    event: Value,
    expect: fn(&Answer) -> Result<(), String>,
}

const QUEUE: &str = "https://sqs.us-east-1.amazonaws.com/123456789012/ct-release-check";

fn cases() -> Vec<Case> {
    let shipped = |name: &str| -> Value {
        serde_json::from_str(
            &std::fs::read_to_string(workspace_root().join("events").join(name)).unwrap(),
        )
        .unwrap()
    };
    vec![
        // A FAILED account creation is skipped before any AWS call.
        Case {
            binary: "account-lifecycle",
            env: &[
                ("ALL_MARKETPLACE_LICENSES", "true"),
                ("ONBOARDING_QUEUE_URL", QUEUE),
            ],
            event: shipped("create-failed.json"),
            expect: |a| match a {
                Answer::Response { body, .. } if body["outcome"] == "skipped" => {
                    if body["apiCalls"] == json!({}) {
                        Ok(())
                    } else {
                        Err(format!("made AWS calls: {body}"))
                    }
                }
                other => Err(format!("expected outcome skipped, got {other:?}")),
            },
        },
        Case {
            binary: "reconciler",
            env: &[
                ("ALL_MARKETPLACE_LICENSES", "true"),
                ("ONBOARDING_QUEUE_URL", QUEUE),
                ("BACKFILL_QUEUE_URL", QUEUE),
            ],
            event: json!({"ous": 42}),
            expect: classified_input_error,
        },
        Case {
            binary: "org-bootstrap",
            env: &[],
            event: json!({"not": "a CloudFormation request"}),
            expect: classified_input_error,
        },
        Case {
            binary: "catalog-provisioning",
            env: &[],
            event: json!({"not": "a CloudFormation request"}),
            expect: classified_input_error,
        },
        Case {
            binary: "account-vending",
            env: &[
                ("VENDING_QUEUE_URL", QUEUE),
                ("VENDING_DEAD_LETTER_QUEUE_URL", QUEUE),
            ],
            event: json!({"not": "an account request"}),
            expect: classified_input_error,
        },
        // An empty batch: nothing to publish.
        Case {
            binary: "notifier",
            env: &[(
                "FAILURE_TOPIC_ARN",
                "arn:aws:sns:us-east-1:123456789012:ct-release-check",
            )],
            event: json!({"Records": []}),
            expect: |a| match a {
                Answer::Response { .. } => Ok(()),
                other => Err(format!("expected a response, got {other:?}")),
            },
        },
    ]
}

fn classified_input_error(answer: &Answer) -> Result<(), String> {
    match answer {
        Answer::Error {
            error_type, body, ..
        } if error_type == "InvalidInput.permanent"
            && body["errorMessage"].as_str().is_some_and(|m| !m.is_empty()) =>
        {
            Ok(())
        }
        other => Err(format!(
            "expected an InvalidInput.permanent error, got {other:?}"
        )),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_released_bootstrap_answers_an_event_under_the_runtime_api() {
    let Some(release) =
        release_dir_or_skip("each_released_bootstrap_answers_an_event_under_the_runtime_api")
    else {
        return;
    };
    let arch = match std::env::consts::ARCH {
        "aarch64" => "arm64",
        other => other,
    };
    // Its template is checked against template.yaml where the release is built fresh (the test
    // above): a release made before template.yaml last changed still runs here.
    check_release_dir(&release, arch);
    // A port nothing listens on: bound, then closed.
    let dead_endpoint = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://127.0.0.1:{}", l.local_addr().unwrap().port())
    };
    let work = temp_dir("bootstraps");
    let mut failures = Vec::new();
    for case in cases() {
        let env: Vec<(String, String)> = base_env(case.binary, &dead_endpoint)
            .into_iter()
            .chain(case.env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .collect();
        let run = run_released(&release, &work, case.binary, &env, &case.event, case.expect);
        if let Err(e) = run.await {
            failures.push(e);
        }
    }

    // One bootstrap against the local AWS world: the reconciler's dry run reads the organization
    // and the licenses through the SDK as deployed (HTTP client, credentials and endpoints from
    // the environment), and queues nothing.
    if let Some(world) = World::start_or_skip().await {
        seed::seed(&world, &demo_spec()).await.unwrap();
        let mut queues = Vec::new();
        for name in ["onboarding", "backfill"] {
            let created = world.sqs().create_queue().queue_name(name).send().await;
            queues.push(created.unwrap().queue_url().unwrap().to_string());
        }
        let mut env = base_env("reconciler", &dead_endpoint);
        env.extend(world.env_vars());
        env.extend(
            [
                ("ALL_MARKETPLACE_LICENSES", "true"),
                ("ONBOARDING_QUEUE_URL", queues[0].as_str()),
                ("BACKFILL_QUEUE_URL", queues[1].as_str()),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let event = json!({"dryRun": true});
        let run = run_released(&release, &work, "reconciler", &env, &event, |a| match a {
            Answer::Response { body, .. }
                if body["dryRun"] == true
                    && body["accountsListed"].as_u64() > Some(0)
                    && body["enqueued"] == 0
                    && body["apiCalls"]["organizations:ListRoots"] == 1 =>
            {
                Ok(())
            }
            other => Err(format!("expected a dry-run report, got {other:?}")),
        });
        if let Err(e) = run.await {
            failures.push(format!("(local world) {e}"));
        }
        for url in &queues {
            let left = world
                .sqs()
                .receive_message()
                .queue_url(url)
                .send()
                .await
                .unwrap();
            assert!(left.messages().is_empty(), "a dry run queued {left:?}");
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// A function, a configuration its start refuses, and the variable the refusal must name.
type Refused = (
    &'static str,
    Vec<(&'static str, &'static str)>,
    &'static str,
);

/// Per function: a configuration its start refuses.
fn refused_cases() -> Vec<Refused> {
    let many = ("MAX_CONCURRENT_ACCOUNTS", "many");
    vec![
        (
            "account-lifecycle",
            vec![
                ("ALL_MARKETPLACE_LICENSES", "true"),
                ("ONBOARDING_QUEUE_URL", QUEUE),
                many,
            ],
            "MAX_CONCURRENT_ACCOUNTS",
        ),
        (
            "reconciler",
            vec![
                ("ALL_MARKETPLACE_LICENSES", "true"),
                ("ONBOARDING_QUEUE_URL", QUEUE),
                ("BACKFILL_QUEUE_URL", QUEUE),
                many,
            ],
            "MAX_CONCURRENT_ACCOUNTS",
        ),
        (
            "org-bootstrap",
            vec![("DEADLINE_FALLBACK_SECONDS", "soon")],
            "DEADLINE_FALLBACK_SECONDS",
        ),
        (
            "catalog-provisioning",
            vec![("DEADLINE_FALLBACK_SECONDS", "soon")],
            "DEADLINE_FALLBACK_SECONDS",
        ),
        (
            "account-vending",
            vec![
                ("VENDING_QUEUE_URL", QUEUE),
                ("VENDING_DEAD_LETTER_QUEUE_URL", QUEUE),
                many,
            ],
            "MAX_CONCURRENT_ACCOUNTS",
        ),
        ("notifier", vec![], "FAILURE_TOPIC_ARN"),
    ]
}

/// Every released bootstrap refuses a bad configuration when it starts: it logs "invalid
/// configuration" naming the variable, exits with an error, and takes no invocation (Lambda
/// then reports the start as failed instead of running events with a half-read setting).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_released_bootstrap_refuses_a_bad_configuration_at_start() {
    let Some(release) =
        release_dir_or_skip("each_released_bootstrap_refuses_a_bad_configuration_at_start")
    else {
        return;
    };
    let dead_endpoint = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://127.0.0.1:{}", l.local_addr().unwrap().port())
    };
    let work = temp_dir("refusals");
    let mut failures = Vec::new();
    for (binary, vars, named) in refused_cases() {
        let dir = work.join(binary);
        let mut api = RuntimeApi::start().await;
        api.push("00000000-0000-4000-8000-000000000001", json!({}));
        let env: Vec<(String, String)> = base_env(binary, &dead_endpoint)
            .into_iter()
            .chain(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .collect();
        let (mut child, log) = start_released(&release, &dir, binary, &env, &api);
        // Generous: a bound on a hang, not a measurement.
        let status = tokio::time::timeout(Duration::from_secs(60), child.wait()).await;
        let _ = child.kill().await;
        let answered = api.answer(Duration::from_millis(100)).await;
        let logs = std::fs::read_to_string(&log).unwrap_or_default();
        let refused = logs
            .lines()
            .any(|l| l.contains("invalid configuration") && l.contains(named));
        match status {
            Ok(Ok(status)) if !status.success() && answered.is_none() && refused => {}
            other => failures.push(format!(
                "{binary}: expected an exit with an error, no answer and a refusal naming {named}; got {other:?}, answer {answered:?}\n--- its logs:\n{logs}"
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Unzips `binary`'s bootstrap from the release into `dir` and starts it with exactly `env`
/// and `api`'s address, its output in `dir/function.log` (returned with the process).
fn start_released(
    release: &Path,
    dir: &Path,
    binary: &str,
    env: &[(String, String)],
    api: &RuntimeApi,
) -> (tokio::process::Child, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    unzip_to(&release.join(format!("{binary}.zip")), dir);
    let log = dir.join("function.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let child = tokio::process::Command::new(dir.join("bootstrap"))
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{}", api.port))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log_file.try_clone().unwrap()))
        .stderr(Stdio::from(log_file))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    (child, log)
}

/// Unzips `binary`'s bootstrap from the release, runs it with exactly `env` (and the runtime
/// API's address) under a fresh runtime API holding `event`, and judges its one answer.
async fn run_released(
    release: &Path,
    work: &Path,
    binary: &str,
    env: &[(String, String)],
    event: &Value,
    expect: fn(&Answer) -> Result<(), String>,
) -> Result<(), String> {
    // Per run: the reconciler runs twice, with different environments.
    let dir = work.join(format!("{binary}-{}", env.len()));
    let mut api = RuntimeApi::start().await;
    let request_id = format!("00000000-0000-4000-8000-{:012}", binary.len());
    api.push(&request_id, event.clone());
    let (mut child, log) = start_released(release, &dir, binary, env, &api);
    // Generous: a bound on a hang, not a measurement. A function that exits first (its
    // configuration refused) has answered nothing.
    let (answer, exited) = tokio::select! {
        answer = api.answer(Duration::from_secs(60)) => (answer, None),
        status = child.wait() => (None, status.ok()),
    };
    let _ = child.kill().await;
    let logs = std::fs::read_to_string(&log).unwrap_or_default();
    let verdict = match &answer {
        None => Err(match exited {
            Some(status) => format!("exited ({status}) without answering"),
            None => "no answer within 60 s".to_string(),
        }),
        Some(a @ Answer::InitError { .. }) => Err(format!("initialization failed: {a:?}")),
        Some(
            a @ (Answer::Response { request_id: id, .. } | Answer::Error { request_id: id, .. }),
        ) => {
            if id == &request_id {
                expect(a)
            } else {
                Err(format!("answered request {id}, not {request_id}"))
            }
        }
    };
    match verdict {
        Ok(()) => {
            eprintln!("{binary}: {answer:?}");
            Ok(())
        }
        Err(e) => Err(format!("{binary}: {e}\n--- its logs:\n{logs}")),
    }
}
