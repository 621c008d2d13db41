//! Accounts an Organizations event says left: claims, confirmed with Organizations before any
//! offboarding.

use super::report::ReconcileReport;
use crate::aws::{self, OrgInfo};
use crate::engine::{Engine, OffboardMode};
use crate::error::{echo, Error};
use crate::ids::AccountId;
use crate::inbound::Departure;
use crate::report::{AccountReport, CallLog};
use futures::StreamExt;

/// What Organizations says of an account now (`DescribeAccount`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Observed {
    /// Not in the organization (`AccountNotFoundException`).
    Gone,
    /// Its state: `ACTIVE`, `SUSPENDED`, `PENDING_CLOSURE`, `CLOSED`, `PENDING_ACTIVATION`, …
    State(String),
}

/// What to do about a [`Departure`], with the reason the report gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DepartureAction {
    /// Organizations confirms it: offboard (per OFFBOARD_MODE).
    Offboard(String),
    /// Still a member in use: the event is a hint to re-check the account, never to offboard.
    Recheck(String),
    /// Nothing to do.
    Ignore(String),
}

/// The part of [`decide_departure`] that needs no read: `Some(Ignore)` for an event the
/// management account did not send, or one naming the management account or the account
/// ct-entitlements runs in; `None` when Organizations must be asked.
pub(crate) fn screen_departure(
    claim: &Departure,
    management: &str,
    self_account: Option<&str>,
) -> Option<DepartureAction> {
    let account = claim.account.as_str();
    if claim.sender.as_deref() != Some(management) {
        return Some(DepartureAction::Ignore(format!(
            "{} event from account {} (not the management account): ignored",
            claim.event,
            claim
                .sender
                .as_deref()
                .map_or_else(|| "(none)".into(), echo)
        )));
    }
    if account == management {
        return Some(DepartureAction::Ignore(format!(
            "{} event names the management account: ignored",
            claim.event
        )));
    }
    if self_account == Some(account) {
        return Some(DepartureAction::Ignore(format!(
            "{} event names the account ct-entitlements runs in: ignored",
            claim.event
        )));
    }
    None
}

/// Whether an account an event says left is to be offboarded: only when the management
/// account sent the event ([`screen_departure`]) and Organizations confirms it (gone from the
/// organization, or SUSPENDED, PENDING_CLOSURE or CLOSED). An ACTIVE account is re-checked;
/// PENDING_ACTIVATION or a state this code does not know is left alone.
pub(crate) fn decide_departure(
    claim: &Departure,
    management: &str,
    self_account: Option<&str>,
    observed: &Observed,
) -> DepartureAction {
    if let Some(action) = screen_departure(claim, management, self_account) {
        return action;
    }
    let event = &claim.event;
    match observed {
        Observed::Gone => {
            DepartureAction::Offboard(format!("{event}: confirmed, not in the organization"))
        }
        Observed::State(s) if matches!(s.as_str(), "SUSPENDED" | "PENDING_CLOSURE" | "CLOSED") => {
            DepartureAction::Offboard(format!("{event}: confirmed, state {s}"))
        }
        Observed::State(s) if s == "ACTIVE" => DepartureAction::Recheck(format!(
            "{event} event, but Organizations says ACTIVE: re-checked, not offboarded"
        )),
        Observed::State(s) => DepartureAction::Ignore(format!(
            "{event} event, but Organizations says state {}: not offboarded",
            echo(s)
        )),
    }
}

/// Confirms each departure an event claims ([`decide_departure`]): what needs no read is
/// screened first, then one `DescribeAccount` per claim. Confirmed accounts go to `departed`,
/// accounts still ACTIVE are returned to be re-checked, the rest are reported skipped. An error
/// of the read fails the run as it is (a throttle stays retryable): nothing is acted on
/// unconfirmed.
pub(super) async fn confirm_departures(
    engine: &Engine,
    org: &OrgInfo,
    claims: &[Departure],
    calls: &CallLog,
    report: &mut ReconcileReport,
    departed: &mut Vec<String>,
) -> Result<Vec<AccountId>, Error> {
    let self_account = engine
        .config()
        .self_account_id
        .as_ref()
        .map(AccountId::as_str);
    let mut recheck = Vec::new();
    for claim in claims {
        let action = match screen_departure(claim, &org.management_account, self_account) {
            Some(action) => action,
            None => {
                let observed = match aws::account_state(
                    &engine.clients().organizations,
                    &claim.account,
                    calls,
                )
                .await?
                {
                    None => Observed::Gone,
                    Some(state) => Observed::State(state),
                };
                decide_departure(claim, &org.management_account, self_account, &observed)
            }
        };
        let id = claim.account.to_string();
        tracing::info!(account = %id, action = ?action, "departure event");
        match action {
            DepartureAction::Offboard(why) => {
                report.skipped.insert(id.clone(), why);
                if !departed.contains(&id) {
                    departed.push(id);
                }
            }
            DepartureAction::Recheck(why) => {
                report.needs.insert(id, why);
                recheck.push(claim.account.clone());
            }
            DepartureAction::Ignore(why) => {
                report.skipped.insert(id, why);
            }
        }
    }
    Ok(recheck)
}

/// Offboards `ids` (at most MAX_CONCURRENT_ACCOUNTS at once), one report each.
pub(super) async fn offboard_all(
    engine: &Engine,
    ids: &[AccountId],
    mode: OffboardMode,
    trigger: &str,
) -> Vec<AccountReport> {
    futures::stream::iter(ids.iter())
        .map(|id| engine.offboard(id, None, mode, trigger))
        .buffered(engine.config().max_concurrent_accounts)
        .collect()
        .await
}
