//! Account vending: an account request becomes a ProvisionProduct on Control Tower's Account
//! Factory (never more than MAX_CONCURRENT_OPERATIONS in flight), then its record is tracked by
//! putting the request back on the queue with a delay: no sleeping in the function. A finished
//! account gets its entitlements tag (account-lifecycle grants them when Control Tower's
//! CreateManagedAccount event arrives, and again on the onboard request sent here) and,
//! optionally, the software portfolio. Failed records are parked in the dead-letter queue.

mod track;

use crate::catalog::{self, Product};
use crate::config::VendingConfig;
use crate::request::{parse_message, validate, Tracked};
use aws_config::SdkConfig;
use aws_credential_types::Credentials;
use serde::Serialize;
use serde_json::{json, Value};
use shared::error::ErrorReport;
use shared::lambda::each_record;
use shared::report::CallLog;
use shared::{error::Error, error::Retry};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use track::advance;

/// How long the Account Factory product and artifact are reused.
const PRODUCT_TTL: Duration = Duration::from_secs(600);

/// Clients acting as the management account, and the seam for member-account Service Catalog.
#[derive(Clone)]
pub struct VendingClients {
    pub catalog: aws_sdk_servicecatalog::Client,
    pub organizations: aws_sdk_organizations::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub sts: aws_sdk_sts::Client,
    pub members: Arc<dyn MemberCatalog>,
}

/// Builds a Service Catalog client inside a member account from assumed-role credentials.
pub trait MemberCatalog: Send + Sync {
    fn catalog(&self, credentials: Credentials) -> aws_sdk_servicecatalog::Client;
}

/// The production factory: the shared SDK config with the member's credentials.
pub struct SdkMemberCatalog(pub SdkConfig);

impl MemberCatalog for SdkMemberCatalog {
    fn catalog(&self, credentials: Credentials) -> aws_sdk_servicecatalog::Client {
        let config = self
            .0
            .to_builder()
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(credentials),
            )
            .build();
        aws_sdk_servicecatalog::Client::new(&config)
    }
}

impl VendingClients {
    pub fn from_sdk_config(config: &SdkConfig) -> Self {
        VendingClients {
            catalog: aws_sdk_servicecatalog::Client::new(config),
            organizations: aws_sdk_organizations::Client::new(config),
            sqs: aws_sdk_sqs::Client::new(config),
            sts: aws_sdk_sts::Client::new(config),
            members: Arc::new(SdkMemberCatalog(config.clone())),
        }
    }
}

/// Everything built once at init.
pub struct App {
    pub clients: VendingClients,
    pub config: VendingConfig,
    /// The common settings: EXECUTION_ROLE_NAME, LICENSES_TAG_KEY, ONBOARDING_QUEUE_URL, …
    pub shared: shared::config::Config,
    product: tokio::sync::Mutex<Option<(Instant, Product)>>,
    now: fn() -> u64,
}

impl App {
    pub fn new(
        clients: VendingClients,
        config: VendingConfig,
        shared: shared::config::Config,
    ) -> Self {
        App {
            clients,
            config,
            shared,
            product: tokio::sync::Mutex::new(None),
            now: unix_now,
        }
    }

    /// The same app with another clock (tests of the request deadline).
    pub fn with_clock(mut self, now: fn() -> u64) -> Self {
        self.now = now;
        self
    }

    async fn product(&self, calls: &CallLog) -> Result<Product, Error> {
        let mut cache = self.product.lock().await;
        if let Some((at, product)) = cache.as_ref() {
            if at.elapsed() < PRODUCT_TTL {
                return Ok(product.clone());
            }
        }
        let product =
            catalog::find_product(&self.clients.catalog, &self.config.product_name, calls).await?;
        *cache = Some((Instant::now(), product.clone()));
        Ok(product)
    }
}

/// One request's outcome, logged as `{"type":"vendingReport","report":{…}}` and returned to a
/// direct invocation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VendingReport {
    pub account_name: String,
    pub account_email: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provisioned_product_name: Option<String>,
    /// Why this name: `requested` (generation 0), or which FAILED provisioned product of an
    /// earlier generation still holds the previous name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name_reason: Option<String>,
    /// `REJECTED`, `WAITING` (no free Control Tower operation), the record's status
    /// (`CREATED`, `IN_PROGRESS`, `IN_PROGRESS_IN_ERROR`, `SUCCEEDED`, `FAILED`), `EXPIRED`
    /// or `ERROR`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub record_errors: Vec<RecordErrorReport>,
    /// When the request was put back on the queue: seconds until it is looked at again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_check_in_seconds: Option<u64>,
    pub attempt: u32,
    pub generation: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub entitlements: Vec<String>,
    /// Write steps taken, in order.
    pub actions: Vec<String>,
    /// AWS calls made with the function's own role, by IAM action.
    pub api_calls: BTreeMap<String, u32>,
    /// AWS calls made inside the new account with the assumed role, by IAM action.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub member_api_calls: BTreeMap<String, u32>,
    pub write_calls: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorReport>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RecordErrorReport {
    pub code: String,
    pub description: String,
}

/// What happens to a request after this look at it.
enum Next {
    /// Back on the vending queue after `delay` (waiting for a slot, or for its record).
    Requeue(Tracked, Duration),
    Done,
    /// Parked in the dead-letter queue with why.
    Park(Tracked, Value, Error),
}

/// Free Control Tower operations, counted once per invocation and used up as requests start.
#[derive(Debug, Default)]
struct Slots {
    free: Option<u32>,
}

impl Slots {
    async fn take(&mut self, app: &App, product: &Product, calls: &CallLog) -> Result<bool, Error> {
        let free = match self.free {
            Some(free) => free,
            None => {
                let busy =
                    catalog::operations_in_flight(&app.clients.catalog, &product.id, calls).await?;
                app.config.max_concurrent_operations.saturating_sub(busy)
            }
        };
        self.free = Some(free.saturating_sub(1));
        Ok(free > 0)
    }
}

/// Handles one invocation: an SQS batch (partial batch response) or one direct request.
///
/// A direct request is validated before anything else (a bad one is an `InvalidInput` error
/// with no AWS call), started or queued, and its report returned; a direct request that ends
/// parked returns an error (an asynchronous invocation then goes to its failure destination).
pub async fn handle(app: &App, payload: Value) -> Result<Value, Error> {
    if let Some(response) = each_record(&payload, 1, read_record, |records| {
        handle_batch(app, records)
    })
    .await
    {
        return Ok(response);
    }
    let now = (app.now)();
    let tracked = parse_message(&payload, now).inspect_err(log_rejected)?;
    validate(&tracked.request, app.shared.licenses_tag_key.as_deref()).inspect_err(log_rejected)?;
    let mut slots = Slots::default();
    let calls = CallLog::default();
    let mut report = VendingReport::default();
    let result = advance(app, tracked, &mut slots, &calls, &mut report).await;
    let outcome = match result {
        Ok(Next::Requeue(tracked, delay)) => {
            requeue(app, &tracked, delay, &calls, &mut report).await
        }
        Ok(Next::Done) => Ok(()),
        Ok(Next::Park(_, _, error)) => Err(error),
        Err(e) => Err(e),
    };
    finish(&mut report, &calls, outcome.as_ref().err());
    log_report(&report);
    outcome?;
    serde_json::to_value(&report).map_err(|e| Error::InvalidInput(e.to_string()))
}

/// An SQS record's body; every record in one lane, so the batch is worked in order.
fn read_record(record: &Value) -> Option<(Option<()>, &str)> {
    let body = record
        .get("body")
        .and_then(Value::as_str)
        .unwrap_or_default();
    Some((Some(()), body))
}

/// Messages one after another (vending is low volume, and the slot count stays exact);
/// a message fails the batch item only when a retry can help.
async fn handle_batch<'a>(app: &App, records: Vec<(&'a Value, &str)>) -> Vec<&'a Value> {
    let mut slots = Slots::default();
    let mut failures = Vec::new();
    for (record, body) in records {
        if !handle_message(app, body, &mut slots).await {
            failures.push(record);
        }
    }
    failures
}

/// Works one queue message; false when SQS should deliver it again.
async fn handle_message(app: &App, body: &str, slots: &mut Slots) -> bool {
    let calls = CallLog::default();
    let mut report = VendingReport::default();
    let parsed = serde_json::from_str::<Value>(body)
        .map_err(|e| Error::InvalidInput(format!("body is not JSON: {e}")))
        .and_then(|v| parse_message(&v, (app.now)()));
    let tracked = match parsed {
        Ok(t) => t,
        Err(e) => {
            log_rejected(&e);
            report.status = "REJECTED".into();
            let parked = json!({
                "invalidBody": body,
                "failure": { "status": "REJECTED", "reason": e.to_string() },
            });
            let sent = park(app, &parked, &calls, &mut report).await;
            finish(&mut report, &calls, Some(&e));
            log_report(&report);
            return sent.is_ok();
        }
    };
    let result = advance(app, tracked.clone(), slots, &calls, &mut report).await;
    // (delivered: no SQS retry needed, the error to report)
    let (handled, error) = match result {
        Ok(Next::Requeue(tracked, delay)) => {
            match requeue(app, &tracked, delay, &calls, &mut report).await {
                Ok(()) => (true, None),
                Err(e) => (false, Some(e)),
            }
        }
        Ok(Next::Done) => (true, None),
        Ok(Next::Park(tracked, failure, error)) => {
            let parked = parked_body(&tracked, failure);
            match park(app, &parked, &calls, &mut report).await {
                Ok(()) => (true, Some(error)),
                Err(e) => (false, Some(e)),
            }
        }
        Err(e) if e.retry() == Retry::Retryable => (false, Some(e)),
        Err(e) => {
            report.status = if e.kind() == "InvalidInput" {
                "REJECTED".into()
            } else {
                "ERROR".into()
            };
            let failure = json!({ "status": report.status, "reason": e.to_string() });
            let parked = parked_body(&tracked, failure);
            match park(app, &parked, &calls, &mut report).await {
                Ok(()) => (true, Some(e)),
                Err(pe) => (false, Some(pe)),
            }
        }
    };
    finish(&mut report, &calls, error.as_ref());
    log_report(&report);
    handled
}

async fn requeue(
    app: &App,
    tracked: &Tracked,
    delay: Duration,
    calls: &CallLog,
    report: &mut VendingReport,
) -> Result<(), Error> {
    let body = serde_json::to_string(tracked).map_err(|e| Error::InvalidInput(e.to_string()))?;
    shared::aws::send_recheck(&app.clients.sqs, &app.config.queue_url, &body, delay, calls).await?;
    report.next_check_in_seconds = Some(delay.as_secs());
    Ok(())
}

fn parked_body(tracked: &Tracked, failure: Value) -> Value {
    let mut parked = tracked.clone();
    parked.failure = Some(failure);
    serde_json::to_value(&parked).unwrap_or(Value::Null)
}

async fn park(
    app: &App,
    body: &Value,
    calls: &CallLog,
    report: &mut VendingReport,
) -> Result<(), Error> {
    shared::aws::send_recheck(
        &app.clients.sqs,
        &app.config.dead_letter_queue_url,
        &body.to_string(),
        Duration::ZERO,
        calls,
    )
    .await?;
    report.actions.push("DeadLetter".into());
    Ok(())
}

fn finish(report: &mut VendingReport, calls: &CallLog, error: Option<&Error>) {
    let snapshot = calls.snapshot();
    report.api_calls = snapshot.own;
    report.member_api_calls = snapshot.member;
    report.write_calls = snapshot.writes;
    if let Some(e) = error {
        report.error = Some(ErrorReport::from(e));
    }
}

fn log_report(report: &VendingReport) {
    shared::report::emit_report("vendingReport", report);
}

fn log_rejected(e: &Error) {
    tracing::error!(kind = e.kind(), retry = %e.retry(), error = %e, "input rejected before any AWS call");
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
