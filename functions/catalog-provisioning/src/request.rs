//! What arrives: a CloudFormation custom-resource request (directly, or wrapped in SNS records
//! for cross-account launches), or an SQS batch of delayed re-checks. Parsing is pure: nothing
//! here calls AWS.

use aws_lambda_events::event::cloudformation::CloudFormationCustomResourceRequest;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shared::config::{LicenseRef, OverrideBehavior};
use shared::custom_resource::service_timeout;
use shared::error::Error;
use shared::error::{describe, echo, got, truncate, ECHO_MAX_CHARS};
use shared::ids::{is_license_arn, is_product_sku, AccountId};
use shared::inbound::ActivationMark;
use std::time::Duration;

/// The custom resource type this function serves.
pub const RESOURCE_TYPE: &str = "Custom::MarketplaceEntitlement";

/// One invocation's payload.
#[derive(Debug)]
pub enum Incoming {
    /// Custom-resource requests (one when invoked directly, one per SNS record otherwise).
    /// `rejected`: SNS records that carry no request (answered by no one; they fail the
    /// invocation after the others are answered).
    CustomResource {
        requests: Vec<Value>,
        rejected: Vec<Error>,
        via_sns: bool,
    },
    /// An SQS batch of delayed re-checks: (message id, body).
    Rechecks(Vec<(String, String)>),
}

/// Sorts a payload into custom-resource requests or re-checks.
pub fn classify(payload: &Value) -> Result<Incoming, Error> {
    let source = payload
        .get("Records")
        .and_then(Value::as_array)
        .and_then(|r| r.first())
        .and_then(|r| r.get("EventSource").or_else(|| r.get("eventSource")))
        .and_then(Value::as_str);
    match source {
        Some("aws:sns") => Ok(sns_requests(payload)),
        Some("aws:sqs") => Ok(sqs_rechecks(payload)),
        Some(other) => Err(invalid(format!("unexpected event source {}", echo(other)))),
        // A request CloudFormation sent, even one without a usable RequestType: whatever names
        // where to answer is answered (FAILED naming the field), never left to time out.
        None if payload.get("RequestType").is_some() || payload.get("ResponseURL").is_some() => {
            Ok(Incoming::CustomResource {
                requests: vec![payload.clone()],
                rejected: Vec::new(),
                via_sns: false,
            })
        }
        None => Err(invalid(
            "neither a custom-resource request (RequestType), an SNS event nor an SQS batch",
        )),
    }
}

/// An SNS event's requests, record by record, so that one garbage record never keeps its
/// neighbours from being answered: a record whose Message is not a request is rejected on its
/// own.
fn sns_requests(payload: &Value) -> Incoming {
    let records = payload
        .get("Records")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut requests = Vec::new();
    let mut rejected = Vec::new();
    for (i, record) in records.iter().enumerate() {
        let sns = record.get("Sns");
        let id = sns
            .and_then(|s| s.get("MessageId"))
            .and_then(Value::as_str)
            .map(echo)
            .unwrap_or_else(|| format!("#{i}"));
        match sns.and_then(|s| s.get("Message")) {
            Some(Value::String(message)) => match read_request(message) {
                Ok(request) => requests.push(request),
                Err(e) => rejected.push(invalid(format!(
                    "SNS message {id}: Sns.Message is not a custom-resource request: {}",
                    truncate(&e.to_string(), 4 * ECHO_MAX_CHARS)
                ))),
            },
            other => rejected.push(invalid(format!(
                "SNS message {id}: Sns.Message must be a string holding a custom-resource request, {}",
                got(other)
            ))),
        }
    }
    Incoming::CustomResource {
        requests,
        rejected,
        via_sns: true,
    }
}

/// An SQS batch's re-checks: (message id, body).
fn sqs_rechecks(payload: &Value) -> Incoming {
    let records = payload
        .get("Records")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    Incoming::Rechecks(
        records
            .iter()
            .map(|r| {
                let text = |k: &str| {
                    r.get(k)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                };
                (text("messageId"), text("body"))
            })
            .collect(),
    )
}

pub use shared::custom_resource::Target;

/// The key under which [`read_request`] lists the fields it could not read.
pub const UNREADABLE: &str = "ct-entitlements:unreadable";

/// Reads a request (or any JSON payload). A payload nested beyond serde_json's depth limit is
/// still read at its top level, so the request can be answered: each field that cannot be read
/// (too deep) is left out and named under [`UNREADABLE`].
pub fn read_request(text: &str) -> Result<Value, serde_json::Error> {
    match serde_json::from_str::<Value>(text) {
        Ok(value) => Ok(value),
        Err(first) => {
            // Raw values are skipped without recursion: only the top level is parsed.
            let Ok(fields) = serde_json::from_str::<
                std::collections::BTreeMap<String, Box<serde_json::value::RawValue>>,
            >(text) else {
                return Err(first);
            };
            let mut out = serde_json::Map::new();
            let mut unreadable = Vec::new();
            for (key, raw) in fields {
                match serde_json::from_str::<Value>(raw.get()) {
                    Ok(value) => {
                        out.insert(key, value);
                    }
                    Err(e) => unreadable.push(Value::String(format!(
                        "{}: {}",
                        echo(&key),
                        truncate(&e.to_string(), ECHO_MAX_CHARS)
                    ))),
                }
            }
            out.insert(UNREADABLE.to_string(), Value::Array(unreadable));
            Ok(Value::Object(out))
        }
    }
}

/// The request, typed.
pub type CfnRequest = CloudFormationCustomResourceRequest<Value, Value>;

pub fn parse_request(raw: &Value) -> Result<CfnRequest, Error> {
    if let Some(fields) = raw.get(UNREADABLE).and_then(Value::as_array) {
        let named: Vec<&str> = fields.iter().filter_map(Value::as_str).collect();
        return Err(invalid(format!(
            "the request could not be read ({}); nothing was done",
            named.join("; ")
        )));
    }
    match raw.get("RequestType") {
        Some(Value::String(t)) if matches!(t.as_str(), "Create" | "Update" | "Delete") => {}
        other => {
            return Err(invalid(format!(
                "RequestType must be \"Create\", \"Update\" or \"Delete\", {}",
                got(other)
            )))
        }
    }
    serde_json::from_value(raw.clone()).map_err(|e| {
        invalid(format!(
            "custom-resource request: {}",
            truncate(&e.to_string(), 4 * ECHO_MAX_CHARS)
        ))
    })
}

/// The resource's properties, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Properties {
    pub license: LicenseRef,
    pub account: AccountId,
    pub override_behavior: Option<OverrideBehavior>,
    pub deactivate_on_delete: bool,
    /// CloudFormation's `ServiceTimeout` (default one hour): the answer must come before it.
    pub service_timeout: Duration,
}

const KNOWN: &[&str] = &[
    "ServiceToken",
    "ServiceTimeout",
    "LicenseArn",
    "ProductSku",
    "AccountId",
    "ActivationOverrideBehavior",
    "DeactivateOnDelete",
];

/// Validates `ResourceProperties`. CloudFormation passes every scalar as a string, so
/// `DeactivateOnDelete` may be `"true"` or `true`.
pub fn parse_properties(
    props: &Value,
    stack_id: &str,
    allow_account_override: bool,
) -> Result<Properties, Error> {
    let obj = props
        .as_object()
        .ok_or_else(|| invalid("ResourceProperties must be an object"))?;
    if let Some(unknown) = obj.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(invalid(format!(
            "unknown property {}; expected LicenseArn or ProductSku, and optionally AccountId, ActivationOverrideBehavior, DeactivateOnDelete, ServiceTimeout",
            echo(unknown)
        )));
    }
    let text = |k: &str| -> Result<Option<String>, Error> {
        match obj.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(other) => Err(invalid(format!(
                "{k} must be a string, got {}",
                describe(other)
            ))),
        }
    };
    let license = license_ref(text("LicenseArn")?, text("ProductSku")?)?;
    let stack_account = stack_account(stack_id)?;
    let account = match text("AccountId")? {
        None => stack_account,
        Some(_) => {
            // Strict, like every account id this project reads: no trimming, a string only.
            let account = AccountId::parse_field(obj.get("AccountId"), "AccountId")?;
            if account != stack_account && !allow_account_override {
                return Err(invalid(format!(
                    "AccountId {account} is not the account launching the stack ({stack_account}); set ALLOW_ACCOUNT_ID_OVERRIDE=true to allow entitling other accounts"
                )));
            }
            account
        }
    };
    let override_behavior = text("ActivationOverrideBehavior")?
        .map(|raw| {
            OverrideBehavior::parse(&raw, "ActivationOverrideBehavior")
                .map_err(|e| invalid(strip_prefix(&e)))
        })
        .transpose()?;
    let deactivate_on_delete = deactivate_on_delete(text("DeactivateOnDelete")?)?;
    Ok(Properties {
        license,
        account,
        override_behavior,
        deactivate_on_delete,
        service_timeout: service_timeout(props)?,
    })
}

/// `LicenseArn` or `ProductSku`: exactly one, well-formed.
fn license_ref(arn: Option<String>, sku: Option<String>) -> Result<LicenseRef, Error> {
    match (arn, sku) {
        (Some(arn), None) if is_license_arn(&arn) => Ok(LicenseRef::Arn(arn)),
        (Some(arn), None) => Err(invalid(format!(
            "LicenseArn {} is not a License Manager license ARN (arn:aws:license-manager::<account>:license:l-<id>)",
            echo(&arn)
        ))),
        (None, Some(sku)) if is_product_sku(&sku) => Ok(LicenseRef::Sku(sku)),
        (None, Some(sku)) => Err(invalid(format!(
            "ProductSku {} is not a product SKU (letters, digits, '.', '_', '-')",
            echo(&sku)
        ))),
        (Some(_), Some(_)) => Err(invalid(
            "give exactly one of LicenseArn and ProductSku, not both",
        )),
        (None, None) => Err(invalid("give exactly one of LicenseArn and ProductSku")),
    }
}

/// `DeactivateOnDelete`: `true` or `false` in any case; unset is false.
fn deactivate_on_delete(raw: Option<String>) -> Result<bool, Error> {
    match raw.map(|v| v.to_ascii_lowercase()) {
        None => Ok(false),
        Some(v) if v == "true" => Ok(true),
        Some(v) if v == "false" => Ok(false),
        Some(v) => Err(invalid(format!(
            "DeactivateOnDelete {} must be true or false",
            echo(&v)
        ))),
    }
}

/// The account in a stack ARN: `arn:<partition>:cloudformation:<region>:<account>:stack/…`.
pub fn stack_account(stack_id: &str) -> Result<AccountId, Error> {
    let parts: Vec<&str> = stack_id.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", _, "cloudformation", _, account, rest] if rest.starts_with("stack/") => {
            AccountId::parse(account).map_err(|e| invalid(format!("StackId: {e}")))
        }
        _ => Err(invalid(format!(
            "StackId {} is not a CloudFormation stack ARN",
            echo(stack_id)
        ))),
    }
}

/// True for a License Manager grant ARN (what this resource uses as its physical id).
pub fn is_grant_arn(raw: &str) -> bool {
    let parts: Vec<&str> = raw.splitn(6, ':').collect();
    matches!(parts.as_slice(), ["arn", _, "license-manager", "", account, rest]
        if account.len() == 12 && rest.starts_with("grant:g-") && rest.len() > 8)
}

/// A delayed re-check of a grant answered as pending (body of a re-check queue message).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Recheck {
    pub account_id: String,
    pub license_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub override_behavior: Option<String>,
    /// Unix seconds of the launch that started it (for WORKFLOW_DEADLINE_SECONDS).
    pub first_seen: u64,
    #[serde(default)]
    pub attempt: u32,
    /// Activations already requested (not requested again while the grant is activating).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub activations: Vec<ActivationMark>,
    /// The custom-resource request still waiting for its answer (`PENDING_GRANT_RESPONSE=WAIT`):
    /// this re-check answers it. Absent: a background re-check of a launch already answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub respond: Option<Waiting>,
}

/// A custom-resource request whose answer is still owed, carried by re-check messages. The
/// pre-signed ResponseURL stays valid for hours; CloudFormation waits until the resource's
/// `ServiceTimeout`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Waiting {
    pub request_type: String,
    #[serde(rename = "responseURL")]
    pub response_url: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub physical_resource_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_sku: Option<String>,
    /// The resource's ServiceTimeout, seconds.
    pub service_timeout: u64,
    /// Unix seconds by which the answer is sent, whatever the grant's state: a little before
    /// CloudFormation stops waiting.
    pub answer_by: u64,
}

impl Waiting {
    pub fn new(
        target: &Target,
        product_sku: Option<String>,
        service_timeout: u64,
        answer_by: u64,
    ) -> Self {
        Waiting {
            request_type: target.request_type.clone(),
            response_url: target.response_url.clone(),
            stack_id: target.stack_id.clone(),
            request_id: target.request_id.clone(),
            logical_resource_id: target.logical_resource_id.clone(),
            physical_resource_id: target.physical_resource_id.clone(),
            product_sku,
            service_timeout,
            answer_by,
        }
    }

    /// Who to answer.
    pub fn target(&self) -> Target {
        Target {
            request_type: self.request_type.clone(),
            response_url: self.response_url.clone(),
            stack_id: self.stack_id.clone(),
            request_id: self.request_id.clone(),
            logical_resource_id: self.logical_resource_id.clone(),
            physical_resource_id: self.physical_resource_id.clone(),
        }
    }
}

/// Time kept between the last re-check of a waiting request and CloudFormation's
/// `ServiceTimeout`: a quarter of it, at most a minute (SQS delays are not exact).
pub fn answer_margin(service_timeout: Duration) -> Duration {
    (service_timeout / 4).min(Duration::from_secs(60))
}

impl Recheck {
    /// Parses and validates a queue body.
    pub fn parse(body: &str) -> Result<(Self, AccountId, Option<OverrideBehavior>), Error> {
        let recheck: Recheck = serde_json::from_str(body).map_err(|e| {
            invalid(format!(
                "re-check message: {}",
                truncate(&e.to_string(), 4 * ECHO_MAX_CHARS)
            ))
        })?;
        let account = AccountId::parse(&recheck.account_id)?;
        if !is_license_arn(&recheck.license_arn) {
            return Err(invalid(format!(
                "re-check message: {} is not a license ARN",
                echo(&recheck.license_arn)
            )));
        }
        let behavior = recheck
            .override_behavior
            .as_deref()
            .map(|b| {
                OverrideBehavior::parse(b, "overrideBehavior")
                    .map_err(|e| invalid(strip_prefix(&e)))
            })
            .transpose()?;
        Ok((recheck, account, behavior))
    }
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidInput(msg.into())
}

/// The message of a configuration error without its "configuration error: " prefix.
fn strip_prefix(e: &Error) -> String {
    match e {
        Error::Config(msg) | Error::InvalidInput(msg) => msg.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const STACK: &str =
        "arn:aws:cloudformation:us-east-1:210987654321:stack/SC-210987654321-pp-abc/0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b";
    const ARN: &str =
        "arn:aws:license-manager::294406891311:license:l-0123456789abcdef0123456789abcdef";

    fn props(v: Value) -> Result<Properties, Error> {
        parse_properties(&v, STACK, false)
    }

    #[test]
    fn defaults_to_the_launching_account() {
        let p = props(json!({"ServiceToken": "arn:aws:lambda:us-east-1:111111111111:function:f", "LicenseArn": ARN}))
            .expect("valid");
        assert_eq!(
            p,
            Properties {
                license: LicenseRef::Arn(ARN.into()),
                account: AccountId::parse("210987654321").expect("id"),
                override_behavior: None,
                deactivate_on_delete: false,
                service_timeout: Duration::from_secs(3600),
            }
        );
    }

    #[test]
    fn cloudformation_strings_are_accepted() {
        let p = props(json!({
            "ProductSku": "prod-sku-1",
            "AccountId": "210987654321",
            "ActivationOverrideBehavior": "ALL_GRANTS_PERMITTED_BY_ISSUER",
            "DeactivateOnDelete": "true",
            "ServiceTimeout": "900"
        }))
        .expect("valid");
        assert_eq!(p.service_timeout, Duration::from_secs(900));
        assert_eq!(p.license, LicenseRef::Sku("prod-sku-1".into()));
        assert_eq!(
            p.override_behavior,
            Some(OverrideBehavior::AllGrantsPermittedByIssuer)
        );
        assert!(p.deactivate_on_delete);
    }

    #[test]
    fn rejects_bad_properties() {
        for (bad, needle) in [
            (json!({}), "exactly one"),
            (json!({"LicenseArn": ARN, "ProductSku": "a"}), "not both"),
            (json!({"LicenseArn": "arn:aws:s3:::bucket"}), "LicenseArn"),
            (json!({"ProductSku": "a b"}), "ProductSku"),
            (json!({"ProductSku": "a", "AccountId": "12"}), "AccountId"),
            (
                json!({"ProductSku": "a", "AccountId": " 210987654321"}),
                "AccountId must be exactly 12 digits, got \" 210987654321\"",
            ),
            (
                json!({"ProductSku": ["a"]}),
                "ProductSku must be a string, got an array",
            ),
            (
                json!({"ProductSku": "a", "AccountId": "123456789012"}),
                "ALLOW_ACCOUNT_ID_OVERRIDE",
            ),
            (
                json!({"ProductSku": "a", "ActivationOverrideBehavior": "REPLACE"}),
                "ActivationOverrideBehavior",
            ),
            (
                json!({"ProductSku": "a", "DeactivateOnDelete": "maybe"}),
                "DeactivateOnDelete",
            ),
            (
                json!({"ProductSku": "a", "LicenceArn": ARN}),
                "unknown property \"LicenceArn\"",
            ),
            (json!({"ProductSku": ["a"]}), "must be a string"),
            (
                json!({"ProductSku": "a", "ServiceTimeout": "0"}),
                "ServiceTimeout",
            ),
            (
                json!({"ProductSku": "a", "ServiceTimeout": "an hour"}),
                "ServiceTimeout",
            ),
            (json!("text"), "object"),
        ] {
            match props(bad.clone()) {
                Err(Error::InvalidInput(msg)) => assert!(msg.contains(needle), "{bad}: {msg}"),
                other => panic!("{bad}: expected invalid input, got {other:?}"),
            }
        }
    }

    #[test]
    fn other_accounts_need_configuration() {
        let v = json!({"ProductSku": "a", "AccountId": "123456789012"});
        let p = parse_properties(&v, STACK, true).expect("allowed by configuration");
        assert_eq!(p.account.as_str(), "123456789012");
    }

    #[test]
    fn stack_and_grant_arns() {
        assert_eq!(
            stack_account(STACK).map(|a| a.to_string()).ok(),
            Some("210987654321".to_string())
        );
        assert!(
            stack_account("arn:aws:cloudformation:us-east-1:210987654321:changeSet/x").is_err()
        );
        assert!(stack_account("stack").is_err());
        assert!(is_grant_arn(
            "arn:aws:license-manager::111111111111:grant:g-00000000000000000000000000000001"
        ));
        assert!(!is_grant_arn("failed-request-1"));
        assert!(!is_grant_arn(ARN));
    }

    #[test]
    fn classifies_payloads() {
        let direct = json!({"RequestType": "Create"});
        assert!(matches!(
            classify(&direct),
            Ok(Incoming::CustomResource { via_sns: false, .. })
        ));
        let sqs =
            json!({"Records": [{"eventSource": "aws:sqs", "messageId": "m-1", "body": "{}"}]});
        match classify(&sqs) {
            Ok(Incoming::Rechecks(items)) => {
                assert_eq!(items, vec![("m-1".to_string(), "{}".to_string())])
            }
            other => panic!("expected re-checks, got {other:?}"),
        }
        for bad in [json!({}), json!({"Records": [{"EventSource": "aws:s3"}]})] {
            assert_eq!(
                classify(&bad).map_err(|e| e.kind()).err(),
                Some("InvalidInput"),
                "{bad}"
            );
        }
    }

    #[test]
    fn recheck_round_trip() {
        let r = Recheck {
            account_id: "210987654321".into(),
            license_arn: ARN.into(),
            override_behavior: Some("DISTRIBUTED_GRANTS_ONLY".into()),
            first_seen: 1_700_000_000,
            attempt: 1,
            activations: Vec::new(),
            respond: None,
        };
        let body = serde_json::to_string(&r).expect("serializes");
        let (back, account, behavior) = Recheck::parse(&body).expect("valid");
        assert_eq!(back, r);
        assert_eq!(account.as_str(), "210987654321");
        assert_eq!(behavior, Some(OverrideBehavior::DistributedGrantsOnly));
        assert!(Recheck::parse(r#"{"accountId":"1","licenseArn":"x","firstSeen":1}"#).is_err());
    }
}
