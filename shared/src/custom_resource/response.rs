//! The custom-resource response body. A local type rather than aws_lambda_events'
//! `CloudFormationCustomResourceResponse`: that one keeps `Data` in a `HashMap` (random key
//! order) and always writes `NoEcho`; this one writes the same JSON fields in a fixed order, so
//! the bytes PUT to the pre-signed URL are deterministic and testable.

use super::Target;
use aws_lambda_events::event::cloudformation::CloudFormationCustomResourceResponseStatus as Status;
use serde::Serialize;
use std::collections::BTreeMap;

/// CloudFormation rejects bodies above 4,096 bytes.
pub(crate) const MAX_BODY_BYTES: usize = 4096;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Response {
    pub status: Status,
    pub reason: String,
    pub physical_resource_id: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
}

impl Response {
    pub fn success(target: &Target, physical_id: String, reason: String) -> Self {
        Self::new(target, Status::Success, physical_id, reason)
    }

    pub fn failed(target: &Target, physical_id: String, reason: String) -> Self {
        Self::new(target, Status::Failed, physical_id, reason)
    }

    fn new(target: &Target, status: Status, physical_id: String, reason: String) -> Self {
        Response {
            status,
            reason,
            physical_resource_id: physical_id,
            stack_id: target.stack_id.clone(),
            request_id: target.request_id.clone(),
            logical_resource_id: target.logical_resource_id.clone(),
            data: BTreeMap::new(),
        }
    }

    pub fn with_data(mut self, data: BTreeMap<String, String>) -> Self {
        self.data = data;
        self
    }

    /// The JSON body, at most [`MAX_BODY_BYTES`]: an over-long `Reason` is cut (on a character
    /// boundary) and marked with "…".
    pub(crate) fn body(&self) -> Vec<u8> {
        let full = serde_json::to_vec(self).unwrap_or_default();
        if full.len() <= MAX_BODY_BYTES {
            return full;
        }
        // JSON escaping makes characters cost different amounts: find the longest prefix of
        // the reason that fits (binary search over character boundaries).
        let mut shorter = self.clone();
        let bounds: Vec<usize> = self.reason.char_indices().map(|(i, _)| i).collect();
        let body_with = |shorter: &mut Response, cut: usize| {
            shorter.reason = format!("{}…", &self.reason[..cut]);
            serde_json::to_vec(shorter).unwrap_or_default()
        };
        let (mut lo, mut hi) = (0usize, bounds.len().saturating_sub(1));
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if body_with(&mut shorter, bounds[mid]).len() <= MAX_BODY_BYTES {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        body_with(&mut shorter, bounds.get(lo).copied().unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            request_type: "Create".into(),
            response_url: "https://example".into(),
            stack_id: "arn:aws:cloudformation:us-east-1:210987654321:stack/s/1".into(),
            request_id: "req-1".into(),
            logical_resource_id: "Entitlement".into(),
            physical_resource_id: None,
        }
    }

    #[test]
    fn body_fields_in_fixed_order() {
        let r = Response::success(&target(), "pid".into(), "ok".into()).with_data(
            [("b", "2"), ("a", "1")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        assert_eq!(
            String::from_utf8(r.body()).expect("utf-8"),
            r#"{"Status":"SUCCESS","Reason":"ok","PhysicalResourceId":"pid","StackId":"arn:aws:cloudformation:us-east-1:210987654321:stack/s/1","RequestId":"req-1","LogicalResourceId":"Entitlement","Data":{"a":"1","b":"2"}}"#
        );
        let failed = Response::failed(&target(), "pid".into(), "no".into());
        assert_eq!(
            String::from_utf8(failed.body()).expect("utf-8"),
            r#"{"Status":"FAILED","Reason":"no","PhysicalResourceId":"pid","StackId":"arn:aws:cloudformation:us-east-1:210987654321:stack/s/1","RequestId":"req-1","LogicalResourceId":"Entitlement"}"#
        );
    }

    #[test]
    fn long_reasons_are_truncated_to_fit() {
        for filler in ["x", "é", "\"", "\u{1}"] {
            let reason = filler.repeat(10_000);
            let r = Response::failed(&target(), "pid".into(), reason);
            let body = r.body();
            assert!(body.len() <= MAX_BODY_BYTES, "{filler}: {}", body.len());
            assert!(body.len() > MAX_BODY_BYTES - 16, "{filler}: {}", body.len());
            let parsed: serde_json::Value = serde_json::from_slice(&body).expect("still JSON");
            assert!(parsed["Reason"]
                .as_str()
                .is_some_and(|s| s.ends_with('…') && s.starts_with(filler)));
            assert_eq!(parsed["RequestId"], "req-1");
        }
    }
}
