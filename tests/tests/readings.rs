//! The convergence matrix of the emulator's readings of what AWS leaves undocumented (issue 17
//! §1): small scenarios (2-3 accounts, one license) driven as Lambda would drive them (the
//! reconciler, account-lifecycle on a Control Tower event and on its queue), each under the
//! all-harsh defaults, under every switch set in turn to each of its other readings (against
//! the harsh default of the rest), and under the all-kind corner. Converged = within
//! `MAX_RUNS` handler runs every eligible account holds exactly one ACTIVE grant of the product,
//! and no account lost an ACTIVE entitlement it had (some scenarios say more, or, as (f) and (i),
//! something else: see `Run`'s flags). A cell's outcome: `settled` (converged, and
//! the engine knows it: nothing left on the onboarding queue), `converged` (the grants are
//! right but the engine is still re-checking someone when the runs are up) or `NO`.
//!
//! The observed table is compared with `EXPECTED_EXCEPTIONS` (every other cell: `settled`): any
//! change either way fails with the cell that changed. `fast_subset` (the two corners on seven
//! scenarios) runs with the suite; `full_matrix` is `#[ignore]`d (`make readings`, in CI).
#![allow(clippy::unwrap_used)]

mod common;

use common::{new_queue, Setup};
use local_world::clients;
use local_world::emulator::{LicenseSeed, Switches};
use local_world::seed::{self, AccountSpec, LicenseSpec, OrgSpec, OuSpec};
use local_world::world::WorldOptions;
use local_world::World;
use serde_json::{json, Value};
use shared::reconcile::{self, Scope};
use shared::{clients::Clients, config::Config, engine::Engine, error::Retry};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SKU: &str = "prod-readings";
/// (c)'s globally selected license (account mode), beside the OU rule's `SKU`.
const OTHER_SKU: &str = "prod-readings-other";
/// Handler runs a scenario may take, its scripted ones included.
const MAX_RUNS: usize = 8;
/// License Manager calls a cell's handlers may make (the set-up's included; the largest cell
/// makes ~60): a loop that keeps calling shows here even when the grants end right.
const MAX_CALLS: usize = 120;
/// (i) License Manager's grants per license (the emulator's `maxGrantsPerLicense` and the
/// reconciler's `grant_quota`): the members' grants, so that the joiner's would exceed it.
const QUOTA: usize = 2;
/// (h) The member role of examples/member-role-stackset.yaml, as in e2e_delegated.rs.
const MEMBER_ROLE_NAME: &str = "ct-entitlements-member";

/// A reading: its name in the matrix and the switches it sets (on top of the defaults).
struct Reading {
    name: &'static str,
    patch: fn() -> Value,
}

/// Every non-default reading of every switch, one at a time, against the harsh default of the
/// rest (the emulator's defaults are the harsher readings).
const SINGLE_READINGS: &[Reading] = &[
    Reading {
        name: "reissueDeletedChild=true",
        patch: || json!({"reissueDeletedChild": true}),
    },
    Reading {
        name: "childParentArn=parent",
        patch: || json!({"childParentArn": "parent"}),
    },
    Reading {
        name: "childParentArn=absent",
        patch: || json!({"childParentArn": "absent"}),
    },
    Reading {
        name: "accountGrantParentArn=license",
        patch: || json!({"accountGrantParentArn": "license"}),
    },
    Reading {
        name: "ouGrantsReachNestedOus=true",
        patch: || json!({"ouGrantsReachNestedOus": true}),
    },
    Reading {
        name: "granteeOverride=honoured",
        patch: || json!({"granteeOverride": "honoured"}),
    },
    Reading {
        name: "granteeOverride=rejected",
        patch: || json!({"granteeOverride": "rejected"}),
    },
    Reading {
        name: "pendingActivationAnswer=DISABLED",
        patch: || json!({"pendingActivationAnswer": "DISABLED"}),
    },
    Reading {
        name: "orgReadForDelegatedAdmin=allowed",
        patch: || json!({"orgReadForDelegatedAdmin": "allowed"}),
    },
    Reading {
        name: "childrenInDistributedGrants=false",
        patch: || json!({"childrenInDistributedGrants": false}),
    },
    Reading {
        name: "requireRecipientSlrs=false",
        patch: || json!({"requireRecipientSlrs": false}),
    },
];

/// The emulator's defaults: the harsher reading of every switch (docs/development.md, "The
/// local AWS world"), spelled out so that the matrix shows it whatever the defaults become.
const ALL_HARSH: Reading = Reading {
    name: "all-harsh",
    patch: || {
        json!({
            "reissueDeletedChild": false,
            "childParentArn": "license",
            "accountGrantParentArn": "other",
            "ouGrantsReachNestedOus": false,
            "granteeOverride": "ignored",
            "pendingActivationAnswer": "ACTIVE",
            "orgReadForDelegatedAdmin": "denied",
            "childrenInDistributedGrants": true,
            "requireRecipientSlrs": true,
        })
    },
};

/// The kinder reading of every switch: the one the engine was first built against.
const ALL_KIND: Reading = Reading {
    name: "all-kind",
    patch: || {
        json!({
            "reissueDeletedChild": true,
            "childParentArn": "parent",
            "accountGrantParentArn": "license",
            "ouGrantsReachNestedOus": true,
            "granteeOverride": "honoured",
            "pendingActivationAnswer": "DISABLED",
            "orgReadForDelegatedAdmin": "allowed",
            "childrenInDistributedGrants": false,
            "requireRecipientSlrs": false,
        })
    },
};

/// The cells whose outcome is not `settled`: (reading, scenario, outcome). When the engine or
/// the emulator changes a cell, update this list. Every scenario settles under every reading.
const EXPECTED_EXCEPTIONS: &[(&str, &str, &str)] = &[];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Scenario {
    /// (a) A new account in account mode, onboarded by account-lifecycle.
    AccountMode,
    /// (b) A new account joining under an organization grant.
    OrgJoiner,
    /// (c) A joiner in a nested OU under an OU grant.
    NestedOuJoiner,
    /// (d) A member whose child failed its workflow (no service-linked roles), then onboarded.
    FailedChild,
    /// (e) The switch from account to organization mode: members entitled by per-account grants,
    /// then the license distributed to the organization; each ends with one live grant, the
    /// child, ACTIVE, never without one on the way.
    Migration,
    /// (f) An operator deactivates the organization grant in bulk after the members were
    /// entitled, then an account joins: the deactivation is respected (no account holds the
    /// product ACTIVE at the end), and nothing loops.
    OperatorPause,
    /// (g) The way back, organization to account mode: members entitled by their account-level
    /// grants, then the license distributed per account again; each ends with one live grant,
    /// its own, ACTIVE, never without one on the way, and the organization grant is gone.
    SwitchBack,
    /// (h) As (b), the engine running in a member account registered as License Manager's
    /// delegated administrator (the licenses held and granted from there, the member role,
    /// Organizations read with management credentials as in e2e_delegated.rs): the joiner ends
    /// with one ACTIVE grant of the product, and the delegated administrator with none.
    DelegatedAdmin,
    /// (i) Account mode with the license at its grants-per-license quota (`QUOTA`: the members'
    /// grants): the joiner is not granted, its run fails permanently with an error naming the
    /// quota and the organization/OU alternative, nothing loops, no member loses its ACTIVE
    /// grant, and the reconciler's report warns about the license.
    QuotaApproach,
}

const SCENARIOS: [Scenario; 9] = [
    Scenario::SwitchBack,
    Scenario::AccountMode,
    Scenario::OrgJoiner,
    Scenario::NestedOuJoiner,
    Scenario::FailedChild,
    Scenario::Migration,
    Scenario::OperatorPause,
    Scenario::DelegatedAdmin,
    Scenario::QuotaApproach,
];

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::AccountMode => "a:account-mode-joiner",
            Scenario::OrgJoiner => "b:org-joiner",
            Scenario::NestedOuJoiner => "c:nested-ou-joiner",
            Scenario::FailedChild => "d:failed-child",
            Scenario::Migration => "e:account-to-organization",
            Scenario::OperatorPause => "f:operator-bulk-deactivation",
            Scenario::SwitchBack => "g:organization-to-account",
            Scenario::DelegatedAdmin => "h:delegated-administrator",
            Scenario::QuotaApproach => "i:quota-approach",
        }
    }
}

/// What one cell observed.
#[derive(Debug)]
struct Cell {
    /// `settled`, `converged` or `NO` (see the module's documentation).
    outcome: &'static str,
    /// The run after which the grants were first right (0: never).
    converged_at: usize,
    runs: usize,
    /// Emulator (License Manager) calls made by the handlers (the test's own reads excluded).
    calls: usize,
    /// Why not converged (the accounts' ACTIVE counts, losses).
    why: String,
    /// Messages left on the onboarding queue at the end.
    queued: usize,
    wall: Duration,
}

/// The scenarios' base switches: the default readings with the emulator's asynchronous
/// timings on (1 s workflows and activations on the emulator clock, which the test moves on
/// between runs), so that a pending activation exists for `pendingActivationAnswer` to answer.
fn switches(patch: &Value) -> Switches {
    let mut base = serde_json::to_value(Switches {
        pending_workflow_ms: 1_000,
        activation_ms: 1_000,
        ..Switches::default()
    })
    .unwrap();
    for (k, v) in patch.as_object().unwrap() {
        base[k] = v.clone();
    }
    serde_json::from_value(base).unwrap()
}

struct Run {
    s: Setup,
    engine: Engine,
    runs: usize,
    /// Emulator calls made by the test's own checks, subtracted from the total.
    own_calls: usize,
    /// (account) → it held an ACTIVE grant of the product at some check.
    had_active: BTreeMap<String, bool>,
    lost: Vec<String>,
    /// The last run was a queue pass (the next follow-up is the reconciler's).
    last_was_queue: bool,
    /// Converged also needs each account to hold exactly one live grant (a migration's end).
    one_live: bool,
    /// Converged means the operator's bulk deactivation held: no account holds the product
    /// ACTIVE (losses are the operator's doing).
    respect: bool,
    /// Converged also needs each account's one live grant to be its own, and no organization
    /// grant left (the way back).
    back: bool,
    /// The product's license, held by the grantor (the management account; (h) the delegated
    /// administrator).
    license: String,
    /// The grantor's License Manager client (the test's own reads of its grants).
    grantor: aws_sdk_licensemanager::Client,
    /// (h) The account the engine runs in: not eligible, and it must hold no grant of the
    /// product.
    admin: Option<String>,
    /// The reconciler's `grant_quota` (the default, 2000; (i) `QUOTA`).
    grant_quota: u32,
    /// (i) Converged means the quota held (see [`QuotaWatch`]).
    quota: Option<QuotaWatch>,
    /// The last reconciler pass's errors (its own, its organization/OU grants'): shown with a
    /// cell that did not converge.
    reconcile_errors: Vec<String>,
}

/// (i) What the joiner's runs and the reconciler's passes since its event showed.
struct QuotaWatch {
    /// The joiner's account id and name.
    joiner: String,
    joiner_name: String,
    /// The answer to the joiner's Control Tower event: the report, or the error and whether it
    /// is permanent.
    event: Option<Result<Value, (String, Retry)>>,
    /// The joiner's queued runs (the reconciler queues it again) that did not fail.
    queue_ok: usize,
    /// The warnings of the last reconciler pass since the event (`None`: no pass yet).
    warnings: Option<Vec<String>>,
}

impl Run {
    async fn tick(&self) {
        self.s
            .world
            .control()
            .advance_clock(Duration::from_secs(5))
            .await
            .unwrap();
    }

    async fn reconcile(&mut self) {
        self.tick().await;
        let mut config = common::reconcile_config(&self.s.queue_url, None);
        config.grant_quota = self.grant_quota;
        let report = reconcile::reconcile(&self.engine, &config, Scope::Organization, false).await;
        self.reconcile_errors = report
            .parents
            .iter()
            .filter_map(|p| p.error.clone())
            .chain(report.error.iter().map(|e| e.message.clone()))
            .collect();
        if let Some(q) = &mut self.quota {
            q.warnings = Some(report.warnings.clone());
        }
        self.runs += 1;
        self.observe().await;
    }

    async fn event(&mut self, account: &str, ou: &str) {
        self.tick().await;
        let mut event = self.s.create_event(account, ou);
        if self.admin.is_some() {
            // Forwarded from the management account's bus: the envelope's `account` stays
            // the management account (e2e_delegated.rs).
            event["account"] = json!(self.s.org.management_account);
        }
        let answer = account_lifecycle::handle(&self.engine, event).await;
        if let Some(q) = self.quota.as_mut().filter(|q| q.joiner == account) {
            q.event = Some(answer.map_err(|e| (e.to_string(), e.retry())));
        }
        self.runs += 1;
        self.observe().await;
    }

    /// One pass over the onboarding queue (what is on it now, as one SQS batch); `false` if it
    /// was empty (no run).
    async fn queue_pass(&mut self) -> bool {
        self.tick().await;
        let sqs = self.s.world.sqs();
        let out = sqs
            .receive_message()
            .queue_url(&self.s.queue_url)
            .max_number_of_messages(10)
            .visibility_timeout(0)
            .send()
            .await
            .unwrap();
        let messages = out.messages();
        if messages.is_empty() {
            return false;
        }
        let records: Vec<Value> = messages
            .iter()
            .map(|m| json!({"messageId": m.message_id(), "eventSource": "aws:sqs", "body": m.body()}))
            .collect();
        for m in messages {
            sqs.delete_message()
                .queue_url(&self.s.queue_url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
        let answer = account_lifecycle::handle(&self.engine, json!({ "Records": records })).await;
        if let Some(q) = &mut self.quota {
            let failed: Vec<&str> = answer
                .as_ref()
                .ok()
                .and_then(|a| a["batchItemFailures"].as_array())
                .into_iter()
                .flatten()
                .filter_map(|f| f["itemIdentifier"].as_str())
                .collect();
            for m in messages {
                let body: Value = serde_json::from_str(m.body().unwrap_or("{}")).unwrap();
                if common::account_of(&body) == q.joiner
                    && !failed.contains(&m.message_id().unwrap_or_default())
                {
                    q.queue_ok += 1;
                }
            }
        }
        self.runs += 1;
        self.observe().await;
        true
    }

    /// A follow-up run: the queue and the (scheduled) reconciler in turn; the reconciler when
    /// the queue is empty.
    async fn follow_up(&mut self) {
        if self.last_was_queue || !self.queue_pass().await {
            self.reconcile().await;
            self.last_was_queue = false;
        } else {
            self.last_was_queue = true;
        }
    }

    /// Messages still on the onboarding queue (left there).
    async fn queued(&self) -> usize {
        let out = self
            .s
            .world
            .sqs()
            .receive_message()
            .queue_url(&self.s.queue_url)
            .max_number_of_messages(10)
            .visibility_timeout(0)
            .send()
            .await
            .unwrap();
        out.messages().len()
    }

    /// Eligible account → its ACTIVE grants of the product (and the grants it holds at all).
    async fn active(&mut self) -> BTreeMap<String, (usize, Vec<String>)> {
        let before = self.s.world.control().calls().await.unwrap().len();
        let mut out = BTreeMap::new();
        for account in &self.s.org.accounts {
            if self.admin.as_ref() == Some(&account.id) {
                continue;
            }
            let grants = self.s.grants_in(&account.id).await;
            let mine: Vec<String> = grants
                .into_iter()
                .filter(|(l, _)| *l == self.license)
                .map(|(_, st)| st)
                .collect();
            let active = mine.iter().filter(|st| *st == "ACTIVE").count();
            out.insert(account.name.clone(), (active, mine));
        }
        let after = self.s.world.control().calls().await.unwrap().len();
        self.own_calls += after - before;
        out
    }

    /// Follow-up runs until the grants are right and nothing is queued (a scenario's set-up,
    /// before what it tests).
    async fn settle(&mut self, scenario: &str) {
        for _ in 0..MAX_RUNS {
            if self.converged().await.0 && self.queued().await == 0 {
                break;
            }
            self.follow_up().await;
        }
        let (ok, why) = self.converged().await;
        assert!(ok, "scenario {scenario}'s set-up: {why}");
    }

    /// Live organization/OU grants of the product.
    async fn live_parents(&mut self) -> usize {
        let before = self.s.world.control().calls().await.unwrap().len();
        let license = &self.license;
        let out = self.grantor.list_distributed_grants().send().await.unwrap();
        let n = out
            .grants()
            .iter()
            .filter(|g| {
                g.license_arn() == license
                    && !g.grantee_principal_arn().contains(":iam::")
                    && !matches!(g.grant_status().as_str(), "DELETED" | "REJECTED")
            })
            .count();
        let after = self.s.world.control().calls().await.unwrap().len();
        self.own_calls += after - before;
        n
    }

    /// The operator's bulk deactivation of the organization grant.
    async fn pause(&mut self) {
        let before = self.s.world.control().calls().await.unwrap().len();
        let license = &self.license;
        let lm = &self.grantor;
        let out = lm.list_distributed_grants().send().await.unwrap();
        let parent = out
            .grants()
            .iter()
            .find(|g| {
                g.license_arn() == license && g.grantee_principal_arn().contains(":organization/")
            })
            .unwrap()
            .clone();
        lm.create_grant_version()
            .client_token("operator-pause")
            .grant_arn(parent.grant_arn())
            .source_version(parent.version())
            .status(aws_sdk_licensemanager::types::GrantStatus::Disabled)
            .status_reason("paused by the licensing team")
            .send()
            .await
            .unwrap();
        let after = self.s.world.control().calls().await.unwrap().len();
        self.own_calls += after - before;
    }

    async fn observe(&mut self) {
        if self.respect {
            return;
        }
        for (account, (active, _)) in self.active().await {
            let had = self.had_active.entry(account.clone()).or_default();
            if *had && active == 0 {
                self.lost.push(format!("{account} after run {}", self.runs));
            }
            *had |= active > 0;
        }
    }

    async fn converged(&mut self) -> (bool, String) {
        let state = self.active().await;
        let live = |all: &Vec<String>| {
            all.iter()
                .filter(|st| *st != "DELETED" && *st != "REJECTED")
                .count()
        };
        let ours = if self.one_live || self.back {
            self.ours_live().await
        } else {
            Vec::new()
        };
        let parents = if self.back {
            self.live_parents().await
        } else {
            0
        };
        let ours_right = if self.back {
            ours.len() == self.s.org.accounts.len() && parents == 0
        } else {
            ours.is_empty()
        };
        let one_live = self.one_live || self.back;
        if self.respect {
            let ok = state.values().all(|(active, _)| *active == 0);
            let why = if ok {
                String::new()
            } else {
                format!("held {state:?}: the operator's deactivation was undone")
            };
            return (ok, why);
        }
        if let Some(q) = &self.quota {
            let why = self.quota_held(q, &state);
            return (why.is_empty(), why.join("; "));
        }
        // (h) The delegated administrator never grants to itself.
        let admin_holds = match &self.admin {
            Some(admin) => {
                let before = self.s.world.control().calls().await.unwrap().len();
                let held: Vec<(String, String)> = self.s.grants_in(admin).await;
                let after = self.s.world.control().calls().await.unwrap().len();
                self.own_calls += after - before;
                held
            }
            None => Vec::new(),
        };
        let ok = self.lost.is_empty()
            && ours_right
            && admin_holds.is_empty()
            && state
                .values()
                .all(|(active, all)| *active == 1 && (!one_live || live(all) == 1));
        let why = if ok {
            String::new()
        } else {
            format!(
                "held {state:?}; lost {:?}; accounts with a live grant of their own {ours:?}; live organization grants {parents}{}",
                self.lost,
                if admin_holds.is_empty() {
                    String::new()
                } else {
                    format!("; the delegated administrator holds {admin_holds:?}")
                }
            )
        };
        (ok, why)
    }

    /// (i) Why the quota did not hold (empty: it held): the joiner holds no grant of the
    /// product, its event's run failed permanently with an error naming the quota and the
    /// organization/OU alternative and none of its queued runs succeeded, every member still
    /// holds its one ACTIVE grant (none lost one), and a reconciler pass since the event warned
    /// about the license. (Bounded runs and calls, nothing queued: the matrix's own checks.)
    fn quota_held(
        &self,
        q: &QuotaWatch,
        state: &BTreeMap<String, (usize, Vec<String>)>,
    ) -> Vec<String> {
        let mut why = Vec::new();
        for (account, (active, all)) in state {
            if *account == q.joiner_name {
                if !all.is_empty() {
                    why.push(format!("the joiner holds {all:?}"));
                }
            } else if *active != 1 {
                why.push(format!("{account} holds {all:?}"));
            }
        }
        if !self.lost.is_empty() {
            why.push(format!("lost {:?}", self.lost));
        }
        match &q.event {
            None => why.push("the joiner's event did not run".into()),
            Some(Ok(report)) => why.push(format!(
                "the joiner's run did not fail: {}",
                report["outcome"]
            )),
            Some(Err((message, retry))) => {
                if *retry != Retry::Permanent {
                    why.push(format!("the joiner's run failed {retry:?}: {message}"));
                }
                if !(message.contains("L-55F04DE6") && message.contains("organization")) {
                    why.push(format!(
                        "the joiner's error does not name both the quota (L-55F04DE6) and the organization/OU alternative: {message}"
                    ));
                }
            }
        }
        if q.queue_ok > 0 {
            why.push(format!(
                "{} queued runs of the joiner did not fail",
                q.queue_ok
            ));
        }
        match &q.warnings {
            None => why.push("no reconciler pass since the joiner's event".into()),
            Some(w) if !w.iter().any(|w| w.contains(&self.license)) => {
                why.push(format!(
                    "the reconciler's warnings do not name the license: {w:?}"
                ));
            }
            Some(_) => {}
        }
        why
    }

    /// Accounts still holding a live per-account grant of ct-entitlements' (named after the
    /// account) for the product.
    async fn ours_live(&mut self) -> Vec<String> {
        let before = self.s.world.control().calls().await.unwrap().len();
        let license = &self.license;
        let mut out = Vec::new();
        for account in &self.s.org.accounts {
            if self.admin.as_ref() == Some(&account.id) {
                continue;
            }
            let member = self.s.world.client_for_account(&account.id).await.unwrap();
            let got = member.license_manager.list_received_grants().send().await;
            let name = format!("ct-entitlements-{}", account.id);
            let left = got.unwrap().grants().iter().any(|g| {
                g.license_arn() == license
                    && g.grant_name() == name
                    && !matches!(g.grant_status().as_str(), "DELETED" | "REJECTED")
            });
            if left {
                out.push(account.name.clone());
            }
        }
        let after = self.s.world.control().calls().await.unwrap().len();
        self.own_calls += after - before;
        out
    }
}

fn spec(members: Vec<AccountSpec>, scenario: Scenario) -> OrgSpec {
    let mut licenses = vec![LicenseSpec::new(SKU, "Readings Product")];
    if scenario == Scenario::NestedOuJoiner {
        licenses.push(LicenseSpec::new(OTHER_SKU, "Readings Other Product"));
    }
    let mut ous = vec![OuSpec {
        name: "Workloads".to_string(),
        accounts: members,
    }];
    if scenario == Scenario::DelegatedAdmin {
        // (h) The product is bought in the delegated administrator (seeded there below), an
        // enrolled member with its service-linked roles; the management account holds nothing.
        licenses.clear();
        ous.push(OuSpec {
            name: "Security".to_string(),
            accounts: vec![AccountSpec::new("license-admin").with_service_linked_roles()],
        });
    }
    OrgSpec {
        all_features: true,
        ous,
        licenses,
        enable_integration: true,
        org_wide_grants: Vec::new(),
    }
}

/// (h) "Deploys" the StackSet's member role into `account` (e2e_delegated.rs): its name, its
/// trust (the delegated administrator) and exactly the MEMBER_ROLE actions. moto enforces
/// neither; the engine assumes it by name (`EXECUTION_ROLE_NAME`).
async fn deploy_member_role(world: &World, account: &str, deployment: &str) {
    let trust = json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "AWS": format!("arn:aws:iam::{deployment}:root") },
            "Action": "sts:AssumeRole",
        }]
    });
    common::put_member_role(world, account, MEMBER_ROLE_NAME, &trust).await;
}

/// (h) The engine in the delegated administrator (`admin`: its credentials): License Manager
/// and STS as that account, the member role, `SELF_ACCOUNT_ID`; Organizations with management
/// credentials (moto answers its reads only there, e2e_delegated.rs), and the test's
/// onboarding queue (which account owns the queue plays no part here).
fn delegated_engine(
    s: &Setup,
    admin: &str,
    config: &aws_config::SdkConfig,
    env: &[(&str, &str)],
) -> Engine {
    let mut vars: HashMap<String, String> = HashMap::from([
        ("ALL_MARKETPLACE_LICENSES".into(), "true".into()),
        ("ONBOARDING_QUEUE_URL".into(), s.queue_url.clone()),
        ("ASSUME_ROLE_BACKOFF_MS".into(), "10".into()),
        ("RECHECK_DELAY_SECONDS".into(), "0".into()),
        ("EXECUTION_ROLE_NAME".into(), MEMBER_ROLE_NAME.into()),
        ("SELF_ACCOUNT_ID".into(), admin.into()),
    ]);
    for (k, v) in env {
        vars.insert(k.to_string(), v.to_string());
    }
    let engine_config = Config::from_lookup(|k| vars.get(k).cloned()).unwrap();
    Engine::new(
        engine_config,
        Clients {
            organizations: s.world.organizations(),
            sts: clients::sts_from(config, s.world.moto_url()),
            license_manager: clients::license_manager_from(config, &s.world.emulator_url()),
            sqs: s.world.sqs(),
            dynamodb: s.world.dynamodb(),
            members: Arc::new(common::LocalMembers::of(&s.world)),
        },
    )
}

async fn run_cell(reading: &Reading, scenario: Scenario) -> Option<Cell> {
    let started = Instant::now();
    let mut patch = (reading.patch)();
    if scenario == Scenario::QuotaApproach {
        patch["maxGrantsPerLicense"] = json!(QUOTA);
    }
    let world = World::start_or_skip_with(WorldOptions {
        switches: switches(&patch),
        pin_switches: true,
        ..WorldOptions::default()
    })
    .await?;
    let members = match scenario {
        Scenario::FailedChild => vec![
            AccountSpec::new("member").with_service_linked_roles(),
            AccountSpec::new("no-roles"),
        ],
        Scenario::Migration
        | Scenario::OperatorPause
        | Scenario::SwitchBack
        | Scenario::QuotaApproach => vec![
            AccountSpec::new("member").with_service_linked_roles(),
            AccountSpec::new("second").with_service_linked_roles(),
        ],
        _ => vec![AccountSpec::new("member").with_service_linked_roles()],
    };
    let org = seed::seed(&world, &spec(members, scenario)).await.unwrap();
    let (queue_url, _) = new_queue(&world, "onboarding").await;
    let workloads = org.ou("Workloads").unwrap().id.clone();
    // The joiner's OU: a nested one for (c).
    let joiner_ou = if scenario == Scenario::NestedOuJoiner {
        world
            .organizations()
            .create_organizational_unit()
            .parent_id(&workloads)
            .name("Team")
            .send()
            .await
            .unwrap()
            .organizational_unit()
            .unwrap()
            .id()
            .unwrap()
            .to_string()
    } else {
        workloads.clone()
    };
    let rules = format!(r#"{{"{workloads}": ["{SKU}"]}}"#);
    let organization = format!("{SKU}=organization");
    let ou = format!("{SKU}=ou");
    let env: Vec<(&str, &str)> = match scenario {
        // (e) starts in account mode; the switch comes below.
        Scenario::AccountMode | Scenario::Migration | Scenario::QuotaApproach => vec![],
        Scenario::OrgJoiner
        | Scenario::FailedChild
        | Scenario::OperatorPause
        | Scenario::SwitchBack
        | Scenario::DelegatedAdmin => {
            vec![("LICENSE_DISTRIBUTION", organization.as_str())]
        }
        Scenario::NestedOuJoiner => vec![
            // The product comes only from the OU's rule; the global list names another one.
            ("ALL_MARKETPLACE_LICENSES", ""),
            ("PRODUCT_SKUS", OTHER_SKU),
            ("OU_LICENSE_RULES", rules.as_str()),
            ("LICENSE_DISTRIBUTION", ou.as_str()),
        ],
    };
    let s = Setup {
        world,
        org,
        queue_url,
    };
    // (h) The delegated administrator: its own license, its credentials, the member role in
    // every other member.
    let admin = if scenario == Scenario::DelegatedAdmin {
        let id = s.org.accounts.iter().find(|a| a.name == "license-admin");
        let id = id.unwrap().id.clone();
        let config = s
            .world
            .assume_role(&id, "OrganizationAccountAccessRole")
            .await
            .unwrap();
        let shape = s
            .world
            .control()
            .seed_license(&LicenseSeed::marketplace(&id, SKU, "Readings Product"))
            .await
            .unwrap();
        let license = shape["LicenseArn"].as_str().unwrap().to_string();
        // Registered as License Manager's delegated administrator.
        s.world
            .control()
            .configure(json!({ "delegatedAdministrator": id }))
            .await
            .unwrap();
        for account in s.org.accounts.iter().filter(|a| a.id != id) {
            deploy_member_role(&s.world, &account.id, &id).await;
        }
        Some((id, config, license))
    } else {
        None
    };
    let (engine, grantor, license) = match &admin {
        Some((id, config, license)) => (
            delegated_engine(&s, id, config, &env),
            clients::license_manager_from(config, &s.world.emulator_url()),
            license.clone(),
        ),
        None => {
            let license = s.org.licenses.iter().find(|l| l.sku == SKU);
            let license = license.unwrap().arn.clone();
            (s.engine(&env), s.world.license_manager(), license)
        }
    };
    let mut run = Run {
        s,
        engine,
        runs: 0,
        own_calls: 0,
        had_active: BTreeMap::new(),
        lost: Vec::new(),
        last_was_queue: false,
        one_live: false,
        respect: false,
        back: false,
        license,
        grantor,
        admin: admin.as_ref().map(|(id, _, _)| id.clone()),
        grant_quota: if scenario == Scenario::QuotaApproach {
            QUOTA as u32
        } else {
            2000
        },
        quota: None,
        reconcile_errors: Vec::new(),
    };
    // Scripted: the reconciler's pass (parents created and bulk-activated, members queued) and
    // a follow-up; then the scenario's event.
    run.reconcile().await;
    if scenario == Scenario::FailedChild && switches(&patch).require_recipient_slrs {
        // The parent's workflow completes before anything onboards `no-roles`, so its child
        // fails for want of the service-linked roles (not a race with their creation).
        run.tick().await;
        let held = run.active().await;
        assert_eq!(
            held["no-roles"].1,
            vec!["FAILED_WORKFLOW".to_string()],
            "scenario d's set-up: {held:?}"
        );
    }
    run.follow_up().await;
    match scenario {
        Scenario::FailedChild => {
            let id = run.s.org.accounts.iter().find(|a| a.name == "no-roles");
            let id = id.unwrap().id.clone();
            run.event(&id, &workloads).await;
        }
        Scenario::Migration => {
            // Account mode until every member holds its own grant, ACTIVE.
            run.settle("e").await;
            // The switch: the same deployment with the license distributed to the organization
            // (the reconciler runs on the configuration change). Counted from here; each member
            // must end with one live grant.
            run.engine = run
                .s
                .engine(&[("LICENSE_DISTRIBUTION", organization.as_str())]);
            run.runs = 0;
            run.one_live = true;
            run.last_was_queue = true;
            run.reconcile().await;
        }
        Scenario::SwitchBack => {
            run.settle("g").await;
            // The same deployment with the license per account again; the reconciler runs.
            run.engine = run.s.engine(&[]);
            run.runs = 0;
            run.back = true;
            run.last_was_queue = true;
            run.reconcile().await;
        }
        Scenario::OperatorPause => {
            run.settle("f").await;
            run.pause().await;
            // From here the criterion is the operator's: nobody ACTIVE, nothing queued.
            run.runs = 0;
            run.respect = true;
            run.lost.clear();
            let joiner = seed::add_account(&run.s.world, &mut run.s.org, "joiner", &workloads)
                .await
                .unwrap();
            run.event(&joiner.id, &workloads).await;
        }
        Scenario::QuotaApproach => {
            // Every member holds its grant: the license is at its quota.
            run.settle("i").await;
            run.runs = 0;
            run.last_was_queue = true;
            let joiner = seed::add_account(&run.s.world, &mut run.s.org, "joiner", &workloads)
                .await
                .unwrap();
            run.quota = Some(QuotaWatch {
                joiner: joiner.id.clone(),
                joiner_name: joiner.name.clone(),
                event: None,
                queue_ok: 0,
                warnings: None,
            });
            run.event(&joiner.id, &workloads).await;
        }
        _ => {
            let joiner = seed::add_account(&run.s.world, &mut run.s.org, "joiner", &joiner_ou)
                .await
                .unwrap();
            if let Some(admin) = &run.admin {
                // The StackSet reaches the new account before Control Tower's event does.
                deploy_member_role(&run.s.world, &joiner.id, admin).await;
            }
            run.event(&joiner.id, &joiner_ou).await;
        }
    }
    // Then follow-up runs until the grants are right and nobody is queued, or the runs are up.
    let mut converged_at = 0;
    let (mut converged, mut why) = run.converged().await;
    let mut queued = run.queued().await;
    loop {
        if converged && converged_at == 0 {
            converged_at = run.runs;
        }
        if (converged && queued == 0) || run.runs >= MAX_RUNS {
            break;
        }
        run.follow_up().await;
        (converged, why) = run.converged().await;
        queued = run.queued().await;
    }
    if !converged && !run.reconcile_errors.is_empty() {
        why += &format!("; the reconciler's errors {:?}", run.reconcile_errors);
    }
    let total = run.s.world.control().calls().await.unwrap().len();
    Some(Cell {
        outcome: match (converged, queued) {
            (true, 0) => "settled",
            (true, _) => "converged",
            (false, _) => "NO",
        },
        converged_at,
        runs: run.runs,
        calls: total - run.own_calls,
        why,
        queued,
        wall: started.elapsed(),
    })
}

/// Runs the cells, prints the matrix and fails on any cell that differs from
/// `EXPECTED_EXCEPTIONS`.
async fn check(readings: &[&Reading], scenarios: &[Scenario], full: bool) {
    let started = Instant::now();
    let mut rows = Vec::new();
    // READINGS_ONLY=<text>: only the cells whose "reading scenario" contains it (debugging).
    let only = std::env::var("READINGS_ONLY").unwrap_or_default();
    for reading in readings {
        for scenario in scenarios {
            if !format!("{} {}", reading.name, scenario.name()).contains(&only) {
                continue;
            }
            let Some(cell) = run_cell(reading, *scenario).await else {
                return; // no local world here
            };
            rows.push((reading.name, scenario.name(), cell));
        }
    }
    let mut table = String::from(
        "reading | scenario | outcome | converged at run | runs | calls | queued | wall\n",
    );
    for (reading, scenario, cell) in &rows {
        table += &format!(
            "{reading} | {scenario} | {} | {} | {} | {} | {} | {:.1}s{}\n",
            cell.outcome,
            cell.converged_at,
            cell.runs,
            cell.calls,
            cell.queued,
            cell.wall.as_secs_f64(),
            if cell.why.is_empty() {
                String::new()
            } else {
                format!(" | {}", cell.why)
            }
        );
    }
    eprintln!(
        "readings matrix ({} cells, {:.1}s):\n{table}",
        rows.len(),
        started.elapsed().as_secs_f64()
    );
    let mut changed = Vec::new();
    for (reading, scenario, cell) in &rows {
        if cell.calls > MAX_CALLS {
            changed.push(format!(
                "({reading}, {scenario}): {} License Manager calls, over the bound {MAX_CALLS}",
                cell.calls
            ));
        }
        let expected = EXPECTED_EXCEPTIONS
            .iter()
            .find(|(r, s, _)| r == reading && s == scenario)
            .map_or("settled", |(_, _, outcome)| *outcome);
        if cell.outcome != expected {
            changed.push(format!(
                "({reading}, {scenario}): expected {expected}, observed {} {}; update \
                 EXPECTED_EXCEPTIONS in tests/tests/readings.rs{}",
                cell.outcome,
                cell.why,
                if cell.outcome == "settled" {
                    " (remove the cell) and consider moving the switch's default to its harsher \
                     reading (docs/development.md, issue 17)"
                } else {
                    " or fix the engine"
                }
            ));
        }
    }
    if full && only.is_empty() {
        // Every exception names a cell of the matrix.
        for (reading, scenario, _) in EXPECTED_EXCEPTIONS {
            assert!(
                rows.iter().any(|(r, s, _)| r == reading && s == scenario),
                "EXPECTED_EXCEPTIONS names ({reading}, {scenario}), not a cell of the matrix"
            );
        }
    }
    assert!(
        changed.is_empty(),
        "the matrix changed:\n{}",
        changed.join("\n")
    );
}

#[tokio::test]
async fn fast_subset() {
    check(
        &[&ALL_HARSH, &ALL_KIND],
        &[
            Scenario::OrgJoiner,
            Scenario::FailedChild,
            Scenario::Migration,
            Scenario::OperatorPause,
            Scenario::SwitchBack,
            Scenario::DelegatedAdmin,
            Scenario::QuotaApproach,
        ],
        false,
    )
    .await;
}

#[tokio::test]
#[ignore = "the whole matrix takes minutes: make readings"]
async fn full_matrix() {
    let mut readings: Vec<&Reading> = vec![&ALL_HARSH];
    readings.extend(SINGLE_READINGS.iter());
    readings.push(&ALL_KIND);
    check(&readings, &SCENARIOS, true).await;
}

// ---------------------------------------------------------------------------------------------
// Each switch does what its readings say, seen through the SDK (no moto: a seeded organization,
// accounts are 12-digit access key ids). The matrix above shows which readings the engine
// survives; these show the readings exist (several are inert in the matrix's scenarios).

mod direct {
    use aws_sdk_licensemanager::error::ProvideErrorMetadata;
    use aws_sdk_licensemanager::types::{
        ActivationOverrideBehavior, AllowedOperation, GrantStatus, Options,
        OrganizationConfiguration,
    };
    use aws_sdk_licensemanager::Client;
    use local_world::clients;
    use local_world::emulator::{
        self, ControlClient, EmulatorHandle, EmulatorOptions, LicenseSeed, OrgSeed, OuSeed,
        MEMBER_SLRS,
    };
    use serde_json::{json, Value};

    const MGMT: &str = "111111111111";
    const MEMBER: &str = "222222222222";
    const ORG: &str = "o-abcdef1234";

    struct Emu {
        emu: EmulatorHandle,
        control: ControlClient,
        license: String,
    }

    impl Emu {
        async fn start(patch: Value) -> Self {
            let emu = emulator::start(EmulatorOptions {
                org: Some(OrgSeed {
                    id: ORG.to_string(),
                    management_account: MGMT.to_string(),
                    feature_set: "ALL".to_string(),
                    accounts: vec![],
                    ous: vec![OuSeed {
                        id: "ou-ab12-11111111".to_string(),
                        name: "Workloads".to_string(),
                        accounts: vec![MEMBER.to_string()],
                    }],
                }),
                ..EmulatorOptions::default()
            })
            .await
            .unwrap();
            let control = emu.control();
            control.configure(patch).await.unwrap();
            let license = control
                .seed_license(&LicenseSeed::marketplace(MGMT, "prod-direct", "Direct"))
                .await
                .unwrap()["LicenseArn"]
                .as_str()
                .unwrap()
                .to_string();
            let e = Emu {
                emu,
                control,
                license,
            };
            e.lm(MGMT)
                .update_service_settings()
                .organization_configuration(
                    OrganizationConfiguration::builder()
                        .enable_integration(true)
                        .build(),
                )
                .send()
                .await
                .unwrap();
            e
        }

        fn lm(&self, account: &str) -> Client {
            clients::license_manager(&self.emu.url(), account)
        }

        async fn grant_to(&self, principal: &str) -> String {
            self.lm(MGMT)
                .create_grant()
                .client_token(principal)
                .grant_name("ct-entitlements")
                .license_arn(&self.license)
                .principals(principal)
                .home_region("us-east-1")
                .allowed_operations(AllowedOperation::CheckoutLicense)
                .send()
                .await
                .unwrap()
                .grant_arn()
                .unwrap()
                .to_string()
        }

        async fn grant(&self, account: &str, arn: &str) -> aws_sdk_licensemanager::types::Grant {
            let out = self.lm(account).get_grant().grant_arn(arn).send().await;
            out.unwrap().grant.unwrap()
        }

        /// `CreateGrantVersion` by `account` (ACTIVE or DISABLED, optionally a behavior): the
        /// answered status, or the error code.
        async fn version(
            &self,
            account: &str,
            arn: &str,
            status: GrantStatus,
            behavior: Option<ActivationOverrideBehavior>,
        ) -> Result<String, String> {
            let version = self.grant(account, arn).await.version;
            let token = format!("{account}-{version}");
            let mut request = self
                .lm(account)
                .create_grant_version()
                .client_token(token)
                .grant_arn(arn)
                .status(status)
                .source_version(version);
            if let Some(b) = behavior {
                request =
                    request.options(Options::builder().activation_override_behavior(b).build());
            }
            match request.send().await {
                Ok(out) => Ok(out.status.unwrap().as_str().to_string()),
                Err(e) => Err(e.code().unwrap_or("?").to_string()),
            }
        }

        /// The member's child of an organization grant (its only received grant).
        async fn child(&self) -> Option<aws_sdk_licensemanager::types::Grant> {
            let out = self.lm(MEMBER).list_received_grants().send().await.unwrap();
            out.grants()
                .iter()
                .find(|g| g.grant_status != GrantStatus::Deleted)
                .cloned()
        }
    }

    fn root(account: &str) -> String {
        format!("arn:aws:iam::{account}:root")
    }

    fn organization() -> String {
        format!("arn:aws:organizations::{MGMT}:organization/{ORG}")
    }

    #[tokio::test]
    async fn account_grant_parent_arn() {
        for (reading, is_license) in [("license", true), ("other", false)] {
            let e = Emu::start(json!({"accountGrantParentArn": reading})).await;
            let arn = e.grant_to(&root(MEMBER)).await;
            let parent = e.grant(MGMT, &arn).await.parent_arn;
            assert_eq!(parent == e.license, is_license, "{reading}: {parent}");
            assert!(!parent.is_empty(), "{reading}");
        }
    }

    #[tokio::test]
    async fn child_parent_arn() {
        for reading in ["parent", "license", "absent"] {
            let e = Emu::start(json!({"childParentArn": reading})).await;
            let parent = e.grant_to(&organization()).await;
            let child = e.child().await.expect("the member's child");
            let expected = match reading {
                "parent" => parent.clone(),
                "license" => e.license.clone(),
                _ => String::new(),
            };
            assert_eq!(child.parent_arn, expected, "{reading}");
        }
    }

    #[tokio::test]
    async fn grantee_override() {
        for (reading, expected) in [
            ("honoured", Ok("DISTRIBUTED_GRANTS_ONLY")),
            ("ignored", Ok("ALL_GRANTS_PERMITTED_BY_ISSUER")),
            ("rejected", Err("ValidationException")),
        ] {
            let e = Emu::start(json!({"granteeOverride": reading})).await;
            let arn = e.grant_to(&root(MEMBER)).await;
            let issuer = Some(ActivationOverrideBehavior::AllGrantsPermittedByIssuer);
            e.version(MGMT, &arn, GrantStatus::Active, issuer)
                .await
                .unwrap();
            e.version(MEMBER, &arn, GrantStatus::Disabled, None)
                .await
                .unwrap();
            let own = Some(ActivationOverrideBehavior::DistributedGrantsOnly);
            let answer = e.version(MEMBER, &arn, GrantStatus::Active, own).await;
            let applied = e.grant(MEMBER, &arn).await.options.and_then(|o| {
                o.activation_override_behavior
                    .map(|b| b.as_str().to_string())
            });
            match expected {
                Ok(behavior) => {
                    assert!(answer.is_ok(), "{reading}: {answer:?}");
                    assert_eq!(applied.as_deref(), Some(behavior), "{reading}");
                }
                Err(code) => assert_eq!(answer, Err(code.to_string()), "{reading}"),
            }
        }
        // Without a grantor's behavior every reading takes the grantee's.
        let e = Emu::start(json!({"granteeOverride": "rejected"})).await;
        let arn = e.grant_to(&root(MEMBER)).await;
        let own = Some(ActivationOverrideBehavior::DistributedGrantsOnly);
        let answer = e.version(MEMBER, &arn, GrantStatus::Active, own).await;
        assert_eq!(answer, Ok("ACTIVE".to_string()));
    }

    #[tokio::test]
    async fn pending_activation_answer() {
        for reading in ["DISABLED", "ACTIVE"] {
            let patch = json!({"pendingActivationAnswer": reading, "activationMs": 60_000});
            let e = Emu::start(patch).await;
            let arn = e.grant_to(&root(MEMBER)).await;
            let answer = e.version(MGMT, &arn, GrantStatus::Active, None).await;
            assert_eq!(answer, Ok(reading.to_string()));
            // The grant itself is still processing either way.
            let status = e.grant(MGMT, &arn).await.grant_status;
            assert_eq!(status, GrantStatus::Disabled, "{reading}");
        }
    }

    #[tokio::test]
    async fn org_read_for_delegated_admin() {
        for (reading, allowed) in [("denied", false), ("allowed", true)] {
            let e = Emu::start(json!({"orgReadForDelegatedAdmin": reading})).await;
            e.grant_to(&organization()).await;
            let out = e
                .lm(MEMBER)
                .list_received_grants_for_organization()
                .license_arn(&e.license)
                .send()
                .await;
            match out {
                Ok(_) => assert!(allowed, "{reading}"),
                Err(err) => {
                    assert!(!allowed, "{reading}: {err:?}");
                    assert_eq!(err.code(), Some("AccessDeniedException"));
                }
            }
            let management = e.lm(MGMT).list_received_grants_for_organization();
            let out = management.license_arn(&e.license).send().await;
            assert!(
                out.is_ok(),
                "{reading}: the management account always reads"
            );
        }
    }

    #[tokio::test]
    async fn reissue_deleted_child() {
        for reading in [true, false] {
            let e = Emu::start(json!({"reissueDeletedChild": reading})).await;
            e.control
                .set_service_linked_roles(MEMBER, &[])
                .await
                .unwrap();
            e.grant_to(&organization()).await;
            let failed = e.child().await.expect("the member's child");
            assert_eq!(failed.grant_status, GrantStatus::FailedWorkflow);
            let roles: Vec<&str> = MEMBER_SLRS.iter().map(|(s, _)| *s).collect();
            e.control
                .set_service_linked_roles(MEMBER, &roles)
                .await
                .unwrap();
            e.lm(MGMT)
                .delete_grant()
                .grant_arn(&failed.grant_arn)
                .version(&failed.version)
                .send()
                .await
                .unwrap();
            let again = e.child().await;
            assert_eq!(again.is_some(), reading, "{reading}: {again:?}");
            if let Some(child) = again {
                assert_ne!(child.grant_arn, failed.grant_arn);
            }
        }
    }

    #[tokio::test]
    async fn readings_are_refused_unless_known() {
        let e = Emu::start(json!({})).await;
        for patch in [
            json!({"childParentArn": "grandparent"}),
            json!({"granteeOverride": "honored"}),
            json!({"pendingActivationAnswer": "active"}),
            json!({"accountGrantParentArn": "none"}),
            json!({"orgReadForDelegatedAdmin": true}),
        ] {
            assert!(e.control.configure(patch.clone()).await.is_err(), "{patch}");
        }
        let defaults = e.control.switches().await.unwrap();
        // The defaults are the harsher readings.
        assert!(!defaults.reissue_deleted_child && !defaults.ou_grants_reach_nested_ous);
        assert_eq!(
            defaults.grantee_override,
            emulator::GranteeOverride::Ignored
        );
        assert_eq!(
            defaults.pending_activation_answer,
            emulator::PendingActivationAnswer::Active
        );
        assert_eq!(defaults.child_parent_arn, emulator::ChildParentArn::License);
        assert_eq!(
            defaults.account_grant_parent_arn,
            emulator::AccountGrantParentArn::Other
        );
    }
}
