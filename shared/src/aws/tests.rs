//! The adapters' listings read every page, in order, and record one call per page (the counts
//! reports carry and tests assert), against mocked SDK clients that answer page by page.
#![allow(clippy::unwrap_used)]

use crate::aws::{self, ListedAccount};
use crate::report::{CallLog, Side};
use aws_sdk_iam::operation::list_roles::ListRolesOutput;
use aws_sdk_iam::types::Role;
use aws_sdk_organizations::operation::list_accounts_for_parent::ListAccountsForParentOutput;
use aws_sdk_organizations::operation::list_organizational_units_for_parent::ListOrganizationalUnitsForParentOutput;
use aws_sdk_organizations::operation::list_tags_for_resource::ListTagsForResourceOutput;
use aws_sdk_organizations::types::{Account, AccountState, OrganizationalUnit, Tag};
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;

fn account(id: &str) -> Account {
    Account::builder()
        .id(id)
        .name(id)
        .state(AccountState::Active)
        .build()
}

fn ou(id: &str) -> OrganizationalUnit {
    OrganizationalUnit::builder().id(id).build()
}

fn listed(id: &str, ou: &str) -> ListedAccount {
    ListedAccount {
        id: id.to_string(),
        name: Some(id.to_string()),
        state: "ACTIVE".to_string(),
        ou_id: Some(ou.to_string()),
    }
}

fn own(calls: &CallLog, op: &str) -> u32 {
    calls.snapshot().own.get(op).copied().unwrap_or(0)
}

/// A page of ListAccountsForParent for `parent` asked for with `token`.
fn accounts_page(
    parent: &'static str,
    token: Option<&'static str>,
    ids: &[&str],
    next: Option<&'static str>,
) -> Rule {
    let ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    mock!(aws_sdk_organizations::Client::list_accounts_for_parent)
        .match_requests(move |r| r.parent_id() == Some(parent) && r.next_token() == token)
        .then_output(move || {
            ListAccountsForParentOutput::builder()
                .set_accounts(Some(ids.iter().map(|id| account(id)).collect()))
                .set_next_token(next.map(str::to_string))
                .build()
        })
}

/// A page of ListOrganizationalUnitsForParent for `parent` asked for with `token`.
fn ous_page(
    parent: &'static str,
    token: Option<&'static str>,
    ids: &[&str],
    next: Option<&'static str>,
) -> Rule {
    let ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    mock!(aws_sdk_organizations::Client::list_organizational_units_for_parent)
        .match_requests(move |r| r.parent_id() == Some(parent) && r.next_token() == token)
        .then_output(move || {
            ListOrganizationalUnitsForParentOutput::builder()
                .set_organizational_units(Some(ids.iter().map(|id| ou(id)).collect()))
                .set_next_token(next.map(str::to_string))
                .build()
        })
}

#[tokio::test]
async fn the_ou_tree_is_walked_page_by_page() {
    let rules = [
        accounts_page("ou-a", None, &["111111111111"], Some("a1")),
        accounts_page("ou-a", Some("a1"), &["222222222222"], None),
        ous_page("ou-a", None, &[], Some("o1")),
        ous_page("ou-a", Some("o1"), &["ou-b"], None),
        accounts_page("ou-b", None, &["333333333333"], None),
        ous_page("ou-b", None, &[], None),
    ];
    let org = mock_client!(aws_sdk_organizations, RuleMode::MatchAny, &rules);
    let calls = CallLog::default();
    let accounts = aws::list_accounts_under(&org, "ou-a", &calls)
        .await
        .unwrap();
    assert_eq!(
        accounts,
        vec![
            listed("111111111111", "ou-a"),
            listed("222222222222", "ou-a"),
            listed("333333333333", "ou-b"),
        ]
    );
    for rule in &rules {
        assert_eq!(rule.num_calls(), 1, "every page read once");
    }
    assert_eq!(own(&calls, "organizations:ListAccountsForParent"), 3);
    assert_eq!(
        own(&calls, "organizations:ListOrganizationalUnitsForParent"),
        3
    );
}

#[tokio::test]
async fn tags_are_read_from_every_page() {
    let page = |token: Option<&'static str>, key: &'static str, next: Option<&'static str>| {
        mock!(aws_sdk_organizations::Client::list_tags_for_resource)
            .match_requests(move |r| {
                r.resource_id() == Some("111111111111") && r.next_token() == token
            })
            .then_output(move || {
                ListTagsForResourceOutput::builder()
                    .tags(Tag::builder().key(key).value("v").build().unwrap())
                    .set_next_token(next.map(str::to_string))
                    .build()
            })
    };
    let rules = [page(None, "a", Some("t1")), page(Some("t1"), "b", None)];
    let org = mock_client!(aws_sdk_organizations, RuleMode::MatchAny, &rules);
    let calls = CallLog::default();
    let tags = aws::account_tags(&org, "111111111111", &calls)
        .await
        .unwrap();
    assert_eq!(
        tags,
        vec![
            ("a".to_string(), "v".to_string()),
            ("b".to_string(), "v".to_string())
        ]
    );
    assert_eq!(own(&calls, "organizations:ListTagsForResource"), 2);
}

fn roles_page(
    marker: Option<&'static str>,
    path: &'static str,
    truncated: bool,
    next: Option<&'static str>,
) -> Rule {
    mock!(aws_sdk_iam::Client::list_roles)
        .match_requests(move |r| {
            r.path_prefix() == Some("/aws-service-role/") && r.marker() == marker
        })
        .then_output(move || {
            ListRolesOutput::builder()
                .roles(
                    Role::builder()
                        .path(path)
                        .role_name("r")
                        .role_id("AROA")
                        .arn("arn:aws:iam::111111111111:role/r")
                        .create_date(aws_smithy_types::DateTime::from_secs(0))
                        .build()
                        .unwrap(),
                )
                .is_truncated(truncated)
                .set_marker(next.map(str::to_string))
                .build()
                .unwrap()
        })
}

#[tokio::test]
async fn service_roles_end_at_the_page_that_says_it_is_the_last() {
    // The second page says it is not truncated yet carries a marker: no third call.
    let rules = [
        roles_page(None, "/aws-service-role/a/", true, Some("m1")),
        roles_page(Some("m1"), "/aws-service-role/b/", false, Some("m2")),
        roles_page(Some("m2"), "/aws-service-role/c/", false, None),
    ];
    let iam = mock_client!(aws_sdk_iam, RuleMode::MatchAny, &rules);
    let calls = CallLog::default();
    let paths = aws::service_role_paths_as(&iam, Side::Own, &calls)
        .await
        .unwrap();
    assert_eq!(paths, vec!["/aws-service-role/a/", "/aws-service-role/b/"]);
    assert_eq!(rules[2].num_calls(), 0);
    assert_eq!(own(&calls, "iam:ListRoles"), 2);
}

#[tokio::test]
async fn a_failing_page_is_counted_and_ends_the_listing() {
    let denied = || {
        let body = "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>no</Message></Error><RequestId>r-1</RequestId></ErrorResponse>";
        let mut r = HttpResponse::new(StatusCode::try_from(403).unwrap(), SdkBody::from(body));
        r.headers_mut().insert("content-type", "text/xml");
        r
    };
    let rules = [
        roles_page(None, "/aws-service-role/a/", true, Some("m1")),
        mock!(aws_sdk_iam::Client::list_roles)
            .match_requests(|r| r.marker() == Some("m1"))
            .then_http_response(denied),
    ];
    let iam = mock_client!(aws_sdk_iam, RuleMode::MatchAny, &rules);
    let calls = CallLog::default();
    let err = aws::service_role_paths(&iam, &calls).await.unwrap_err();
    assert!(err.to_string().contains("AccessDenied"), "{err}");
    assert_eq!(calls.snapshot().member.get("iam:ListRoles"), Some(&2));
}
