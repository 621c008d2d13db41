//! One version (issue 12): Cargo.toml's workspace version is what every report line says,
//! the template's `SemanticVersion` and `Version` output, and a
//! heading of CHANGELOG.md.
#![allow(clippy::unwrap_used)]

use serde_yaml::Value;
use std::path::Path;

/// The workspace's version (Cargo.toml's `version`, which every crate inherits).
const VERSION: &str = env!("CARGO_PKG_VERSION");

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

#[test]
fn the_version_is_the_same_everywhere() {
    let template: Value =
        serde_yaml::from_str(&std::fs::read_to_string(root().join("template.yaml")).unwrap())
            .unwrap();
    let semver = &template["Metadata"]["AWS::ServerlessRepo::Application"]["SemanticVersion"];
    let output = &template["Outputs"]["Version"]["Value"];
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => serde_yaml::to_string(other).unwrap().trim().to_string(),
    };
    assert_eq!(text(semver), VERSION, "template SemanticVersion");
    assert_eq!(text(output), VERSION, "template Version output");
    let changelog = std::fs::read_to_string(root().join("CHANGELOG.md")).unwrap();
    assert!(
        changelog
            .lines()
            .any(|l| l.starts_with(&format!("## {VERSION}"))),
        "CHANGELOG.md has no `## {VERSION}` section"
    );
    assert!(
        VERSION.split('.').count() == 3 && VERSION.split('.').all(|p| p.parse::<u32>().is_ok())
    );
}

#[test]
fn every_report_line_names_the_version() {
    let line: serde_json::Value = serde_json::from_str(&shared::report::report_line(
        "accountReport",
        serde_json::json!({"report": {"accountId": "210987654321"}}),
    ))
    .unwrap();
    assert_eq!(line["type"], "accountReport");
    assert_eq!(line["version"], VERSION);
    assert_eq!(line["report"]["accountId"], "210987654321");
    // Every line a function prints goes through `emit`, which adds the version.
    let mut printers = Vec::new();
    for dir in ["shared/src", "functions"] {
        for file in walk(&root().join(dir)) {
            let text = std::fs::read_to_string(&file).unwrap();
            if text.contains("println!(") && !file.ends_with("shared/src/report.rs") {
                printers.push(file.display().to_string());
            }
        }
    }
    assert!(
        printers.is_empty(),
        "print report lines with shared::report::emit: {printers:?}"
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if !path.ends_with("tests") {
                out.extend(walk(&path));
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// Partition (issue 16 §3): no ARN in a shipped template names the `aws` partition; ARNs are
/// built with `${AWS::Partition}` (patterns that accept any partition, `arn:aws[a-z-]*:`, are
/// fine), so the stack deploys in aws-us-gov and aws-cn too.
#[test]
fn no_shipped_template_hard_codes_the_aws_partition() {
    let mut files = vec![root().join("template.yaml")];
    for entry in std::fs::read_dir(root().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            files.push(path);
        }
    }
    assert!(files.len() >= 5, "{files:?}");
    let mut found = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            if line.contains("arn:aws:") {
                found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "hard-coded partition:\n{}",
        found.join("\n")
    );
}
