//! Output: tables (comfy-table), JSON documents and CSV.

use comfy_table::{presets, ContentArrangement, Table};
use serde::Serialize;

/// A plain table: a header, a rule under it, columns separated by spaces, no borders, so each
/// row stays one line that `grep` and `awk` can read.
pub fn table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header);
    for row in rows {
        t.add_row(row.iter().map(String::as_str));
    }
    let rendered = t.to_string();
    let mut out = String::new();
    for (n, line) in rendered.lines().enumerate() {
        // The preset pads each cell by one space on the left: the first column starts at 0.
        let line = line.strip_prefix(' ').unwrap_or(line).trim_end();
        out.push_str(line);
        out.push('\n');
        if n == 0 {
            out.push_str(&"-".repeat(line.chars().count()));
            out.push('\n');
        }
    }
    out
}

/// One JSON document, pretty-printed, with a trailing newline.
pub fn json<T: Serialize>(value: &T) -> String {
    match serde_json::to_string_pretty(value) {
        Ok(s) => s + "\n",
        // Our documents are plain data: this cannot happen, but say so rather than panic.
        Err(e) => format!("{{\"error\": {:?}}}\n", e.to_string()),
    }
}

/// CSV (RFC 4180): fields quoted when they hold a comma, a quote or a line break.
pub fn csv<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let field = |f: &str| {
        if f.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", f.replace('"', "\"\""))
        } else {
            f.to_string()
        }
    };
    let mut out = String::new();
    out.push_str(&header.map(field).join(","));
    out.push_str("\r\n");
    for row in rows {
        out.push_str(&row.iter().map(|f| field(f)).collect::<Vec<_>>().join(","));
        out.push_str("\r\n");
    }
    out
}

/// `n thing` / `n things`.
pub fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
