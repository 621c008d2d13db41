//! The `Custom::ConfigurationCheck` resource: at deploy, before the deciding functions are
//! created or updated, it checks their configuration with the parser they run at cold start,
//! so that a bad selection fails the stack operation instead of every message at run time.
//!
//! * Environment path (no document): each function's environment, as the template gives it,
//!   goes through [`shared::config::Config::from_lookup`] and is measured against Lambda's 4 KB limit.
//! * Document path: the selection parameters must be at their defaults; the document's
//!   pinned version is read (`s3:GetObjectVersion`) and checked with
//!   [`shared::config::Document::parse`]; every function's remaining environment is checked
//!   and measured with the document's location and version in it.
//!
//! Everything that can be checked without S3 is checked first: a refusal there makes no AWS
//! call. The answer's `VersionId` is the version the functions read (empty without a document).

use crate::{answer_request, Work};
use serde_json::Value;
use shared::config::document::{check_environment_size, SELECTION_VARIABLES};
use shared::config::vars::{CONFIG_DOCUMENT, CONFIG_DOCUMENT_VERSION};
use shared::config::{Document, DocumentSource};
use shared::custom_resource::{Responder, Response, Target};
use shared::error::{describe, echo};
use shared::report::CallLog;
use shared::{config::Config, error::Error};
use std::collections::BTreeMap;
use tokio::time::Instant;

/// The resource type the template gives the check.
pub const RESOURCE_TYPE: &str = "Custom::ConfigurationCheck";
/// The check's physical id: one per stack.
pub const PHYSICAL_ID: &str = "ct-entitlements-configuration-check";

/// The stack parameter behind each selection variable (for messages).
const PARAMETERS: &[(&str, &str)] = &[
    ("ALL_MARKETPLACE_LICENSES", "AllMarketplaceLicenses"),
    ("LICENSE_ARNS", "LicenseArns"),
    ("PRODUCT_SKUS", "ProductSkus"),
    ("OU_LICENSE_RULES", "OuLicenseRules"),
    ("LICENSE_DISTRIBUTION", "LicenseDistribution"),
    ("TARGET_OUS", "TargetOus"),
    ("ACCOUNT_TAG_FILTER", "AccountTagFilter"),
    ("LICENSES_TAG_KEY", "LicensesTagKey"),
];

pub struct CheckApp {
    pub s3: aws_sdk_s3::Client,
    pub responder: Responder,
}

/// What the check is asked to check: the properties, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRequest {
    /// The document, when the `ConfigurationDocument` parameter is set.
    pub document: Option<DocumentSource>,
    /// Function → its environment as the environment path gives it.
    pub environments: BTreeMap<String, BTreeMap<String, String>>,
}

/// Handles one `Custom::ConfigurationCheck` request; returns the response it sent.
pub async fn handle(app: &CheckApp, payload: Value, deadline: Instant) -> Result<Value, Error> {
    answer_request(&app.responder, app, payload, deadline).await
}

impl Work for CheckApp {
    const WHAT: &'static str = "the configuration check";
    const PHYSICAL_ID: &'static str = PHYSICAL_ID;
    async fn respond(&self, payload: &Value, target: &Target) -> Response {
        respond(self, payload, target).await
    }
}

async fn respond(app: &CheckApp, payload: &Value, target: &Target) -> Response {
    let physical = target
        .physical_resource_id
        .clone()
        .unwrap_or_else(|| PHYSICAL_ID.to_string());
    match target.request_type.as_str() {
        "Delete" => Response::success(target, physical, "nothing to undo".into()),
        "Create" | "Update" => match run(app, payload).await {
            Ok((reason, data)) => Response::success(target, physical, reason).with_data(data),
            Err(e) => {
                tracing::error!(error = %e, "configuration refused");
                Response::failed(target, physical, e.to_string())
            }
        },
        other => Response::failed(
            target,
            physical,
            format!("unknown RequestType {}", echo(other)),
        ),
    }
}

/// The check: the pure part, then the document (when there is one).
async fn run(app: &CheckApp, payload: &Value) -> Result<(String, BTreeMap<String, String>), Error> {
    let request = CheckRequest::from_payload(payload)?;
    let environments = request.environments_to_check()?;
    let mut sizes: Vec<String> = Vec::new();
    for (function, env) in &environments {
        sizes.push(format!(
            "{function}={}",
            check_environment_size(function, env)?
        ));
    }
    let (version, what) = match &request.document {
        None => (String::new(), "environment path".to_string()),
        Some(source) => {
            let text = shared::aws::read_document(&app.s3, source, &CallLog::default()).await?;
            let document = Document::parse(&text)?;
            for env in environments.values() {
                Config::from_lookup_with_document(|k| env.get(k).cloned(), Some(&document))?;
            }
            let s = document.summary();
            (
                source.version_id.clone(),
                format!(
                    "{} version {}: {} bytes, {} licenses{}, {} OU rules, {} distribution modes, {} target OUs",
                    source.url(),
                    source.version_id,
                    s.bytes,
                    s.licenses,
                    if s.all_marketplace_licenses { " (all Marketplace)" } else { "" },
                    s.ou_rules,
                    s.distribution_modes,
                    s.target_ous
                ),
            )
        }
    };
    let reason = format!(
        "configuration checked ({what}); environment bytes of {}: {}",
        shared::config::document::LAMBDA_ENVIRONMENT_LIMIT,
        sizes.join(", ")
    );
    let data = BTreeMap::from([
        ("VersionId".to_string(), version),
        ("EnvironmentBytes".to_string(), sizes.join(",")),
    ]);
    Ok((reason, data))
}

/// `Environments`: function → its variables (at least one function; CloudFormation passes
/// every scalar as a string, numbers and booleans are taken as their text).
fn environments_of(props: &Value) -> Result<BTreeMap<String, BTreeMap<String, String>>, Error> {
    let Some(Value::Object(functions)) = props.get("Environments") else {
        return Err(Error::InvalidInput(format!(
            "Environments must be an object (function → its environment variables), got {}",
            props
                .get("Environments")
                .map_or_else(|| "nothing".to_string(), describe)
        )));
    };
    if functions.is_empty() {
        return Err(Error::InvalidInput(
            "Environments names no function".to_string(),
        ));
    }
    let mut environments = BTreeMap::new();
    for (function, vars) in functions {
        let Value::Object(vars) = vars else {
            return Err(Error::InvalidInput(format!(
                "Environments.{}: expected an object of variables, got {}",
                echo(function),
                describe(vars)
            )));
        };
        let mut env = BTreeMap::new();
        for (name, value) in vars {
            let value = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                other => {
                    return Err(Error::InvalidInput(format!(
                        "Environments.{}.{}: expected a string, got {}",
                        echo(function),
                        echo(name),
                        describe(other)
                    )))
                }
            };
            env.insert(name.clone(), value);
        }
        environments.insert(function.clone(), env);
    }
    Ok(environments)
}

impl CheckRequest {
    /// Reads the properties: `ConfigurationDocument` (empty, or `s3://bucket/key`),
    /// `ConfigurationDocumentVersion`, and `Environments` (function → variables, at least one
    /// function; CloudFormation passes every scalar as a string).
    pub fn from_payload(payload: &Value) -> Result<Self, Error> {
        let props = match payload.get("ResourceProperties") {
            Some(p @ Value::Object(_)) => p,
            other => {
                return Err(Error::InvalidInput(format!(
                    "ResourceProperties must be an object, got {}",
                    other.map_or_else(|| "nothing".to_string(), describe)
                )))
            }
        };
        let text = |name: &str| match props.get(name) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.trim().to_string()),
            Some(other) => Err(Error::InvalidInput(format!(
                "{name} must be a string, got {}",
                describe(other)
            ))),
        };
        let location = text("ConfigurationDocument")?;
        let version = text("ConfigurationDocumentVersion")?;
        let document = if location.is_empty() {
            if !version.is_empty() {
                return Err(Error::Config(
                    "ConfigurationDocumentVersion is set but ConfigurationDocument is empty"
                        .to_string(),
                ));
            }
            None
        } else {
            Some(DocumentSource::parse(
                &location,
                Some(&version),
                "ConfigurationDocument",
                "ConfigurationDocumentVersion",
            )?)
        };
        let environments = environments_of(props)?;
        Ok(CheckRequest {
            document,
            environments,
        })
    }

    /// Each function's environment as it will be, checked with the functions' parser except
    /// for the document: without one, the whole environment; with one, the selection
    /// parameters must be at their defaults, and what remains (with the document's location
    /// and version) is checked. No AWS call.
    pub fn environments_to_check(
        &self,
    ) -> Result<BTreeMap<String, BTreeMap<String, String>>, Error> {
        let mut out = BTreeMap::new();
        for (function, env) in &self.environments {
            let effective = match &self.document {
                None => {
                    Config::from_lookup(|k| env.get(k).cloned())?;
                    env.clone()
                }
                Some(source) => {
                    let changed: Vec<String> = SELECTION_VARIABLES
                        .iter()
                        .filter(|(var, default)| {
                            env.get(*var).is_some_and(|v| v.trim() != *default)
                        })
                        .map(|(var, _)| parameter_of(var).to_string())
                        .collect();
                    if !changed.is_empty() {
                        return Err(Error::Config(format!(
                            "ConfigurationDocument is set, so the selection comes from the document, but {} {} set too: leave {} at {} default{} and put the selection in the document",
                            changed.join(", "),
                            if changed.len() == 1 { "is" } else { "are" },
                            if changed.len() == 1 { "it" } else { "them" },
                            if changed.len() == 1 { "its" } else { "their" },
                            if changed.len() == 1 { "" } else { "s" },
                        )));
                    }
                    let mut effective: BTreeMap<String, String> = env
                        .iter()
                        .filter(|(k, _)| !SELECTION_VARIABLES.iter().any(|(v, _)| v == k))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    Config::from_lookup_per_request(|k| effective.get(k).cloned())?;
                    effective.insert(CONFIG_DOCUMENT.to_string(), source.url());
                    effective.insert(
                        CONFIG_DOCUMENT_VERSION.to_string(),
                        source.version_id.clone(),
                    );
                    effective
                }
            };
            out.insert(function.clone(), effective);
        }
        Ok(out)
    }
}

fn parameter_of(var: &str) -> &str {
    PARAMETERS
        .iter()
        .find(|(v, _)| *v == var)
        .map_or(var, |(_, p)| p)
}
