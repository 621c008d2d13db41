//! org-bootstrap against mocked clients answering as AWS does: idempotence, the delegated
//! administrator step (moto lacks License Manager there), dry run, and a failing step that does
//! not stop the others.
#![allow(clippy::unwrap_used)]

use crate::bootstrap::{bootstrap, BootstrapClients, BootstrapOptions, BootstrapReport};
use crate::ids::AccountId;
use aws_sdk_iam::operation::create_service_linked_role::CreateServiceLinkedRoleOutput;
use aws_sdk_iam::operation::list_roles::ListRolesOutput;
use aws_sdk_licensemanager::operation::get_service_settings::GetServiceSettingsOutput;
use aws_sdk_licensemanager::operation::update_service_settings::UpdateServiceSettingsOutput;
use aws_sdk_licensemanager::types::OrganizationConfiguration;
use aws_sdk_organizations::operation::enable_aws_service_access::EnableAwsServiceAccessOutput;
use aws_sdk_organizations::operation::list_aws_service_access_for_organization::ListAwsServiceAccessForOrganizationOutput;
use aws_sdk_organizations::operation::list_delegated_administrators::ListDelegatedAdministratorsOutput;
use aws_sdk_organizations::operation::register_delegated_administrator::RegisterDelegatedAdministratorOutput;
use aws_sdk_organizations::types::{DelegatedAdministrator, EnabledServicePrincipal};
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;

const ADMIN: &str = "222222222222";

struct Mocks {
    org: Vec<Rule>,
    lm: Vec<Rule>,
    iam: Vec<Rule>,
}

fn enabled(principals: &'static [&'static str]) -> Rule {
    mock!(aws_sdk_organizations::Client::list_aws_service_access_for_organization).then_output(
        move || {
            ListAwsServiceAccessForOrganizationOutput::builder()
                .set_enabled_service_principals(Some(
                    principals
                        .iter()
                        .map(|p| {
                            EnabledServicePrincipal::builder()
                                .service_principal(*p)
                                .build()
                        })
                        .collect(),
                ))
                .build()
        },
    )
}

fn settings(integration: bool) -> Rule {
    mock!(aws_sdk_licensemanager::Client::get_service_settings).then_output(move || {
        GetServiceSettingsOutput::builder()
            .organization_configuration(
                OrganizationConfiguration::builder()
                    .enable_integration(integration)
                    .build(),
            )
            .build()
    })
}

fn roles(services: &'static [&'static str]) -> Rule {
    mock!(aws_sdk_iam::Client::list_roles).then_output(move || {
        ListRolesOutput::builder()
            .set_roles(Some(
                services
                    .iter()
                    .map(|s| {
                        aws_sdk_iam::types::Role::builder()
                            .path(format!("/aws-service-role/{s}/"))
                            .role_name("r")
                            .role_id("AROA")
                            .arn("arn:aws:iam::111111111111:role/r")
                            .create_date(aws_smithy_types::DateTime::from_secs(0))
                            .build()
                            .unwrap()
                    })
                    .collect(),
            ))
            .build()
            .unwrap()
    })
}

fn admins(ids: &'static [&'static str]) -> Rule {
    mock!(aws_sdk_organizations::Client::list_delegated_administrators).then_output(move || {
        ListDelegatedAdministratorsOutput::builder()
            .set_delegated_administrators(Some(
                ids.iter()
                    .map(|i| DelegatedAdministrator::builder().id(*i).build())
                    .collect(),
            ))
            .build()
    })
}

const ALL_TRUSTED: &[&str] = &[
    "license-manager.amazonaws.com",
    "license-manager.member-account.amazonaws.com",
    "license-management.marketplace.amazonaws.com",
];
const ALL_SLRS: &[&str] = &[
    "license-manager.amazonaws.com",
    "license-manager.master-account.amazonaws.com",
    "license-manager.member-account.amazonaws.com",
    "license-management.marketplace.amazonaws.com",
];

impl Mocks {
    fn fresh() -> Self {
        Mocks {
            org: vec![
                enabled(&[]),
                mock!(aws_sdk_organizations::Client::enable_aws_service_access)
                    .then_output(|| EnableAwsServiceAccessOutput::builder().build()),
                admins(&[]),
                mock!(aws_sdk_organizations::Client::register_delegated_administrator)
                    .match_requests(|r| {
                        r.account_id() == Some(ADMIN)
                            && r.service_principal() == Some("license-manager.amazonaws.com")
                    })
                    .then_output(|| RegisterDelegatedAdministratorOutput::builder().build()),
            ],
            lm: vec![
                settings(false),
                mock!(aws_sdk_licensemanager::Client::update_service_settings)
                    .match_requests(|r| {
                        r.organization_configuration()
                            .is_some_and(|c| c.enable_integration())
                    })
                    .then_output(|| UpdateServiceSettingsOutput::builder().build()),
            ],
            iam: vec![
                roles(&[]),
                mock!(aws_sdk_iam::Client::create_service_linked_role)
                    .then_output(|| CreateServiceLinkedRoleOutput::builder().build()),
            ],
        }
    }

    async fn run(&self, dry_run: bool) -> BootstrapReport {
        let org = mock_client!(aws_sdk_organizations, RuleMode::MatchAny, &self.org);
        let lm = mock_client!(aws_sdk_licensemanager, RuleMode::MatchAny, &self.lm);
        let iam = mock_client!(aws_sdk_iam, RuleMode::MatchAny, &self.iam);
        let clients = BootstrapClients {
            organizations: &org,
            license_manager: &lm,
            iam: &iam,
        };
        bootstrap(
            &clients,
            &BootstrapOptions {
                delegated_admin: Some(AccountId::parse(ADMIN).unwrap()),
                dry_run,
            },
        )
        .await
    }
}

fn results(report: &BootstrapReport) -> Vec<(String, String)> {
    report
        .steps
        .iter()
        .map(|s| (s.target.clone(), s.result.clone()))
        .collect()
}

#[tokio::test]
async fn fresh_organization_gets_everything() {
    let m = Mocks::fresh();
    let report = m.run(false).await;
    assert_eq!(report.changed, 9, "{report:#?}");
    assert_eq!(m.org[1].num_calls(), 3, "three EnableAWSServiceAccess");
    assert_eq!(m.lm[1].num_calls(), 1, "one UpdateServiceSettings");
    assert_eq!(
        m.iam[1].num_calls(),
        4,
        "four SLRs including the master-account role"
    );
    assert_eq!(
        m.org[3].num_calls(),
        1,
        "delegated administrator registered"
    );
    assert!(report.failed().is_none());
}

#[tokio::test]
async fn configured_organization_is_left_alone() {
    let mut m = Mocks::fresh();
    m.org[0] = enabled(ALL_TRUSTED);
    m.org[2] = admins(&[ADMIN]);
    m.lm[0] = settings(true);
    m.iam[0] = roles(ALL_SLRS);
    let report = m.run(false).await;
    assert_eq!(report.changed, 0);
    assert!(
        results(&report).iter().all(|(_, r)| r == "unchanged"),
        "{report:#?}"
    );
    assert_eq!(
        m.org[1].num_calls() + m.lm[1].num_calls() + m.iam[1].num_calls() + m.org[3].num_calls(),
        0
    );
}

#[tokio::test]
async fn dry_run_writes_nothing() {
    let m = Mocks::fresh();
    let report = m.run(true).await;
    assert_eq!(report.changed, 0);
    assert!(
        results(&report).iter().all(|(_, r)| r == "wouldChange"),
        "{report:#?}"
    );
    assert_eq!(
        m.org[1].num_calls() + m.lm[1].num_calls() + m.iam[1].num_calls() + m.org[3].num_calls(),
        0
    );
}

#[tokio::test]
async fn a_failing_step_is_reported_and_the_rest_still_run() {
    let mut m = Mocks::fresh();
    m.lm[0] =
        mock!(aws_sdk_licensemanager::Client::get_service_settings).then_http_response(|| {
            HttpResponse::new(
                StatusCode::try_from(400).unwrap(),
                SdkBody::from(
                    r#"{"__type":"AccessDeniedException","message":"User is not authorized"}"#,
                ),
            )
        });
    let report = m.run(false).await;
    let failed = report.failed().expect("a failed step");
    assert_eq!(failed.step, "organizationIntegration");
    assert_eq!(
        failed.error.as_ref().and_then(|e| e.code.as_deref()),
        Some("AccessDeniedException")
    );
    assert_eq!(m.iam[1].num_calls(), 4, "later steps still ran");
}
