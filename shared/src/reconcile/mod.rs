//! Reconcile and backfill: list the organization's accounts (or some OUs, or named accounts)
//! and put one "onboard account" message per ACTIVE account on the onboarding queue, so
//! account-lifecycle heals drift with Lambda + SQS as the fan-out. Accounts that left (suspended,
//! closed, or gone from the organization) have their per-account grants offboarded.

mod config;
pub(crate) mod departures;
mod hints;
mod index;
mod listings;
mod report;
mod run;

pub use crate::inbound::reconcile::Scope;
pub(crate) use crate::inbound::{GrantHint, COALESCED_BODY};
pub use config::ReconcileConfig;
pub(crate) use hints::{after_look, hint_action, HintAction};
pub(crate) use listings::settled;
pub use report::ReconcileReport;

use crate::engine::Engine;
use crate::error::Error;
use crate::inbound::ScopeDefaults;
use crate::report::{CallLog, ErrorReport};
use serde_json::Value;
use std::time::Instant;

/// Parses the reconciler's invocation payload into what to reconcile and whether to dry-run
/// ([`crate::inbound::reconcile`]), with `config`'s scope, dry run and coalescing queue.
pub fn parse(payload: &Value, config: &ReconcileConfig) -> Result<(Scope, bool), Error> {
    crate::inbound::reconcile::parse(
        payload,
        &ScopeDefaults {
            ous: &config.ous,
            dry_run: config.dry_run,
            coalesce_queue_url: config.coalesce_queue_url.as_deref(),
        },
    )
}

/// Runs one reconcile.
pub async fn reconcile(
    engine: &Engine,
    config: &ReconcileConfig,
    scope: Scope,
    dry_run: bool,
) -> ReconcileReport {
    let started = Instant::now();
    let calls = CallLog::default();
    fn label(scope: &Scope) -> String {
        match scope {
            Scope::Organization => "organization".into(),
            Scope::Ous(ous) => format!("ous:{}", ous.join(",")),
            Scope::Accounts(a) => format!("accounts:{}", a.len()),
            Scope::GrantChanged(a) => format!("grant-changed:{}", a.len()),
            Scope::GrantArns(a) => format!("grant-arns:{}", a.len()),
            Scope::Coalesced(_) => "coalesced".into(),
            Scope::Followup(inner) => format!("followup:{}", label(inner)),
            Scope::Departed(a) => format!("departed:{}", a.len()),
            Scope::Ignored(_) => "ignored".into(),
        }
    }
    let mut report = ReconcileReport::empty(label(&scope), dry_run);
    let resolved = match scope {
        Scope::GrantArns(arns) => run::grantees(engine, config, &arns, &calls).await,
        scope => Ok(scope),
    };
    let result = match resolved {
        Ok(scope) => {
            report.scope = label(&scope);
            // Boxed: keeps the deep listing/offboarding future out of the caller's type.
            Box::pin(run::run(
                engine,
                config,
                &scope,
                dry_run,
                &calls,
                &mut report,
            ))
            .await
        }
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        report.error = Some(ErrorReport::from(&e));
    }
    report.api_calls = calls.snapshot().own;
    report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    report
}
