#!/usr/bin/env python3
"""`make bench`: init, peak memory, onboarding critical path, backfill throughput and bootstrap
size of the release Lambda functions, against the local world (moto + the emulator), beside a
Python 3.11 + boto3 peer run through awslambdaric under the same runtime API server.

Benchmarks, not tests: this fails only when a run errors, never for being slow. Prints each
figure with its ratio and writes target/bench/report.json. See docs/performance.md."""

import argparse
import collections
import contextlib
import datetime
import json
import os
import platform
import queue
import re
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
from harness import (  # noqa: E402
    Proxies, RuntimeApi, World, critical_path, longest_chain, spawn, stop, vm_hwm_kib)

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "target" / "bench"
LOGS = OUT / "logs"
FUNCTIONS = ["account-lifecycle", "reconciler", "org-bootstrap", "catalog-provisioning",
             "account-vending"]
MIB = 1024 * 1024
REGION = "us-east-1"
CLOSED = "http://127.0.0.1:9"  # nothing listens: an init run that made an AWS call would fail

# The boto3 clients the Python peer creates at init: the clients each Rust `main` builds.
PEER_CLIENTS = {
    "account-lifecycle": "organizations,sts,license-manager,sqs",
    "reconciler": "organizations,sts,license-manager,sqs",
    "org-bootstrap": "organizations,license-manager,iam",
    "catalog-provisioning": "organizations,sts,license-manager,sqs,servicecatalog",
    "account-vending": "servicecatalog,organizations,sqs,sts",
}

# Each function's required environment (template.yaml); queue URLs point nowhere reachable.
FUNCTION_ENV = {
    "account-lifecycle": {"ALL_MARKETPLACE_LICENSES": "true", "RECHECK_DELAY_SECONDS": "0",
                          "ONBOARDING_QUEUE_URL": f"{CLOSED}/123456789012/onboarding"},
    "reconciler": {"ALL_MARKETPLACE_LICENSES": "true",
                   "ONBOARDING_QUEUE_URL": f"{CLOSED}/123456789012/onboarding"},
    "org-bootstrap": {"LICENSE_HOME_REGION": REGION, "ALLOW_LOCAL_RESPONSE_URL": "true"},
    "catalog-provisioning": {"EXECUTION_ROLE_NAME": "AWSControlTowerExecution",
                             "LICENSE_HOME_REGION": REGION, "ALLOW_LOCAL_RESPONSE_URL": "true"},
    "account-vending": {"VENDING_QUEUE_URL": f"{CLOSED}/123456789012/vending",
                        "VENDING_DEAD_LETTER_QUEUE_URL": f"{CLOSED}/123456789012/vending-dlq",
                        "ONBOARDING_QUEUE_URL": f"{CLOSED}/123456789012/onboarding",
                        "EXECUTION_ROLE_NAME": "AWSControlTowerExecution",
                        "LICENSE_HOME_REGION": REGION},
}


def log(msg):
    print(msg, flush=True)


def load_event(name):
    return json.loads((ROOT / "events" / name).read_text())


def init_event(function, response_url):
    """An event each function handles without any AWS call, and what its answer must be."""
    if function == "account-lifecycle":
        return load_event("create-failed.json"), "response", "Control Tower FAILED event (skipped)"
    if function == "reconciler":
        return {"bench": "not a reconcile request"}, "error", "unknown request field (rejected)"
    if function == "account-vending":
        return {"bench": "not an account request"}, "error", "invalid account request (rejected)"
    if function == "org-bootstrap":
        event = load_event("org-bootstrap-create.json")
        event["RequestType"] = "Delete"
        event["PhysicalResourceId"] = "org-bootstrap"
    else:
        event = load_event("catalog-delete.json")
        event["ResourceProperties"]["DeactivateOnDelete"] = "false"
    event["ResponseURL"] = response_url
    return event, "response", "custom-resource Delete (answered, PUT to ResponseURL)"


def base_env(runtime_api, endpoints=None):
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AWS_LAMBDA_RUNTIME_API": runtime_api,
        "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_LAMBDA_FUNCTION_NAME": "bench", "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/bench",
        "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
        "RUST_LOG": "info",
        "LANG": "C.UTF-8",
    }
    for var in ("IAM", "STS", "ORGANIZATIONS", "SQS", "LICENSE_MANAGER", "SERVICE_CATALOG",
                "DYNAMODB"):
        env[f"AWS_ENDPOINT_URL_{var}"] = CLOSED
    env.update(endpoints or {})
    return env


def bootstrap_path(function):
    return ROOT / "target" / "lambda" / function / "bootstrap"


def summary(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values)}


# ---------------------------------------------------------------- 0. build

def build(args):
    cargo_lambda = os.environ.get("CARGO_LAMBDA", "cargo-lambda")
    t0 = time.monotonic()
    cmd = [cargo_lambda, "lambda", "build", "--release", "--x86-64"]
    for f in FUNCTIONS:
        cmd += ["--bin", f]
    log(f"$ cargo {' '.join(cmd[1:])}")
    subprocess.run(cmd, cwd=ROOT, check=True)
    t1 = time.monotonic()
    log("$ cargo build -p local-world --bin local-world")
    subprocess.run(["cargo", "build", "-q", "-p", "local-world", "--bin", "local-world"],
                   cwd=ROOT, check=True)
    t2 = time.monotonic()
    return {"releaseBuildSeconds": round(t1 - t0, 1), "localWorldBuildSeconds": round(t2 - t1, 1)}


# ---------------------------------------------------------------- 1-2. init and peak RSS

def one_cold_start(function, runtime):
    rt = RuntimeApi()
    response_url = f"http://{rt.address}/cfn-response/bench?X-Amz-Signature=0000"
    event, expect, _ = init_event(function, response_url)
    env = base_env(rt.address)
    env.update(FUNCTION_ENV[function])
    if runtime == "rust":
        cmd, cwd = [str(bootstrap_path(function))], None
    else:
        env["PEER_CLIENTS"] = PEER_CLIENTS[function]
        env["LAMBDA_TASK_ROOT"] = str(ROOT / "bench" / "peer")
        env["_HANDLER"] = "handler.handler"
        cmd, cwd = [sys.executable, "-m", "awslambdaric", "handler.handler"], ROOT / "bench" / "peer"
    inv = rt.submit(event)
    logf = open(LOGS / f"init-{function}-{runtime}.log", "a")
    t0 = time.monotonic_ns()
    proc = spawn(cmd, env=env, cwd=cwd, stdout=logf, stderr=logf)
    try:
        inv.wait(60)
        hwm = vm_hwm_kib(proc.pid)
    finally:
        stop(proc)
        rt.close()
        logf.close()
    got = "response" if inv.ok else "error"
    if got != expect or (expect == "response" and "ResponseURL" in event and not rt.cfn_responses):
        raise RuntimeError(f"{function} ({runtime}): expected {expect}, got {got}: "
                           f"{(inv.body or b'')[:300]!r} (log: {logf.name})")
    return (inv.done_ns - t0) / 1e6, hwm / 1024


def bench_init(args):
    results = {}
    for function in FUNCTIONS:
        for runtime in ("rust", "python"):  # one discarded warm-up each (page cache, .pyc)
            one_cold_start(function, runtime)
        samples = {"rust": [], "python": []}
        for _ in range(args.init_runs):
            for runtime in ("rust", "python"):
                samples[runtime].append(one_cold_start(function, runtime))
        r = {rt: {"initMs": summary([s[0] for s in v]), "peakRssMiB": summary([s[1] for s in v])}
             for rt, v in samples.items()}
        r["event"] = init_event(function, "")[2]
        r["initRatio"] = r["python"]["initMs"]["median"] / r["rust"]["initMs"]["median"]
        r["rssRatio"] = r["python"]["peakRssMiB"]["median"] / r["rust"]["peakRssMiB"]["median"]
        results[function] = r
        log(f"  {function:21} init median {r['rust']['initMs']['median']:7.1f} ms "
            f"(min {r['rust']['initMs']['min']:.1f}, max {r['rust']['initMs']['max']:.1f}) | "
            f"python {r['python']['initMs']['median']:7.1f} ms "
            f"(min {r['python']['initMs']['min']:.1f}, max {r['python']['initMs']['max']:.1f}) "
            f"| {r['initRatio']:5.1f}x faster")
        log(f"  {'':21} peak RSS {r['rust']['peakRssMiB']['median']:6.1f} MiB "
            f"| python {r['python']['peakRssMiB']['median']:6.1f} MiB | {r['rssRatio']:5.1f}x smaller")
    return results


# ---------------------------------------------------------------- 3. onboarding

def create_queue(world, name):
    import boto3
    sqs = boto3.client("sqs", endpoint_url=world.moto_url, region_name=REGION,
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    return sqs, sqs.create_queue(QueueName=name)["QueueUrl"]


def create_chain_table(world, name):
    """The template's ChainTable in moto (partition key `account`, on demand); its name, for
    CHAIN_TABLE."""
    import boto3
    db = boto3.client("dynamodb", endpoint_url=world.moto_url, region_name=REGION,
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    db.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                    AttributeDefinitions=[{"AttributeName": "account", "AttributeType": "S"}],
                    KeySchema=[{"AttributeName": "account", "KeyType": "HASH"}])
    return name


def lifecycle_env(rt, world, proxies, queue_url, extra=None):
    env = base_env(rt.address, proxies.env())
    env.update({"ALL_MARKETPLACE_LICENSES": "true", "RECHECK_DELAY_SECONDS": "0",
                "ONBOARDING_QUEUE_URL": queue_url,
                "SELF_ACCOUNT_ID": world.seeded["managementAccount"]})
    env.update(extra or {})
    return env


def create_event(account):
    event = load_event("create-managed-account.json")
    status = event["detail"]["serviceEventDetails"]["createManagedAccountStatus"]
    status["account"]["accountId"] = account["id"]
    status["account"]["accountName"] = account["name"]
    status["organizationalUnit"]["organizationalUnitId"] = account["ouId"]
    return event


def measure(proxies, inv, function):
    calls = proxies.snapshot()
    if not inv.ok:
        raise RuntimeError(f"{function}: invocation failed: {(inv.body or b'')[:500]!r}")
    body = inv.json() or {}
    return {
        "wallMs": round((inv.done_ns - inv.delivered_ns) / 1e6, 1),
        "calls": len(calls),
        "roundTrips": longest_chain(calls),
        "criticalPath": critical_path(calls),
        "throttled": sum(1 for c in calls if c.throttled),
        "byOperation": dict(collections.Counter(f"{c.service}:{c.op}" for c in calls)),
        # Every call as [operation, start ms, end ms] from the first call's start.
        "timeline": [[f"{c.service}:{c.op}", round((c.start - t0) / 1e6, 1),
                      round((c.end - t0) / 1e6, 1)]
                     for t0 in [min((c.start for c in calls), default=0)]
                     for c in sorted(calls, key=lambda c: c.start)],
        "outcome": body.get("outcome") if isinstance(body, dict) else None,
    }


def median_run(runs):
    """The run with the median wall time, its round trips replaced by the median over the runs
    (independent calls that the 2-core local world happens to serialize lengthen a chain in
    some runs, not in others), and every run's figures kept beside it."""
    ordered = sorted(runs, key=lambda r: r["wallMs"])
    chosen = dict(ordered[len(ordered) // 2])
    chosen["roundTrips"] = sorted(r["roundTrips"] for r in runs)[len(runs) // 2]
    chosen["runs"] = [{k: r[k] for k in ("wallMs", "calls", "roundTrips")} for r in runs]
    return chosen


@contextlib.contextmanager
def lifecycle_container(world, proxies, queue_url, log_name, extra=None):
    """An account-lifecycle process under its own runtime API server: (runtime, process),
    both stopped on exit."""
    rt = RuntimeApi()
    logf = open(LOGS / log_name, "w")
    proc = spawn([str(bootstrap_path("account-lifecycle"))],
                 env=lifecycle_env(rt, world, proxies, queue_url, extra),
                 stdout=logf, stderr=logf)
    try:
        yield rt, proc
    finally:
        stop(proc)
        rt.close()
        logf.close()


def onboard_once(world, proxies, queue_url, account, second, licenses, delay, repeat):
    """One new account in a cold container, the same account again in that container, a
    second new account in that (now warm) container, and the first again in a fresh one
    (nothing cached)."""
    tag = f"{licenses}-{delay}ms-{repeat}"
    proxies.set_delay(delay)
    proxies.reset()
    event = create_event(account)
    with lifecycle_container(world, proxies, queue_url, f"onboarding-{tag}.log") as (rt, proc):
        cold = measure(proxies, rt.submit(event).wait(300), "account-lifecycle")
        proxies.reset()
        warm = measure(proxies, rt.submit(event).wait(300), "account-lifecycle")
        # Let the container's License Manager rate limiter (10 calls/s per operation, 3 s burst)
        # refill from the first account's calls, so the figure is the account's own.
        time.sleep(licenses / 10 + 0.2)
        proxies.reset()
        new_warm = measure(proxies, rt.submit(create_event(second)).wait(300),
                           "account-lifecycle")
        hwm = vm_hwm_kib(proc.pid) / 1024
    proxies.reset()
    with lifecycle_container(world, proxies, queue_url,
                             f"onboarding-{tag}-recold.log") as (rt, _):
        recold = measure(proxies, rt.submit(event).wait(300), "account-lifecycle")
    return cold, warm, recold, hwm, new_warm


def bench_onboarding(args, lw):
    results = []
    peak_25 = None
    repeats = max(1, args.repeats)
    for licenses in args.licenses:
        world = World(lw, licenses, 2 * len(args.delays) * repeats,
                      LOGS / f"world-onboarding-{licenses}.log")
        proxies = Proxies(world.moto_url, world.emulator_url)
        members = iter(world.members())
        try:
            _, queue_url = create_queue(world, "onboarding")
            for delay in args.delays:
                runs = [onboard_once(world, proxies, queue_url, next(members), next(members),
                                     licenses, delay, r)
                        for r in range(repeats)]
                cold = median_run([r[0] for r in runs])
                warm = median_run([r[1] for r in runs])
                recold = median_run([r[2] for r in runs])
                hwm = max(r[3] for r in runs)
                new_warm = median_run([r[4] for r in runs])
                row = {"licenses": licenses, "delayMs": delay, "cold": cold, "newWarm": new_warm,
                       "entitledWarm": warm, "entitledCold": recold, "peakRssMiB": round(hwm, 2),
                       "minCalls": 11 + 3 * licenses, "minRoundTrips": 6, "maxEntitledCalls": 8,
                       "repeats": repeats}
                results.append(row)
                if licenses == 25 and (peak_25 is None or hwm > peak_25):
                    peak_25 = hwm
                log(f"  L={licenses:2} {delay:2} ms | new account: {cold['wallMs']:7.1f} ms, "
                    f"{cold['calls']:3} calls (min {row['minCalls']}, "
                    f"{cold['calls'] / row['minCalls']:.2f}x), {cold['roundTrips']:2} round trips "
                    f"(min 6, {cold['roundTrips'] / 6:.2f}x; runs "
                    f"{'/'.join(str(r['roundTrips']) for r in cold['runs'])}) | next new account, "
                    f"warm: {new_warm['calls']:3} calls ({new_warm['calls'] / row['minCalls']:.2f}x),"
                    f" {new_warm['roundTrips']:2} rt | entitled, warm: "
                    f"{warm['wallMs']:6.1f} ms, {warm['calls']:2} calls (<= 8), "
                    f"{warm['roundTrips']:2} rt | entitled, cold: {recold['wallMs']:6.1f} ms, "
                    f"{recold['calls']:2} calls, {recold['roundTrips']:2} rt | RSS {hwm:.1f} MiB")
        finally:
            proxies.close()
            world.close()
    return results, peak_25


# ---------------------------------------------------------------- 4. backfill

def record_of(message):
    """The Lambda SQS record of a message boto3 received (its message attributes as Lambda
    delivers them: a chain sequence, shared::chain::ATTRIBUTE)."""
    record = sqs_record(message["Body"], message_id=message["MessageId"])
    record["messageAttributes"] = {
        name: {"stringValue": a.get("StringValue"), "dataType": a.get("DataType")}
        for name, a in (message.get("MessageAttributes") or {}).items()}
    return record


def sqs_record(body, receive_count=1, message_id=None):
    return {
        "messageId": message_id or str(uuid.uuid4()),
        "receiptHandle": "bench",
        "body": body,
        "attributes": {"ApproximateReceiveCount": str(receive_count),
                       "SentTimestamp": str(int(time.time() * 1000)),
                       "SenderId": "bench", "ApproximateFirstReceiveTimestamp":
                           str(int(time.time() * 1000))},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:onboarding",
        "awsRegion": REGION,
    }


def bench_backfill(args, lw):
    n = args.backfill_accounts
    licenses = 5
    log(f"  seeding {n} accounts x {licenses} licenses in moto + the emulator ...")
    # Three more members than the backfill: new accounts vended before and during it.
    world = World(lw, licenses, n + 3, LOGS / "world-backfill.log")
    log(f"  seeded in {world.seed_seconds:.1f} s")
    proxies = Proxies(world.moto_url, world.emulator_url)
    try:
        records = [sqs_record(json.dumps({"accountId": a["id"], "reason": "backfill",
                                          "backfill": True}))
                   for a in world.members()[:n]]
        r = run_backfill(args, world, proxies, records, world.members()[n:n + 3], {}, "backfill")
        r.update({"licenses": licenses, "seedSeconds": round(world.seed_seconds, 1)})
        return r
    finally:
        proxies.close()
        world.close()


def run_backfill(args, world, proxies, records, spare, selection, label, recheck_delay=0,
                 feed=None):
    """Feeds `records` (backfill messages) as SQS batches of 10 to `args.containers`
    account-lifecycle containers (with `selection` in their environment) under the emulator's
    rate limit, re-checks included; meanwhile the three `spare` accounts measure a new
    account's time to ACTIVE alone, in its own lane a quarter into the backfill, and behind the
    backfill on one shared queue. `feed` (a ChangeEvents): the runs change events put on the
    backfill queue join the backfill's records as they arrive. Returns the figures (calls
    counted from `proxies`)."""
    n = len(records)
    procs, servers = [], []
    try:
        rate = args.rate
        # The organization does not change during a backfill: the emulator may trust what it read
        # of it from moto (re-reading 1,000 accounts every second makes moto the bottleneck).
        world.control("POST", "/_emulator/config",
                      {"rateLimitPerSecond": rate, "orgCacheMs": args.org_cache_ms})
        sqs, queue_url = create_queue(world, f"{label}-onboarding")
        baseline_account, lane_account, shared_account = spare
        pending = collections.deque(records)
        lock = threading.Condition()
        state = {"busy": 0, "invocations": 0, "redelivered": 0, "dlq": 0, "requeued": 0,
                 "errors": [], "shared_id": None, "shared_done": None, "batch_seconds": []}
        # Each container's License Manager limiter gets its share of the emulator's rate.
        per_container = args.container_rate or max(1, rate // args.containers)
        extra = dict(selection, LICENSE_MANAGER_CALLS_PER_SECOND=str(per_container),
                     RECHECK_DELAY_SECONDS=str(recheck_delay))

        def drain_queue():
            """Messages the function itself put on the onboarding queue (re-checks)."""
            out = []
            resp = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"],
                                       WaitTimeSeconds=0, VisibilityTimeout=30)
            for m in resp.get("Messages", []):
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
                out.append(record_of(m))
            state["requeued"] += len(out)
            return out

        def worker(rt):
            while True:
                with lock:
                    while True:
                        batch = [pending.popleft() for _ in range(min(10, len(pending)))]
                        if batch:
                            state["busy"] += 1
                            break
                        if state["busy"] == 0:
                            batch = drain_queue()
                            if batch:
                                state["busy"] += 1
                                break
                            lock.notify_all()
                            return
                        lock.wait(0.2)
                try:
                    started = time.monotonic()
                    inv = rt.submit({"Records": batch}).wait(900)
                    state["batch_seconds"].append(time.monotonic() - started)
                    failed = set()
                    if inv.ok:
                        for item in (inv.json() or {}).get("batchItemFailures", []):
                            failed.add(item.get("itemIdentifier"))
                    else:
                        failed = {r["messageId"] for r in batch}
                except Exception as e:  # noqa: BLE001
                    state["errors"].append(repr(e))
                    failed = {r["messageId"] for r in batch}
                with lock:
                    state["invocations"] += 1
                    if any(r["messageId"] == state["shared_id"] and r["messageId"] not in failed
                           for r in batch):
                        state["shared_done"] = time.monotonic()
                    for r in batch:
                        if r["messageId"] in failed:
                            count = int(r["attributes"]["ApproximateReceiveCount"]) + 1
                            if count > 5:  # maxReceiveCount 5 (template): to the DLQ
                                state["dlq"] += 1
                            else:
                                state["redelivered"] += 1
                                r["attributes"]["ApproximateReceiveCount"] = str(count)
                                pending.append(r)
                    state["busy"] -= 1
                    lock.notify_all()

        for i in range(args.containers):
            rt = RuntimeApi()
            servers.append(rt)
            logf = open(LOGS / f"{label}-container-{i}.log", "w")
            procs.append(spawn([str(bootstrap_path("account-lifecycle"))],
                               env=lifecycle_env(rt, world, proxies, queue_url, extra),
                               stdout=logf, stderr=logf))
        # The new-accounts lane: account-lifecycle on the onboarding queue, its own instance
        # (template: a separate event source mapping; backfill capped by BackfillConcurrency).
        lane = RuntimeApi()
        lane_log = open(LOGS / f"{label}-new-account-lane.log", "w")
        lane_proc = spawn([str(bootstrap_path("account-lifecycle"))],
                          env=lifecycle_env(lane, world, proxies, queue_url, selection),
                          stdout=lane_log, stderr=lane_log)
        procs.append(lane_proc)

        def time_to_active(account):
            """Seconds from a CreateManagedAccount event to an `entitled` report, the lane's
            re-checks given at once (a still-pending run is asked again every 0.5 s)."""
            t = time.monotonic()
            payload = create_event(account)
            for _ in range(600):
                inv = lane.submit(payload).wait(300)
                body = inv.json() if inv.ok else None
                if isinstance(body, dict) and body.get("outcome") == "entitled":
                    return round(time.monotonic() - t, 2)
                payload = {"accountId": account["id"], "reason": "recheck"}
                time.sleep(0.5)
            raise RuntimeError(f"new account {account['id']} not entitled in the lane")

        baseline = time_to_active(baseline_account)
        log(f"  a new account with no backfill running: ACTIVE in {baseline} s")
        newcomer = {}

        def vend_in_the_middle():
            """Once a quarter of the backfill is done: one account in its own lane, and one
            appended to the backfill's queue (what a single shared queue would do)."""
            while True:
                with lock:
                    if state["invocations"] * 10 >= n / 4 or state["busy"] == 0 and not pending:
                        record = sqs_record(json.dumps({"accountId": shared_account["id"],
                                                        "reason": "new-account"}))
                        state["shared_id"] = record["messageId"]
                        ahead = len(pending)
                        pending.append(record)
                        newcomer["queued_at"] = time.monotonic()
                        newcomer["recordsAhead"] = ahead
                        lock.notify_all()
                        break
                time.sleep(0.2)
            newcomer["ownLaneSeconds"] = time_to_active(lane_account)

        if recheck_delay:
            # Re-checks come due after the run: the backfill's first pass is what is timed.
            log(f"  re-checks delayed {recheck_delay} s (the template's default)")
        proxies.reset()
        t0 = time.monotonic()
        threads = [threading.Thread(target=worker, args=(rt,)) for rt in servers]
        threads.append(threading.Thread(target=vend_in_the_middle))
        feeding = threading.Event()

        def feeder():
            """The backfill queue's other messages: runs change events asked for."""
            while not feeding.is_set():
                got = feed.take_backfill(wait=1)
                if got:
                    with lock:
                        pending.extend(got)
                        lock.notify_all()

        feed_thread = threading.Thread(target=feeder) if feed else None
        if feed_thread:
            feed.backfill_logs += [LOGS / f"{label}-container-{i}.log"
                                   for i in range(args.containers)]
            feed_thread.start()
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            threads[0].join(30)
            if any(t.is_alive() for t in threads):
                with lock:
                    log(f"    {time.monotonic() - t0:5.0f} s: {state['invocations']} batches done, "
                        f"{len(pending)} records waiting, {state['redelivered']} redelivered")
        for t in threads:
            t.join()
        wall = time.monotonic() - t0
        if feed_thread:
            feeding.set()
            feed_thread.join()
            # Taken after the workers ended: the backfill lane's next batches.
            feed.leftover.extend(pending)
            pending.clear()
        # Before the lane's runtime API closes (its process then exits).
        hwm = max(vm_hwm_kib(p.pid) for p in procs) / 1024
        lane.close()
        lane_log.close()
        shared_seconds = (round(state["shared_done"] - newcomer["queued_at"], 2)
                          if state["shared_done"] else None)
        batches = sorted(state["batch_seconds"])
        new_account = {
            "baselineSeconds": baseline,
            "ownLaneSeconds": newcomer.get("ownLaneSeconds"),
            "sharedQueueSeconds": shared_seconds,
            "recordsAheadInSharedQueue": newcomer.get("recordsAhead"),
            "medianBatchSeconds": round(batches[len(batches) // 2], 2) if batches else None,
        }
        log(f"  a new account vended a quarter into the backfill: own lane ACTIVE in "
            f"{new_account['ownLaneSeconds']} s (no backfill: {baseline} s; median backfill "
            f"batch {new_account['medianBatchSeconds']} s); behind {new_account['recordsAheadInSharedQueue']} "
            f"records on one shared queue: {shared_seconds} s")
        if state["errors"]:
            raise RuntimeError(f"backfill: {len(state['errors'])} invocation(s) errored: "
                               f"{state['errors'][:3]}")
        calls = proxies.snapshot()
        ok = collections.Counter(c.op for c in calls if c.service == "emulator" and c.status < 300)
        throttled = sum(1 for c in calls if c.throttled)
        limiting, limiting_calls = ok.most_common(1)[0]
        bound_seconds = limiting_calls / rate
        done = n - state["dlq"]
        r = {
            "accounts": n,
            "containers": args.containers, "batchSize": 10,
            "rateLimitPerSecond": rate, "containerCallsPerSecond": per_container,
            "wallSeconds": round(wall, 1),
            "accountsPerSecond": round(done / wall, 2),
            "limitingOperation": limiting, "limitingCalls": limiting_calls,
            "boundSeconds": round(bound_seconds, 1),
            "boundAccountsPerSecond": round(n / bound_seconds, 2),
            "ratioToBound": round((done / wall) / (n / bound_seconds), 3),
            "calls": len(calls), "callsPerAccount": round(len(calls) / n, 1),
            "throttledCalls": throttled,
            "invocations": state["invocations"], "redeliveredRecords": state["redelivered"],
            "recheckMessages": state["requeued"], "deadLettered": state["dlq"],
            "peakRssMiB": round(hwm, 2),
            "okCallsByOperation": dict(ok),
            "newAccount": new_account,
        }
        log(f"  {done}/{n} accounts in {wall:.1f} s = {r['accountsPerSecond']} accounts/s; bound: "
            f"{limiting_calls} {limiting} calls / {rate} per s = {bound_seconds:.1f} s = "
            f"{r['boundAccountsPerSecond']} accounts/s; {r['ratioToBound']:.2f}x of the bound")
        log(f"  {len(calls)} calls ({r['callsPerAccount']}/account), {throttled} throttled, "
            f"{state['redelivered']} records redelivered, {state['dlq']} dead-lettered, "
            f"{state['requeued']} re-check messages; peak RSS {hwm:.1f} MiB")
        return r
    finally:
        for p in procs:
            stop(p)
        for rt in servers:
            rt.close()


# ---------------------------------------------------------------- change events (make scale)

# The emulator's log of License Manager change events (EventBridge envelopes, per bus).
CHANGE_EVENTS_PATH = "/_emulator/events"
# From the code, so the bench follows it: how soon the reconciler has a record to deliver
# again come back (changes::RETRY_AFTER_SECONDS).
_CHANGES = (ROOT / "shared" / "src" / "changes" / "mod.rs").read_text()
RETRY_AFTER_SECONDS = int(re.search(r"pub(?:\(crate\))? const RETRY_AFTER_SECONDS: i32 = (\d+);",
                                    _CHANGES).group(1))
RETRY_AFTER_MAX_SECONDS = int(re.search(r"pub(?:\(crate\))? const RETRY_AFTER_MAX_SECONDS: i32 = (\d+);",
                                        _CHANGES).group(1))
# OnboardingQueue's visibility timeout (template.yaml; BackfillQueue's is the same): a record an
# account-lifecycle batch answers as failed comes back after it.
ONBOARDING_VISIBILITY_SECONDS = int(re.search(
    r"\n  OnboardingQueue:.*?VisibilityTimeout: (\d+)",
    (ROOT / "template.yaml").read_text(), re.S).group(1))
# ChangeEventQueue's maxReceiveCount (template.yaml).
CHANGE_QUEUE_MAX_RECEIVES = int(re.search(
    r"ChangeEventQueue:.*?maxReceiveCount: (\d+)",
    (ROOT / "template.yaml").read_text(), re.S).group(1))


def retry_after(receives):
    """changes::retry_after: seconds before a record delivered `receives` times comes back."""
    return min(RETRY_AFTER_MAX_SECONDS, RETRY_AFTER_SECONDS * 2 ** max(0, receives - 1))


def rule_pattern(rule):
    """The EventPattern of one of template.yaml's top-level event rules, as {field: [values]}
    (the bench venv has no YAML parser; these patterns are flow lists of plain strings)."""
    text = (ROOT / "template.yaml").read_text()
    head = f"\n  {rule}:\n"
    if head not in text:
        raise RuntimeError(f"template.yaml: no resource {rule}")
    block = re.split(r"\n {0,2}\S", text.split(head, 1)[1], maxsplit=1)[0]
    pattern = block.split("EventPattern:", 1)[1].split("Targets:", 1)[0]
    fields = {m.group(1): [v.strip() for v in m.group(2).split(",")]
              for m in re.finditer(r"^\s+([\w-]+): \[(.*)\]$", pattern, re.M)}
    if not fields or "source" not in fields or any(
            v.startswith(("!", "{")) for values in fields.values() for v in values):
        raise RuntimeError(f"template.yaml: {rule}: not a pattern of plain values: {pattern!r}")
    return fields


def batching_window(function, event):
    """The MaximumBatchingWindowInSeconds of one of template.yaml's functions' SQS events."""
    text = (ROOT / "template.yaml").read_text()
    head = f"\n  {function}:\n"
    if head not in text:
        raise RuntimeError(f"template.yaml: no resource {function}")
    block = re.split(r"\n {0,2}\S", text.split(head, 1)[1], maxsplit=1)[0]
    found = re.search(rf"\n {{8}}{event}:\n(?: {{10,}}.*\n)*? {{12}}MaximumBatchingWindowInSeconds: (\d+)",
                      block)
    if not found:
        raise RuntimeError(f"template.yaml: {function}: no batching window for {event}")
    return int(found.group(1))


def async_retries(function):
    """The MaximumRetryAttempts of one of template.yaml's functions' EventInvokeConfig (how
    often Lambda retries a failed asynchronous invocation)."""
    text = (ROOT / "template.yaml").read_text()
    head = f"\n  {function}:\n"
    if head not in text:
        raise RuntimeError(f"template.yaml: no resource {function}")
    block = re.split(r"\n {0,2}\S", text.split(head, 1)[1], maxsplit=1)[0]
    found = re.search(r"\n {6}EventInvokeConfig:\n(?: {8,}.*\n)*? {8}MaximumRetryAttempts: (\d+)", block)
    if not found:
        raise RuntimeError(f"template.yaml: {function}: no EventInvokeConfig MaximumRetryAttempts")
    return int(found.group(1))


# How often Lambda retries the scheduled reconcile (template.yaml).
RECONCILER_ASYNC_RETRIES = async_retries("ReconcilerFunction")

# The onboarding queue's and the change-event queue's batching windows (template.yaml).
ONBOARDING_WINDOW_SECONDS = batching_window("AccountLifecycleFunction", "Onboarding")
CHANGE_WINDOW_SECONDS = batching_window("ReconcilerFunction", "ChangeEvents")


def pattern_matches(pattern, event):
    return all(event.get(field) in values for field, values in pattern.items())


class ChangeEvents:
    """The template's LicenseManagerChangesRule and what it drives, in the bench: the
    emulator's change events on the management account's bus, polled every 0.1 s; those the
    rule's pattern (read from template.yaml) takes wait as the rule's queue (ChangeEventQueue)
    would hold them, and two reconciler containers take them as its event source mapping
    delivers them (MaximumConcurrency 2, up to 100 records gathered for at most its batching
    window; RECONCILE_QUEUE_URL a FIFO queue as the template's); the runs they queue go to an
    onboarding queue worked by four account-lifecycle containers (the template's
    AccountLifecycleFunction: batches of up to 5 within its batching window, ReservedConcurrency
    5 of which the bench's new-account lane stands for one); both windows are read from
    template.yaml. Every grant's status changes are timed as
    the poll sees them."""

    def __init__(self, world, proxies, selection, label, recheck_delay):
        self.world = world
        self.proxies, self.selection, self.label = proxies, selection, label
        self.recheck_delay = recheck_delay
        # The backfill lane's containers' logs, read for the event runs they did.
        self.backfill_logs = []
        self.leftover = []
        self.pattern = rule_pattern("LicenseManagerChangesRule")
        self.mgmt = world.seeded["managementAccount"]
        self.sqs, self.onboarding_url = create_queue(world, f"{label}-events-onboarding")
        _, self.backfill_url = create_queue(world, f"{label}-events-backfill")
        self.coalesce_url = self.sqs.create_queue(
            QueueName=f"{label}-reconcile.fifo",
            Attributes={"FifoQueue": "true", "DelaySeconds": "300"})["QueueUrl"]
        _, self.change_url = create_queue(world, f"{label}-change-events")
        self.change_arn = self.sqs.get_queue_attributes(
            QueueUrl=self.change_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.after = 0
        self.lock = threading.Lock()
        self.timeline = collections.defaultdict(list)  # grant ARN -> [(t, status)]
        # The completion path's legs (figures' `completionPath`): grant ARN -> the reconciler
        # invocations its events went to [(submitted, picked up, answered)], and account ->
        # the onboarding lane's runs of it [(received from the queue, picked up, answered)];
        # monotonic seconds, as the timeline's.
        self.triaged = collections.defaultdict(list)
        self.onboarded = collections.defaultdict(list)
        self.stats = collections.Counter()
        self.runs = collections.Counter()  # account-lifecycle runs on the onboarding queue, by reason
        self.skips = collections.Counter()  # why an event's account was not run
        self.run_reasons = collections.Counter()  # why the reconciler queued an account
        self.errors = []
        self.stopping = threading.Event()
        self.inbox = queue.Queue()
        self.procs, self.servers, self.logs = [], [], []
        for i in range(2):
            rt = RuntimeApi()
            env = base_env(rt.address, proxies.env())
            env.update(selection)
            env.update({"ONBOARDING_QUEUE_URL": self.onboarding_url,
                        "BACKFILL_QUEUE_URL": self.backfill_url,
                        "RECONCILE_QUEUE_URL": self.coalesce_url,
                        "CHANGE_EVENT_QUEUE_URL": self.change_url,
                        "SELF_ACCOUNT_ID": self.mgmt})
            self._spawn("reconciler", rt, env, f"{label}-events-reconciler-{i}.log")
        self.reconciler_logs = [LOGS / f"{label}-events-reconciler-{i}.log" for i in range(2)]
        # The onboarding queue's instances: the template's ReservedConcurrency (default 5),
        # less the one the bench's new-account lane stands for.
        self.onboarding_logs = []
        onboarding_rts = []
        for i in range(ONBOARDING_INSTANCES - 1):
            rt = RuntimeApi()
            name = f"{label}-events-onboarding-{i}.log"
            self._spawn("account-lifecycle", rt,
                        lifecycle_env(rt, world, proxies, self.onboarding_url,
                                      dict(selection, RECHECK_DELAY_SECONDS=str(recheck_delay))),
                        name)
            self.onboarding_logs.append(LOGS / name)
            onboarding_rts.append(rt)
        self.threads = [threading.Thread(target=self._poll)]
        self.threads += [threading.Thread(target=self._deliver, args=(rt,))
                         for rt in self.servers[:2]]
        self.threads += [threading.Thread(target=self._onboard, args=(rt,))
                         for rt in onboarding_rts]
        for t in self.threads:
            t.start()

    def _spawn(self, function, rt, env, log_name):
        logf = open(LOGS / log_name, "w")
        self.logs.append(logf)
        self.servers.append(rt)
        self.procs.append(spawn([str(bootstrap_path(function))], env=env, stdout=logf,
                                stderr=logf))

    def _poll(self):
        while not self.stopping.is_set():
            try:
                got = self.world.control(
                    "GET", f"{CHANGE_EVENTS_PATH}?after={self.after}&account={self.mgmt}")
            except Exception as e:  # noqa: BLE001
                self.errors.append(f"poll: {e!r}")
                self.stopping.wait(1)
                continue
            t = time.monotonic()
            for event in got["events"]:
                detail = event.get("detail") or {}
                if detail.get("grantArn") and detail.get("status"):
                    with self.lock:
                        self.timeline[detail["grantArn"]].append(
                            (t, detail["status"], detail.get("granteePrincipal", "")))
                self.stats[f"events:{event.get('detail-type')}"] += 1
                if pattern_matches(self.pattern, event):
                    self.stats["delivered"] += 1
                    self.inbox.put((event, 1))
            self.after = got["next"]
            self.stopping.wait(0.1)

    def _deliver(self, rt):
        """One reconciler container as the queue's event source mapping feeds it: up to 100
        records gathered for at most the template's batching window, one invocation,
        the partial batch response."""
        while not (self.stopping.is_set() and self.inbox.empty()):
            try:
                events = [self.inbox.get(timeout=0.2)]
            except queue.Empty:
                continue
            window_ends = time.monotonic() + CHANGE_WINDOW_SECONDS
            while len(events) < 100:
                left = window_ends - time.monotonic()
                if left <= 0:
                    break
                try:
                    events.append(self.inbox.get(timeout=left))
                except queue.Empty:
                    break
            # (event, deliveries so far, this one included)
            records = [dict(sqs_record(json.dumps(e), receive_count=n),
                            eventSourceARN=self.change_arn)
                       for e, n in events]
            try:
                submitted = time.monotonic()
                inv = rt.submit({"Records": records}).wait(600)
                legs = (submitted, (inv.delivered_ns or 0) / 1e9, (inv.done_ns or 0) / 1e9)
                with self.lock:
                    for e, _ in events:
                        arn = (e.get("detail") or {}).get("grantArn")
                        if arn:
                            self.triaged[arn].append(legs)
                answer = inv.json() if inv.ok else None
                if not isinstance(answer, dict) or "batchItemFailures" not in answer:
                    self.errors.append(f"reconciler: {(inv.body or b'')[:300]!r}")
                    continue
                failed = {f.get("itemIdentifier") for f in answer["batchItemFailures"]}
                with self.lock:
                    self.stats["reconcilerRuns"] += 1
                    self.stats["recordsToRetry"] += len(failed)
                # The reconciler sets a record to deliver again visible after retry_after(its
                # deliveries) seconds (ChangeMessageVisibility; here its call meets no such
                # message), so SQS delivers it again then; after the queue's maxReceiveCount
                # deliveries it is parked (counted, not delivered).
                for (e, n), r in zip(events, records):
                    if r["messageId"] not in failed:
                        continue
                    if n >= CHANGE_QUEUE_MAX_RECEIVES:
                        with self.lock:
                            self.stats["recordsParked"] += 1
                        continue
                    self.inbox_later([(e, n + 1)], retry_after(n))
            except Exception as e:  # noqa: BLE001
                self.errors.append(f"reconciler: {e!r}")
            finally:
                for _ in events:
                    self.inbox.task_done()

    def inbox_later(self, events, seconds):
        """Puts `events` back on the inbox in `seconds` (an SQS message made visible again);
        until then they count as work to do."""
        with self.lock:
            self.stats["waitingRetries"] += len(events)

        def put():
            for e in events:
                self.inbox.put(e)
            with self.lock:
                self.stats["waitingRetries"] -= len(events)
                self.stats["recordsDeliveredAgain"] += len(events)
        timer = threading.Timer(seconds, put)
        timer.daemon = True
        timer.start()

    def take_backfill(self, wait):
        """Messages on the backfill queue (runs the reconciler put there), as SQS records,
        deleted from the queue."""
        got = self.sqs.receive_message(QueueUrl=self.backfill_url, MaxNumberOfMessages=10,
                                       MessageAttributeNames=["All"],
                                       WaitTimeSeconds=wait).get("Messages", [])
        if got:
            self.sqs.delete_message_batch(QueueUrl=self.backfill_url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)])
            with self.lock:
                for m in got:
                    self.runs[json.loads(m["Body"]).get("reason", "?") + " (backfill)"] += 1
        return [record_of(m) for m in got]

    def backfill_lane(self, containers):
        """Once the backfill's first pass is done, its lane (`containers` account-lifecycle
        containers, as BackfillConcurrency) works the backfill queue's later messages."""
        for i in range(containers):
            rt = RuntimeApi()
            name = f"{self.label}-events-backfill-{i}.log"
            self._spawn("account-lifecycle", rt,
                        lifecycle_env(rt, self.world, self.proxies, self.onboarding_url,
                                      dict(self.selection,
                                           RECHECK_DELAY_SECONDS=str(self.recheck_delay))),
                        name)
            self.backfill_logs.append(LOGS / name)
            t = threading.Thread(target=self._backfill_worker, args=(rt,))
            self.threads.append(t)
            t.start()

    def _backfill_worker(self, rt):
        while not self.stopping.is_set():
            with self.lock:
                records, self.leftover = self.leftover[:10], self.leftover[10:]
            records = records or self.take_backfill(wait=1)
            if not records:
                continue
            self._run_batch(rt, records, "backfill lane")

    def _run_batch(self, rt, records, what):
        """One account-lifecycle invocation for `records`; a failure is kept in `errors`. The
        records it answers as failed come back after the queue's visibility timeout, as SQS
        delivers them again (counted; within the bench's window only if it is that long)."""
        failed, legs = set(), None
        try:
            inv = rt.submit({"Records": records}).wait(600)
            legs = ((inv.delivered_ns or 0) / 1e9, (inv.done_ns or 0) / 1e9)
            if not inv.ok:
                self.errors.append(f"{what}: {(inv.body or b'')[:300]!r}")
                failed = {r["messageId"] for r in records}
            else:
                failed = {f.get("itemIdentifier")
                          for f in (inv.json() or {}).get("batchItemFailures", [])}
        except Exception as e:  # noqa: BLE001
            self.errors.append(f"{what}: {e!r}")
            failed = {r["messageId"] for r in records}
        again = [r for r in records if r["messageId"] in failed]
        if again:
            with self.lock:
                self.stats["lifecycleRecordsFailed"] += len(again)

            def put():
                with self.lock:
                    self.leftover.extend(again)
            timer = threading.Timer(ONBOARDING_VISIBILITY_SECONDS, put)
            timer.daemon = True
            timer.start()
        return legs

    def _onboard(self, onboarding_rt):
        while not self.stopping.is_set():
            got = self.sqs.receive_message(QueueUrl=self.onboarding_url, MaxNumberOfMessages=5,
                                           MessageAttributeNames=["All"],
                                           WaitTimeSeconds=1, VisibilityTimeout=120)
            messages = got.get("Messages", [])
            if not messages:
                continue
            received = time.monotonic()
            # The template's batching window: up to 5 messages or its seconds.
            first = time.monotonic()
            while len(messages) < 5 and time.monotonic() - first < ONBOARDING_WINDOW_SECONDS:
                time.sleep(0.1)
                more = self.sqs.receive_message(
                    QueueUrl=self.onboarding_url, MessageAttributeNames=["All"], MaxNumberOfMessages=5 - len(messages),
                    WaitTimeSeconds=0, VisibilityTimeout=120).get("Messages", [])
                messages += more
            self.sqs.delete_message_batch(QueueUrl=self.onboarding_url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                for i, m in enumerate(messages)])
            with self.lock:
                for m in messages:
                    self.runs[json.loads(m["Body"]).get("reason", "?")] += 1
                self.stats["onboardingBatches"] += 1
            records = [record_of(m) for m in messages]
            legs = self._run_batch(onboarding_rt, records, "account-lifecycle")
            if legs:
                with self.lock:
                    for m in messages:
                        account = json.loads(m["Body"]).get("accountId")
                        self.onboarded[account].append((received, *legs))

    def idle(self):
        """Nothing waiting to be delivered or worked (the onboarding queue's visible messages
        included)."""
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=self.onboarding_url,
            AttributeNames=["ApproximateNumberOfMessages",
                            "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        backfill = self.sqs.get_queue_attributes(
            QueueUrl=self.backfill_url,
            AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
        return (self.inbox.unfinished_tasks == 0 and not self.leftover
                and self.stats["waitingRetries"] == 0
                and attrs["ApproximateNumberOfMessages"] == "0"
                and backfill["ApproximateNumberOfMessages"] == "0")

    def close(self):
        self.stopping.set()
        for t in self.threads:
            t.join(60)
        for p in self.procs:
            stop(p)
        for rt in self.servers:
            rt.close()
        for f in self.logs:
            f.close()

    def figures(self, accounts):
        """Counts and the times from a grant's workflow completing (its first PENDING_ACCEPT or
        DISABLED: the grant waits on ct-entitlements) to the next change (ct-entitlements'
        accept or activation) and to ACTIVE, over account-level grants."""
        reaction, to_active, never = [], [], 0
        with self.lock:
            timelines = {arn: list(t) for arn, t in self.timeline.items()}
            completion_legs = completion_path(timelines, self.triaged, self.onboarded)
        for arn, steps in timelines.items():
            if not steps or not steps[0][2].endswith(":root"):
                continue
            done = next((i for i, (_, st, _) in enumerate(steps)
                         if st in ("PENDING_ACCEPT", "DISABLED")), None)
            if done is None:
                continue
            t_done = steps[done][0]
            if done + 1 < len(steps):
                reaction.append(steps[done + 1][0] - t_done)
            active = next((t for t, st, _ in steps[done:] if st == "ACTIVE"), None)
            if active is None:
                never += 1
            else:
                to_active.append(active - t_done)
        coalesced = self.sqs.get_queue_attributes(
            QueueUrl=self.coalesce_url,
            AttributeNames=["ApproximateNumberOfMessages",
                            "ApproximateNumberOfMessagesDelayed"])["Attributes"]
        # The reconciler's reports (its log's reconcileReport lines, one per batch).
        for path in self.reconciler_logs:
            with open(path) as f:
                for line in f:
                    if '"reconcileReport"' not in line:
                        continue
                    try:
                        report = json.loads(line).get("report", {})
                    except ValueError:
                        continue
                    self.stats["accountsQueued"] += report.get("enqueued", 0)
                    self.stats["forwarded"] += len(report.get("forwarded", []))
                    if report.get("coalesced"):
                        self.stats["coalesceRequests"] += 1
                    for op, count in report.get("apiCalls", {}).items():
                        self.stats[f"calls:{op}"] += count
                    for why in report.get("skipped", {}).values():
                        self.skips[why.split(";")[0][:60]] += 1
                    for why in report.get("needs", {}).values():
                        self.run_reasons[re.sub(r"arn:\S+ ?", "", why)[:60]] += 1
        # Runs events asked for: new runs (`grant-change`), and chains' re-checks brought
        # forward (`early-recheck`: the chain's own next step, sent now instead of after the
        # re-check delay; the delayed one it replaces ends superseded).
        event_runs = (self.runs.get("grant-change", 0)
                      + self.runs.get("grant-change (backfill)", 0))
        early_runs = (self.runs.get("early-recheck", 0)
                      + self.runs.get("early-recheck (backfill)", 0))
        # The account reports of those runs (the onboarding containers' logs, the backfill
        # lane's during and after the first pass): a run that wrote nothing found nothing to
        # do, the events' only waste. Superseded messages: every account-lifecycle log.
        reports, idle, early_idle, superseded = 0, 0, 0, 0
        for path in self.onboarding_logs + self.backfill_logs:
            with open(path) as f:
                for line in f:
                    if '"accountReport"' not in line:
                        continue
                    try:
                        report = json.loads(line).get("report", {})
                    except ValueError:
                        continue
                    trigger = report.get("trigger", "")
                    if report.get("chain") == "superseded":
                        superseded += 1
                    elif trigger == "onboard:grant-change":
                        reports += 1
                        idle += report.get("writeCalls", 0) == 0
                    elif trigger == "onboard:early-recheck":
                        early_idle += report.get("writeCalls", 0) == 0
        return {
            "rulePattern": self.pattern,
            "events": {k.split(":", 1)[1]: v for k, v in self.stats.items()
                       if k.startswith("events:")},
            "deliveredToReconciler": self.stats["delivered"],
            "reconcilerRuns": self.stats["reconcilerRuns"],
            "reconcilerCalls": {k.split(":", 1)[1]: v for k, v in self.stats.items()
                                if k.startswith("calls:")},
            "recordsToRetry": self.stats["recordsToRetry"],
            "accountLifecycleRunsByReason": dict(self.runs),
            "eventRuns": event_runs,
            "eventRunsPerAccount": round(event_runs / accounts, 4),
            "eventRunReports": reports,
            "recordsDeliveredAgain": self.stats["recordsDeliveredAgain"],
            # account-lifecycle records answered as failed (back after the visibility timeout).
            "lifecycleRecordsFailed": self.stats["lifecycleRecordsFailed"],
            "recordsParked": self.stats["recordsParked"],
            "eventRunsThatWroteNothing": idle,
            "eventRunsThatWroteNothingPerAccount": round(idle / accounts, 4),
            "earlyRechecks": early_runs,
            "earlyRechecksThatWroteNothing": early_idle,
            "rechecksBroughtForward": self.stats["forwarded"],
            "supersededMessages": superseded,
            # Runs that would not have happened without events: the new runs, and the
            # brought-forward re-checks that found nothing to do.
            "extraRuns": event_runs + early_idle,
            "extraRunsPerAccount": round((event_runs + early_idle) / accounts, 4),
            "notRun": dict(self.skips.most_common(6)),
            "runReasons": dict(self.run_reasons.most_common(8)),
            "coalesceRequests": self.stats["coalesceRequests"],
            "coalescedReconciles": sum(int(v) for v in coalesced.values()),
            "grantsTimed": len(to_active) + never,
            "completionToNextStepSeconds": timing(reaction),
            "completionToActiveSeconds": timing(to_active),
            "completedNeverActive": never,
            "completionPath": completion_legs,
            "errors": self.errors[:5],
        }


def completion_path(timelines, triaged, onboarded):
    """Where a completion's time goes on the event path, leg by leg (median / p90 / max
    seconds, over the completions that took that path): from the completion (the poller
    seeing it) to its event's batch being submitted (the poll and the change queue's batching
    window), to a reconciler container picking the batch up (all of them busy), then to the
    onboarding lane receiving a message for the account (the triage up to that account's
    message, and the queue), and from there to the next step (a container picking the run up,
    and the run up to its accept or activation); beside them, how long the whole batch took.
    Completions whose next step came another way (a run that was under way already, a
    re-check) are counted, not split."""
    legs = collections.defaultdict(list)
    other = 0
    for arn, steps in timelines.items():
        if not steps or not steps[0][2].endswith(":root"):
            continue
        done = next((i for i, (_, st, _) in enumerate(steps)
                     if st in ("PENDING_ACCEPT", "DISABLED")), None)
        if done is None or done + 1 >= len(steps):
            continue
        t_done, t_next = steps[done][0], steps[done + 1][0]
        account = steps[0][2].split(":")[4]
        batch = next((b for b in triaged.get(arn, []) if t_done <= b[0] <= t_next), None)
        run = batch and next((r for r in onboarded.get(account, [])
                              if batch[1] <= r[0] <= t_next), None)
        if not run:
            other += 1
            continue
        submitted, picked, answered = batch
        received, run_picked, _ = run
        legs["toBatchSubmitted"].append(submitted - t_done)
        legs["reconcilerBusy"].append(picked - submitted)
        legs["triageToRunReceived"].append(received - picked)
        legs["onboardingBusy"].append(run_picked - received)
        legs["runToNextStep"].append(t_next - run_picked)
        legs["total"].append(t_next - t_done)
        legs["wholeBatch"].append(answered - picked)
    return {"completions": len(legs["total"]), "otherPath": other,
            **{k: timing(v) for k, v in legs.items()}}


def timing(values):
    """Median, 90th percentile and maximum of `values` (seconds), or None."""
    if not values:
        return None
    ordered = sorted(values)
    return {"median": round(statistics.median(ordered), 2),
            "p90": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 2),
            "max": round(ordered[-1], 2), "n": len(ordered)}


def expected_grants(world, selection):
    """(license-account pairs the selection asks for, members): every member gets the
    PRODUCT_SKUS license, a member of an OU with an OU_LICENSE_RULES entry its licenses too."""
    rules = json.loads(selection["OU_LICENSE_RULES"])
    members = world.members()
    return sum(len(set(rules.get(a["ouId"], []) + [selection["PRODUCT_SKUS"]]))
               for a in members), len(members)


def entitled_pairs(world):
    """ACTIVE account-level grants as (license, account) pairs, and the grants still on their
    way (a workflow, a child not handed out yet), from the emulator's state."""
    state = world.control("GET", "/_emulator/state")
    active, moving = set(), len(state.get("pendingChildren", []))
    for g in state["grants"]:
        grantee = g.get("GranteePrincipalArn", "")
        if not grantee.endswith(":root"):
            continue
        if g.get("GrantStatus") == "ACTIVE":
            active.add((g["LicenseArn"], grantee))
        elif g.get("GrantStatus") in ("PENDING_WORKFLOW", "PENDING_ACCEPT"):
            moving += 1
    return len(active), moving


# ---------------------------------------------------------------- 6. organization scale

def scale_selection(world, ous):
    """Five licenses mixing the three modes over `ous` OUs (Scale-00...): 001 to the whole
    organization, 002 to the first fifth of the OUs (one OU grant each), 003-005 per account in
    the next three tenths, each far below 2,000 accounts per license at 10,000 accounts."""
    ou_ids = {o["name"]: o["id"] for o in world.seeded["ous"]}
    skus = [f"prod-bench-{i:03}" for i in range(1, 6)]
    rules = {}
    for i in range(ous):
        ou = ou_ids[f"Scale-{i:02}"]
        share = i / ous
        if share < 0.2:
            rules[ou] = [skus[0], skus[1]]
        elif share < 0.3:
            rules[ou] = [skus[0], skus[2]]
        elif share < 0.4:
            rules[ou] = [skus[0], skus[3]]
        elif share < 0.5:
            rules[ou] = [skus[0], skus[4]]
    return {
        "ALL_MARKETPLACE_LICENSES": "false",
        "PRODUCT_SKUS": skus[0],
        "OU_LICENSE_RULES": json.dumps(rules),
        "LICENSE_DISTRIBUTION": f"{skus[0]}=organization {skus[1]}=ou",
    }


def reconcile_once(world, proxies, selection, backfill_url, onboarding_url, log_name):
    """One reconciler process, one organization run: (report, seconds, calls by operation,
    peak RSS MiB)."""
    rt = RuntimeApi()
    logf = open(LOGS / log_name, "w")
    env = base_env(rt.address, proxies.env())
    env.update(selection)
    env.update({"ONBOARDING_QUEUE_URL": onboarding_url, "BACKFILL_QUEUE_URL": backfill_url,
                "SELF_ACCOUNT_ID": world.seeded["managementAccount"]})
    proc = spawn([str(bootstrap_path("reconciler"))], env=env, stdout=logf, stderr=logf)
    try:
        proxies.reset()
        t0 = time.monotonic()
        inv = rt.submit({}).wait(1800)
        retries = 0
        while (not inv.ok and b"retryable" in (inv.body or b"")
               and retries < RECONCILER_ASYNC_RETRIES):
            # A throttle the SDK's retries did not outlast: the schedule's asynchronous
            # invocation is retried by Lambda, as often as the template's EventInvokeConfig
            # allows (Lambda waits about 1 then 2 minutes; the bench, 2 s).
            retries += 1
            log(f"  reconciler failed, retryable: {(inv.body or b'')[:200]!r}; "
                f"invoked again ({retries} of {RECONCILER_ASYNC_RETRIES})")
            time.sleep(2)
            inv = rt.submit({}).wait(1800)
        seconds = time.monotonic() - t0
        if not inv.ok:
            raise RuntimeError(f"reconciler failed: {(inv.body or b'')[:500]!r}")
        calls = proxies.snapshot()
        by_op = dict(collections.Counter(f"{c.service}:{c.op}" for c in calls))
        return inv.json(), seconds, by_op, vm_hwm_kib(proc.pid) / 1024
    finally:
        stop(proc)
        rt.close()
        logf.close()


# The change-events run (make scale): License Manager's workflows take as long as the
# realistic profile's (tests/tests/common), re-checks the template's default delay, and every
# Grant Change names its grant, grantee and status and reaches the management account's bus
# (the kind readings of grantChangeDetail and changeEventsTo: with the harsh ones the rule
# receives nothing and the re-checks do the work, as in the run without events).
EVENTS_WORLD = {"pendingWorkflowMs": 1500, "activationMs": 1500, "changeEvents": True,
                "grantChangeDetail": "grantee", "changeEventsTo": "both"}
EVENTS_RECHECK_DELAY = 300
# The template's ReservedConcurrency default: the onboarding queue's instances.
ONBOARDING_INSTANCES = 5


def bench_scale(args, lw, events=False, timed=False):
    """One scale run. `events`: License Manager's change events on (EVENTS_WORLD), the runs
    they ask for worked as deployed. `timed` (without events): the same workflow timings and
    re-check delay with the events off, the baseline the events run's new-account time is
    compared with."""
    n, ous = args.scale_accounts, args.scale_ous
    label = "scale-events" if events else "scale-quiet" if timed else "scale"
    log(f"  seeding {n} accounts in {ous} OUs x 5 licenses in moto + the emulator ...")
    world = World(lw, 5, n + 3, LOGS / f"world-{label}.log", ous=ous)
    log(f"  seeded in {world.seed_seconds:.1f} s")
    proxies = Proxies(world.moto_url, world.emulator_url)
    change_events = None
    try:
        world.control("POST", "/_emulator/config",
                      {"rateLimitPerSecond": args.rate, "orgCacheMs": args.org_cache_ms})
        selection = scale_selection(world, ous)
        if not args.no_scale_chains:
            # As deployed: the template's ChainTable, for every function that keeps chains.
            selection["CHAIN_TABLE"] = create_chain_table(world, f"{label}-chains")
        sqs, backfill_url = create_queue(world, "scale-backfill")
        _, onboarding_url = create_queue(world, "scale-onboarding")
        spare = world.members()[n:n + 3]
        log("  first reconcile (organization scope) ...")
        first, first_s, first_ops, first_hwm = reconcile_once(
            world, proxies, selection, backfill_url, onboarding_url, f"{label}-reconcile-1.log")
        log(f"  {first['enqueued']} accounts queued in {first_s:.1f} s, "
            f"{sum(first_ops.values())} calls; parents: "
            + ", ".join(f"{p['principal'].rsplit('/', 1)[-1]} {p['step']}"
                        for p in first.get("parents", [])))
        # The reconciler's messages, less the spare accounts (vended later in this story).
        spare_ids = {a["id"] for a in spare}
        records = []
        while True:
            got = sqs.receive_message(QueueUrl=backfill_url, MaxNumberOfMessages=10,
                                      MessageAttributeNames=["All"],
                                      VisibilityTimeout=600).get("Messages", [])
            if not got:
                break
            sqs.delete_message_batch(QueueUrl=backfill_url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)])
            records += [record_of(m) for m in got
                        if json.loads(m["Body"]).get("accountId") not in spare_ids]
        converged = None
        if events:
            world.control("POST", "/_emulator/config", EVENTS_WORLD)
            change_events = ChangeEvents(world, proxies, selection, label, EVENTS_RECHECK_DELAY)
            log(f"  change events on: {EVENTS_WORLD}; rule pattern {change_events.pattern}")
        elif timed:
            world.control("POST", "/_emulator/config", dict(EVENTS_WORLD, changeEvents=False))
            log(f"  change events off, workflows timed: {dict(EVENTS_WORLD, changeEvents=False)}")
        log(f"  backfill of {len(records)} accounts ...")
        backfill = run_backfill(args, world, proxies, records, spare, selection, label,
                                EVENTS_RECHECK_DELAY if events or timed else 0,
                                feed=change_events)
        if change_events:
            change_events.backfill_lane(args.containers)
        if events:
            # The first pass is done; what is left waits on workflows, and on the events that
            # say they completed (each re-check is EVENTS_RECHECK_DELAY s away).
            want, members = expected_grants(world, selection)
            t0 = time.monotonic()
            while True:
                active, moving = entitled_pairs(world)
                waited = time.monotonic() - t0
                if active >= want and change_events.idle():
                    break
                if waited > EVENTS_RECHECK_DELAY - 30:
                    log(f"  NOT converged before the first re-check: {active}/{want}")
                    break
                log(f"    {waited:5.0f} s after the first pass: {active}/{want} grants ACTIVE, "
                    f"{moving} on their way")
                time.sleep(5)
            converged = {"secondsAfterFirstPass": round(time.monotonic() - t0, 1),
                         "activeGrants": active, "expectedGrants": want, "members": members,
                         "backfillPlusConvergenceSeconds":
                             round(backfill["wallSeconds"] + time.monotonic() - t0, 1)}
            change_events.close()
            figures = change_events.figures(members)
            change_events = None
            figures["converged"] = converged
            backfill["changeEvents"] = figures
            log(f"  converged {converged['secondsAfterFirstPass']} s after the first pass: "
                f"{active}/{want} ACTIVE; {figures['eventRuns']} account runs from events "
                f"({100 * figures['eventRunsPerAccount']:.2f} % of {members} accounts), "
                f"{figures['eventRunsThatWroteNothing']} of them wrote nothing "
                f"({100 * figures['eventRunsThatWroteNothingPerAccount']:.2f} %); "
                f"{figures['earlyRechecks']} re-checks brought forward "
                f"({figures['earlyRechecksThatWroteNothing']} wrote nothing), "
                f"{figures['supersededMessages']} superseded messages; extra runs "
                f"{figures['extraRuns']} ({100 * figures['extraRunsPerAccount']:.2f} %); "
                f"{figures['reconcilerRuns']} reconciler runs for "
                f"{figures['deliveredToReconciler']} events; completion -> ACTIVE "
                f"{figures['completionToActiveSeconds']}; completion -> next step "
                f"{figures['completionToNextStepSeconds']}; coalesced reconciles "
                f"{figures['coalescedReconciles']} for {figures['coalesceRequests']} requests")
            log(f"  completion path, leg by leg: {json.dumps(figures['completionPath'])}")
        log("  second reconcile (nothing changed) ...")
        second, second_s, second_ops, second_hwm = reconcile_once(
            world, proxies, selection, backfill_url, onboarding_url, f"{label}-reconcile-2.log")
        second_calls = sum(second_ops.values())
        licenses = 5
        # What a reconcile with nothing changed needs (docs/operations.md, Backfill):
        # DescribeOrganization, ListRoots, 2 calls per OU (accounts, child OUs; one page each
        # here), ListReceivedLicenses, and per license one ListDistributedGrants page per 100
        # grants (+ the organization's received grants for licenses with a parent grant).
        all_ous = len(world.seeded["ous"])
        r = {
            "accounts": n + len(world.seeded["accounts"]) - len(world.members()),
            "ous": all_ous, "licenses": licenses,
            "selection": selection, "seedSeconds": round(world.seed_seconds, 1),
            "firstReconcile": {"seconds": round(first_s, 1), "enqueued": first["enqueued"],
                               "calls": sum(first_ops.values()), "byOperation": first_ops,
                               "parents": first.get("parents", []),
                               "peakRssMiB": round(first_hwm, 2)},
            "backfill": backfill,
            "secondReconcile": {"seconds": round(second_s, 1), "enqueued": second["enqueued"],
                                "upToDate": second.get("upToDate"),
                                "needs": dict(list(second.get("needs", {}).items())[:10]),
                                "calls": second_calls, "byOperation": second_ops,
                                "assumeRole": second_ops.get("moto:AssumeRole", 0),
                                "peakRssMiB": round(second_hwm, 2)},
        }
        log(f"  second reconcile: {second['enqueued']} queued, {second.get('upToDate')} up to "
            f"date, {second_calls} calls in {second_s:.1f} s "
            f"({second_ops.get('moto:AssumeRole', 0)} AssumeRole); peak RSS {second_hwm:.1f} MiB")
        return r
    finally:
        if change_events is not None:
            change_events.close()
        proxies.close()
        world.close()


# ---------------------------------------------------------------- main

def machine():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"nproc": os.cpu_count(), "cpu": model, "kernel": platform.release(),
            "python": platform.python_version()}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--init-runs", type=int, default=20)
    p.add_argument("--licenses", type=int, nargs="+", default=[1, 5, 10, 25])
    p.add_argument("--delays", type=int, nargs="+", default=[0, 20, 100])
    p.add_argument("--repeats", type=int, default=3,
                   help="onboarding runs per (licenses, delay); the median is reported")
    p.add_argument("--backfill-accounts", type=int,
                   default=int(os.environ.get("BENCH_BACKFILL_ACCOUNTS", "1000")))
    p.add_argument("--rate", type=int, default=int(os.environ.get("BENCH_RATE", "25")),
                   help="emulator rateLimitPerSecond (per operation) during the backfill")
    p.add_argument("--containers", type=int, default=2,
                   help="account-lifecycle containers on the backfill queue (template: "
                        "BackfillConcurrency, 2)")
    p.add_argument("--container-rate", type=int, default=0,
                   help="LICENSE_MANAGER_CALLS_PER_SECOND per container during the backfill "
                        "(default: the emulator's rate / containers)")
    p.add_argument("--org-cache-ms", type=int, default=600_000,
                   help="emulator orgCacheMs during the backfill")
    p.add_argument("--scale-accounts", type=int,
                   default=int(os.environ.get("SCALE_ACCOUNTS", "10000")),
                   help="members of the organization-scale run (--only scale; make scale)")
    p.add_argument("--scale-ous", type=int, default=50)
    p.add_argument("--scale-runs", default="plain,events,quiet",
                   help="make scale: which runs (plain: events off, no workflow time; events: "
                        "change events on; quiet: events off, the events run's timings)")
    p.add_argument("--no-scale-chains", action="store_true",
                   help="make scale: no CHAIN_TABLE (the functions without the chains table, "
                        "as before it)")
    p.add_argument("--no-scale-events", action="store_true",
                   help="make scale: skip the second run with change events on")
    p.add_argument("--skip-build", action="store_true")
    p.add_argument("--only", nargs="+", default=["size", "init", "onboarding", "backfill"],
                   help="sections: size init onboarding backfill scale (scale: make scale)")
    args = p.parse_args()

    started = time.monotonic()
    LOGS.mkdir(parents=True, exist_ok=True)
    report = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": machine(), "command": "make bench",
              "scaledDown": []}
    try:
        report["commit"] = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT,
                                          capture_output=True, text=True).stdout.strip()
    except OSError:
        pass
    m = report["machine"]
    log(f"== make bench: {report['date']}, {m['nproc']} x {m['cpu']}, Linux {m['kernel']}")

    if not args.skip_build:
        log("== build (release bootstraps, as `make package`; local-world)")
        report["build"] = build(args)
        log(f"  release build {report['build']['releaseBuildSeconds']} s, local-world "
            f"{report['build']['localWorldBuildSeconds']} s")
    lw = str(ROOT / "target" / "debug" / "local-world")

    if "size" in args.only:
        log("== 5. bootstrap size (cargo lambda build --release --x86-64; goal <= 8 MiB)")
        sizes = {}
        for f in FUNCTIONS:
            size = bootstrap_path(f).stat().st_size / MIB
            sizes[f] = {"MiB": round(size, 2), "goalMiB": 8, "ratioToGoal": round(size / 8, 2)}
            log(f"  {f:21} {size:5.2f} MiB ({size / 8:.2f}x of the 8 MiB goal)")
        report["bootstrapSize"] = sizes

    if "init" in args.only:
        log(f"== 1-2. cold start to first event handled, {args.init_runs} runs each "
            f"(+1 discarded warm-up); peak RSS (VmHWM) of the same processes; "
            f"ratio = Python 3.11 + boto3 (awslambdaric) / Rust")
        report["init"] = bench_init(args)

    if "onboarding" in args.only:
        log("== 3. onboarding one new account (account-lifecycle, CreateManagedAccount), "
            "then the same account again (warm and cold container); latency proxy per call")
        report["onboarding"], peak_25 = bench_onboarding(args, lw)
        if peak_25 is not None:
            report["peakRssOnboarding25MiB"] = round(peak_25, 2)
            py = (report.get("init", {}).get("account-lifecycle", {}).get("python", {})
                  .get("peakRssMiB", {}).get("median"))
            report["peakRssOnboarding25RatioToPythonInit"] = round(py / peak_25, 2) if py else None
            ratio = f", {py / peak_25:.1f}x smaller than the Python peer at init ({py:.1f} MiB)" \
                if py else ""
            log(f"  peak RSS during the 25-license onboarding: {peak_25:.1f} MiB "
                f"(goal < 16 MiB){ratio}")

    if "backfill" in args.only:
        log(f"== 4. backfill: {args.backfill_accounts} accounts x 5 licenses through the queue "
            f"path (SQS batches of 10, {args.containers} containers, partial batch failures "
            f"redelivered), emulator rate limit {args.rate}/s per operation, "
            f"LICENSE_MANAGER_CALLS_PER_SECOND = its share per container")
        if args.backfill_accounts < 1000:
            report["scaledDown"].append(
                f"backfill: {args.backfill_accounts} accounts instead of 1,000 (time budget)")
            log(f"  SCALED DOWN: {args.backfill_accounts} accounts instead of 1,000")
        report["backfill"] = bench_backfill(args, lw)

    if "scale" in args.only:
        log(f"== 6. organization scale: {args.scale_accounts} accounts in {args.scale_ous} OUs, "
            f"5 licenses (organization, ou, account modes), emulator rate limit {args.rate}/s "
            f"per operation: first reconcile, backfill, second reconcile")
        if args.scale_accounts < 10000:
            report["scaledDown"].append(
                f"scale: {args.scale_accounts} accounts instead of 10,000 (time budget)")
            log(f"  SCALED DOWN: {args.scale_accounts} accounts instead of 10,000")
        if "plain" in args.scale_runs:
            report["scale"] = bench_scale(args, lw)
        if "events" in args.scale_runs and not args.no_scale_events:
            log("== 6b. the same with License Manager's change events on (workflows 1.5 s, "
                f"re-checks {EVENTS_RECHECK_DELAY} s): runs added by events, new-account time, "
                "workflow completion to ACTIVE")
            report["scaleEvents"] = bench_scale(args, lw, events=True)
        if "quiet" in args.scale_runs and not args.no_scale_events:
            log("== 6c. the baseline of 6b: the same workflow timings and re-checks, events off")
            report["scaleQuiet"] = bench_scale(args, lw, timed=True)

    report["benchSeconds"] = round(time.monotonic() - started, 1)
    OUT.mkdir(parents=True, exist_ok=True)
    name = "scale-report.json" if args.only == ["scale"] else "report.json"
    (OUT / name).write_text(json.dumps(report, indent=2) + "\n")
    log(f"== done in {report['benchSeconds']} s; wrote target/bench/{name}")


if __name__ == "__main__":
    try:
        main()
    finally:
        harness.stop_all()
