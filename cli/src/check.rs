//! `config check FILE`: a configuration document read by the same parser as the deploy-time
//! check (org-bootstrap's `ConfigurationCheck`) and the functions at cold start, without any
//! AWS call. A refused document is a configuration error (exit 2) with the parser's message.

use serde::Serialize;
use shared::config::{check_document, Summary};
use shared::error::Error;
use std::io::Read;
use std::path::Path;

/// What `config check` prints for a valid document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckDocument {
    pub file: String,
    pub valid: bool,
    pub summary: Summary,
}

/// Reads `file` (`-`: standard input) and checks it.
pub fn check_file(file: &Path) -> Result<CheckDocument, Error> {
    let name = file.display().to_string();
    let mut text = String::new();
    let read = if name == "-" {
        std::io::stdin().read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::read_to_string(file).map(|t| text = t)
    };
    read.map_err(|e| Error::InvalidInput(format!("config check: cannot read {name}: {e}")))?;
    let summary =
        check_document(&text).map_err(|e| Error::Config(format!("{name}: {}", message_of(&e))))?;
    Ok(CheckDocument {
        file: name,
        valid: true,
        summary,
    })
}

/// The parser's message without the error kind's prefix (the file name replaces it).
fn message_of(e: &Error) -> String {
    match e {
        Error::Config(m) | Error::InvalidInput(m) => m.clone(),
        other => other.to_string(),
    }
}

impl CheckDocument {
    /// The table: one setting per row, then the summary line.
    pub fn table(&self) -> String {
        let s = &self.summary;
        let yes_no = |b: bool| if b { "yes" } else { "no" }.to_string();
        let rows = [
            [
                "all Marketplace licenses".to_string(),
                yes_no(s.all_marketplace_licenses),
            ],
            ["licenses".to_string(), s.licenses.to_string()],
            ["OU rules".to_string(), s.ou_rules.to_string()],
            [
                "distribution modes".to_string(),
                s.distribution_modes.to_string(),
            ],
            ["target OUs".to_string(), s.target_ous.to_string()],
            [
                "account tag filter".to_string(),
                s.account_tag_filter.clone().unwrap_or_else(|| "-".into()),
            ],
        ];
        let mut out = crate::render::table(["setting", "value"], &rows);
        out.push_str(&format!(
            "config check: {} is valid ({} bytes)\n",
            self.file, s.bytes
        ));
        out
    }
}
