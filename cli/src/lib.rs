//! The operator CLI's commands, on the same core as the functions: `plan` (a dry run of
//! account-lifecycle), `status` (the grants the management account distributed) and `backfill`
//! (the reconciler's fan-out, then a progress bar until the onboarding queue drains).

use serde_json::Value;
use shared::aws::{self, GrantView};
use shared::event::{Request, Trigger, Work};
use shared::ids::AccountId;
use shared::reconcile::{self, ReconcileConfig, Scope};
use shared::report::CallLog;
use shared::{AccountReport, Engine, Error};
use std::fmt::Write as _;
use std::time::Duration;

pub const USAGE: &str = "usage: ct-entitlements <command>

  plan <account-id>...                 what account-lifecycle would do for these accounts (no writes)
  status [<account-id>...]             grants the management account distributed (all accounts if none)
  backfill --queue-url URL [--ous ou-…,…] [--accounts id,…] [--dry-run] [--wait-seconds N]
                                       one onboarding message per ACTIVE account short of an ACTIVE
                                       grant (named accounts: always), then progress until the
                                       queue drains

Configuration: the account-lifecycle environment variables (docs/configuration.md); AWS
credentials of the management account from the usual AWS settings.";

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Plan(Vec<AccountId>),
    Status(Vec<AccountId>),
    Backfill {
        queue_url: String,
        scope: Scope,
        dry_run: bool,
        wait: Duration,
    },
}

/// Parses arguments (without the program name). Errors are usage errors.
pub fn parse(args: &[String]) -> Result<Command, Error> {
    let usage = |msg: &str| Error::InvalidInput(format!("{msg}\n\n{USAGE}"));
    let accounts = |items: &[String]| {
        items
            .iter()
            .map(|a| AccountId::parse(a))
            .collect::<Result<Vec<_>, _>>()
    };
    match args.split_first() {
        Some((cmd, rest)) if cmd == "plan" => {
            if rest.is_empty() {
                return Err(usage("plan needs at least one account id"));
            }
            Ok(Command::Plan(accounts(rest)?))
        }
        Some((cmd, rest)) if cmd == "status" => Ok(Command::Status(accounts(rest)?)),
        Some((cmd, rest)) if cmd == "backfill" => {
            let (mut queue_url, mut ous, mut ids, mut dry_run, mut wait) =
                (None, None, None, false, 900u64);
            let mut it = rest.iter();
            while let Some(flag) = it.next() {
                let mut value = || {
                    it.next()
                        .cloned()
                        .ok_or_else(|| usage(&format!("{flag} needs a value")))
                };
                match flag.as_str() {
                    "--queue-url" => queue_url = Some(value()?),
                    "--ous" => ous = Some(value()?),
                    "--accounts" => ids = Some(value()?),
                    "--wait-seconds" => {
                        wait = value()?
                            .parse()
                            .map_err(|_| usage("--wait-seconds takes a whole number"))?;
                    }
                    "--dry-run" => dry_run = true,
                    other => return Err(usage(&format!("unknown option {other}"))),
                }
            }
            let list = |raw: String| {
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect::<Vec<_>>()
            };
            let mut request = serde_json::Map::new();
            if let Some(o) = ous {
                request.insert("ous".into(), list(o).into());
            }
            if let Some(a) = ids {
                request.insert("accounts".into(), list(a).into());
            }
            let queue_url = queue_url.ok_or_else(|| {
                usage("backfill needs --queue-url (the OnboardingQueueUrl output)")
            })?;
            let config = reconcile_config(&queue_url)?;
            let (scope, _) = reconcile::parse(&Value::Object(request), &config)?;
            Ok(Command::Backfill {
                queue_url,
                scope,
                dry_run,
                wait: Duration::from_secs(wait),
            })
        }
        Some((cmd, _)) => Err(usage(&format!("unknown command {cmd}"))),
        None => Err(usage("no command")),
    }
}

/// The reconciler's settings for a queue URL (offboarding stays off in the CLI).
pub fn reconcile_config(queue_url: &str) -> Result<ReconcileConfig, Error> {
    ReconcileConfig::from_lookup(|k| (k == "ONBOARDING_QUEUE_URL").then(|| queue_url.to_string()))
}

/// `plan`: one dry-run report per account (the engine must be configured with DRY_RUN=true).
pub async fn plan(engine: &Engine, accounts: &[AccountId]) -> Vec<AccountReport> {
    let mut reports = Vec::new();
    for account in accounts {
        let work = Work {
            account_id: account.clone(),
            trigger: Trigger::Onboard("cli-plan".into()),
            account_name: None,
            ou_id: None,
            ou_name: None,
            attempt: 0,
            backfill: false,
            first_seen: None,
            explicit: None,
            activations: Vec::new(),
        };
        reports.push(engine.run(Request::Work(work)).await);
    }
    reports
}

/// Renders plan reports: one row per license.
pub fn render_plan(reports: &[AccountReport]) -> String {
    let mut rows =
        vec![["Account", "License", "Grant status", "Planned actions"].map(String::from)];
    for r in reports {
        let account = r.account_id.clone().unwrap_or_default();
        if r.licenses.is_empty() {
            let why = r
                .reason
                .clone()
                .or(r.error.as_ref().map(|e| e.message.clone()))
                .unwrap_or_default();
            rows.push([
                account,
                "-".into(),
                format!("{:?}", r.outcome).to_lowercase(),
                why,
            ]);
            continue;
        }
        for l in &r.licenses {
            let status = l
                .status_after
                .clone()
                .unwrap_or_else(|| "(no grant)".into());
            // The engine's decision (shared::decide) for the license, as the dry run took it.
            let actions = match (&l.error, &l.pending_reason) {
                (Some(e), _) => format!("error: {}", e.message),
                (None, Some(why)) => format!("wait: {why}"),
                (None, None) if l.actions.is_empty() => "none".into(),
                (None, None) => l.actions.join(", "),
            };
            rows.push([
                account.clone(),
                l.product_sku
                    .clone()
                    .unwrap_or_else(|| l.license_arn.clone()),
                status,
                actions,
            ]);
        }
    }
    table(&rows)
}

/// `status`: grants distributed to each account (all accounts with grants when none is given).
pub async fn status(engine: &Engine, accounts: &[AccountId]) -> Result<Vec<GrantView>, Error> {
    let lm = &engine.clients().license_manager;
    let calls = CallLog::default();
    if accounts.is_empty() {
        return aws::all_distributed_grants(lm, &calls).await;
    }
    let mut out = Vec::new();
    for a in accounts {
        let principal = a.root_principal(&engine.config().partition);
        out.extend(aws::grants_to_principal(lm, &principal, &calls).await?);
    }
    Ok(out)
}

/// Renders grants: one row per grant, accounts together.
pub fn render_status(grants: &[GrantView]) -> String {
    let mut sorted: Vec<&GrantView> = grants.iter().collect();
    sorted.sort_by(|a, b| (&a.grantee, &a.license_arn).cmp(&(&b.grantee, &b.license_arn)));
    let mut rows = vec![["Grantee", "License", "Grant", "Status"].map(String::from)];
    for g in sorted {
        let grantee = shared::ids::account_of_root_principal(&g.grantee)
            .unwrap_or(&g.grantee)
            .to_string();
        let short = |arn: &str| arn.rsplit([':', '/']).next().unwrap_or(arn).to_string();
        rows.push([
            grantee,
            short(&g.license_arn),
            short(&g.arn),
            g.status.clone(),
        ]);
    }
    table(&rows)
}

/// Messages still on a queue: visible + in flight + delayed.
pub async fn queue_depth(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Result<u64, Error> {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let out = aws::aws_call(
        "sqs",
        "GetQueueAttributes",
        sqs.get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(A::ApproximateNumberOfMessagesDelayed)
            .send(),
    )
    .await?;
    Ok(out
        .attributes()
        .map(|m| m.values().filter_map(|v| v.parse::<u64>().ok()).sum())
        .unwrap_or(0))
}

/// A one-line progress bar: `[#####-----]    5/10 onboarding messages worked`.
pub fn progress_bar(done: u64, total: u64) -> String {
    let width = 30u64;
    let filled = (done.min(total) * width)
        .checked_div(total)
        .unwrap_or(width);
    format!(
        "[{}{}] {done:>4}/{total} onboarding messages worked",
        "#".repeat(filled as usize),
        "-".repeat((width - filled) as usize)
    )
}

/// Left-aligned columns separated by two spaces, a rule under the header.
pub fn table(rows: &[[String; 4]]) -> String {
    let widths: Vec<usize> = (0..4)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (n, r) in rows.iter().enumerate() {
        let line: Vec<String> = (0..4)
            .map(|i| format!("{:<w$}", r[i], w = widths[i]))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
        if n == 0 {
            let _ = writeln!(out, "{}", "-".repeat(widths.iter().sum::<usize>() + 6));
        }
    }
    out
}
