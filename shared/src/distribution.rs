//! Organization and OU distribution (`LICENSE_DISTRIBUTION`): one grant per license to the
//! organization, or to each selected OU, bulk-activated, instead of one grant per account.
//! The reconciler keeps these parent grants: [`parent_step`] decides (pure, tested case by case),
//! [`ensure_parents`] executes. Accounts then only need their service-linked roles and a look
//! at the account-level grant License Manager gives them (the engine, `decide`).

use crate::aws::{self, GrantView, HeldLicense, NewGrant, OrgInfo};
use crate::config::{Config, Mode};
use crate::decide::{self, status, MAX_GRANT_GENERATIONS};
use crate::error::Error;
use crate::report::CallLog;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The next step for one (license, principal) parent grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ParentStep {
    /// No live grant to the principal: CreateGrant with the token of this generation.
    Create { generation: usize },
    /// Workflow completed, not bulk-activated yet: CreateGrantVersion Status=ACTIVE (bulk).
    Activate { grant: GrantView },
    /// The parent failed its workflow: DeleteGrant, then CreateGrant (next generation).
    Replace {
        failed: GrantView,
        generation: usize,
    },
    /// In License Manager's workflow: look again at the next run.
    Wait { grant: GrantView },
    /// Bulk-activated: its children (and later joiners') become ACTIVE by themselves.
    Ready { grant: GrantView },
    /// Too many generations failed: an operator must look.
    Fail { grant: GrantView, count: usize },
}

impl ParentStep {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            ParentStep::Create { .. } => "CreateGrant+ActivateGrant(bulk)",
            ParentStep::Activate { .. } => "ActivateGrant(bulk)",
            ParentStep::Replace { .. } => "DeleteGrant+CreateGrant+ActivateGrant(bulk)",
            ParentStep::Wait { .. } => "wait: in License Manager's workflow",
            ParentStep::Ready { .. } => "none: bulk-activated",
            ParentStep::Fail { .. } => "none: failed too often",
        }
    }
}

/// What to do about the parent grant of `license_arn` to `principal`, given every grant of the
/// license the grantor sees. Any live grant to the principal counts (one made by hand too):
/// never a second one beside it.
pub(crate) fn parent_step(license_arn: &str, principal: &str, grants: &[GrantView]) -> ParentStep {
    let to_principal: Vec<&GrantView> = grants
        .iter()
        .filter(|g| g.license_arn == license_arn && g.grantee == principal)
        .collect();
    let generation = to_principal
        .iter()
        .filter(|g| decide::is_terminal(&g.status))
        .count();
    let live = to_principal
        .iter()
        .filter(|g| !decide::is_terminal(&g.status) && g.status != status::PENDING_DELETE)
        .min_by_key(|g| match g.status.as_str() {
            status::WORKFLOW_COMPLETED | status::ACTIVE => 0,
            status::PENDING_WORKFLOW | status::PENDING_ACCEPT => 1,
            status::DISABLED => 2,
            _ => 3,
        })
        .copied();
    let Some(grant) = live else {
        return if generation >= MAX_GRANT_GENERATIONS {
            ParentStep::Fail {
                grant: to_principal[0].clone(),
                count: generation,
            }
        } else {
            ParentStep::Create { generation }
        };
    };
    let g = grant.clone();
    match grant.status.as_str() {
        status::WORKFLOW_COMPLETED | status::ACTIVE | status::DISABLED => {
            if decide::looks_bulk_activated(grant) {
                ParentStep::Ready { grant: g }
            } else {
                ParentStep::Activate { grant: g }
            }
        }
        status::FAILED_WORKFLOW if generation + 1 >= MAX_GRANT_GENERATIONS => ParentStep::Fail {
            grant: g,
            count: generation + 1,
        },
        status::FAILED_WORKFLOW => ParentStep::Replace {
            failed: g,
            generation: generation + 1,
        },
        _ => ParentStep::Wait { grant: g },
    }
}

/// The override behavior a parent is bulk-activated with. During a migration (the license still
/// has live per-account grants of ct-entitlements', named `<prefix>-<account id>`) it is
/// `ALL_GRANTS_PERMITTED_BY_ISSUER`, so that each child's activation replaces the account's older
/// grant in the same step, from the grantor's side: a grantee's own behavior may be ignored or
/// refused where the grantor set one (undocumented: `granteeOverride`). Otherwise the configured
/// `OVERRIDE_BEHAVIOR`.
pub(crate) fn bulk_behavior<'a>(
    configured: &'a str,
    license_arn: &str,
    grants: &[GrantView],
    prefix: &str,
) -> &'a str {
    let migrating = grants.iter().any(|g| {
        g.license_arn == license_arn
            && !decide::is_terminal(&g.status)
            && crate::ids::account_of_root_principal(&g.grantee)
                .is_some_and(|account| g.name == format!("{prefix}-{account}"))
    });
    if migrating {
        decide::REPLACING_BEHAVIOR
    } else {
        configured
    }
}

/// One parent grant, as the reconcile report shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentReport {
    pub license_arn: String,
    pub(crate) mode: Mode,
    pub principal: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The step decided (taken, or in a dry run planned).
    pub step: String,
    /// Write calls made.
    pub actions: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The principals a held license is granted to in its mode (none in `account` mode).
pub(crate) fn principals(config: &Config, org: &OrgInfo, license: &HeldLicense) -> Vec<String> {
    let sku = license.sku.as_deref().unwrap_or_default();
    match config.mode_of(&license.arn, sku) {
        Mode::Account => Vec::new(),
        Mode::Organization => vec![org.arn.clone()],
        Mode::Ou => config
            .ous_of(&license.arn, sku)
            .iter()
            .map(|ou| org.ou_arn(ou))
            .collect(),
    }
}

pub(crate) use crate::model::grant::parent_grant_name;

fn token(seed: &str) -> String {
    let digest = Sha256::digest(seed.as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// Executes the parent steps of every organization/OU-mode license in `held`, given the
/// grantor's listing of each license's grants (`listings`, read once by the caller); a license
/// without a listing is reported, never acted on. Returns one report per (license, principal).
pub(crate) async fn ensure_parents(
    lm: &aws_sdk_licensemanager::Client,
    config: &Config,
    org: &OrgInfo,
    held: &[HeldLicense],
    listings: &[(String, Vec<GrantView>)],
    dry_run: bool,
    calls: &CallLog,
) -> Vec<ParentReport> {
    let work: Vec<(&HeldLicense, String)> = held
        .iter()
        .flat_map(|l| principals(config, org, l).into_iter().map(move |p| (l, p)))
        .collect();
    let steps = work.into_iter().map(|(license, principal)| async move {
        let sku = license.sku.as_deref().unwrap_or_default();
        let mut report = ParentReport {
            license_arn: license.arn.clone(),
            mode: config.mode_of(&license.arn, sku),
            principal: principal.clone(),
            grant_arn: None,
            status: None,
            step: String::new(),
            actions: Vec::new(),
            error: None,
        };
        let listed = listings.iter().find(|(l, _)| *l == license.arn);
        let result = match listed {
            Some((_, grants)) => {
                run_parent(
                    lm,
                    config,
                    license,
                    &principal,
                    grants,
                    dry_run,
                    calls,
                    &mut report,
                )
                .await
            }
            None => {
                report.error = Some("its grants were not listed in this run; nothing done".into());
                Ok(())
            }
        };
        if let Err(e) = result {
            report.error = Some(e.to_string());
        }
        report
    });
    futures::future::join_all(steps).await
}

#[allow(clippy::too_many_arguments)]
async fn run_parent(
    lm: &aws_sdk_licensemanager::Client,
    config: &Config,
    license: &HeldLicense,
    principal: &str,
    grants: &[GrantView],
    dry_run: bool,
    calls: &CallLog,
    report: &mut ParentReport,
) -> Result<(), Error> {
    let step = parent_step(&license.arn, principal, grants);
    note_step(&step, report);
    if dry_run {
        return Ok(());
    }
    let behavior = bulk_behavior(
        config.override_behavior.as_str(),
        &license.arn,
        grants,
        &config.grant_name_prefix,
    );
    let create = |generation: usize| async move {
        let operations = crate::engine::grant_operations(&config.allowed_operations, license)?;
        let seed = format!("parent:{principal}:{}:{generation}", license.arn);
        let name = parent_grant_name(&config.grant_name_prefix, principal);
        aws::create_grant(
            lm,
            &NewGrant {
                client_token: &token(&seed),
                name: &name,
                license_arn: &license.arn,
                principal,
                home_region: &config.license_home_region,
                allowed_operations: &operations,
            },
            calls,
        )
        .await
    };
    match step {
        ParentStep::Create { generation } => {
            let created = create(generation).await?;
            report.actions.push("CreateGrant".into());
            activate_when_ready(lm, behavior, created, calls, report).await?;
        }
        ParentStep::Replace { failed, generation } => {
            aws::delete_grant(
                lm,
                &failed.arn,
                &failed.version,
                "ct-entitlements: replacing an organization/OU grant whose workflow failed",
                calls,
            )
            .await?;
            report.actions.push("DeleteGrant".into());
            let created = create(generation).await?;
            report.actions.push("CreateGrant".into());
            activate_when_ready(lm, behavior, created, calls, report).await?;
        }
        ParentStep::Activate { grant } => bulk(lm, behavior, &grant, calls, report).await?,
        ParentStep::Fail { grant, count } => {
            return Err(Error::GrantFailed {
                grant_arn: grant.arn,
                status: grant.status,
                reason: format!(
                    "{count} organization/OU grants failed for this license and principal (limit {MAX_GRANT_GENERATIONS}); look at why, then delete them by hand to start over"
                ),
            })
        }
        ParentStep::Wait { .. } | ParentStep::Ready { .. } => {}
    }
    Ok(())
}

/// The step, and the grant it acts on, in the report.
fn note_step(step: &ParentStep, report: &mut ParentReport) {
    report.step = step.name().to_string();
    let current = match step {
        ParentStep::Activate { grant }
        | ParentStep::Wait { grant }
        | ParentStep::Ready { grant }
        | ParentStep::Fail { grant, .. }
        | ParentStep::Replace { failed: grant, .. } => Some(grant),
        ParentStep::Create { .. } => None,
    };
    report.grant_arn = current.map(|g| g.arn.clone());
    report.status = current.map(|g| g.status.clone());
}

/// After CreateGrant: one look (no waiting) when the grant is still in its workflow, and the
/// bulk activation at once when the workflow is done; otherwise the next run activates it.
async fn activate_when_ready(
    lm: &aws_sdk_licensemanager::Client,
    behavior: &str,
    created: GrantView,
    calls: &CallLog,
    report: &mut ParentReport,
) -> Result<(), Error> {
    report.grant_arn = Some(created.arn.clone());
    report.status = Some(created.status.clone());
    let grant = if created.status == status::PENDING_WORKFLOW {
        let looked = aws::get_grant(lm, &created.arn, calls).await?;
        report.status = Some(looked.status.clone());
        looked
    } else {
        created
    };
    if grant.status == status::WORKFLOW_COMPLETED {
        bulk(lm, behavior, &grant, calls, report).await?;
    }
    Ok(())
}

async fn bulk(
    lm: &aws_sdk_licensemanager::Client,
    behavior: &str,
    grant: &GrantView,
    calls: &CallLog,
    report: &mut ParentReport,
) -> Result<(), Error> {
    let seed = format!("bulk:{}:{}", grant.arn, grant.version);
    let (s, _) = aws::bulk_activate(
        lm,
        &grant.arn,
        &grant.version,
        &token(&seed),
        behavior,
        calls,
    )
    .await?;
    report
        .actions
        .push(if behavior == decide::REPLACING_BEHAVIOR {
            format!("ActivateGrant(bulk, {behavior})")
        } else {
            "ActivateGrant(bulk)".to_string()
        });
    report.status = Some(s);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The limit of grant generations in docs/design.md ("`MAX_GRANT_GENERATIONS` (5)"), written
    /// out.
    const DOCUMENTED_GENERATIONS: usize = 5;

    const L: &str = "arn:aws:license-manager::111122223333:license:l-1";
    const ORG: &str = "arn:aws:organizations::111122223333:organization/o-abc1234567";
    const OU: &str = "arn:aws:organizations::111122223333:ou/o-abc1234567/ou-ab12-cd345678";

    fn g(arn: &str, principal: &str, status: &str, version: &str) -> GrantView {
        GrantView {
            arn: arn.into(),
            name: "ct-entitlements-organization".into(),
            license_arn: L.into(),
            status: status.into(),
            version: version.into(),
            parent_arn: L.into(),
            grantee: principal.into(),
            status_reason: None,
            activation_behavior: None,
        }
    }

    fn step(grants: &[GrantView]) -> String {
        match parent_step(L, ORG, grants) {
            ParentStep::Create { generation } => format!("Create/{generation}"),
            ParentStep::Activate { grant } => format!("Activate/{}", grant.arn),
            ParentStep::Replace { generation, .. } => format!("Replace/{generation}"),
            ParentStep::Wait { .. } => "Wait".into(),
            ParentStep::Ready { .. } => "Ready".into(),
            ParentStep::Fail { count, .. } => format!("Fail/{count}"),
        }
    }

    #[test]
    fn a_migration_is_bulk_activated_with_the_replacing_behavior() {
        const DGO: &str = "DISTRIBUTED_GRANTS_ONLY";
        let ours = |status: &str| GrantView {
            name: "ct-entitlements-210987654321".into(),
            ..g("g-ours", "arn:aws:iam::210987654321:root", status, "1")
        };
        let by_hand = GrantView {
            name: "made-by-hand".into(),
            ..ours("ACTIVE")
        };
        let parent = g("g-1", ORG, status::WORKFLOW_COMPLETED, "1");
        let cases: Vec<(Vec<GrantView>, &str)> = vec![
            (vec![parent.clone()], DGO),
            (
                vec![parent.clone(), ours("ACTIVE")],
                decide::REPLACING_BEHAVIOR,
            ),
            (
                vec![parent.clone(), ours("DISABLED")],
                decide::REPLACING_BEHAVIOR,
            ),
            (vec![parent.clone(), ours("DELETED")], DGO),
            (vec![parent.clone(), by_hand], DGO),
            (
                vec![GrantView {
                    license_arn: "arn:aws:license-manager::111122223333:license:l-2".into(),
                    ..ours("ACTIVE")
                }],
                DGO,
            ),
        ];
        for (grants, expected) in cases {
            assert_eq!(
                bulk_behavior(DGO, L, &grants, "ct-entitlements"),
                expected,
                "{grants:?}"
            );
        }
    }

    #[test]
    fn one_parent_per_principal_created_activated_replaced() {
        let bulk = GrantView {
            activation_behavior: Some("DISTRIBUTED_GRANTS_ONLY".into()),
            ..g("g-1", ORG, status::WORKFLOW_COMPLETED, "2")
        };
        let dead = |n: usize| -> Vec<GrantView> {
            (0..n)
                .map(|i| g(&format!("g-d{i}"), ORG, status::DELETED, "2"))
                .collect()
        };
        let cases: Vec<(Vec<GrantView>, &str)> = vec![
            (vec![], "Create/0"),
            // Grants to accounts or to an OU are not the organization's parent.
            (
                vec![g(
                    "g-a",
                    "arn:aws:iam::210987654321:root",
                    status::ACTIVE,
                    "1",
                )],
                "Create/0",
            ),
            (
                vec![g("g-ou", OU, status::WORKFLOW_COMPLETED, "1")],
                "Create/0",
            ),
            (vec![g("g-1", ORG, status::PENDING_WORKFLOW, "1")], "Wait"),
            (
                vec![g("g-1", ORG, status::WORKFLOW_COMPLETED, "1")],
                "Activate/g-1",
            ),
            (vec![bulk.clone()], "Ready"),
            // A new version since creation (bulk activation by hand) counts as activated.
            (
                vec![g("g-1", ORG, status::WORKFLOW_COMPLETED, "3")],
                "Ready",
            ),
            (
                vec![g("g-1", ORG, status::FAILED_WORKFLOW, "1")],
                "Replace/1",
            ),
            (vec![g("g-1", ORG, status::DELETED, "1")], "Create/1"),
            (vec![g("g-1", ORG, status::PENDING_DELETE, "1")], "Create/0"),
            // The best live one wins: never a second parent beside it.
            (
                vec![g("g-0", ORG, status::DELETED, "1"), bulk.clone()],
                "Ready",
            ),
            (dead(DOCUMENTED_GENERATIONS), "Fail/5"),
            (
                [
                    dead(DOCUMENTED_GENERATIONS - 1),
                    vec![g("g-f", ORG, status::FAILED_WORKFLOW, "1")],
                ]
                .concat(),
                "Fail/5",
            ),
        ];
        for (grants, expect) in cases {
            assert_eq!(step(&grants), expect, "{grants:?}");
        }
        // Another license's grants do not count.
        let other = GrantView {
            license_arn: "arn:aws:license-manager::111122223333:license:l-2".into(),
            ..bulk
        };
        assert_eq!(step(&[other]), "Create/0");
    }

    #[test]
    fn parent_names() {
        assert_eq!(parent_grant_name("ct", ORG), "ct-organization");
        assert_eq!(parent_grant_name("ct", OU), "ct-ou-ab12-cd345678");
    }
}
