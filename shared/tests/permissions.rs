//! Least privilege, proven: each function's policy in template.yaml allows exactly the actions
//! its code calls with its own role (`shared::permissions`), the code calls nothing that is not
//! in a table, and no table lists an operation the code never calls.
#![allow(clippy::unwrap_used)]

use serde_yaml::Value;
use shared::permissions::{iam_action, FUNCTIONS, MEMBER_ROLE};
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
            for st in policy["Statement"]
                .as_sequence()
                .cloned()
                .unwrap_or_default()
            {
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

/// Rust sources that record AWS calls: the library's, and the functions' own adapters.
fn sources() -> Vec<std::path::PathBuf> {
    let mut dirs = vec![root().join("shared/src")];
    for function in std::fs::read_dir(root().join("functions")).unwrap() {
        dirs.push(function.unwrap().path().join("src"));
    }
    dirs.iter()
        .filter(|d| d.is_dir())
        .flat_map(|d| std::fs::read_dir(d).unwrap().map(|e| e.unwrap().path()))
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .collect()
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
            out.entry(who.trim().to_string())
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
        "examples/member-role-stackset.yaml vs shared::permissions::MEMBER_ROLE"
    );

    // Trust: one statement, the deployment account, narrowed to the function role path.
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
    let arn_like = text(&st["Condition"]["ArnLike"]["aws:PrincipalArn"]);
    assert!(
        arn_like.contains("iam::${DeploymentAccountId}:role${FunctionRolePath}*"),
        "aws:PrincipalArn: {arn_like}"
    );
    // The path the role trusts is the path the template gives its function roles, and the
    // role's default name is what the README tells ExecutionRoleName to be.
    let template_path = template()["Globals"]["Function"]["RolePath"].clone();
    assert_eq!(
        t["Parameters"]["FunctionRolePath"]["Default"], template_path,
        "member role trust path vs template Globals RolePath"
    );
    assert_eq!(
        t["Parameters"]["RoleName"]["Default"].as_str(),
        Some("ct-entitlements-member")
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
            ] {
                for st in doc["Statement"].as_sequence().cloned().unwrap_or_default() {
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
            "LicenseManagerChanges",
            "LicenseManagerChangesForwardingRule",
        ),
    ] {
        assert_eq!(
            events[event]["Properties"]["Pattern"],
            forwarder["Resources"][rule]["Properties"]["EventPattern"],
            "{rule} forwards what {event} matches"
        );
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
    for function in ["AccountBackfillFunction", "ReconcilerFunction"] {
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
