//! The operator CLI as an operator runs it: the compiled binary, configured through its
//! environment (or a deployed stack), against the local AWS world. Each test names the
//! behaviour it pins; the world-less ones (help, version, usage errors) always run.
#![allow(clippy::unwrap_used)]

#[path = "../../tests/tests/common/mod.rs"]
mod common;

use local_world::seed::demo_spec;
use serde_json::Value;
use std::process::Output;
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_ct-entitlements");

/// The binary with a bare environment (no credentials, no endpoints) plus `env`.
fn bare(args: &[&str], env: &[(String, String)]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", std::env::temp_dir())
        // No instance metadata, no profile files: nothing leaves the machine.
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .envs(env.iter().cloned());
    c
}

/// The world's environment (endpoints, credentials, region) plus the test defaults and `extra`.
fn world_env(s: &common::Setup, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = s.world.env_vars();
    env.push(("ASSUME_ROLE_BACKOFF_MS".into(), "10".into()));
    for (k, v) in extra {
        env.push((k.to_string(), v.to_string()));
    }
    env
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn show(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        text(&o.stdout),
        text(&o.stderr)
    )
}

fn json_of(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", show(o)))
}

#[tokio::test]
async fn help_and_version_exit_zero() {
    for args in [
        &["--help"][..],
        &["-h"],
        &["help"],
        &["help", "backfill"],
        &["plan", "--help"],
    ] {
        let o = bare(args, &[]).output().await.unwrap();
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", show(&o));
        let out = text(&o.stdout);
        assert!(out.contains("Usage: ct-entitlements"), "{args:?}: {out}");
    }
    let top = text(&bare(&["--help"], &[]).output().await.unwrap().stdout);
    for word in [
        "plan",
        "status",
        "coverage",
        "backfill",
        "Exit status",
        "--output",
        "--stack-name",
    ] {
        assert!(top.contains(word), "{word} missing from --help:\n{top}");
    }
    let backfill = text(
        &bare(&["backfill", "--help"], &[])
            .output()
            .await
            .unwrap()
            .stdout,
    );
    assert!(backfill.contains("--backfill-queue-url"), "{backfill}");
    let o = bare(&["--version"], &[]).output().await.unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert_eq!(
        text(&o.stdout).trim(),
        format!("ct-entitlements {}", env!("CARGO_PKG_VERSION"))
    );
}

#[tokio::test]
async fn usage_errors_exit_two_with_one_clear_line() {
    for (args, says) in [
        (&["plan"][..], "ACCOUNT_ID"),
        (&["plan", "12"], "12 digits"),
        (&["status", "x"], "12 digits"),
        (&["launch"], "unrecognized subcommand"),
        (&["backfill", "--ous", "r-1"], "OU id"),
        (
            &["coverage", "--ous", "ou-ab12-cdef3456", "123456789012"],
            "cannot be used with",
        ),
        (
            &["plan", "123456789012", "--output", "xml"],
            "invalid value",
        ),
    ] {
        let o = bare(args, &[]).output().await.unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", show(&o));
        assert!(text(&o.stderr).contains(says), "{args:?}: {}", show(&o));
        assert!(o.stdout.is_empty(), "{args:?}: {}", show(&o));
    }
    // CSV is coverage's alone: refused before anything is read.
    let o = bare(&["plan", "123456789012", "-o", "csv"], &[])
        .output()
        .await
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(
        text(&o.stderr).contains("csv is for coverage only"),
        "{}",
        show(&o)
    );
}

#[tokio::test]
async fn plan_without_a_selection_refuses_like_the_function() {
    // No selection: the deployed function would not start, so plan does not pretend.
    let env = vec![("AWS_REGION".to_string(), "us-east-1".to_string())];
    for output in ["table", "json"] {
        let o = bare(&["plan", "123456789012", "-o", output], &env)
            .output()
            .await
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{}", show(&o));
        let stderr = text(&o.stderr);
        assert_eq!(stderr.lines().count(), 1, "{}", show(&o));
        assert!(stderr.contains("no licenses selected"), "{}", show(&o));
        if output == "json" {
            assert_eq!(
                json_of(&o)["error"]["kind"],
                "Configuration",
                "{}",
                show(&o)
            );
        }
    }
    for command in [
        &["coverage"][..],
        &["backfill", "--backfill-queue-url", "http://127.0.0.1:9/q"],
    ] {
        let o = bare(command, &env).output().await.unwrap();
        assert_eq!(o.status.code(), Some(2), "{command:?}: {}", show(&o));
        assert!(
            text(&o.stderr).contains("no licenses selected"),
            "{}",
            show(&o)
        );
    }
}

#[tokio::test]
async fn no_credentials_is_one_readable_line_and_a_failure() {
    let env: Vec<(String, String)> = [
        ("AWS_REGION", "us-east-1"),
        ("PRODUCT_SKUS", "prod-demo-firewall"),
        // Should anything try to connect, it reaches nothing.
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let o = bare(&["plan", "123456789012"], &env)
        .output()
        .await
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let stdout = text(&o.stdout);
    let row = stdout
        .lines()
        .find(|l| l.starts_with("123456789012"))
        .unwrap();
    assert!(row.contains("no AWS credentials were found"), "{stdout}");
    assert!(row.len() < 300, "{} characters: {row}", row.len());
    assert!(
        !stdout.contains("ConnectorError") && !stdout.contains("source:"),
        "{stdout}"
    );
    assert_eq!(
        stdout.lines().last(),
        Some("plan: 1 account, 1 failed"),
        "{stdout}"
    );

    // --verbose keeps the SDK's own description, in the JSON document's detail.
    let o = bare(&["plan", "123456789012", "-o", "json", "--verbose"], &env)
        .output()
        .await
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let doc = json_of(&o);
    let error = &doc["accounts"][0]["error"];
    assert_eq!(error["code"], "DispatchFailure", "{doc}");
    assert!(
        error["detail"].as_str().unwrap().len() > error["message"].as_str().unwrap().len(),
        "{doc}"
    );
    let o = bare(&["plan", "123456789012", "-o", "json"], &env)
        .output()
        .await
        .unwrap();
    assert!(
        json_of(&o)["accounts"][0]["error"].get("detail").is_none(),
        "{}",
        show(&o)
    );
}

#[tokio::test]
async fn plan_exit_status_and_summary_count_failed_accounts() {
    let Some(s) = common::setup(demo_spec()).await else {
        return;
    };
    let sandbox = s.org.account("sandbox-1").unwrap().clone();
    let env = world_env(&s, &[("ALL_MARKETPLACE_LICENSES", "true")]);

    let o = bare(&["plan", &sandbox.id], &env).output().await.unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let stdout = text(&o.stdout);
    assert!(stdout.starts_with("Account "), "{stdout}");
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with(&sandbox.id))
        .collect();
    assert_eq!(rows.len(), 3, "{stdout}");
    assert!(
        rows.iter()
            .all(|r| r.contains("sandbox-1") && r.contains("(no grant)")),
        "{stdout}"
    );
    assert_eq!(
        stdout.lines().last(),
        Some("plan: 1 account, 1 would be entitled, 0 failed")
    );
    assert_eq!(s.calls("CreateGrant").await, 0, "plan made no write");

    // An account outside the organization fails its row, and the command.
    let o = bare(&["plan", &sandbox.id, "999999999999", "-o", "json"], &env)
        .output()
        .await
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let doc = json_of(&o);
    assert_eq!(doc["summary"]["accounts"], 2, "{doc}");
    assert_eq!(doc["summary"]["wouldBeEntitled"], 1, "{doc}");
    assert_eq!(doc["summary"]["failed"], 1, "{doc}");
    let failed = &doc["accounts"][1];
    assert_eq!(failed["accountId"], "999999999999", "{doc}");
    assert_eq!(failed["result"], "failed", "{doc}");
    assert_eq!(failed["error"]["kind"], "NotInOrganization", "{doc}");
    let licenses = doc["accounts"][0]["licenses"].as_array().unwrap();
    assert_eq!(licenses.len(), 3, "{doc}");
    assert!(
        licenses.iter().all(
            |l| l["status"].is_null() && l["planned"].as_array().is_some_and(|p| !p.is_empty())
        ),
        "{doc}"
    );

    // A selection naming no license held: every planned account fails.
    let bogus = world_env(&s, &[("PRODUCT_SKUS", "prod-no-such-sku")]);
    let o = bare(&["plan", &sandbox.id], &bogus).output().await.unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert_eq!(
        text(&o.stdout).lines().last(),
        Some("plan: 1 account, 1 failed"),
        "{}",
        show(&o)
    );
}

#[tokio::test]
async fn status_names_accounts_and_sums_up() {
    let Some(s) = common::setup(demo_spec()).await else {
        return;
    };
    let dev = s.org.account("workload-dev").unwrap().clone();
    let engine = s.engine(&[]);
    common::handle(&engine, s.create_event(&dev.id, &dev.ou_id)).await;
    let env = world_env(&s, &[]);

    let o = bare(&["status"], &env).output().await.unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let stdout = text(&o.stdout);
    let rows: Vec<&str> = stdout.lines().filter(|l| l.starts_with(&dev.id)).collect();
    assert_eq!(rows.len(), 3, "{stdout}");
    assert!(
        rows.iter().all(|r| r.contains("workload-dev")
            && r.contains("  prod-demo-")
            && r.ends_with("ACTIVE")),
        "{stdout}"
    );
    assert_eq!(
        stdout.lines().last(),
        Some("status: 3 grants to 1 account: 3 ACTIVE"),
        "{stdout}"
    );

    let o = bare(&["status", &dev.id, "-o", "json"], &env)
        .output()
        .await
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let doc = json_of(&o);
    assert_eq!(doc["command"], "status");
    assert_eq!(doc["summary"]["grants"], 3, "{doc}");
    assert_eq!(doc["summary"]["byStatus"]["ACTIVE"], 3, "{doc}");
    for g in doc["grants"].as_array().unwrap() {
        assert_eq!(g["accountId"], dev.id.as_str(), "{doc}");
        assert_eq!(g["accountName"], "workload-dev", "{doc}");
        assert!(
            g["productSku"].as_str().unwrap().starts_with("prod-demo-"),
            "{doc}"
        );
        assert!(
            g["grantArn"]
                .as_str()
                .unwrap()
                .starts_with("arn:aws:license-manager"),
            "{doc}"
        );
    }
    // Another account's grants: none.
    let prod = s.org.account("workload-prod").unwrap();
    let o = bare(&["status", &prod.id, "-o", "json"], &env)
        .output()
        .await
        .unwrap();
    assert_eq!(json_of(&o)["summary"]["grants"], 0, "{}", show(&o));
}

#[tokio::test]
async fn coverage_shows_who_lacks_what_as_table_json_and_csv() {
    let Some(s) = common::setup(demo_spec()).await else {
        return;
    };
    let dev = s.org.account("workload-dev").unwrap().clone();
    let engine = s.engine(&[]);
    common::handle(&engine, s.create_event(&dev.id, &dev.ou_id)).await;
    let env = world_env(&s, &[("ALL_MARKETPLACE_LICENSES", "true")]);
    let members: Vec<&str> = ["workload-prod", "workload-dev", "sandbox-1"]
        .iter()
        .map(|n| s.org.account(n).unwrap().id.as_str())
        .collect();

    let o = bare(&["coverage", "-o", "json"], &env)
        .output()
        .await
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let doc = json_of(&o);
    let summary = &doc["summary"];
    assert_eq!(summary["licenses"], 3, "{doc}");
    assert_eq!(summary["selected"], 9, "{doc}");
    assert_eq!(summary["active"], 3, "{doc}");
    assert_eq!(summary["lacking"], 6, "{doc}");
    assert_eq!(summary["accountsCovered"], 1, "{doc}");
    assert_eq!(summary["accountsLacking"], 2, "{doc}");
    assert_eq!(summary["failed"], 0, "{doc}");
    // The management account is listed and skipped, as the function skips it.
    assert_eq!(summary["accounts"], 4, "{doc}");
    assert_eq!(summary["skipped"], 1, "{doc}");
    let row = |id: &str| {
        doc["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["accountId"] == id)
            .unwrap()
            .clone()
    };
    let covered = row(&dev.id);
    assert_eq!(covered["accountName"], "workload-dev", "{doc}");
    for l in covered["licenses"].as_array().unwrap() {
        assert_eq!(l["status"], "ACTIVE", "{doc}");
        assert_eq!(l["source"], "account", "{doc}");
    }
    let lacking: Vec<&str> = doc["lacking"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["accountId"].as_str().unwrap())
        .collect();
    assert!(!lacking.contains(&dev.id.as_str()), "{doc}");
    assert_eq!(lacking.len(), 2, "{doc}");
    for m in members.iter().filter(|m| **m != dev.id) {
        assert!(lacking.contains(m), "{m} not lacking: {doc}");
    }

    let o = bare(&["coverage"], &env).output().await.unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let stdout = text(&o.stdout);
    assert!(stdout.contains("\nLacking:\n"), "{stdout}");
    assert_eq!(
        stdout.lines().last(),
        Some("coverage: 4 accounts, 3 licenses: 3 of 9 selected grants ACTIVE; 2 accounts lack a license; 1 skipped, 0 failed"),
        "{stdout}"
    );

    let o = bare(&["coverage", "--output", "csv"], &env)
        .output()
        .await
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let csv = text(&o.stdout);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "account_id,account_name,license,license_arn,status,source,mode,detail"
    );
    // 3 members × 3 licenses, and the management account's one row.
    assert_eq!(lines.len(), 1 + 9 + 1, "{csv}");
    assert_eq!(
        lines.iter().filter(|l| l.contains(",MISSING,")).count(),
        6,
        "{csv}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with(&format!("{},workload-dev,", dev.id))
                && l.contains(",ACTIVE,account,"))
            .count(),
        3,
        "{csv}"
    );

    // Named accounts only.
    let o = bare(&["coverage", &dev.id, "-o", "json"], &env)
        .output()
        .await
        .unwrap();
    let doc = json_of(&o);
    assert_eq!(doc["summary"]["accounts"], 1, "{doc}");
    assert_eq!(doc["summary"]["accountsLacking"], 0, "{doc}");
}

#[tokio::test]
async fn backfill_follows_the_accounts_it_queued_until_entitled() {
    let Some(s) = common::setup(demo_spec()).await else {
        return;
    };
    let (backfill_url, _) = common::new_queue(&s.world, "backfill").await;
    // A message of someone else's, delayed: the queue's depth never drops to 0 while this runs.
    s.world
        .sqs()
        .send_message()
        .queue_url(&backfill_url)
        .message_body("{\"accountId\":\"000000000000\"}")
        .delay_seconds(900)
        .send()
        .await
        .unwrap();
    let workloads = s.org.ou("Workloads").unwrap().id.clone();
    let env = world_env(&s, &[("ALL_MARKETPLACE_LICENSES", "true")]);
    let child = bare(
        &[
            "backfill",
            "--backfill-queue-url",
            &backfill_url,
            "--ous",
            &workloads,
            "--wait-seconds",
            "120",
            "--poll-seconds",
            "1",
            "-o",
            "json",
        ],
        &env,
    )
    .kill_on_drop(true)
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();

    // Stand in for the backfill function: work the messages the run queued.
    let engine = s.engine(&[]);
    let mut worked: Vec<String> = Vec::new();
    for _ in 0..600 {
        for body in common::take_bodies(&s.world, &backfill_url).await {
            let message: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(message["backfill"], true, "{body}");
            let id = message["accountId"].as_str().unwrap().to_string();
            let ou = message["ouId"].as_str().unwrap().to_string();
            common::handle(&engine, s.create_event(&id, &ou)).await;
            worked.push(id);
        }
        if worked.len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        worked.len(),
        2,
        "the two Workloads accounts were queued: {worked:?}"
    );
    let o = child.wait_with_output().await.unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let doc = json_of(&o);
    assert_eq!(doc["summary"]["queued"], 2, "{doc}");
    assert_eq!(doc["summary"]["entitled"], 2, "{doc}");
    assert_eq!(doc["summary"]["stillPending"], 0, "{doc}");
    assert_eq!(doc["summary"]["timedOut"], false, "{doc}");
    assert_eq!(doc["queueUrl"], backfill_url.as_str(), "{doc}");
    let mut followed: Vec<&str> = doc["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["accountId"].as_str().unwrap())
        .collect();
    followed.sort();
    worked.sort();
    assert_eq!(followed, worked, "{doc}");
    assert!(
        doc["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["outcome"] == "entitled" && a["accountName"].is_string()),
        "{doc}"
    );
    // Not a terminal: no progress drawn, no carriage returns anywhere.
    assert!(o.stderr.is_empty(), "{}", show(&o));
    assert!(!o.stdout.contains(&b'\r'), "{}", show(&o));

    // Run again: nothing is short of a grant, nothing is queued or followed.
    let o = bare(
        &[
            "backfill",
            "--queue-url",
            &backfill_url,
            "--ous",
            &workloads,
        ],
        &env,
    )
    .output()
    .await
    .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert_eq!(
        text(&o.stdout).lines().last(),
        Some("backfill: 2 listed, 0 queued, 2 up to date, 0 skipped"),
        "{}",
        show(&o)
    );
    assert!(
        text(&o.stderr).contains("--queue-url is deprecated"),
        "{}",
        show(&o)
    );
}

#[tokio::test]
async fn backfill_wait_running_out_is_not_success() {
    let Some(s) = common::setup(demo_spec()).await else {
        return;
    };
    let (backfill_url, _) = common::new_queue(&s.world, "backfill").await;
    let sandbox = s.org.account("sandbox-1").unwrap().clone();
    let env = world_env(&s, &[("ALL_MARKETPLACE_LICENSES", "true")]);
    // Nobody works the queue.
    let o = bare(
        &[
            "backfill",
            "--backfill-queue-url",
            &backfill_url,
            "--accounts",
            &sandbox.id,
            "--wait-seconds",
            "1",
            "--poll-seconds",
            "1",
        ],
        &env,
    )
    .output()
    .await
    .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    let stdout = text(&o.stdout);
    let last = stdout.lines().last().unwrap();
    assert!(last.starts_with("backfill: 1 listed, 1 queued, 0 up to date, 0 skipped; of the queued: 0 entitled, 0 failed, 1 still pending after"), "{stdout}");
    let row = stdout.lines().find(|l| l.starts_with(&sandbox.id)).unwrap();
    assert!(
        row.contains("sandbox-1") && row.contains("pending"),
        "{stdout}"
    );
    assert_eq!(common::take_bodies(&s.world, &backfill_url).await.len(), 1);

    // --dry-run queues nothing; --wait-seconds 0 queues and returns.
    let o = bare(
        &[
            "backfill",
            "--backfill-queue-url",
            &backfill_url,
            "--dry-run",
            "-o",
            "json",
        ],
        &env,
    )
    .output()
    .await
    .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let doc = json_of(&o);
    assert_eq!(doc["dryRun"], true, "{doc}");
    assert_eq!(doc["accounts"].as_array().unwrap().len(), 3, "{doc}");
    assert!(
        doc["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["outcome"] == "wouldQueue" && a["accountName"].is_string()),
        "{doc}"
    );
    assert!(common::take_bodies(&s.world, &backfill_url)
        .await
        .is_empty());

    // Without a backfill queue: a usage error, nothing queued.
    let o = bare(&["backfill", "--accounts", &sandbox.id], &env)
        .output()
        .await
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(
        text(&o.stderr).contains("--backfill-queue-url"),
        "{}",
        show(&o)
    );
}

/// A stack in moto shaped like the template where the CLI reads it: an
/// `AccountLifecycleFunction` with `environment`, and the two queue outputs. moto creates the
/// function without Docker (it only cannot invoke it).
async fn deploy_stack(s: &common::Setup, name: &str, environment: Value) -> (String, String) {
    let cfn = aws_sdk_cloudformation::Client::from_conf(
        aws_sdk_cloudformation::config::Builder::from(s.world.sdk_config())
            .endpoint_url(s.world.moto_url())
            .build(),
    );
    let template = serde_json::json!({
        "Resources": {
            "OnboardingQueue": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": format!("{name}-onboarding")}},
            "BackfillQueue": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": format!("{name}-backfill")}},
            "LifecycleRole": {"Type": "AWS::IAM::Role", "Properties": {
                "RoleName": format!("{name}-lifecycle"),
                "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
            }},
            "AccountLifecycleFunction": {"Type": "AWS::Lambda::Function", "Properties": {
                "Runtime": "provided.al2023",
                "Handler": "bootstrap",
                "Role": {"Fn::GetAtt": ["LifecycleRole", "Arn"]},
                "Code": {"ZipFile": "bootstrap"},
                "Environment": {"Variables": environment}
            }}
        },
        "Outputs": {
            "OnboardingQueueUrl": {"Value": {"Ref": "OnboardingQueue"}},
            "BackfillQueueUrl": {"Value": {"Ref": "BackfillQueue"}}
        }
    });
    cfn.create_stack()
        .stack_name(name)
        .template_body(template.to_string())
        .send()
        .await
        .unwrap();
    let outputs = ct_entitlements::deployed::stack_outputs(&cfn, name)
        .await
        .unwrap();
    (
        outputs["OnboardingQueueUrl"].clone(),
        outputs["BackfillQueueUrl"].clone(),
    )
}

#[tokio::test]
async fn stack_name_plans_and_queues_with_the_deployed_configuration() {
    let Some(s) = common::setup(demo_spec()).await else {
        return;
    };
    let (onboarding, backfill) = deploy_stack(
        &s,
        "ct-entitlements",
        serde_json::json!({
            "PRODUCT_SKUS": "prod-demo-firewall",
            "ASSUME_ROLE_BACKOFF_MS": "10",
            "GRANT_NAME_PREFIX": "deployed"
        }),
    )
    .await;
    let sandbox = s.org.account("sandbox-1").unwrap().clone();
    let moto = s.world.moto_url().to_string();
    // The shell's environment selects every license; the stack's function selects one.
    let mut env = world_env(&s, &[("ALL_MARKETPLACE_LICENSES", "true")]);
    env.push(("AWS_ENDPOINT_URL_CLOUDFORMATION".into(), moto.clone()));
    env.push(("AWS_ENDPOINT_URL_LAMBDA".into(), moto.clone()));

    let o = bare(
        &[
            "plan",
            &sandbox.id,
            "--stack-name",
            "ct-entitlements",
            "-o",
            "json",
        ],
        &env,
    )
    .output()
    .await
    .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let doc = json_of(&o);
    let licenses = doc["accounts"][0]["licenses"].as_array().unwrap();
    assert_eq!(licenses.len(), 1, "{doc}");
    assert_eq!(licenses[0]["productSku"], "prod-demo-firewall", "{doc}");
    // Without the stack, the shell's selection: all three.
    let o = bare(&["plan", &sandbox.id, "-o", "json"], &env)
        .output()
        .await
        .unwrap();
    assert_eq!(
        json_of(&o)["accounts"][0]["licenses"]
            .as_array()
            .unwrap()
            .len(),
        3,
        "{}",
        show(&o)
    );

    // backfill takes the stack's queues: an OU run goes to its backfill queue, named accounts
    // to its onboarding queue, as the reconciler sends them.
    let workloads = s.org.ou("Workloads").unwrap().id.clone();
    let o = bare(
        &[
            "backfill",
            "--stack-name",
            "ct-entitlements",
            "--ous",
            &workloads,
            "--wait-seconds",
            "0",
        ],
        &env,
    )
    .output()
    .await
    .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert_eq!(
        common::take_bodies(&s.world, &backfill).await.len(),
        2,
        "{}",
        show(&o)
    );
    let o = bare(
        &[
            "backfill",
            "--stack-name",
            "ct-entitlements",
            "--accounts",
            &sandbox.id,
            "--wait-seconds",
            "0",
        ],
        &env,
    )
    .output()
    .await
    .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert_eq!(
        common::take_bodies(&s.world, &onboarding).await.len(),
        1,
        "{}",
        show(&o)
    );

    // A stack that does not exist: a usage error naming it.
    let o = bare(
        &["plan", &sandbox.id, "--stack-name", "no-such-stack"],
        &env,
    )
    .output()
    .await
    .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(
        text(&o.stderr).contains("--stack-name no-such-stack"),
        "{}",
        show(&o)
    );
}

/// A temporary file holding `text`, named for the test.
fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("ct-cli-{}-{name}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn config_check_refuses_what_the_deploy_check_refuses() {
    let rules: serde_json::Map<String, Value> = (0..200)
        .map(|i| {
            (
                format!("ou-ab12-{i:08}"),
                serde_json::json!(["prod-demo-analytics", "prod-demo-firewall"]),
            )
        })
        .collect();
    let good = serde_json::json!({
        "version": 1,
        "licenses": ["prod-demo-observability"],
        "ouLicenseRules": rules,
        "licenseDistribution": {"prod-demo-analytics": "ou"},
    })
    .to_string();
    let good_path = temp_file("good.json", &good);
    let path = good_path.to_str().unwrap();

    let o = bare(&["config", "check", path], &[])
        .output()
        .await
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let stdout = text(&o.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("OU rules ") && l.split_whitespace().last() == Some("200")),
        "{stdout}"
    );
    assert_eq!(
        stdout.lines().last().unwrap(),
        format!("config check: {path} is valid ({} bytes)", good.len())
    );
    let o = bare(&["config", "check", path, "-o", "json"], &[])
        .output()
        .await
        .unwrap();
    let doc = json_of(&o);
    assert_eq!(
        (
            &doc["valid"],
            &doc["summary"]["ouRules"],
            &doc["summary"]["licenses"]
        ),
        (&Value::Bool(true), &Value::from(200), &Value::from(1)),
        "{doc}"
    );

    // Refused: exit 2 and the very message the deploy-time check answers FAILED with.
    for (name, bad) in [
        (
            "unknown-field.json",
            r#"{"version": 1, "licenses": ["prod-a"], "licence": []}"#,
        ),
        (
            "bad-ou.json",
            r#"{"version": 1, "ouLicenseRules": {"ou-x": ["prod-a"]}}"#,
        ),
        ("no-selection.json", r#"{"version": 1}"#),
        ("not-json.json", "licenses: [prod-a]"),
    ] {
        let expected = shared::config::check_document(bad).unwrap_err().to_string();
        let bad_path = temp_file(name, bad);
        let o = bare(&["config", "check", bad_path.to_str().unwrap()], &[])
            .output()
            .await
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{name}: {}", show(&o));
        let stderr = text(&o.stderr);
        let message = expected
            .strip_prefix("configuration error: ")
            .unwrap_or(&expected);
        assert!(stderr.contains(message), "{name}: {stderr} lacks {message}");
        assert!(stdout_is_empty(&o), "{name}: {}", show(&o));
        std::fs::remove_file(bad_path).unwrap();
    }
    let o = bare(&["config", "check", "/nonexistent/ct.json"], &[])
        .output()
        .await
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(text(&o.stderr).contains("cannot read /nonexistent/ct.json"));
    std::fs::remove_file(good_path).unwrap();
}

fn stdout_is_empty(o: &Output) -> bool {
    o.stdout.is_empty()
}

#[tokio::test]
async fn plan_reads_the_configuration_document_its_environment_names() {
    let Some(s) = common::setup(demo_spec()).await else {
        return;
    };
    let s3 = local_world::s3::client(&s.world);
    local_world::s3::bucket(&s3, "ct-cli-config", true)
        .await
        .unwrap();
    let version = local_world::s3::put(
        &s3,
        "ct-cli-config",
        "selection.json",
        r#"{"version": 1, "licenses": ["prod-demo-firewall"]}"#,
    )
    .await
    .unwrap()
    .unwrap();
    let sandbox = s.org.account("sandbox-1").unwrap().clone();
    let moto = s.world.moto_url().to_string();
    let env = world_env(
        &s,
        &[
            ("AWS_ENDPOINT_URL_S3", moto.as_str()),
            ("CONFIG_DOCUMENT", "s3://ct-cli-config/selection.json"),
            ("CONFIG_DOCUMENT_VERSION", version.as_str()),
        ],
    );
    let o = bare(&["plan", &sandbox.id, "-o", "json"], &env)
        .output()
        .await
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let doc = json_of(&o);
    let licenses = doc["accounts"][0]["licenses"].as_array().unwrap();
    assert_eq!(licenses.len(), 1, "the document selects one license: {doc}");
    let firewall = s.org.license("prod-demo-firewall").unwrap();
    assert_eq!(licenses[0]["licenseArn"], firewall.arn.as_str(), "{doc}");

    // A version that is not there: a clear failure, no plan.
    let mut gone = env.clone();
    gone.retain(|(k, _)| k != "CONFIG_DOCUMENT_VERSION");
    gone.push(("CONFIG_DOCUMENT_VERSION".into(), "no-such-version".into()));
    let o = bare(&["plan", &sandbox.id], &gone).output().await.unwrap();
    assert_ne!(o.status.code(), Some(0), "{}", show(&o));
    assert!(text(&o.stdout).is_empty(), "{}", show(&o));
}
