//! The configuration document: the license selection (licenses, OU rules, distribution modes,
//! target OUs, account tag filter) as one JSON object, read from one version of an S3 object
//! instead of the selection's environment variables, which Lambda caps at 4 KB for all of a
//! function's variables together.
//!
//! The licenses tag key (`LICENSES_TAG_KEY`) stays a variable: it is one short value that does
//! not grow with the organization, and account-vending, which reads no document, tags new
//! accounts with it.
//!
//! The document is checked by the validators the environment's selection goes through, so
//! both accept the same values; errors name the field's path (`ouLicenseRules["ou-…"][2]`).
//! Parsing makes no AWS call. Reading the object is `aws::read_document`, at cold start `startup::load`.

use super::env::Env;
use super::modes::{self, Mode};
use super::selection::{self, LicenseRef, Names, Selected, Selection};
use super::vars::*;
use crate::error::{describe, echo, Error};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The document format this release reads (`"version": 1`).
pub(crate) const FORMAT_VERSION: u64 = 1;

/// The largest document read (bytes): a thousand OU rules of three ARNs take about 300 KB.
pub(crate) const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// Lambda's limit on a function's environment variables, all together (bytes).
pub const LAMBDA_ENVIRONMENT_LIMIT: usize = 4096;

/// The environment variables the document replaces, with the value each has in the template
/// when its parameter is left at its default. With a document, each must be unset (in a
/// function's environment) or at this default (as a stack parameter).
pub const SELECTION_VARIABLES: &[(&str, &str)] = &[
    (ALL_MARKETPLACE_LICENSES, "false"),
    (LICENSE_ARNS, ""),
    (PRODUCT_SKUS, ""),
    (OU_LICENSE_RULES, ""),
    (LICENSE_DISTRIBUTION, ""),
    (TARGET_OUS, ""),
    (ACCOUNT_TAG_FILTER, ""),
];

/// The document's fields, in the order they are checked.
const FIELDS: &[&str] = &[
    "version",
    "allMarketplaceLicenses",
    "licenses",
    "ouLicenseRules",
    "targetOus",
    "accountTagFilter",
    "licenseDistribution",
];

const NAMES: Names = Names {
    listed_all: "licenses",
    listed_any: "licenses",
    all_marketplace: "allMarketplaceLicenses",
    ou_rules: "ouLicenseRules",
    distribution: "licenseDistribution",
    target_ous: "targetOus",
    account_tag_filter: "accountTagFilter",
};

/// A checked document: the selection settings and the distribution modes.
#[derive(Debug, Clone)]
pub struct Document {
    pub(super) selected: Selected,
    pub(super) distribution: BTreeMap<LicenseRef, Mode>,
    bytes: usize,
}

/// What a document selects, in numbers (what `config check` prints).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub bytes: usize,
    pub all_marketplace_licenses: bool,
    pub licenses: usize,
    pub ou_rules: usize,
    pub distribution_modes: usize,
    pub target_ous: usize,
    pub account_tag_filter: Option<String>,
}

/// Checks a configuration document's text as the functions read it, without any AWS call.
pub fn check_document(text: &str) -> Result<Summary, Error> {
    Document::parse(text).map(|d| d.summary())
}

impl Document {
    /// Parses and checks a document (a license selection is required): unknown fields, wrong
    /// types and every value the environment's parsers refuse are errors naming the field.
    pub fn parse(text: &str) -> Result<Self, Error> {
        if text.len() > MAX_DOCUMENT_BYTES {
            return Err(Error::Config(format!(
                "configuration document: {} bytes, over the {MAX_DOCUMENT_BYTES} bytes read",
                text.len()
            )));
        }
        let Strict(value) = serde_json::from_str(text).map_err(|e| {
            Error::Config(match e.classify() {
                serde_json::error::Category::Data => format!("configuration document: {e}"),
                _ => format!("configuration document: not JSON: {e}"),
            })
        })?;
        let Value::Object(fields) = value else {
            return Err(Error::Config(format!(
                "configuration document: expected a JSON object, got {}",
                describe(&value)
            )));
        };
        if let Some(unknown) = fields.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(Error::Config(format!(
                "{}: unknown field (the fields are {})",
                echo(unknown),
                FIELDS.join(", ")
            )));
        }
        version(fields.get("version"))?;
        let selected = Selected {
            selection: selection_of(&fields)?,
            ou_rules: ou_rules(fields.get("ouLicenseRules"))?,
            target_ous: target_ous(fields.get("targetOus"))?,
            account_tag_filter: account_tag_filter(fields.get("accountTagFilter"))?,
            // The environment's (`LICENSES_TAG_KEY`), set by the reader.
            licenses_tag_key: None,
        };
        let items = distribution_items(fields.get("licenseDistribution"))?;
        let distribution = modes::distribution(items, &selected, &NAMES)?;
        Ok(Document {
            selected,
            distribution,
            bytes: text.len(),
        })
    }

    /// The document in numbers.
    pub fn summary(&self) -> Summary {
        let s = &self.selected;
        Summary {
            bytes: self.bytes,
            all_marketplace_licenses: s.selection == Selection::AllMarketplace,
            licenses: match &s.selection {
                Selection::Listed(l) => l.len(),
                Selection::AllMarketplace | Selection::PerRequest => 0,
            },
            ou_rules: s.ou_rules.len(),
            distribution_modes: self.distribution.len(),
            target_ous: s.target_ous.len(),
            account_tag_filter: s
                .account_tag_filter
                .as_ref()
                .map(|(k, v)| format!("{k}={v}")),
        }
    }
}

/// A JSON value read with every object's keys unique: a repeated key (two rules for one OU,
/// say) is refused with its line and column instead of the last one silently winning.
struct Strict(Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(serde::de::Error::custom(format_args!(
                    "duplicate key {}",
                    echo(&key)
                )));
            }
            let Strict(value) = map.next_value()?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

fn version(value: Option<&Value>) -> Result<(), Error> {
    match value {
        Some(v) if v.as_u64() == Some(FORMAT_VERSION) => Ok(()),
        None => Err(Error::Config(format!(
            "version: missing (this release reads \"version\": {FORMAT_VERSION})"
        ))),
        Some(other) => Err(Error::Config(format!(
            "version: {} is not a version this release reads ({FORMAT_VERSION})",
            describe(other)
        ))),
    }
}

/// A list of strings at `path` (absent: empty).
fn strings<'a>(value: Option<&'a Value>, path: &str) -> Result<Vec<&'a str>, Error> {
    let items = match value {
        None => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(Error::Config(format!(
                "{path}: expected a list of strings, got {}",
                describe(other)
            )))
        }
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            item.as_str().ok_or_else(|| {
                Error::Config(format!(
                    "{path}[{i}]: expected a string, got {}",
                    describe(item)
                ))
            })
        })
        .collect()
}

/// An object at `path` (absent: empty).
fn object<'a>(
    value: Option<&'a Value>,
    path: &str,
    shape: &str,
) -> Result<Option<&'a Map<String, Value>>, Error> {
    match value {
        None => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map)),
        Some(other) => Err(Error::Config(format!(
            "{path}: expected an object {shape}, got {}",
            describe(other)
        ))),
    }
}

/// `licenses` (SKUs or license ARNs, without repeats) or `allMarketplaceLicenses`.
fn selection_of(fields: &Map<String, Value>) -> Result<Selection, Error> {
    let all = match fields.get("allMarketplaceLicenses") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(Error::Config(format!(
                "allMarketplaceLicenses: expected true or false, got {}",
                describe(other)
            )))
        }
    };
    let mut listed = Vec::new();
    for (i, item) in strings(fields.get("licenses"), "licenses")?
        .iter()
        .enumerate()
    {
        let license = LicenseRef::parse(item, &format!("licenses[{i}]"))?;
        if !listed.contains(&license) {
            listed.push(license);
        }
    }
    selection::choose(all, listed, true, &NAMES)
}

/// `ouLicenseRules`: OU id → the licenses of accounts directly in it.
fn ou_rules(value: Option<&Value>) -> Result<BTreeMap<String, Vec<LicenseRef>>, Error> {
    let mut rules = BTreeMap::new();
    let Some(map) = object(
        value,
        "ouLicenseRules",
        "{\"ou-…\": [\"sku or license ARN\", …]}",
    )?
    else {
        return Ok(rules);
    };
    for (ou, refs) in map {
        selection::ou_id(ou, "ouLicenseRules")?;
        let path = format!("ouLicenseRules[{}]", echo(ou));
        let refs = strings(Some(refs), &path)?
            .iter()
            .enumerate()
            .map(|(i, r)| LicenseRef::parse(r, &format!("{path}[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        rules.insert(ou.clone(), refs);
    }
    Ok(rules)
}

/// `targetOus`: OU ids.
fn target_ous(value: Option<&Value>) -> Result<Vec<String>, Error> {
    let ous = strings(value, "targetOus")?;
    for (i, ou) in ous.iter().enumerate() {
        selection::ou_id(ou.trim(), &format!("targetOus[{i}]"))?;
    }
    Ok(ous.iter().map(|ou| ou.trim().to_string()).collect())
}

/// `accountTagFilter`: `{"key": …, "value": …}` (both trimmed; the key not empty).
fn account_tag_filter(value: Option<&Value>) -> Result<Option<(String, String)>, Error> {
    let Some(map) = object(value, "accountTagFilter", "{\"key\": …, \"value\": …}")? else {
        return Ok(None);
    };
    if let Some(unknown) = map.keys().find(|k| !["key", "value"].contains(&k.as_str())) {
        return Err(Error::Config(format!(
            "accountTagFilter.{}: unknown field (the fields are key, value)",
            unknown.chars().take(64).collect::<String>()
        )));
    }
    let text = |field: &str| match map.get(field) {
        Some(Value::String(s)) => Ok(s.trim().to_string()),
        other => Err(Error::Config(format!(
            "accountTagFilter.{field}: expected a string, got {}",
            other.map_or_else(|| "nothing".to_string(), describe)
        ))),
    };
    let key = text("key")?;
    if key.is_empty() {
        return Err(Error::Config(
            "accountTagFilter.key: must not be empty".to_string(),
        ));
    }
    Ok(Some((key, text("value")?)))
}

/// `licenseDistribution`: license (SKU or ARN) → `account`, `organization` or `ou`.
fn distribution_items(value: Option<&Value>) -> Result<Vec<(LicenseRef, Mode)>, Error> {
    let Some(map) = object(
        value,
        "licenseDistribution",
        "{\"sku or license ARN\": \"account|organization|ou\"}",
    )?
    else {
        return Ok(Vec::new());
    };
    map.iter()
        .map(|(license, mode)| {
            let path = format!("licenseDistribution[{}]", echo(license));
            let license = LicenseRef::parse(license, "licenseDistribution")?;
            let Value::String(mode) = mode else {
                return Err(Error::Config(format!(
                    "{path}: expected \"account\", \"organization\" or \"ou\", got {}",
                    describe(mode)
                )));
            };
            Ok((license, Mode::parse(mode, &path)?))
        })
        .collect()
}

/// Where the document is: `CONFIG_DOCUMENT` (`s3://bucket/key`) and the version to read,
/// `CONFIG_DOCUMENT_VERSION`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentSource {
    pub bucket: String,
    pub key: String,
    pub version_id: String,
}

impl DocumentSource {
    /// Parses `s3://bucket/key` (named `location_name` in errors) and a version id (named
    /// `version_name`): a version is required, and S3's `null` (an object written while the
    /// bucket was unversioned) is refused, because a rollback could not bring an older
    /// document back.
    pub fn parse(
        location: &str,
        version: Option<&str>,
        location_name: &str,
        version_name: &str,
    ) -> Result<Self, Error> {
        let location = location.trim();
        let Some((bucket, key)) = location
            .strip_prefix("s3://")
            .and_then(|rest| rest.split_once('/'))
        else {
            return Err(Error::Config(format!(
                "{location_name}: {} is not an S3 object URL (s3://bucket/key)",
                echo(location)
            )));
        };
        if !is_bucket_name(bucket) || key.is_empty() || key.len() > 1024 {
            return Err(Error::Config(format!(
                "{location_name}: {} is not an S3 object URL (s3://bucket/key: a bucket name of 3 to 63 lowercase letters, digits, '.' or '-', and a key)",
                echo(location)
            )));
        }
        let version_id = version.map(str::trim).unwrap_or_default();
        if version_id.is_empty() {
            return Err(Error::Config(format!(
                "{version_name}: required with {location_name}: the version id S3 gave the document when it was uploaded (a deployment pins one version, so that a rollback restores the document it had)"
            )));
        }
        if version_id == "null"
            || version_id.len() > 1024
            || !version_id.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(Error::Config(format!(
                "{version_name}: {} is not a version id of a versioned bucket: turn versioning on for the bucket and upload the document again",
                echo(version_id)
            )));
        }
        Ok(DocumentSource {
            bucket: bucket.to_string(),
            key: key.to_string(),
            version_id: version_id.to_string(),
        })
    }

    /// The document named by the environment (`CONFIG_DOCUMENT`, `CONFIG_DOCUMENT_VERSION`),
    /// if any.
    pub(super) fn from_env(env: &Env<'_>) -> Result<Option<Self>, Error> {
        match env.get(CONFIG_DOCUMENT) {
            None => match env.get(CONFIG_DOCUMENT_VERSION) {
                None => Ok(None),
                Some(_) => Err(Error::Config(format!(
                    "{CONFIG_DOCUMENT_VERSION}: set without {CONFIG_DOCUMENT}"
                ))),
            },
            Some(location) => Self::parse(
                &location,
                env.get(CONFIG_DOCUMENT_VERSION).as_deref(),
                CONFIG_DOCUMENT,
                CONFIG_DOCUMENT_VERSION,
            )
            .map(Some),
        }
    }

    /// `s3://bucket/key`.
    pub fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }
}

/// An S3 bucket name (general purpose): 3 to 63 lowercase letters, digits, `.` and `-`,
/// starting and ending with a letter or digit.
fn is_bucket_name(raw: &str) -> bool {
    let edge = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    (3..=63).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && edge(raw.as_bytes().first())
        && edge(raw.as_bytes().last())
}

/// With a document, the environment's selection variables must be unset: the selection has
/// one source.
pub(super) fn refuse_selection_variables(env: &Env<'_>) -> Result<(), Error> {
    let set: Vec<&str> = SELECTION_VARIABLES
        .iter()
        .map(|(var, _)| *var)
        .filter(|var| env.get(var).is_some())
        .collect();
    if set.is_empty() {
        return Ok(());
    }
    Err(Error::Config(format!(
        "{CONFIG_DOCUMENT} and {} are both set: the selection comes from the configuration document or from the environment, not both",
        set.join(", ")
    )))
}

/// The size Lambda's limit applies to, as measured here: the variables as one JSON object
/// (`{"NAME":"value",…}`, names and values with their quotes, separators and escapes), which
/// is at least the names and values alone.
pub fn environment_size(variables: &BTreeMap<String, String>) -> usize {
    serde_json::to_string(variables).map_or(usize::MAX, |s| s.len())
}

/// Refuses an environment over [`LAMBDA_ENVIRONMENT_LIMIT`] (`function` names it), naming the
/// limit and the largest variable; returns its size.
pub fn check_environment_size(
    function: &str,
    variables: &BTreeMap<String, String>,
) -> Result<usize, Error> {
    let size = environment_size(variables);
    if size <= LAMBDA_ENVIRONMENT_LIMIT {
        return Ok(size);
    }
    let largest = variables
        .iter()
        .max_by_key(|(k, v)| k.len() + v.len())
        .map(|(k, v)| format!("; {k} takes {} bytes", v.len()))
        .unwrap_or_default();
    Err(Error::Config(format!(
        "{function}: its environment variables would take {size} bytes, over Lambda's limit of {LAMBDA_ENVIRONMENT_LIMIT} bytes (4 KB) for all of a function's variables together{largest}: put the selection in a configuration document (the ConfigurationDocument parameter, docs/configuration.md)"
    )))
}

#[cfg(test)]
mod tests;
