//! Configuration: environment variables set by the SAM template, parsed and validated once at
//! init. Every error names the variable. Parsing makes no AWS call.
//!
//! One file per concern: `env` reads the environment (and parses the value shapes settings
//! share), `selection` the license selection, OU rules and tag settings, `modes` the
//! distribution modes, `grants` the grant settings, `runtime` queues, limits and timings, and
//! [`vars`] names the variables. This file holds [`Config`] and runs the steps in order.
//!
//! The selection can come from a configuration document instead ([`document`]: one version of
//! an S3 object, named by `CONFIG_DOCUMENT` and `CONFIG_DOCUMENT_VERSION`); [`load`] reads it
//! once per container, at cold start.

pub mod document;
mod env;
mod grants;
mod modes;
mod runtime;
mod selection;
pub mod vars;

pub use document::{check_document, Document, DocumentSource, Summary};
pub(crate) use env::parse_queue_url;
pub use env::{parse_bool, parse_num};
pub use grants::OverrideBehavior;
pub(crate) use modes::Mode;
pub use selection::{LicenseRef, Selection};

use crate::error::Error;
use crate::ids::AccountId;
use env::Env;
use grants::Grants;
use runtime::{Limits, Queues};
use selection::Selected;
use std::collections::BTreeMap;
use std::time::Duration;

/// Validated configuration of the account-lifecycle engine.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    pub selection: Selection,
    /// OU id → licenses for accounts directly in that OU (replaces `selection` for them; empty = none).
    pub ou_rules: BTreeMap<String, Vec<LicenseRef>>,
    /// License → distribution mode; licenses not named here are distributed per account.
    #[serde(serialize_with = "modes::distribution_map")]
    pub(crate) distribution: BTreeMap<LicenseRef, Mode>,
    /// When non-empty, only accounts directly in one of these OUs are entitled.
    pub target_ous: Vec<String>,
    /// When set, only accounts carrying this tag key (and value) are entitled.
    pub account_tag_filter: Option<(String, String)>,
    /// When set, an account tag with this key adds its space-separated SKUs/ARNs to the selection.
    pub licenses_tag_key: Option<String>,
    pub execution_role_name: String,
    /// The partition the ARNs this engine builds are in (`aws`, `aws-us-gov`, `aws-cn`, …):
    /// `AWS_PARTITION`, else the partition of `AWS_REGION` (set by Lambda) or
    /// `AWS_DEFAULT_REGION`, else `aws`.
    pub partition: String,
    pub license_home_region: String,
    pub override_behavior: OverrideBehavior,
    pub allowed_operations: Vec<String>,
    pub grant_name_prefix: String,
    pub dry_run: bool,
    pub max_concurrent_licenses: usize,
    pub max_concurrent_accounts: usize,
    /// License Manager calls per second and operation, shared by the container (burst as many).
    pub license_manager_calls_per_second: u32,
    /// Queue for delayed re-checks of grants still in workflow (the onboarding queue).
    pub onboarding_queue_url: Option<String>,
    /// Re-checks of backfill work go here (the backfill queue), when set.
    pub backfill_queue_url: Option<String>,
    /// Final failures go here (the notification queue), when set.
    pub notify_queue_url: Option<String>,
    /// The accounts' live chains ([`crate::chain`]), when set.
    pub chain_table: Option<String>,
    /// The queues' maxReceiveCount: the delivery after which SQS parks a message.
    pub max_receives: u32,
    #[serde(with = "secs")]
    pub recheck_delay: Duration,
    #[serde(with = "secs")]
    pub workflow_deadline: Duration,
    pub assume_role_attempts: u32,
    #[serde(with = "millis")]
    pub assume_role_backoff: Duration,
    /// The account this stack runs in (the template sets it from `AWS::AccountId`). The engine
    /// never grants to it: in a delegated administrator deployment it is a member account that
    /// Control Tower reports like any other, and a grant to the grantor itself is invalid.
    pub self_account_id: Option<AccountId>,
}

mod secs {
    pub(crate) fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
}

mod millis {
    pub(crate) fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_u128(d.as_millis())
    }
}

impl Config {
    /// Reads the process environment for functions whose requests name their own licenses:
    /// no selection is required (and none is used).
    pub fn from_env_per_request() -> Result<Self, Error> {
        Self::parse(|k| std::env::var(k).ok(), false)
    }

    /// Reads configuration through `lookup` (the environment in production, a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        Self::parse(lookup, true)
    }

    /// Like [`Config::from_lookup`], for functions whose requests name their own licenses.
    pub fn from_lookup_per_request(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        Self::parse(lookup, false)
    }

    /// Reads configuration through `lookup` with the selection from `document` (parsed by
    /// [`Document::parse`]) when given: the environment's selection variables must then be
    /// unset. Without a document it is [`Config::from_lookup`]. No AWS call: the document's
    /// text is read by [`load`] (in a function) or by the caller (the CLI).
    pub fn from_lookup_with_document(
        lookup: impl Fn(&str) -> Option<String>,
        document: Option<&Document>,
    ) -> Result<Self, Error> {
        Self::parse_with(lookup, true, document)
    }

    fn parse(
        lookup: impl Fn(&str) -> Option<String>,
        require_selection: bool,
    ) -> Result<Self, Error> {
        Self::parse_with(lookup, require_selection, None)
    }

    /// Parses every setting. The steps run in a fixed order, so that of several bad settings
    /// the same one is always reported: the selection (with OU rules, target OUs and tags),
    /// the distribution modes, the grant settings, the queues, the stack's own account, then
    /// the dry-run switch, limits and timings. With a `document`, the selection and the
    /// distribution modes are the document's.
    fn parse_with(
        lookup: impl Fn(&str) -> Option<String>,
        require_selection: bool,
        document: Option<&Document>,
    ) -> Result<Self, Error> {
        let env = Env::new(&lookup);
        let (selected, distribution) = match document {
            Some(document) => {
                document::refuse_selection_variables(&env)?;
                let mut selected = document.selected.clone();
                selected.licenses_tag_key = env.get(vars::LICENSES_TAG_KEY);
                (selected, document.distribution.clone())
            }
            None => {
                let selected = Selected::parse(&env, require_selection)?;
                let distribution = modes::parse_distribution(
                    env.get(vars::LICENSE_DISTRIBUTION).as_deref(),
                    &selected,
                )?;
                (selected, distribution)
            }
        };
        let grants = Grants::parse(&env)?;
        let queues = Queues::parse(&env)?;
        let self_account_id = runtime::self_account_id(&env)?;
        let limits = Limits::parse(&env)?;
        Ok(Config::assemble(
            selected,
            distribution,
            grants,
            queues,
            self_account_id,
            limits,
        ))
    }

    /// The configuration of the parsed parts.
    fn assemble(
        selected: Selected,
        distribution: BTreeMap<LicenseRef, Mode>,
        grants: Grants,
        queues: Queues,
        self_account_id: Option<AccountId>,
        limits: Limits,
    ) -> Self {
        Config {
            selection: selected.selection,
            ou_rules: selected.ou_rules,
            distribution,
            target_ous: selected.target_ous,
            account_tag_filter: selected.account_tag_filter,
            licenses_tag_key: selected.licenses_tag_key,
            execution_role_name: grants.execution_role_name,
            partition: grants.partition,
            license_home_region: grants.license_home_region,
            override_behavior: grants.override_behavior,
            allowed_operations: grants.allowed_operations,
            grant_name_prefix: grants.grant_name_prefix,
            dry_run: limits.dry_run,
            max_concurrent_licenses: limits.max_concurrent_licenses,
            max_concurrent_accounts: limits.max_concurrent_accounts,
            license_manager_calls_per_second: limits.license_manager_calls_per_second,
            onboarding_queue_url: queues.onboarding_queue_url,
            backfill_queue_url: queues.backfill_queue_url,
            notify_queue_url: queues.notify_queue_url,
            chain_table: queues.chain_table,
            max_receives: limits.max_receives,
            recheck_delay: limits.recheck_delay,
            workflow_deadline: limits.workflow_deadline,
            assume_role_attempts: limits.assume_role_attempts,
            assume_role_backoff: limits.assume_role_backoff,
            self_account_id,
        }
    }
}

/// The first step of loading a configuration at cold start (`crate::startup::load`): it is
/// complete from the environment, or it needs the configuration document `CONFIG_DOCUMENT`
/// names, every other setting checked already (a bad setting, or a selection set both ways,
/// fails here, before any AWS call).
pub(crate) enum Loading {
    Ready(Box<Config>),
    NeedsDocument(DocumentSource),
}

pub(crate) fn begin_load(
    lookup: impl Fn(&str) -> Option<String>,
    require_selection: bool,
) -> Result<Loading, Error> {
    let source = DocumentSource::from_env(&Env::new(&lookup))?;
    let Some(source) = source else {
        return Config::parse(lookup, require_selection).map(|c| Loading::Ready(Box::new(c)));
    };
    // Everything but the selection first, and the selection set only once.
    document::refuse_selection_variables(&Env::new(&lookup))?;
    Config::parse(&lookup, false)?;
    Ok(Loading::NeedsDocument(source))
}

/// The second step: the configuration with the document's `text` as its selection.
pub(crate) fn finish_load(
    lookup: impl Fn(&str) -> Option<String>,
    require_selection: bool,
    text: &str,
) -> Result<(Config, Document), Error> {
    let document = Document::parse(text)?;
    let config = Config::parse_with(&lookup, require_selection, Some(&document))?;
    Ok((config, document))
}

#[cfg(test)]
mod tests;
