//! Organization bootstrap end to end, as the management account, against moto (Organizations,
//! IAM) and the License Manager emulator: first run sets everything up, second run changes
//! nothing, nothing is ever disabled.
#![allow(clippy::unwrap_used)]

use local_world::seed::{self, demo_spec};
use local_world::World;
use shared::bootstrap::{bootstrap, BootstrapClients, BootstrapOptions};

/// moto 5.2 lists this principal with a trailing dot and so refuses to enable it; AWS accepts
/// it. The test tolerates exactly this one refusal (see docs/development.md, The local AWS world).
const MOTO_REFUSES: &str = "license-manager.member-account.amazonaws.com";

#[tokio::test]
async fn bootstrap_sets_up_the_organization_once_and_then_changes_nothing() {
    let Some(world) = World::start_or_skip().await else {
        return;
    };
    let mut spec = demo_spec();
    spec.enable_integration = false;
    let org = seed::seed(&world, &spec).await.unwrap();
    let (organizations, license_manager, iam) =
        (world.organizations(), world.license_manager(), world.iam());
    let clients = BootstrapClients {
        organizations: &organizations,
        license_manager: &license_manager,
        iam: &iam,
    };
    // moto's delegated-administrator list lacks License Manager (AWS supports it), so that step
    // is covered by the mocked unit tests in shared/src/bootstrap/tests.rs instead.
    let _ = &org;
    let options = BootstrapOptions {
        delegated_admin: None,
        dry_run: false,
    };

    let plan = bootstrap(
        &clients,
        &BootstrapOptions {
            delegated_admin: None,
            dry_run: true,
        },
    )
    .await;
    assert_eq!(plan.changed, 0);
    assert!(
        plan.steps
            .iter()
            .filter(|s| s.error.is_none())
            .all(|s| s.result == "wouldChange" || s.result == "unchanged"),
        "{plan:#?}"
    );
    assert!(
        plan.api_calls.keys().all(|k| !k.contains("Enable")
            && !k.contains("Update")
            && !k.contains("Create")
            && !k.contains("Register")),
        "{plan:#?}"
    );

    let first = bootstrap(&clients, &options).await;
    for step in &first.steps {
        match (step.step.as_str(), step.target.as_str()) {
            ("trustedAccess", MOTO_REFUSES) => assert_eq!(step.result, "failed", "{step:?}"),
            ("trustedAccess", _) => assert_eq!(step.result, "enabled", "{step:?}"),
            ("organizationIntegration", _) => assert_eq!(step.result, "enabled", "{step:?}"),
            ("serviceLinkedRole", _) => assert_eq!(step.result, "created", "{step:?}"),
            other => panic!("unexpected step {other:?}"),
        }
    }
    assert_eq!(first.steps.len(), 3 + 1 + 4);
    for op in first.api_calls.keys() {
        assert!(
            shared::permissions::ORG_BOOTSTRAP.contains(&op.as_str()),
            "{op} not in the permissions table"
        );
    }

    // What it set up is really there.
    let settings = license_manager.get_service_settings().send().await.unwrap();
    assert!(settings
        .organization_configuration()
        .unwrap()
        .enable_integration());
    let roles = iam
        .list_roles()
        .path_prefix("/aws-service-role/")
        .send()
        .await
        .unwrap();
    let mut paths: Vec<String> = roles.roles().iter().map(|r| r.path().to_string()).collect();
    paths.sort();
    // The roles as AWS documents them (docs/deploy.md, org-bootstrap: the member ones plus
    // `AWSServiceRoleForAWSLicenseManagerMasterAccountRole`), written out rather than taken from
    // the list under test. Compared by path: moto names service-linked roles its own way.
    let expected = vec![
        // AWSServiceRoleForMarketplaceLicenseManagement
        "/aws-service-role/license-management.marketplace.amazonaws.com/".to_string(),
        // AWSServiceRoleForAWSLicenseManagerRole
        "/aws-service-role/license-manager.amazonaws.com/".to_string(),
        // AWSServiceRoleForAWSLicenseManagerMasterAccountRole
        "/aws-service-role/license-manager.master-account.amazonaws.com/".to_string(),
        // AWSServiceRoleForAWSLicenseManagerMemberAccountRole
        "/aws-service-role/license-manager.member-account.amazonaws.com/".to_string(),
    ];
    assert_eq!(
        paths, expected,
        "including the management-only master-account role"
    );

    let second = bootstrap(&clients, &options).await;
    assert_eq!(second.changed, 0, "{second:#?}");
    assert!(
        second
            .steps
            .iter()
            .all(|s| s.result == "unchanged" || s.target == MOTO_REFUSES),
        "{second:#?}"
    );
}
