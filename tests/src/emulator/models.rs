//! Every License Manager and Service Catalog request checked against AWS's published API
//! models: botocore's `service-2.json` (installed with moto, never vendored here).
//!
//! Checked, member by member from the operation's input shape: required members, members the
//! model does not know, JSON types (string, integer/long in range, boolean, list, map,
//! structure, timestamp, blob), enums, string length and number `min`/`max`, list and map sizes
//! and `pattern` (matched against the whole value). botocore patterns are Java regexes: one the
//! `regex` crate cannot compile is not checked, and counted as such, never failed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// A request member the model refuses (`GET /_emulator/model-violations`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ModelViolation {
    /// `license-manager` or `servicecatalog`.
    pub service: String,
    pub operation: String,
    /// Where in the request, e.g. `GrantName`, `AllowedOperations[2]`, `Tags[0].Key`.
    pub member: String,
    /// What the model asks, e.g. `Member must not be null`.
    pub constraint: String,
    /// The value sent (JSON, cut at 100 characters); `null` when missing.
    pub value: String,
}

/// What checking one request found.
#[derive(Debug, Default)]
pub struct Checked {
    pub violations: Vec<ModelViolation>,
    /// Patterns met that the `regex` crate could not compile (so were not checked).
    pub unchecked_patterns: Vec<String>,
}

impl Checked {
    /// AWS's answer to the violations: `1 validation error detected: Value 'x' at 'Member'
    /// failed to satisfy constraint: ...`.
    pub fn message(&self) -> String {
        let n = self.violations.len();
        let details = self
            .violations
            .iter()
            .map(|v| {
                format!(
                    "Value {} at '{}' failed to satisfy constraint: {}",
                    v.value, v.member, v.constraint
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        format!(
            "{n} validation error{} detected: {details}",
            if n == 1 { "" } else { "s" }
        )
    }
}

/// One service's model: its shapes and each operation's input shape.
pub struct ApiModel {
    pub version: String,
    /// The service's botocore name, e.g. `license-manager`, `iam`.
    service: String,
    /// `metadata.protocol`: `json`, `query`, …
    pub protocol: String,
    shapes: Map<String, Value>,
    inputs: HashMap<String, Option<String>>,
    /// Pattern → its anchored compilation (`None`: the crate cannot compile it).
    patterns: Mutex<HashMap<String, Option<Regex>>>,
}

/// The model of `service` (its botocore directory name, e.g. `license-manager`, `iam`), read
/// once per process; `None` (with one warning) when it cannot be found or read.
pub fn model(service: &str) -> Option<&'static ApiModel> {
    static MODELS: OnceLock<Mutex<HashMap<String, Option<&'static ApiModel>>>> = OnceLock::new();
    let mut models = MODELS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    *models.entry(service.to_string()).or_insert_with(|| {
        match botocore_data_dir()
            .ok_or_else(|| "botocore is not installed where the checker looks".to_string())
            .and_then(|data| ApiModel::load(service, &data.join(service)))
        {
            Ok(model) => Some(&*Box::leak(Box::new(model))),
            Err(e) => {
                tracing::warn!(
                    "{service} requests are not checked against AWS's model: {e} \
                     (looked under $MOTO_SERVER, $VIRTUAL_ENV and <workspace>/.venv)"
                );
                eprintln!("warning: {service} requests are not checked against AWS's model: {e}");
                None
            }
        }
    })
}

/// `<venv>/lib/python3.*/site-packages/botocore/data`, the venv being `$MOTO_SERVER`'s
/// (`<venv>/bin/moto_server`), `$VIRTUAL_ENV` or `<workspace>/.venv`.
fn botocore_data_dir() -> Option<PathBuf> {
    let mut venvs = Vec::new();
    if let Some(moto) = std::env::var_os("MOTO_SERVER").filter(|p| !p.is_empty()) {
        if let Some(venv) = Path::new(&moto).parent().and_then(Path::parent) {
            venvs.push(venv.to_path_buf());
        }
    }
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV").filter(|p| !p.is_empty()) {
        venvs.push(PathBuf::from(venv));
    }
    venvs.push(crate::lambda::workspace_root().join(".venv"));
    venvs.iter().find_map(|venv| {
        let mut pythons = std::fs::read_dir(venv.join("lib"))
            .ok()?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("python"))
            })
            .collect::<Vec<_>>();
        pythons.sort();
        pythons
            .iter()
            .rev()
            .map(|p| p.join("site-packages").join("botocore").join("data"))
            .find(|p| p.is_dir())
    })
}

impl ApiModel {
    /// Reads the newest `<dir>/<version>/service-2.json(.gz)`.
    pub fn load(service: &str, dir: &Path) -> Result<Self, String> {
        let mut versions = std::fs::read_dir(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .flatten()
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .collect::<Vec<_>>();
        versions.sort();
        let version = versions
            .pop()
            .ok_or_else(|| format!("{}: no model version", dir.display()))?;
        let base = dir.join(&version);
        let text = match std::fs::read(base.join("service-2.json.gz")) {
            Ok(gz) => {
                let mut text = String::new();
                flate2::read::GzDecoder::new(gz.as_slice())
                    .read_to_string(&mut text)
                    .map_err(|e| format!("{}/service-2.json.gz: {e}", base.display()))?;
                text
            }
            Err(_) => std::fs::read_to_string(base.join("service-2.json"))
                .map_err(|e| format!("{}/service-2.json: {e}", base.display()))?,
        };
        Self::parse(service, &version, &text)
    }

    /// A model from the text of a `service-2.json`.
    pub fn parse(service: &str, version: &str, text: &str) -> Result<Self, String> {
        let mut model: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let shapes = match model.get_mut("shapes").map(Value::take) {
            Some(Value::Object(shapes)) => shapes,
            _ => return Err("the model has no shapes".to_string()),
        };
        let inputs = model["operations"]
            .as_object()
            .ok_or("the model has no operations")?
            .iter()
            .map(|(op, def)| {
                (
                    op.clone(),
                    def["input"]["shape"].as_str().map(str::to_string),
                )
            })
            .collect();
        let protocol = model["metadata"]["protocol"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        Ok(Self {
            version: version.to_string(),
            service: service.to_string(),
            protocol,
            shapes,
            inputs,
            patterns: Mutex::new(HashMap::new()),
        })
    }

    /// Checks `input` against `op`'s input shape; `None` if the model has no such operation.
    pub fn check(&self, op: &str, input: &Value) -> Option<Checked> {
        let shape = self.inputs.get(op)?;
        let mut walk = Walk {
            model: self,
            op,
            checked: Checked::default(),
        };
        match shape.as_ref().and_then(|shape| self.shapes.get(shape)) {
            Some(def) => walk.structure("", def, input),
            // An operation without input takes `{}`.
            None => walk.structure("", &Value::Null, input),
        }
        Some(walk.checked)
    }

    /// Checks a query-protocol request (IAM, STS, SNS, CloudFormation: `Action=Op&Version=…`
    /// and the input flattened into form parameters) against `op`'s input shape; `None` if
    /// the model has no such operation. The parameters are read back into the JSON shape
    /// [`ApiModel::check`] takes by botocore's query serialization rules (`Name.member.N`
    /// lists, `Name.entry.N.key`/`.value` maps, `locationName`, flattened lists and maps); a
    /// parameter no member of the input claims is a member the model does not know.
    pub fn check_query(&self, op: &str, params: &[(String, String)]) -> Option<Checked> {
        let shape = self.inputs.get(op)?;
        let given: HashMap<&str, &str> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let mut read = QueryRead {
            model: self,
            params: &given,
            used: HashSet::new(),
        };
        let input = match shape {
            Some(shape) => read.value(shape, "").unwrap_or_else(|| json!({})),
            None => json!({}),
        };
        let mut checked = self.check(op, &input)?;
        for (key, value) in params {
            if key != "Action" && key != "Version" && !read.used.contains(key.as_str()) {
                checked.violations.push(ModelViolation {
                    service: self.service.clone(),
                    operation: op.to_string(),
                    member: key.clone(),
                    constraint: "Member is not in the model".to_string(),
                    value: show(&Value::String(value.clone())),
                });
            }
        }
        Some(checked)
    }

    /// `Some(matches)`, or `None` when the pattern cannot be compiled.
    fn matches(&self, pattern: &str, value: &str) -> Option<bool> {
        let mut cache = self.patterns.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .entry(pattern.to_string())
            .or_insert_with(|| Regex::new(&format!("^(?:{pattern})$")).ok())
            .as_ref()
            .map(|re| re.is_match(value))
    }
}

/// Reads query-protocol parameters back into JSON, noting the parameters it used.
struct QueryRead<'a> {
    model: &'a ApiModel,
    params: &'a HashMap<&'a str, &'a str>,
    used: HashSet<String>,
}

/// A member reference's serialized name: its `locationName`, else `default`.
fn location_name<'v>(reference: &'v Value, default: &'v str) -> &'v str {
    reference["locationName"].as_str().unwrap_or(default)
}

impl QueryRead<'_> {
    fn take(&mut self, key: &str) -> Option<&str> {
        let value = self.params.get(key).copied()?;
        self.used.insert(key.to_string());
        Some(value)
    }

    /// The value of shape `name` serialized under `prefix`; `None` when nothing was sent.
    fn value(&mut self, name: &str, prefix: &str) -> Option<Value> {
        let def = self.model.shapes.get(name)?;
        match def["type"].as_str().unwrap_or_default() {
            "structure" => {
                let mut fields = Map::new();
                for (member, reference) in def["members"].as_object().into_iter().flatten() {
                    let Some(shape) = reference["shape"].as_str() else {
                        continue;
                    };
                    let key = join(prefix, location_name(reference, member));
                    if let Some(value) = self.value(shape, &key) {
                        fields.insert(member.clone(), value);
                    }
                }
                (prefix.is_empty() || !fields.is_empty()).then_some(Value::Object(fields))
            }
            "list" => {
                // An empty list is sent as the bare name with an empty value.
                if self.params.get(prefix) == Some(&"") {
                    self.take(prefix);
                    return Some(json!([]));
                }
                let member = &def["member"];
                let shape = member["shape"].as_str()?;
                let items_at = if def["flattened"].as_bool() == Some(true) {
                    match member["locationName"].as_str() {
                        Some(name) => match prefix.rsplit_once('.') {
                            Some((parent, _)) => format!("{parent}.{name}"),
                            None => name.to_string(),
                        },
                        None => prefix.to_string(),
                    }
                } else {
                    format!("{prefix}.{}", location_name(member, "member"))
                };
                let mut items = Vec::new();
                while let Some(item) = self.value(shape, &format!("{items_at}.{}", items.len() + 1))
                {
                    items.push(item);
                }
                (!items.is_empty()).then_some(Value::Array(items))
            }
            "map" => {
                let entries_at = if def["flattened"].as_bool() == Some(true) {
                    prefix.to_string()
                } else {
                    format!("{prefix}.entry")
                };
                let key_name = location_name(&def["key"], "key");
                let value_name = location_name(&def["value"], "value");
                let value_shape = def["value"]["shape"].as_str()?;
                let mut entries = Map::new();
                for i in 1.. {
                    let at = format!("{entries_at}.{i}");
                    let key = self.take(&format!("{at}.{key_name}")).map(str::to_string);
                    let value = self.value(value_shape, &format!("{at}.{value_name}"));
                    match (key, value) {
                        (None, None) => break,
                        (key, value) => {
                            entries.insert(key.unwrap_or_default(), value.unwrap_or(Value::Null));
                        }
                    }
                }
                (!entries.is_empty()).then_some(Value::Object(entries))
            }
            kind => {
                let text = self.take(prefix)?;
                let as_text = || Value::String(text.to_string());
                Some(match kind {
                    "integer" | "long" => {
                        text.parse::<i64>().map_or_else(|_| as_text(), Value::from)
                    }
                    "double" | "float" => text
                        .parse::<f64>()
                        .ok()
                        .and_then(|n| serde_json::Number::from_f64(n).map(Value::Number))
                        .unwrap_or_else(as_text),
                    "boolean" => match text {
                        "true" => Value::Bool(true),
                        "false" => Value::Bool(false),
                        _ => as_text(),
                    },
                    // ISO 8601 (botocore's and the SDK's choice) or epoch seconds.
                    "timestamp" => match text.parse::<f64>() {
                        Ok(epoch) => Value::from(epoch),
                        Err(_) if is_iso8601(text) => Value::from(0),
                        Err(_) => as_text(),
                    },
                    _ => as_text(),
                })
            }
        }
    }
}

/// `2026-01-01T00:00:00Z`, with optional fractional seconds and a `Z` or `±hh:mm` offset.
fn is_iso8601(text: &str) -> bool {
    static ISO: OnceLock<Option<Regex>> = OnceLock::new();
    ISO.get_or_init(|| {
        Regex::new(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})$").ok()
    })
    .as_ref()
    .is_some_and(|re| re.is_match(text))
}

struct Walk<'a> {
    model: &'a ApiModel,
    op: &'a str,
    checked: Checked,
}

fn join(path: &str, member: &str) -> String {
    if path.is_empty() {
        member.to_string()
    } else {
        format!("{path}.{member}")
    }
}

fn show(value: &Value) -> String {
    let text = match value {
        Value::String(s) => format!("'{s}'"),
        other => other.to_string(),
    };
    match text.char_indices().nth(100) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

impl Walk<'_> {
    fn fail(&mut self, path: &str, value: &Value, constraint: impl Into<String>) {
        self.checked.violations.push(ModelViolation {
            service: self.model.service.clone(),
            operation: self.op.to_string(),
            member: path.to_string(),
            constraint: constraint.into(),
            value: show(value),
        });
    }

    fn shape(&mut self, path: &str, name: &str, value: &Value) {
        let Some(def) = self.model.shapes.get(name) else {
            return;
        };
        let bounds = |key: &str| def.get(key).and_then(Value::as_f64);
        let (min, max) = (bounds("min"), bounds("max"));
        match def["type"].as_str().unwrap_or_default() {
            "structure" => self.structure(path, def, value),
            "list" => match value.as_array() {
                None => self.fail(path, value, "Member must be a list"),
                Some(items) => {
                    self.size(path, value, items.len(), min, max, "length");
                    if let Some(member) = def["member"]["shape"].as_str() {
                        for (i, item) in items.iter().enumerate() {
                            self.shape(&format!("{path}[{i}]"), member, item);
                        }
                    }
                }
            },
            "map" => match value.as_object() {
                None => self.fail(path, value, "Member must be a map"),
                Some(entries) => {
                    self.size(path, value, entries.len(), min, max, "number of entries");
                    let key = def["key"]["shape"].as_str();
                    let val = def["value"]["shape"].as_str();
                    for (k, v) in entries {
                        let at = format!("{path}[{k:?}]");
                        if let Some(key) = key {
                            self.shape(&format!("{at}(key)"), key, &Value::String(k.clone()));
                        }
                        if let Some(val) = val {
                            self.shape(&at, val, v);
                        }
                    }
                }
            },
            "string" => match value.as_str() {
                None => self.fail(path, value, "Member must be a string"),
                Some(s) => self.string(path, def, value, s, min, max),
            },
            "blob" if !value.is_string() => {
                self.fail(path, value, "Member must be a base64-encoded string")
            }
            "boolean" if !value.is_boolean() => self.fail(path, value, "Member must be a boolean"),
            "timestamp" if !value.is_number() => {
                self.fail(path, value, "Member must be a timestamp (epoch seconds)")
            }
            kind @ ("integer" | "long") => {
                let range = if kind == "integer" {
                    (i64::from(i32::MIN), i64::from(i32::MAX))
                } else {
                    (i64::MIN, i64::MAX)
                };
                match value.as_i64() {
                    Some(n) if (range.0..=range.1).contains(&n) => {
                        self.number(path, value, n as f64, min, max)
                    }
                    _ => self.fail(path, value, format!("Member must be an {kind}")),
                }
            }
            "double" | "float" => match value.as_f64() {
                Some(n) => self.number(path, value, n, min, max),
                None => self.fail(path, value, "Member must be a number"),
            },
            _ => {}
        }
    }

    fn structure(&mut self, path: &str, def: &Value, value: &Value) {
        let Some(fields) = value.as_object() else {
            self.fail(path, value, "Member must be a structure");
            return;
        };
        let empty = Map::new();
        let members = def["members"].as_object().unwrap_or(&empty);
        for required in def["required"].as_array().into_iter().flatten() {
            let Some(name) = required.as_str() else {
                continue;
            };
            if fields.get(name).is_none_or(Value::is_null) {
                self.fail(&join(path, name), &Value::Null, "Member must not be null");
            }
        }
        for (name, field) in fields {
            let at = join(path, name);
            match members.get(name).and_then(|m| m["shape"].as_str()) {
                None => self.fail(&at, field, "Member is not in the model"),
                Some(_) if field.is_null() => {}
                Some(shape) => self.shape(&at, shape, field),
            }
        }
    }

    fn size(
        &mut self,
        path: &str,
        value: &Value,
        n: usize,
        min: Option<f64>,
        max: Option<f64>,
        what: &str,
    ) {
        let n = n as f64;
        if let Some(min) = min.filter(|min| n < *min) {
            self.fail(
                path,
                value,
                format!("Member must have {what} greater than or equal to {min}"),
            );
        }
        if let Some(max) = max.filter(|max| n > *max) {
            self.fail(
                path,
                value,
                format!("Member must have {what} less than or equal to {max}"),
            );
        }
    }

    fn number(&mut self, path: &str, value: &Value, n: f64, min: Option<f64>, max: Option<f64>) {
        if let Some(min) = min.filter(|min| n < *min) {
            self.fail(
                path,
                value,
                format!("Member must have value greater than or equal to {min}"),
            );
        }
        if let Some(max) = max.filter(|max| n > *max) {
            self.fail(
                path,
                value,
                format!("Member must have value less than or equal to {max}"),
            );
        }
    }

    fn string(
        &mut self,
        path: &str,
        def: &Value,
        value: &Value,
        s: &str,
        min: Option<f64>,
        max: Option<f64>,
    ) {
        if let Some(allowed) = def["enum"].as_array() {
            if !allowed.iter().any(|a| a.as_str() == Some(s)) {
                let set = allowed
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ");
                self.fail(
                    path,
                    value,
                    format!("Member must satisfy enum value set: [{set}]"),
                );
            }
        }
        self.size(path, value, s.chars().count(), min, max, "length");
        if let Some(pattern) = def["pattern"].as_str() {
            match self.model.matches(pattern, s) {
                Some(true) => {}
                Some(false) => self.fail(
                    path,
                    value,
                    format!("Member must satisfy regular expression pattern: {pattern}"),
                ),
                None => self.checked.unchecked_patterns.push(pattern.to_string()),
            }
        }
    }
}

/// What the emulator has found so far (`GET /_emulator/model-violations`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct ModelReport {
    /// The model version each service is checked against (absent: not checked).
    pub models: BTreeMap<String, String>,
    pub violations: Vec<ModelViolation>,
    /// Requests checked, per `<service> <Operation>`.
    pub checked: BTreeMap<String, u64>,
    /// Requests that could not be checked (no model, no operation), per reason.
    pub unchecked_requests: BTreeMap<String, u64>,
    /// Patterns the `regex` crate could not compile → how many values went unchecked.
    pub unchecked_patterns: BTreeMap<String, u64>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn model() -> ApiModel {
        let text = json!({
            "operations": { "Op": { "input": { "shape": "In" } }, "NoInput": {} },
            "shapes": {
                "In": {
                    "type": "structure",
                    "required": ["Name"],
                    "members": {
                        "Name": { "shape": "Name" },
                        "Ops": { "shape": "Ops" },
                        "Count": { "shape": "Count" },
                        "Flag": { "shape": "Bool" },
                        "Tags": { "shape": "Tags" },
                        "Odd": { "shape": "Odd" }
                    }
                },
                "Name": { "type": "string", "min": 1, "max": 5, "pattern": "[a-z]+" },
                "Odd": { "type": "string", "pattern": "(?<=a)b" },
                "Op": { "type": "string", "enum": ["A", "B"] },
                "Ops": { "type": "list", "member": { "shape": "Op" }, "min": 1, "max": 2 },
                "Count": { "type": "integer", "min": 1, "max": 10 },
                "Bool": { "type": "boolean" },
                "Tags": { "type": "map", "key": { "shape": "Name" }, "value": { "shape": "Name" } }
            }
        })
        .to_string();
        ApiModel::parse("license-manager", "v", &text).unwrap()
    }

    fn members(input: Value) -> Vec<(String, String)> {
        model()
            .check("Op", &input)
            .unwrap()
            .violations
            .into_iter()
            .map(|v| (v.member, v.constraint))
            .collect()
    }

    #[test]
    fn a_valid_request_passes_and_each_constraint_is_named() {
        assert_eq!(
            members(
                json!({"Name": "ab", "Ops": ["A"], "Count": 3, "Flag": true, "Tags": {"k": "v"}})
            ),
            vec![]
        );
        let found = members(json!({
            "Ops": ["A", "C", "B"], "Count": 11, "Flag": "yes", "Tags": {"K": "v"}, "Extra": 1
        }));
        let expect = [
            ("Name", "must not be null"),
            ("Ops", "length less than or equal to 2"),
            ("Ops[1]", "enum value set: [A, B]"),
            ("Count", "value less than or equal to 10"),
            ("Flag", "must be a boolean"),
            ("Tags[\"K\"](key)", "regular expression pattern: [a-z]+"),
            ("Extra", "not in the model"),
        ];
        for (member, constraint) in expect {
            assert!(
                found
                    .iter()
                    .any(|(m, c)| m == member && c.contains(constraint)),
                "{member} {constraint} not in {found:?}"
            );
        }
        assert_eq!(found.len(), expect.len(), "{found:?}");
    }

    #[test]
    fn patterns_match_the_whole_value_and_lengths_count_characters() {
        assert_eq!(
            members(json!({"Name": "ab1"})).len(),
            1,
            "partial match passed"
        );
        assert_eq!(members(json!({"Name": "abcdef"})).len(), 1);
        assert_eq!(
            members(json!({"Name": ""})).len(),
            2,
            "too short and no match"
        );
        assert_eq!(members(json!({"Name": "ééééé"})).len(), 1, "é is not [a-z]");
        assert_eq!(members(json!({"Name": "a", "Count": 2.5})).len(), 1);
        assert_eq!(members(json!({"Name": "a", "Count": 1u64 << 40})).len(), 1);
    }

    #[test]
    fn a_pattern_the_crate_cannot_compile_is_counted_not_failed() {
        let checked = model()
            .check("Op", &json!({"Name": "a", "Odd": "zzz"}))
            .unwrap();
        assert!(checked.violations.is_empty(), "{:?}", checked.violations);
        assert_eq!(checked.unchecked_patterns, vec!["(?<=a)b".to_string()]);
    }

    #[test]
    fn operations_without_input_take_an_empty_object_and_unknown_operations_are_not_checked() {
        let m = model();
        assert!(m
            .check("NoInput", &json!({}))
            .unwrap()
            .violations
            .is_empty());
        assert_eq!(
            m.check("NoInput", &json!({"X": 1}))
                .unwrap()
                .violations
                .len(),
            1
        );
        assert!(m.check("Nope", &json!({})).is_none());
    }

    fn query_model() -> ApiModel {
        let text = json!({
            "metadata": { "protocol": "query" },
            "operations": { "Op": { "input": { "shape": "In" } } },
            "shapes": {
                "In": {
                    "type": "structure",
                    "required": ["Name"],
                    "members": {
                        "Name": { "shape": "Name" },
                        "Count": { "shape": "Count" },
                        "Flag": { "shape": "Bool" },
                        "When": { "shape": "When" },
                        "Tags": { "shape": "Tags" },
                        "Ids": { "shape": "Ids" },
                        "Attrs": { "shape": "Attrs" },
                        "Flat": { "shape": "Flat", "locationName": "Item" },
                        "Renamed": { "shape": "Name", "locationName": "Other" }
                    }
                },
                "Name": { "type": "string", "min": 1, "max": 5, "pattern": "[a-z]+" },
                "Count": { "type": "integer", "max": 10 },
                "Bool": { "type": "boolean" },
                "When": { "type": "timestamp" },
                "Tag": {
                    "type": "structure",
                    "required": ["Key"],
                    "members": { "Key": { "shape": "Name" }, "Value": { "shape": "Name" } }
                },
                "Tags": { "type": "list", "member": { "shape": "Tag" }, "max": 2 },
                "Ids": { "type": "list", "member": { "shape": "Name" }, "min": 1 },
                "Attrs": {
                    "type": "map",
                    "key": { "shape": "Name", "locationName": "Name" },
                    "value": { "shape": "Name", "locationName": "Value" }
                },
                "Flat": { "type": "list", "member": { "shape": "Name" }, "flattened": true }
            }
        })
        .to_string();
        ApiModel::parse("iam", "v", &text).unwrap()
    }

    fn query(params: &[(&str, &str)]) -> Vec<(String, String, String)> {
        let params: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        query_model()
            .check_query("Op", &params)
            .unwrap()
            .violations
            .into_iter()
            .map(|v| (v.member, v.constraint, v.value))
            .collect()
    }

    #[test]
    fn query_parameters_are_read_back_by_botocores_rules() {
        let m = query_model();
        assert_eq!(m.protocol, "query");
        assert_eq!(
            query(&[
                ("Action", "Op"),
                ("Version", "2010-05-08"),
                ("Name", "ab"),
                ("Count", "3"),
                ("Flag", "true"),
                ("When", "2026-01-01T00:00:00.123Z"),
                ("Tags.member.1.Key", "k"),
                ("Tags.member.1.Value", "v"),
                ("Tags.member.2.Key", "j"),
                ("Ids", ""),
                ("Attrs.entry.1.Name", "a"),
                ("Attrs.entry.1.Value", "b"),
                ("Item.1", "x"),
                ("Item.2", "y"),
                ("Other", "z"),
            ]),
            vec![(
                "Ids".to_string(),
                "Member must have length greater than or equal to 1".to_string(),
                "[]".to_string()
            )]
        );
        let found = query(&[
            ("Action", "Op"),
            ("Count", "three"),
            ("Flag", "yes"),
            ("When", "yesterday"),
            ("Tags.member.1.Value", "v"),
            ("Tags.member.2.Key", "a"),
            ("Tags.member.3.Key", "b"),
            ("Tags.member.5.Key", "c"),
            ("Attrs.entry.1.Name", "A"),
            ("Attrs.entry.1.Value", "b"),
            ("Renamed", "x"),
            ("Colour", "blue"),
        ]);
        let expect = [
            ("Name", "must not be null"),
            ("Count", "must be an integer"),
            ("Flag", "must be a boolean"),
            ("When", "must be a timestamp"),
            ("Tags", "length less than or equal to 2"),
            ("Tags[0].Key", "must not be null"),
            ("Attrs[\"A\"](key)", "regular expression pattern"),
            ("Tags.member.5.Key", "not in the model"),
            ("Renamed", "not in the model"),
            ("Colour", "not in the model"),
        ];
        for (member, constraint) in expect {
            assert!(
                found
                    .iter()
                    .any(|(m, c, _)| m == member && c.contains(constraint)),
                "{member} {constraint} not in {found:#?}"
            );
        }
        assert_eq!(found.len(), expect.len(), "{found:#?}");
        assert!(m.check_query("Nope", &[]).is_none());
    }

    #[test]
    fn the_message_reads_like_aws() {
        let checked = model().check("Op", &json!({"Name": "abcdefg"})).unwrap();
        assert_eq!(
            checked.message(),
            "1 validation error detected: Value 'abcdefg' at 'Name' failed to satisfy \
             constraint: Member must have length less than or equal to 5"
        );
    }
}
