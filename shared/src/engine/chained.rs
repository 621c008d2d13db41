//! A run as one step of its account's chain (`CHAIN_TABLE`, [`crate::chain`]): the claim
//! before any other call, and what the run leaves in the item when it ends.

use super::Engine;
use crate::aws;
use crate::chain::{self, Claim};
use crate::error::Error;
use crate::event::{OnboardRequest, Request, Work, GRANT_CHANGE_REASON};
use crate::report::{AccountReport, CallLog, Outcome};
use std::time::Duration;

/// What a run's claim on its account's chain found.
#[derive(Debug)]
pub(super) enum Claimed {
    /// No chains table (or a dry run): the run goes on.
    Off,
    /// The run is the chain's current step, under this sequence.
    Mine(u64),
    /// A later message of the chain exists: the run ends here.
    Superseded,
    /// The table could not be reached (why): the run goes on under this sequence.
    Unavailable(u64, String),
}

/// The report of a superseded message's run: skipped, nothing done but the claim.
pub(super) fn superseded(request: &Request) -> AccountReport {
    let (account, trigger, attempt, first_seen) = match request {
        Request::Work(w) => (
            Some(w.account_id.to_string()),
            super::reporting::trigger_name(&w.trigger),
            w.attempt,
            w.first_seen,
        ),
        Request::Skip { account_id, .. } => {
            (account_id.clone(), "controlTowerFailed".into(), 0, None)
        }
    };
    let mut report = AccountReport::empty(account, trigger, false);
    report.outcome = Outcome::Skipped;
    report.reason = Some(
        "superseded: a later message of this account's chain was sent (a change event brought its re-check forward, or a newer run started); nothing to do"
            .into(),
    );
    report.chain = Some("superseded".into());
    report.attempt = attempt;
    report.first_seen = first_seen;
    report
}

impl Engine {
    /// Whether runs keep the chains table: a table is configured and the run may write.
    pub(super) fn chained(&self) -> bool {
        self.config.chain_table.is_some() && !self.config.dry_run
    }

    /// Claims the chain of `request`'s account for a run of the message with sequence
    /// `chain` (a new one when the message carries none).
    pub(super) async fn claim_chain(
        &self,
        request: &Request,
        chain: Option<u64>,
        calls: &CallLog,
    ) -> Claimed {
        let (Some(table), Request::Work(work), true) =
            (&self.config.chain_table, request, self.chained())
        else {
            return Claimed::Off;
        };
        let mine = chain.unwrap_or_else(|| chain::sequence((self.now)()));
        let db = &self.clients.dynamodb;
        let account = work.account_id.as_str();
        match chain::claim(db, table, account, mine, self.unix_now(), calls).await {
            Ok(Claim::Mine) => Claimed::Mine(mine),
            Ok(Claim::Superseded) => Claimed::Superseded,
            Err(e) => {
                tracing::warn!(error = %e, account, "chains table unavailable; the run goes on without it");
                Claimed::Unavailable(mine, e.to_string())
            }
        }
    }

    /// What the run under `mine` leaves in its chain's item: `waiting` with the re-check it
    /// queued, `ended`, or, when it failed (its message comes again), released. A change that
    /// marked the chain while it ran gets its run at once: the re-check sent again now, or one
    /// more run queued.
    pub(super) async fn settle_chain(
        &self,
        work: &Work,
        mine: u64,
        calls: &CallLog,
        report: &mut AccountReport,
    ) {
        let Some(table) = &self.config.chain_table else {
            return;
        };
        let db = &self.clients.dynamodb;
        let account = work.account_id.as_str();
        let now = self.unix_now();
        if report.outcome == Outcome::Failed {
            let released = chain::release(db, table, account, mine, now, calls).await;
            report.chain = Some(match released {
                Ok(()) => "released".into(),
                Err(e) => format!("unavailable: {e}"),
            });
            return;
        }
        let result = match report.recheck_sent.clone() {
            Some((next, body)) => {
                let expires = now + self.config.recheck_delay.as_secs() + chain::WAITING_SECONDS;
                match chain::wait(db, table, account, (mine, next), &body, expires, calls).await {
                    Ok(true) => self
                        .send_now(work, &chain::early(&body), Some(next), calls)
                        .await
                        .map(|()| "forwarded"),
                    Ok(false) => Ok("waiting"),
                    Err(e) => Err(e),
                }
            }
            None => {
                let expires = now + self.config.recheck_delay.as_secs() + chain::WAITING_SECONDS;
                match chain::end(db, table, account, mine, expires, calls).await {
                    Ok(true) => self.follow(work, report, calls).await.map(|()| "followed"),
                    Ok(false) => Ok("ended"),
                    Err(e) => Err(e),
                }
            }
        };
        match result {
            Ok(what) => {
                report.chain.get_or_insert_with(|| what.into());
            }
            Err(e) => {
                tracing::warn!(error = %e, account, "chains table not updated; the chain's messages still run");
                report.chain = Some(format!("unavailable: {e}"));
            }
        }
    }

    /// Sends `body` on the chain's queue now under a new sequence, and marks the chain queued
    /// under it (conditional on `old`, the sequence the item has, when given).
    async fn send_now(
        &self,
        work: &Work,
        body: &str,
        old: Option<u64>,
        calls: &CallLog,
    ) -> Result<(), Error> {
        let (Some(table), Some(queue)) = (&self.config.chain_table, self.recheck_queue(work))
        else {
            return Ok(());
        };
        let next = chain::sequence((self.now)()).max(old.unwrap_or(0) + 1);
        aws::send_chained(
            &self.clients.sqs,
            queue,
            body,
            Duration::ZERO,
            Some(next),
            calls,
        )
        .await?;
        let expires = self.unix_now() + chain::QUEUED_SECONDS;
        let db = &self.clients.dynamodb;
        let account = work.account_id.as_str();
        match old {
            Some(old) => chain::forward(db, table, account, (old, next), expires, calls).await,
            None => {
                chain::mark_queued(db, table, &[(account.to_string(), next)], expires, calls).await
            }
        }
    }

    /// One more run of the account (a change came while this one ran and the chain ended):
    /// a `grant-change` run on the chain's queue.
    async fn follow(
        &self,
        work: &Work,
        report: &AccountReport,
        calls: &CallLog,
    ) -> Result<(), Error> {
        let body = OnboardRequest {
            account_id: work.account_id.to_string(),
            reason: Some(GRANT_CHANGE_REASON.into()),
            attempt: 0,
            first_seen: report.first_seen.or(work.first_seen),
            activations: report.activations_requested.clone(),
            ou_id: report.ou_id.clone(),
            backfill: work.backfill,
        };
        let body = serde_json::to_string(&body).map_err(|e| Error::InvalidInput(e.to_string()))?;
        self.send_now(work, &body, None, calls).await
    }
}
