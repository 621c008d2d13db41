//! `make demo`: the account-lifecycle binary, under the Lambda runtime emulator, onboarding a
//! newly vended account of a seeded local organization (moto + the License Manager emulator).
//! Prints a per-account summary table and the JSON report, then stops everything it started.

use local_world::lambda::{workspace_root, LambdaEmulator};
use local_world::seed::{self, demo_spec};
use local_world::{World, WorldOptions};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("demo failed: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), local_world::Error> {
    let started = Instant::now();
    step("starting the local AWS world (moto: IAM, STS, Organizations, SQS; emulator: License Manager)");
    let world = World::start(WorldOptions::default()).await?;

    step("seeding an organization: 2 OUs, 3 member accounts, 3 AWS Marketplace licenses");
    let mut org = seed::seed(&world, &demo_spec()).await?;
    let queue_url = world
        .sqs()
        .create_queue()
        .queue_name("ct-entitlements-onboarding")
        .send()
        .await
        .map_err(|e| local_world::sdk_error("CreateQueue", e))?
        .queue_url()
        .unwrap_or_default()
        .to_string();
    for ou in &org.ous {
        let members: Vec<String> = org
            .accounts
            .iter()
            .filter(|a| a.ou_id == ou.id)
            .map(|a| format!("{} ({})", a.name, a.id))
            .collect();
        println!(
            "    OU {:<10} {:<22} {}",
            ou.name,
            ou.id,
            members.join(", ")
        );
    }
    for l in &org.licenses {
        println!("    license {:<24} {}", l.sku, l.name);
    }

    step("Control Tower vends a new account: LifeCycle1 in OU Workloads");
    let ou = org
        .ou("Workloads")
        .map(|o| o.id.clone())
        .ok_or("seeded OU missing")?;
    let account = seed::add_account(&world, &mut org, "LifeCycle1", &ou).await?;

    // The shipped event file, pointed at the account this world just created (moto chooses
    // account ids at random).
    let shipped = workspace_root().join("events/create-managed-account.json");
    let mut event: Value = serde_json::from_str(&std::fs::read_to_string(&shipped)?)?;
    let status = &mut event["detail"]["serviceEventDetails"]["createManagedAccountStatus"];
    status["account"]["accountId"] = json!(account.id);
    status["account"]["accountName"] = json!(account.name);
    status["organizationalUnit"]["organizationalUnitId"] = json!(ou);
    status["organizationalUnit"]["organizationalUnitName"] = json!("Workloads");
    let dir = std::env::temp_dir().join(format!("ct-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let event_file = dir.join("create-managed-account.json");
    std::fs::write(&event_file, serde_json::to_vec_pretty(&event)?)?;

    step("starting account-lifecycle under `cargo lambda watch` (compiles it on first use)");
    let mut env = world.env_vars();
    env.extend(
        [
            ("ALL_MARKETPLACE_LICENSES", "true"),
            ("ONBOARDING_QUEUE_URL", queue_url.as_str()),
            ("RUST_LOG", "warn"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let lambda = LambdaEmulator::start(&env, Duration::from_secs(900)).await?;

    step(&format!(
        "cargo lambda invoke account-lifecycle --data-file {} (events/create-managed-account.json for account {})",
        event_file.display(),
        account.id
    ));
    let out = lambda.invoke("account-lifecycle", &event_file).await?;
    if !out.ok {
        return Err(format!("the function failed:\n{}\n{}", out.raw, lambda.log_text()).into());
    }
    print_summary(&out.output);
    println!(
        "\nJSON report:\n{}",
        serde_json::to_string_pretty(&out.output)?
    );

    step("delivering the same event again (idempotent: reads only)");
    let again = lambda.invoke("account-lifecycle", &event_file).await?;
    println!(
        "    outcome {}, write calls {}",
        again.output["outcome"].as_str().unwrap_or("?"),
        again.output["writeCalls"]
    );

    lambda.stop();
    world.shutdown().await?;
    let _ = std::fs::remove_dir_all(&dir);
    step(&format!(
        "done in {:.1}s; everything started here is stopped",
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

fn step(text: &str) {
    println!("\n==> {text}");
}

fn print_summary(report: &Value) {
    let s = |v: &Value| v.as_str().unwrap_or("-").to_string();
    println!(
        "\nAccount {} ({}) in {}: {}",
        s(&report["accountId"]),
        s(&report["accountName"]),
        s(&report["ouId"]),
        s(&report["outcome"]).to_uppercase()
    );
    if let Some(slrs) = report["serviceLinkedRoles"].as_array() {
        for r in slrs {
            println!(
                "  service-linked role {:<48} {}",
                s(&r["service"]),
                s(&r["action"])
            );
        }
    }
    let rows: Vec<[String; 4]> = report["licenses"]
        .as_array()
        .map(|ls| {
            ls.iter()
                .map(|l| {
                    let grant = s(&l["grantArn"]);
                    let short = grant.rsplit(':').next().unwrap_or("-").to_string();
                    let before = l["statusBefore"].as_str().unwrap_or("(none)");
                    let after = l["statusAfter"].as_str().unwrap_or("-");
                    let actions: Vec<String> = l["actions"]
                        .as_array()
                        .map(|a| a.iter().map(s).collect())
                        .unwrap_or_default();
                    let name = format!("{} ({})", s(&l["productName"]), s(&l["productSku"]));
                    [
                        name,
                        short,
                        format!("{before} -> {after}"),
                        actions.join(", "),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    let header = ["License", "Grant", "Before -> After", "Actions"].map(String::from);
    let widths: Vec<usize> = (0..4)
        .map(|i| {
            rows.iter()
                .chain([&header])
                .map(|r| r[i].len())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |r: &[String; 4]| {
        format!(
            "  {:<w0$} | {:<w1$} | {:<w2$} | {}",
            r[0],
            r[1],
            r[2],
            r[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        )
    };
    println!();
    println!("{}", line(&header));
    println!("  {}", "-".repeat(widths.iter().sum::<usize>() + 9));
    for r in &rows {
        println!("{}", line(r));
    }
    println!(
        "\n  AWS calls: {} ({} writes) in {} ms",
        report["apiCalls"]
            .as_object()
            .map(|m| m.values().filter_map(Value::as_u64).sum::<u64>())
            .unwrap_or(0),
        report["writeCalls"],
        report["durationMs"]
    );
}
