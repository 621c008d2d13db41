//! The operator CLI's commands, on the same core as the functions: `plan` (account-lifecycle's
//! dry run), `status` (the grants the management account distributed), `coverage` (accounts ×
//! licenses) and `backfill` (the reconciler's fan-out on the backfill queue, then the queued
//! accounts followed to their outcome).

pub mod args;
pub mod backfill;
pub mod check;
pub mod context;
pub mod coverage;
pub mod deployed;
pub mod fail;
pub mod plan;
pub mod render;
pub mod status;

use args::{BackfillArgs, Cli, Command, ConfigCommand, Global, Output};
use context::{Context, Selection};
use fail::{Exit, Problem};
use shared::error::Error;
use shared::ids::AccountId;
use std::time::Duration;

/// What a command printed and how the process ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    pub stdout: String,
    pub exit: Exit,
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<Done, Error> {
    let global = cli.global;
    if global.output == Output::Csv && !matches!(cli.command, Command::Coverage { .. }) {
        return Err(Error::InvalidInput(
            "--output csv is for coverage only; use table or json".into(),
        ));
    }
    match cli.command {
        Command::Plan { accounts } => run_plan(&global, &accounts).await,
        Command::Status { accounts } => run_status(&global, &accounts).await,
        Command::Coverage { accounts, ous } => run_coverage(&global, &accounts, &ous).await,
        Command::Backfill(args) => run_backfill(&global, &args).await,
        Command::Config(ConfigCommand::Check { file }) => {
            let doc = check::check_file(&file)?;
            let stdout = printed(&global, &doc, check::CheckDocument::table);
            Ok(Done {
                stdout,
                exit: Exit::Ok,
            })
        }
    }
}

/// The output as a table or JSON.
fn printed<T: serde::Serialize>(
    global: &Global,
    doc: &T,
    table: impl FnOnce(&T) -> String,
) -> String {
    match global.output {
        Output::Json => render::json(doc),
        _ => table(doc),
    }
}

async fn run_plan(global: &Global, accounts: &[AccountId]) -> Result<Done, Error> {
    let ctx = Context::load(global, Selection::Required).await?;
    let reports = plan::look(&ctx.engine, accounts, "cli-plan").await;
    let doc = plan::PlanDocument::of(&reports, global.verbose);
    let exit = if doc.summary.failed > 0 {
        Exit::Failed
    } else {
        Exit::Ok
    };
    let stdout = printed(global, &doc, plan::PlanDocument::table);
    Ok(Done { stdout, exit })
}

async fn run_status(global: &Global, accounts: &[AccountId]) -> Result<Done, Error> {
    let ctx = Context::load(global, Selection::Unused).await?;
    let grants = status::grants(&ctx.engine, accounts).await?;
    let names = status::account_names(&ctx.engine.clients().organizations, accounts).await?;
    let skus = status::license_skus(&ctx.engine).await;
    let doc = status::StatusDocument::of(&grants, &names, &skus);
    let stdout = printed(global, &doc, status::StatusDocument::table);
    Ok(Done {
        stdout,
        exit: Exit::Ok,
    })
}

async fn run_coverage(
    global: &Global,
    accounts: &[AccountId],
    ous: &[String],
) -> Result<Done, Error> {
    let ctx = Context::load(global, Selection::Required).await?;
    let listed = coverage::scope_accounts(&ctx.engine, accounts, ous).await?;
    let doc = coverage::coverage(&ctx.engine, &listed, global.verbose).await;
    let exit = if doc.summary.failed > 0 {
        Exit::Failed
    } else {
        Exit::Ok
    };
    let stdout = match global.output {
        Output::Csv => doc.csv(),
        _ => printed(global, &doc, coverage::CoverageDocument::table),
    };
    Ok(Done { stdout, exit })
}

async fn run_backfill(global: &Global, args: &BackfillArgs) -> Result<Done, Error> {
    let ctx = Context::load(global, Selection::Required).await?;
    let queues = backfill::queues(args, &ctx)?;
    let config = backfill::reconcile_config(&queues)?;
    let scope = backfill::scope(args, &config)?;
    let report = backfill::queue(&ctx.engine, &config, scope, args.dry_run).await?;
    let mut doc = backfill::BackfillDocument::of(&report, &queues.backfill);
    backfill::name_accounts(&ctx.engine, &mut doc).await;
    if !args.dry_run && args.wait_seconds > 0 && !doc.accounts.is_empty() {
        backfill::follow(
            &ctx.engine,
            &mut doc,
            Duration::from_secs(args.wait_seconds),
            Duration::from_secs(args.poll_seconds),
            global.verbose,
        )
        .await;
    }
    let exit = if doc.summary.failed > 0 {
        Exit::Failed
    } else if doc.summary.still_pending > 0 {
        Exit::Pending
    } else {
        Exit::Ok
    };
    let stdout = printed(global, &doc, backfill::BackfillDocument::table);
    Ok(Done { stdout, exit })
}

/// How a command that could not run is reported: one line on stderr (table output) or a JSON
/// document on stdout (`--output json`), and the full detail on stderr with `--verbose`.
pub fn report_error(e: &Error, output: Output, verbose: bool) -> Done {
    let exit = Exit::of(e);
    let stdout = if output == Output::Json {
        render::json(&serde_json::json!({ "error": Problem::from_error(e, verbose) }))
    } else {
        String::new()
    };
    Done { stdout, exit }
}
