//! A stateful AWS License Manager + Service Catalog emulator speaking AWS JSON 1.1 over
//! HTTP/1.1 on 127.0.0.1, for the unmodified Rust SDK clients.
//!
//! * API calls: `POST /` with `X-Amz-Target: AWSLicenseManager.<Op>` or
//!   `AWS242ServiceCatalogService.<Op>`. The caller's account comes from the access key id in
//!   the SigV4 `Authorization` header (see [`EmulatorOptions`]).
//! * Control endpoints (plain JSON, path prefix `/_emulator/`): `POST reset`,
//!   `POST licenses` ([`LicenseSeed`]), `GET|POST config` ([`Switches`], partial updates),
//!   `GET state`, `GET calls` ([`CallRecord`]), `POST orgs` ([`OrgSeed`]),
//!   `POST accounts` (`{"accessKeyId","account"}`), `POST clock` (`{"advanceMs"}`),
//!   `GET events?after=<seq>&account=<id>` (the EventBridge events put on the buses, after a
//!   sequence number and on one account's bus, both optional: License Manager's `Grant Change`
//!   and `License Change` events, Control Tower's lifecycle events produced by account
//!   vending; due grant workflows are moved along first; `{"events": [...], "next": <seq>}`),
//!   `GET model-violations` ([`ModelReport`]), `POST model-violations/take` (returns and
//!   forgets the violations). [`ControlClient`] wraps them.
//! * Every API request is checked against AWS's published model of the service (botocore's
//!   `service-2.json`, see [`models`]) unless `checkModels` is off: a request the model refuses
//!   is answered `ValidationException` and recorded; an [`EmulatorHandle`] dropped or shut
//!   down with recorded violations panics (failing the test that sent them) unless
//!   [`EmulatorOptions::fail_on_model_violations`] is off.

mod common;
mod license_manager;
pub mod models;
mod org;
mod service_catalog;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

use common::{ApiError, Clock, IdGen, Service};
use license_manager::{Ctx, LicenseManager};
use org::{MotoPeer, OrgInfo, OrgView};
use service_catalog::{parse_managed_ou, ScCtx, ServiceCatalog, VendJob, VendOutcome};

use license_manager::{missing_slrs, SlrView};
pub use license_manager::{
    LicenseSeed, ALLOWED_OPERATIONS, EVENT_SOURCE, GRANT_CHANGE, LEFT_ORGANIZATION_MESSAGE,
    LICENSE_CHANGE, MARKETPLACE_ACCOUNT, MEMBER_SLRS, ONE_ACTIVE_LICENSE_MESSAGE,
};
pub use models::{ModelReport, ModelViolation};
pub use org::{OrgSeed, OuSeed};
pub use service_catalog::{ACCOUNT_FACTORY, ACCOUNT_FACTORY_BUSY, CONTROL_TOWER_BUSY};

/// moto's default account, used for callers nothing else identifies.
pub const DEFAULT_ACCOUNT: &str = "123456789012";

/// Runtime switches (`POST /_emulator/config` takes any subset of these fields, camelCase).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Switches {
    /// Added to every API call.
    pub latency_ms: u64,
    /// Calls per second allowed for each operation (sliding one-second window); beyond it the
    /// call fails with `RateLimitExceededException` (License Manager) or `ThrottlingException`.
    pub rate_limit_per_second: Option<u32>,
    /// Per-operation overrides of `rate_limit_per_second`, e.g. `{"CreateGrant": 1}`.
    pub rate_limits: std::collections::BTreeMap<String, u32>,
    /// Probability of an injected HTTP 500 `ServerInternalException`.
    pub server_error_probability: f64,
    /// Probability of an injected `RateLimitExceededException`.
    pub throttle_probability: f64,
    /// Injected 500s happen after the operation took effect (ambiguous outcome) instead of
    /// before.
    pub fault_after_commit: bool,
    /// Operations the injected faults apply to; empty means all.
    pub fault_operations: Vec<String>,
    /// Seed of the fault generator (re-seeded whenever this field is set).
    pub seed: u64,
    /// How long a new grant stays in PENDING_WORKFLOW.
    pub pending_workflow_ms: u64,
    /// `false` forces every grant to PENDING_ACCEPT (no organization auto-accept).
    pub auto_accept: bool,
    pub max_grants_per_license: usize,
    /// Page size of list operations called without `MaxResults`.
    pub default_page_size: usize,
    /// How long an Account Factory request stays IN_PROGRESS.
    pub provisioning_ms: u64,
    /// Account Factory requests in flight at once (Control Tower runs 5).
    pub max_concurrent_account_operations: usize,
    /// Account Factory requests whose AccountEmail contains this (case-insensitive) FAIL.
    pub fail_email_marker: String,
    /// The error code of a busy Account Factory: `ResourceInUseException` (AWS's answer) or
    /// `InvalidParametersException` (the "operation is in progress" variant also seen).
    pub account_factory_busy_code: String,
    /// How long an accepted grant stays DISABLED ("Processing") after `CreateGrantVersion
    /// Status=ACTIVE` before the activation applies (0: at once, in the same call).
    pub activation_ms: u64,
    /// Whether the account-level children of organization/OU grants also show in the grantor's
    /// `ListDistributedGrants` (undocumented in AWS; `true` is the harsher reading).
    pub children_in_distributed_grants: bool,
    /// Account-level grants (children included) whose recipient lacks the member
    /// service-linked roles end in FAILED_WORKFLOW when their workflow settles.
    pub require_recipient_slrs: bool,
    /// How long the emulator trusts what it read of the organization from moto (emulator
    /// clock); 0 re-reads it for every request that needs it.
    pub org_cache_ms: u64,
    /// Probability of an injected HTTP 500 after the operation took effect (the write
    /// happened, the answer is lost), independently of `server_error_probability` and
    /// `fault_after_commit`; limited to `fault_operations` like the other faults.
    pub commit_fault_probability: f64,
    /// Probability that a call waits `spike_ms` more (a latency spike), on top of `latency_ms`.
    pub spike_probability: f64,
    pub spike_ms: u64,
    /// One-shot faults for chosen operations, consumed in order (each matching call takes one
    /// from `count`); independent of the probabilities and of `fault_operations`.
    pub fail_next: Vec<FailNext>,
    /// Check every request against AWS's model of the service ([`models`]); a request it
    /// refuses is answered `ValidationException` and recorded as a [`ModelViolation`].
    pub check_models: bool,
    /// `false` only records what the models refuse and serves the request anyway (to see
    /// every violation of a flow at once, not just the first).
    pub refuse_model_violations: bool,
    // Readings of what AWS leaves undocumented (docs/development.md, "The local AWS world";
    // issue 17). Each default is the harsher reading; the engine converges under every one
    // (tests/tests/readings.rs).
    /// A deleted account-level child of an organization/OU grant that had failed its workflow
    /// is handed out again to its member (`true`), or never (`false`, the harsher reading and
    /// the default: AWS documents "Deleted is a terminal state for that Grant" and promises
    /// children only to accounts that join).
    pub reissue_deleted_child: bool,
    /// The `ParentArn` of an organization/OU grant's account-level children (undocumented).
    pub child_parent_arn: ChildParentArn,
    /// The `ParentArn` of a per-account grant (undocumented).
    pub account_grant_parent_arn: AccountGrantParentArn,
    /// Whether an OU grant reaches accounts in the OU's nested OUs (undocumented; the guide
    /// says only "an organizational unit (OU), which includes all accounts in the OU").
    pub ou_grants_reach_nested_ous: bool,
    /// A grantee's `Options.ActivationOverrideBehavior` on `CreateGrantVersion` when the grantor
    /// already set one (the API reference allows it only if the grantor "doesn't specify" one).
    pub grantee_override: GranteeOverride,
    /// What `CreateGrantVersion Status=ACTIVE` answers while the activation is still
    /// processing (undocumented): `DISABLED` (the grant's status) or `ACTIVE`.
    pub pending_activation_answer: PendingActivationAnswer,
    /// Whether a delegated administrator (any member account but the management account) may
    /// call `ListReceivedGrantsForOrganization` (undocumented).
    pub org_read_for_delegated_admin: OrgReadForDelegatedAdmin,
    /// The account registered as License Manager's delegated administrator
    /// (`organizations:RegisterDelegatedAdministrator`, which the emulator does not read from
    /// moto): it may create organization/OU grants, as the management account may.
    pub delegated_administrator: Option<String>,
    /// Whether License Manager's `Grant Change` and `License Change` EventBridge events are
    /// recorded (`GET /_emulator/events`); `false` records none (AWS delivers them on a
    /// best-effort basis). Unlike the other readings, the default (`true`) is not the harsher
    /// one: without events the two readings below would show nothing.
    pub change_events: bool,
    /// What a change event names (undocumented): nothing (the harsher reading, the default),
    /// the grant, or the grant with its grantee, status, version, license and parent.
    pub grant_change_detail: GrantChangeDetail,
    /// Which account's bus receives a `Grant Change` (undocumented); a `License Change` goes to
    /// the license's holder.
    pub change_events_to: ChangeEventsTo,
}

/// [`Switches::grant_change_detail`]: what `resources` and `detail` of License Manager's
/// change events hold. A `License Change` follows the same reading (nothing; the license's
/// ARN; that plus its `status` and `beneficiary`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum GrantChangeDetail {
    /// `resources: []`, `detail: {}`: nothing to act on (the harsher reading, the default).
    #[default]
    None,
    /// `resources: [grantArn]`, `detail: {"grantArn"}`.
    Grant,
    /// As `Grant`, plus `detail.granteePrincipal`, `status` (the new one), `version`,
    /// `licenseArn` and `parentArn` (when the grant shows one).
    Grantee,
}

/// [`Switches::change_events_to`]: whose EventBridge bus receives a `Grant Change`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum ChangeEventsTo {
    /// The grantee's account, when the grantee is an account (`arn:aws:iam::<id>:root`); an
    /// organization/OU grant's event goes to its grantor (the harsher reading, the default:
    /// the grantor never hears of its per-account grants).
    #[default]
    Grantee,
    /// The grantor's (issuer's) account only.
    Grantor,
    /// One event to each of the two, one when they are the same account.
    Both,
}

/// [`Switches::child_parent_arn`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum ChildParentArn {
    /// The organization/OU grant's ARN.
    Parent,
    /// The license's ARN (as a per-account grant's): the harsher reading, the default.
    #[default]
    License,
    /// No `ParentArn` in the answer.
    Absent,
}

/// [`Switches::account_grant_parent_arn`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum AccountGrantParentArn {
    /// The license's ARN.
    License,
    /// Some other value (neither the license nor an organization/OU grant): the harsher
    /// reading, the default.
    #[default]
    Other,
}

/// [`Switches::grantee_override`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum GranteeOverride {
    /// The grantee's behavior replaces the grantor's.
    Honoured,
    /// The grantor's behavior applies; the grantee's is silently dropped (the harsher reading,
    /// the default).
    #[default]
    Ignored,
    /// `ValidationException`.
    Rejected,
}

/// [`Switches::pending_activation_answer`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PendingActivationAnswer {
    /// The grant's status while processing.
    Disabled,
    /// `ACTIVE` although the grant is not active yet (the harsher reading, the default).
    #[default]
    Active,
}

/// [`Switches::org_read_for_delegated_admin`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum OrgReadForDelegatedAdmin {
    Allowed,
    /// `AccessDeniedException` for anyone but the management account.
    #[default]
    Denied,
}

/// A one-shot fault of [`Switches::fail_next`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct FailNext {
    /// The operation, e.g. `CreateGrant`.
    pub operation: String,
    /// How many of its next calls fail.
    pub count: u32,
    pub mode: FailMode,
}

/// Where a [`FailNext`] fault strikes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum FailMode {
    /// HTTP 500 before the operation runs: nothing happened.
    #[default]
    Before,
    /// The operation takes effect, then HTTP 500: the answer is lost.
    AfterCommit,
    /// The operation takes effect and the answer never comes ([`HANG`]): the caller is stuck
    /// as a Lambda container would be when it dies mid-call; tests drop the caller's future.
    Hang,
}

/// How long a [`FailMode::Hang`] call waits before answering (longer than any test).
pub const HANG: Duration = Duration::from_secs(900);

/// Faults injected so far, by kind (`GET /_emulator/stats` → `faults`; reset with the state).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct FaultCounts {
    /// Injected `RateLimitExceededException`/`ThrottlingException` (probability or rate limit).
    pub throttles: u64,
    /// Injected 500s before the operation ran.
    pub server_errors: u64,
    /// Injected 500s after the operation took effect.
    pub after_commit: u64,
    /// Latency spikes.
    pub spikes: u64,
    /// [`FailNext`] faults of any mode, and of them the hangs.
    pub fail_next: u64,
    pub hangs: u64,
}

impl Default for Switches {
    fn default() -> Self {
        Self {
            latency_ms: 0,
            rate_limit_per_second: None,
            rate_limits: Default::default(),
            server_error_probability: 0.0,
            throttle_probability: 0.0,
            fault_after_commit: false,
            fault_operations: Vec::new(),
            seed: 7,
            pending_workflow_ms: 0,
            auto_accept: true,
            max_grants_per_license: 2000,
            default_page_size: 100,
            provisioning_ms: 0,
            max_concurrent_account_operations: 5,
            fail_email_marker: "fail".to_string(),
            account_factory_busy_code: "ResourceInUseException".to_string(),
            activation_ms: 0,
            children_in_distributed_grants: true,
            require_recipient_slrs: true,
            org_cache_ms: 1_000,
            commit_fault_probability: 0.0,
            spike_probability: 0.0,
            spike_ms: 0,
            fail_next: Vec::new(),
            check_models: true,
            refuse_model_violations: true,
            reissue_deleted_child: false,
            child_parent_arn: ChildParentArn::License,
            account_grant_parent_arn: AccountGrantParentArn::Other,
            ou_grants_reach_nested_ous: false,
            grantee_override: GranteeOverride::Ignored,
            pending_activation_answer: PendingActivationAnswer::Active,
            org_read_for_delegated_admin: OrgReadForDelegatedAdmin::Denied,
            delegated_administrator: None,
            change_events: true,
            grant_change_detail: GrantChangeDetail::None,
            change_events_to: ChangeEventsTo::Grantee,
        }
    }
}

/// The environment variable [`Switches::from_env`] reads a profile name from.
pub const PROFILE_ENV: &str = "CT_EMULATOR_PROFILE";

impl Switches {
    /// AWS's asynchronous behaviour in seconds instead of minutes: grant workflows,
    /// activations and Account Factory provisioning take a while.
    pub fn realistic() -> Self {
        Self {
            pending_workflow_ms: 1_500,
            activation_ms: 1_500,
            provisioning_ms: 2_000,
            ..Self::default()
        }
    }

    /// A named profile: `default` (everything at once) or `realistic`.
    pub fn profile(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "" | "default" | "instant" => Some(Self::default()),
            "realistic" => Some(Self::realistic()),
            _ => None,
        }
    }

    /// The profile named by `CT_EMULATOR_PROFILE` (default when unset); an unknown name is an
    /// error.
    pub fn from_env() -> Result<Self, String> {
        match std::env::var(PROFILE_ENV) {
            Err(_) => Ok(Self::default()),
            Ok(name) => Self::profile(&name).ok_or_else(|| {
                format!("{PROFILE_ENV}={name}: unknown profile (use default or realistic)")
            }),
        }
    }
}

/// How to start an emulator.
#[derive(Debug, Clone)]
pub struct EmulatorOptions {
    /// 0 picks a free port.
    pub port: u16,
    /// moto's URL: caller accounts and the organization then come from moto.
    pub moto_url: Option<String>,
    /// The access key id the emulator signs its moto Organizations calls with; moto must map it
    /// to the management account (moto's default account for any non-moto key).
    pub moto_management_key: String,
    /// Access key id → account id. Checked first; then a 12-digit access key id is taken as
    /// the account id itself; then moto's STS; else `default_account`.
    pub accounts: HashMap<String, String>,
    pub default_account: String,
    /// The organization when there is no moto.
    pub org: Option<OrgSeed>,
    pub switches: Switches,
    /// Panic when the [`EmulatorHandle`] is dropped or shut down while model violations are
    /// recorded (and not taken with [`ControlClient::take_model_violations`]), so that the
    /// test that sent a request AWS would refuse fails.
    pub fail_on_model_violations: bool,
}

impl Default for EmulatorOptions {
    fn default() -> Self {
        Self {
            port: 0,
            moto_url: None,
            moto_management_key: "testing".to_string(),
            accounts: HashMap::new(),
            default_account: DEFAULT_ACCOUNT.to_string(),
            org: None,
            switches: Switches::default(),
            fail_on_model_violations: true,
        }
    }
}

/// One API call as the emulator saw it (`GET /_emulator/calls`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CallRecord {
    pub seq: u64,
    /// `license-manager` or `servicecatalog`.
    pub service: String,
    pub operation: String,
    /// The caller's account (`unknown` if it could not be resolved).
    pub account: String,
    pub access_key_id: Option<String>,
    /// Emulator clock, milliseconds since the epoch.
    pub at_ms: u64,
    /// `ok` or the error code returned.
    pub outcome: String,
}

/// One event put on an emulated EventBridge bus (`GET /_emulator/events`).
#[derive(Debug, Clone)]
struct LoggedEvent {
    /// 1 for the first event after a start or reset, then one more per event.
    seq: u64,
    /// Emulator clock, milliseconds since the epoch, when the change took effect.
    at_ms: u64,
    /// A `Grant Change`'s new grant status, whatever `grantChangeDetail` lets it show.
    grant_status: Option<String>,
    /// The EventBridge envelope; its `account` is the bus that receives it.
    envelope: Value,
}

struct State {
    lm: LicenseManager,
    sc: ServiceCatalog,
    switches: Switches,
    org_seed: Option<OrgSeed>,
    accounts: HashMap<String, String>,
    caller_cache: HashMap<String, String>,
    calls: Vec<CallRecord>,
    rate: HashMap<String, VecDeque<std::time::Instant>>,
    rng: SmallRng,
    ids: IdGen,
    /// Accounts known to hold every member service-linked role (read from moto once).
    slr_present: BTreeSet<String>,
    /// Without moto: account → the member SLR services it has (unlisted accounts have all).
    seeded_slrs: HashMap<String, Vec<String>>,
    /// What was last read of the organization from moto.
    org_cache: Option<OrgCache>,
    faults: FaultCounts,
    /// EventBridge events: License Manager's change events and Control Tower's lifecycle
    /// events, oldest first.
    events: Vec<LoggedEvent>,
}

/// The organization as read from moto at `at` (emulator clock), with the OUs read then.
#[derive(Debug, Clone)]
struct OrgCache {
    at: std::time::Instant,
    info: Option<OrgInfo>,
    ous: BTreeSet<String>,
}

impl State {
    fn new(opts: &EmulatorOptions, epoch_ms: u64) -> Self {
        let mut ids = IdGen::new();
        Self {
            lm: LicenseManager::default(),
            sc: ServiceCatalog::new(&mut ids, epoch_ms),
            switches: opts.switches.clone(),
            org_seed: opts.org.clone(),
            accounts: opts.accounts.clone(),
            caller_cache: HashMap::new(),
            calls: Vec::new(),
            rate: HashMap::new(),
            rng: SmallRng::seed_from_u64(opts.switches.seed),
            ids,
            slr_present: BTreeSet::new(),
            seeded_slrs: HashMap::new(),
            org_cache: None,
            faults: FaultCounts::default(),
            events: Vec::new(),
        }
    }

    /// Puts one EventBridge envelope in the event log.
    fn log_event(&mut self, envelope: Value, at_ms: u64, grant_status: Option<String>) {
        let seq = self.events.last().map_or(0, |e| e.seq) + 1;
        self.events.push(LoggedEvent {
            seq,
            at_ms,
            grant_status,
            envelope,
        });
    }

    /// Turns what License Manager changed since the last call into change events (none when
    /// `changeEvents` is off: the changes are dropped).
    fn log_lm_changes(&mut self) {
        let changes = self.lm.take_changes();
        if !self.switches.change_events {
            return;
        }
        for change in changes {
            for envelope in change.envelopes(&self.switches, &mut self.ids) {
                let status = change.grant_status().map(str::to_string);
                self.log_event(envelope, change.at_ms(), status);
            }
        }
    }

    /// The events after `after` (a sequence number) on `account`'s bus (every bus when
    /// `None`), and the sequence number to ask after next time.
    fn events_after(&self, after: u64, account: Option<&str>) -> (Vec<Value>, u64) {
        let events = self
            .events
            .iter()
            .filter(|e| e.seq > after)
            .filter(|e| account.is_none_or(|a| e.envelope["account"] == a))
            .map(|e| e.envelope.clone())
            .collect();
        let next = self.events.last().map_or(after, |e| e.seq.max(after));
        (events, next)
    }

    /// Event counts for `GET /_emulator/stats`: by `detail-type`, and Grant Changes by the
    /// new status, with the emulator-clock time of the last event.
    fn event_stats(&self) -> Value {
        let mut by_type: BTreeMap<String, u64> = BTreeMap::new();
        let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
        for e in &self.events {
            let detail_type = e.envelope["detail-type"].as_str().unwrap_or_default();
            *by_type.entry(detail_type.to_string()).or_default() += 1;
            if let Some(status) = &e.grant_status {
                *by_status.entry(status.clone()).or_default() += 1;
            }
        }
        json!({
            "total": self.events.len(),
            "byDetailType": by_type,
            "grantStatuses": by_status,
            "lastAtMs": self.events.last().map(|e| e.at_ms),
        })
    }
}

struct Emulator {
    opts: EmulatorOptions,
    moto: Option<MotoPeer>,
    clock: Clock,
    state: Mutex<State>,
    /// Held while the organization is read from moto, so requests arriving together read it
    /// once and the others use what that read cached (moto answers one request at a time).
    org_read: tokio::sync::Mutex<()>,
    /// The same for a recipient's service-linked roles.
    slr_read: tokio::sync::Mutex<()>,
    /// Requests the models refused (kept across resets; shared with the handle).
    model_log: Arc<Mutex<ModelReport>>,
}

/// A running emulator; shuts down on drop or [`EmulatorHandle::shutdown`].
#[derive(Debug)]
pub struct EmulatorHandle {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    model_log: Arc<Mutex<ModelReport>>,
    fail_on_model_violations: bool,
}

/// Starts an emulator on 127.0.0.1.
pub async fn start(opts: EmulatorOptions) -> io::Result<EmulatorHandle> {
    let listener = TcpListener::bind(("127.0.0.1", opts.port)).await?;
    let addr = listener.local_addr()?;
    let clock = Clock::default();
    let state = Mutex::new(State::new(&opts, clock.epoch_ms()));
    let moto = opts
        .moto_url
        .as_deref()
        .map(|url| MotoPeer::new(url, &opts.moto_management_key));
    let mut report = ModelReport::default();
    for service in [Service::LicenseManager, Service::ServiceCatalog] {
        if let Some(model) = models::model(service.name()) {
            report
                .models
                .insert(service.name().to_string(), model.version.clone());
        }
    }
    let model_log = Arc::new(Mutex::new(report));
    let fail_on_model_violations = opts.fail_on_model_violations;
    let emulator = Arc::new(Emulator {
        opts,
        moto,
        clock,
        state,
        org_read: tokio::sync::Mutex::new(()),
        slr_read: tokio::sync::Mutex::new(()),
        model_log: model_log.clone(),
    });
    let (stop, mut stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let _ = stream.set_nodelay(true);
                    let emulator = emulator.clone();
                    connections.spawn(async move {
                        let service = service_fn(move |request| {
                            let emulator = emulator.clone();
                            async move { Ok::<_, Infallible>(emulator.handle(request).await) }
                        });
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
    });
    tracing::debug!(%addr, "emulator listening");
    Ok(EmulatorHandle {
        addr,
        stop: Some(stop),
        task: Some(task),
        model_log,
        fail_on_model_violations,
    })
}

impl EmulatorHandle {
    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    pub fn control(&self) -> ControlClient {
        ControlClient::new(&self.url())
    }
    /// Stops accepting, closes open connections and waits for the server task.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.assert_no_model_violations();
    }
}

impl EmulatorHandle {
    /// Panics (once) if requests the models refuse were recorded and not taken, unless
    /// `fail_on_model_violations` is off or the thread is already panicking.
    fn assert_no_model_violations(&mut self) {
        if !self.fail_on_model_violations || std::thread::panicking() {
            return;
        }
        let violations = std::mem::take(
            &mut self
                .model_log
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .violations,
        );
        if !violations.is_empty() {
            let list = violations
                .iter()
                .map(|v| {
                    format!(
                        "  {} {}: {} = {}: {}",
                        v.service, v.operation, v.member, v.value, v.constraint
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            panic!(
                "the emulator answered ValidationException to {} request member(s) AWS's API \
                 model refuses:\n{list}",
                violations.len()
            );
        }
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
        self.assert_no_model_violations();
    }
}

fn response(status: u16, body: &Value, headers: &[(&str, &str)]) -> Response<Full<Bytes>> {
    let mut builder = Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let bytes = Bytes::from(serde_json::to_vec(body).unwrap_or_default());
    builder
        .body(Full::new(bytes.clone()))
        .unwrap_or_else(|_| Response::new(Full::new(bytes)))
}

/// Access key id and region from `Authorization: AWS4-HMAC-SHA256 Credential=AKID/date/region/…`.
fn parse_authorization(headers: &HeaderMap) -> (Option<String>, Option<String>) {
    let Some(value) = headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return (None, None);
    };
    let Some(credential) = value.split("Credential=").nth(1) else {
        return (None, None);
    };
    let credential = credential.split([',', ' ']).next().unwrap_or_default();
    let mut parts = credential.split('/');
    let akid = parts.next().filter(|s| !s.is_empty()).map(str::to_string);
    let region = parts.nth(1).map(str::to_string);
    (akid, region)
}

impl Emulator {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = request.into_parts();
        let body = match body.collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => return response(400, &json!({ "message": e.to_string() }), &[]),
        };
        if let Some(path) = parts.uri.path().strip_prefix("/_emulator/") {
            let query = parts.uri.query().unwrap_or_default();
            return self.control(&parts.method, path, query, &body).await;
        }
        let target = parts
            .headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let (service, op) = match target.split_once('.') {
            Some(("AWSLicenseManager", op)) => (Service::LicenseManager, op),
            Some(("AWS242ServiceCatalogService", op)) => (Service::ServiceCatalog, op),
            _ => {
                let error = ApiError::new(
                    "UnknownOperationException",
                    format!("unknown X-Amz-Target '{target}'"),
                );
                return Self::error_response(&error, "unknown");
            }
        };
        let request_id = self.lock().ids.request_id();
        match self.api(service, op, &parts.headers, &body).await {
            Ok(out) => response(
                200,
                &out,
                &[
                    ("content-type", "application/x-amz-json-1.1"),
                    ("x-amzn-requestid", &request_id),
                ],
            ),
            Err(error) => Self::error_response(&error, &request_id),
        }
    }

    fn error_response(error: &ApiError, request_id: &str) -> Response<Full<Bytes>> {
        response(
            error.status,
            &json!({ "__type": error.code, "message": error.message }),
            &[
                ("content-type", "application/x-amz-json-1.1"),
                ("x-amzn-requestid", request_id),
                ("x-amzn-errortype", &error.code),
            ],
        )
    }

    async fn api(
        &self,
        service: Service,
        op: &str,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Result<Value, ApiError> {
        let (akid, region) = parse_authorization(headers);
        let caller = self.resolve_caller(akid.as_deref()).await;
        let result = match &caller {
            Ok(account) => {
                let region = region.as_deref().unwrap_or("us-east-1");
                self.api_call(service, op, account, akid.as_deref(), region, body)
                    .await
            }
            Err(e) => Err(e.clone()),
        };
        let at_ms = self.clock.epoch_ms();
        let mut st = self.lock();
        let record = CallRecord {
            seq: st.calls.len() as u64 + 1,
            service: service.name().to_string(),
            operation: op.to_string(),
            account: caller.unwrap_or_else(|_| "unknown".to_string()),
            access_key_id: akid,
            at_ms,
            outcome: match &result {
                Ok(_) => "ok".to_string(),
                Err(e) => e.code.clone(),
            },
        };
        tracing::debug!(?record, "emulated call");
        st.calls.push(record);
        result
    }

    async fn resolve_caller(&self, akid: Option<&str>) -> Result<String, ApiError> {
        let Some(akid) = akid else {
            return Ok(self.opts.default_account.clone());
        };
        {
            let st = self.lock();
            if let Some(account) = st.accounts.get(akid).or_else(|| st.caller_cache.get(akid)) {
                return Ok(account.clone());
            }
        }
        if akid.len() == 12 && akid.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(akid.to_string());
        }
        match &self.moto {
            Some(moto) => {
                let account = moto.caller_account(akid).await?;
                self.lock()
                    .caller_cache
                    .insert(akid.to_string(), account.clone());
                Ok(account)
            }
            None => Ok(self.opts.default_account.clone()),
        }
    }

    async fn api_call(
        &self,
        service: Service,
        op: &str,
        caller: &str,
        access_key_id: Option<&str>,
        region: &str,
        body: &Bytes,
    ) -> Result<Value, ApiError> {
        let latency = {
            let mut st = self.lock();
            let sw = &st.switches;
            let (latency, spike_probability, spike_ms) =
                (sw.latency_ms, sw.spike_probability, sw.spike_ms);
            let spike = spike_probability > 0.0 && st.rng.random::<f64>() < spike_probability;
            if spike {
                st.faults.spikes += 1;
            }
            latency + if spike { spike_ms } else { 0 }
        };
        if latency > 0 {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
        let input: Value = if body.is_empty() {
            json!({})
        } else {
            serde_json::from_slice(body)
                .map_err(|e| ApiError::new("SerializationException", e.to_string()))?
        };
        self.check_model(service, op, &input)?;
        self.admit(service, op)?;
        let one_shot = self.take_fail_next(op);
        if one_shot == Some(FailMode::Before) {
            return Err(service.internal_error());
        }
        let out = match service {
            Service::LicenseManager => self.license_manager(op, caller, &input).await?,
            Service::ServiceCatalog => {
                self.service_catalog(op, caller, access_key_id, region, &input)
                    .await?
            }
        };
        match one_shot {
            Some(FailMode::AfterCommit) => return Err(service.internal_error()),
            Some(FailMode::Hang) => {
                tokio::time::sleep(HANG).await;
                return Err(service.internal_error());
            }
            _ => {}
        }
        let mut st = self.lock();
        let sw = st.switches.clone();
        let applies = sw.fault_operations.is_empty() || sw.fault_operations.iter().any(|o| o == op);
        let after_commit = applies
            && ((sw.fault_after_commit
                && sw.server_error_probability > 0.0
                && st.rng.random::<f64>() < sw.server_error_probability)
                || (sw.commit_fault_probability > 0.0
                    && st.rng.random::<f64>() < sw.commit_fault_probability));
        if after_commit {
            st.faults.after_commit += 1;
            return Err(service.internal_error());
        }
        Ok(out)
    }

    /// Checks the request against the service's model (when `checkModels` is on and the model
    /// was found); violations are recorded and answered as AWS would.
    fn check_model(&self, service: Service, op: &str, input: &Value) -> Result<(), ApiError> {
        let (check, refuse) = {
            let sw = &self.lock().switches;
            (sw.check_models, sw.refuse_model_violations)
        };
        if !check {
            return Ok(());
        }
        let Some(checked) = models::model(service.name()).and_then(|model| model.check(op, input))
        else {
            return Ok(());
        };
        let mut log = self.model_log.lock().unwrap_or_else(|e| e.into_inner());
        *log.checked
            .entry(format!("{} {op}", service.name()))
            .or_default() += 1;
        for pattern in &checked.unchecked_patterns {
            *log.unchecked_patterns.entry(pattern.clone()).or_default() += 1;
        }
        if checked.violations.is_empty() {
            return Ok(());
        }
        tracing::warn!(?checked.violations, "request refused by AWS's model");
        log.violations.extend(checked.violations.iter().cloned());
        if refuse {
            Err(ApiError::validation(checked.message()))
        } else {
            Ok(())
        }
    }

    /// Takes one fault of `fail_next` for `op`, if any is left.
    fn take_fail_next(&self, op: &str) -> Option<FailMode> {
        let mut st = self.lock();
        let entry = st
            .switches
            .fail_next
            .iter_mut()
            .find(|f| f.operation == op && f.count > 0)?;
        entry.count -= 1;
        let mode = entry.mode;
        st.faults.fail_next += 1;
        if mode == FailMode::Hang {
            st.faults.hangs += 1;
        }
        Some(mode)
    }

    /// Rate limits and injected faults that happen before the operation runs.
    fn admit(&self, service: Service, op: &str) -> Result<(), ApiError> {
        let now = self.clock.now();
        let mut st = self.lock();
        let sw = st.switches.clone();
        if let Some(limit) = sw.rate_limits.get(op).copied().or(sw.rate_limit_per_second) {
            let window = st.rate.entry(op.to_string()).or_default();
            while window
                .front()
                .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
            {
                window.pop_front();
            }
            if window.len() >= limit as usize {
                st.faults.throttles += 1;
                return Err(service.throttling_error());
            }
            window.push_back(now);
        }
        let applies = sw.fault_operations.is_empty() || sw.fault_operations.iter().any(|o| o == op);
        if !applies {
            return Ok(());
        }
        if sw.throttle_probability > 0.0 && st.rng.random::<f64>() < sw.throttle_probability {
            st.faults.throttles += 1;
            return Err(service.throttling_error());
        }
        if !sw.fault_after_commit
            && sw.server_error_probability > 0.0
            && st.rng.random::<f64>() < sw.server_error_probability
        {
            st.faults.server_errors += 1;
            return Err(service.internal_error());
        }
        Ok(())
    }

    /// The organization: from moto when configured (only if `need` says the call needs it),
    /// else the seeded one.
    async fn org_view(&self, need: Option<BTreeSet<String>>) -> Result<OrgView, ApiError> {
        self.org_view_for(need, &BTreeSet::new()).await
    }

    /// [`Emulator::org_view`] through the cache (`org_cache_ms`): a cached organization is
    /// used while fresh, unless it lacks one of `accounts`; OUs it lacks are read and added.
    async fn org_view_for(
        &self,
        need: Option<BTreeSet<String>>,
        accounts: &BTreeSet<String>,
    ) -> Result<OrgView, ApiError> {
        let (moto, ous) = match (&self.moto, need) {
            (None, _) => {
                return Ok(OrgView::Known(
                    self.lock().org_seed.as_ref().map(OrgInfo::from_seed),
                ))
            }
            (Some(_), None) => return Ok(OrgView::Unknown),
            (Some(moto), Some(ous)) => (moto, ous),
        };
        let _reading = self.org_read.lock().await;
        let now = self.clock.now();
        let (ttl, cached) = {
            let st = self.lock();
            (st.switches.org_cache_ms, st.org_cache.clone())
        };
        let fresh = cached.filter(|c| {
            ttl > 0
                && now.saturating_duration_since(c.at) < Duration::from_millis(ttl)
                && c.info
                    .as_ref()
                    .is_some_and(|org| accounts.iter().all(|a| org.accounts.contains(a)))
        });
        let cache = match fresh {
            Some(mut cache) => {
                for ou in ous.difference(&cache.ous.clone()) {
                    let members = moto
                        .ou_accounts(ou)
                        .await
                        .map_err(|e| e.into_api("read the organization"))?;
                    if let (Some((members, direct)), Some(info)) = (members, cache.info.as_mut()) {
                        info.ou_members.insert(ou.clone(), members);
                        info.ou_direct_members.insert(ou.clone(), direct);
                    }
                    cache.ous.insert(ou.clone());
                }
                cache
            }
            None => OrgCache {
                at: now,
                info: moto.org_info(&ous).await?,
                ous,
            },
        };
        let view = OrgView::Known(cache.info.clone());
        self.lock().org_cache = Some(cache);
        Ok(view)
    }

    /// What is known about recipients' service-linked roles (`fetched`: read for this request).
    fn slr_view(&self, st: &State, fetched: &HashMap<String, Vec<String>>) -> SlrView {
        match &self.moto {
            None => SlrView {
                assume_present: true,
                missing: st
                    .seeded_slrs
                    .iter()
                    .map(|(account, present)| {
                        let paths = present
                            .iter()
                            .map(|s| format!("/aws-service-role/{s}/"))
                            .collect();
                        (account.clone(), missing_slrs(&paths))
                    })
                    .collect(),
            },
            Some(_) => SlrView {
                assume_present: false,
                missing: st
                    .slr_present
                    .iter()
                    .map(|a| (a.clone(), Vec::new()))
                    .chain(fetched.iter().map(|(a, m)| (a.clone(), m.clone())))
                    .collect(),
            },
        }
    }

    /// Settles License Manager state (reading recipients' service-linked roles from moto as
    /// the settlement asks for them), then runs `then` in the same critical section.
    async fn with_settled_lm<R>(
        &self,
        caller: &str,
        org: &OrgView,
        then: impl FnOnce(&mut LicenseManager, &mut Ctx<'_>) -> R,
    ) -> Result<R, ApiError> {
        let now = self.clock.now();
        let epoch_ms = self.clock.epoch_ms();
        let mut fetched: HashMap<String, Vec<String>> = HashMap::new();
        let mut then = Some(then);
        for attempt in 0..3 {
            let wanted = {
                let mut guard = self.lock();
                let st = &mut *guard;
                let switches = st.switches.clone();
                let slrs = self.slr_view(st, &fetched);
                let mut ctx = Ctx {
                    caller,
                    org,
                    slrs: &slrs,
                    switches: &switches,
                    now,
                    epoch_ms,
                    ids: &mut st.ids,
                };
                let wanted = st.lm.settle(&mut ctx);
                let out = if wanted.is_empty() || attempt == 2 || self.moto.is_none() {
                    then.take().map(|then| then(&mut st.lm, &mut ctx))
                } else {
                    None
                };
                st.log_lm_changes();
                if let Some(out) = out {
                    return Ok(out);
                }
                wanted
            };
            let Some(moto) = &self.moto else { break };
            for account in wanted {
                let _reading = self.slr_read.lock().await;
                if self.lock().slr_present.contains(&account) {
                    // Another request read them (present) while this one waited.
                    fetched.insert(account, Vec::new());
                    continue;
                }
                let paths = moto
                    .service_role_paths(&account)
                    .await
                    .map_err(|e| e.into_api("read the recipient's service-linked roles"))?;
                let missing = missing_slrs(&paths);
                if missing.is_empty() {
                    self.lock().slr_present.insert(account.clone());
                }
                fetched.insert(account, missing);
            }
        }
        Err(ApiError::internal("emulator could not settle grants"))
    }

    async fn license_manager(
        &self,
        op: &str,
        caller: &str,
        input: &Value,
    ) -> Result<Value, ApiError> {
        let now = self.clock.now();
        let (need, mut accounts) = {
            let st = self.lock();
            (st.lm.org_need(op, input, now), st.lm.accounts_needed(now))
        };
        // A caller the cached organization does not know may have just joined: re-read.
        accounts.insert(caller.to_string());
        let org = self.org_view_for(need, &accounts).await?;
        self.with_settled_lm(caller, &org, |lm, ctx| lm.dispatch(op, ctx, input))
            .await?
    }

    async fn service_catalog(
        &self,
        op: &str,
        caller: &str,
        access_key_id: Option<&str>,
        region: &str,
        input: &Value,
    ) -> Result<Value, ApiError> {
        self.complete_vending().await;
        let need = self.lock().sc.org_need(op, input);
        let org = self.org_view(need).await?;
        let now = self.clock.now();
        let epoch_ms = self.clock.epoch_ms();
        let mut guard = self.lock();
        let st = &mut *guard;
        let switches = st.switches.clone();
        let mut ctx = ScCtx {
            caller,
            access_key_id,
            org: &org,
            switches: &switches,
            now,
            epoch_ms,
            ids: &mut st.ids,
            region,
        };
        st.sc.dispatch(op, &mut ctx, input)
    }

    /// Finishes Account Factory requests whose provisioning time is up.
    async fn complete_vending(&self) {
        let jobs = self.lock().sc.take_due(self.clock.now());
        for job in jobs {
            let (outcome, management) = self.vend(&job).await;
            let epoch_ms = self.clock.epoch_ms();
            let mut guard = self.lock();
            let st = &mut *guard;
            let before = st.sc.events.len();
            st.sc.finish(&job, &outcome, &management, epoch_ms);
            // The Control Tower event (if any) goes on the event log too.
            let emitted = st.sc.events.get(before..).unwrap_or_default().to_vec();
            for envelope in emitted {
                st.log_event(envelope, epoch_ms, None);
            }
        }
    }

    /// Creates the account an Account Factory request asks for (in moto, or in the seeded
    /// organization). Returns the outcome and the management account.
    async fn vend(&self, job: &VendJob) -> (VendOutcome, String) {
        let mut management = self.opts.default_account.clone();
        let param = |k: &str| job.params.get(k).cloned().unwrap_or_default();
        let requested_ou = param("ManagedOrganizationalUnit");
        let (ou_name, ou_id) = parse_managed_ou(&requested_ou);
        let failed = |message: String, id: &str, name: &str| VendOutcome::Failed {
            message,
            ou_id: id.to_string(),
            ou_name: name.to_string(),
        };
        if !job.account_factory {
            let ok = VendOutcome::Succeeded {
                account_id: String::new(),
                ou_id: String::new(),
                ou_name: String::new(),
            };
            return (ok, management);
        }
        let marker = self.lock().switches.fail_email_marker.to_lowercase();
        let email = param("AccountEmail");
        let not_registered = format!(
            "AWS Control Tower cannot create the account: the organizational unit \
             {requested_ou} is not registered with AWS Control Tower"
        );
        let wanted = |id: &str, name: &str| match &ou_id {
            Some(wanted_id) => wanted_id == id,
            None => name == ou_name,
        };
        match &self.moto {
            Some(moto) => {
                let org = match moto.org_info(&BTreeSet::new()).await {
                    Ok(Some(org)) => org,
                    Ok(None) => {
                        let msg = "AWS Control Tower cannot create the account: no organization";
                        return (failed(msg.into(), "", &ou_name), management);
                    }
                    Err(e) => return (failed(e.message, "", &ou_name), management),
                };
                management = org.management_account.clone();
                let (root, ous) = match moto.tree().await {
                    Ok(tree) => tree,
                    Err(e) => return (failed(e.describe(), "", &ou_name), management),
                };
                let Some((id, name)) = ous.into_iter().find(|(id, name)| wanted(id, name)) else {
                    return (failed(not_registered, "", &ou_name), management);
                };
                if !marker.is_empty() && email.to_lowercase().contains(&marker) {
                    let msg = format!(
                        "AWS Control Tower could not create the account {email}: injected failure"
                    );
                    return (failed(msg, &id, &name), management);
                }
                let name_param = param("AccountName");
                match moto
                    .vend_account(&name_param, &email, &root, &id, &management)
                    .await
                {
                    Ok(account_id) => {
                        self.lock().org_cache = None;
                        (
                            VendOutcome::Succeeded {
                                account_id,
                                ou_id: id,
                                ou_name: name,
                            },
                            management,
                        )
                    }
                    Err(e) => (failed(e.describe(), &id, &name), management),
                }
            }
            None => {
                let mut guard = self.lock();
                let st = &mut *guard;
                let Some(seed) = st.org_seed.as_mut() else {
                    let msg = "AWS Control Tower cannot create the account: no organization";
                    return (failed(msg.into(), "", &ou_name), management);
                };
                management = seed.management_account.clone();
                let Some(ou) = seed.ous.iter_mut().find(|ou| wanted(&ou.id, &ou.name)) else {
                    return (failed(not_registered, "", &ou_name), management);
                };
                if !marker.is_empty() && email.to_lowercase().contains(&marker) {
                    let msg = format!(
                        "AWS Control Tower could not create the account {email}: injected failure"
                    );
                    return (failed(msg, &ou.id, &ou.name), management);
                }
                let account_id = st.ids.account_id();
                ou.accounts.push(account_id.clone());
                let outcome = VendOutcome::Succeeded {
                    account_id,
                    ou_id: ou.id.clone(),
                    ou_name: ou.name.clone(),
                };
                (outcome, management)
            }
        }
    }

    fn reset(&self) {
        self.clock.reset();
        let epoch_ms = self.clock.epoch_ms();
        *self.lock() = State::new(&self.opts, epoch_ms);
    }

    async fn control(
        &self,
        method: &Method,
        path: &str,
        query: &str,
        body: &Bytes,
    ) -> Response<Full<Bytes>> {
        let input: Value = if body.is_empty() {
            json!({})
        } else {
            match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(e) => {
                    return response(
                        400,
                        &json!({ "message": format!("invalid JSON: {e}") }),
                        &[],
                    )
                }
            }
        };
        let bad_request = |e: serde_json::Error| (400, e.to_string());
        let result: Result<Value, (u16, String)> =
            match (method.clone(), path.trim_end_matches('/')) {
                (Method::GET, "" | "health") => Ok(json!({ "ok": true })),
                (Method::POST, "reset") => {
                    self.reset();
                    Ok(json!({}))
                }
                (Method::POST, "licenses") => serde_json::from_value::<LicenseSeed>(input)
                    .map_err(bad_request)
                    .map(|seed| {
                        let epoch_ms = self.clock.epoch_ms();
                        let mut guard = self.lock();
                        let st = &mut *guard;
                        let license = st.lm.seed_license(&seed, &mut st.ids, epoch_ms);
                        st.log_lm_changes();
                        license
                    }),
                (Method::GET, "config") => Ok(json!(self.lock().switches)),
                (Method::POST, "config") => self.configure(&input),
                (Method::GET, "state") => self.state().await.map_err(|e| (500, e.message)),
                (Method::GET, "calls") => Ok(json!(self.lock().calls)),
                (Method::GET, "stats") => Ok(json!({
                    "motoRequests": self.moto.as_ref().map_or(0, MotoPeer::request_count),
                    "calls": self.lock().calls.len(),
                    "faults": self.lock().faults,
                    "events": self.lock().event_stats(),
                })),
                (Method::POST, "service-linked-roles") => {
                    let services = input["services"].as_array().map(|items| {
                        items
                            .iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect::<Vec<_>>()
                    });
                    match (input["account"].as_str(), services) {
                        (Some(account), Some(services)) => {
                            self.lock()
                                .seeded_slrs
                                .insert(account.to_string(), services);
                            Ok(json!({}))
                        }
                        _ => Err((
                            400,
                            "expected {\"account\", \"services\": [service names]}".to_string(),
                        )),
                    }
                }
                (Method::POST, "orgs") => serde_json::from_value::<OrgSeed>(input)
                    .map_err(bad_request)
                    .map(|org| {
                        self.lock().org_seed = Some(org);
                        json!({})
                    }),
                (Method::POST, "accounts") => {
                    match (input["accessKeyId"].as_str(), input["account"].as_str()) {
                        (Some(akid), Some(account)) => {
                            self.lock()
                                .accounts
                                .insert(akid.to_string(), account.to_string());
                            Ok(json!({}))
                        }
                        _ => Err((400, "expected {\"accessKeyId\", \"account\"}".to_string())),
                    }
                }
                (Method::POST, "clock") => match input["advanceMs"].as_u64() {
                    Some(ms) => {
                        let offset = self.clock.advance(Duration::from_millis(ms));
                        Ok(json!({ "offsetMs": offset.as_millis() as u64 }))
                    }
                    None => Err((
                        400,
                        "expected {\"advanceMs\": <non-negative integer>}".to_string(),
                    )),
                },
                (Method::GET, "model-violations") => Ok(json!(*self
                    .model_log
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()))),
                (Method::POST, "model-violations/take") => Ok(json!(std::mem::take(
                    &mut self
                        .model_log
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .violations
                ))),
                (Method::GET, "events") => self.events(query).await,
                _ => Err((
                    404,
                    format!("no control endpoint {method} /_emulator/{path}"),
                )),
            };
        match result {
            Ok(v) => response(200, &v, &[("content-type", "application/json")]),
            Err((status, message)) => response(
                status,
                &json!({ "message": message }),
                &[("content-type", "application/json")],
            ),
        }
    }

    /// `GET /_emulator/events?after=<seq>&account=<id>` (both optional): finishes what is due
    /// (Account Factory requests, grant workflows, children, activations) as a request would,
    /// then answers `{"events": [envelopes with a sequence number above after, on account's
    /// bus], "next": <the after to pass next time>}`.
    async fn events(&self, query: &str) -> Result<Value, (u16, String)> {
        let mut after = 0;
        let mut account = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("after", value)) => {
                    after = value
                        .parse::<u64>()
                        .map_err(|_| (400, format!("after={value}: expected a sequence number")))?;
                }
                Some(("account", value))
                    if value.len() == 12 && value.bytes().all(|b| b.is_ascii_digit()) =>
                {
                    account = Some(value.to_string());
                }
                _ => {
                    return Err((
                        400,
                        format!("{pair}: expected after=<sequence number> or account=<12 digits>"),
                    ))
                }
            }
        }
        self.complete_vending().await;
        self.settle_now(|_, _| ())
            .await
            .map_err(|e| (e.status, e.message))?;
        let (events, next) = self.lock().events_after(after, account.as_deref());
        Ok(json!({ "events": events, "next": next }))
    }

    /// Moves License Manager to the emulator's now as a request would (reading the
    /// organization that needs), then runs `then` in the same critical section.
    async fn settle_now<R>(
        &self,
        then: impl FnOnce(&mut LicenseManager, &mut Ctx<'_>) -> R,
    ) -> Result<R, ApiError> {
        let now = self.clock.now();
        let (need, accounts) = {
            let st = self.lock();
            (
                st.lm.org_need("", &json!({}), now),
                st.lm.accounts_needed(now),
            )
        };
        let org = self.org_view_for(need, &accounts).await?;
        self.with_settled_lm("", &org, then).await
    }

    fn configure(&self, patch: &Value) -> Result<Value, (u16, String)> {
        let Some(patch) = patch.as_object() else {
            return Err((400, "expected a JSON object of switches".to_string()));
        };
        let mut st = self.lock();
        // `{"profile": "realistic"}` starts from that profile; other fields then apply on top.
        let base = match patch.get("profile") {
            None => st.switches.clone(),
            Some(Value::String(name)) => Switches::profile(name).ok_or_else(|| {
                (
                    400,
                    format!("unknown profile {name:?}: use default or realistic"),
                )
            })?,
            Some(_) => return Err((400, "profile must be a string".to_string())),
        };
        let mut current = json!(base);
        if let Some(fields) = current.as_object_mut() {
            for (key, value) in patch.iter().filter(|(k, _)| *k != "profile") {
                fields.insert(key.clone(), value.clone());
            }
        }
        let switches: Switches =
            serde_json::from_value(current).map_err(|e| (400, e.to_string()))?;
        if patch.contains_key("seed") {
            st.rng = SmallRng::seed_from_u64(switches.seed);
        }
        st.switches = switches;
        Ok(json!(st.switches))
    }

    async fn state(&self) -> Result<Value, ApiError> {
        self.complete_vending().await;
        let mut out = self.settle_now(|lm, _| lm.dump()).await?;
        let st = self.lock();
        out["serviceCatalog"] = st.sc.dump();
        out["org"] = json!(st.org_seed);
        out["switches"] = json!(st.switches);
        Ok(out)
    }
}

/// A client for the control endpoints (works against an in-process emulator or the
/// `local-world` binary).
#[derive(Debug, Clone)]
pub struct ControlClient {
    base: String,
}

impl ControlClient {
    /// `emulator_url` is `http://127.0.0.1:PORT`.
    pub fn new(emulator_url: &str) -> Self {
        Self {
            base: format!("{}/_emulator", emulator_url.trim_end_matches('/')),
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> io::Result<Value> {
        let url = format!("{}/{path}", self.base);
        let response = match body {
            Some(body) => {
                crate::http::send(
                    method,
                    &url,
                    &[("content-type", "application/json")],
                    serde_json::to_vec(&body)?,
                )
                .await?
            }
            None => crate::http::send(method, &url, &[], Bytes::new()).await?,
        };
        if !response.is_success() {
            return Err(io::Error::other(format!(
                "{url}: HTTP {}: {}",
                response.status,
                response.text()
            )));
        }
        Ok(serde_json::from_slice(&response.body)?)
    }

    /// Forgets every license, grant, record, call and switch change.
    pub async fn reset(&self) -> io::Result<()> {
        self.call(Method::POST, "reset", Some(json!({})))
            .await
            .map(drop)
    }

    /// Seeds a received license; returns its AWS `License` shape (`LicenseArn`, …).
    pub async fn seed_license(&self, seed: &LicenseSeed) -> io::Result<Value> {
        self.call(Method::POST, "licenses", Some(json!(seed))).await
    }

    /// Changes some switches (camelCase field names of [`Switches`]); returns all of them.
    pub async fn configure(&self, patch: Value) -> io::Result<Switches> {
        let v = self.call(Method::POST, "config", Some(patch)).await?;
        Ok(serde_json::from_value(v)?)
    }

    pub async fn switches(&self) -> io::Result<Switches> {
        let v = self.call(Method::GET, "config", None).await?;
        Ok(serde_json::from_value(v)?)
    }

    /// Sets the organization (for an emulator without moto).
    pub async fn seed_org(&self, org: &OrgSeed) -> io::Result<()> {
        self.call(Method::POST, "orgs", Some(json!(org)))
            .await
            .map(drop)
    }

    /// Maps an access key id to an account.
    pub async fn map_access_key(&self, access_key_id: &str, account: &str) -> io::Result<()> {
        let body = json!({ "accessKeyId": access_key_id, "account": account });
        self.call(Method::POST, "accounts", Some(body))
            .await
            .map(drop)
    }

    /// Licenses, grants (with `GrantorAccountId`, `ParentGrantArn`), service settings, Service
    /// Catalog records/portfolios, the seeded org and the switches.
    pub async fn state(&self) -> io::Result<Value> {
        self.call(Method::GET, "state", None).await
    }

    pub async fn calls(&self) -> io::Result<Vec<CallRecord>> {
        let v = self.call(Method::GET, "calls", None).await?;
        Ok(serde_json::from_value(v)?)
    }

    /// How many times `operation` was called (any outcome).
    pub async fn count_calls(&self, operation: &str) -> io::Result<usize> {
        Ok(self
            .calls()
            .await?
            .iter()
            .filter(|c| c.operation == operation)
            .count())
    }

    /// Without moto: which member service-linked roles `account` has (service names, e.g.
    /// `license-manager.amazonaws.com`); accounts never set have all of them.
    pub async fn set_service_linked_roles(
        &self,
        account: &str,
        services: &[&str],
    ) -> io::Result<()> {
        let body = json!({ "account": account, "services": services });
        self.call(Method::POST, "service-linked-roles", Some(body))
            .await
            .map(drop)
    }

    /// How many requests the emulator has sent to moto (organization, callers, IAM).
    pub async fn moto_requests(&self) -> io::Result<u64> {
        let v = self.call(Method::GET, "stats", None).await?;
        v["motoRequests"]
            .as_u64()
            .ok_or_else(|| io::Error::other("stats without motoRequests"))
    }

    /// Faults injected so far, by kind.
    pub async fn fault_counts(&self) -> io::Result<FaultCounts> {
        let v = self.call(Method::GET, "stats", None).await?;
        Ok(serde_json::from_value(v["faults"].clone())?)
    }

    /// Counts of the events logged so far (`GET /_emulator/stats` → `events`): `total`,
    /// `byDetailType`, `grantStatuses` (Grant Changes by new status, whatever the detail
    /// shows) and `lastAtMs` (emulator clock).
    pub async fn event_stats(&self) -> io::Result<Value> {
        let v = self.call(Method::GET, "stats", None).await?;
        Ok(v["events"].clone())
    }

    /// Switches to a named profile (`default` or `realistic`; see [`Switches::profile`]).
    pub async fn use_profile(&self, profile: &str) -> io::Result<Switches> {
        self.configure(json!({ "profile": profile })).await
    }

    /// Moves the emulator clock forward (grant workflows, provisioning, rate windows).
    pub async fn advance_clock(&self, by: Duration) -> io::Result<()> {
        let body = json!({ "advanceMs": by.as_millis() as u64 });
        self.call(Method::POST, "clock", Some(body)).await.map(drop)
    }

    /// What the emulator checked requests against and what the models refused.
    pub async fn model_report(&self) -> io::Result<ModelReport> {
        let v = self.call(Method::GET, "model-violations", None).await?;
        serde_json::from_value(v).map_err(io::Error::other)
    }

    /// The requests the models refused so far.
    pub async fn model_violations(&self) -> io::Result<Vec<ModelViolation>> {
        Ok(self.model_report().await?.violations)
    }

    /// The requests the models refused so far, forgotten (a test that sends invalid requests
    /// on purpose takes them, so the handle does not fail it).
    pub async fn take_model_violations(&self) -> io::Result<Vec<ModelViolation>> {
        let v = self
            .call(Method::POST, "model-violations/take", Some(json!({})))
            .await?;
        serde_json::from_value(v).map_err(io::Error::other)
    }

    /// Control Tower lifecycle events (EventBridge envelopes) produced by account vending.
    pub async fn control_tower_events(&self) -> io::Result<Vec<Value>> {
        let (events, _) = self.events(0, None).await?;
        Ok(events
            .into_iter()
            .filter(|e| e["source"] == "aws.controltower")
            .collect())
    }

    /// The EventBridge events (envelopes) put on the buses after sequence number `after` (0:
    /// from the start), only `account`'s bus when given: License Manager's `Grant Change` and
    /// `License Change` events and Control Tower's lifecycle events. Grant workflows and
    /// activations due by the emulator's now are moved along first, so their events are
    /// there without an API request. Returns the events and the `after` to pass next time.
    pub async fn events(&self, after: u64, account: Option<&str>) -> io::Result<(Vec<Value>, u64)> {
        let path = match account {
            Some(account) => format!("events?after={after}&account={account}"),
            None => format!("events?after={after}"),
        };
        let v = self.call(Method::GET, &path, None).await?;
        let next = v["next"]
            .as_u64()
            .ok_or_else(|| io::Error::other("events without next"))?;
        Ok((serde_json::from_value(v["events"].clone())?, next))
    }

    /// License Manager's change events after `after` on `account`'s bus (every bus when
    /// `None`), leaving out other sources; returns them and the `after` to pass next time.
    pub async fn license_manager_events(
        &self,
        after: u64,
        account: Option<&str>,
    ) -> io::Result<(Vec<Value>, u64)> {
        let (events, next) = self.events(after, account).await?;
        let events = events
            .into_iter()
            .filter(|e| e["source"] == license_manager::EVENT_SOURCE)
            .collect();
        Ok((events, next))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn authorization_header_yields_key_and_region() {
        let mut headers = HeaderMap::new();
        headers.insert(
            hyper::header::AUTHORIZATION,
            "AWS4-HMAC-SHA256 Credential=ASIAEXAMPLE/20260101/eu-west-1/license-manager/aws4_request, \
             SignedHeaders=host;x-amz-date, Signature=abc"
                .parse()
                .unwrap(),
        );
        let (akid, region) = parse_authorization(&headers);
        assert_eq!(akid.as_deref(), Some("ASIAEXAMPLE"));
        assert_eq!(region.as_deref(), Some("eu-west-1"));
        assert_eq!(parse_authorization(&HeaderMap::new()), (None, None));
    }

    #[test]
    fn switches_accept_partial_camel_case_json_and_refuse_typos() {
        let s: Switches = serde_json::from_value(json!({ "latencyMs": 5 })).unwrap();
        assert_eq!(s.latency_ms, 5);
        assert!(s.auto_accept);
        assert!(serde_json::from_value::<Switches>(json!({ "latency": 5 })).is_err());
    }
}
