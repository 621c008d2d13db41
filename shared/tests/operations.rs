//! The docs state what the template sets: catalog-provisioning's variables, launch bounds and
//! member-role default (issue 16), and every function's reserved concurrency. (The template's
//! operations pieces against the report lines are checked in `shared/src/metrics/tests.rs`.)
#![allow(clippy::unwrap_used)]

use serde_yaml::Value;
use std::path::Path;

fn template() -> Value {
    let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml"));
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A document of docs/, where the README's sections now live.
fn doc(name: &str) -> String {
    let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs")).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Issue 16 §3: every variable the template sets on catalog-provisioning is documented
/// (docs/configuration.md, docs/service-catalog.md), the launch bounds and their parameters in
/// docs/configuration.md (with their defaults), the member role as the default in
/// docs/deploy.md, and docs/security.md says what is verified before acting.
#[test]
fn docs_document_the_launch_bounds_security_and_the_member_role_default() {
    let t = template();
    let configuration = doc("configuration.md");
    let catalog = doc("service-catalog.md");
    let vars = t["Resources"]["CatalogProvisioningFunction"]["Properties"]["Environment"]
        ["Variables"]
        .as_mapping()
        .unwrap();
    assert!(vars.len() >= 20, "{} variables", vars.len());
    for var in vars.keys() {
        let var = var.as_str().unwrap();
        assert!(
            configuration.contains(&format!("`{var}`")) || catalog.contains(&format!("`{var}`")),
            "docs/configuration.md and docs/service-catalog.md do not document {var}"
        );
    }
    for (var, param) in [
        ("CATALOG_LICENSES", "CatalogLicenses"),
        ("CATALOG_SELECTION_RULES", "CatalogSelectionRules"),
        ("CATALOG_SHARE_PORTFOLIOS", "CatalogSharePortfolioIds"),
        ("EXECUTION_ROLE_NAME", "ExecutionRoleName"),
    ] {
        let row = configuration
            .lines()
            .find(|l| l.starts_with(&format!("| `{var}` (`{param}`)")))
            .unwrap_or_else(|| panic!("docs/configuration.md has no row for {var} ({param})"));
        let default = t["Parameters"][param]["Default"].as_str().unwrap();
        let shown = row.split(" | ").nth(1).unwrap();
        if default.is_empty() {
            assert!(
                shown.starts_with('–'),
                "{param}: default empty, row says {shown}"
            );
        } else {
            assert!(
                shown.starts_with(&format!("`{default}`")),
                "{param}: default {default}, row says {shown}"
            );
        }
    }
    let deploy = doc("deploy.md");
    let member = deploy.find("examples/member-role-stackset.yaml").unwrap();
    let fallback = deploy
        .find("**Fallback: `AWSControlTowerExecution`.**")
        .unwrap();
    assert!(
        member < fallback,
        "Deploy: the member role first, the fallback after"
    );
    assert!(deploy.contains("MemberRoleTrustedRoleArns"));
    let security = doc("security.md");
    for needle in [
        "DescribeStackResource",
        "cloudformation-custom-resource-response-",
        "CatalogSharePortfolioIds",
        "CatalogLicenses",
        "errorCode",
        "aws:SecureTransport",
        "aws:ResourceOrgID",
        "## What each role may do",
    ] {
        assert!(security.contains(needle), "docs/security.md: {needle}");
    }
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let (security, launches) = (
        readme.find("(docs/security.md)"),
        readme.find("(docs/service-catalog.md)"),
    );
    assert!(
        security.is_some() && launches.is_some() && security < launches,
        "the README links docs/security.md before docs/service-catalog.md"
    );
}

/// The reserved concurrency the README and docs/deploy.md state (and the quota it needs, 100
/// more: Lambda keeps 100 unreserved) is the template's: every function's
/// `ReservedConcurrentExecutions`, a parameter's default where it is a `!Ref`.
#[test]
fn docs_state_the_templates_reserved_concurrency() {
    let t = template();
    let mut total = 0;
    let mut functions = 0;
    for (name, resource) in t["Resources"].as_mapping().unwrap() {
        let reserved = &resource["Properties"]["ReservedConcurrentExecutions"];
        let n = match reserved {
            Value::Number(n) => n.as_u64().unwrap(),
            Value::Tagged(tag) if tag.tag == "!Ref" => {
                let param = tag.value.as_str().unwrap();
                let default = &t["Parameters"][param]["Default"];
                default
                    .as_u64()
                    .or_else(|| default.as_str().and_then(|s| s.parse().ok()))
                    .unwrap_or_else(|| panic!("{param} has no numeric default"))
            }
            Value::Null => continue,
            other => panic!("{name:?}: ReservedConcurrentExecutions {other:?}"),
        };
        total += n;
        functions += 1;
    }
    assert!(functions >= 7, "{functions} functions reserve concurrency");
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let deploy = doc("deploy.md")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        readme.contains(&format!("functions reserve {total} concurrent executions"))
            && readme.contains(&format!("must be at least {}", total + 100)),
        "README: not {total} / {}",
        total + 100
    );
    assert!(
        deploy.contains(&format!("{total} by default"))
            && deploy.contains(&format!("must be at least {}", total + 100)),
        "docs/deploy.md: not {total} / {}",
        total + 100
    );
}
