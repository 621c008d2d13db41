use super::*;

#[test]
fn a_grant_change_is_triaged_from_its_status_then_from_the_grant() {
    use HintAction::*;
    // (status, grant named, first step)
    for (status, named, action) in [
        (Some("PENDING_ACCEPT"), true, Run),
        (Some("FAILED_WORKFLOW"), true, Run),
        (Some("FAILED_WORKFLOW"), false, Run),
        (Some("ACTIVE"), true, Nothing),
        (Some("PENDING_WORKFLOW"), true, Nothing),
        (Some("PENDING_DELETE"), true, Nothing),
        (Some("WORKFLOW_COMPLETED"), true, Nothing),
        (Some("DISABLED"), true, Look),
        (None, true, Look),
        (Some("DISABLED"), false, Read),
        (None, false, Read),
        (Some("DELETED"), true, Read),
        (Some("REJECTED"), true, Read),
        (Some("SOMETHING_NEW"), true, Read),
    ] {
        assert_eq!(hint_action(status, named), action, "{status:?} {named}");
    }
    let grant = |status: &str, reason: Option<&str>| GrantView {
        arn: "arn:aws:license-manager::111122223333:grant:g-1".into(),
        name: "n".into(),
        license_arn: "l".into(),
        status: status.into(),
        version: "2".into(),
        parent_arn: "arn:aws:license-manager::111122223333:grant:g-org".into(),
        grantee: "arn:aws:iam::210987654321:root".into(),
        status_reason: reason.map(str::to_string),
        activation_behavior: None,
    };
    let parent = |version: &str, reason: Option<&str>| GrantView {
        grantee: "arn:aws:organizations::111122223333:organization/o-abc1234567".into(),
        version: version.into(),
        ..grant("WORKFLOW_COMPLETED", reason)
    };
    let bulk = crate::decide::BULK_ACTIVATION_STATUS_REASON;
    let ours = crate::decide::ACTIVATION_STATUS_REASON;
    // (case, grant, parent, a run now)
    for (case, g, p, run) in [
        ("to accept", grant("PENDING_ACCEPT", None), None, true),
        (
            "failed its workflow",
            grant("FAILED_WORKFLOW", None),
            None,
            true,
        ),
        ("active", grant("ACTIVE", None), None, false),
        ("in workflow", grant("PENDING_WORKFLOW", None), None, false),
        (
            "our activation proceeds",
            grant("DISABLED", Some(ours)),
            None,
            false,
        ),
        ("deactivated by hand", grant("DISABLED", None), None, true),
        (
            "child, bulk activation reaching it",
            grant("DISABLED", None),
            Some(parent("2", Some(bulk))),
            false,
        ),
        (
            "child, parent paused by an operator",
            grant("DISABLED", None),
            Some(parent("3", Some("paused"))),
            false,
        ),
        (
            "child, parent never bulk-activated",
            grant("DISABLED", None),
            Some(parent("1", None)),
            true,
        ),
    ] {
        assert_eq!(after_look(&g, p.as_ref()).is_none(), run, "{case}");
    }
}
