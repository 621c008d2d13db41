//! Who is calling, and what organization they belong to: from moto (STS, Organizations, IAM)
//! when a moto URL is configured, else from seeded data.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::common::ApiError;
use crate::http::{self, fake_sigv4, form_encode, xml_text};

/// Organization data for an emulator without moto (`POST /_emulator/orgs`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OrgSeed {
    /// `o-…`
    pub id: String,
    pub management_account: String,
    /// `ALL` or `CONSOLIDATED_BILLING`.
    #[serde(default = "feature_set_all")]
    pub feature_set: String,
    /// Member accounts directly under the root (the management account is implied).
    #[serde(default)]
    pub accounts: Vec<String>,
    #[serde(default)]
    pub ous: Vec<OuSeed>,
}

fn feature_set_all() -> String {
    "ALL".to_string()
}

/// One organizational unit of an [`OrgSeed`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OuSeed {
    /// `ou-…`
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub accounts: Vec<String>,
}

/// A snapshot of the organization, as much of it as a request needs.
#[derive(Debug, Clone, Default)]
pub struct OrgInfo {
    pub id: String,
    pub management_account: String,
    pub feature_set: String,
    /// Every account in the organization, the management account included.
    pub accounts: BTreeSet<String>,
    /// Accounts in (or below) each requested OU; an OU that does not exist is absent.
    pub ou_members: BTreeMap<String, BTreeSet<String>>,
    /// Accounts directly in each requested OU (not in its child OUs), for the
    /// `ouGrantsReachNestedOus: false` reading.
    pub ou_direct_members: BTreeMap<String, BTreeSet<String>>,
}

impl OrgInfo {
    pub fn all_features(&self) -> bool {
        self.feature_set == "ALL"
    }

    pub fn from_seed(seed: &OrgSeed) -> Self {
        let mut accounts: BTreeSet<String> = seed.accounts.iter().cloned().collect();
        accounts.insert(seed.management_account.clone());
        let mut ou_members = BTreeMap::new();
        for ou in &seed.ous {
            accounts.extend(ou.accounts.iter().cloned());
            ou_members.insert(ou.id.clone(), ou.accounts.iter().cloned().collect());
        }
        Self {
            id: seed.id.clone(),
            management_account: seed.management_account.clone(),
            feature_set: seed.feature_set.clone(),
            accounts,
            // A seeded organization has no nested OUs.
            ou_direct_members: ou_members.clone(),
            ou_members,
        }
    }
}

/// What the organization looks like, as far as one request knows.
#[derive(Debug, Clone)]
pub enum OrgView {
    /// Not fetched for this request: anything that depends on it waits for a later request.
    Unknown,
    /// Fetched: `None` means the management account has no organization.
    Known(Option<OrgInfo>),
}

impl OrgView {
    pub fn org(&self) -> Option<&OrgInfo> {
        match self {
            OrgView::Known(Some(org)) => Some(org),
            _ => None,
        }
    }
}

/// A client for the few moto calls the emulator makes. Organizations calls are signed with
/// `management_key` (an access key id moto maps to the management account).
#[derive(Debug, Clone)]
pub struct MotoPeer {
    pub url: String,
    pub management_key: String,
    /// Requests sent to moto so far (`GET /_emulator/stats`).
    requests: Arc<AtomicU64>,
}

/// Every `<tag>…</tag>` text in `xml`.
fn xml_all<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else { break };
        out.push(&after[..end]);
        rest = &after[end + close.len()..];
    }
    out
}

fn peer_error(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!("emulator could not {what} through moto: {e}"))
}

/// An error answered by moto (`__type` / `Code`), or a transport problem.
#[derive(Debug)]
pub enum PeerError {
    Aws { code: String, message: String },
    Other(String),
}

impl PeerError {
    pub fn into_api(self, what: &str) -> ApiError {
        match self {
            PeerError::Aws { code, message } => peer_error(what, format!("{code}: {message}")),
            PeerError::Other(m) => peer_error(what, m),
        }
    }
    pub fn describe(&self) -> String {
        match self {
            PeerError::Aws { code, message } => format!("{code}: {message}"),
            PeerError::Other(m) => m.clone(),
        }
    }
}

impl MotoPeer {
    pub fn new(url: &str, management_key: &str) -> Self {
        Self {
            url: url.trim_end_matches('/').to_string(),
            management_key: management_key.to_string(),
            requests: Arc::new(AtomicU64::new(0)),
        }
    }

    /// How many requests the emulator sent to moto.
    pub fn request_count(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// One Organizations call (AWS JSON 1.1).
    pub async fn organizations(&self, operation: &str, body: Value) -> Result<Value, PeerError> {
        let target = format!("AWSOrganizationsV20161128.{operation}");
        let auth = fake_sigv4(&self.management_key, "organizations");
        self.requests.fetch_add(1, Ordering::Relaxed);
        let response = http::send(
            hyper::Method::POST,
            &format!("{}/", self.url),
            &[
                ("content-type", "application/x-amz-json-1.1"),
                ("x-amz-target", &target),
                ("authorization", &auth),
            ],
            serde_json::to_vec(&body).unwrap_or_default(),
        )
        .await
        .map_err(|e| PeerError::Other(e.to_string()))?;
        let parsed: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
        if response.is_success() {
            return Ok(parsed);
        }
        match parsed.get("__type").and_then(Value::as_str) {
            Some(code) => Err(PeerError::Aws {
                code: code.rsplit('#').next().unwrap_or(code).to_string(),
                message: parsed
                    .get("Message")
                    .or_else(|| parsed.get("message"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            }),
            None => Err(PeerError::Other(format!(
                "{operation}: HTTP {}: {}",
                response.status,
                response.text().chars().take(200).collect::<String>()
            ))),
        }
    }

    /// One query-protocol call (STS, IAM) signed with `access_key_id`; returns the XML.
    pub async fn query(
        &self,
        service: &str,
        access_key_id: &str,
        params: &[(&str, &str)],
    ) -> Result<String, PeerError> {
        self.query_in(service, access_key_id, None, params).await
    }

    /// [`MotoPeer::query`] acting in `account` (moto's `x-moto-account-id` header) when given.
    pub async fn query_in(
        &self,
        service: &str,
        access_key_id: &str,
        account: Option<&str>,
        params: &[(&str, &str)],
    ) -> Result<String, PeerError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let body = params
            .iter()
            .map(|(k, v)| format!("{k}={}", form_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let auth = fake_sigv4(access_key_id, service);
        let mut headers = vec![
            ("content-type", "application/x-www-form-urlencoded"),
            ("authorization", auth.as_str()),
        ];
        if let Some(account) = account {
            headers.push(("x-moto-account-id", account));
        }
        let response = http::send(
            hyper::Method::POST,
            &format!("{}/", self.url),
            &headers,
            body,
        )
        .await
        .map_err(|e| PeerError::Other(e.to_string()))?;
        let text = response.text();
        if response.is_success() {
            Ok(text)
        } else {
            Err(PeerError::Aws {
                code: xml_text(&text, "Code").unwrap_or("HTTP error").to_string(),
                message: xml_text(&text, "Message")
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("HTTP {}", response.status)),
            })
        }
    }

    /// The paths of the service-linked roles in `account`'s IAM (read as that account).
    pub async fn service_role_paths(&self, account: &str) -> Result<BTreeSet<String>, PeerError> {
        let mut paths = BTreeSet::new();
        let mut marker: Option<String> = None;
        loop {
            let mut params = vec![
                ("Action", "ListRoles"),
                ("Version", "2010-05-08"),
                ("PathPrefix", "/aws-service-role/"),
            ];
            if let Some(m) = marker.as_deref() {
                params.push(("Marker", m));
            }
            let xml = self
                .query_in("iam", &self.management_key, Some(account), &params)
                .await?;
            paths.extend(xml_all(&xml, "Path").into_iter().map(str::to_string));
            marker = match (xml_text(&xml, "IsTruncated"), xml_text(&xml, "Marker")) {
                (Some("true"), Some(m)) if !m.is_empty() => Some(m.to_string()),
                _ => return Ok(paths),
            };
        }
    }

    /// The account an access key id belongs to (moto maps assumed-role keys to their account).
    pub async fn caller_account(&self, access_key_id: &str) -> Result<String, ApiError> {
        let xml = self
            .query(
                "sts",
                access_key_id,
                &[("Action", "GetCallerIdentity"), ("Version", "2011-06-15")],
            )
            .await
            .map_err(|e| e.into_api("resolve the caller"))?;
        xml_text(&xml, "Account")
            .map(str::to_string)
            .ok_or_else(|| peer_error("resolve the caller", "no <Account> in response"))
    }

    async fn paged(
        &self,
        operation: &str,
        mut body: Value,
        key: &str,
    ) -> Result<Vec<Value>, PeerError> {
        let mut out = Vec::new();
        loop {
            let page = self.organizations(operation, body.clone()).await?;
            if let Some(items) = page.get(key).and_then(Value::as_array) {
                out.extend(items.iter().cloned());
            }
            match page.get("NextToken").and_then(Value::as_str) {
                Some(token) if !token.is_empty() => body["NextToken"] = json!(token),
                _ => return Ok(out),
            }
        }
    }

    /// The organization, its accounts and the members of the requested OUs (recursively).
    pub async fn org_info(&self, ous: &BTreeSet<String>) -> Result<Option<OrgInfo>, ApiError> {
        let what = "read the organization";
        let org = match self.organizations("DescribeOrganization", json!({})).await {
            Ok(v) => v,
            Err(PeerError::Aws { code, .. }) if code == "AWSOrganizationsNotInUseException" => {
                return Ok(None)
            }
            Err(e) => return Err(e.into_api(what)),
        };
        let org = &org["Organization"];
        let mut info = OrgInfo {
            id: org["Id"].as_str().unwrap_or_default().to_string(),
            management_account: org["MasterAccountId"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            feature_set: org["FeatureSet"].as_str().unwrap_or("ALL").to_string(),
            ..OrgInfo::default()
        };
        let accounts = self
            .paged("ListAccounts", json!({}), "Accounts")
            .await
            .map_err(|e| e.into_api(what))?;
        info.accounts = accounts
            .iter()
            .filter(|a| a["Status"].as_str().unwrap_or("ACTIVE") == "ACTIVE")
            .filter_map(|a| a["Id"].as_str().map(str::to_string))
            .collect();
        for ou in ous {
            if let Some((members, direct)) =
                self.ou_accounts(ou).await.map_err(|e| e.into_api(what))?
            {
                info.ou_members.insert(ou.clone(), members);
                info.ou_direct_members.insert(ou.clone(), direct);
            }
        }
        Ok(Some(info))
    }

    /// Accounts in an OU and its child OUs, and those directly in the OU; `None` if the OU does
    /// not exist.
    pub async fn ou_accounts(
        &self,
        ou: &str,
    ) -> Result<Option<(BTreeSet<String>, BTreeSet<String>)>, PeerError> {
        let mut members = BTreeSet::new();
        let mut direct = BTreeSet::new();
        let mut pending = vec![ou.to_string()];
        let mut first = true;
        while let Some(parent) = pending.pop() {
            let accounts = match self
                .paged(
                    "ListAccountsForParent",
                    json!({ "ParentId": parent }),
                    "Accounts",
                )
                .await
            {
                Ok(a) => a,
                Err(PeerError::Aws { code, .. })
                    if first && (code.contains("NotFound") || code.contains("InvalidInput")) =>
                {
                    return Ok(None)
                }
                Err(e) => return Err(e),
            };
            if first {
                direct.extend(
                    accounts
                        .iter()
                        .filter_map(|a| a["Id"].as_str().map(str::to_string)),
                );
            }
            first = false;
            members.extend(
                accounts
                    .iter()
                    .filter_map(|a| a["Id"].as_str().map(str::to_string)),
            );
            let children = self
                .paged(
                    "ListOrganizationalUnitsForParent",
                    json!({ "ParentId": parent }),
                    "OrganizationalUnits",
                )
                .await?;
            pending.extend(
                children
                    .iter()
                    .filter_map(|o| o["Id"].as_str().map(str::to_string)),
            );
        }
        Ok(Some((members, direct)))
    }

    /// The root id and every OU as `(id, name)`, depth-first.
    pub async fn tree(&self) -> Result<(String, Vec<(String, String)>), PeerError> {
        let roots = self.paged("ListRoots", json!({}), "Roots").await?;
        let root = roots
            .first()
            .and_then(|r| r["Id"].as_str())
            .ok_or_else(|| PeerError::Other("organization has no root".into()))?
            .to_string();
        let mut ous = Vec::new();
        let mut pending = vec![root.clone()];
        while let Some(parent) = pending.pop() {
            let children = self
                .paged(
                    "ListOrganizationalUnitsForParent",
                    json!({ "ParentId": parent }),
                    "OrganizationalUnits",
                )
                .await?;
            for child in children {
                if let (Some(id), Some(name)) = (child["Id"].as_str(), child["Name"].as_str()) {
                    ous.push((id.to_string(), name.to_string()));
                    pending.push(id.to_string());
                }
            }
        }
        Ok((root, ous))
    }

    /// Creates a member account the way Account Factory would: CreateAccount, MoveAccount into
    /// the OU, then the `AWSControlTowerExecution` role inside the new account.
    pub async fn vend_account(
        &self,
        name: &str,
        email: &str,
        root: &str,
        ou: &str,
        management: &str,
    ) -> Result<String, PeerError> {
        let created = self
            .organizations(
                "CreateAccount",
                json!({ "AccountName": name, "Email": email }),
            )
            .await?;
        let status = &created["CreateAccountStatus"];
        let account = match (status["State"].as_str(), status["AccountId"].as_str()) {
            (Some("SUCCEEDED"), Some(id)) => id.to_string(),
            _ => {
                return Err(PeerError::Other(format!(
                    "CreateAccount did not succeed: {}",
                    status["FailureReason"].as_str().unwrap_or("unknown reason")
                )))
            }
        };
        self.organizations(
            "MoveAccount",
            json!({ "AccountId": account, "SourceParentId": root, "DestinationParentId": ou }),
        )
        .await?;
        let trust = json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": { "AWS": format!("arn:aws:iam::{management}:root") },
                "Action": "sts:AssumeRole"
            }]
        })
        .to_string();
        let key = self
            .assume_role_key(&account, "OrganizationAccountAccessRole")
            .await?;
        self.query(
            "iam",
            &key,
            &[
                ("Action", "CreateRole"),
                ("Version", "2010-05-08"),
                ("RoleName", "AWSControlTowerExecution"),
                ("AssumeRolePolicyDocument", &trust),
            ],
        )
        .await?;
        Ok(account)
    }

    /// The access key id of an assumed role in `account` (moto maps it to that account).
    pub async fn assume_role_key(&self, account: &str, role: &str) -> Result<String, PeerError> {
        let arn = format!("arn:aws:iam::{account}:role/{role}");
        let xml = self
            .query(
                "sts",
                &self.management_key,
                &[
                    ("Action", "AssumeRole"),
                    ("Version", "2011-06-15"),
                    ("RoleArn", &arn),
                    ("RoleSessionName", "license-manager-emulator"),
                ],
            )
            .await?;
        xml_text(&xml, "AccessKeyId")
            .map(str::to_string)
            .ok_or_else(|| PeerError::Other("no AccessKeyId in AssumeRole response".into()))
    }
}
