use super::*;
use crate::reconcile::departures::{decide_departure, screen_departure, DepartureAction, Observed};
use crate::reconcile::{parse, ReconcileConfig};
use serde_json::json;

fn config() -> ReconcileConfig {
    ReconcileConfig::from_lookup(|k| {
        (k == "ONBOARDING_QUEUE_URL").then(|| "https://sqs.us-east-1.amazonaws.com/1/q".to_string())
    })
    .expect("valid")
}

fn cloudtrail(event_name: &str, request: Value) -> Value {
    json!({
        "version": "0", "id": "e", "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.organizations", "account": "111122223333",
        "time": "2026-11-30T00:00:00Z", "region": "us-east-1", "resources": [],
        "detail": {
            "eventVersion": "1.08", "eventSource": "organizations.amazonaws.com",
            "eventName": event_name, "awsRegion": "us-east-1",
            "requestParameters": request, "responseElements": null
        }
    })
}

const MGMT: &str = "111122223333";

fn departure(event: &str) -> Departure {
    Departure {
        account: AccountId::parse("210987654321").expect("valid id"),
        event: event.into(),
        sender: Some(MGMT.into()),
    }
}

/// A denied or failed call's CloudTrail record, as Organizations writes it.
fn denied(event_name: &str, request: Value, code: Value) -> Value {
    let mut e = cloudtrail(event_name, request);
    e["detail"]["errorCode"] = code;
    e["detail"]["errorMessage"] = json!("You don't have permissions to access this resource.");
    e
}

/// Issue 16 §2: an Organizations event is a claim; offboarding needs the call to have been
/// carried out (no `errorCode`), the management account as its sender, and Organizations'
/// own word (gone, or SUSPENDED / PENDING_CLOSURE / CLOSED). Each row: the event, what
/// DescribeAccount says, the action (`None`: ignored before any AWS call).
#[test]
fn departures_are_offboarded_only_when_organizations_confirms_them() {
    #[derive(Debug, PartialEq)]
    enum Act {
        Offboard,
        Recheck,
        Ignore,
        NoCall,
    }
    let gone = || Observed::Gone;
    let state = |s: &str| Observed::State(s.into());
    let from = |sender: Value| {
        let mut e = cloudtrail("CloseAccount", json!({"accountId": "210987654321"}));
        e["account"] = sender;
        e
    };
    let close = || cloudtrail("CloseAccount", json!({"accountId": "210987654321"}));
    let remove = || {
        cloudtrail(
            "RemoveAccountFromOrganization",
            json!({"accountId": "210987654321"}),
        )
    };
    let cases: Vec<(&str, Value, Observed, Act)> = vec![
        // Denied or failed calls: nothing, whatever the account's state.
        (
            "denied close",
            denied(
                "CloseAccount",
                json!({"accountId": "210987654321"}),
                json!("AccessDenied"),
            ),
            state("ACTIVE"),
            Act::NoCall,
        ),
        (
            "denied close of a suspended account",
            denied(
                "CloseAccount",
                json!({"accountId": "210987654321"}),
                json!("AccessDenied"),
            ),
            state("SUSPENDED"),
            Act::NoCall,
        ),
        (
            "failed removal",
            denied(
                "RemoveAccountFromOrganization",
                json!({"accountId": "210987654321"}),
                json!("ConstraintViolationException"),
            ),
            gone(),
            Act::NoCall,
        ),
        (
            "odd errorCode",
            denied(
                "CloseAccount",
                json!({"accountId": "210987654321"}),
                json!({"x": 1}),
            ),
            gone(),
            Act::NoCall,
        ),
        (
            "empty errorCode",
            denied(
                "CloseAccount",
                json!({"accountId": "210987654321"}),
                json!(""),
            ),
            gone(),
            Act::NoCall,
        ),
        // A denied move or tag changed nothing either.
        (
            "denied move",
            denied(
                "MoveAccount",
                json!({"accountId": "210987654321"}),
                json!("AccessDenied"),
            ),
            state("ACTIVE"),
            Act::NoCall,
        ),
        // Carried out: Organizations decides.
        (
            "close, closing",
            close(),
            state("PENDING_CLOSURE"),
            Act::Offboard,
        ),
        (
            "close, suspended",
            close(),
            state("SUSPENDED"),
            Act::Offboard,
        ),
        ("close, closed", close(), state("CLOSED"), Act::Offboard),
        ("close, gone", close(), gone(), Act::Offboard),
        ("removal, gone", remove(), gone(), Act::Offboard),
        (
            "removal, suspended",
            remove(),
            state("SUSPENDED"),
            Act::Offboard,
        ),
        (
            "close, still active",
            close(),
            state("ACTIVE"),
            Act::Recheck,
        ),
        (
            "removal, still active",
            remove(),
            state("ACTIVE"),
            Act::Recheck,
        ),
        (
            "close, activating",
            close(),
            state("PENDING_ACTIVATION"),
            Act::Ignore,
        ),
        (
            "close, unknown state",
            close(),
            state("SOMETHING_NEW"),
            Act::Ignore,
        ),
        ("close, no state", close(), state(""), Act::Ignore),
        // errorCode null: the call was carried out.
        (
            "null errorCode",
            denied(
                "CloseAccount",
                json!({"accountId": "210987654321"}),
                Value::Null,
            ),
            gone(),
            Act::Offboard,
        ),
        // Not sent by the management account: ignored even when the account is gone.
        (
            "another sender",
            from(json!("999999999999")),
            gone(),
            Act::Ignore,
        ),
        ("no sender", from(Value::Null), gone(), Act::Ignore),
        (
            "sender not a string",
            from(json!(111122223333_u64)),
            gone(),
            Act::Ignore,
        ),
    ];
    for (case, event, observed, expected) in cases {
        let got = match parse(&event, &config()) {
            Ok((Scope::Ignored(reason), _)) => {
                assert!(reason.contains("errorCode"), "{case}: {reason}");
                Act::NoCall
            }
            Ok((Scope::Departed(claims), _)) => {
                assert_eq!(claims.len(), 1, "{case}");
                match decide_departure(&claims[0], MGMT, None, &observed) {
                    DepartureAction::Offboard(_) => Act::Offboard,
                    DepartureAction::Recheck(_) => Act::Recheck,
                    DepartureAction::Ignore(_) => Act::Ignore,
                }
            }
            other => panic!("{case}: {other:?}"),
        };
        assert_eq!(got, expected, "{case}");
    }
    // The management account and the account ct-entitlements runs in are never offboarded.
    let mut claim = departure("CloseAccount");
    claim.account = AccountId::parse(MGMT).expect("valid id");
    assert!(matches!(
        decide_departure(&claim, MGMT, None, &Observed::Gone),
        DepartureAction::Ignore(r) if r.contains("management account")
    ));
    let claim = departure("CloseAccount");
    assert!(matches!(
        decide_departure(&claim, MGMT, Some("210987654321"), &Observed::Gone),
        DepartureAction::Ignore(r) if r.contains("runs in")
    ));
    // What needs no read is known before one.
    assert_eq!(
        screen_departure(&departure("CloseAccount"), MGMT, None),
        None
    );
    // Reasons stay bounded whatever the event carries.
    let mut huge = denied("CloseAccount", json!({}), json!("x".repeat(1 << 20)));
    huge["detail"]["eventName"] = json!("y".repeat(1 << 20));
    match parse(&huge, &config()) {
        Ok((Scope::Ignored(reason), _)) => assert!(reason.len() < 400, "{}", reason.len()),
        other => panic!("{other:?}"),
    }
    let mut claim = departure("CloseAccount");
    claim.sender = Some("z".repeat(1 << 20));
    match decide_departure(&claim, MGMT, None, &Observed::Gone) {
        DepartureAction::Ignore(reason) => assert!(reason.len() < 400, "{}", reason.len()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn change_events_name_what_changed_and_the_rest_reconciles() {
    let c = config();
    let a = || AccountId::parse("210987654321").expect("valid id");
    let cases: Vec<(Value, Scope)> = vec![
        (
            cloudtrail(
                "MoveAccount",
                json!({"accountId": "210987654321", "sourceParentId": "ou-ab12-11111111", "destinationParentId": "ou-ab12-22222222"}),
            ),
            Scope::Accounts(vec![a()]),
        ),
        (
            cloudtrail(
                "TagResource",
                json!({"resourceId": "210987654321", "tags": [{"key": "k", "value": "v"}]}),
            ),
            Scope::Accounts(vec![a()]),
        ),
        (
            cloudtrail(
                "UntagResource",
                json!({"resourceId": "210987654321", "tagKeys": ["k"]}),
            ),
            Scope::Accounts(vec![a()]),
        ),
        // A tag on an OU selects nothing.
        (
            cloudtrail("TagResource", json!({"resourceId": "ou-ab12-22222222"})),
            Scope::Accounts(vec![]),
        ),
        (
            cloudtrail(
                "RemoveAccountFromOrganization",
                json!({"accountId": "210987654321"}),
            ),
            Scope::Departed(vec![departure("RemoveAccountFromOrganization")]),
        ),
        (
            cloudtrail("CloseAccount", json!({"accountId": "210987654321"})),
            Scope::Departed(vec![departure("CloseAccount")]),
        ),
        // Not understood: the configured scope, never an error.
        (
            cloudtrail("MoveAccount", json!({"accountId": 7})),
            Scope::Organization,
        ),
        (cloudtrail("CreateAccount", json!({})), Scope::Organization),
        (
            json!({"source": "aws.license-manager", "detail-type": "Grant Change",
                   "detail": {"grant": {"granteePrincipal": "arn:aws:iam::210987654321:root"}}}),
            Scope::GrantChanged(vec![GrantHint::account(a())]),
        ),
        (
            json!({"source": "aws.license-manager", "detail-type": "Grant Change",
                   "detail": {"grant": {"granteePrincipal": "arn:aws-cn:iam::210987654321:root"}}}),
            Scope::GrantChanged(vec![GrantHint::account(a())]),
        ),
        (
            // The grantee reading: the grant (resources), its status; its parent ignored.
            json!({"source": "aws.license-manager", "detail-type": "Grant Change",
                   "resources": ["arn:aws:license-manager::111122223333:grant:g-1"],
                   "detail": {"grantArn": "arn:aws:license-manager::111122223333:grant:g-1",
                              "granteePrincipal": "arn:aws:iam::210987654321:root",
                              "status": "PENDING_ACCEPT",
                              "parentArn": "arn:aws:license-manager::111122223333:grant:g-org"}}),
            Scope::GrantChanged(vec![GrantHint {
                grant: Some("arn:aws:license-manager::111122223333:grant:g-1".into()),
                status: Some("PENDING_ACCEPT".into()),
                ..GrantHint::account(a())
            }]),
        ),
        (
            // Two statuses in the detail: neither is taken.
            json!({"source": "aws.license-manager", "detail-type": "Grant Change",
                   "detail": {"granteePrincipal": "arn:aws:iam::210987654321:root",
                              "status": "ACTIVE", "previous": "DISABLED"}}),
            Scope::GrantChanged(vec![GrantHint::account(a())]),
        ),
        (
            json!({"source": "aws.license-manager", "detail-type": "Grant Change", "detail": "?"}),
            Scope::Organization,
        ),
        (
            json!({"source": "aws.license-manager", "detail-type": "License Change", "detail": {}}),
            Scope::Organization,
        ),
        (
            json!({"source": "aws.license-manager"}),
            Scope::Organization,
        ),
    ];
    for (event, expected) in cases {
        assert_eq!(parse(&event, &c).ok(), Some((expected, false)), "{event}");
    }
    // A Grant Change naming a grant but no account: the grant is read; with a
    // coalescing queue, what names nothing waits there.
    let g = "arn:aws:license-manager::111122223333:grant:g-0abc";
    let coalescing = ReconcileConfig {
        coalesce_queue_url: Some("https://sqs.us-east-1.amazonaws.com/1/r.fifo".into()),
        ..config()
    };
    let cases = [
        (
            json!({"source": "aws.license-manager", "detail-type": "Grant Change",
                   "resources": [g], "detail": {}}),
            Scope::GrantArns(vec![g.into()]),
        ),
        (
            json!({"source": "aws.license-manager", "detail-type": "Grant Change",
                   "detail": {"grantArn": g, "again": [g, "g-not-an-arn"]}}),
            Scope::GrantArns(vec![g.into()]),
        ),
        (
            json!({"source": "aws.license-manager", "detail-type": "Grant Change", "detail": {}}),
            Scope::Coalesced("aws.license-manager Grant Change".into()),
        ),
        (
            json!({"source": "aws.license-manager", "detail-type": "License Change", "detail": {}}),
            Scope::Coalesced("aws.license-manager License Change".into()),
        ),
        (
            cloudtrail("CreateAccount", json!({})),
            Scope::Coalesced("aws.organizations AWS API Call via CloudTrail CreateAccount".into()),
        ),
    ];
    for (event, expected) in cases {
        assert_eq!(
            parse(&event, &coalescing).ok(),
            Some((expected, false)),
            "{event}"
        );
    }
    // Other sources are still held to the schedule's exact shape.
    assert!(parse(&json!({"source": "aws.s3", "detail-type": "x"}), &c).is_err());
}

#[test]
fn the_coalescing_queue_asks_for_the_configured_scope_and_nothing_else() {
    let url = "https://sqs.us-east-1.amazonaws.com/111122223333/ct-reconcile.fifo";
    let c = ReconcileConfig {
        coalesce_queue_url: Some(url.into()),
        ..config()
    };
    let record = |arn: &str, body: &str| {
        json!({"eventSource": "aws:sqs", "eventSourceARN": arn, "body": body,
               "messageId": "m-1", "receiptHandle": "r"})
    };
    let arn = "arn:aws:sqs:us-east-1:111122223333:ct-reconcile.fifo";
    let good = json!({"Records": [record(arn, COALESCED_BODY)]});
    assert_eq!(
        parse(&good, &c).ok(),
        Some((Scope::Followup(Box::new(Scope::Organization)), false))
    );
    // Without the queue configured, the same records are refused.
    assert!(matches!(
        parse(&good, &config()),
        Err(Error::InvalidInput(_))
    ));
    for (bad, part) in [
        (json!({"Records": []}), "non-empty"),
        (
            json!({"Records": [record("arn:aws:sqs:us-east-1:111122223333:other.fifo", COALESCED_BODY)]}),
            "not the coalescing queue",
        ),
        (
            json!({"Records": [record(arn, r#"{"accounts":["210987654321"]}"#)]}),
            "body must be",
        ),
        (
            json!({"Records": [{"eventSource": "aws:sns", "eventSourceARN": arn, "body": COALESCED_BODY}]}),
            "aws:sqs",
        ),
        (
            json!({"Records": [record(arn, COALESCED_BODY)], "accounts": ["210987654321"]}),
            "unknown field",
        ),
    ] {
        match parse(&bad, &c) {
            Err(Error::InvalidInput(msg)) => assert!(msg.contains(part), "{bad}: {msg}"),
            other => panic!("{bad}: {other:?}"),
        }
    }
    // The queue must be FIFO: its deduplication is what coalesces.
    let standard = ReconcileConfig::from_lookup(|k| match k {
        "ONBOARDING_QUEUE_URL" => Some("https://sqs.us-east-1.amazonaws.com/1/q".into()),
        "RECONCILE_QUEUE_URL" => Some("https://sqs.us-east-1.amazonaws.com/1/r".into()),
        _ => None,
    });
    assert!(matches!(standard, Err(Error::Config(m)) if m.contains("FIFO")));
}

#[test]
fn requests() {
    let c = config();
    assert_eq!(
        parse(
            &json!({"source": "aws.events", "detail-type": "Scheduled Event"}),
            &c
        )
        .ok(),
        Some((Scope::Organization, false))
    );
    assert_eq!(
        parse(&json!({"dryRun": true}), &c).ok(),
        Some((Scope::Organization, true))
    );
    assert_eq!(
        parse(&json!({"ous": ["ou-ab12-cdef3456"]}), &c).ok(),
        Some((Scope::Ous(vec!["ou-ab12-cdef3456".into()]), false))
    );
    assert!(
        matches!(parse(&json!({"accounts": ["210987654321"]}), &c), Ok((Scope::Accounts(a), false)) if a.len() == 1)
    );
    for bad in [
        json!({"accounts": ["12"]}),
        json!({"accounts": []}),
        json!({"ous": ["r-abcd"]}),
        json!({"accounts": ["210987654321"], "ous": ["ou-ab12-cdef3456"]}),
        json!({"account": ["210987654321"]}),
        json!([1]),
    ] {
        assert_eq!(
            parse(&bad, &c).map_err(|e| e.kind()).err(),
            Some("InvalidInput"),
            "{bad}"
        );
    }
}

fn rejected(payload: &Value) -> String {
    match parse(payload, &config()) {
        Err(e) => {
            assert_eq!(e.kind(), "InvalidInput", "{payload}");
            e.to_string()
        }
        Ok(scope) => panic!("accepted {payload}: {scope:?}"),
    }
}

#[test]
fn a_scheduled_run_is_recognised_precisely() {
    let scheduled = json!({
        "version": "0", "id": "x", "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": "2026-11-22T06:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/r"], "detail": {}
    });
    assert_eq!(
        parse(&scheduled, &config()).ok(),
        Some((Scope::Organization, false))
    );
    let ous = ReconcileConfig {
        ous: vec!["ou-ab12-cdef3456".into()],
        dry_run: true,
        ..config()
    };
    assert_eq!(
        parse(&scheduled, &ous).ok(),
        Some((Scope::Ous(vec!["ou-ab12-cdef3456".into()]), true))
    );
    // Anything that merely has a `source` key, or is null or an array, is not a full run.
    for (bad, field) in [
        (
            json!({"source": "aws.controltower"}),
            "source must be \"aws.events\"",
        ),
        (
            json!({"source": null}),
            "source must be \"aws.events\" (an EventBridge schedule), got null",
        ),
        (
            json!({"source": "aws.events"}),
            "detail-type must be \"Scheduled Event\" (an EventBridge schedule), missing",
        ),
        (
            json!({"source": "aws.events", "detail-type": "Object Created"}),
            "detail-type",
        ),
        (
            json!({"detail-type": "Scheduled Event"}),
            "source must be \"aws.events\" (an EventBridge schedule), missing",
        ),
        (
            json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {"accounts": ["210987654321"]}}),
            "detail must be {}, got an object",
        ),
        (
            json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": null}),
            "detail must be {}, got null",
        ),
        (
            json!({"source": "aws.events", "detail-type": "Scheduled Event", "dryRun": true}),
            "unknown field \"dryRun\"",
        ),
        (json!(null), "got null"),
        (json!([]), "got an empty array"),
    ] {
        let msg = rejected(&bad);
        assert!(msg.contains(field), "{msg:?} lacks {field:?}");
    }
}

/// Every hostile reconcile payload found so far: rejected, the field named, what was
/// there said, and nothing echoed unbounded.
#[test]
fn hostile_reconcile_requests() {
    let huge = "1".repeat(1 << 20);
    let cases: Vec<(Value, &str)> = vec![
        (json!(null), "request object"),
        (json!([]), "got an empty array"),
        (json!([1]), "got an array"),
        (json!("reconcile"), "got \"reconcile\""),
        (json!(42), "got a number (42)"),
        (
            json!({"accounts": null}),
            "accounts must be a non-empty array, got null",
        ),
        (
            json!({"accounts": []}),
            "accounts must be a non-empty array, got an empty array",
        ),
        (json!({"accounts": "210987654321"}), "got \"210987654321\""),
        (
            json!({"accounts": [" 210987654321"]}),
            "accounts[0] must be exactly 12 digits, got \" 210987654321\"",
        ),
        (
            json!({"accounts": ["210987654321", null]}),
            "accounts[1] must be a 12-digit account id string, got null",
        ),
        (
            json!({"accounts": [210987654321_u64]}),
            "accounts[0] must be a 12-digit account id string, got a number (210987654321)",
        ),
        (json!({"accounts": ["12"]}), "accounts[0]"),
        (json!({"accounts": [huge.clone()]}), "… (1048576 bytes)"),
        (
            json!({"ous": null}),
            "ous must be a non-empty array, got null",
        ),
        (json!({"ous": []}), "ous must be a non-empty array"),
        (
            json!({"ous": ["r-abcd"]}),
            "ous[0] must be an OU id (ou-xxxx-yyyyyyyy), got \"r-abcd\"",
        ),
        (
            json!({"ous": [["ou-ab12-cdef3456"]]}),
            "ous[0] must be an OU id (ou-xxxx-yyyyyyyy), got an array",
        ),
        (json!({"ous": [huge.clone()]}), "… (1048576 bytes)"),
        (
            json!({"dryRun": "yes"}),
            "dryRun must be true or false, got \"yes\"",
        ),
        (
            json!({"dryRun": null}),
            "dryRun must be true or false, got null",
        ),
        (
            json!({"accounts": ["210987654321"], "ous": ["ou-ab12-cdef3456"]}),
            "not both",
        ),
        (
            json!({"account": ["210987654321"]}),
            "unknown field \"account\"; expected accounts, ous or dryRun",
        ),
        (json!({ huge.clone(): 1 }), "unknown field"),
    ];
    for (payload, expected) in cases {
        let msg = rejected(&payload);
        assert!(msg.contains(expected), "{msg:?} lacks {expected:?}");
        assert!(msg.len() < 400, "{} bytes", msg.len());
    }
    // `{}` is an explicit on-demand run of the configured scope.
    assert_eq!(
        parse(&json!({}), &config()).ok(),
        Some((Scope::Organization, false))
    );
}

#[test]
fn shipped_events_parse() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).expect("events/") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        if !name.starts_with("reconcile-") {
            continue;
        }
        let payload: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("JSON");
        let (scope, dry_run) = parse(&payload, &config()).expect(&name);
        match name.as_str() {
            "reconcile-scheduled.json" => {
                assert_eq!((scope, dry_run), (Scope::Organization, false))
            }
            "reconcile-dry-run.json" => {
                assert_eq!((scope, dry_run), (Scope::Organization, true))
            }
            "reconcile-backfill-ous.json" => {
                assert!(matches!(scope, Scope::Ous(ref o) if o.len() == 1))
            }
            other => panic!("untested event {other}"),
        }
        seen += 1;
    }
    assert_eq!(seen, 3);
}
