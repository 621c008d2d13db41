//! The effects of a batch's triage: the reads its plan asks for, the coalescing request, the
//! runs queued, and the records to deliver again.

use super::{
    after_looks, gate, plan, retry_after, set_aside, still_to_read, ChangeBatch, Item, Lane, Step,
    Verdict,
};
use crate::aws::{self, GrantView};
use crate::engine::Engine;
use crate::error::Error;
use crate::ids::{account_of_root_principal, AccountId};
use crate::reconcile::{GrantHint, ReconcileConfig, ReconcileReport, COALESCED_BODY};
use crate::report::{CallLog, ErrorReport};
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Instant;

/// Works one batch: see the module's doc. The report says what each account got; its
/// `retried` and `rejected` are the records to answer as batch item failures.
pub async fn run(
    engine: &Engine,
    config: &ReconcileConfig,
    batch: &ChangeBatch,
    dry_run: bool,
) -> ReconcileReport {
    let started = Instant::now();
    let calls = CallLog::default();
    let mut t = Triage {
        engine,
        calls: &calls,
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
    let chains = t.chains(&steps).await;
    let steps = t.aside(steps, chains.as_ref());
    // Each account goes out as soon as what decides it is known, never after another
    // account's throttled look or listings: first those whose hints decide without a call (a
    // completed workflow), then each looked-at account as its grants are read, then the
    // listings of those whose grants went away.
    let (ready, rest): (Vec<_>, Vec<_>) = steps
        .into_iter()
        .partition(|(_, step, _)| matches!(step, Step::Run(..)));
    let runs = t.verdicts(&ready).await;
    t.queue(config, runs, chains.as_ref(), dry_run).await;
    let (mut looks, mut others) = (Vec::new(), Vec::new());
    for (account, step, records) in rest {
        match step {
            Step::Look(arns) => looks.push((account, arns, records)),
            step => others.push((account, step, records)),
        }
    }
    let gone = t
        .look_and_queue(config, &hints, looks, chains.as_ref(), dry_run)
        .await;
    others.extend(gone);
    let runs = t.verdicts(&others).await;
    t.queue(config, runs, chains.as_ref(), dry_run).await;
    t.soon(config, batch, dry_run).await;
    let mut report = t.report;
    report.retried = t.failed.iter().map(|i| batch.ids[*i].clone()).collect();
    report.accounts_listed = accounts.len();
    report.api_calls = calls.snapshot().own;
    report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    report
}

/// One batch's triage under way: what it called, reported and must answer as failed.
struct Triage<'a> {
    engine: &'a Engine,
    calls: &'a CallLog,
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
        read_all(self.engine, by_arn.keys().copied(), &mut views, self.calls).await;
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

    /// The chains of the accounts whose steps could start a run ([`gate::read_chains`]).
    async fn chains(&self, steps: &[(&AccountId, Step, &[usize])]) -> Option<gate::Chains> {
        let accounts: Vec<&str> = steps
            .iter()
            .filter(|(_, step, _)| !matches!(step, Step::Nothing(_)))
            .map(|(account, _, _)| account.as_str())
            .collect();
        gate::read_chains(self.engine, &accounts, self.calls).await
    }

    /// The steps without the accounts whose chain makes them moot ([`set_aside`]), which are
    /// reported skipped: they cost no look and no listing (at 1,000 accounts, a backfill's
    /// events named about as many accounts whose run was queued already as accounts to run).
    fn aside<'s>(
        &mut self,
        steps: Vec<(&'s AccountId, Step, &'s [usize])>,
        chains: Option<&gate::Chains>,
    ) -> Vec<(&'s AccountId, Step, &'s [usize])> {
        let now_secs = self.engine.unix_now();
        steps
            .into_iter()
            .filter(|(account, step, _)| {
                let why = gate::gate_of(chains, account.as_str(), now_secs)
                    .and_then(|gate| set_aside(&gate, step));
                if let Some(why) = why {
                    self.report.skipped.insert(
                        account.to_string(),
                        format!("Grant Change event: {why}; no run"),
                    );
                }
                why.is_none()
            })
            .collect()
    }

    /// The records to deliver again, made visible again in seconds ([`retry_after`]). Best
    /// effort: where it fails (or a record has no receipt handle) the queue's visibility
    /// timeout brings the record back, later.
    async fn soon(&mut self, config: &ReconcileConfig, batch: &ChangeBatch, dry_run: bool) {
        let (Some(url), false) = (&config.change_queue_url, dry_run) else {
            return;
        };
        let entries: Vec<(String, String, i32)> = self
            .failed
            .iter()
            .filter_map(|i| {
                let handle = batch.handles.get(*i)?.clone()?;
                let receives = batch.receives.get(*i).copied().unwrap_or(1);
                Some((batch.ids[*i].clone(), handle, retry_after(receives)))
            })
            .collect();
        if entries.is_empty() {
            return;
        }
        let sqs = &self.engine.clients().sqs;
        if let Err(e) = aws::change_visibility(sqs, url, &entries, self.calls).await {
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
                aws::send_coalesced(sqs, url, COALESCED_BODY, self.calls).await
            }
            None => Err(Error::Config(
                "RECONCILE_QUEUE_URL: not set, so there is no queue to coalesce on".into(),
            )),
        };
        if let Err(e) = sent {
            self.fail(requests.iter().map(|(i, _)| i), ErrorReport::from(&e));
        }
    }

    /// The accounts that look at grants, each decided ([`after_looks`]) and queued as soon as
    /// its grants (and the parents of the DISABLED ones) are read ([`still_to_read`]), not
    /// when the batch's slowest look is: every grant is read once, all at once (each paced by
    /// the container's limiter), and whatever a read's answer decides is queued together.
    /// Returns the accounts whose grants went away, for their listings.
    async fn look_and_queue<'s>(
        &mut self,
        config: &ReconcileConfig,
        hints: &[(usize, GrantHint)],
        looks: Vec<(&'s AccountId, Vec<String>, &'s [usize])>,
        chains: Option<&gate::Chains>,
        dry_run: bool,
    ) -> Vec<(&'s AccountId, Step, &'s [usize])> {
        let (engine, calls) = (self.engine, self.calls);
        let mut views: HashMap<String, Result<GrantView, Error>> = HashMap::new();
        for (_, hint) in hints {
            if let (Some(arn), Some(seen)) = (&hint.grant, &hint.seen) {
                views.insert(arn.clone(), Ok(seen.clone()));
            }
        }
        let mut asked: HashSet<String> = HashSet::new();
        let mut reads = FuturesUnordered::new();
        let mut gone = Vec::new();
        let mut pending = looks;
        loop {
            let mut runs = Vec::new();
            let mut waiting = Vec::new();
            for (account, arns, records) in pending {
                let missing = still_to_read(&arns, &views);
                if missing.is_empty() {
                    let outcome = match after_looks(&arns, &views) {
                        Verdict::Read => {
                            gone.push((account, Step::Read, records));
                            continue;
                        }
                        Verdict::Run(why, lane) => Ok(Ok((why, lane))),
                        Verdict::Skip(why) => Ok(Err(why)),
                        Verdict::Retry(e) => Err(e),
                    };
                    self.settle(account, records, outcome, &mut runs);
                    continue;
                }
                for arn in missing {
                    if asked.insert(arn.clone()) {
                        reads.push(async move {
                            engine.limiter().acquire("GetGrant").await;
                            let lm = &engine.clients().license_manager;
                            let read = aws::get_grant(lm, &arn, calls).await;
                            (arn, read)
                        });
                    }
                }
                waiting.push((account, arns, records));
            }
            self.queue(config, runs, chains, dry_run).await;
            pending = waiting;
            if pending.is_empty() {
                break;
            }
            let Some((arn, read)) = reads.next().await else {
                // Nothing left to read for them (cannot happen: each waits on a read it asked
                // for): their listings decide.
                gone.extend(pending.into_iter().map(|(a, _, r)| (a, Step::Read, r)));
                break;
            };
            views.insert(arn, read);
            while let Some(Some((arn, read))) = reads.next().now_or_never() {
                views.insert(arn, read);
            }
        }
        gone
    }

    /// Reports one account's outcome: a run (kept in `runs`, to queue), nothing, or its
    /// records to deliver again.
    fn settle<'s>(
        &mut self,
        account: &'s AccountId,
        records: &'s [usize],
        outcome: Result<Result<(String, Lane), String>, ErrorReport>,
        runs: &mut Vec<(AccountId, Vec<usize>, Lane)>,
    ) {
        match outcome {
            Ok(Ok((why, lane))) => {
                self.report.needs.insert(account.to_string(), why);
                runs.push((account.clone(), records.to_vec(), lane));
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

    /// Each account's verdict for the steps decided without a look (the looks are decided as
    /// their reads answer, [`Triage::look_and_queue`]): run, nothing (reported), or its
    /// listings ([`crate::reconcile::settled`]). Returns the accounts to run.
    async fn verdicts(
        &mut self,
        steps: &[(&AccountId, Step, &[usize])],
    ) -> Vec<(AccountId, Vec<usize>, Lane)> {
        let mut runs = Vec::new();
        let mut org = None;
        for (account, step, records) in steps {
            let verdict = match step {
                Step::Run(why, lane) => Verdict::Run(why.clone(), *lane),
                Step::Nothing(why) => Verdict::Skip(why.clone()),
                // Nothing was read for it here: its listings decide, as for a grant gone.
                Step::Look(_) | Step::Read => Verdict::Read,
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
            self.settle(account, records, outcome, &mut runs);
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
                    .organization(self.calls)
                    .await
                    .map_err(|e| ErrorReport::from(&e))?,
            );
        }
        let Some(org) = org.as_ref() else {
            return Ok(None);
        };
        crate::reconcile::settled(self.engine, org, account, self.calls)
            .await
            .map_err(|e| ErrorReport::from(&e))
    }

    /// The accounts to run, once each, on the onboarding queue (never the management account
    /// or the one ct-entitlements runs in). A failed send retries their records.
    async fn queue(
        &mut self,
        config: &ReconcileConfig,
        runs: Vec<(AccountId, Vec<usize>, Lane)>,
        chains: Option<&gate::Chains>,
        dry_run: bool,
    ) {
        if runs.is_empty() {
            return;
        }
        let own = [
            self.engine
                .organization(self.calls)
                .await
                .ok()
                .map(|o| o.management_account),
            self.engine
                .config()
                .self_account_id
                .as_ref()
                .map(|a| a.to_string()),
        ];
        let mut kept = Vec::new();
        for (account, of, lane) in runs {
            if own.iter().flatten().any(|a| a == account.as_str()) {
                self.report.skipped.insert(
                    account.to_string(),
                    "an account ct-entitlements does not run".into(),
                );
                continue;
            }
            kept.push((account, of, lane));
        }
        if dry_run {
            for (account, _, lane) in kept {
                self.report.onboard.push(account.to_string());
                if lane == Lane::Backfill && config.backfill_queue_url.is_some() {
                    self.report.backfill.push(account.to_string());
                }
            }
            return;
        }
        let backfill_queue = config.backfill_queue_url.is_some();
        let messages = gate::messages(
            self.engine,
            kept,
            chains,
            backfill_queue,
            self.calls,
            &mut self.report,
        )
        .await;
        let mut lanes: BTreeMap<bool, Vec<gate::Outgoing>> = BTreeMap::new();
        for (backfill, message) in messages {
            lanes.entry(backfill).or_default().push(message);
        }
        for (backfill, sent) in lanes {
            let bodies: Vec<(String, Option<u64>)> =
                sent.iter().map(|o| (o.body.clone(), o.seq)).collect();
            let url = match (&config.backfill_queue_url, backfill) {
                (Some(url), true) => url,
                _ => &config.onboarding_queue_url,
            };
            let sqs = &self.engine.clients().sqs;
            match aws::send_batch_chained(sqs, url, &bodies, self.calls).await {
                Ok(n) => {
                    self.report.enqueued += n;
                    gate::mark_sent(self.engine, &sent, self.calls).await;
                }
                Err(e) => {
                    let records: Vec<usize> = sent
                        .iter()
                        .flat_map(|o| o.records.iter().copied())
                        .collect();
                    self.fail(records.iter(), ErrorReport::from(&e));
                }
            }
        }
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
