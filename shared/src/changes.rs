//! License Manager's change events a batch at a time. The `LicenseManagerChangesRule` puts
//! each event on the change-event queue (`CHANGE_EVENT_QUEUE_URL`); the reconciler takes them
//! in SQS batches, so that a burst of events (a backfill makes several per grant) costs one
//! look per grant and at most one run per account per batch, where one invocation per event
//! read the same parent grant and the same account again and again.
//!
//! The order: parse every record (a record that is not a License Manager change event is
//! refused, alone); resolve the grants events name by ARN alone (one `GetGrant` per distinct
//! grant); decide each account from its hints ([`plan`], pure); look at the grants the plan
//! asks for (one `GetGrant` per distinct grant, then per distinct parent); read the accounts
//! whose grants went away ([`crate::reconcile::settled`]); queue the accounts to run, once
//! each, on the onboarding queue. A throttle fails only the records it touched: SQS delivers
//! them again; the rest of the batch is done.

use crate::aws::{self, GrantView};
use crate::engine::Engine;
use crate::error::{describe, echo, Error};
use crate::event::OnboardRequest;
use crate::ids::{account_of_root_principal, AccountId};
use crate::reconcile::{
    after_look, hint_action, GrantHint, HintAction, ReconcileConfig, ReconcileReport, Scope,
    COALESCED_BODY,
};
use crate::report::{CallLog, ErrorReport};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

/// What one understood record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A `Grant Change` naming an account's grant.
    Hint(Box<GrantHint>),
    /// A `Grant Change` naming grants by ARN alone.
    Grants(Vec<String>),
    /// An event naming no account (a `License Change`, a detail without a grant): the
    /// configured scope, coalesced. The string says which event.
    Coalesce(String),
}

/// A batch from the change-event queue, parsed before any AWS call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeBatch {
    /// Every record's SQS message id, in order.
    pub ids: Vec<String>,
    /// What each understood record says (by record index).
    pub items: Vec<(usize, Item)>,
    /// Records refused, and why (by record index).
    pub rejected: Vec<(usize, String)>,
    /// Each record's receipt handle, when it has one (by record index): a record to deliver
    /// again is made visible again in [`RETRY_AFTER_SECONDS`] with it.
    pub handles: Vec<Option<String>>,
}

/// How soon a record to deliver again (a throttled look, a failed send) comes back: its
/// visibility is set to this many seconds (`ChangeMessageVisibility`) instead of the queue's
/// visibility timeout (1,800 s, which a batch's longest run needs). A completion's run waits
/// seconds, not half an hour.
pub const RETRY_AFTER_SECONDS: i32 = 10;

/// The detail types `LicenseManagerChangesRule` matches.
const DETAIL_TYPES: [&str; 2] = ["Grant Change", "License Change"];

/// `Some` when `payload` is an SQS batch from the change-event queue (the first record's
/// `eventSourceARN` names it); then every record must come from that queue and carry a message
/// id, or the whole batch is refused (`InvalidInput`, no AWS call): the wiring is wrong. A
/// record whose body is not a License Manager change event is refused alone.
pub fn parse_batch(
    payload: &Value,
    config: &ReconcileConfig,
) -> Option<Result<ChangeBatch, Error>> {
    let queue = config.change_queue_url.as_deref()?.rsplit('/').next()?;
    let records = payload.get("Records")?.as_array()?;
    let from = |r: &Value| {
        r.get("eventSourceARN")
            .and_then(Value::as_str)
            .and_then(|arn| arn.rsplit(':').next())
            .map(str::to_string)
    };
    if from(records.first()?).as_deref() != Some(queue) {
        return None;
    }
    Some(parse_records(payload, records, queue))
}

fn parse_records(payload: &Value, records: &[Value], queue: &str) -> Result<ChangeBatch, Error> {
    let invalid = |msg: String| Error::InvalidInput(msg);
    if let Some(extra) = payload
        .as_object()
        .and_then(|o| o.keys().find(|k| k.as_str() != "Records"))
    {
        return Err(invalid(format!(
            "SQS event: unknown field {} beside Records",
            echo(extra)
        )));
    }
    let mut batch = ChangeBatch {
        ids: Vec::new(),
        items: Vec::new(),
        rejected: Vec::new(),
        handles: Vec::new(),
    };
    for (i, record) in records.iter().enumerate() {
        let field = |name: &str| record.get(name).and_then(Value::as_str);
        crate::reconcile::check_sqs_record(record, i, queue, "the change-event queue")?;
        let Some(id) = field("messageId").filter(|id| !id.is_empty()) else {
            return Err(invalid(format!(
                "SQS event: Records[{i}].messageId must be a non-empty string"
            )));
        };
        batch.ids.push(id.to_string());
        batch
            .handles
            .push(field("receiptHandle").map(str::to_string));
        match record_item(field("body")) {
            Ok(items) => batch.items.extend(items.into_iter().map(|item| (i, item))),
            Err(why) => batch.rejected.push((i, why)),
        }
    }
    Ok(batch)
}

/// What one record's body says, or why it is refused.
fn record_item(body: Option<&str>) -> Result<Vec<Item>, String> {
    let event: Value = body
        .and_then(|b| serde_json::from_str(b).ok())
        .ok_or("the body is not JSON")?;
    let obj = event.as_object().ok_or("the body is not a JSON object")?;
    let source = obj.get("source").and_then(Value::as_str);
    let detail_type = obj.get("detail-type").and_then(Value::as_str);
    if source != Some("aws.license-manager")
        || !detail_type.is_some_and(|t| DETAIL_TYPES.contains(&t))
    {
        return Err(format!(
            "not a License Manager Grant Change or License Change event (source {}, detail-type {})",
            obj.get("source").map_or_else(|| "nothing".into(), describe),
            obj.get("detail-type")
                .map_or_else(|| "nothing".into(), describe)
        ));
    }
    Ok(match crate::reconcile::change_event(obj) {
        Some(Some(Scope::GrantChanged(hints))) => {
            hints.into_iter().map(|h| Item::Hint(Box::new(h))).collect()
        }
        Some(Some(Scope::GrantArns(arns))) => vec![Item::Grants(arns)],
        _ => vec![Item::Coalesce(crate::reconcile::event_label(obj))],
    })
}

/// The queue a run goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// The onboarding queue: a grant completed its workflow and waits on ct-entitlements (an
    /// acceptance, an activation), to be done within seconds.
    Now,
    /// The backfill queue (`BACKFILL_QUEUE_URL`; the onboarding queue without one): a grant
    /// failed or went away, so the run creates one, whose workflow takes its own time. It is
    /// the backfill's kind of work: during a backfill, the account's own backfill message waits
    /// there already, and new accounts never wait behind it (issue 17 §3: at 1,000 accounts,
    /// the failed account-level grants of the first reconcile made the onboarding queue do the
    /// backfill's work a second time).
    Backfill,
}

/// The lane of a run asked for by a grant in `status`. Pure.
pub fn lane_of(status: &str) -> Lane {
    use crate::decide::status::{DELETED, FAILED_WORKFLOW, REJECTED};
    match status {
        FAILED_WORKFLOW | REJECTED | DELETED => Lane::Backfill,
        _ => Lane::Now,
    }
}

/// What a batch's hints about one account lead to. Pure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A grant waits on ct-entitlements: run the account, no call needed. Why (a grant and
    /// its status), and on which queue.
    Run(String, Lane),
    /// Nothing for a run to do now, and why.
    Nothing(String),
    /// These grants (ARNs) say whose move it is: `GetGrant` each.
    Look(Vec<String>),
    /// The account's listings decide ([`crate::reconcile::settled`]).
    Read,
}

/// The step for one account from every hint a batch holds about it. Per grant, the statuses
/// its events name: `PENDING_WORKFLOW` is dropped beside any other (it comes first), one
/// action left is that action ([`hint_action`]), several (`PENDING_ACCEPT` and `DISABLED`: the
/// grant moved on within the batch) make the grant a look, since the order of a standard
/// queue's messages proves nothing. A hint whose grant was read already (`seen`) is a look
/// answered from it. Then the account: any grant to run → run; any grant gone or unnamed → the
/// listings; any grant to look at → those; else nothing.
pub fn plan(hints: &[&GrantHint]) -> Step {
    use crate::decide::status::PENDING_WORKFLOW;
    let mut by_grant: BTreeMap<Option<&str>, BTreeSet<Option<&str>>> = BTreeMap::new();
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    for hint in hints {
        let grant = hint.grant.as_deref();
        if let (Some(arn), Some(_)) = (grant, &hint.seen) {
            seen.insert(arn);
        }
        by_grant
            .entry(grant)
            .or_default()
            .insert(hint.status.as_deref());
    }
    let (mut run, mut read, mut look, mut nothing): (Option<(String, Lane)>, _, _, _) =
        (None, false, Vec::new(), None);
    for (grant, mut statuses) in by_grant {
        if statuses.len() > 1 {
            statuses.remove(&Some(PENDING_WORKFLOW));
        }
        let actions: BTreeSet<HintAction> = statuses
            .iter()
            .map(|s| hint_action(*s, grant.is_some()))
            .collect();
        let action = match (actions.len(), grant) {
            (1, _) => actions.into_iter().next().unwrap_or(HintAction::Read),
            (_, Some(_)) => HintAction::Look,
            (_, None) => HintAction::Read,
        };
        let action = match (action, grant) {
            // Read already: what it showed decides, as a look.
            (HintAction::Run | HintAction::Nothing, Some(arn)) if seen.contains(arn) => {
                HintAction::Look
            }
            (action, _) => action,
        };
        match (action, grant) {
            (HintAction::Run, _) => {
                let status = statuses.iter().flatten().next().copied().unwrap_or("?");
                let why = format!("{} {status}", grant.unwrap_or("a grant"));
                // A completion anywhere in the account puts the run on the fast lane.
                match (&run, lane_of(status)) {
                    (Some((_, Lane::Now)), _) => {}
                    (Some(_), Lane::Backfill) => {}
                    (_, lane) => run = Some((why, lane)),
                }
            }
            (HintAction::Read, _) | (HintAction::Look, None) => read = true,
            (HintAction::Look, Some(arn)) => look.push(arn.to_string()),
            (HintAction::Nothing, _) => {
                nothing.get_or_insert_with(|| {
                    let status = statuses.iter().flatten().next().copied().unwrap_or("?");
                    format!("its grant is {status}")
                });
            }
        }
    }
    if let Some((why, lane)) = run {
        Step::Run(why, lane)
    } else if read {
        Step::Read
    } else if !look.is_empty() {
        Step::Look(look)
    } else {
        Step::Nothing(nothing.unwrap_or_else(|| "no grant named".into()))
    }
}

/// Works one batch: see the module's doc. The report says what each account got; its
/// `retried` and `rejected` are the records to answer as batch item failures.
pub async fn run(
    engine: &Engine,
    config: &ReconcileConfig,
    batch: &ChangeBatch,
    dry_run: bool,
) -> ReconcileReport {
    let started = Instant::now();
    let mut t = Triage {
        engine,
        calls: CallLog::default(),
        report: ReconcileReport::empty(format!("change-events:{}", batch.ids.len()), dry_run),
        failed: BTreeSet::new(),
    };
    for (i, why) in &batch.rejected {
        tracing::error!(message_id = %batch.ids[*i], reason = %why, "change-event record refused");
        t.report.rejected.insert(batch.ids[*i].clone(), why.clone());
    }
    let (hints, coalesce) = t.resolve(&batch.items).await;
    t.coalesce(config, &coalesce, dry_run).await;
    // Each account's step, from all its hints.
    let mut accounts: BTreeMap<AccountId, (Vec<&GrantHint>, Vec<usize>)> = BTreeMap::new();
    for (i, hint) in &hints {
        let entry = accounts.entry(hint.account.clone()).or_default();
        entry.0.push(hint);
        entry.1.push(*i);
    }
    let steps: Vec<(&AccountId, Step, &[usize])> = accounts
        .iter()
        .map(|(account, (hints, records))| (account, plan(hints), records.as_slice()))
        .collect();
    let views = t.look(&hints, &steps).await;
    let runs = t.verdicts(&steps, &views).await;
    t.queue(config, runs, dry_run).await;
    t.soon(config, batch, dry_run).await;
    let mut report = t.report;
    report.retried = t.failed.iter().map(|i| batch.ids[*i].clone()).collect();
    report.accounts_listed = accounts.len();
    report.api_calls = t.calls.snapshot().own;
    report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    report
}

/// One batch's triage under way: what it called, reported and must answer as failed.
struct Triage<'a> {
    engine: &'a Engine,
    calls: CallLog,
    report: ReconcileReport,
    /// Record indexes to deliver again.
    failed: BTreeSet<usize>,
}

impl Triage<'_> {
    /// Keeps the first error in the report, and the records it touched for another delivery.
    fn fail<'r>(&mut self, records: impl IntoIterator<Item = &'r usize>, e: ErrorReport) {
        self.report.error.get_or_insert(e);
        self.failed.extend(records);
    }

    /// The batch's hints, with the grants named by ARN alone read (once each) and turned into
    /// hints (a grant to an account) or coalescing requests (to the organization or an OU, or
    /// unreadable); and the coalescing requests.
    async fn resolve(
        &mut self,
        items: &[(usize, Item)],
    ) -> (Vec<(usize, GrantHint)>, Vec<(usize, String)>) {
        let mut hints: Vec<(usize, GrantHint)> = Vec::new();
        let mut coalesce: Vec<(usize, String)> = Vec::new();
        let mut by_arn: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, item) in items {
            match item {
                Item::Hint(hint) => hints.push((*i, hint.as_ref().clone())),
                Item::Coalesce(why) => coalesce.push((*i, why.clone())),
                Item::Grants(arns) => arns
                    .iter()
                    .for_each(|arn| by_arn.entry(arn.as_str()).or_default().push(*i)),
            }
        }
        let mut views = HashMap::new();
        read_all(self.engine, by_arn.keys().copied(), &mut views, &self.calls).await;
        for (arn, records) in &by_arn {
            match views.remove(*arn) {
                Some(Ok(grant)) => match account_of_root_principal(&grant.grantee)
                    .and_then(|id| AccountId::parse(id).ok())
                {
                    Some(account) => hints.extend(records.iter().map(|i| {
                        let hint = GrantHint {
                            account: account.clone(),
                            grant: Some((*arn).to_string()),
                            status: Some(grant.status.clone()),
                            seen: Some(grant.clone()),
                        };
                        (*i, hint)
                    })),
                    None => coalesce.extend(records.iter().map(|i| {
                        (
                            *i,
                            format!("Grant Change of {arn}, granted to {}", grant.grantee),
                        )
                    })),
                },
                Some(Err(e)) if e.retry() == crate::Retry::Retryable => {
                    self.fail(records, ErrorReport::from(&e));
                }
                Some(Err(e)) => coalesce.extend(
                    records
                        .iter()
                        .map(|i| (*i, format!("Grant Change of {arn}, unreadable: {e}"))),
                ),
                None => {}
            }
        }
        (hints, coalesce)
    }

    /// The records to deliver again, made visible again in [`RETRY_AFTER_SECONDS`]. Best
    /// effort: where it fails (or a record has no receipt handle) the queue's visibility
    /// timeout brings the record back, later.
    async fn soon(&mut self, config: &ReconcileConfig, batch: &ChangeBatch, dry_run: bool) {
        let (Some(url), false) = (&config.change_queue_url, dry_run) else {
            return;
        };
        let entries: Vec<(String, String)> = self
            .failed
            .iter()
            .filter_map(|i| Some((batch.ids[*i].clone(), batch.handles.get(*i)?.clone()?)))
            .collect();
        if entries.is_empty() {
            return;
        }
        let sqs = &self.engine.clients().sqs;
        if let Err(e) =
            aws::change_visibility(sqs, url, &entries, RETRY_AFTER_SECONDS, &self.calls).await
        {
            tracing::warn!(error = %e, records = entries.len(),
                "records to deliver again wait for the queue's visibility timeout");
        }
    }

    /// The configured scope, asked for once for the whole batch on the coalescing queue.
    async fn coalesce(
        &mut self,
        config: &ReconcileConfig,
        requests: &[(usize, String)],
        dry_run: bool,
    ) {
        let Some((_, why)) = requests.first() else {
            return;
        };
        self.report.coalesced = Some(why.clone());
        let sent = match &config.coalesce_queue_url {
            _ if dry_run => Ok(()),
            Some(url) => {
                let sqs = &self.engine.clients().sqs;
                aws::send_coalesced(sqs, url, COALESCED_BODY, &self.calls).await
            }
            None => Err(Error::Config(
                "RECONCILE_QUEUE_URL: not set, so there is no queue to coalesce on".into(),
            )),
        };
        if let Err(e) = sent {
            self.fail(requests.iter().map(|(i, _)| i), ErrorReport::from(&e));
        }
    }

    /// The grants the steps look at, read once each (those read already kept), then the
    /// parents of the DISABLED ones, once each.
    async fn look(
        &mut self,
        hints: &[(usize, GrantHint)],
        steps: &[(&AccountId, Step, &[usize])],
    ) -> HashMap<String, Result<GrantView, Error>> {
        let mut views: HashMap<String, Result<GrantView, Error>> = HashMap::new();
        for (_, hint) in hints {
            if let (Some(arn), Some(seen)) = (&hint.grant, &hint.seen) {
                views.insert(arn.clone(), Ok(seen.clone()));
            }
        }
        let wanted: BTreeSet<&str> = steps
            .iter()
            .filter_map(|(_, step, _)| match step {
                Step::Look(arns) => Some(arns.iter().map(String::as_str)),
                _ => None,
            })
            .flatten()
            .filter(|arn| !views.contains_key(*arn))
            .collect();
        read_all(self.engine, wanted, &mut views, &self.calls).await;
        let parents: BTreeSet<String> = views
            .values()
            .filter_map(|v| v.as_ref().ok())
            .filter(|g| g.status == crate::decide::status::DISABLED)
            .map(|g| g.parent_arn.clone())
            .filter(|p| crate::ids::is_grant_arn(p) && !views.contains_key(p))
            .collect();
        read_all(
            self.engine,
            parents.iter().map(String::as_str),
            &mut views,
            &self.calls,
        )
        .await;
        views
    }

    /// Each account's verdict: run, nothing (reported), or, for grants gone, its listings
    /// ([`crate::reconcile::settled`]). Returns the accounts to run.
    async fn verdicts(
        &mut self,
        steps: &[(&AccountId, Step, &[usize])],
        views: &HashMap<String, Result<GrantView, Error>>,
    ) -> Vec<(AccountId, Vec<usize>, Lane)> {
        let mut runs = Vec::new();
        let mut org = None;
        for (account, step, records) in steps {
            let verdict = match step {
                Step::Run(why, lane) => Verdict::Run(why.clone(), *lane),
                Step::Nothing(why) => Verdict::Skip(why.clone()),
                Step::Look(arns) => after_looks(arns, views),
                Step::Read => Verdict::Read,
            };
            let outcome = match verdict {
                Verdict::Run(why, lane) => Ok(Ok((why, lane))),
                Verdict::Skip(why) => Ok(Err(why)),
                Verdict::Retry(e) => Err(e),
                Verdict::Read => self
                    .read(&mut org, account)
                    .await
                    .map(|settled| match settled {
                        None => Ok((
                            "a selected license is short of an ACTIVE grant (listings)".into(),
                            Lane::Backfill,
                        )),
                        Some(why) => Err(why),
                    }),
            };
            match outcome {
                Ok(Ok((why, lane))) => {
                    self.report.needs.insert(account.to_string(), why);
                    runs.push(((*account).clone(), records.to_vec(), lane));
                }
                Ok(Err(why)) => {
                    self.report.skipped.insert(
                        account.to_string(),
                        format!("Grant Change event: nothing for a run to do now ({why}); no run"),
                    );
                }
                Err(e) => self.fail(records.iter(), e),
            }
        }
        runs
    }

    /// An account's listings ([`crate::reconcile::settled`]), the organization read once.
    async fn read(
        &mut self,
        org: &mut Option<crate::aws::OrgInfo>,
        account: &AccountId,
    ) -> Result<Option<String>, ErrorReport> {
        if org.is_none() {
            *org = Some(
                self.engine
                    .organization(&self.calls)
                    .await
                    .map_err(|e| ErrorReport::from(&e))?,
            );
        }
        let Some(org) = org.as_ref() else {
            return Ok(None);
        };
        crate::reconcile::settled(self.engine, org, account, &self.calls)
            .await
            .map_err(|e| ErrorReport::from(&e))
    }

    /// The accounts to run, once each, on the onboarding queue (never the management account
    /// or the one ct-entitlements runs in). A failed send retries their records.
    async fn queue(
        &mut self,
        config: &ReconcileConfig,
        runs: Vec<(AccountId, Vec<usize>, Lane)>,
        dry_run: bool,
    ) {
        if runs.is_empty() {
            return;
        }
        let own = [
            self.engine
                .organization(&self.calls)
                .await
                .ok()
                .map(|o| o.management_account),
            self.engine
                .config()
                .self_account_id
                .as_ref()
                .map(|a| a.to_string()),
        ];
        let mut lanes: BTreeMap<bool, (Vec<String>, Vec<usize>)> = BTreeMap::new();
        for (account, of, lane) in runs {
            if own.iter().flatten().any(|a| a == account.as_str()) {
                self.report.skipped.insert(
                    account.to_string(),
                    "an account ct-entitlements does not run".into(),
                );
                continue;
            }
            self.report.onboard.push(account.to_string());
            let backfill = lane == Lane::Backfill && config.backfill_queue_url.is_some();
            if backfill {
                self.report.backfill.push(account.to_string());
            }
            let entry = lanes.entry(backfill).or_default();
            entry.0.push(account.to_string());
            entry.1.extend(of);
        }
        if dry_run {
            return;
        }
        for (backfill, (accounts, records)) in lanes {
            let bodies: Vec<String> = accounts
                .iter()
                .filter_map(|id| {
                    serde_json::to_string(&OnboardRequest {
                        account_id: id.clone(),
                        reason: Some(crate::event::GRANT_CHANGE_REASON.into()),
                        attempt: 0,
                        first_seen: None,
                        activations: Vec::new(),
                        ou_id: None,
                        backfill,
                    })
                    .ok()
                })
                .collect();
            let url = match (&config.backfill_queue_url, backfill) {
                (Some(url), true) => url,
                _ => &config.onboarding_queue_url,
            };
            let sqs = &self.engine.clients().sqs;
            match aws::send_batch(sqs, url, &bodies, &self.calls).await {
                Ok(n) => self.report.enqueued += n,
                Err(e) => self.fail(records.iter(), ErrorReport::from(&e)),
            }
        }
    }
}

/// What an account's looks decide.
#[derive(Debug)]
pub enum Verdict {
    /// Run the account, why, and on which queue.
    Run(String, Lane),
    Skip(String),
    /// A grant went away (deleted, rejected, unreadable): the account's listings decide.
    Read,
    /// A read failed on something retryable.
    Retry(ErrorReport),
}

/// The verdict for an account from the grants it asked to look at, as read (and their parents,
/// for a DISABLED grant): any grant a run acts on → run ([`after_look`]); else a failed read →
/// retry; else a grant gone → the listings; else nothing, with the first grant's reason. Pure.
pub fn after_looks(arns: &[String], views: &HashMap<String, Result<GrantView, Error>>) -> Verdict {
    use crate::decide::status::{DELETED, DISABLED, REJECTED};
    let (mut retry, mut read, mut skip) = (None, false, None);
    for arn in arns {
        let grant = match views.get(arn) {
            Some(Ok(g)) => g,
            Some(Err(e)) if e.retry() == crate::Retry::Retryable => {
                retry.get_or_insert_with(|| ErrorReport::from(e));
                continue;
            }
            _ => {
                read = true;
                continue;
            }
        };
        if matches!(grant.status.as_str(), DELETED | REJECTED) {
            read = true;
            continue;
        }
        let parent = match views.get(&grant.parent_arn) {
            Some(Ok(p)) if grant.status == DISABLED => Some(p),
            Some(Err(e)) if grant.status == DISABLED && e.retry() == crate::Retry::Retryable => {
                retry.get_or_insert_with(|| ErrorReport::from(e));
                continue;
            }
            _ => None,
        };
        match after_look(grant, parent) {
            None => {
                return Verdict::Run(
                    format!(
                        "{arn} {}{}",
                        grant.status,
                        parent
                            .map_or_else(String::new, |p| format!(" under {} {}", p.arn, p.status))
                    ),
                    lane_of(&grant.status),
                )
            }
            Some(why) => {
                skip.get_or_insert(why);
            }
        }
    }
    match (retry, read, skip) {
        (Some(e), _, _) => Verdict::Retry(e),
        (None, true, _) => Verdict::Read,
        (None, false, why) => Verdict::Skip(why.unwrap_or_else(|| "no grant to look at".into())),
    }
}

/// `GetGrant` for each of `arns`, at once, each paced by the container's limiter (a batch's
/// looks come in bursts), into `views`.
async fn read_all<'a>(
    engine: &Engine,
    arns: impl IntoIterator<Item = &'a str>,
    views: &mut HashMap<String, Result<GrantView, Error>>,
    calls: &CallLog,
) {
    let lm = &engine.clients().license_manager;
    let arns: Vec<&str> = arns.into_iter().collect();
    let reads = futures::future::join_all(arns.iter().map(|arn| async move {
        engine.limiter().acquire("GetGrant").await;
        aws::get_grant(lm, arn, calls).await
    }))
    .await;
    for (arn, read) in arns.into_iter().zip(reads) {
        views.insert(arn.to_string(), read);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    const A: &str = "210987654321";
    const B: &str = "310987654321";
    const G1: &str = "arn:aws:license-manager::123456789012:grant:g-1";
    const G2: &str = "arn:aws:license-manager::123456789012:grant:g-2";
    const PARENT: &str = "arn:aws:license-manager::123456789012:grant:g-org";
    const QUEUE: &str = "https://sqs.us-east-1.amazonaws.com/123456789012/ct-change-events";
    const QUEUE_ARN: &str = "arn:aws:sqs:us-east-1:123456789012:ct-change-events";

    fn hint(account: &str, grant: Option<&str>, status: Option<&str>) -> GrantHint {
        GrantHint {
            account: AccountId::parse(account).unwrap(),
            grant: grant.map(str::to_string),
            status: status.map(str::to_string),
            seen: None,
        }
    }

    fn step(hints: &[GrantHint]) -> Step {
        plan(&hints.iter().collect::<Vec<_>>())
    }

    /// One account's hints in a batch → its step: the table of [`plan`].
    #[test]
    fn an_accounts_step_comes_from_all_its_hints_in_the_batch() {
        let look = |arns: &[&str]| Step::Look(arns.iter().map(|a| a.to_string()).collect());
        let run = |arn: &str, status: &str| Step::Run(format!("{arn} {status}"), lane_of(status));
        let nothing = |s: &str| Step::Nothing(format!("its grant is {s}"));
        let cases: Vec<(&str, Vec<GrantHint>, Step)> = vec![
            (
                "completion",
                vec![hint(A, Some(G1), Some("PENDING_ACCEPT"))],
                run(G1, "PENDING_ACCEPT"),
            ),
            (
                "failed workflow",
                vec![hint(A, Some(G1), Some("FAILED_WORKFLOW"))],
                run(G1, "FAILED_WORKFLOW"),
            ),
            (
                "active",
                vec![hint(A, Some(G1), Some("ACTIVE"))],
                nothing("ACTIVE"),
            ),
            (
                "created, then completed in the same batch",
                vec![
                    hint(A, Some(G1), Some("PENDING_WORKFLOW")),
                    hint(A, Some(G1), Some("PENDING_ACCEPT")),
                ],
                run(G1, "PENDING_ACCEPT"),
            ),
            (
                "completed and accepted in the same batch: the grant decides",
                vec![
                    hint(A, Some(G1), Some("PENDING_ACCEPT")),
                    hint(A, Some(G1), Some("DISABLED")),
                ],
                look(&[G1]),
            ),
            (
                "activated and completed (order unknown): the grant decides",
                vec![
                    hint(A, Some(G1), Some("ACTIVE")),
                    hint(A, Some(G1), Some("DISABLED")),
                ],
                look(&[G1]),
            ),
            (
                "two DISABLED events of one grant: one look",
                vec![
                    hint(A, Some(G1), Some("DISABLED")),
                    hint(A, Some(G1), Some("DISABLED")),
                ],
                look(&[G1]),
            ),
            (
                "a grant to run beside one to look at: run, no look",
                vec![
                    hint(A, Some(G1), Some("DISABLED")),
                    hint(A, Some(G2), Some("PENDING_ACCEPT")),
                ],
                run(G2, "PENDING_ACCEPT"),
            ),
            (
                "a failed grant beside a completed one: the completion's lane",
                vec![
                    hint(A, Some(G1), Some("FAILED_WORKFLOW")),
                    hint(A, Some(G2), Some("PENDING_ACCEPT")),
                ],
                run(G2, "PENDING_ACCEPT"),
            ),
            (
                "two grants to look at",
                vec![hint(A, Some(G2), None), hint(A, Some(G1), Some("DISABLED"))],
                look(&[G1, G2]),
            ),
            (
                "a deleted grant: the listings",
                vec![
                    hint(A, Some(G1), Some("DELETED")),
                    hint(A, Some(G2), Some("DISABLED")),
                ],
                Step::Read,
            ),
            ("no grant named", vec![hint(A, None, None)], Step::Read),
            (
                "waiting on License Manager",
                vec![
                    hint(A, Some(G1), Some("PENDING_WORKFLOW")),
                    hint(A, Some(G2), Some("PENDING_DELETE")),
                ],
                nothing("PENDING_WORKFLOW"),
            ),
        ];
        for (name, hints, want) in cases {
            assert_eq!(step(&hints), want, "{name}");
        }
        // A grant read already (named by ARN alone): what it showed decides, as a look.
        let mut seen = hint(A, Some(G1), Some("PENDING_ACCEPT"));
        seen.seen = Some(view(G1, "PENDING_ACCEPT", ""));
        assert_eq!(step(&[seen]), look(&[G1]));
    }

    /// A run to accept or activate is done within seconds; one that creates a grant (a
    /// failed or vanished one) is the backfill's kind of work.
    #[test]
    fn a_run_that_creates_a_grant_goes_to_the_backfill_lane() {
        for (status, lane) in [
            ("PENDING_ACCEPT", Lane::Now),
            ("DISABLED", Lane::Now),
            ("FAILED_WORKFLOW", Lane::Backfill),
            ("DELETED", Lane::Backfill),
            ("REJECTED", Lane::Backfill),
        ] {
            assert_eq!(lane_of(status), lane, "{status}");
        }
        assert_eq!(
            step(&[hint(A, Some(G1), Some("FAILED_WORKFLOW"))]),
            Step::Run(format!("{G1} FAILED_WORKFLOW"), Lane::Backfill)
        );
    }

    fn view(arn: &str, status: &str, parent: &str) -> GrantView {
        GrantView {
            arn: arn.into(),
            name: "ct-entitlements".into(),
            license_arn: "arn:aws:license-manager::294406891311:license:l-1".into(),
            status: status.into(),
            version: "1".into(),
            parent_arn: parent.into(),
            grantee: format!("arn:aws:iam::{A}:root"),
            status_reason: None,
            activation_behavior: None,
        }
    }

    /// The grants an account's looks read → its verdict: the table of [`after_looks`].
    #[test]
    fn looks_decide_from_the_grant_and_its_parent() {
        let throttled = || Error::Aws {
            service: "license-manager",
            operation: "GetGrant",
            code: "RateLimitExceededException".into(),
            message: "slow down".into(),
            retry: crate::Retry::Retryable,
        };
        let gone = || Error::Aws {
            service: "license-manager",
            operation: "GetGrant",
            code: "ResourceNotFoundException".into(),
            message: "no such grant".into(),
            retry: crate::Retry::Permanent,
        };
        let mut bulk = view(PARENT, "WORKFLOW_COMPLETED", "");
        bulk.grantee = "arn:aws:organizations::123456789012:organization/o-1".into();
        bulk.activation_behavior = Some("ALL_GRANTS_PERMITTED_BY_ISSUER".into());
        let mut ours = view(G2, "DISABLED", "");
        ours.status_reason = Some(crate::decide::ACTIVATION_STATUS_REASON.into());
        type Views = Vec<(&'static str, Result<GrantView, Error>)>;
        let cases: Vec<(&str, Views, &str)> = vec![
            (
                "disabled, no parent: activate",
                vec![(G1, Ok(view(G1, "DISABLED", "")))],
                "run",
            ),
            (
                "disabled under a bulk activation",
                vec![
                    (G1, Ok(view(G1, "DISABLED", PARENT))),
                    (PARENT, Ok(bulk.clone())),
                ],
                "skip",
            ),
            (
                "our activation proceeds",
                vec![(G2, Ok(ours.clone()))],
                "skip",
            ),
            ("active", vec![(G1, Ok(view(G1, "ACTIVE", "")))], "skip"),
            ("deleted", vec![(G1, Ok(view(G1, "DELETED", "")))], "read"),
            ("unreadable", vec![(G1, Err(gone()))], "read"),
            ("throttled", vec![(G1, Err(throttled()))], "retry"),
            (
                "the parent throttled",
                vec![
                    (G1, Ok(view(G1, "DISABLED", PARENT))),
                    (PARENT, Err(throttled())),
                ],
                "retry",
            ),
            (
                "one to run beside one throttled: run",
                vec![
                    (G1, Err(throttled())),
                    (G2, Ok(view(G2, "PENDING_ACCEPT", ""))),
                ],
                "run",
            ),
        ];
        for (name, views, want) in cases {
            let arns: Vec<String> = views
                .iter()
                .map(|(a, _)| a.to_string())
                .filter(|a| a != PARENT)
                .collect();
            let views: HashMap<String, Result<GrantView, Error>> =
                views.into_iter().map(|(a, v)| (a.to_string(), v)).collect();
            let got = match after_looks(&arns, &views) {
                Verdict::Run(..) => "run",
                Verdict::Skip(_) => "skip",
                Verdict::Read => "read",
                Verdict::Retry(_) => "retry",
            };
            assert_eq!(got, want, "{name}");
        }
    }

    fn config() -> ReconcileConfig {
        ReconcileConfig::from_lookup(|k| match k {
            "ONBOARDING_QUEUE_URL" => Some("https://sqs.us-east-1.amazonaws.com/1/q".into()),
            "CHANGE_EVENT_QUEUE_URL" => Some(QUEUE.into()),
            _ => None,
        })
        .unwrap()
    }

    fn record(id: &str, body: &Value) -> Value {
        json!({"messageId": id, "eventSource": "aws:sqs", "eventSourceARN": QUEUE_ARN,
               "body": body.to_string()})
    }

    fn grant_change(detail: Value) -> Value {
        json!({"version": "0", "source": "aws.license-manager", "detail-type": "Grant Change",
               "account": "123456789012", "resources": [], "detail": detail})
    }

    #[test]
    fn a_batch_is_parsed_record_by_record_and_a_stranger_is_refused_alone() {
        let payload = json!({"Records": [
            record("m1", &grant_change(json!({"grantArn": G1, "status": "PENDING_ACCEPT",
                                               "granteePrincipal": format!("arn:aws:iam::{B}:root")}))),
            record("m2", &grant_change(json!({"grantArn": G2}))),
            record("m3", &json!({"source": "aws.organizations", "detail-type": "AWS API Call via CloudTrail",
                                  "detail": {"eventName": "CloseAccount"}})),
            record("m4", &json!({"source": "aws.license-manager", "detail-type": "License Change", "detail": {}})),
            {"messageId": "m5", "eventSource": "aws:sqs", "eventSourceARN": QUEUE_ARN, "body": "not json"},
        ]});
        let batch = parse_batch(&payload, &config())
            .expect("from the queue")
            .unwrap();
        assert_eq!(batch.ids, ["m1", "m2", "m3", "m4", "m5"]);
        assert_eq!(
            batch.items,
            vec![
                (
                    0,
                    Item::Hint(Box::new(hint(B, Some(G1), Some("PENDING_ACCEPT"))))
                ),
                (1, Item::Grants(vec![G2.into()])),
                (
                    3,
                    Item::Coalesce("aws.license-manager License Change".into())
                ),
            ]
        );
        let refused: Vec<usize> = batch.rejected.iter().map(|(i, _)| *i).collect();
        assert_eq!(refused, [2, 4], "{:?}", batch.rejected);
        assert!(
            batch.rejected[0].1.contains("aws.organizations"),
            "{:?}",
            batch.rejected
        );
    }

    #[test]
    fn a_batch_from_elsewhere_is_not_ours_and_a_mixed_one_is_refused_whole() {
        let body = grant_change(json!({}));
        // Another queue (the coalescing one), or no change-event queue configured: not a batch
        // of change events (the reconciler's other parsers decide).
        let other = json!({"Records": [{"messageId": "m1", "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:ct-reconcile.fifo", "body": "{}"}]});
        assert!(parse_batch(&other, &config()).is_none());
        let ours = json!({"Records": [record("m1", &body)]});
        let unset = ReconcileConfig {
            change_queue_url: None,
            ..config()
        };
        assert!(parse_batch(&ours, &unset).is_none());
        for (name, payload) in [
            (
                "a record of another queue after one of ours",
                json!({"Records": [record("m1", &body),
                {"messageId": "m2", "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:1:x", "body": "{}"}]}),
            ),
            (
                "no message id",
                json!({"Records": [{"eventSource": "aws:sqs", "eventSourceARN": QUEUE_ARN, "body": "{}"}]}),
            ),
            (
                "not SQS",
                json!({"Records": [{"messageId": "m1", "eventSource": "aws:sns", "eventSourceARN": QUEUE_ARN}]}),
            ),
            (
                "a field beside Records",
                json!({"Records": [record("m1", &body)], "extra": 1}),
            ),
        ] {
            let err = parse_batch(&payload, &config())
                .expect(name)
                .expect_err(name);
            assert_eq!(err.kind(), "InvalidInput", "{name}: {err}");
        }
    }
}
