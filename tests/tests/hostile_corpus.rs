//! The hostile input corpus (`tests/corpus/`, described by `tests/corpus/manifest.json`) run
//! through every function's real entry point in-process: the handler each Lambda `main` calls,
//! with configuration and SDK clients built the way `main` builds them, except that every AWS
//! endpoint is a loopback listener that counts connections. For every case: no panic, zero AWS
//! calls, a classified outcome naming the field, error text under 1 KB; batches answer their
//! good records; custom resources with a loopback ResponseURL are answered FAILED there.
#![allow(clippy::unwrap_used)]

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use local_world::receiver::Receiver;
use serde::Deserialize;
use serde_json::Value;
use shared::custom_resource::Responder;
use shared::reconcile::ReconcileConfig;
use shared::{clients::Clients, config::Config, engine::Engine, error::Error};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::Instant;

/// The corpus must not shrink below this.
const MIN_CASES: usize = 50;
/// Longest error text (or custom-resource Reason) any case may produce.
const MAX_ERROR_BYTES: usize = 1024;

#[derive(Debug, Deserialize)]
struct Manifest {
    cases: Vec<Case>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    file: String,
    entry: String,
    expect: String,
    field: Option<String>,
    #[serde(default)]
    failed: Vec<String>,
    #[serde(default)]
    answers: BTreeMap<String, String>,
    #[serde(default)]
    reasons: BTreeMap<String, String>,
    #[allow(dead_code)]
    note: String,
}

/// A loopback listener that counts every connection (whatever is sent on it: HTTP, TLS) and
/// keeps the first line of each, answering `400` so no SDK call ever succeeds against it.
struct Trap {
    addr: String,
    connections: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Trap {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let connections = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (count, log) = (connections.clone(), seen.clone());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let log = log.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 2048];
                    let n = tokio::time::timeout(Duration::from_secs(2), socket.read(&mut buf))
                        .await
                        .ok()
                        .and_then(Result::ok)
                        .unwrap_or(0);
                    let head = String::from_utf8_lossy(&buf[..n]);
                    let target = head
                        .lines()
                        .find(|l| l.starts_with("x-amz-target"))
                        .unwrap_or("");
                    log.lock().unwrap().push(format!(
                        "{} {target}",
                        head.lines().next().unwrap_or("<no request line>")
                    ));
                    let _ = socket
                        .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Trap {
            addr,
            connections,
            seen,
        }
    }

    fn count(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn port(&self) -> &str {
        self.addr.rsplit_once(':').map(|(_, p)| p).unwrap_or("0")
    }
}

/// One SDK configuration for every client, as `load_sdk_config` gives `main`, but with every
/// endpoint at the trap, test credentials (so a call really goes out and is counted instead
/// of failing at signing) and no retries.
fn sdk_config(endpoint: &str) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "AKIDCORPUS",
            "corpus-secret",
            None,
            None,
            "hostile-corpus",
        )))
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .operation_timeout(Duration::from_secs(5))
                .build(),
        )
        .build()
}

/// Every function's state, built once as its `main` builds it.
struct Apps {
    lifecycle: Engine,
    reconciler: (Engine, ReconcileConfig),
    bootstrap: org_bootstrap::App,
    catalog: catalog_provisioning::App,
    vending: account_vending::App,
}

fn apps(endpoint: &str) -> Apps {
    let sdk = sdk_config(endpoint);
    let queue = format!("{endpoint}/111111111111/onboarding");
    let vars: HashMap<&str, String> = HashMap::from([
        ("ALL_MARKETPLACE_LICENSES", "true".to_string()),
        ("ONBOARDING_QUEUE_URL", queue.clone()),
        (
            "CATALOG_RECHECK_QUEUE_URL",
            format!("{endpoint}/111111111111/catalog-recheck"),
        ),
        ("ALLOW_LOCAL_RESPONSE_URL", "true".to_string()),
        (
            "VENDING_QUEUE_URL",
            format!("{endpoint}/111111111111/vending"),
        ),
        (
            "VENDING_DEAD_LETTER_QUEUE_URL",
            format!("{endpoint}/111111111111/vending-dlq"),
        ),
        ("LICENSES_TAG_KEY", "ct-entitlements:licenses".to_string()),
    ]);
    let lookup = |k: &str| vars.get(k).cloned();
    let clients = || Clients::from_sdk_config(&sdk, "us-east-1");
    let per_request = || Config::from_lookup_per_request(lookup).unwrap();
    Apps {
        lifecycle: Engine::new(Config::from_lookup(lookup).unwrap(), clients()),
        reconciler: (
            Engine::new(per_request(), clients()),
            ReconcileConfig::from_lookup(lookup).unwrap(),
        ),
        bootstrap: org_bootstrap::App {
            organizations: aws_sdk_organizations::Client::new(&sdk),
            license_manager: shared::clients::license_manager_client(&sdk, "us-east-1"),
            iam: aws_sdk_iam::Client::new(&sdk),
            responder: Responder::new(true),
        },
        catalog: {
            let config = catalog_provisioning::CatalogConfig::from_lookup(lookup).unwrap();
            let clients = clients();
            catalog_provisioning::App {
                sqs: clients.sqs.clone(),
                catalog: aws_sdk_servicecatalog::Client::new(&sdk),
                engine: Engine::new(per_request(), clients),
                responder: Responder::new(config.allow_local_response_url),
                stacks: catalog_provisioning::StackReader::from_sdk_config(
                    &sdk,
                    "AWSControlTowerExecution",
                    None,
                ),
                config,
            }
        },
        vending: account_vending::App::new(
            account_vending::VendingClients::from_sdk_config(&sdk),
            account_vending::VendingConfig::from_lookup(lookup).unwrap(),
            per_request(),
        ),
    }
}

/// Runs one payload through its function's handler.
async fn invoke(apps: &Apps, entry: &str, payload: Value) -> Result<Value, Error> {
    let deadline = Instant::now() + Duration::from_secs(60);
    match entry {
        "account-lifecycle" => account_lifecycle::handle(&apps.lifecycle, payload).await,
        "reconciler" => reconciler::handle(&apps.reconciler.0, &apps.reconciler.1, &payload).await,
        "org-bootstrap" => org_bootstrap::handle(&apps.bootstrap, payload, deadline).await,
        "catalog-provisioning" => {
            catalog_provisioning::handle(&apps.catalog, payload, deadline).await
        }
        "account-vending" => account_vending::handle(&apps.vending, payload).await,
        other => panic!("unknown entry {other:?} in the manifest"),
    }
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

fn manifest() -> Manifest {
    let text = std::fs::read_to_string(corpus_dir().join("manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Every payload file under `tests/corpus/<entry>/`.
fn corpus_files() -> Vec<String> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(corpus_dir()).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            for file in std::fs::read_dir(entry.path()).unwrap() {
                let name = file.unwrap().file_name().to_string_lossy().to_string();
                files.push(format!("{}/{name}", entry.file_name().to_string_lossy()));
            }
        }
    }
    files.sort();
    files
}

/// Checks an error: kind, the field named, bounded text.
fn check_error(err: &Error, field: Option<&str>, problems: &mut Vec<String>) {
    let text = err.to_string();
    if err.kind() != "InvalidInput" {
        problems.push(format!(
            "expected InvalidInput, got {}: {text:.300}",
            err.kind()
        ));
    }
    if let Some(field) = field {
        if !text.contains(field) {
            problems.push(format!("the error does not name {field:?}: {text:.300}"));
        }
    }
    if text.len() >= MAX_ERROR_BYTES {
        problems.push(format!(
            "the error text is {} bytes (max {MAX_ERROR_BYTES}): {text:.300}…",
            text.len()
        ));
    }
}

/// The answers PUT to the receiver: path → (Status, Reason).
fn answers(receiver: &Receiver) -> BTreeMap<String, (String, String)> {
    receiver
        .received
        .lock()
        .unwrap()
        .iter()
        .map(|r| {
            let body: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
            let text = |k: &str| {
                body.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            (r.path.clone(), (text("Status"), text("Reason")))
        })
        .collect()
}

/// Checks one case's outcome against the manifest; returns the problems found.
fn check(
    case: &Case,
    result: &Result<Value, Error>,
    receiver: &Receiver,
    problems: &mut Vec<String>,
) {
    let field = case.field.as_deref();
    let put = answers(receiver);
    let expect_no_answer = |problems: &mut Vec<String>| {
        if !put.is_empty() {
            problems.push(format!("unexpected answers PUT: {put:?}"));
        }
    };
    match (case.expect.as_str(), result) {
        ("InvalidInput" | "Unanswerable", Err(e)) => {
            check_error(e, field, problems);
            expect_no_answer(problems);
        }
        ("Skip", Ok(report)) => {
            if report.get("outcome").and_then(Value::as_str) != Some("skipped") {
                problems.push(format!("expected a skipped report, got {report:.300}"));
            }
            let reason = report.get("reason").and_then(Value::as_str).unwrap_or("");
            if let Some(field) = field {
                if !reason.contains(field) {
                    problems.push(format!(
                        "the skip reason does not name {field:?}: {reason:.300}"
                    ));
                }
            }
            let text = report.to_string();
            if text.len() >= 2 * MAX_ERROR_BYTES {
                problems.push(format!("the report is {} bytes: {text:.300}…", text.len()));
            }
        }
        ("BatchFailures", Ok(answer)) => {
            let ids: Vec<&str> = answer
                .get("batchItemFailures")
                .and_then(Value::as_array)
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|i| i.get("itemIdentifier").and_then(Value::as_str))
                        .collect()
                })
                .unwrap_or_default();
            if ids != case.failed {
                problems.push(format!(
                    "batchItemFailures {ids:?}, expected exactly {:?}",
                    case.failed
                ));
            }
        }
        ("Failed", Ok(_)) => match put.values().collect::<Vec<_>>().as_slice() {
            [(status, reason)] => {
                if status != "FAILED" {
                    problems.push(format!("answered {status}, expected FAILED: {reason:.300}"));
                }
                if let Some(field) = field {
                    if !reason.contains(field) {
                        problems.push(format!("the Reason does not name {field:?}: {reason:.300}"));
                    }
                }
                if reason.len() >= MAX_ERROR_BYTES {
                    problems.push(format!(
                        "the Reason is {} bytes: {reason:.300}…",
                        reason.len()
                    ));
                }
            }
            other => problems.push(format!("expected exactly one answer, got {other:?}")),
        },
        ("SnsMixed", result) => {
            match (field, result) {
                (Some(_), Err(e)) => check_error(e, field, problems),
                (None, Ok(_)) => {}
                (_, other) => problems.push(format!(
                    "expected {} for the invocation, got {other:.300?}",
                    if field.is_some() {
                        "an error"
                    } else {
                        "success"
                    }
                )),
            }
            let statuses: BTreeMap<String, String> = put
                .iter()
                .map(|(p, (s, _))| (p.clone(), s.clone()))
                .collect();
            if statuses != case.answers {
                problems.push(format!("answers {statuses:?}, expected {:?}", case.answers));
            }
            for (path, needle) in &case.reasons {
                let reason = put.get(path).map(|(_, r)| r.as_str()).unwrap_or("");
                if !reason.contains(needle.as_str()) || reason.len() >= MAX_ERROR_BYTES {
                    problems.push(format!(
                        "the Reason at {path} does not name {needle:?} or is too long: {reason:.300}"
                    ));
                }
            }
        }
        (expect, other) => problems.push(format!("expected {expect}, got {other:.300?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_corpus() {
    let manifest = manifest();
    let files = corpus_files();
    assert!(
        files.len() >= MIN_CASES,
        "the corpus has {} files, at least {MIN_CASES} expected",
        files.len()
    );
    let listed: Vec<&str> = manifest.cases.iter().map(|c| c.file.as_str()).collect();
    for file in &files {
        assert!(
            listed.contains(&file.as_str()),
            "{file} is not in manifest.json"
        );
    }
    assert_eq!(listed.len(), files.len(), "manifest cases without a file");

    let aws = Trap::start().await;
    let trap = Trap::start().await;
    let apps = Arc::new(apps(&format!("http://{}", aws.addr)));
    let (mut rejected, mut panics) = (0usize, 0usize);
    let mut failures: Vec<String> = Vec::new();
    for case in &manifest.cases {
        let receiver = Receiver::start(Vec::new()).await;
        let receiver_addr = receiver
            .url
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap()
            .to_string();
        let text = std::fs::read_to_string(corpus_dir().join(&case.file)).unwrap();
        let text = text
            .replace("{{RECEIVER}}", &receiver_addr)
            .replace("{{TRAP_PORT}}", trap.port())
            .replace("{{TRAP}}", &trap.addr);
        // What the Lambda runtime does first: the payload becomes a serde_json Value.
        let payload: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!(
                    "{}: not a JSON payload the runtime could hand over: {e}",
                    case.file
                ));
                continue;
            }
        };
        let (aws_before, trap_before) = (aws.count(), trap.count());
        let task = {
            let (apps, entry) = (apps.clone(), case.entry.clone());
            // Its own thread and runtime, as a Lambda invocation has: a panic ends that thread
            // and is reported here with the case's name.
            tokio::task::spawn_blocking(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(invoke(&apps, &entry, payload))
            })
        };
        let result = match tokio::time::timeout(Duration::from_secs(30), task).await {
            Err(_) => {
                failures.push(format!("{}: did not finish within 30 s", case.file));
                continue;
            }
            Ok(Err(join)) if join.is_panic() => {
                panics += 1;
                failures.push(format!("{}: PANICKED: {join}", case.file));
                continue;
            }
            Ok(Err(join)) => {
                failures.push(format!("{}: task failed: {join}", case.file));
                continue;
            }
            Ok(Ok(result)) => result,
        };
        // Let any stray connection land before counting.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let mut problems = Vec::new();
        let aws_calls = aws.count() - aws_before;
        if aws_calls != 0 {
            let seen = aws.seen.lock().unwrap().clone();
            problems.push(format!(
                "{aws_calls} AWS call(s) made: {:?}",
                &seen[seen.len().saturating_sub(aws_calls)..]
            ));
        }
        if trap.count() != trap_before {
            problems.push(format!(
                "a ResponseURL that must never be contacted was contacted: {:?}",
                trap.seen.lock().unwrap()
            ));
        }
        check(case, &result, &receiver, &mut problems);
        if result.is_err() || case.expect == "Failed" || case.expect == "BatchFailures" {
            rejected += 1;
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{} ({}): {}",
                case.file,
                case.entry,
                problems.join("; ")
            ));
        }
    }
    let by_entry = manifest.cases.iter().fold(BTreeMap::new(), |mut m, c| {
        *m.entry(c.entry.as_str()).or_insert(0usize) += 1;
        m
    });
    eprintln!(
        "hostile corpus: {} cases tried / {rejected} rejected / {panics} panics / {} AWS calls / {} failing checks; per entry {by_entry:?}",
        manifest.cases.len(),
        aws.count(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The counter can fail the corpus test: a valid onboard request does reach the trap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_request_is_seen_by_the_call_counter() {
    let aws = Trap::start().await;
    let apps = apps(&format!("http://{}", aws.addr));
    let payload = serde_json::json!({"accountId": "210987654321"});
    let result = invoke(&apps, "account-lifecycle", payload).await;
    assert!(result.is_err(), "every AWS call is refused: {result:?}");
    assert!(aws.count() > 0, "a valid request made no AWS call");
}
