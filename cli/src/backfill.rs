//! `backfill`: the reconciler's fan-out for a scope, queued on the backfill queue, then the
//! accounts this run queued followed until each is entitled, failed, or the wait runs out.
//!
//! What is followed is the accounts the reconcile reports it queued (`onboard`), not the
//! queue's depth: other messages on the queue (new accounts, re-checks, another backfill) do
//! not count. Each look is the same dry run as `plan`, for the accounts still pending.

use crate::args::BackfillArgs;
use crate::context::Context;
use crate::deployed::{BACKFILL_QUEUE_OUTPUT, ONBOARDING_QUEUE_OUTPUT};
use crate::plan::{look, Verdict};
use crate::render;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use serde_json::Value;
use shared::ids::AccountId;
use shared::reconcile::{self, ReconcileConfig, ReconcileReport, Scope};
use shared::{engine::Engine, error::Error};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Where this run's messages go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queues {
    /// Organization and OU runs (and, without an onboarding queue, named accounts too).
    pub backfill: String,
    /// Named accounts, when known (the stack's OnboardingQueueUrl): as the reconciler does.
    pub onboarding: Option<String>,
}

/// The queues: `--backfill-queue-url` (or its deprecated alias `--queue-url`), else the
/// stack's outputs with `--stack-name`. Without a backfill queue the command refuses.
pub fn queues(args: &BackfillArgs, ctx: &Context) -> Result<Queues, Error> {
    let backfill = args
        .backfill_queue_url
        .clone()
        .or_else(|| ctx.output(BACKFILL_QUEUE_OUTPUT))
        .ok_or_else(|| {
            Error::InvalidInput(
                "backfill needs the backfill queue: --backfill-queue-url URL (the stack's BackfillQueueUrl output), or --stack-name NAME".into(),
            )
        })?;
    Ok(Queues {
        backfill,
        onboarding: ctx.output(ONBOARDING_QUEUE_OUTPUT),
    })
}

/// The reconciler's settings for `queues` (offboarding stays off in the CLI).
pub fn reconcile_config(queues: &Queues) -> Result<ReconcileConfig, Error> {
    ReconcileConfig::from_lookup(|k| match k {
        "ONBOARDING_QUEUE_URL" => Some(
            queues
                .onboarding
                .clone()
                .unwrap_or_else(|| queues.backfill.clone()),
        ),
        "BACKFILL_QUEUE_URL" => Some(queues.backfill.clone()),
        _ => None,
    })
}

/// The scope of `args`: named accounts, OUs, or the whole organization.
pub fn scope(args: &BackfillArgs, config: &ReconcileConfig) -> Result<Scope, Error> {
    let mut request = serde_json::Map::new();
    if !args.ous.is_empty() {
        request.insert("ous".into(), args.ous.clone().into());
    }
    if !args.accounts.is_empty() {
        let ids: Vec<Value> = args.accounts.iter().map(|a| a.as_str().into()).collect();
        request.insert("accounts".into(), ids.into());
    }
    Ok(reconcile::parse(&Value::Object(request), config)?.0)
}

/// Where a queued account stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Standing {
    /// `--dry-run`: it would be queued.
    WouldQueue,
    /// Queued, not followed (`--wait-seconds 0`).
    Queued,
    /// Still short of an ACTIVE grant (or not looked at yet).
    Pending,
    /// Every selected license ACTIVE.
    Entitled,
    /// Its run cannot succeed as things are (a permanent error).
    Failed,
    /// Its run has nothing to do (outside the selection or scope).
    Skipped,
}

/// One account this run queued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Followed {
    pub account_id: String,
    pub account_name: Option<String>,
    pub outcome: Standing,
    pub detail: Option<String>,
}

/// Counts for the summary line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackfillSummary {
    pub listed: usize,
    pub queued: usize,
    pub up_to_date: usize,
    pub skipped: usize,
    pub entitled: usize,
    pub failed: usize,
    pub still_pending: usize,
    /// Seconds spent following the queued accounts.
    pub waited_seconds: u64,
    /// The wait ran out with accounts still pending.
    pub timed_out: bool,
}

/// The `backfill` JSON document.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackfillDocument {
    pub command: &'static str,
    pub dry_run: bool,
    pub scope: String,
    pub queue_url: String,
    pub summary: BackfillSummary,
    pub accounts: Vec<Followed>,
    /// Accounts left out, with the reason (management account, not ACTIVE, …).
    pub skipped: BTreeMap<String, String>,
}

impl BackfillDocument {
    /// From the reconcile's report, before anything is followed.
    pub fn of(report: &ReconcileReport, queue_url: &str) -> Self {
        let outcome = if report.dry_run {
            Standing::WouldQueue
        } else {
            Standing::Queued
        };
        let accounts = report
            .onboard
            .iter()
            .map(|id| Followed {
                account_id: id.clone(),
                account_name: None,
                outcome,
                detail: report.needs.get(id).cloned(),
            })
            .collect();
        BackfillDocument {
            command: "backfill",
            dry_run: report.dry_run,
            scope: report.scope.clone(),
            queue_url: queue_url.to_string(),
            summary: BackfillSummary {
                listed: report.accounts_listed,
                queued: report.enqueued,
                up_to_date: report.up_to_date,
                skipped: report.skipped.len(),
                ..BackfillSummary::default()
            },
            accounts,
            skipped: report.skipped.clone(),
        }
    }

    /// Recounts the outcomes.
    pub fn tally(&mut self) {
        let n = |s: Standing| self.accounts.iter().filter(|a| a.outcome == s).count();
        self.summary.entitled = n(Standing::Entitled);
        self.summary.failed = n(Standing::Failed);
        self.summary.still_pending = n(Standing::Pending);
    }

    pub fn line(&self) -> String {
        let s = &self.summary;
        if self.dry_run {
            return format!(
                "backfill (dry run): {} listed, {} would be queued, {} up to date, {} skipped",
                s.listed,
                self.accounts.len(),
                s.up_to_date,
                s.skipped
            );
        }
        let mut line = format!(
            "backfill: {} listed, {} queued, {} up to date, {} skipped",
            s.listed, s.queued, s.up_to_date, s.skipped
        );
        if self.accounts.iter().any(|a| a.outcome != Standing::Queued) {
            line.push_str(&format!(
                "; of the queued: {} entitled, {} failed, {} still pending",
                s.entitled, s.failed, s.still_pending
            ));
            if s.timed_out {
                line.push_str(&format!(" after {} s", s.waited_seconds));
            }
        }
        line
    }

    pub fn table(&self) -> String {
        let word = |s: Standing| match s {
            Standing::WouldQueue => "would queue",
            Standing::Queued => "queued",
            Standing::Pending => "pending",
            Standing::Entitled => "entitled",
            Standing::Failed => "failed",
            Standing::Skipped => "skipped",
        };
        let rows: Vec<[String; 4]> = self
            .accounts
            .iter()
            .map(|a| {
                [
                    a.account_id.clone(),
                    a.account_name.clone().unwrap_or_default(),
                    word(a.outcome).into(),
                    a.detail.clone().unwrap_or_default(),
                ]
            })
            .collect();
        let mut out = String::new();
        if !rows.is_empty() {
            out.push_str(&render::table(
                ["Account", "Name", "Outcome", "Detail"],
                &rows,
            ));
        }
        out.push_str(&self.line());
        out.push('\n');
        out
    }
}

/// Adds the accounts' names (Organizations); without them when they cannot be read.
pub async fn name_accounts(engine: &Engine, doc: &mut BackfillDocument) {
    let ids: Vec<AccountId> = doc
        .accounts
        .iter()
        .filter_map(|a| AccountId::parse(&a.account_id).ok())
        .collect();
    if ids.is_empty() {
        return;
    }
    if let Ok(names) = crate::status::account_names(&engine.clients().organizations, &ids).await {
        for a in &mut doc.accounts {
            a.account_name = names.get(&a.account_id).cloned();
        }
    }
}

/// Runs the reconcile for `scope` (queueing unless `dry_run`).
pub async fn queue(
    engine: &Engine,
    config: &ReconcileConfig,
    scope: Scope,
    dry_run: bool,
) -> Result<ReconcileReport, Error> {
    let report = reconcile::reconcile(engine, config, scope, dry_run).await;
    match &report.error {
        Some(e) => Err(Error::from_report(e, "backfill")),
        None => Ok(report),
    }
}

/// Follows the queued accounts of `doc` until each is settled or `wait` runs out, looking every
/// `poll`. Progress is drawn on stderr when it is a terminal, nowhere otherwise.
pub async fn follow(
    engine: &Engine,
    doc: &mut BackfillDocument,
    wait: Duration,
    poll: Duration,
    verbose: bool,
) {
    let started = Instant::now();
    let deadline = started + wait;
    for a in &mut doc.accounts {
        a.outcome = Standing::Pending;
        a.detail = None;
    }
    let bar = progress_bar(doc.accounts.len() as u64, std::io::stderr().is_terminal());
    loop {
        let pending: Vec<AccountId> = doc
            .accounts
            .iter()
            .filter(|a| a.outcome == Standing::Pending)
            .filter_map(|a| AccountId::parse(&a.account_id).ok())
            .collect();
        if pending.is_empty() {
            break;
        }
        let reports = look(engine, &pending, "cli-backfill").await;
        for report in &reports {
            let Some(a) = doc
                .accounts
                .iter_mut()
                .find(|a| Some(&a.account_id) == report.account_id.as_ref())
            else {
                continue;
            };
            a.account_name = report.account_name.clone().or(a.account_name.take());
            let (outcome, detail) = standing(report, verbose);
            a.outcome = outcome;
            a.detail = detail;
        }
        doc.tally();
        let settled = doc.accounts.len() - doc.summary.still_pending;
        bar.set_position(settled as u64);
        bar.set_message(format!(
            "{} entitled, {} failed",
            doc.summary.entitled, doc.summary.failed
        ));
        if doc.summary.still_pending == 0 || Instant::now() >= deadline {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::time::sleep(poll.min(left)).await;
    }
    bar.finish_and_clear();
    doc.summary.waited_seconds = started.elapsed().as_secs();
    doc.summary.timed_out = doc.summary.still_pending > 0;
}

/// Where an account stands after a look.
fn standing(report: &shared::report::AccountReport, verbose: bool) -> (Standing, Option<String>) {
    let row = crate::plan::AccountRow::of(report, verbose);
    match row.result {
        Verdict::Entitled => (Standing::Entitled, None),
        Verdict::Skipped => (Standing::Skipped, row.reason),
        Verdict::Failed => match row.error {
            Some(e) if !e.retryable => (Standing::Failed, Some(e.message)),
            Some(e) => (Standing::Pending, Some(e.message)),
            None => (Standing::Pending, None),
        },
        Verdict::WouldBeEntitled | Verdict::Waiting => {
            let waiting: Vec<String> = row
                .licenses
                .iter()
                .filter(|l| !l.covered())
                .map(|l| {
                    format!(
                        "{} {}",
                        l.label(),
                        l.status.as_deref().unwrap_or("(no grant)")
                    )
                })
                .collect();
            (Standing::Pending, Some(waiting.join(", ")))
        }
    }
}

/// A bar of `total` accounts with rate and ETA, drawn on stderr only when `visible`.
fn progress_bar(total: u64, visible: bool) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{spinner} {elapsed} [{bar:20}] {pos}/{len} settled, {per_sec}, ETA {eta}: {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("#>-");
    bar.set_style(style);
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}
