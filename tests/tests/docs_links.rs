//! Every Markdown link in README.md, CHANGELOG.md and docs/*.md leads somewhere: a relative
//! target is a file inside the repository and, with a `#anchor`, that file has a heading whose
//! GitHub slug is the anchor. http(s) and mailto links are allowed and never fetched. No AWS.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The documents whose links are checked, relative to the repository root.
fn documents(root: &Path) -> Vec<PathBuf> {
    let mut docs = vec![PathBuf::from("README.md"), PathBuf::from("CHANGELOG.md")];
    let mut more: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .map(|p| p.strip_prefix(root).unwrap().to_path_buf())
        .collect();
    more.sort();
    docs.extend(more);
    docs
}

/// The lines outside fenced code blocks, with their 1-based numbers.
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut fence: Option<&str> = None;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let marker = if trimmed.starts_with("```") {
            Some("```")
        } else if trimmed.starts_with("~~~") {
            Some("~~~")
        } else {
            None
        };
        match (fence, marker) {
            (None, Some(m)) => fence = Some(m),
            (Some(f), Some(m)) if f == m => fence = None,
            (None, None) => out.push((i + 1, line)),
            _ => {}
        }
    }
    out
}

/// A line without its inline code spans (`…`), which may hold brackets that are not links.
fn without_code_spans(line: &str) -> String {
    let mut out = String::new();
    let mut in_code = false;
    for c in line.chars() {
        if c == '`' {
            in_code = !in_code;
            out.push(' ');
        } else if !in_code {
            out.push(c);
        } else {
            out.push(' ');
        }
    }
    out
}

/// Every `[text](target)` (and `![alt](src)`) of a document: (line, target).
fn links(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (number, line) in prose_lines(text) {
        let line = without_code_spans(line);
        let mut rest = line.as_str();
        while let Some(close) = rest.find("](") {
            let after = &rest[close + 2..];
            // The target ends at the matching `)`; targets here hold no nested parentheses
            // except balanced ones, which are kept.
            let mut depth = 1;
            let mut end = None;
            for (i, c) in after.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            end = Some(i);
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let opened = rest[..close].rfind('[').is_some();
            match end {
                Some(end) if opened => {
                    let target = after[..end].trim();
                    // `[text](target "title")`: the title is not part of the target.
                    let target = target.split_whitespace().next().unwrap_or("");
                    let target = target.trim_start_matches('<').trim_end_matches('>');
                    found.push((number, target.to_string()));
                    rest = &after[end + 1..];
                }
                _ => rest = after,
            }
        }
    }
    found
}

/// GitHub's anchor for a heading: lower case, inline markup and punctuation dropped (letters,
/// digits, `-`, `_` and spaces kept), spaces to `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a document's headings, GitHub's way: a repeated slug gets `-1`, `-2`, ….
fn anchors(text: &str) -> HashSet<String> {
    let mut seen = HashSet::new();
    for (_, line) in prose_lines(text) {
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let heading = line[hashes..].trim().trim_end_matches('#').trim();
        let base = slug(heading);
        let mut anchor = base.clone();
        let mut n = 0;
        while seen.contains(&anchor) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        seen.insert(anchor);
    }
    seen
}

/// `a/b/../c` → `a/c`; `None` when it climbs out of the repository.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Normal(p) => out.push(p),
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// What is wrong with the links of `doc` (relative to `root`), one line each.
fn broken_links(root: &Path, doc: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(root.join(doc))
        .unwrap_or_else(|e| panic!("{}: {e}", doc.display()));
    let mut problems = Vec::new();
    for (line, target) in links(&text) {
        let at = format!("{}:{line}: ({target})", doc.display());
        if target.is_empty() {
            problems.push(format!("{at}: empty target"));
            continue;
        }
        let lower = target.to_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            continue; // allowed, never fetched
        }
        if lower.starts_with("mailto:") {
            continue;
        }
        if target.contains("://") {
            problems.push(format!("{at}: a scheme other than http(s)"));
            continue;
        }
        let (file, anchor) = match target.split_once('#') {
            Some((file, anchor)) => (file, Some(anchor)),
            None => (target.as_str(), None),
        };
        let file_path = if file.is_empty() {
            Some(doc.to_path_buf())
        } else if file.starts_with('/') {
            normalize(Path::new(file.trim_start_matches('/')))
        } else {
            normalize(&doc.parent().unwrap_or(Path::new("")).join(file))
        };
        let Some(file_path) = file_path else {
            problems.push(format!("{at}: leaves the repository"));
            continue;
        };
        let full = root.join(&file_path);
        if !full.exists() {
            problems.push(format!("{at}: no file {}", file_path.display()));
            continue;
        }
        if let Some(anchor) = anchor {
            if full.is_dir() {
                problems.push(format!("{at}: an anchor into a directory"));
                continue;
            }
            let target_text = std::fs::read_to_string(&full).unwrap_or_default();
            if !anchors(&target_text).contains(anchor) {
                problems.push(format!(
                    "{at}: {} has no heading with the anchor #{anchor}",
                    file_path.display()
                ));
            }
        }
    }
    problems
}

#[test]
fn every_link_in_the_documentation_resolves() {
    let root = root();
    let docs = documents(&root);
    assert!(
        docs.len() >= 10,
        "README, CHANGELOG and docs/*.md: {docs:?}"
    );
    let mut checked = 0;
    let mut problems = Vec::new();
    for doc in &docs {
        let text = std::fs::read_to_string(root.join(doc)).unwrap();
        checked += links(&text).len();
        problems.extend(broken_links(&root, doc));
    }
    assert!(
        checked > 20,
        "only {checked} links found: is the parser blind?"
    );
    assert!(
        problems.is_empty(),
        "broken links:\n{}",
        problems.join("\n")
    );
}

/// The README links every document in docs/.
#[test]
fn the_readme_links_every_document() {
    let root = root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let targets: HashSet<String> = links(&readme)
        .into_iter()
        .map(|(_, t)| t.split('#').next().unwrap().to_string())
        .collect();
    for doc in documents(&root).iter().skip(2) {
        let doc = doc.to_str().unwrap();
        assert!(targets.contains(doc), "README.md does not link {doc}");
    }
}

/// The check can fail: a broken file, a broken anchor and a link out of the repository are
/// reported; good links, links in code and web links are not.
#[test]
fn a_broken_link_is_reported() {
    let dir = std::env::temp_dir().join(format!("docs-links-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("docs")).unwrap();
    std::fs::write(
        dir.join("docs/a.md"),
        "# Title\n\n## Organization scale (`make scale`)\n\n## Twice\n\n## Twice\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("README.md"),
        concat!(
            "# Readme\n\n",
            "[good](docs/a.md) [anchor](docs/a.md#organization-scale-make-scale) ",
            "[second](docs/a.md#twice-1) [self](#readme) [web](https://example.com/x#y)\n",
            "[missing file](docs/nope.md)\n",
            "[missing anchor](docs/a.md#nope)\n",
            "[outside](../elsewhere.md)\n",
            "`[in code](docs/nope.md)`\n",
            "```\n[in a fence](docs/nope.md)\n# not a heading\n```\n",
            "[not a heading](#not-a-heading)\n",
        ),
    )
    .unwrap();
    let problems = broken_links(&dir, Path::new("README.md"));
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(problems.len(), 4, "{problems:#?}");
    assert!(problems[0].contains("README.md:4: (docs/nope.md): no file"));
    assert!(problems[1].contains("README.md:5: (docs/a.md#nope)"));
    assert!(problems[2].contains("README.md:6: (../elsewhere.md): leaves the repository"));
    assert!(
        problems[3].contains("README.md:12: (#not-a-heading)"),
        "{problems:#?}"
    );
}

#[test]
fn slugs_are_githubs() {
    assert_eq!(
        slug("Deploying in a delegated administrator account"),
        "deploying-in-a-delegated-administrator-account"
    );
    assert_eq!(
        slug("Change events at scale (`make scale`, second and third runs)"),
        "change-events-at-scale-make-scale-second-and-third-runs"
    );
    assert_eq!(
        slug("Metrics, dashboard, saved queries, alarms"),
        "metrics-dashboard-saved-queries-alarms"
    );
    assert_eq!(
        slug("Re-onboarding one account"),
        "re-onboarding-one-account"
    );
}
