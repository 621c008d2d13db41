//! `local-world`: runs the License Manager / Service Catalog emulator (and, with `--moto` or
//! `--seed demo`, moto plus a seeded demo organization) until SIGTERM, Ctrl-C or stdin closes.
//! Line 1 of stdout is JSON: `{"emulatorUrl", "motoUrl", "env": {...}, "seeded": {...}}`.
//! `--licenses N` / `--accounts M` size the seeded organization (for `make bench`).

use std::io::Write;
use std::sync::Arc;

use local_world::emulator::{self, EmulatorOptions};
use local_world::seed::{self, demo_spec, LicenseSpec};
use local_world::{World, WorldOptions};
use serde_json::{json, Value};

const USAGE: &str =
    "usage: local-world [--port N] [--moto] [--seed demo] [--licenses N] [--accounts M] [--ous K]

  --port N        emulator port (default: a free one)
  --moto          also run moto_server (IAM, STS, Organizations, SQS) and wire the emulator to it
  --seed demo     --moto, plus a demo organization (2 OUs, 3 accounts, 3 Marketplace licenses)
  --licenses N    --seed demo, with N Marketplace licenses (SKUs prod-bench-001...) instead of 3
  --accounts M    --seed demo, plus M new member accounts (member-0001...) in the Workloads OU,
                  without License Manager's service-linked roles (as Account Factory leaves them)
  --ous K         --seed demo, with the M members spread over K new OUs (Scale-00...) instead

Prints the endpoints and environment as JSON on the first line of stdout, then serves until
SIGTERM, Ctrl-C, or stdin reaching end of file (unless stdin is /dev/null).";

struct Args {
    port: u16,
    moto: bool,
    seed: bool,
    licenses: Option<usize>,
    accounts: usize,
    ous: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        port: 0,
        moto: false,
        seed: false,
        licenses: None,
        accounts: 0,
        ous: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--port" => {
                let value = it.next().ok_or("--port needs a value")?;
                args.port = value.parse().map_err(|_| format!("bad port: {value}"))?;
            }
            "--moto" => args.moto = true,
            "--seed" => match it.next().as_deref() {
                Some("demo") => {
                    args.seed = true;
                    args.moto = true;
                }
                other => return Err(format!("unknown seed {other:?} (only `demo`)")),
            },
            "--licenses" | "--accounts" | "--ous" => {
                let value = it.next().ok_or(format!("{arg} needs a value"))?;
                let n: usize = value
                    .parse()
                    .map_err(|_| format!("bad {arg} value: {value}"))?;
                match arg.as_str() {
                    "--licenses" => args.licenses = Some(n),
                    "--ous" => args.ous = n,
                    _ => args.accounts = n,
                }
                args.seed = true;
                args.moto = true;
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

/// Resolves when stdin reaches end of file; never when stdin is /dev/null (e.g. a background
/// job), so that case does not stop the server at once.
async fn stdin_closed() {
    let devnull = std::fs::read_link("/proc/self/fd/0")
        .map(|p| p == std::path::Path::new("/dev/null"))
        .unwrap_or(false);
    if devnull {
        return std::future::pending().await;
    }
    let _ = tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
    })
    .await;
}

async fn terminated() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            term.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}

fn env_object(vars: Vec<(String, String)>) -> Value {
    Value::Object(
        vars.into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect(),
    )
}

/// The demo organization, with `licenses` generated licenses instead of the demo's three when
/// given, plus `accounts` new members in the Workloads OU, or spread over `ous` new OUs
/// (created a few at a time).
async fn seed_world(
    world: &Arc<World>,
    licenses: Option<usize>,
    accounts: usize,
    ous: usize,
) -> Result<seed::SeededOrg, local_world::Error> {
    let mut spec = demo_spec();
    spec.ous.extend((0..ous).map(|i| seed::OuSpec {
        name: format!("Scale-{i:02}"),
        accounts: Vec::new(),
    }));
    if let Some(n) = licenses {
        spec.licenses = (1..=n)
            .map(|i| {
                LicenseSpec::new(
                    &format!("prod-bench-{i:03}"),
                    &format!("Bench Product {i:03}"),
                )
            })
            .collect();
    }
    let mut org = seed::seed(world, &spec).await?;
    let workloads = org
        .ou("Workloads")
        .ok_or("demo organization without the Workloads OU")?
        .id
        .clone();
    let targets: Vec<String> = match ous {
        0 => vec![workloads],
        k => (0..k)
            .filter_map(|i| org.ou(&format!("Scale-{i:02}")).map(|o| o.id.clone()))
            .collect(),
    };
    const IN_FLIGHT: usize = 8;
    let mut tasks = tokio::task::JoinSet::new();
    let mut added = Vec::with_capacity(accounts);
    for i in 1..=accounts {
        if tasks.len() >= IN_FLIGHT {
            if let Some(done) = tasks.join_next().await {
                added.push(done.map_err(|e| e.to_string())??);
            }
        }
        let ou_id = targets[(i - 1) % targets.len()].clone();
        let (world, mut snapshot) = (world.clone(), org.clone());
        tasks.spawn(async move {
            let name = format!("member-{i:04}");
            seed::add_account(&world, &mut snapshot, &name, &ou_id).await
        });
    }
    while let Some(done) = tasks.join_next().await {
        added.push(done.map_err(|e| e.to_string())??);
    }
    added.sort_by(|a, b| a.name.cmp(&b.name));
    org.accounts.extend(added);
    Ok(org)
}

#[tokio::main]
async fn main() -> Result<(), local_world::Error> {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("local-world: {message}");
            }
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };

    // Keep whichever servers run alive until the end of main.
    let (first_line, _world, _emulator) = if args.moto {
        let world = World::start(WorldOptions {
            emulator_port: args.port,
            ..WorldOptions::default()
        })
        .await?;
        let world = Arc::new(world);
        let seeded = if args.seed {
            Some(seed_world(&world, args.licenses, args.accounts, args.ous).await?)
        } else {
            None
        };
        let line = json!({
            "emulatorUrl": world.emulator_url(),
            "motoUrl": world.moto_url(),
            "env": env_object(world.env_vars()),
            "seeded": seeded,
        });
        (line, Some(world), None)
    } else {
        let emulator = emulator::start(EmulatorOptions {
            port: args.port,
            ..EmulatorOptions::default()
        })
        .await?;
        let url = emulator.url();
        let env = vec![
            ("AWS_ENDPOINT_URL_LICENSE_MANAGER".to_string(), url.clone()),
            ("AWS_ENDPOINT_URL_SERVICE_CATALOG".to_string(), url.clone()),
            ("AWS_ACCESS_KEY_ID".to_string(), "testing".to_string()),
            ("AWS_SECRET_ACCESS_KEY".to_string(), "testing".to_string()),
            ("AWS_REGION".to_string(), "us-east-1".to_string()),
            ("AWS_EC2_METADATA_DISABLED".to_string(), "true".to_string()),
        ];
        let line = json!({
            "emulatorUrl": url,
            "motoUrl": null,
            "env": env_object(env),
            "seeded": null,
        });
        (line, None, Some(emulator))
    };

    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{first_line}")?;
    stdout.flush()?;
    drop(stdout);
    eprintln!(
        "local-world: serving {} (control: {}/_emulator/state); stop with Ctrl-C, SIGTERM or EOF on stdin",
        first_line["emulatorUrl"].as_str().unwrap_or_default(),
        first_line["emulatorUrl"].as_str().unwrap_or_default(),
    );

    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminated() => {}
        _ = stdin_closed() => {}
    }
    eprintln!("local-world: stopping");
    Ok(())
}
