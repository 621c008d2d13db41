//! Distribution modes end to end (LICENSE_DISTRIBUTION): a license granted to the whole
//! organization, one to an OU and one per account, side by side; and a license switched from
//! account to organization mode, with no account left holding two active grants.
#![allow(clippy::unwrap_used)]

mod common;

use common::setup;
use local_world::seed::demo_spec;
use serde_json::Value;
use shared::reconcile::{self, ReconcileConfig, Scope};
use std::collections::BTreeMap;

const ANALYTICS: &str = "prod-demo-analytics";
const FIREWALL: &str = "prod-demo-firewall";
const OBSERVABILITY: &str = "prod-demo-observability";

fn reconcile_config(queue_url: &str) -> ReconcileConfig {
    common::reconcile_config(queue_url, None)
}

/// The SKU of a seeded license.
fn sku_of(s: &common::Setup, arn: &str) -> String {
    s.org
        .licenses
        .iter()
        .find(|l| l.arn == arn)
        .map(|l| l.sku.clone())
        .unwrap_or_default()
}

/// License SKU → (mode, grant source, status after, actions) from an account report.
fn by_sku(report: &Value) -> BTreeMap<String, (String, String, String, Vec<String>)> {
    report["licenses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let s = |k: &str| l[k].as_str().unwrap_or_default().to_string();
            let actions = l["actions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_string())
                .collect();
            (
                s("productSku"),
                (s("mode"), s("grantSource"), s("statusAfter"), actions),
            )
        })
        .collect()
}

#[tokio::test]
async fn organization_ou_and_account_modes_side_by_side() {
    let Some(s) = setup(demo_spec()).await else {
        return;
    };
    let workloads = s.org.ou("Workloads").unwrap().id.clone();
    let rules = format!(r#"{{"{workloads}": ["{ANALYTICS}", "{FIREWALL}", "{OBSERVABILITY}"]}}"#);
    let env = [
        ("ALL_MARKETPLACE_LICENSES", ""),
        (
            "PRODUCT_SKUS",
            "prod-demo-analytics prod-demo-observability",
        ),
        ("OU_LICENSE_RULES", rules.as_str()),
        (
            "LICENSE_DISTRIBUTION",
            "prod-demo-analytics=organization prod-demo-firewall=ou",
        ),
    ];
    let engine = s.engine(&env);
    let config = reconcile_config(&s.queue_url);
    let sku_of = |arn: &str| sku_of(&s, arn);

    // The plan: one parent grant per (license, principal), nothing per account for them.
    let plan = reconcile::reconcile(&engine, &config, Scope::Organization, true).await;
    assert!(plan.error.is_none(), "{plan:#?}");
    let planned: Vec<(String, String, String)> = plan
        .parents
        .iter()
        .map(|p| (sku_of(&p.license_arn), p.principal.clone(), p.step.clone()))
        .collect();
    assert_eq!(
        planned,
        vec![
            (
                ANALYTICS.to_string(),
                format!(
                    "arn:aws:organizations::{}:organization/{}",
                    s.org.management_account, s.org.org_id
                ),
                "CreateGrant+ActivateGrant(bulk)".to_string()
            ),
            (
                FIREWALL.to_string(),
                format!(
                    "arn:aws:organizations::{}:ou/{}/{workloads}",
                    s.org.management_account, s.org.org_id
                ),
                "CreateGrant+ActivateGrant(bulk)".to_string()
            ),
        ],
        "{plan:#?}"
    );
    assert_eq!(s.calls("CreateGrant").await, 0, "a plan creates nothing");

    let report = reconcile::reconcile(&engine, &config, Scope::Organization, false).await;
    assert!(report.error.is_none(), "{report:#?}");
    assert!(
        report
            .parents
            .iter()
            .all(|p| p.error.is_none()
                && p.actions.first().map(String::as_str) == Some("CreateGrant")),
        "{:#?}",
        report.parents
    );
    assert_eq!(s.drain_queue(&engine).await, (3, 0));
    // Another reconcile activates parents whose workflow was not done at creation (the
    // realistic profile); then every account holds what its selection says, all ACTIVE.
    reconcile::reconcile(&engine, &config, Scope::Organization, false).await;
    s.drain_queue(&engine).await;
    for account in &s.org.accounts {
        let mut held: Vec<(String, String)> = s
            .grants_in(&account.id)
            .await
            .into_iter()
            .filter(|(_, st)| st != "DELETED" && st != "REJECTED")
            .map(|(arn, st)| (sku_of(&arn), st))
            .collect();
        held.sort();
        let expected: Vec<&str> = if account.ou_id == workloads {
            vec![ANALYTICS, FIREWALL, OBSERVABILITY]
        } else {
            vec![ANALYTICS, OBSERVABILITY]
        };
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|sku| (sku.to_string(), "ACTIVE".to_string()))
            .collect();
        assert_eq!(held, expected, "{}", account.name);
    }
    // Grants made: the two parents and one per account for the account-mode license only.
    assert_eq!(s.calls("CreateGrant").await, 2 + 3);

    // Nothing changed: parents ready, no account queued, no role assumed.
    let again = reconcile::reconcile(&engine, &config, Scope::Organization, false).await;
    assert!(again.error.is_none(), "{again:#?}");
    assert_eq!(again.enqueued, 0, "{again:#?}");
    assert!(
        again
            .parents
            .iter()
            .all(|p| p.step == "none: bulk-activated" && p.actions.is_empty()),
        "{:#?}",
        again.parents
    );
    assert_eq!(again.api_calls.get("sts:AssumeRole"), None);

    // A new account in Workloads: its roles, then its grants under the parents; one grant is
    // made, for the account-mode license; the report names each license's mode.
    let mut org = s.org.clone();
    let late = local_world::seed::add_account(&s.world, &mut org, "joiner", &workloads)
        .await
        .unwrap();
    let created = s.calls("CreateGrant").await;
    let report = s
        .onboard(&engine, s.create_event(&late.id, &workloads))
        .await;
    assert_eq!(report["outcome"], "entitled", "{report:#}");
    let licenses = by_sku(&report);
    assert_eq!(licenses[ANALYTICS].0, "organization", "{report:#}");
    assert_eq!(licenses[ANALYTICS].1, "organization", "{report:#}");
    assert_eq!(licenses[FIREWALL].0, "ou", "{report:#}");
    assert_eq!(licenses[FIREWALL].1, "organization", "{report:#}");
    assert_eq!(licenses[OBSERVABILITY].0, "account", "{report:#}");
    assert_eq!(
        licenses[OBSERVABILITY].3,
        vec!["CreateGrant", "ActivateGrant"]
    );
    for sku in [ANALYTICS, FIREWALL] {
        assert!(
            !licenses[sku].3.iter().any(|a| a == "CreateGrant"),
            "{sku}: {report:#}"
        );
        assert_eq!(licenses[sku].2, "ACTIVE", "{sku}: {report:#}");
    }
    assert_eq!(s.calls("CreateGrant").await, created + 1);
}

#[tokio::test]
async fn switching_a_license_to_organization_mode_leaves_one_active_grant_per_account() {
    let Some(s) = setup(demo_spec()).await else {
        return;
    };
    let config = reconcile_config(&s.queue_url);
    let sku_of = |arn: &str| sku_of(&s, arn);
    // Account mode first: every account holds its own grant of every license.
    let before = s.engine(&[]);
    reconcile::reconcile(&before, &config, Scope::Organization, false).await;
    assert_eq!(s.drain_queue(&before).await, (3, 0));

    // The switch, planned: the parent to create, and every account's grant to replace.
    let env = [("LICENSE_DISTRIBUTION", "prod-demo-analytics=organization")];
    let after = s.engine(&env);
    let plan = reconcile::reconcile(&after, &config, Scope::Organization, true).await;
    assert_eq!(plan.parents.len(), 1, "{plan:#?}");
    assert_eq!(plan.parents[0].step, "CreateGrant+ActivateGrant(bulk)");
    assert_eq!(plan.onboard.len(), 3, "{plan:#?}");
    assert!(
        plan.needs
            .values()
            .all(|why| why.contains("a per-account grant to replace")),
        "{:?}",
        plan.needs
    );

    // The parent is created and, the license still having per-account grants of ours (a
    // migration), bulk-activated with ALL_GRANTS_PERMITTED_BY_ISSUER: each child's activation
    // replaces the account's own grant in the same step, from the grantor's side (a grantee's
    // own behavior may be ignored or refused where the grantor set one: `granteeOverride`).
    let report = reconcile::reconcile(&after, &config, Scope::Organization, false).await;
    assert!(report.error.is_none(), "{report:#?}");
    // (With the realistic emulator's workflow delay the bulk activation comes with the next
    // reconcile; whenever it comes, it carries the replacing behavior.)
    let bulk_steps = |r: &reconcile::ReconcileReport| -> Vec<String> {
        r.parents
            .iter()
            .flat_map(|p| p.actions.iter().cloned())
            .filter(|a| a.starts_with("ActivateGrant(bulk"))
            .collect()
    };
    assert_eq!(report.parents[0].actions[0], "CreateGrant", "{report:#?}");
    let mut bulk = bulk_steps(&report);
    if bulk.is_empty() {
        s.world
            .control()
            .advance_clock(std::time::Duration::from_secs(30))
            .await
            .unwrap();
        let again = reconcile::reconcile(&after, &config, Scope::Organization, false).await;
        bulk = bulk_steps(&again);
    }
    assert_eq!(
        bulk,
        vec!["ActivateGrant(bulk, ALL_GRANTS_PERMITTED_BY_ISSUER)"],
        "{report:#?}"
    );
    s.world
        .control()
        .advance_clock(std::time::Duration::from_secs(5))
        .await
        .unwrap();
    // The CLI's plan for one account now shows the migration's last step: our grant, replaced
    // by the child's activation, goes.
    let account = &s.org.accounts[0];
    let dry = s.engine(&[
        ("LICENSE_DISTRIBUTION", "prod-demo-analytics=organization"),
        ("DRY_RUN", "true"),
    ]);
    let planned = common::handle(&dry, s.create_event(&account.id, &account.ou_id)).await;
    let planned = by_sku(&planned);
    assert_eq!(planned[ANALYTICS].3, vec!["DeleteGrant"], "{planned:#?}");
    assert!(planned[FIREWALL].3.is_empty(), "{planned:#?}");

    // The queued accounts migrate: the child takes over, our grant goes.
    assert_eq!(s.drain_queue(&after).await, (3, 0));
    for account in &s.org.accounts {
        let grants = s.grants_in(&account.id).await;
        let analytics: Vec<&String> = grants
            .iter()
            .filter(|(arn, st)| sku_of(arn) == ANALYTICS && st != "DELETED" && st != "REJECTED")
            .map(|(_, st)| st)
            .collect();
        assert_eq!(analytics, vec!["ACTIVE"], "{}: {grants:?}", account.name);
        let others = grants
            .iter()
            .filter(|(arn, st)| sku_of(arn) != ANALYTICS && st == "ACTIVE")
            .count();
        assert_eq!(others, 2, "{}: {grants:?}", account.name);
    }
    // The grantor's view agrees: one live grant per account (the child under the parent).
    let live = s.live_grants().await;
    let doubled: Vec<(&(String, String), &Vec<String>)> = live
        .iter()
        .filter(|((license, grantee), statuses)| {
            sku_of(license) == ANALYTICS
                && grantee.starts_with("arn:aws:iam::")
                && statuses.len() > 1
        })
        .collect();
    assert!(doubled.is_empty(), "two live grants: {doubled:?}");

    // Done: the next reconcile queues nobody.
    let again = reconcile::reconcile(&after, &config, Scope::Organization, false).await;
    assert_eq!(again.enqueued, 0, "{again:#?}");
}

/// An operator deactivates an organization grant in bulk (`CreateGrantVersion Status=DISABLED`
/// on the parent): AWS shows the parent `WORKFLOW_COMPLETED` as after a bulk activation, so only
/// its version and `StatusReason` tell. ct-entitlements respects it: no account-level grant is
/// activated one by one, nothing is repaired over it, and the reconciler queues nobody for it.
/// (Before, each account's run waited once for "the bulk activation", then activated its grant
/// itself, undoing the operator's decision account by account.)
#[tokio::test]
async fn an_operators_bulk_deactivation_is_respected_not_undone_account_by_account() {
    let Some(mut s) = setup(demo_spec()).await else {
        return;
    };
    let config = reconcile_config(&s.queue_url);
    let env = [("LICENSE_DISTRIBUTION", "prod-demo-analytics=organization")];
    let engine = s.engine(&env);
    reconcile::reconcile(&engine, &config, Scope::Organization, false).await;
    s.drain_queue(&engine).await;
    let analytics = s.org.license(ANALYTICS).unwrap().arn.clone();
    let lm = s.world.license_manager();
    let parents = lm
        .list_distributed_grants()
        .filters(
            aws_sdk_licensemanager::types::Filter::builder()
                .name("LicenseArn")
                .values(&analytics)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let parent = parents
        .grants()
        .iter()
        .find(|g| g.grantee_principal_arn().contains(":organization/"))
        .unwrap()
        .clone();
    let active_before = |grants: &[(String, String)]| {
        grants
            .iter()
            .filter(|(l, st)| l == &analytics && st == "ACTIVE")
            .count()
    };
    for account in &s.org.accounts {
        assert_eq!(
            active_before(&s.grants_in(&account.id).await),
            1,
            "{}",
            account.name
        );
    }
    // The operator's bulk deactivation.
    lm.create_grant_version()
        .client_token("operator-pause")
        .grant_arn(parent.grant_arn())
        .source_version(parent.version())
        .status(aws_sdk_licensemanager::types::GrantStatus::Disabled)
        .status_reason("paused by the licensing team")
        .send()
        .await
        .unwrap();
    s.world
        .control()
        .advance_clock(std::time::Duration::from_secs(5))
        .await
        .unwrap();
    let versions = s.calls("CreateGrantVersion").await;
    let creates = s.calls("CreateGrant").await;
    // The reconciler: nobody to queue for it, the parent left as it is.
    let report = reconcile::reconcile(&engine, &config, Scope::Organization, false).await;
    assert!(report.error.is_none(), "{report:#?}");
    assert!(
        !report.needs.values().any(|why| why.contains(&analytics)),
        "{report:#?}"
    );
    s.drain_queue(&engine).await;
    // A member's own run (an event) and a joiner: reported, not activated.
    let member = s.org.accounts[0].clone();
    let run = s
        .onboard(&engine, s.create_event(&member.id, &member.ou_id))
        .await;
    let line = by_sku(&run);
    assert!(line[ANALYTICS].3.is_empty(), "{run:#}");
    let reason = run.to_string();
    assert!(
        reason.contains("paused by the licensing team") && reason.contains("bulk-activate"),
        "{run:#}"
    );
    let workloads = s.org.ou("Workloads").unwrap().id.clone();
    let joiner = local_world::seed::add_account(&s.world, &mut s.org, "joiner", &workloads)
        .await
        .unwrap();
    for _ in 0..3 {
        let run = s
            .onboard(&engine, s.create_event(&joiner.id, &workloads))
            .await;
        let line = by_sku(&run);
        assert!(line[ANALYTICS].3.is_empty(), "{run:#}");
        s.world
            .control()
            .advance_clock(std::time::Duration::from_secs(5))
            .await
            .unwrap();
    }
    // The joiner's per-account grants of the two account-mode licenses, activated: nothing for
    // the paused one.
    assert_eq!(s.calls("CreateGrant").await, creates + 2);
    assert_eq!(s.calls("CreateGrantVersion").await, versions + 2);
    for account in &s.org.accounts {
        assert_eq!(
            active_before(&s.grants_in(&account.id).await),
            0,
            "{}: deactivated by the operator, and left so",
            account.name
        );
    }
}
