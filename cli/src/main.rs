//! ct-entitlements: the operator CLI. Thin: arguments, configuration and clients, then the
//! library's commands.

use ct_entitlements::{
    parse, plan, progress_bar, queue_depth, render_plan, render_status, status, Command,
};
use shared::reconcile;
use shared::{Clients, Config, Engine};
use std::io::Write;
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = run(&args).await {
        eprintln!("ct-entitlements: {e}");
        std::process::exit(
            if e.kind() == "InvalidInput" || e.kind() == "Configuration" {
                2
            } else {
                1
            },
        );
    }
}

async fn run(args: &[String]) -> Result<(), shared::Error> {
    let command = parse(args)?;
    let dry = matches!(command, Command::Plan(_));
    let sdk = shared::clients::load_sdk_config().await;
    // The environment, with the region the SDK resolved (a profile's, say) standing in for an
    // unset AWS_REGION: ARNs are built in that region's partition.
    let env = |k: &str| {
        std::env::var(k).ok().or_else(|| {
            (k == "AWS_REGION")
                .then(|| sdk.region().map(|r| r.to_string()))
                .flatten()
        })
    };
    let config = Config::from_lookup(|k| {
        if dry && k == "DRY_RUN" {
            return Some("true".into());
        }
        env(k)
    })
    .or_else(|_| Config::from_lookup_per_request(env))?;
    let engine = Engine::new(
        config.clone(),
        Clients::from_sdk_config(&sdk, &config.license_home_region),
    );
    match command {
        Command::Plan(accounts) => print!("{}", render_plan(&plan(&engine, &accounts).await)),
        Command::Status(accounts) => {
            print!("{}", render_status(&status(&engine, &accounts).await?))
        }
        Command::Backfill {
            queue_url,
            scope,
            dry_run,
            wait,
        } => {
            let rc = ct_entitlements::reconcile_config(&queue_url)?;
            let report = reconcile::reconcile(&engine, &rc, scope, dry_run).await;
            if let Some(err) = &report.error {
                return Err(shared::Error::InvalidInput(err.message.clone()));
            }
            println!(
                "{} account(s) to onboard, {} enqueued, {} up to date, {} skipped",
                report.onboard.len(),
                report.enqueued,
                report.up_to_date,
                report.skipped.len()
            );
            if dry_run || report.enqueued == 0 {
                for id in &report.onboard {
                    match report.needs.get(id) {
                        Some(why) => println!("  {id}  {why}"),
                        None => println!("  {id}"),
                    }
                }
                return Ok(());
            }
            let sqs = engine.clients().sqs.clone();
            let total = report.enqueued as u64;
            let started = Instant::now();
            loop {
                let left = queue_depth(&sqs, &queue_url).await?;
                print!("\r{}", progress_bar(total.saturating_sub(left), total));
                let _ = std::io::stdout().flush();
                if left == 0 || started.elapsed() > wait {
                    println!();
                    break;
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            println!(
                "see the accountReport log lines of account-lifecycle for each account's result"
            );
        }
    }
    Ok(())
}
