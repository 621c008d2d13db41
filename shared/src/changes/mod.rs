//! License Manager's change events a batch at a time. The `LicenseManagerChangesRule` puts
//! each event on the change-event queue (`CHANGE_EVENT_QUEUE_URL`); the reconciler takes them
//! in SQS batches, so that a burst of events (a backfill makes several per grant) costs one
//! look per grant and at most one run per account per batch, where one invocation per event
//! read the same parent grant and the same account again and again.
//!
//! The order: parse every record (a record that is not a License Manager change event is
//! refused, alone); resolve the grants events name by ARN alone (one `GetGrant` per distinct
//! grant); decide each account from its hints ([`plan`], pure); read the accounts' chains and
//! set aside, without a call, those whose chain makes the step moot ([`set_aside`]); look at
//! the grants the plan asks for (one `GetGrant` per distinct grant, then per distinct parent);
//! read the accounts whose grants went away ([`crate::reconcile::settled`]); queue the accounts
//! to run, once each, on the onboarding queue. Each account is queued as soon as what decides
//! it is known, never behind another account's look or listings (which a throttled License
//! Manager can hold for seconds): first the accounts whose hints decide without a call (a
//! workflow completed: `PENDING_ACCEPT`), then each looked-at account when its own grants and
//! their parents are read ([`still_to_read`]), then the listings. A throttle fails only the records it touched:
//! SQS delivers them again; the rest of the batch is done.

mod gate;
mod plan;
mod triage;

pub use crate::inbound::change::ChangeBatch;
pub(crate) use crate::inbound::Item;
pub(crate) use plan::after_looks;
pub(crate) use plan::Lane;
pub(crate) use plan::Step;
pub(crate) use plan::{plan, set_aside, still_to_read, Verdict};
pub use triage::run;

/// How soon a record to deliver again (a throttled look, a failed send) comes back the first
/// time: its visibility is set to this many seconds (`ChangeMessageVisibility`) instead of the
/// queue's visibility timeout (1,800 s, which a batch's longest run needs), so a completion's
/// run waits seconds, not half an hour. Each later delivery waits twice as long
/// ([`retry_after`]), up to [`RETRY_AFTER_MAX_SECONDS`]: under a sustained throttle the records
/// back off instead of coming back every few seconds to be throttled again.
pub(crate) const RETRY_AFTER_SECONDS: i32 = 10;

/// The longest wait before a record is delivered again ([`retry_after`]). With the queue's
/// `maxReceiveCount` of 10, a record keeps being retried for about 25 minutes before it goes
/// to the dead-letter queue.
pub(crate) const RETRY_AFTER_MAX_SECONDS: i32 = 300;

/// The visibility, in seconds, for a record delivered `receive_count` times so far (1 on its
/// first delivery): [`RETRY_AFTER_SECONDS`] doubled per delivery, at most
/// [`RETRY_AFTER_MAX_SECONDS`]. Pure.
pub(crate) fn retry_after(receive_count: u32) -> i32 {
    let doublings = receive_count.saturating_sub(1).min(16);
    RETRY_AFTER_SECONDS
        .saturating_mul(1 << doublings)
        .min(RETRY_AFTER_MAX_SECONDS)
}

/// `Some` when `payload` is an SQS batch from the change-event queue `CHANGE_EVENT_QUEUE_URL`
/// names, parsed before any AWS call ([`crate::inbound::change`]).
pub fn parse_batch(
    payload: &serde_json::Value,
    config: &crate::reconcile::ReconcileConfig,
) -> Option<Result<ChangeBatch, crate::error::Error>> {
    crate::inbound::parse_batch(payload, config.change_queue_url.as_deref())
}

#[cfg(test)]
mod tests;
