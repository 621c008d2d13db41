//! What carries over to a later look at an account: the activations this container requested
//! (remembered in memory) and the delayed re-check message (which carries them beyond it), or
//! the workflow deadline's end of it.

use super::Engine;
use crate::aws;
use crate::decide::status;
use crate::error::Error;
use crate::inbound::{ActivationMark, OnboardRequest, Trigger, Work};
use crate::report::{AccountReport, CallLog, ErrorReport};

/// Activations remembered by one container (beyond it, re-check messages carry them).
const MAX_REMEMBERED_ACTIVATIONS: usize = 10_000;

impl Engine {
    /// The activations known for a run of `work`: those its message carries, then those this
    /// container remembers (one per grant).
    pub(super) fn known_activations(&self, work: &Work) -> Vec<ActivationMark> {
        let mut activations = work.activations.clone();
        if let Ok(recent) = self.activations.lock() {
            for mark in recent.values() {
                if !activations.iter().any(|m| m.grant_arn == mark.grant_arn) {
                    activations.push(mark.clone());
                }
            }
        }
        activations
    }

    pub(super) fn remember(&self, marks: &[ActivationMark]) {
        if marks.is_empty() {
            return;
        }
        if let Ok(mut recent) = self.activations.lock() {
            if recent.len() + marks.len() > MAX_REMEMBERED_ACTIVATIONS {
                recent.clear();
            }
            for mark in marks {
                recent.insert(mark.grant_arn.clone(), mark.clone());
            }
        }
    }

    /// When a license is still pending and `work` may queue one, a delayed re-check carrying
    /// the message's activations and this run's `marks`.
    pub(super) async fn recheck_if_pending(
        &self,
        work: &Work,
        pending: bool,
        marks: &[ActivationMark],
        calls: &CallLog,
        report: &mut AccountReport,
    ) -> Result<(), Error> {
        if pending && queues_recheck(work, self.chained()) {
            let mut carried = work.activations.clone();
            for mark in marks {
                put_mark(&mut carried, mark.clone());
            }
            self.schedule_recheck(work, &carried, calls, report).await?;
        }
        Ok(())
    }

    /// Queues a delayed re-check, or gives up past the deadline.
    async fn schedule_recheck(
        &self,
        work: &Work,
        activations: &[ActivationMark],
        calls: &CallLog,
        report: &mut AccountReport,
    ) -> Result<(), Error> {
        let now = self.unix_now();
        let first_seen = work.first_seen.unwrap_or(now);
        report.first_seen = Some(first_seen);
        let deadline = self.config.workflow_deadline.as_secs();
        if now.saturating_sub(first_seen) >= deadline {
            past_deadline(report, deadline);
            return Ok(());
        }
        let Some(queue_url) = self.recheck_queue(work) else {
            return Err(Error::Config(
                "a grant is still in workflow and ONBOARDING_QUEUE_URL is not set, so no re-check can be queued".into(),
            ));
        };
        let body = OnboardRequest {
            account_id: work.account_id.to_string(),
            reason: Some("recheck".into()),
            attempt: work.attempt + 1,
            first_seen: Some(first_seen),
            activations: activations.to_vec(),
            ou_id: report.ou_id.clone(),
            backfill: work.backfill,
        };
        let body = serde_json::to_string(&body).map_err(|e| Error::InvalidInput(e.to_string()))?;
        let seq = self.chained().then(|| crate::chain::sequence((self.now)()));
        aws::send_chained(
            &self.clients.sqs,
            queue_url,
            &body,
            self.config.recheck_delay,
            seq,
            calls,
        )
        .await?;
        report.recheck_in_seconds = Some(self.config.recheck_delay.as_secs());
        report.recheck_sent = seq.map(|s| (s, body));
        Ok(())
    }

    /// The queue a re-check of `work` goes to. Backfill work re-checks on the backfill queue
    /// (when there is one): a slow backfill never puts its re-checks in front of new accounts.
    pub(super) fn recheck_queue(&self, work: &Work) -> Option<&String> {
        if work.backfill {
            self.config
                .backfill_queue_url
                .as_ref()
                .or(self.config.onboarding_queue_url.as_ref())
        } else {
            self.config.onboarding_queue_url.as_ref()
        }
    }
}

/// Whether `work` may queue a re-check: not when its request said not to; a grant-change run
/// only when runs keep chains (`chained`): it is then its account's one chain (the change
/// event's triage started it for want of a live one), which goes on until its grants are
/// ACTIVE; without chains it would start a second re-check chain beside the account's own.
fn queues_recheck(work: &Work, chained: bool) -> bool {
    work.explicit.as_ref().is_none_or(|e| e.queue_recheck)
        && (chained
            || !matches!(&work.trigger, Trigger::Onboard(r) if r == crate::inbound::GRANT_CHANGE_REASON))
}

/// Past the workflow deadline: every license not failed already that is still waiting, or not
/// ACTIVE, fails with `WorkflowDeadline`.
fn past_deadline(report: &mut AccountReport, deadline: u64) {
    for license in report.licenses.iter_mut().filter(|l| l.error.is_none()) {
        if license.pending_reason.is_some()
            || license.status_after.as_deref() != Some(status::ACTIVE)
        {
            let err = Error::WorkflowDeadline {
                grant_arn: license.grant_arn.clone().unwrap_or_default(),
                status: license.status_after.clone().unwrap_or_default(),
                deadline_secs: deadline,
            };
            license.error = Some(ErrorReport::from(&err));
        }
    }
}

/// Adds `mark`, replacing an older one for the same grant.
pub(super) fn put_mark(marks: &mut Vec<ActivationMark>, mark: ActivationMark) {
    marks.retain(|m| m.grant_arn != mark.grant_arn);
    marks.push(mark);
}
