use super::*;
use serde_json::json;

fn item(state: State, expires: u64, body: Option<&str>, poked: bool) -> Item {
    Item {
        seq: 7,
        state,
        expires,
        body: body.map(str::to_string),
        poked,
    }
}

#[test]
fn a_change_event_runs_an_account_only_where_its_chain_does_not_cover_it() {
    let now = 1_000;
    let body =
        r#"{"accountId":"210987654321","reason":"recheck","attempt":2,"firstSeen":1700000000}"#;
    // (case, the account's item, what the event's run does)
    let cases: Vec<(&str, Option<Item>, Gate)> = vec![
        ("no chain", None, Gate::Start),
        (
            "a queued chain reads the account afresh",
            Some(item(State::Queued, now + 1, None, false)),
            Gate::Skip("its chain's run is queued and reads the account afresh"),
        ),
        (
            "a running chain is marked",
            Some(item(State::Running, now + 1, None, false)),
            Gate::Poke(7),
        ),
        (
            "a running chain marked already",
            Some(item(State::Running, now + 1, None, true)),
            Gate::Skip("its chain's running run is marked to go on at once already"),
        ),
        (
            "a waiting chain's re-check comes forward, the same body",
            Some(item(State::Waiting, now + 1, Some(body), false)),
            Gate::Forward {
                seq: 7,
                body: json!({"accountId": "210987654321", "reason": "early-recheck", "attempt": 2,
                             "firstSeen": 1_700_000_000u64})
                .to_string(),
            },
        ),
        (
            "a waiting chain without its body: a new run",
            Some(item(State::Waiting, now + 1, None, false)),
            Gate::Start,
        ),
        (
            "an ended chain",
            Some(item(State::Ended, now + 1, None, false)),
            Gate::Start,
        ),
        (
            "an expired item holds nothing back (DynamoDB deletes it later)",
            Some(item(State::Queued, now, None, false)),
            Gate::Start,
        ),
        (
            "an expired waiting item neither",
            Some(item(State::Waiting, now - 1, Some(body), false)),
            Gate::Start,
        ),
    ];
    // Bodies compared as JSON (the order of their fields is not the point).
    let parsed = |g: Gate| match g {
        Gate::Forward { seq, body } => (
            Gate::Forward {
                seq,
                body: String::new(),
            },
            serde_json::from_str::<serde_json::Value>(&body).ok(),
        ),
        other => (other, None),
    };
    for (case, item, expected) in cases {
        assert_eq!(parsed(gate(item.as_ref(), now)), parsed(expected), "{case}");
    }
}

#[test]
fn the_reconciler_queues_no_account_whose_chain_is_live() {
    let now = 1_000;
    assert!(may_queue(None, now));
    assert!(may_queue(
        Some(&item(State::Ended, now + 1, None, false)),
        now
    ));
    for state in [State::Queued, State::Running, State::Waiting] {
        assert!(
            !may_queue(Some(&item(state, now + 1, None, false)), now),
            "{state:?}"
        );
        assert!(
            may_queue(Some(&item(state, now, None, false)), now),
            "{state:?} expired"
        );
    }
}

#[test]
fn states_read_back_as_written_and_nothing_else_parses() {
    for state in [State::Queued, State::Running, State::Waiting, State::Ended] {
        assert_eq!(State::parse(state.as_str()), Some(state));
    }
    assert_eq!(State::parse("Queued"), None);
    assert_eq!(State::parse(""), None);
}

#[test]
fn a_record_carries_its_sequence_in_a_message_attribute() {
    let record = |attrs: serde_json::Value| json!({"messageId": "1", "body": "{}", "messageAttributes": attrs});
    // (case, record, sequence)
    let cases = [
        (
            "a Number attribute",
            record(json!({"chainSeq": {"stringValue": "1733390000123", "dataType": "Number"}})),
            Some(1_733_390_000_123),
        ),
        (
            "no attributes",
            json!({"messageId": "1", "body": "{}"}),
            None,
        ),
        (
            "other attributes",
            record(json!({"other": {"stringValue": "5"}})),
            None,
        ),
        (
            "not a number",
            record(json!({"chainSeq": {"stringValue": "soon", "dataType": "Number"}})),
            None,
        ),
        (
            "negative",
            record(json!({"chainSeq": {"stringValue": "-4", "dataType": "Number"}})),
            None,
        ),
    ];
    for (case, r, expected) in cases {
        assert_eq!(of_record(&r), expected, "{case}");
    }
}

#[test]
fn sequences_are_milliseconds_and_grow() {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_733_390_000_123);
    assert_eq!(sequence(t), 1_733_390_000_123);
    assert!(sequence(t + std::time::Duration::from_millis(1)) > sequence(t));
    assert_eq!(sequence(std::time::UNIX_EPOCH), 0);
}

#[test]
fn an_early_recheck_is_the_same_request_under_its_own_reason() {
    let body = r#"{"accountId":"210987654321","reason":"recheck","attempt":3,"firstSeen":1700000000,"backfill":true,"activations":[{"grantArn":"g","version":"2"}]}"#;
    let early: serde_json::Value = serde_json::from_str(&early(body)).expect("JSON");
    let mut expected: serde_json::Value = serde_json::from_str(body).expect("JSON");
    expected["reason"] = json!("early-recheck");
    assert_eq!(early, expected);
    // It parses as an onboard request, as every earlier release reads it.
    let request = crate::event::parse_body(&early.to_string()).expect("an onboard request");
    assert!(matches!(request, crate::event::Request::Work(w)
        if matches!(&w.trigger, crate::event::Trigger::Onboard(r) if r == "early-recheck")));
    // Not an onboard request: as it is.
    assert_eq!(super::early("[1]"), "[1]");
}

/// A mark on a running chain that found it moved on: the item read again decides, and a chain
/// running again is left to its run.
#[test]
fn a_mark_that_found_the_run_ended_goes_by_the_item_read_again() {
    let now = 1_000;
    let body = r#"{"accountId":"210987654321","reason":"recheck","attempt":1}"#;
    let cases: Vec<(&str, Option<Item>, Gate)> = vec![
        (
            "the run ended waiting: its re-check comes forward",
            Some(item(State::Waiting, now + 1, Some(body), false)),
            Gate::Forward {
                seq: 7,
                body: early(body),
            },
        ),
        (
            "the run ended the chain: a new run",
            Some(item(State::Ended, now + 1, None, false)),
            Gate::Start,
        ),
        ("the item is gone: a new run", None, Gate::Start),
        (
            "another run began after the change: it reads it",
            Some(item(State::Running, now + 1, None, false)),
            Gate::Skip("its chain's run began after the change and reads it"),
        ),
        (
            "a run is queued: it reads the account afresh",
            Some(item(State::Queued, now + 1, None, false)),
            Gate::Skip("its chain's run is queued and reads the account afresh"),
        ),
    ];
    for (case, item, want) in cases {
        assert_eq!(gate_after_moved(item.as_ref(), now), want, "{case}");
    }
}
