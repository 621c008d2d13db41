//! A product-launch request is a claim until CloudFormation confirms it. Anyone allowed to
//! publish to the organization-wide topic can write any `StackId`, `RequestType` and properties,
//! so before a request that arrived that way (or that names a stack outside this account) may
//! grant, activate, deactivate or share anything, the claimed stack is read in the account its
//! `StackId` names, through the member role: `DescribeStackResource(StackId, LogicalResourceId)`
//! must show a resource of the request's type in the state the request implies
//! (`CREATE_IN_PROGRESS` for Create, and so on).
//!
//! What to conclude from what CloudFormation shows is [`judge`], a pure function; reading it is
//! [`StackReader`], a thin seam.

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use shared::error::Error;
use shared::error::{aws_error, echo};
use shared::ids::AccountId;
use shared::report::CallLog;
use std::sync::Arc;

/// What `DescribeStackResource` shows of the claimed resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub resource_type: String,
    pub status: String,
    pub physical_id: Option<String>,
}

/// The claim a request makes about its stack.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    pub request_type: &'a str,
    pub resource_type: &'a str,
    pub logical_id: &'a str,
    pub stack_id: &'a str,
    /// `PhysicalResourceId` (Update, Delete).
    pub physical_id: Option<&'a str>,
}

/// What a verified request may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// CloudFormation is doing what the request says: act on it.
    Proceed,
    /// A Delete of a resource CloudFormation has already replaced (the clean-up after an update
    /// that changed the physical id, or of a rolled-back replacement): the account's live
    /// entitlement belongs to the current resource, so nothing is written; answered SUCCESS.
    ReplacedCleanup,
    /// Not what CloudFormation shows: answered FAILED with this reason; nothing is written.
    Refuse(String),
}

/// The statuses a resource shows while CloudFormation waits for an answer to this request type.
fn expected(request_type: &str) -> &'static [&'static str] {
    match request_type {
        "Create" => &["CREATE_IN_PROGRESS"],
        // An update, or the update that rolls a failed one back.
        "Update" => &["UPDATE_IN_PROGRESS", "UPDATE_ROLLBACK_IN_PROGRESS"],
        "Delete" => &["DELETE_IN_PROGRESS"],
        _ => &[],
    }
}

/// Decides, from what CloudFormation shows (`None`: no such stack or resource in the claimed
/// account), whether a request may be acted on.
pub fn judge(claim: &Claim<'_>, observed: Option<&Observed>) -> Verdict {
    let where_ = format!(
        "resource {} of stack {}",
        echo(claim.logical_id),
        echo(claim.stack_id)
    );
    let Some(seen) = observed else {
        return Verdict::Refuse(format!(
            "unverified request: CloudFormation shows no {where_} in the account the StackId names; nothing was done"
        ));
    };
    if seen.resource_type != claim.resource_type {
        return Verdict::Refuse(format!(
            "unverified request: {where_} is a {}, not a {}; nothing was done",
            echo(&seen.resource_type),
            echo(claim.resource_type)
        ));
    }
    let in_progress = expected(claim.request_type).contains(&seen.status.as_str());
    if claim.request_type == "Delete" {
        // A Delete names the physical id it removes; the logical resource now showing another
        // one means the named one was replaced and is being cleaned up.
        let replaced = matches!(
            (claim.physical_id, seen.physical_id.as_deref()),
            (Some(claimed), Some(current)) if claimed != current
        );
        // Only an update (or its roll-back) replaces a physical id.
        if replaced && (in_progress || seen.status.starts_with("UPDATE_")) {
            return Verdict::ReplacedCleanup;
        }
    }
    if in_progress {
        Verdict::Proceed
    } else {
        Verdict::Refuse(format!(
            "unverified request: {where_} is {}, but a {} request is only sent while it is {}; nothing was done",
            echo(&seen.status),
            echo(claim.request_type),
            expected(claim.request_type).join(" or ")
        ))
    }
}

/// Whether a request must be verified before anything is done: every request that came through
/// the topic, and any naming a stack outside the account this function runs in (CloudFormation
/// invokes the function directly only for stacks of its own account). Without a known own
/// account, only topic requests.
pub fn needs_verification(
    via_sns: bool,
    stack_account: &AccountId,
    self_account: Option<&AccountId>,
) -> bool {
    via_sns || self_account.is_some_and(|own| own != stack_account)
}

/// The region and partition in a stack ARN (`arn:<partition>:cloudformation:<region>:…`).
pub fn stack_location(stack_id: &str) -> Option<(&str, &str)> {
    let mut parts = stack_id.splitn(5, ':');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("arn"), Some(partition), Some("cloudformation"), Some(region))
            if !partition.is_empty() && !region.is_empty() =>
        {
            Some((partition, region))
        }
        _ => None,
    }
}

/// Builds a CloudFormation client for assumed credentials in a region.
pub type CloudFormationFactory =
    Arc<dyn Fn(Credentials, &str) -> aws_sdk_cloudformation::Client + Send + Sync>;

/// Reads a claimed stack in its own account: one AssumeRole of the member role (a single
/// attempt: an account without the role is answered within seconds, never after minutes of
/// back-off), then one `DescribeStackResource`.
#[derive(Clone)]
pub struct StackReader {
    pub sts: aws_sdk_sts::Client,
    pub role_name: String,
    pub cloudformation: CloudFormationFactory,
}

impl std::fmt::Debug for StackReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StackReader")
            .field("role_name", &self.role_name)
            .finish()
    }
}

impl StackReader {
    /// The production reader: CloudFormation clients from the function's SDK configuration
    /// (`endpoint`: a local endpoint for tests).
    pub fn from_sdk_config(
        config: &aws_config::SdkConfig,
        role_name: &str,
        endpoint: Option<String>,
    ) -> Self {
        let base = config.clone();
        let mut sts = aws_sdk_sts::config::Builder::from(config);
        if let Some(url) = &endpoint {
            sts = sts.endpoint_url(url);
        }
        StackReader {
            sts: aws_sdk_sts::Client::from_conf(sts.build()),
            role_name: role_name.to_string(),
            cloudformation: Arc::new(move |credentials, region| {
                let mut conf = aws_sdk_cloudformation::config::Builder::from(&base)
                    .credentials_provider(SharedCredentialsProvider::new(credentials))
                    .region(aws_sdk_cloudformation::config::Region::new(
                        region.to_string(),
                    ));
                if let Some(url) = &endpoint {
                    conf = conf.endpoint_url(url);
                }
                aws_sdk_cloudformation::Client::from_conf(conf.build())
            }),
        }
    }

    /// What CloudFormation shows of the claimed resource, `None` when the stack or the resource
    /// does not exist in the claimed account. An error means the claim could not be read (the
    /// role cannot be assumed, access denied, throttling).
    pub async fn observe(
        &self,
        account: &AccountId,
        claim: &Claim<'_>,
        calls: &CallLog,
    ) -> Result<Option<Observed>, Error> {
        let (partition, region) = stack_location(claim.stack_id).ok_or_else(|| {
            Error::InvalidInput(format!(
                "StackId {} is not a CloudFormation stack ARN",
                echo(claim.stack_id)
            ))
        })?;
        let role_arn = format!("arn:{partition}:iam::{account}:role/{}", self.role_name);
        let credentials = shared::aws::assume_role(
            &self.sts,
            &role_arn,
            "ct-entitlements-verify-launch",
            1,
            std::time::Duration::ZERO,
            calls,
        )
        .await?;
        let cloudformation = (self.cloudformation)(credentials, region);
        calls.record(
            shared::report::Side::Member,
            "cloudformation:DescribeStackResource",
            false,
        );
        match cloudformation
            .describe_stack_resource()
            .stack_name(claim.stack_id)
            .logical_resource_id(claim.logical_id)
            .send()
            .await
        {
            Ok(out) => Ok(out.stack_resource_detail().map(|d| Observed {
                resource_type: d.resource_type().unwrap_or_default().to_string(),
                status: d
                    .resource_status()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
                physical_id: d.physical_resource_id().map(str::to_string),
            })),
            Err(e) => match aws_error("cloudformation", "DescribeStackResource", e) {
                // "Stack with id … does not exist" / "Resource … does not exist for stack …".
                Error::Aws { code, message, .. }
                    if code == "ValidationError" && message.contains("does not exist") =>
                {
                    Ok(None)
                }
                other => Err(other),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STACK: &str = "arn:aws:cloudformation:us-east-1:111122223333:stack/SC-1/guid";

    fn claim<'a>(request_type: &'a str, physical: Option<&'a str>) -> Claim<'a> {
        Claim {
            request_type,
            resource_type: "Custom::MarketplaceEntitlement",
            logical_id: "Entitlement",
            stack_id: STACK,
            physical_id: physical,
        }
    }

    fn seen(resource_type: &str, status: &str, physical: Option<&str>) -> Observed {
        Observed {
            resource_type: resource_type.into(),
            status: status.into(),
            physical_id: physical.map(str::to_string),
        }
    }

    #[test]
    fn a_claim_is_acted_on_only_when_cloudformation_shows_it() {
        const ENT: &str = "Custom::MarketplaceEntitlement";
        let g1 = Some("arn:aws:license-manager::1:grant:g-1");
        let g2 = Some("arn:aws:license-manager::1:grant:g-2");
        // (request type, claimed physical, observed, expected: 'P' proceed, 'C' clean-up, 'R' refuse)
        let cases: &[(&str, Option<&str>, Option<Observed>, char)] = &[
            // No such stack or resource in the claimed account: a forgery.
            ("Create", None, None, 'R'),
            ("Delete", g1, None, 'R'),
            // The resource is real and in progress.
            (
                "Create",
                None,
                Some(seen(ENT, "CREATE_IN_PROGRESS", None)),
                'P',
            ),
            ("Update", g1, Some(seen(ENT, "UPDATE_IN_PROGRESS", g1)), 'P'),
            (
                "Update",
                g1,
                Some(seen(ENT, "UPDATE_ROLLBACK_IN_PROGRESS", g1)),
                'P',
            ),
            ("Delete", g1, Some(seen(ENT, "DELETE_IN_PROGRESS", g1)), 'P'),
            // Real, but not waiting for this request: replayed or forged.
            ("Create", None, Some(seen(ENT, "CREATE_COMPLETE", g1)), 'R'),
            ("Update", g1, Some(seen(ENT, "CREATE_COMPLETE", g1)), 'R'),
            ("Delete", g1, Some(seen(ENT, "CREATE_COMPLETE", g1)), 'R'),
            ("Delete", g1, Some(seen(ENT, "UPDATE_COMPLETE", g1)), 'R'),
            ("Delete", g1, Some(seen(ENT, "DELETE_COMPLETE", g1)), 'R'),
            (
                "Create",
                None,
                Some(seen(ENT, "DELETE_IN_PROGRESS", None)),
                'R',
            ),
            // Another resource type under that logical id.
            (
                "Create",
                None,
                Some(seen("AWS::S3::Bucket", "CREATE_IN_PROGRESS", None)),
                'R',
            ),
            (
                "Create",
                None,
                Some(seen(
                    "Custom::MarketplacePortfolioShare",
                    "CREATE_IN_PROGRESS",
                    None,
                )),
                'R',
            ),
            // The clean-up Delete of a replaced physical id: nothing is written.
            ("Delete", g1, Some(seen(ENT, "UPDATE_COMPLETE", g2)), 'C'),
            ("Delete", g1, Some(seen(ENT, "UPDATE_IN_PROGRESS", g2)), 'C'),
            ("Delete", g1, Some(seen(ENT, "DELETE_IN_PROGRESS", g2)), 'C'),
            ("Delete", g1, Some(seen(ENT, "DELETE_COMPLETE", g2)), 'R'),
            ("Delete", g1, Some(seen(ENT, "CREATE_IN_PROGRESS", g2)), 'R'),
            ("Delete", g1, Some(seen(ENT, "CREATE_COMPLETE", g2)), 'R'),
            (
                "Delete",
                g1,
                Some(seen(ENT, "UPDATE_ROLLBACK_COMPLETE", g2)),
                'C',
            ),
            // Unknown request types are never in progress.
            (
                "Frobnicate",
                None,
                Some(seen(ENT, "CREATE_IN_PROGRESS", None)),
                'R',
            ),
        ];
        for (request_type, physical, observed, want) in cases {
            let verdict = judge(&claim(request_type, *physical), observed.as_ref());
            let got = match &verdict {
                Verdict::Proceed => 'P',
                Verdict::ReplacedCleanup => 'C',
                Verdict::Refuse(reason) => {
                    assert!(reason.contains("nothing was done"), "{reason}");
                    'R'
                }
            };
            assert_eq!(
                got, *want,
                "{request_type} {physical:?} seeing {observed:?}: {verdict:?}"
            );
        }
    }

    #[test]
    fn topic_requests_and_foreign_stacks_are_verified() {
        let own = AccountId::parse("111111111111").expect("valid id");
        let other = AccountId::parse("222222222222").expect("valid id");
        assert!(needs_verification(true, &own, Some(&own)));
        assert!(needs_verification(true, &other, None));
        assert!(needs_verification(false, &other, Some(&own)));
        assert!(!needs_verification(false, &own, Some(&own)));
        assert!(!needs_verification(false, &other, None));
    }

    #[test]
    fn stack_location_reads_partition_and_region() {
        assert_eq!(stack_location(STACK), Some(("aws", "us-east-1")));
        assert_eq!(
            stack_location("arn:aws-us-gov:cloudformation:us-gov-west-1:1:stack/a/b"),
            Some(("aws-us-gov", "us-gov-west-1"))
        );
        assert_eq!(stack_location("arn:aws:s3:::bucket"), None);
        assert_eq!(stack_location("arn:aws:cloudformation::1:stack/a"), None);
    }
}
