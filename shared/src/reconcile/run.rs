//! One reconcile's orchestration: the scope's accounts listed (or named), sorted, the ones that
//! need a run queued, and those that left offboarded.

use super::config::ReconcileConfig;
use super::departures::{confirm_departures, offboard_all};
use super::hints::triage;
use super::listings::{changed_accounts, retire_parents};
use super::report::ReconcileReport;
use crate::aws::{self, ListedAccount, OrgInfo};
use crate::engine::{Engine, OffboardMode};
use crate::error::Error;
use crate::ids::{account_of_root_principal, AccountId};
use crate::inbound::{GrantHint, OnboardRequest, Scope, COALESCED_BODY};
use crate::report::CallLog;
use std::collections::{BTreeSet, HashMap};

/// What the grants a `Grant Change` event names by ARN alone are about, read with `GetGrant`
/// as their grantor: the accounts they are granted to ([`Scope::GrantChanged`]), or, when one
/// is an organization/OU grant or cannot be read (gone, not ours), the configured scope
/// ([`Scope::Coalesced`], or at once without a coalescing queue). A throttle or an outage
/// fails the run as it is (retried).
pub(super) async fn grantees(
    engine: &Engine,
    config: &ReconcileConfig,
    arns: &[String],
    calls: &CallLog,
) -> Result<Scope, Error> {
    let lm = &engine.clients().license_manager;
    let looks = futures::future::join_all(arns.iter().map(|arn| aws::get_grant(lm, arn, calls)));
    let mut hints: Vec<GrantHint> = Vec::new();
    let mut unclear = None;
    for (arn, look) in arns.iter().zip(looks.await) {
        match look {
            Ok(grant) => match account_of_root_principal(&grant.grantee)
                .and_then(|id| AccountId::parse(id).ok())
            {
                Some(account) => hints.push(GrantHint {
                    account,
                    grant: Some(arn.clone()),
                    status: Some(grant.status.clone()),
                    seen: Some(grant),
                }),
                None => {
                    unclear = Some(format!(
                        "Grant Change of {arn}, granted to {}",
                        grant.grantee
                    ))
                }
            },
            Err(e) if e.retry() == crate::Retry::Retryable => return Err(e),
            Err(e) => unclear = Some(format!("Grant Change of {arn}, unreadable: {e}")),
        }
    }
    Ok(match unclear {
        None => Scope::GrantChanged(hints),
        Some(why) if config.coalesce_queue_url.is_some() => Scope::Coalesced(why),
        Some(_) if config.ous.is_empty() => Scope::Organization,
        Some(_) => Scope::Ous(config.ous.clone()),
    })
}

/// One reconcile's fixed inputs, shared by its steps.
struct Pass<'a> {
    engine: &'a Engine,
    config: &'a ReconcileConfig,
    dry_run: bool,
    calls: &'a CallLog,
}

/// Runs `scope`: what needs no listing is answered at once ([`Pass::answered`]); otherwise its
/// accounts are listed (or named) and sorted, an organization or OU run keeps those the
/// grantor's listings show short of a grant, they are queued, and (per OFFBOARD_MODE) the
/// accounts that left are offboarded.
pub(super) async fn run(
    engine: &Engine,
    config: &ReconcileConfig,
    scope: &Scope,
    dry_run: bool,
    calls: &CallLog,
    report: &mut ReconcileReport,
) -> Result<(), Error> {
    let pass = Pass {
        engine,
        config,
        dry_run,
        calls,
    };
    let (scope, waiting_is_done) = match scope {
        Scope::Followup(inner) => (inner.as_ref(), true),
        scope => (scope, false),
    };
    if pass.answered(scope, report).await? {
        return Ok(());
    }
    let org = engine.organization(calls).await?;
    // Accounts to offboard: confirmed departures, then (organization and OU runs) accounts
    // the listing shows suspended or closed.
    let mut departed: Vec<String> = Vec::new();
    let listed = pass.list(&org, scope, report, &mut departed).await?;
    report.accounts_listed = listed.len();
    pass.sort(&org, &listed, report, &mut departed);
    // Named accounts are always run; an organization or OU run queues only the accounts the
    // grantor's listings show short of an ACTIVE grant.
    if matches!(scope, Scope::Organization | Scope::Ous(_)) {
        pass.keep_changed(&org, scope, &listed, waiting_is_done, report)
            .await?;
    }
    pass.enqueue(scope, &listed, report).await?;
    let Some(mode) = config.offboard else {
        return Ok(());
    };
    pass.offboard(scope, &listed, departed, mode, report).await
}

impl Pass<'_> {
    /// Answers what needs no listing: an ignored event (reported), a coalesced one (asked for
    /// on the coalescing queue), departures while offboarding is off (reported skipped).
    /// `true` when `scope` was one of them.
    async fn answered(&self, scope: &Scope, report: &mut ReconcileReport) -> Result<bool, Error> {
        match scope {
            Scope::Ignored(reason) => {
                tracing::info!(reason = %reason, "change event ignored");
                report.ignored = Some(reason.clone());
            }
            Scope::Coalesced(why) => {
                report.coalesced = Some(why.clone());
                let Some(url) = &self.config.coalesce_queue_url else {
                    return Err(Error::Config(
                        "RECONCILE_QUEUE_URL: not set, so there is no queue to coalesce on".into(),
                    ));
                };
                if !self.dry_run {
                    let sqs = &self.engine.clients().sqs;
                    aws::send_coalesced(sqs, url, COALESCED_BODY, self.calls).await?;
                }
            }
            Scope::Departed(claims) if self.config.offboard.is_none() => {
                // Offboarding is off: nothing to confirm, nothing to write.
                for claim in claims {
                    report.skipped.insert(
                        claim.account.to_string(),
                        format!("{} event; OFFBOARD_MODE is off", claim.event),
                    );
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The accounts `scope` covers: listed (the organization, OUs), named, or what a change
    /// event leaves to run (grant changes a run could act on now, departures Organizations
    /// still calls ACTIVE); confirmed departures go to `departed`.
    async fn list(
        &self,
        org: &OrgInfo,
        scope: &Scope,
        report: &mut ReconcileReport,
        departed: &mut Vec<String>,
    ) -> Result<Vec<ListedAccount>, Error> {
        let (engine, calls) = (self.engine, self.calls);
        let organizations = &engine.clients().organizations;
        Ok(match scope {
            Scope::Organization => aws::list_organization(organizations, calls).await?,
            Scope::Ous(ous) => {
                let mut all = Vec::new();
                for ou in ous {
                    all.extend(aws::list_accounts_under(organizations, ou, calls).await?);
                }
                all
            }
            Scope::Accounts(ids) => named(ids),
            Scope::GrantChanged(hints) => named(&self.triaged(org, hints, report).await?),
            Scope::Departed(claims) => {
                let recheck =
                    confirm_departures(engine, org, claims, calls, report, departed).await?;
                named(&recheck)
            }
            Scope::Ignored(_) | Scope::Coalesced(_) | Scope::GrantArns(_) | Scope::Followup(_) => {
                Vec::new()
            }
        })
    }

    /// The accounts of `hints` a run could act on now ([`triage`]), each once; the others are
    /// reported skipped, with the reason.
    async fn triaged(
        &self,
        org: &OrgInfo,
        hints: &[GrantHint],
        report: &mut ReconcileReport,
    ) -> Result<Vec<AccountId>, Error> {
        let mut run: Vec<AccountId> = Vec::new();
        for hint in hints {
            if run.contains(&hint.account) {
                continue;
            }
            match triage(self.engine, org, hint, self.calls).await? {
                None => run.push(hint.account.clone()),
                Some(why) => {
                    report.skipped.insert(
                        hint.account.to_string(),
                        format!("Grant Change event: nothing for a run to do now ({why}); no run"),
                    );
                }
            }
        }
        Ok(run)
    }

    /// Sorts the listed accounts, each once: the management account, the account
    /// ct-entitlements runs in and accounts not ready yet are skipped; suspended or closed
    /// ones are skipped and go to `departed`; ACTIVE ones are to be onboarded.
    fn sort(
        &self,
        org: &OrgInfo,
        listed: &[ListedAccount],
        report: &mut ReconcileReport,
        departed: &mut Vec<String>,
    ) {
        let engine = self.engine;
        let mut seen = BTreeSet::new();
        for account in listed {
            if !seen.insert(account.id.clone()) {
                continue;
            }
            if account.id == org.management_account {
                report
                    .skipped
                    .insert(account.id.clone(), "management account".into());
            } else if engine.config().self_account_id.as_ref().map(|a| a.as_str())
                == Some(account.id.as_str())
            {
                report.skipped.insert(
                    account.id.clone(),
                    "the account ct-entitlements runs in".into(),
                );
            } else if !matches!(
                account.state.as_str(),
                "ACTIVE" | "SUSPENDED" | "PENDING_CLOSURE" | "CLOSED"
            ) {
                // PENDING_ACTIVATION and newer states: on its way in, never offboarded; Control
                // Tower's event or the next reconcile onboards it.
                report.skipped.insert(
                    account.id.clone(),
                    format!("state {} (not ready yet)", account.state),
                );
            } else if account.state != "ACTIVE" {
                report
                    .skipped
                    .insert(account.id.clone(), format!("state {}", account.state));
                departed.push(account.id.clone());
            } else {
                report.onboard.push(account.id.clone());
            }
        }
    }

    /// An organization or OU run's accounts to onboard, cut to those that need a run
    /// ([`changed_accounts`], each one's reason in `needs`); an organization run also takes the
    /// last step of switches back to account mode ([`retire_parents`]).
    async fn keep_changed(
        &self,
        org: &OrgInfo,
        scope: &Scope,
        listed: &[ListedAccount],
        waiting_is_done: bool,
        report: &mut ReconcileReport,
    ) -> Result<(), Error> {
        let candidates: Vec<&ListedAccount> = listed
            .iter()
            .filter(|a| report.onboard.contains(&a.id))
            .collect();
        let (needs, retiring) = changed_accounts(
            self.engine,
            self.config,
            org,
            &candidates,
            waiting_is_done,
            self.calls,
            report,
        )
        .await?;
        if *scope == Scope::Organization {
            retire_parents(self.engine, &retiring, self.dry_run, self.calls, report).await;
        }
        report.onboard.retain(|id| needs.contains_key(id));
        report.needs = needs;
        Ok(())
    }

    /// Queues one onboard request per account to onboard (none in a dry run).
    async fn enqueue(
        &self,
        scope: &Scope,
        listed: &[ListedAccount],
        report: &mut ReconcileReport,
    ) -> Result<(), Error> {
        let config = self.config;
        let ou_of: HashMap<&str, &str> = listed
            .iter()
            .filter_map(|a| Some((a.id.as_str(), a.ou_id.as_deref()?)))
            .collect();

        // Organization and OU runs are backfills: their own queue, so new accounts never wait
        // behind them; accounts named on demand go to the onboarding queue.
        let backfill = matches!(scope, Scope::Organization | Scope::Ous(_))
            && config.backfill_queue_url.is_some();
        let queue_url = match (&config.backfill_queue_url, backfill) {
            (Some(url), true) => url,
            _ => &config.onboarding_queue_url,
        };
        if !self.dry_run {
            let seq = self.live_chains_aside(report).await;
            let bodies = report
                .onboard
                .iter()
                .map(|id| {
                    serde_json::to_string(&OnboardRequest {
                        account_id: id.clone(),
                        reason: Some(
                            if matches!(scope, Scope::GrantChanged(_)) {
                                crate::inbound::GRANT_CHANGE_REASON
                            } else {
                                "reconcile"
                            }
                            .into(),
                        ),
                        attempt: 0,
                        first_seen: None,
                        activations: Vec::new(),
                        ou_id: ou_of.get(id.as_str()).map(|ou| (*ou).to_string()),
                        backfill,
                    })
                    .map(|body| (body, seq))
                    .map_err(|e| Error::InvalidInput(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let sqs = &self.engine.clients().sqs;
            report.enqueued = aws::send_batch_chained(sqs, queue_url, &bodies, self.calls).await?;
            if let Some(seq) = seq {
                self.mark_queued(&report.onboard, seq).await;
            }
        }
        Ok(())
    }

    /// With `CHAIN_TABLE`: the accounts to onboard whose chain is live move to `in_flight`
    /// (their runs are on their way; queuing them again would start a second chain), and the
    /// sequence the others' messages carry. Without a table, or when it cannot be read, every
    /// account is queued (`None`: no sequence).
    async fn live_chains_aside(&self, report: &mut ReconcileReport) -> Option<u64> {
        let table = self.engine.config().chain_table.as_ref()?;
        let db = &self.engine.clients().dynamodb;
        let accounts: Vec<&str> = report.onboard.iter().map(String::as_str).collect();
        let items = crate::chain::read_or_none(db, table, &accounts, self.calls).await?;
        let now = self.engine.now();
        let now_secs = self.engine.unix_now();
        let (queue, live): (Vec<String>, Vec<String>) = std::mem::take(&mut report.onboard)
            .into_iter()
            .partition(|a| crate::chain::may_queue(items.get(a.as_str()), now_secs));
        report.onboard = queue;
        report.in_flight = live;
        Some(crate::chain::sequence(now))
    }

    /// Marks the chains of the accounts just queued (messages with sequence `seq`). Best
    /// effort: an unmarked account only lets an event through to a second run.
    async fn mark_queued(&self, accounts: &[String], seq: u64) {
        let Some(table) = self.engine.config().chain_table.as_ref() else {
            return;
        };
        let queued: Vec<(String, u64)> = accounts.iter().map(|a| (a.clone(), seq)).collect();
        let db = &self.engine.clients().dynamodb;
        let now_secs = self.engine.unix_now();
        crate::chain::mark_queued_best_effort(db, table, &queued, now_secs, self.calls).await;
    }

    /// Offboards the accounts that left (in a dry run, only reports them): `departed`, and on
    /// an organization run the accounts that hold grants of ours but are no longer members.
    async fn offboard(
        &self,
        scope: &Scope,
        listed: &[ListedAccount],
        mut departed: Vec<String>,
        mode: OffboardMode,
        report: &mut ReconcileReport,
    ) -> Result<(), Error> {
        if *scope == Scope::Organization {
            // Accounts that hold our grants but are no longer members at all.
            let lm = &self.engine.clients().license_manager;
            let grants = aws::all_distributed_grants(lm, self.calls).await?;
            let members: BTreeSet<&str> = listed.iter().map(|a| a.id.as_str()).collect();
            for grant in grants
                .iter()
                .filter(|g| !crate::engine::is_terminal(&g.status))
            {
                if let Some(id) = account_of_root_principal(&grant.grantee) {
                    if !members.contains(id) && !departed.iter().any(|d| d == id) {
                        departed.push(id.to_string());
                    }
                }
            }
        }
        report.offboard = departed.clone();
        if self.dry_run {
            return Ok(());
        }
        let ids: Vec<AccountId> = departed
            .iter()
            .filter_map(|d| AccountId::parse(d).ok())
            .collect();
        let trigger = match scope {
            Scope::Departed(_) => "event:offboard",
            _ => "reconcile:offboard",
        };
        report.offboarded = offboard_all(self.engine, &ids, mode, trigger).await;
        Ok(())
    }
}

/// Accounts named by id, as a listing would show them: ACTIVE, no name, no OU.
fn named(ids: &[AccountId]) -> Vec<ListedAccount> {
    ids.iter()
        .map(|id| ListedAccount {
            id: id.to_string(),
            name: None,
            state: "ACTIVE".into(),
            ou_id: None,
        })
        .collect()
}
