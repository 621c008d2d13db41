//! Faults soak (issue 10, item 1): many accounts × 3 licenses onboarded through the real queue
//! path (SQS batches with partial batch failures, redelivery, a dead-letter queue after 5
//! receives, delayed re-checks) while the License Manager emulator throttles, fails before and
//! after committing, and stalls. Ignored by `make test`; `make soak` runs it
//! (`SOAK_ACCOUNTS`, default 200; `SOAK_SEED`, default 10).
//!
//! Every account must end either entitled (each license's grant ACTIVE, as the grantor sees
//! it through ListDistributedGrants) or parked in the DLQ with its reason; no (license,
//! account) may hold more than one live grant.
#![allow(clippy::unwrap_used)]

mod common;

use common::{setup, Reasons, Setup};
use local_world::seed::{self, LicenseSpec, OrgSpec, OuSpec};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Collects the handler's "account not entitled" warnings (account → deciding error), the
/// reason a parked message carries into the DLQ.
struct ReasonLog(Reasons);

struct Fields {
    account: Option<String>,
    error: Option<String>,
    message: Option<String>,
}

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let v = format!("{value:?}");
        match field.name() {
            "account" => self.account = Some(v),
            "error" => self.error = Some(v),
            "message" => self.message = Some(v),
            _ => {}
        }
    }
}

impl tracing::Subscriber for ReasonLog {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        *metadata.level() <= tracing::Level::WARN
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut f = Fields {
            account: None,
            error: None,
            message: None,
        };
        event.record(&mut f);
        if f.message.as_deref() != Some("account not entitled") {
            return;
        }
        // `Some("123456789012")`
        let account: String = f
            .account
            .unwrap_or_default()
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        // At most 300 characters (a byte cut could fall inside a character and panic).
        let error: String = f.error.unwrap_or_default().chars().take(300).collect();
        self.0.lock().unwrap().insert(account, error);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: run with `make soak` (SOAK_ACCOUNTS accounts, default 200)"]
async fn faults_soak_every_account_entitled_or_parked_and_one_grant_per_pair() {
    let accounts_n = env_usize("SOAK_ACCOUNTS", 200);
    let seed_n = env_usize("SOAK_SEED", 10) as u64;
    let reasons: Reasons = Default::default();
    tracing::subscriber::set_global_default(ReasonLog(reasons.clone())).unwrap();

    let spec = OrgSpec {
        all_features: true,
        ous: vec![OuSpec {
            name: "Soak".into(),
            accounts: vec![],
        }],
        licenses: vec![
            LicenseSpec::new("soak-a", "Soak A"),
            LicenseSpec::new("soak-b", "Soak B"),
            LicenseSpec::new("soak-c", "Soak C"),
        ],
        enable_integration: true,
        org_wide_grants: vec![],
    };
    let Some(mut s): Option<Setup> = setup(spec).await else {
        return;
    };
    let ou = s.org.ou("Soak").unwrap().id.clone();
    let started = Instant::now();
    let mut accounts = Vec::new();
    for i in 0..accounts_n {
        let a = seed::add_account(&s.world, &mut s.org, &format!("soak-{i:04}"), &ou)
            .await
            .unwrap();
        accounts.push(a.id);
    }
    let seeded_in = started.elapsed();

    // Faults on every License Manager operation (moto is left unthrottled: it serves one
    // request at a time and has no fault switch). Grant workflows and activations take a while,
    // so accounts go through delayed re-checks.
    let control = s.world.control();
    control
        .configure(json!({
            "seed": seed_n,
            "throttleProbability": 0.20,
            "serverErrorProbability": 0.05,
            "commitFaultProbability": 0.05,
            "spikeProbability": 0.02,
            "spikeMs": 400,
            "pendingWorkflowMs": 1500,
            "activationMs": 1500,
        }))
        .await
        .unwrap();

    // Five containers (the template's reserved concurrency), each with production-like clients.
    let engines: Vec<_> = (0..5)
        .map(|_| s.retrying_engine(&[], Duration::from_millis(20)))
        .collect();
    for a in &accounts {
        s.enqueue(&s.create_event(a, &ou)).await;
    }
    let run_started = Instant::now();
    let run = s
        .consume_queue(&engines, 5, Duration::from_secs(2), &reasons, false)
        .await;
    let run_wall = run_started.elapsed();
    // The run is over: read the outcome without faults.
    control
        .configure(json!({"throttleProbability": 0.0, "serverErrorProbability": 0.0, "commitFaultProbability": 0.0, "spikeProbability": 0.0}))
        .await
        .unwrap();
    let faults = control.fault_counts().await.unwrap();
    let calls = control.calls().await.unwrap();
    let live = s.live_grants().await;
    let licenses: Vec<String> = s.org.licenses.iter().map(|l| l.arn.clone()).collect();

    let mut entitled = 0;
    let mut lost: Vec<(String, Vec<String>)> = Vec::new();
    for a in &accounts {
        let principal = format!("arn:aws:iam::{a}:root");
        let states: Vec<String> = licenses
            .iter()
            .map(|l| {
                live.get(&(l.clone(), principal.clone()))
                    .map(|v| v.join("+"))
                    .unwrap_or_else(|| "none".into())
            })
            .collect();
        if states.iter().all(|st| st == "ACTIVE") {
            entitled += 1;
        } else if !run.parked.contains_key(a) {
            lost.push((a.clone(), states));
        }
    }
    let max_live = live.values().map(Vec::len).max().unwrap_or(0);
    let duplicates: BTreeMap<_, _> = live.iter().filter(|(_, v)| v.len() > 1).collect();
    let failed_calls = calls.iter().filter(|c| c.outcome != "ok").count();
    let throttled_calls = calls
        .iter()
        .filter(|c| c.outcome.contains("RateLimitExceeded"))
        .count();
    let mut parked_by_reason: BTreeMap<String, usize> = BTreeMap::new();
    for r in run.parked.values() {
        let key: String = r.chars().take(120).collect();
        *parked_by_reason.entry(key).or_default() += 1;
    }

    println!(
        "---- soak: {accounts_n} accounts × {} licenses, seed {seed_n} ----",
        licenses.len()
    );
    println!("accounts onboarded (all grants ACTIVE): {entitled}");
    println!("accounts parked (DLQ): {}", run.parked.len());
    for (reason, n) in &parked_by_reason {
        println!("  {n} × {reason}");
    }
    println!("accounts lost: {}", lost.len());
    println!("live grants per (license, account): max {max_live}");
    println!(
        "faults injected: throttles {} / 5xx before {} / 5xx after commit {} / latency spikes {}",
        faults.throttles, faults.server_errors, faults.after_commit, faults.spikes
    );
    let parked_throttled = run
        .parked
        .values()
        .filter(|r| r.contains("RateLimitExceeded"))
        .count();
    println!(
        "License Manager calls: {} ({failed_calls} failed, {throttled_calls} throttled); \
         throttles absorbed (retried by the SDK or redelivered until they passed): {} of {}",
        calls.len(),
        faults.throttles as usize - parked_throttled,
        faults.throttles
    );
    println!(
        "retries spent: {} failed calls retried by the SDK or the queue; {} SQS redeliveries; {} \
         deliveries in {} batches",
        failed_calls, run.redeliveries, run.deliveries, run.batches
    );
    println!(
        "wall time: {:.1} s onboarding ({:.1} s seeding the organization)",
        run_wall.as_secs_f64(),
        seeded_in.as_secs_f64()
    );

    assert!(
        lost.is_empty(),
        "accounts neither entitled nor parked: {lost:?}"
    );
    assert!(
        duplicates.is_empty(),
        "more than one live grant for a (license, account): {duplicates:?}"
    );
    assert_eq!(
        run.accounts.len(),
        accounts_n,
        "every account was delivered"
    );
}
