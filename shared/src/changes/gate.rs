//! The runs a batch asks for, against the accounts' chains (`CHAIN_TABLE`, [`crate::chain`]):
//! one `BatchGetItem` per 100 accounts ([`read_chains`], before the batch's looks: an account
//! whose chain makes its step moot is set aside without a License Manager call,
//! [`super::plan::set_aside`]), then per account [`crate::chain::gate`]. Without a table (or
//! when it cannot be read) every run starts, as it would without chains.

use super::Lane;
use crate::chain::{self, Gate};
use crate::engine::Engine;
use crate::event::{OnboardRequest, GRANT_CHANGE_REASON};
use crate::ids::AccountId;
use crate::reconcile::ReconcileReport;
use crate::report::CallLog;
use std::collections::HashMap;

/// One message to send for an account: its body, its chain sequence and, for a re-check
/// brought forward, the sequence the item had (the update is conditional on it).
pub(super) struct Outgoing {
    pub(super) account: String,
    pub(super) body: String,
    pub(super) seq: Option<u64>,
    pub(super) forwarded_from: Option<u64>,
    pub(super) records: Vec<usize>,
}

/// The messages for `runs` (account, records, lane), by lane (`true`: the backfill queue):
/// a new `grant-change` run where no chain is live, the waiting re-check's body where one
/// waits; nothing where a chain is queued, and a mark where one runs (both reported as
/// skipped, with why).
pub(super) async fn messages(
    engine: &Engine,
    runs: Vec<(AccountId, Vec<usize>, Lane)>,
    items: Option<&Chains>,
    backfill_queue: bool,
    calls: &CallLog,
    report: &mut ReconcileReport,
) -> Vec<(bool, Outgoing)> {
    let table = table(engine);
    let now_secs = engine.unix_now();
    let seq = items.as_ref().map(|_| chain::sequence(engine.now()));
    let mut out = Vec::new();
    for (account, records, lane) in runs {
        let backfill = lane == Lane::Backfill && backfill_queue;
        let mut gate = items.map_or(Gate::Start, |i| {
            chain::gate(i.get(account.as_str()), now_secs)
        });
        if let Gate::Poke(running) = gate {
            gate = match mark_running(engine, table, &account, running, calls).await {
                Marked::Yes => {
                    Gate::Skip("its chain is running; marked to go on at once when the run ends")
                }
                Marked::Moved => {
                    let again = read_chains(engine, &[account.as_str()], calls).await;
                    let item = again.as_ref().and_then(|i| i.get(account.as_str()));
                    chain::gate_after_moved(item, now_secs)
                }
                Marked::Unknown => {
                    Gate::Skip("its chain is running (not marked: its re-check comes at its time)")
                }
            };
        }
        let outgoing = match gate {
            Gate::Start => Outgoing {
                account: account.to_string(),
                body: run_body(&account, backfill),
                seq,
                forwarded_from: None,
                records,
            },
            Gate::Forward { seq: old, body } => {
                report.forwarded.push(account.to_string());
                Outgoing {
                    account: account.to_string(),
                    body,
                    seq: seq.map(|s| s.max(old + 1)),
                    forwarded_from: Some(old),
                    records,
                }
            }
            Gate::Skip(why) => {
                report.needs.remove(account.as_str());
                report.skipped.insert(
                    account.to_string(),
                    format!("Grant Change event: {why}; no run"),
                );
                continue;
            }
            // Marked above, which settles it as one of the others.
            Gate::Poke(_) => continue,
        };
        report.onboard.push(account.to_string());
        if backfill {
            report.backfill.push(account.to_string());
        }
        out.push((backfill, outgoing));
    }
    out
}

/// The chains read for a batch, by account.
pub(super) type Chains = HashMap<String, chain::Item>;

/// The chains table, when runs are gated by it (never in a dry run, which sends nothing).
fn table(engine: &Engine) -> Option<&String> {
    engine
        .config()
        .chain_table
        .as_ref()
        .filter(|_| !engine.config().dry_run)
}

/// The chains of `accounts` (one `BatchGetItem` per 100), or `None` without a table, in a dry
/// run, or when it cannot be read (every run then starts).
pub(super) async fn read_chains(
    engine: &Engine,
    accounts: &[&str],
    calls: &CallLog,
) -> Option<Chains> {
    let db = &engine.clients().dynamodb;
    chain::read_or_none(db, table(engine)?, accounts, calls).await
}

/// The gate `account`'s chain sets for an event's run, or `None` without chains. Pure.
pub(super) fn gate_of(items: Option<&Chains>, account: &str, now_secs: u64) -> Option<Gate> {
    Some(chain::gate(items?.get(account), now_secs))
}

/// What marking a running chain came to.
enum Marked {
    Yes,
    /// The chain moved on between the read and the mark (its run ended, or another began).
    Moved,
    /// No table, or the write failed: its re-check comes at its time.
    Unknown,
}

/// Marks `account`'s running chain (sequence `running`).
async fn mark_running(
    engine: &Engine,
    table: Option<&String>,
    account: &AccountId,
    running: u64,
    calls: &CallLog,
) -> Marked {
    let Some(table) = table else {
        return Marked::Unknown;
    };
    let db = &engine.clients().dynamodb;
    match chain::poke(db, table, account.as_str(), running, calls).await {
        Ok(true) => Marked::Yes,
        Ok(false) => Marked::Moved,
        Err(e) => {
            tracing::warn!(error = %e, account = %account, "running chain not marked; its re-check comes at its time");
            Marked::Unknown
        }
    }
}

/// A `grant-change` run's body.
fn run_body(account: &AccountId, backfill: bool) -> String {
    serde_json::to_string(&OnboardRequest {
        account_id: account.to_string(),
        reason: Some(GRANT_CHANGE_REASON.into()),
        attempt: 0,
        first_seen: None,
        activations: Vec::new(),
        ou_id: None,
        backfill,
    })
    .unwrap_or_default()
}

/// After a lane's messages were sent: the chains of the new runs marked queued (one
/// `BatchWriteItem` per 25), the re-checks brought forward each marked queued under their new
/// sequence. Best effort: an unwritten mark only lets a later event through to a second run.
pub(super) async fn mark_sent(engine: &Engine, sent: &[Outgoing], calls: &CallLog) {
    let Some(table) = &engine.config().chain_table else {
        return;
    };
    let db = &engine.clients().dynamodb;
    let now_secs = engine.unix_now();
    let expires = now_secs + chain::QUEUED_SECONDS;
    let started: Vec<(String, u64)> = sent
        .iter()
        .filter(|o| o.forwarded_from.is_none())
        .filter_map(|o| Some((o.account.clone(), o.seq?)))
        .collect();
    chain::mark_queued_best_effort(db, table, &started, now_secs, calls).await;
    let forwards = sent.iter().filter_map(|o| {
        let (old, next) = (o.forwarded_from?, o.seq?);
        Some(async move {
            chain::forward(db, table, &o.account, (old, next), expires, calls)
                .await
                .map_err(|e| (o.account.clone(), e))
        })
    });
    for result in futures::future::join_all(forwards).await {
        if let Err((account, e)) = result {
            tracing::warn!(error = %e, account, "brought-forward chain not marked queued");
        }
    }
}
