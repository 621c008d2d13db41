//! The compiled account-lifecycle binary, as deployed: under the Lambda runtime emulator
//! (`cargo lambda watch`), configured only through environment variables, invoked with the
//! shipped event files (`cargo lambda invoke --data-file`), against the local AWS world.
#![allow(clippy::unwrap_used)]

use local_world::lambda::{workspace_root, LambdaEmulator};
use local_world::seed::{self, demo_spec};
use local_world::World;
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test]
async fn binary_onboards_an_account_from_the_shipped_events() {
    let Some(world) = World::start_or_skip().await else {
        return;
    };
    let org = seed::seed(&world, &demo_spec()).await.unwrap();
    let queue_url = world
        .sqs()
        .create_queue()
        .queue_name("onboarding")
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    let account = org.account("workload-prod").unwrap().clone();

    let mut env = world.env_vars();
    env.extend(
        [
            ("ALL_MARKETPLACE_LICENSES", "true"),
            ("ONBOARDING_QUEUE_URL", queue_url.as_str()),
            ("RECHECK_DELAY_SECONDS", "0"),
            // Harsher than the deployed default (info): the SDK's own debug lines too.
            ("RUST_LOG", "debug"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let lambda = match LambdaEmulator::start(&env, Duration::from_secs(600)).await {
        Ok(l) => l,
        Err(e) if !local_world::world::in_ci() => {
            eprintln!(
                "SKIPPED binary_onboards_an_account_from_the_shipped_events: {e} (run `make venv`)"
            );
            return;
        }
        Err(e) => panic!("cargo lambda watch did not start: {e}"),
    };

    // The shipped event, with the account id this world created (moto picks ids at random).
    let shipped: Value = serde_json::from_str(
        &std::fs::read_to_string(workspace_root().join("events/create-managed-account.json"))
            .unwrap(),
    )
    .unwrap();
    let mut event = shipped.clone();
    event["detail"]["serviceEventDetails"]["createManagedAccountStatus"]["account"]["accountId"] =
        json!(account.id);
    let dir = std::env::temp_dir().join(format!("ct-e2e-binary-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("create-managed-account.json");
    std::fs::write(&file, serde_json::to_vec(&event).unwrap()).unwrap();

    let mut out = lambda.invoke("account-lifecycle", &file).await.unwrap();
    assert!(out.ok, "invoke failed: {}\n{}", out.raw, lambda.log_text());
    // Under the realistic emulator profile the grants are still in workflow or being activated:
    // the binary's own re-checks (from the queue, the clock moved past the delays) finish them.
    for round in 0..10 {
        if out.output["outcome"] != "pending" {
            break;
        }
        world
            .control()
            .advance_clock(Duration::from_secs(5))
            .await
            .unwrap();
        let received = world
            .sqs()
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(1)
            .send()
            .await
            .unwrap();
        let message = &received.messages()[0];
        world
            .sqs()
            .delete_message()
            .queue_url(&queue_url)
            .receipt_handle(message.receipt_handle().unwrap())
            .send()
            .await
            .unwrap();
        let recheck = dir.join(format!("recheck-{round}.json"));
        std::fs::write(&recheck, message.body().unwrap()).unwrap();
        out = lambda.invoke("account-lifecycle", &recheck).await.unwrap();
        assert!(out.ok, "invoke failed: {}\n{}", out.raw, lambda.log_text());
    }
    assert_eq!(out.output["outcome"], "entitled", "{:#}", out.output);
    assert_eq!(out.output["accountId"], json!(account.id));
    assert_eq!(out.output["licenses"].as_array().map(Vec::len), Some(3));
    assert!(
        lambda.log_text().contains(r#""type":"accountReport""#),
        "one JSON report line per account in the logs"
    );
    assert!(
        lambda
            .log_text()
            .contains(&format!(r#""version":"{}""#, env!("CARGO_PKG_VERSION"))),
        "report lines name the release"
    );
    assert!(
        lambda.log_text().contains(r#""requestId":"#),
        "log lines carry the invocation's request id"
    );

    // Shipped files unmodified: a FAILED creation is skipped without any AWS call.
    let failed = lambda
        .invoke(
            "account-lifecycle",
            &workspace_root().join("events/create-failed.json"),
        )
        .await
        .unwrap();
    assert!(failed.ok, "{}", failed.raw);
    assert_eq!(failed.output["outcome"], "skipped");
    assert_eq!(failed.output["apiCalls"], json!({}));

    // The SQS-wrapped onboard request names an account outside this organization: a partial
    // batch failure, nothing lost.
    let batch = lambda
        .invoke(
            "account-lifecycle",
            &workspace_root().join("events/sqs-onboard-request.json"),
        )
        .await
        .unwrap();
    assert!(batch.ok, "{}", batch.raw);
    assert_eq!(
        batch.output["batchItemFailures"][0]["itemIdentifier"],
        "8b6d2c1e-0000-4000-8000-000000000002"
    );

    // A bad payload is a classified error (cargo lambda invoke exits non-zero).
    let bad = dir.join("bad.json");
    std::fs::write(&bad, br#"{"source":"aws.s3","detail":{}}"#).unwrap();
    let rejected = lambda.invoke("account-lifecycle", &bad).await.unwrap();
    assert!(!rejected.ok);
    assert!(
        rejected.raw.contains("InvalidInput.permanent"),
        "{}",
        rejected.raw
    );

    // Issue 10 item 6: the member-account credentials the binary assumed (moto keeps every
    // credential it handed out) appear nowhere in its logs or answers.
    let secrets = assumed_role_secrets(world.moto_url()).await;
    assert!(
        !secrets.is_empty(),
        "the run assumed a role into the account"
    );
    let logs = lambda.log_text();
    for secret in &secrets {
        assert!(
            !logs.contains(secret.as_str()) && !out.raw.contains(secret.as_str()),
            "an assumed-role secret ({}…) is in the logs",
            &secret[..6]
        );
    }
    eprintln!(
        "secrets: {} assumed-role secret values searched in {} bytes of debug logs: none found",
        secrets.len(),
        logs.len()
    );
    lambda.stop();
}

/// Every secret access key and session token moto's STS handed out (its state dump).
async fn assumed_role_secrets(moto_url: &str) -> Vec<String> {
    let dump = local_world::http::get(&format!("{moto_url}/moto-api/data.json"))
        .await
        .unwrap();
    assert!(dump.is_success(), "{}", dump.text());
    let dump: Value = serde_json::from_str(&dump.text()).unwrap();
    dump["sts"]["AssumedRole"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| [&r["secret_access_key"], &r["session_token"]])
        .filter_map(Value::as_str)
        .filter(|s| s.len() >= 16)
        .map(str::to_string)
        .collect()
}

/// Issue 8 item 10: under `cargo lambda watch` the runtime hands out a duration (600000) as
/// `Lambda-Runtime-Deadline-Ms`; the custom resource must still work and answer its
/// ResponseURL. This is the "Try it locally" run for catalog-provisioning
/// (docs/service-catalog.md): the local world's environment plus ALLOW_LOCAL_RESPONSE_URL, the
/// shipped Create event pointed at a listener on 127.0.0.1, at a seeded account and license.
#[tokio::test]
async fn catalog_provisioning_binary_answers_its_response_url_under_cargo_lambda_watch() {
    let Some(world) = World::start_or_skip().await else {
        return;
    };
    let org = seed::seed(&world, &demo_spec()).await.unwrap();
    let account = org.account("workload-prod").unwrap().clone();
    let license = org.licenses[0].clone();
    let receiver = local_world::receiver::Receiver::start(Vec::new()).await;

    let mut env = world.env_vars();
    env.push(("ALLOW_LOCAL_RESPONSE_URL".into(), "true".into()));
    // As /tmp/world.env in docs/operations.md (Try it): the deployment selects every
    // Marketplace license, which bounds what a launch may ask for (CATALOG_LICENSES empty).
    env.push(("ALL_MARKETPLACE_LICENSES".into(), "true".into()));
    env.push(("RUST_LOG".into(), "debug".into()));
    let lambda = match LambdaEmulator::start(&env, Duration::from_secs(600)).await {
        Ok(l) => l,
        Err(e) if !local_world::world::in_ci() => {
            eprintln!("SKIPPED catalog_provisioning_binary_answers_its_response_url_under_cargo_lambda_watch: {e} (run `make venv`)");
            return;
        }
        Err(e) => panic!("cargo lambda watch did not start: {e}"),
    };

    let mut event: Value = serde_json::from_str(
        &std::fs::read_to_string(workspace_root().join("events/catalog-create.json")).unwrap(),
    )
    .unwrap();
    let stack = event["StackId"]
        .as_str()
        .unwrap()
        .replace("210987654321", &account.id);
    event["StackId"] = json!(stack);
    // Signed like a pre-signed S3 URL: the signature must never be logged.
    let signature = "5f1c0ffee0ddba11ca5cadedbeefcafe0123456789abcdef0123456789abcdef";
    event["ResponseURL"] = json!(format!(
        "{}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE%2F20261130%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature={signature}",
        receiver.url
    ));
    event["ResourceProperties"]["LicenseArn"] = json!(license.arn);
    let dir = std::env::temp_dir().join(format!("ct-e2e-binary-cr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("catalog-create.json");
    std::fs::write(&file, serde_json::to_vec(&event).unwrap()).unwrap();

    let started = std::time::Instant::now();
    let out = lambda.invoke("catalog-provisioning", &file).await.unwrap();
    assert!(out.ok, "invoke failed: {}\n{}", out.raw, lambda.log_text());
    assert_eq!(
        out.output["responses"][0]["status"], "SUCCESS",
        "{:#}",
        out.output
    );
    let bodies = receiver.bodies();
    assert_eq!(bodies.len(), 1, "{}", lambda.log_text());
    let answer: Value = serde_json::from_str(&bodies[0]).unwrap();
    assert_eq!(answer["Status"], "SUCCESS", "{answer:#}");
    assert_eq!(answer["Data"]["GrantStatus"], "ACTIVE", "{answer:#}");
    assert_eq!(answer["Data"]["LicenseArn"], json!(license.arn));
    assert!(
        lambda.log_text().contains("using the fallback budget"),
        "the implausible deadline was noticed"
    );
    eprintln!(
        "catalog-provisioning under cargo lambda watch answered in {:?}",
        started.elapsed()
    );

    // The same request again, its ResponseURL refusing (HTTP 500 on every try): the failure
    // is logged and reported, the signature still is not; nor are the assumed-role secrets.
    let refusing = local_world::receiver::Receiver::start(vec![500; 5]).await;
    event["ResponseURL"] = json!(event["ResponseURL"]
        .as_str()
        .unwrap()
        .replace(&receiver.url, &refusing.url));
    let refused = dir.join("catalog-create-refused.json");
    std::fs::write(&refused, serde_json::to_vec(&event).unwrap()).unwrap();
    let out = lambda
        .invoke("catalog-provisioning", &refused)
        .await
        .unwrap();
    let logs = lambda.log_text();
    assert!(
        logs.contains("response PUT failed"),
        "the refused PUT is logged: {logs}"
    );
    assert!(
        !logs.contains(signature) && !out.raw.contains(signature),
        "the ResponseURL's X-Amz-Signature is in the logs or the answer"
    );
    let secrets = assumed_role_secrets(world.moto_url()).await;
    assert!(!secrets.is_empty());
    for secret in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "an assumed-role secret is in the logs"
        );
    }
    lambda.stop();
}
