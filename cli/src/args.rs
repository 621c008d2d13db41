//! The command line, declared with clap: commands, their flags and the flags every command takes.

use clap::{Args, Parser, Subcommand, ValueEnum};
use shared::ids::{is_ou_id, AccountId};

/// What the exit status means; shown under `--help`.
const EXIT_CODES: &str = "Exit status:
  0  everything asked for succeeded
  1  some account failed (or an AWS call the command needs failed)
  2  bad arguments or configuration (nothing was done)
  3  backfill: --wait-seconds ran out with queued accounts still pending

Configuration: the account-lifecycle environment variables (docs/configuration.md), or with
--stack-name the deployed function's own. AWS credentials of the management account (or the
delegated administrator) come from the usual AWS settings.";

#[derive(Debug, Parser)]
#[command(
    name = "ct-entitlements",
    version,
    about = "Plan, inspect and backfill Marketplace license grants with the same core as the deployed functions",
    after_help = EXIT_CODES,
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub global: Global,
}

/// Flags every command takes.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// How results are printed: a table with a summary line, or one JSON document (csv: coverage only)
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Print the full detail of errors (the SDK's own description) on stderr
    #[arg(long, short = 'v', global = true)]
    pub verbose: bool,
    /// Read the configuration (and queue URLs) of this deployed CloudFormation stack instead of
    /// the environment: the AccountLifecycleFunction's environment and the stack's outputs
    #[arg(long, global = true, value_name = "NAME")]
    pub stack_name: Option<String>,
}

/// The output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
    Csv,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// What account-lifecycle would do for these accounts (a dry run: no write call)
    Plan {
        /// 12-digit account ids
        #[arg(required = true, value_name = "ACCOUNT_ID", value_parser = account_id)]
        accounts: Vec<AccountId>,
    },
    /// Grants the management account distributed, with account names (all accounts if none named)
    Status {
        /// 12-digit account ids (none: every grant)
        #[arg(value_name = "ACCOUNT_ID", value_parser = account_id)]
        accounts: Vec<AccountId>,
    },
    /// Accounts × selected licenses: grant status and source, totals, and who lacks what
    Coverage {
        /// 12-digit account ids (none: the whole organization, or --ous)
        #[arg(value_name = "ACCOUNT_ID", value_parser = account_id, conflicts_with = "ous")]
        accounts: Vec<AccountId>,
        /// Only the accounts under these OUs (recursively), comma-separated
        #[arg(long, value_name = "OU_ID,...", value_delimiter = ',', value_parser = ou_id)]
        ous: Vec<String>,
    },
    /// Queue an onboarding run on the backfill queue for each account short of an ACTIVE grant
    /// (named accounts: always), then follow those accounts until they are entitled
    Backfill(BackfillArgs),
    /// The configuration document (docs/configuration.md): `config check FILE`
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check a configuration document as the deploy-time check and the functions read it (no
    /// AWS call): exit 0 and what it selects, or exit 2 and the parser's message
    Check {
        /// The JSON document (`-`: standard input)
        #[arg(value_name = "FILE")]
        file: std::path::PathBuf,
    },
}

#[derive(Debug, Clone, Args)]
pub struct BackfillArgs {
    /// The backfill queue (the stack's BackfillQueueUrl output; read from the stack with
    /// --stack-name). `--queue-url` is a deprecated alias of this flag
    #[arg(long, value_name = "URL", alias = "queue-url")]
    pub backfill_queue_url: Option<String>,
    /// Only the accounts under these OUs (recursively), comma-separated
    #[arg(long, value_name = "OU_ID,...", value_delimiter = ',', value_parser = ou_id)]
    pub ous: Vec<String>,
    /// Only these accounts (always queued, whatever their grants; with --stack-name they go to its
    /// onboarding queue, as the reconciler sends them), comma-separated
    #[arg(long, value_name = "ACCOUNT_ID,...", value_delimiter = ',', value_parser = account_id, conflicts_with = "ous")]
    pub accounts: Vec<AccountId>,
    /// List the accounts that would be queued; queue nothing
    #[arg(long)]
    pub dry_run: bool,
    /// How long to follow the queued accounts (0: queue and return at once)
    #[arg(long, value_name = "SECONDS", default_value_t = 900)]
    pub wait_seconds: u64,
    /// Seconds between two looks at the queued accounts' grants
    #[arg(long, value_name = "SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub poll_seconds: u64,
}

fn account_id(raw: &str) -> Result<AccountId, String> {
    AccountId::parse(raw).map_err(|e| match e {
        shared::error::Error::InvalidInput(message) => message,
        other => other.to_string(),
    })
}

fn ou_id(raw: &str) -> Result<String, String> {
    if is_ou_id(raw) {
        Ok(raw.to_string())
    } else {
        Err(format!(
            "must be an OU id (ou-xxxx-yyyyyyyy), got {}",
            shared::error::echo(raw)
        ))
    }
}

/// Whether the deprecated `--queue-url` spelling is among `args`.
pub fn uses_deprecated_queue_url<S: AsRef<str>>(args: &[S]) -> bool {
    args.iter()
        .map(AsRef::as_ref)
        .any(|a| a == "--queue-url" || a.starts_with("--queue-url="))
}
