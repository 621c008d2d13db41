//! Account requests and the messages that carry them through the vending queue. Parsing and
//! validation are pure: a bad request is rejected before any AWS call.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use shared::config::LicenseRef;
use shared::error::Error;
use shared::error::{describe, echo, truncate, ECHO_MAX_CHARS};
use shared::ids::is_ou_id;

/// An account request, named like the Account Factory's parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountRequest {
    #[serde(rename = "AccountName", default)]
    pub account_name: String,
    #[serde(rename = "AccountEmail", default)]
    pub account_email: String,
    /// `Name` or `Name (ou-xxxx-yyyyyyyy)`.
    #[serde(rename = "ManagedOrganizationalUnit", default)]
    pub managed_organizational_unit: String,
    #[serde(rename = "SSOUserEmail", default)]
    pub sso_user_email: String,
    #[serde(rename = "SSOUserFirstName", default)]
    pub sso_user_first_name: String,
    #[serde(rename = "SSOUserLastName", default)]
    pub sso_user_last_name: String,
    /// License ARNs or product SKUs the account gets once it exists (written to the account's
    /// licenses tag, which account-lifecycle reads).
    #[serde(
        rename = "Entitlements",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub entitlements: Vec<String>,
    /// Defaults to the account name, made safe for Service Catalog.
    #[serde(
        rename = "ProvisionedProductName",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub provisioned_product_name: Option<String>,
}

/// A request that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Valid {
    pub request: AccountRequest,
    pub provisioned_product_name: String,
    pub entitlements: Vec<LicenseRef>,
}

/// How many invalid `Entitlements` entries an error quotes (the others are counted).
const MAX_QUOTED_ENTITLEMENTS: usize = 2;

/// Validates every field and reports every problem at once.
/// `licenses_tag_key`: entitlements need the tag account-lifecycle reads.
pub fn validate(raw: &AccountRequest, licenses_tag_key: Option<&str>) -> Result<Valid, Error> {
    let r = trimmed(raw);
    let mut problems: Vec<String> = Vec::new();
    check_people(&r, &mut problems);
    if let Err(e) = parse_managed_ou(&r.managed_organizational_unit) {
        problems.push(e);
    }
    let entitlements = check_entitlements(&r.entitlements, licenses_tag_key, &mut problems);
    let provisioned_product_name = match &r.provisioned_product_name {
        Some(name) if is_provisioned_product_name(name) => name.clone(),
        Some(name) => {
            problems.push(format!(
                "ProvisionedProductName {} must start with a letter or digit and use only letters, digits, '.', '_', '-' (at most 128)",
                echo(name)
            ));
            String::new()
        }
        None => default_product_name(&r.account_name),
    };
    if !problems.is_empty() {
        return Err(Error::InvalidInput(format!(
            "account request: {}",
            problems.join("; ")
        )));
    }
    Ok(Valid {
        request: r,
        provisioned_product_name,
        entitlements,
    })
}

/// The request with every field trimmed (an empty ProvisionedProductName: none).
fn trimmed(raw: &AccountRequest) -> AccountRequest {
    AccountRequest {
        account_name: raw.account_name.trim().to_string(),
        account_email: raw.account_email.trim().to_string(),
        managed_organizational_unit: raw.managed_organizational_unit.trim().to_string(),
        sso_user_email: raw.sso_user_email.trim().to_string(),
        sso_user_first_name: raw.sso_user_first_name.trim().to_string(),
        sso_user_last_name: raw.sso_user_last_name.trim().to_string(),
        entitlements: raw
            .entitlements
            .iter()
            .map(|e| e.trim().to_string())
            .collect(),
        provisioned_product_name: raw
            .provisioned_product_name
            .as_ref()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty()),
    }
}

/// The account's name and email, and its SSO user's email and names.
fn check_people(r: &AccountRequest, problems: &mut Vec<String>) {
    // Organizations: account names are 1-50 printable ASCII characters.
    if r.account_name.is_empty()
        || r.account_name.len() > 50
        || !r.account_name.bytes().all(|b| (0x20..0x7f).contains(&b))
    {
        problems.push(format!(
            "AccountName {} must be 1 to 50 printable ASCII characters",
            echo(&r.account_name)
        ));
    }
    // Organizations: account emails are 6-64 characters.
    if !is_email(&r.account_email) || !(6..=64).contains(&r.account_email.len()) {
        problems.push(format!(
            "AccountEmail {} is not an email address (6 to 64 characters)",
            echo(&r.account_email)
        ));
    }
    if !is_email(&r.sso_user_email) {
        problems.push(format!(
            "SSOUserEmail {} is not an email address",
            echo(&r.sso_user_email)
        ));
    }
    for (field, value) in [
        ("SSOUserFirstName", &r.sso_user_first_name),
        ("SSOUserLastName", &r.sso_user_last_name),
    ] {
        if value.is_empty() || value.chars().count() > 128 || value.chars().any(char::is_control) {
            problems.push(format!(
                "{field} {} must be 1 to 128 characters",
                echo(value)
            ));
        }
    }
}

/// `Entitlements`, parsed and deduplicated: each entry a license ARN or SKU, the licenses tag
/// key set, and the tag value within 256 characters.
fn check_entitlements(
    items: &[String],
    licenses_tag_key: Option<&str>,
    problems: &mut Vec<String>,
) -> Vec<LicenseRef> {
    let mut entitlements = Vec::new();
    let mut bad_entitlements = 0usize;
    for item in items {
        let problem = match LicenseRef::parse(item, "Entitlements") {
            Ok(parsed) if !entitlements.contains(&parsed) => {
                entitlements.push(parsed);
                continue;
            }
            Ok(_) => continue,
            Err(Error::Config(msg)) => msg,
            Err(other) => other.to_string(),
        };
        // The first few are quoted; the rest only counted, so the message stays bounded.
        bad_entitlements += 1;
        if bad_entitlements <= MAX_QUOTED_ENTITLEMENTS {
            problems.push(problem);
        }
    }
    if bad_entitlements > MAX_QUOTED_ENTITLEMENTS {
        problems.push(format!(
            "Entitlements: {} more invalid entries",
            bad_entitlements - MAX_QUOTED_ENTITLEMENTS
        ));
    }
    if !entitlements.is_empty() {
        if licenses_tag_key.is_none() {
            problems.push(
                "Entitlements need LICENSES_TAG_KEY (the account tag account-lifecycle reads), which is not set".into(),
            );
        }
        // Organizations tag values are at most 256 characters.
        let joined = tag_value(&entitlements);
        if joined.len() > 256 {
            problems.push(format!(
                "Entitlements take {} characters as a tag value; at most 256 fit (prefer SKUs, or fewer entries)",
                joined.len()
            ));
        }
    }
    entitlements
}

/// The licenses tag value: space-separated SKUs and ARNs.
pub fn tag_value(entitlements: &[LicenseRef]) -> String {
    entitlements
        .iter()
        .map(|e| match e {
            LicenseRef::Arn(a) => a.as_str(),
            LicenseRef::Sku(s) => s.as_str(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `Name` or `Name (ou-xxxx-yyyyyyyy)` → (name, OU id).
pub fn parse_managed_ou(raw: &str) -> Result<(String, Option<String>), String> {
    let bad = |why: &str| {
        Err(format!(
            "ManagedOrganizationalUnit {} {why}; expected \"Name\" or \"Name (ou-xxxx-yyyyyyyy)\"",
            echo(raw)
        ))
    };
    if raw.is_empty() || raw.chars().count() > 128 || raw.chars().any(char::is_control) {
        return bad("must be 1 to 128 characters");
    }
    if let Some(open) = raw.rfind(" (ou-") {
        let Some(inner) = raw[open + 2..].strip_suffix(')') else {
            return bad("has an unclosed OU id");
        };
        if !is_ou_id(inner) {
            return bad(&format!("has {}, which is not an OU id", echo(inner)));
        }
        let name = raw[..open].trim();
        if name.is_empty() {
            return bad("has no OU name");
        }
        return Ok((name.to_string(), Some(inner.to_string())));
    }
    if raw.contains("(ou-") {
        return bad("has an OU id without a space before it");
    }
    Ok((raw.to_string(), None))
}

/// A practical email check: one `@`, a non-empty local part, a dotted domain of letters,
/// digits and hyphens, no spaces.
pub fn is_email(raw: &str) -> bool {
    let Some((local, domain)) = raw.split_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~.-".contains(&b));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && domain.len() <= 253
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && tld.bytes().all(|b| b.is_ascii_alphabetic()));
    local_ok && domain_ok
}

fn is_provisioned_product_name(raw: &str) -> bool {
    raw.len() <= 128
        && raw
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// The account name with anything Service Catalog does not accept in a provisioned product
/// name replaced by `-`.
fn default_product_name(account_name: &str) -> String {
    let mut name: String = account_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        name.insert(0, 'A');
    }
    name.truncate(128);
    name
}

/// The provisioned product name of a generation, and why. Generation 0 uses the requested (or
/// default) name. A redriven FAILED request is a new generation, and Service Catalog keeps a
/// FAILED provisioned product's name until someone terminates it ("A stack named … already
/// exists"), so each later generation gets a deterministic suffix (`-r<generation>`): nothing is
/// terminated on the operator's behalf (the failed product keeps its record errors for them to
/// read), and a retried message of one generation always reuses that generation's name.
pub fn generation_name(base: &str, generation: u32) -> (String, String) {
    if generation == 0 {
        return (base.to_string(), "requested".to_string());
    }
    let suffix = format!("-r{generation}");
    let mut name = base.to_string();
    // Provisioned product names are at most 128 characters.
    let keep = 128usize.saturating_sub(suffix.len());
    if name.len() > keep {
        name.truncate(keep);
    }
    let name = format!("{name}{suffix}");
    let previous = generation_name(base, generation - 1).0;
    let reason = format!(
        "generation {generation}: the FAILED provisioned product {previous} keeps its name until it is terminated, so this attempt uses a fresh one (terminate {previous} in Service Catalog once its errors are read)"
    );
    (name, reason)
}

/// Deterministic `ProvisionToken`: the same account email and generation always give the same
/// token, so a redelivered or duplicated request never starts a second account; a redriven
/// failed request is a new generation.
pub fn provision_token(account_email: &str, generation: u32) -> String {
    let seed = format!("vend|{}|{generation}", account_email.to_ascii_lowercase());
    let digest = Sha256::digest(seed.as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("vend-{hex}")
}

/// A request on its way through the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tracked {
    pub request: AccountRequest,
    /// Set once ProvisionProduct returned a record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_id: Option<String>,
    /// How many times this request has been queued again (busy, or still in progress).
    #[serde(default)]
    pub attempt: u32,
    /// Unix seconds when the request first arrived (for REQUEST_DEADLINE_SECONDS).
    pub first_seen: u64,
    /// Bumped when a request whose record FAILED is redriven from the dead-letter queue (new token).
    #[serde(default)]
    pub generation: u32,
    /// Why the request was parked in the dead-letter queue (present only there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Value>,
}

/// Parses a payload (a queue body or a direct invocation): a new account request, a tracked
/// request, or a parked one redriven from the dead-letter queue (which starts over as a new
/// generation).
pub fn parse_message(payload: &Value, now: u64) -> Result<Tracked, Error> {
    let Some(obj) = payload.as_object() else {
        return Err(Error::InvalidInput("expected a JSON object".into()));
    };
    if obj.contains_key("request") {
        check_types(obj, "vending message: ", TRACKED_FIELDS)?;
        if let Some(Value::Object(request)) = obj.get("request") {
            check_types(request, "vending message: request.", REQUEST_FIELDS)?;
        }
        let mut tracked: Tracked = serde_json::from_value(payload.clone())
            .map_err(|e| Error::InvalidInput(format!("vending message: {}", bounded(&e))))?;
        if let Some(failure) = tracked.failure.take() {
            // Redriven from the dead-letter queue: a FAILED record starts over as a new
            // generation (new token); anything else resumes where it stopped (tracking a record
            // that exists, or provisioning one that never started).
            if failure.get("status").and_then(Value::as_str) == Some("FAILED") {
                tracked.generation += 1;
                tracked.record_id = None;
            }
            tracked.attempt = 0;
            tracked.first_seen = now;
        }
        return Ok(tracked);
    }
    check_types(obj, "account request: ", REQUEST_FIELDS)?;
    let request: AccountRequest = serde_json::from_value(payload.clone())
        .map_err(|e| Error::InvalidInput(format!("account request: {}", bounded(&e))))?;
    Ok(Tracked {
        request,
        record_id: None,
        attempt: 0,
        first_seen: now,
        generation: 0,
        failure: None,
    })
}

/// The JSON type a message field must have.
#[derive(Clone, Copy)]
enum Shape {
    Text,
    OptionalText,
    TextList,
    Object,
    Count,
    Seconds,
    Any,
}

const REQUEST_FIELDS: &[(&str, Shape)] = &[
    ("AccountName", Shape::Text),
    ("AccountEmail", Shape::Text),
    ("ManagedOrganizationalUnit", Shape::Text),
    ("SSOUserEmail", Shape::Text),
    ("SSOUserFirstName", Shape::Text),
    ("SSOUserLastName", Shape::Text),
    ("Entitlements", Shape::TextList),
    ("ProvisionedProductName", Shape::OptionalText),
];

const TRACKED_FIELDS: &[(&str, Shape)] = &[
    ("request", Shape::Object),
    ("recordId", Shape::OptionalText),
    ("attempt", Shape::Count),
    ("firstSeen", Shape::Seconds),
    ("generation", Shape::Count),
    ("failure", Shape::Any),
];

/// Checks the type of every known field, so that the error names the field and says what was
/// there (serde's own message names neither); unknown fields are left to serde.
fn check_types(
    obj: &serde_json::Map<String, Value>,
    prefix: &str,
    fields: &[(&str, Shape)],
) -> Result<(), Error> {
    for (name, shape) in fields {
        let Some(value) = obj.get(*name) else {
            continue;
        };
        let (ok, expected) = match shape {
            Shape::Text => (value.is_string(), "a string"),
            Shape::OptionalText => (value.is_string() || value.is_null(), "a string"),
            Shape::TextList => (
                value
                    .as_array()
                    .is_some_and(|items| items.iter().all(Value::is_string)),
                "an array of strings",
            ),
            Shape::Object => (value.is_object(), "an object"),
            Shape::Count => (
                value.as_u64().is_some_and(|n| u32::try_from(n).is_ok()),
                "a whole number from 0 to 4294967295",
            ),
            Shape::Seconds => (value.is_u64(), "a whole number of Unix seconds"),
            Shape::Any => (true, ""),
        };
        if !ok {
            return Err(Error::InvalidInput(format!(
                "{prefix}{name} must be {expected}, got {}",
                describe(value)
            )));
        }
    }
    Ok(())
}

/// serde's message, bounded (it can quote a field name the sender chose).
fn bounded(e: &serde_json::Error) -> String {
    truncate(&e.to_string(), 4 * ECHO_MAX_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn good() -> AccountRequest {
        AccountRequest {
            account_name: "Sandbox 7".into(),
            account_email: "aws+sandbox7@example.com".into(),
            managed_organizational_unit: "Sandbox (ou-ab12-cdef3456)".into(),
            sso_user_email: "jane.doe@example.com".into(),
            sso_user_first_name: "Jane".into(),
            sso_user_last_name: "Doe".into(),
            entitlements: vec!["prod-sku-1".into()],
            provisioned_product_name: None,
        }
    }

    #[test]
    fn valid_request() {
        let v = validate(&good(), Some("ct-entitlements:licenses")).expect("valid");
        assert_eq!(v.provisioned_product_name, "Sandbox-7");
        assert_eq!(v.entitlements, vec![LicenseRef::Sku("prod-sku-1".into())]);
    }

    #[test]
    fn every_problem_is_reported() {
        let bad = AccountRequest {
            account_name: "".into(),
            account_email: "not-an-email".into(),
            managed_organizational_unit: "Sandbox (ou-bad)".into(),
            sso_user_email: "jane@localhost".into(),
            sso_user_first_name: "".into(),
            sso_user_last_name: "Doe".into(),
            entitlements: vec!["bad sku".into()],
            provisioned_product_name: Some("-x".into()),
        };
        let Err(Error::InvalidInput(msg)) = validate(&bad, None) else {
            panic!("expected invalid input")
        };
        for needle in [
            "AccountName \"\"",
            "AccountEmail \"not-an-email\"",
            "SSOUserEmail \"jane@localhost\"",
            "SSOUserFirstName",
            "ManagedOrganizationalUnit \"Sandbox (ou-bad)\"",
            "Entitlements: \"bad sku\"",
            "ProvisionedProductName \"-x\"",
        ] {
            assert!(msg.contains(needle), "{needle} in {msg}");
        }
        assert!(!msg.contains("SSOUserLastName"), "{msg}");
    }

    #[test]
    fn entitlements_need_the_tag_key_and_must_fit() {
        let Err(Error::InvalidInput(msg)) = validate(&good(), None) else {
            panic!("expected invalid input")
        };
        assert!(msg.contains("LICENSES_TAG_KEY"), "{msg}");
        let mut many = good();
        many.entitlements = (0..4)
            .map(|i| format!("arn:aws:license-manager::294406891311:license:l-{i:032x}"))
            .collect();
        let Err(Error::InvalidInput(msg)) = validate(&many, Some("k")) else {
            panic!("expected invalid input")
        };
        assert!(msg.contains("at most 256"), "{msg}");
    }

    #[test]
    fn managed_ou_forms() {
        assert_eq!(parse_managed_ou("Sandbox"), Ok(("Sandbox".into(), None)));
        assert_eq!(
            parse_managed_ou("Sandbox (ou-ab12-cdef3456)"),
            Ok(("Sandbox".into(), Some("ou-ab12-cdef3456".into())))
        );
        assert_eq!(
            parse_managed_ou("My (team)"),
            Ok(("My (team)".into(), None))
        );
        for bad in [
            "",
            "Sandbox (ou-ab12-cdef3456",
            "Sandbox(ou-ab12-cdef3456)",
            "Sandbox (ou-AB12-cdef3456)",
            "Sandbox (ou-ab12)",
        ] {
            assert!(parse_managed_ou(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn emails() {
        for ok in [
            "a@b.co",
            "aws+team-1@mail.example.org",
            "first.last@example.com",
        ] {
            assert!(is_email(ok), "{ok}");
        }
        for bad in [
            "",
            "a",
            "@b.co",
            "a@",
            "a@b",
            "a b@c.com",
            "a@b..com",
            "a@-b.com",
            "a@b.c0m",
            ".a@b.com",
            "a@@b.com",
        ] {
            assert!(!is_email(bad), "{bad}");
        }
    }

    #[test]
    fn each_generation_gets_its_own_provisioned_product_name() {
        assert_eq!(generation_name("Sandbox-7", 0).0, "Sandbox-7");
        let (name, reason) = generation_name("Sandbox-7", 1);
        assert_eq!(name, "Sandbox-7-r1");
        assert!(
            reason.contains("FAILED provisioned product Sandbox-7 "),
            "{reason}"
        );
        let (name, reason) = generation_name("Sandbox-7", 2);
        assert_eq!(name, "Sandbox-7-r2");
        assert!(reason.contains("Sandbox-7-r1"), "{reason}");
        let long = "a".repeat(128);
        let (name, _) = generation_name(&long, 12);
        assert_eq!(name.len(), 128);
        assert!(name.ends_with("-r12"));
    }

    #[test]
    fn tokens_are_deterministic_per_email_and_generation() {
        assert_eq!(provision_token("A@B.co", 0), provision_token("a@b.co", 0));
        assert_ne!(provision_token("a@b.co", 0), provision_token("a@b.co", 1));
        assert_ne!(provision_token("a@b.co", 0), provision_token("c@b.co", 0));
        let t = provision_token("a@b.co", 0);
        assert_eq!(t.len(), 37);
        assert!(t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    }

    #[test]
    fn messages() {
        let new = parse_message(&serde_json::to_value(good()).expect("json"), 100).expect("new");
        assert_eq!(
            (new.record_id.as_deref(), new.first_seen, new.generation),
            (None, 100, 0)
        );
        let parked = json!({"request": good(), "recordId": "rec-1", "attempt": 7, "firstSeen": 5, "generation": 1, "failure": {"status": "FAILED"}});
        let redriven = parse_message(&parked, 200).expect("redriven");
        assert_eq!(
            (
                redriven.record_id,
                redriven.attempt,
                redriven.first_seen,
                redriven.generation,
                redriven.failure
            ),
            (None, 0, 200, 2, None)
        );
        // Parked after the account existed (say, tagging was denied): tracking resumes.
        let mut parked = parked;
        parked["failure"] = json!({"status": "ERROR"});
        let resumed = parse_message(&parked, 300).expect("redriven");
        assert_eq!(
            (
                resumed.record_id.as_deref(),
                resumed.attempt,
                resumed.first_seen,
                resumed.generation
            ),
            (Some("rec-1"), 0, 300, 1)
        );
        for bad in [
            json!([]),
            json!({"AccountName": "x", "Extra": 1}),
            json!({"request": {}, "bogus": 1}),
        ] {
            assert_eq!(
                parse_message(&bad, 1).map_err(|e| e.kind()).err(),
                Some("InvalidInput"),
                "{bad}"
            );
        }
    }
}
