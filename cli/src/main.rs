//! ct-entitlements: the operator CLI. Arguments (clap), then the library's command, then one
//! exit status (see `--help`).

use clap::Parser;
use ct_entitlements::args::{uses_deprecated_queue_url, Cli};
use ct_entitlements::{fail, report_error, run};
use std::io::Write;

#[tokio::main]
async fn main() {
    let raw: Vec<String> = std::env::args().collect();
    // clap prints help and version on stdout (exit 0) and usage errors on stderr (exit 2).
    let cli = Cli::try_parse_from(&raw).unwrap_or_else(|e| e.exit());
    if uses_deprecated_queue_url(&raw) {
        eprintln!("ct-entitlements: note: --queue-url is deprecated; it means the backfill queue now (--backfill-queue-url)");
    }
    let (output, verbose) = (cli.global.output, cli.global.verbose);
    let done = match run(cli).await {
        Ok(done) => done,
        Err(e) => {
            eprintln!("ct-entitlements: {}", fail::describe(&e));
            if verbose {
                eprintln!("ct-entitlements: detail: {e:?}");
            }
            report_error(&e, output, verbose)
        }
    };
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(done.stdout.as_bytes());
    let _ = stdout.flush();
    std::process::exit(done.exit.code());
}
