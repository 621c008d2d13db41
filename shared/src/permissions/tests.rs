//! Least privilege, proven: each function's policy in template.yaml allows exactly the actions
//! its code calls with its own role (this module's tables), the code calls nothing that is not
//! in a table, and no table lists an operation the code never calls.
#![allow(clippy::unwrap_used)]

use super::{iam_action, FUNCTIONS, MEMBER_ROLE};
use serde_yaml::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn template() -> Value {
    serde_yaml::from_str(&std::fs::read_to_string(root().join("template.yaml")).unwrap()).unwrap()
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Sequence(items) => items.iter().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}

/// Binary name → (allowed actions, statements) of every function in the template.
fn function_policies() -> BTreeMap<String, (BTreeSet<String>, Vec<Value>)> {
    let t = template();
    let mut out = BTreeMap::new();
    let resources = t["Resources"].as_mapping().unwrap();
    for (name, resource) in resources {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let binary = resource["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .unwrap()
            .to_string();
        if !resource["Properties"]["Role"].is_null() {
            // A function sharing another's generated role must run the same binary.
            let role = text(&resource["Properties"]["Role"]);
            let owner = resources
                .iter()
                .find(|(n, _)| role.contains(&format!("{}Role.Arn", n.as_str().unwrap())))
                .unwrap_or_else(|| panic!("{name:?}: its Role is no function's role: {role}"));
            assert_eq!(
                owner.1["Metadata"]["BuildProperties"]["Binary"].as_str(),
                Some(binary.as_str()),
                "{name:?} shares the role of another binary"
            );
            assert!(resource["Properties"]["Policies"].is_null());
            continue;
        }
        let mut actions = BTreeSet::new();
        let mut statements = Vec::new();
        for policy in resource["Properties"]["Policies"]
            .as_sequence()
            .cloned()
            .unwrap_or_default()
        {
            // `!If [cond, policy, !Ref AWS::NoValue]` counts as its policy (as a statement does).
            let policy = match policy {
                Value::Tagged(t) if t.tag == "If" => t.value[1].clone(),
                other => other,
            };
            for st in statements_of(&policy) {
                assert_eq!(
                    st["Effect"].as_str(),
                    Some("Allow"),
                    "{binary}: only Allow statements"
                );
                actions.extend(strings(&st["Action"]));
                statements.push(st);
            }
        }
        out.insert(binary, (actions, statements));
    }
    out
}

#[test]
fn each_policy_allows_exactly_what_its_code_calls() {
    let policies = function_policies();
    let tabled: BTreeSet<&str> = FUNCTIONS.iter().map(|(b, _)| *b).collect();
    for binary in policies.keys() {
        assert!(
            tabled.contains(binary.as_str()),
            "{binary} is in the template but has no permissions table"
        );
    }
    for (binary, operations) in FUNCTIONS {
        let (allowed, _) = policies
            .get(*binary)
            .unwrap_or_else(|| panic!("{binary} is not in template.yaml"));
        let needed: BTreeSet<String> = operations
            .iter()
            .map(|op| iam_action(op).to_string())
            .collect();
        assert_eq!(
            allowed, &needed,
            "{binary}: template policy vs shared::permissions"
        );
    }
}

#[test]
fn no_wildcard_actions_and_assume_role_is_scoped_to_the_role_name() {
    for (binary, (allowed, statements)) in function_policies() {
        assert!(
            allowed.iter().all(|a| !a.contains('*')),
            "{binary}: wildcard action in {allowed:?}"
        );
        for st in statements {
            if strings(&st["Action"]).iter().any(|a| a == "sts:AssumeRole") {
                let resource = serde_yaml::to_string(&st["Resource"]).unwrap();
                assert!(
                    resource.contains("role/${ExecutionRoleName}"),
                    "{binary}: AssumeRole on {resource}"
                );
            }
        }
    }
}

/// Rust sources that record AWS calls: the library's, and the functions' own adapters, with
/// the files of directory modules (`shared/src/aws/`, …); not this file, whose scanner names
/// `calls.record(` itself.
fn sources() -> Vec<std::path::PathBuf> {
    let mut dirs = vec![root().join("shared/src")];
    for function in std::fs::read_dir(root().join("functions")).unwrap() {
        dirs.push(function.unwrap().path().join("src"));
    }
    let mut files = Vec::new();
    while let Some(dir) = dirs.pop() {
        if !dir.is_dir() {
            continue;
        }
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|x| x == "rs") && !path.ends_with(file!()) {
                files.push(path);
            }
        }
    }
    files
}

/// Operations recorded in the sources, by the side named at the call site:
/// `Side::Own`, `Side::Member`, or a `side` variable (the caller chooses).
fn recorded() -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for path in sources() {
        let text = std::fs::read_to_string(path).unwrap();
        for chunk in text.split("calls.record(").skip(1) {
            let (who, rest) = chunk.split_once(',').unwrap();
            let op = rest
                .trim_start()
                .trim_start_matches('"')
                .split('"')
                .next()
                .unwrap();
            // `crate::report::Side::Member` is `Side::Member`.
            let who = who.trim();
            let who = who.find("Side::").map_or(who, |i| &who[i..]);
            out.entry(who.to_string())
                .or_default()
                .insert(op.to_string());
        }
    }
    out
}

#[test]
fn code_calls_nothing_outside_the_tables_and_the_tables_hold_nothing_stale() {
    let recorded = recorded();
    let get = |k: &str| recorded.get(k).cloned().unwrap_or_default();
    let (own, member, either) = (get("Side::Own"), get("Side::Member"), get("side"));
    assert_eq!(
        recorded.len(),
        3,
        "call sites name Side::Own, Side::Member or side: {:?}",
        recorded.keys()
    );
    assert!(own.len() >= 15, "the scan found the code's calls: {own:?}");
    let tabled_own: BTreeSet<String> = FUNCTIONS
        .iter()
        .flat_map(|(_, ops)| ops.iter().map(|s| s.to_string()))
        .collect();
    let tabled_member: BTreeSet<String> = MEMBER_ROLE.iter().map(|s| s.to_string()).collect();
    assert!(
        own.is_subset(&tabled_own),
        "called with a function role but in no table: {:?}",
        own.difference(&tabled_own).collect::<Vec<_>>()
    );
    assert!(
        member.is_subset(&tabled_member),
        "called in member accounts but not in MEMBER_ROLE: {:?}",
        member.difference(&tabled_member).collect::<Vec<_>>()
    );
    let either_tabled: BTreeSet<String> = tabled_own.union(&tabled_member).cloned().collect();
    assert!(either.is_subset(&either_tabled), "{either:?}");
    let callable_own: BTreeSet<String> = own.union(&either).cloned().collect();
    let callable_member: BTreeSet<String> = member.union(&either).cloned().collect();
    assert!(
        tabled_own.is_subset(&callable_own),
        "stale own-role entries: {:?}",
        tabled_own.difference(&callable_own).collect::<Vec<_>>()
    );
    assert!(
        tabled_member.is_subset(&callable_member),
        "stale member-role entries: {:?}",
        tabled_member
            .difference(&callable_member)
            .collect::<Vec<_>>()
    );
}

fn example(name: &str) -> Value {
    let path = root().join("examples").join(name);
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A YAML value as text, intrinsic functions (`!Sub …`) included, for substring checks.
fn text(v: &Value) -> String {
    serde_yaml::to_string(v).unwrap()
}

/// The only resource of `kind` in a template.
fn only_resource<'a>(t: &'a Value, kind: &str) -> &'a Value {
    let found: Vec<&Value> = t["Resources"]
        .as_mapping()
        .unwrap()
        .values()
        .filter(|r| r["Type"].as_str() == Some(kind))
        .collect();
    assert_eq!(found.len(), 1, "exactly one {kind}");
    found[0]
}

#[test]
fn member_role_stackset_allows_exactly_member_role_and_trusts_only_the_function_roles() {
    let t = example("member-role-stackset.yaml");
    let role = only_resource(&t, "AWS::IAM::Role");
    let mut allowed = BTreeSet::new();
    for policy in role["Properties"]["Policies"].as_sequence().unwrap() {
        for st in policy["PolicyDocument"]["Statement"].as_sequence().unwrap() {
            assert_eq!(
                st["Effect"].as_str(),
                Some("Allow"),
                "only Allow statements"
            );
            assert!(st.get("NotAction").is_none() && st.get("NotResource").is_none());
            allowed.extend(strings(&st["Action"]));
            if strings(&st["Action"])
                .iter()
                .any(|a| a == "iam:CreateServiceLinkedRole")
            {
                let scoped = text(&st["Resource"]);
                assert!(
                    !scoped.contains("role/*") && scoped.contains("aws-service-role/"),
                    "CreateServiceLinkedRole is scoped to the SLR paths: {scoped}"
                );
                let names = strings(&st["Condition"]["StringEquals"]["iam:AWSServiceName"]);
                assert_eq!(names.len(), 3, "service names: {names:?}");
            }
        }
    }
    assert!(
        role["Properties"]["ManagedPolicyArns"].is_null(),
        "no managed policies on the member role"
    );
    assert!(
        allowed.iter().all(|a| !a.contains('*')),
        "wildcard action in {allowed:?}"
    );
    let needed: BTreeSet<String> = MEMBER_ROLE
        .iter()
        .map(|op| iam_action(op).to_string())
        .collect();
    assert_eq!(
        allowed, needed,
        "examples/member-role-stackset.yaml vs super::MEMBER_ROLE"
    );

    // Trust: one statement, the deployment account, narrowed to the exact function role ARNs
    // (a parameter: the stack's MemberRoleTrustedRoleArns output), never a path or a pattern.
    let trust = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        .as_sequence()
        .unwrap();
    assert_eq!(trust.len(), 1, "{trust:?}");
    let st = &trust[0];
    assert_eq!(st["Effect"].as_str(), Some("Allow"));
    assert_eq!(strings(&st["Action"]), vec!["sts:AssumeRole".to_string()]);
    let principal = text(&st["Principal"]["AWS"]);
    assert!(
        principal.contains("iam::${DeploymentAccountId}:root"),
        "principal: {principal}"
    );
    let conditions = st["Condition"].as_mapping().unwrap();
    assert_eq!(
        conditions.len(),
        1,
        "one condition operator: {conditions:?}"
    );
    assert_eq!(
        text(&st["Condition"]["ArnEquals"]["aws:PrincipalArn"]).trim(),
        "!Ref FunctionRoleArns",
        "the member role trusts exactly the function roles"
    );
    let arns = &t["Parameters"]["FunctionRoleArns"];
    assert_eq!(arns["Type"].as_str(), Some("CommaDelimitedList"));
    assert!(arns["Default"].is_null(), "FunctionRoleArns has no default");
    // The stack names those roles: exactly the roles of the functions that assume it.
    let tpl = template();
    let output = text(&tpl["Outputs"]["MemberRoleTrustedRoleArns"]["Value"]);
    let mut assuming = BTreeSet::new();
    for (name, resource) in tpl["Resources"].as_mapping().unwrap() {
        let policies = text(&resource["Properties"]["Policies"]);
        if resource["Type"].as_str() == Some("AWS::Serverless::Function")
            && policies.contains("sts:AssumeRole")
        {
            assuming.insert(format!("{}Role.Arn", name.as_str().unwrap()));
        }
    }
    assert!(assuming.len() >= 3, "{assuming:?}");
    let listed: BTreeSet<String> = output
        .split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']')
        .filter(|w| w.ends_with("Role.Arn"))
        .map(str::to_string)
        .collect();
    assert_eq!(listed, assuming, "MemberRoleTrustedRoleArns: {output}");
    // The role's default name is the template's ExecutionRoleName default: the member role is
    // the default deployment path (AWSControlTowerExecution the documented fallback).
    assert_eq!(
        t["Parameters"]["RoleName"]["Default"].as_str(),
        Some("ct-entitlements-member")
    );
    assert_eq!(
        tpl["Parameters"]["ExecutionRoleName"]["Default"],
        t["Parameters"]["RoleName"]["Default"]
    );
    // The role must be at path "/": the engine assumes arn:…:role/<ExecutionRoleName>.
    assert!(role["Properties"]["Path"].is_null(), "member role path");
}

#[test]
fn delegated_deployment_forwards_exactly_the_events_the_stack_matches() {
    let t = template();
    let rule = &t["Resources"]["LifecycleEventRule"]["Properties"]["EventPattern"];
    let forwarder = example("management-forwarder.yaml");
    let forwarded = &only_resource(&forwarder, "AWS::Events::Rule")["Properties"]["EventPattern"];
    for key in ["source", "detail-type", "detail"] {
        assert_eq!(rule[key], forwarded[key], "EventPattern.{key}");
    }
    // The stack's rule takes events of the management account: its own, or forwarded.
    let account = text(&rule["account"]);
    assert!(
        account.contains("DelegatedDeployment")
            && account.contains("ManagementAccountId")
            && account.contains("AWS::AccountId"),
        "account: {account}"
    );
    // The bus policy lets the management account put Control Tower's events, nothing else.
    let policy = &t["Resources"]["ManagementAccountEventBusPolicy"];
    assert_eq!(policy["Condition"].as_str(), Some("DelegatedDeployment"));
    let st = &policy["Properties"]["Statement"];
    assert_eq!(strings(&st["Action"]), vec!["events:PutEvents".to_string()]);
    assert!(text(&st["Principal"]["AWS"]).contains("${ManagementAccountId}:root"));
    assert_eq!(
        strings(&st["Condition"]["ForAllValues:StringEquals"]["events:source"]),
        strings(&rule["source"])
    );
    assert_eq!(
        strings(&st["Condition"]["StringEquals"]["events:detail-type"]),
        strings(&rule["detail-type"])
    );
    // The forwarder's role may put events on the target account's default bus only.
    let role = only_resource(&forwarder, "AWS::IAM::Role");
    let statements: Vec<&Value> = role["Properties"]["Policies"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|p| p["PolicyDocument"]["Statement"].as_sequence().unwrap())
        .collect();
    assert_eq!(statements.len(), 1);
    assert_eq!(
        strings(&statements[0]["Action"]),
        vec!["events:PutEvents".to_string()]
    );
    assert!(text(&statements[0]["Resource"]).contains("${TargetAccountId}:event-bus/default"));
    // Every function knows its own account (the engine never grants to it).
    assert_eq!(
        text(&t["Globals"]["Function"]["Environment"]["Variables"]["SELF_ACCOUNT_ID"]).trim(),
        "!Ref AWS::AccountId"
    );
}

/// Every statement of every resource policy and trust policy in the shipped templates, with
/// where it is (`file: resource`) and whether it is a role's trust policy.
fn policy_statements() -> Vec<(String, bool, Value)> {
    let mut files = vec![("template.yaml".to_string(), template())];
    for entry in std::fs::read_dir(root().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) == Some("yaml") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            files.push((
                format!("examples/{name}"),
                serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap(),
            ));
        }
    }
    let mut out = Vec::new();
    for (file, t) in files {
        for (name, resource) in t["Resources"].as_mapping().unwrap() {
            let name = format!("{file}: {}", name.as_str().unwrap());
            let props = &resource["Properties"];
            for (doc, trust) in [
                (&props["PolicyDocument"], false),
                (&props["AssumeRolePolicyDocument"], true),
                (&props["Policy"], false),
                (&props["KeyPolicy"], false),
            ] {
                for st in statements_of(doc) {
                    out.push((name.clone(), trust, st));
                }
            }
            // AWS::Events::EventBusPolicy carries one statement of its own.
            if resource["Type"].as_str() == Some("AWS::Events::EventBusPolicy") {
                out.push((name.clone(), false, props["Statement"].clone()));
            }
        }
    }
    out
}

/// Condition keys a statement tests, whatever the operator.
fn condition_keys(st: &Value) -> BTreeSet<String> {
    st["Condition"]
        .as_mapping()
        .into_iter()
        .flat_map(|ops| ops.values())
        .filter_map(Value::as_mapping)
        .flat_map(|m| m.keys().filter_map(Value::as_str).map(str::to_string))
        .collect()
}

#[test]
fn cross_account_entry_points_admit_only_the_organization_or_a_named_source() {
    let statements = policy_statements();
    assert!(
        statements.len() >= 5,
        "found too few policies to judge: {statements:?}"
    );
    let mut checked = 0;
    for (at, trust, st) in &statements {
        let principal = &st["Principal"];
        if principal.is_null() {
            continue; // an identity policy: its principal is the role it is attached to
        }
        let keys = condition_keys(st);
        let aws: Vec<String> = strings(&principal["AWS"])
            .into_iter()
            .chain(
                principal["AWS"]
                    .as_mapping()
                    .map(|_| text(&principal["AWS"])),
            )
            .collect();
        let anyone = aws.iter().any(|p| p == "*") || principal.as_str() == Some("*");
        if st["Effect"].as_str() == Some("Deny") {
            continue; // a Deny narrows whoever it names
        }
        if anyone {
            assert!(
                keys.contains("aws:PrincipalOrgID"),
                "{at}: a policy open to every AWS principal must require aws:PrincipalOrgID: {st:?}"
            );
            checked += 1;
        }
        if !principal["Service"].is_null() && !trust {
            // A service acting for whoever (EventBridge, SNS): only from our own source.
            assert!(
                keys.contains("aws:SourceArn") || keys.contains("aws:SourceAccount"),
                "{at}: a service principal on a resource policy must be tied to its source (aws:SourceArn/aws:SourceAccount): {st:?}"
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 3,
        "only {checked} cross-account statements checked"
    );

    // Lambda invoke permissions for services name the source that may invoke.
    let t = template();
    for (name, resource) in t["Resources"].as_mapping().unwrap() {
        if resource["Type"].as_str() == Some("AWS::Lambda::Permission") {
            let p = &resource["Properties"];
            assert!(
                !p["SourceArn"].is_null() || !p["SourceAccount"].is_null(),
                "{name:?}: a Lambda permission without SourceArn/SourceAccount lets any source invoke"
            );
        }
    }
}

#[test]
fn change_events_forwarder_forwards_exactly_what_the_reconciler_matches() {
    let t = template();
    let events = &t["Resources"]["ReconcilerFunction"]["Properties"]["Events"];
    let forwarder = example("change-events-forwarder.yaml");
    for (event, rule) in [
        ("OrganizationsChanges", "OrganizationsChangesForwardingRule"),
        (
            "LicenseManagerChangesRule",
            "LicenseManagerChangesForwardingRule",
        ),
    ] {
        // The Organizations rule is the reconciler's own event; License Manager's is a rule of
        // its own, whose target is the change-event queue.
        let ours = match &events[event]["Properties"]["Pattern"] {
            Value::Null => &t["Resources"][event]["Properties"]["EventPattern"],
            pattern => pattern,
        };
        assert!(!ours.is_null(), "{event}: no pattern in template.yaml");
        let forwarded = &forwarder["Resources"][rule]["Properties"]["EventPattern"];
        for key in ["source", "detail-type", "detail"] {
            assert_eq!(
                ours[key], forwarded[key],
                "{rule} forwards what {event} matches ({key})"
            );
        }
        // The stack's rule takes the management account's events (its own account, or the
        // management account in a delegated deployment); the forwarder runs in the stack's
        // account and takes that account's.
        if !ours["account"].is_null() {
            assert_eq!(text(&forwarded["account"]).trim(), "- !Ref AWS::AccountId");
        }
    }
    // The forwarding role may put events on this account's default bus only.
    let role = only_resource(&forwarder, "AWS::IAM::Role");
    let policy = text(&role["Properties"]["Policies"]);
    assert!(policy.contains("events:PutEvents"));
    assert!(
        policy.contains("${AWS::AccountId}:event-bus/default"),
        "{policy}"
    );
}

/// The functions that decide per account read the same selection, from the same parameters:
/// a reconciler without it would find every account "up to date" and queue nothing.
#[test]
fn every_deciding_function_reads_the_whole_selection() {
    let t = template();
    let selection = [
        "ALL_MARKETPLACE_LICENSES",
        "LICENSE_ARNS",
        "PRODUCT_SKUS",
        "OU_LICENSE_RULES",
        "LICENSE_DISTRIBUTION",
        "LICENSES_TAG_KEY",
        "TARGET_OUS",
        "ACCOUNT_TAG_FILTER",
        "ACTIVATION_OVERRIDE_BEHAVIOR",
        "ALLOWED_OPERATIONS",
    ];
    let vars = |name: &str| t["Resources"][name]["Properties"]["Environment"]["Variables"].clone();
    let reference = vars("AccountLifecycleFunction");
    for function in [
        "AccountBackfillFunction",
        "ReconcilerFunction",
        "CatalogProvisioningFunction",
    ] {
        let v = vars(function);
        for var in selection {
            assert!(
                !reference[var].is_null(),
                "AccountLifecycleFunction lacks {var}"
            );
            assert_eq!(
                text(&v[var]),
                text(&reference[var]),
                "{function}: {var} differs from account-lifecycle's"
            );
        }
    }
}

// ---------- Issue 16 §3: template fixes found by reading ----------

/// A policy document's statements; `!If [cond, statement, !Ref AWS::NoValue]` items count as
/// their statement (the policy holds it whenever the condition is true).
fn statements_of(doc: &Value) -> Vec<Value> {
    doc["Statement"]
        .as_sequence()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|st| match st {
            Value::Tagged(t) if t.tag == "If" => t.value.as_sequence().map(|s| s[1].clone()),
            Value::Tagged(t) => panic!("unexpected {} in a policy's statements", t.tag),
            other => Some(other),
        })
        .collect()
}

/// template.yaml and every example template, by file name.
fn all_templates() -> Vec<(String, Value)> {
    let mut files = vec![("template.yaml".to_string(), template())];
    let mut examples: Vec<_> = std::fs::read_dir(root().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("yaml"))
        .collect();
    examples.sort();
    for path in examples {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        files.push((
            format!("examples/{name}"),
            serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap(),
        ));
    }
    files
}

/// Whether `text` (a YAML value as text) references the resource `name` (`!Ref name`,
/// `!GetAtt name.…`), and not merely a longer name that starts with it.
fn mentions(text: &str, name: &str) -> bool {
    ["!Ref ", "!GetAtt "].iter().any(|form| {
        let needle = format!("{form}{name}");
        text.match_indices(&needle).any(|(i, _)| {
            text[i + needle.len()..]
                .chars()
                .next()
                .is_none_or(|c| !(c.is_ascii_alphanumeric()))
        })
    })
}

/// Logical ids of the resources of `kind` in a template.
fn resources_of<'a>(t: &'a Value, kind: &str) -> Vec<(String, &'a Value)> {
    t["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some(kind))
        .map(|(n, r)| (n.as_str().unwrap().to_string(), r))
        .collect()
}

/// Whether a statement names `service` as its service principal.
fn service_principal(st: &Value, service: &str) -> bool {
    strings(&st["Principal"]["Service"])
        .iter()
        .any(|s| s == service)
}

#[test]
fn alarms_publish_to_topics_whose_key_cloudwatch_may_use() {
    let t = template();
    let topics = resources_of(&t, "AWS::SNS::Topic");
    let alarms = resources_of(&t, "AWS::CloudWatch::Alarm");
    assert!(alarms.len() >= 3, "{} alarms", alarms.len());
    let mut targeted = BTreeSet::new();
    for (_, alarm) in &alarms {
        let actions = ["AlarmActions", "OKActions", "InsufficientDataActions"]
            .map(|k| text(&alarm["Properties"][k]))
            .join("\n");
        for (topic, _) in &topics {
            if mentions(&actions, topic) {
                targeted.insert(topic.clone());
            }
        }
    }
    assert!(!targeted.is_empty(), "no alarm targets a topic");
    for topic in &targeted {
        let props = &t["Resources"][topic.as_str()]["Properties"];
        let key = text(&props["KmsMasterKeyId"]);
        assert!(
            !key.contains("alias/aws/sns"),
            "{topic}: CloudWatch alarms cannot publish to a topic under the AWS managed key"
        );
        let (key_name, key_resource) = resources_of(&t, "AWS::KMS::Key")
            .into_iter()
            .find(|(k, _)| mentions(&key, k))
            .unwrap_or_else(|| panic!("{topic}: KmsMasterKeyId is no customer managed key: {key}"));
        assert_eq!(
            key_resource["Properties"]["EnableKeyRotation"].as_bool(),
            Some(true),
            "{key_name}: key rotation"
        );
        let statements = statements_of(&key_resource["Properties"]["KeyPolicy"]);
        let cloudwatch: Vec<&Value> = statements
            .iter()
            .filter(|st| service_principal(st, "cloudwatch.amazonaws.com"))
            .collect();
        assert_eq!(cloudwatch.len(), 1, "{key_name}: CloudWatch's statement");
        let st = cloudwatch[0];
        assert_eq!(st["Effect"].as_str(), Some("Allow"));
        let actions: BTreeSet<String> = strings(&st["Action"]).into_iter().collect();
        assert_eq!(
            actions,
            ["kms:Decrypt", "kms:GenerateDataKey*"]
                .map(String::from)
                .into(),
            "{key_name}"
        );
        let source = text(&st["Condition"]["ArnLike"]["aws:SourceArn"]);
        assert!(
            source.contains(":cloudwatch:${AWS::Region}:${AWS::AccountId}:alarm:"),
            "{key_name}: CloudWatch may use the key for this account's alarms only: {source}"
        );
        // The account administers its key (no key policy locks the account out).
        assert!(
            statements
                .iter()
                .any(|st| text(&st["Principal"]["AWS"]).contains("iam::${AWS::AccountId}:root")),
            "{key_name}: account administration"
        );
        // The topic's policy lets this account's alarms publish.
        let publish = resources_of(&t, "AWS::SNS::TopicPolicy")
            .into_iter()
            .filter(|(_, p)| mentions(&text(&p["Properties"]["Topics"]), topic))
            .flat_map(|(_, p)| statements_of(&p["Properties"]["PolicyDocument"]))
            .any(|st| {
                service_principal(&st, "cloudwatch.amazonaws.com")
                    && st["Effect"].as_str() == Some("Allow")
                    && strings(&st["Action"]).iter().any(|a| a == "sns:Publish")
            });
        assert!(publish, "{topic}: its topic policy admits CloudWatch");
    }
}

#[test]
fn every_rule_dead_letter_queue_admits_exactly_its_rule() {
    let mut checked = 0;
    for (file, t) in all_templates() {
        let policies = resources_of(&t, "AWS::SQS::QueuePolicy");
        for (rule, resource) in resources_of(&t, "AWS::Events::Rule") {
            for target in resource["Properties"]["Targets"]
                .as_sequence()
                .cloned()
                .unwrap_or_default()
            {
                let dlq = &target["DeadLetterConfig"]["Arn"];
                if dlq.is_null() {
                    continue;
                }
                let dlq = text(dlq);
                let (queue, _) = resources_of(&t, "AWS::SQS::Queue")
                    .into_iter()
                    .find(|(q, _)| mentions(&dlq, q))
                    .unwrap_or_else(|| panic!("{file}: {rule}: dead-letter queue {dlq}"));
                let admitted = policies
                    .iter()
                    .filter(|(_, p)| mentions(&text(&p["Properties"]["Queues"]), &queue))
                    .flat_map(|(_, p)| statements_of(&p["Properties"]["PolicyDocument"]))
                    .any(|st| {
                        st["Effect"].as_str() == Some("Allow")
                            && service_principal(&st, "events.amazonaws.com")
                            && strings(&st["Action"])
                                .iter()
                                .any(|a| a == "sqs:SendMessage")
                            && mentions(
                                &text(&st["Condition"]["ArnEquals"]["aws:SourceArn"]),
                                &rule,
                            )
                    });
                assert!(
                    admitted,
                    "{file}: {queue}, dead-letter queue of {rule}, has no policy admitting events.amazonaws.com with aws:SourceArn = {rule}"
                );
                checked += 1;
            }
        }
        // SAM-generated rules: a dead-letter queue only of SAM's own making (SAM writes its
        // policy), never an Arn this test cannot tie to the generated rule.
        for (name, function) in resources_of(&t, "AWS::Serverless::Function") {
            for (event, e) in function["Properties"]["Events"]
                .as_mapping()
                .cloned()
                .unwrap_or_default()
            {
                let dlq = &e["Properties"]["DeadLetterConfig"];
                assert!(
                    dlq.is_null() || dlq["Arn"].is_null(),
                    "{file}: {name}.{event:?}: a DeadLetterConfig Arn needs a queue policy for the generated rule"
                );
            }
        }
    }
    assert!(checked >= 4, "{checked} rule dead-letter queues checked");
}

#[test]
fn every_sqs_event_source_caps_its_pollers_at_the_reserved_concurrency() {
    let t = template();
    let mut checked = 0;
    for (name, function) in resources_of(&t, "AWS::Serverless::Function") {
        let props = &function["Properties"];
        for (event, e) in props["Events"].as_mapping().cloned().unwrap_or_default() {
            if e["Type"].as_str() != Some("SQS") {
                continue;
            }
            let at = format!("{name}.{}", event.as_str().unwrap());
            let max = &e["Properties"]["ScalingConfig"]["MaximumConcurrency"];
            let reserved = &props["ReservedConcurrentExecutions"];
            assert!(!max.is_null(), "{at}: no ScalingConfig.MaximumConcurrency");
            assert!(!reserved.is_null(), "{at}: no ReservedConcurrentExecutions");
            // A parameter's smallest value, or the number itself.
            let least = |v: &Value| -> u64 {
                match v.as_u64() {
                    Some(n) => n,
                    None => {
                        let param = text(v).trim().trim_start_matches("!Ref ").to_string();
                        t["Parameters"][param.as_str()]["MinValue"]
                            .as_u64()
                            .unwrap_or_else(|| panic!("{at}: {param} has no MinValue"))
                    }
                }
            };
            assert!(least(max) >= 2, "{at}: MaximumConcurrency is at least 2");
            match (max.as_u64(), reserved.as_u64()) {
                (Some(m), Some(r)) => assert!(m <= r, "{at}: {m} pollers > {r} reserved"),
                (Some(m), None) => assert!(
                    m <= least(reserved),
                    "{at}: {m} pollers may exceed the reserved concurrency"
                ),
                (None, _) => assert_eq!(
                    text(max),
                    text(reserved),
                    "{at}: MaximumConcurrency must be the reserved concurrency's parameter"
                ),
            }
            checked += 1;
        }
    }
    assert!(checked >= 5, "{checked} SQS event sources checked");
}

/// Every statement of every function policy in template.yaml, with the function's name.
fn function_statements() -> Vec<(String, Value)> {
    function_policies()
        .into_iter()
        .flat_map(|(binary, (_, sts))| sts.into_iter().map(move |st| (binary.clone(), st)))
        .collect()
}

fn resource_texts(st: &Value) -> Vec<String> {
    match &st["Resource"] {
        Value::Sequence(items) => items.iter().map(|v| text(v).trim().to_string()).collect(),
        other => vec![text(other).trim().to_string()],
    }
}

#[test]
fn grant_writes_name_this_accounts_grants() {
    let mut checked = 0;
    for (binary, st) in function_statements() {
        let actions = strings(&st["Action"]);
        if !actions.iter().any(|a| {
            a == "license-manager:CreateGrantVersion" || a == "license-manager:DeleteGrant"
        }) {
            continue;
        }
        assert!(
            actions
                .iter()
                .all(|a| a == "license-manager:CreateGrantVersion"
                    || a == "license-manager:DeleteGrant"),
            "{binary}: grant writes in their own statement: {actions:?}"
        );
        assert_eq!(
            resource_texts(&st),
            vec![
                "!Sub arn:${AWS::Partition}:license-manager::${AWS::AccountId}:grant:*".to_string()
            ],
            "{binary}: grant writes"
        );
        checked += 1;
    }
    assert!(checked >= 3, "{checked} grant-write statements");

    // Member accounts accept and activate the grantor's grants only.
    let t = example("member-role-stackset.yaml");
    let role = only_resource(&t, "AWS::IAM::Role");
    let mut scoped = 0;
    for policy in role["Properties"]["Policies"].as_sequence().unwrap() {
        for st in statements_of(&policy["PolicyDocument"]) {
            let actions = strings(&st["Action"]);
            if actions.iter().any(|a| {
                a == "license-manager:AcceptGrant" || a == "license-manager:CreateGrantVersion"
            }) {
                assert_eq!(
                    resource_texts(&st),
                    vec!["!Sub arn:${AWS::Partition}:license-manager::${DeploymentAccountId}:grant:*".to_string()],
                    "member role: {actions:?}"
                );
                scoped += 1;
            }
        }
    }
    assert_eq!(scoped, 1, "AcceptGrant/CreateGrantVersion statement");
}

#[test]
fn assume_role_stays_inside_the_organization() {
    let mut checked = 0;
    for (binary, st) in function_statements() {
        if !strings(&st["Action"]).iter().any(|a| a == "sts:AssumeRole") {
            continue;
        }
        assert_eq!(
            strings(&st["Action"]),
            vec!["sts:AssumeRole".to_string()],
            "{binary}"
        );
        assert_eq!(
            st["Condition"]["StringEquals"]["aws:ResourceOrgID"].as_str(),
            Some("${aws:PrincipalOrgID}"),
            "{binary}: sts:AssumeRole only on roles of the function's own organization"
        );
        checked += 1;
    }
    assert!(checked >= 3, "{checked} AssumeRole statements");
}

#[test]
fn organization_writes_name_what_they_may_change() {
    let statements = function_statements();
    let with = |action: &str| -> Vec<(String, Value)> {
        statements
            .iter()
            .filter(|(_, st)| strings(&st["Action"]).iter().any(|a| a == action))
            .cloned()
            .collect()
    };
    for (action, principals) in [
        (
            "organizations:EnableAWSServiceAccess",
            crate::bootstrap::TRUSTED_SERVICES.to_vec(),
        ),
        (
            "organizations:RegisterDelegatedAdministrator",
            vec!["license-manager.amazonaws.com"],
        ),
    ] {
        let found = with(action);
        assert_eq!(found.len(), 1, "{action}");
        let (binary, st) = &found[0];
        let allowed: BTreeSet<String> =
            strings(&st["Condition"]["StringEquals"]["organizations:ServicePrincipal"])
                .into_iter()
                .collect();
        let expected: BTreeSet<String> = principals.iter().map(|s| s.to_string()).collect();
        assert_eq!(allowed, expected, "{binary}: {action}");
    }
    let found = with("organizations:TagResource");
    assert_eq!(found.len(), 1);
    let (binary, st) = &found[0];
    assert_eq!(
        text(&st["Condition"]["ForAllValues:StringEquals"]["aws:TagKeys"]).trim(),
        "- !Ref LicensesTagKey",
        "{binary}: TagResource sets the licenses tag only"
    );
}

/// Queues and topics refuse requests that do not use TLS. Choice: every queue and every topic
/// of every shipped template has a policy (a queue without one gets one that only denies).
#[test]
fn every_queue_and_topic_refuses_insecure_transport() {
    let mut checked = 0;
    for (file, t) in all_templates() {
        for (kind, policy_kind, key, action) in [
            (
                "AWS::SQS::Queue",
                "AWS::SQS::QueuePolicy",
                "Queues",
                "sqs:*",
            ),
            (
                "AWS::SNS::Topic",
                "AWS::SNS::TopicPolicy",
                "Topics",
                // sns:Publish, as AWS's own example of this condition for topics.
                "sns:Publish",
            ),
        ] {
            let policies = resources_of(&t, policy_kind);
            for (name, resource) in resources_of(&t, kind) {
                let mine: Vec<&(String, &Value)> = policies
                    .iter()
                    .filter(|(_, p)| mentions(&text(&p["Properties"][key]), &name))
                    .collect();
                assert_eq!(mine.len(), 1, "{file}: {name}: one {policy_kind}");
                let (policy, p) = mine[0];
                assert_eq!(
                    p["Condition"], resource["Condition"],
                    "{file}: {policy} exists exactly when {name} does"
                );
                let denies = statements_of(&p["Properties"]["PolicyDocument"])
                    .iter()
                    .any(|st| {
                        st["Effect"].as_str() == Some("Deny")
                            && (st["Principal"].as_str() == Some("*")
                                || strings(&st["Principal"]["AWS"]) == ["*"])
                            && strings(&st["Action"]) == [action]
                            && st["Condition"]["Bool"]["aws:SecureTransport"].as_str()
                                == Some("false")
                            && mentions(&text(&st["Resource"]), &name)
                    });
                assert!(
                    denies,
                    "{file}: {policy} does not deny {action} without aws:SecureTransport"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 12, "{checked} queues and topics checked");
}

#[test]
fn product_launch_topic_is_encrypted_with_a_key_member_stacks_may_use() {
    let t = template();
    let topic = &t["Resources"]["CatalogRequestTopic"]["Properties"];
    let key_ref = text(&topic["KmsMasterKeyId"]);
    let (key_name, key) = resources_of(&t, "AWS::KMS::Key")
        .into_iter()
        .find(|(k, _)| mentions(&key_ref, k))
        .unwrap_or_else(|| panic!("CatalogRequestTopic: no customer managed key: {key_ref}"));
    assert_eq!(
        key["Condition"], t["Resources"]["CatalogRequestTopic"]["Condition"],
        "{key_name} exists with the topic"
    );
    assert_eq!(key["Properties"]["EnableKeyRotation"].as_bool(), Some(true));
    let statements = statements_of(&key["Properties"]["KeyPolicy"]);
    let publishers: Vec<&Value> = statements
        .iter()
        .filter(|st| strings(&st["Principal"]["AWS"]) == ["*"])
        .collect();
    assert_eq!(
        publishers.len(),
        1,
        "{key_name}: the organization's statement"
    );
    let st = publishers[0];
    assert_eq!(
        strings(&st["Action"]).into_iter().collect::<BTreeSet<_>>(),
        ["kms:Decrypt", "kms:GenerateDataKey*"]
            .map(String::from)
            .into()
    );
    assert!(
        !st["Condition"]["StringEquals"]["aws:PrincipalOrgID"].is_null(),
        "{key_name}: organization principals only"
    );
    let sns: Vec<&Value> = statements
        .iter()
        .filter(|st| service_principal(st, "sns.amazonaws.com"))
        .collect();
    assert_eq!(sns.len(), 1, "{key_name}: SNS's statement");
    assert!(condition_keys(sns[0]).contains("aws:SourceAccount"));
}

#[test]
fn organizations_rules_take_only_the_management_accounts_succeeded_calls() {
    let mut checked = 0;
    for (file, t) in all_templates() {
        let mut patterns: Vec<(String, Value)> = resources_of(&t, "AWS::Events::Rule")
            .into_iter()
            .map(|(n, r)| (n, r["Properties"]["EventPattern"].clone()))
            .collect();
        for (name, function) in resources_of(&t, "AWS::Serverless::Function") {
            for (event, e) in function["Properties"]["Events"]
                .as_mapping()
                .cloned()
                .unwrap_or_default()
            {
                if e["Type"].as_str() == Some("EventBridgeRule") {
                    patterns.push((
                        format!("{name}.{}", event.as_str().unwrap()),
                        e["Properties"]["Pattern"].clone(),
                    ));
                }
            }
        }
        for (rule, pattern) in patterns {
            if !strings(&pattern["source"]).contains(&"aws.organizations".to_string()) {
                continue;
            }
            let at = format!("{file}: {rule}");
            let error = serde_json::to_value(&pattern["detail"]["errorCode"]).unwrap();
            assert_eq!(
                error,
                serde_json::json!([{"exists": false}]),
                "{at}: a denied call is recorded too (with errorCode)"
            );
            let account = text(&pattern["account"]);
            let expected = if file == "template.yaml" {
                "!If\n  - DelegatedDeployment\n  - !Ref ManagementAccountId\n  - !Ref AWS::AccountId"
            } else {
                "!Ref AWS::AccountId"
            };
            assert!(
                account.contains(expected),
                "{at}: account must be the management account's: {account}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 2, "{checked} Organizations rules checked");
}

#[test]
fn catalog_provisioning_reads_its_bounds_and_gives_up_on_missing_roles_quickly() {
    let t = template();
    let function = &t["Resources"]["CatalogProvisioningFunction"]["Properties"];
    let vars = &function["Environment"]["Variables"];
    for (var, param, default) in [
        ("CATALOG_LICENSES", "CatalogLicenses", ""),
        ("CATALOG_SELECTION_RULES", "CatalogSelectionRules", "apply"),
        ("CATALOG_SHARE_PORTFOLIOS", "CatalogSharePortfolioIds", ""),
    ] {
        assert_eq!(
            text(&vars[var]).trim(),
            format!("!Ref {param}"),
            "CatalogProvisioningFunction: {var}"
        );
        assert_eq!(
            t["Parameters"][param]["Default"].as_str(),
            Some(default),
            "{param} default"
        );
    }
    assert_eq!(
        strings(&t["Parameters"]["CatalogSelectionRules"]["AllowedValues"]),
        ["apply", "ignore"]
    );
    assert_eq!(vars["ASSUME_ROLE_ATTEMPTS"].as_str(), Some("2"));
    assert_eq!(vars["ASSUME_ROLE_BACKOFF_MS"].as_str(), Some("500"));
    // Portfolio shares: exactly the listed portfolios, none when the list is empty.
    let share: Vec<Value> = function["Policies"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(statements_of)
        .filter(|st| {
            strings(&st["Action"])
                .iter()
                .any(|a| a == "servicecatalog:CreatePortfolioShare")
        })
        .collect();
    assert_eq!(share.len(), 1);
    let resource = text(&share[0]["Resource"]);
    assert!(
        resource.contains("CatalogSharePortfolioIds") && !resource.contains("portfolio/*"),
        "SharePortfolios: {resource}"
    );
    assert!(
        resource.contains("!Split") && resource.contains(":portfolio/${"),
        "one ARN per listed id: {resource}"
    );
}
