#!/usr/bin/env python3
"""`make structure`: size and shape of the Rust production sources (issue 18).

Walks shared/src, functions/*/src and cli/src (never tests/ or benches/), drops `#[cfg(test)]`
modules (a `#[cfg(test)]` line, then — after any further attributes — `mod name {` up to its
matching brace; a `#[cfg(test)] mod name;` drops the file it names), and prints:

  (a) files over 600 production lines (the file's lines minus its test modules),
  (b) functions over 80 lines (from the `fn` line to its matching closing brace),
  (c) import cycles among shared/src's modules (strongly connected components of size > 1 of
      the graph with an edge X -> Y when module X's files say `use crate::Y...`,
      `use crate::{Y, ...}` or `crate::Y::`; a name `shared/src/lib.rs` re-exports with
      `pub use Y::...` counts as Y),
  (d) the number of `pub` items in shared (lines that, after indentation, start with `pub fn`,
      `pub struct`, `pub enum`, `pub const`, `pub type`, `pub trait`, `pub mod`, `pub use` or
      `pub static`; `pub async fn`/`pub unsafe fn` count as `pub fn`) and of `pub(crate)` items
      (the same keywords after `pub(crate)`).

Brace matching runs on a copy of the source whose comments (line, nested block), string literals
(plain, byte, raw with any number of `#`) and char literals are blanked out, newlines kept, so
braces inside them do not count. Lifetimes (`'a`) are told from char literals (`'a'`).

Stdlib only. `--json` prints one JSON object instead of the text report. Exit status 0 always:
this measures, it does not gate."""

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_FILE_LINES = 600
MAX_FN_LINES = 80
ITEM_KEYWORDS = ("fn", "struct", "enum", "const", "type", "trait", "mod", "use", "static")


def mask(src: str) -> str:
    """The source with comments and string/char literals replaced by spaces (newlines kept)."""
    out = list(src)
    n = len(src)
    i = 0

    def blank(a: int, b: int) -> None:
        for k in range(a, min(b, n)):
            if out[k] != "\n":
                out[k] = " "

    while i < n:
        c = src[i]
        nxt = src[i + 1] if i + 1 < n else ""
        if c == "/" and nxt == "/":
            j = src.find("\n", i)
            j = n if j < 0 else j
            blank(i, j)
            i = j
        elif c == "/" and nxt == "*":
            depth, j = 1, i + 2
            while j < n and depth:
                if src.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif src.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            blank(i, j)
            i = j
        elif (c == "r" or (c == "b" and nxt == "r")) and not _ident_char_before(src, i):
            # Raw string: r"..", r#".."#, br#".."#.
            k = i + (2 if c == "b" else 1)
            hashes = 0
            while k < n and src[k] == "#":
                hashes += 1
                k += 1
            if k < n and src[k] == '"':
                close = '"' + "#" * hashes
                j = src.find(close, k + 1)
                j = n if j < 0 else j + len(close)
                blank(i, j)
                i = j
            else:
                i += 1
        elif c == '"' or (c == "b" and nxt == '"' and not _ident_char_before(src, i)):
            j = i + (2 if c == "b" else 1)
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            blank(i, j + 1)
            i = j + 1
        elif c == "'" or (c == "b" and nxt == "'" and not _ident_char_before(src, i)):
            q = i + (1 if c == "b" else 0)
            if q + 1 < n and src[q + 1] == "\\":
                j = q + 3  # past the backslash and the escaped character
                while j < n and src[j] != "'" and src[j] != "\n":
                    j += 1
                blank(i, j + 1)
                i = j + 1
            elif q + 2 < n and src[q + 2] == "'":
                blank(i, q + 3)
                i = q + 3
            else:  # a lifetime or a label
                i = q + 1
        else:
            i += 1
    return "".join(out)


def _ident_char_before(src: str, i: int) -> bool:
    return i > 0 and (src[i - 1].isalnum() or src[i - 1] == "_")


def matching_brace(masked: str, open_at: int) -> int:
    """Offset of the `}` matching the `{` at open_at (len(masked) - 1 if unbalanced)."""
    depth = 0
    for k in range(open_at, len(masked)):
        ch = masked[k]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return k
    return len(masked) - 1


def line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


CFG_TEST = re.compile(r"^[ \t]*#\[cfg\(test\)\][ \t]*$", re.M)
ATTR_OR_SPACE = re.compile(r"(?:\s|#!?\[[^\]]*\])*")
MOD_HEAD = re.compile(r"(?:pub(?:\([^)]*\))?\s+)?mod\s+([A-Za-z_][A-Za-z0-9_]*)\s*([{;])")


def test_modules(masked: str):
    """[(start_offset, end_offset, name, inline)] of `#[cfg(test)]` modules in the file."""
    found = []
    for m in CFG_TEST.finditer(masked):
        k = ATTR_OR_SPACE.match(masked, m.end()).end()
        head = MOD_HEAD.match(masked, k)
        if not head:
            continue
        if head.group(2) == "{":
            end = matching_brace(masked, head.end() - 1)
            found.append((m.start(), end + 1, head.group(1), True))
        else:
            found.append((m.start(), head.end(), head.group(1), False))
    return found


class SourceFile:
    def __init__(self, path: Path):
        self.path = path
        self.rel = path.relative_to(ROOT).as_posix()
        self.text = path.read_text(encoding="utf-8")
        self.masked = mask(self.text)
        self.tests = test_modules(self.masked)
        # Production text: the masked text with test modules blanked (line numbers kept).
        prod = list(self.masked)
        self.test_lines = 0
        for start, end, _name, _inline in self.tests:
            # Whole lines from the attribute's line to the closing brace's line.
            a = self.masked.rfind("\n", 0, start) + 1
            b = self.masked.find("\n", end)
            b = len(self.masked) if b < 0 else b
            self.test_lines += self.masked.count("\n", a, b) + 1
            for k in range(a, b):
                if prod[k] != "\n":
                    prod[k] = " "
        self.prod = "".join(prod)
        total = self.text.count("\n") + (0 if self.text.endswith("\n") or not self.text else 1)
        self.total_lines = total
        self.prod_lines = total - self.test_lines

    def test_module_files(self):
        """Files named by `#[cfg(test)] mod name;` in this file."""
        out = []
        for _s, _e, name, inline in self.tests:
            if inline:
                continue
            base = self.path.parent
            if self.path.name not in ("lib.rs", "main.rs", "mod.rs"):
                base = base / self.path.stem
            for cand in (base / f"{name}.rs", base / name / "mod.rs"):
                if cand.exists():
                    out.append(cand.resolve())
        return out


FN_HEAD = re.compile(r"\bfn\s+([A-Za-z_][A-Za-z0-9_]*)")


def functions(sf: SourceFile):
    """[(name, line, length)] of fn items with bodies in production code."""
    out = []
    text = sf.prod
    for m in FN_HEAD.finditer(text):
        # The body starts at the first `{` before any `;` (a `;` first: a declaration only).
        k = m.end()
        depth_paren = 0
        while k < len(text):
            ch = text[k]
            if ch in "([":
                depth_paren += 1
            elif ch in ")]":
                depth_paren -= 1
            elif ch == ";" and depth_paren <= 0:
                k = -1
                break
            elif ch == "{" and depth_paren <= 0:
                break
            k += 1
        if k < 0 or k >= len(text):
            continue
        end = matching_brace(text, k)
        start_line = line_of(text, m.start())
        end_line = line_of(text, end)
        out.append((m.group(1), start_line, end_line - start_line + 1))
    return out


def production_files():
    roots = [ROOT / "shared" / "src", ROOT / "cli" / "src"]
    roots += sorted(p for p in (ROOT / "functions").glob("*/src") if p.is_dir())
    files = []
    for r in roots:
        if not r.is_dir():
            continue
        for p in sorted(r.rglob("*.rs")):
            parts = set(p.relative_to(r).parts[:-1])
            if parts & {"tests", "benches"}:
                continue
            files.append(p.resolve())
    parsed = {p: SourceFile(p) for p in files}
    excluded = set()
    for sf in parsed.values():
        excluded.update(sf.test_module_files())
    return [sf for p, sf in parsed.items() if p not in excluded]


USE_CRATE = re.compile(r"\buse\s+crate::(\{[^;]*\}|[A-Za-z_][A-Za-z0-9_]*)", re.S)
CRATE_PATH = re.compile(r"\bcrate::([A-Za-z_][A-Za-z0-9_]*)\s*::")
LIB_REEXPORT = re.compile(r"^\s*pub\s+use\s+([A-Za-z_][A-Za-z0-9_]*)::(\{[^;]*\}|[A-Za-z_][A-Za-z0-9_]*)", re.M | re.S)


def top_level_names(group: str):
    """Top-level names in `{a, b::c, d::{e, f}}` (or a single name)."""
    if not group.startswith("{"):
        return [group]
    inner = group[1:-1]
    names, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            names.append(cur)
            cur = ""
        else:
            cur += ch
    names.append(cur)
    out = []
    for n in names:
        n = n.strip()
        m = re.match(r"[A-Za-z_][A-Za-z0-9_]*", n)
        if m:
            out.append(m.group(0))
    return out


def shared_modules(files):
    """{module: [SourceFile]} for shared/src's top-level modules (lib.rs left out)."""
    src = ROOT / "shared" / "src"
    mods = {}
    for sf in files:
        try:
            rel = sf.path.relative_to(src.resolve())
        except ValueError:
            continue
        if rel.parts == ("lib.rs",):
            continue
        name = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        mods.setdefault(name, []).append(sf)
    return mods


def import_cycles(files):
    mods = shared_modules(files)
    lib = next((sf for sf in files if sf.rel == "shared/src/lib.rs"), None)
    reexport = {}
    if lib:
        for m in LIB_REEXPORT.finditer(lib.prod):
            for name in top_level_names(m.group(2)):
                reexport[name] = m.group(1)
    edges = {m: set() for m in mods}
    for x, sfs in mods.items():
        for sf in sfs:
            refs = []
            for m in USE_CRATE.finditer(sf.prod):
                refs += top_level_names(m.group(1))
            refs += [m.group(1) for m in CRATE_PATH.finditer(sf.prod)]
            for r in refs:
                y = r if r in mods else reexport.get(r)
                if y and y != x and y in mods:
                    edges[x].add(y)
    sccs = [sorted(c) for c in tarjan(edges) if len(c) > 1]
    return sorted(sccs), {k: sorted(v) for k, v in sorted(edges.items())}


def tarjan(graph):
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


KW = "|".join(ITEM_KEYWORDS)
PUB_ITEM = re.compile(rf"^[ \t]*pub[ \t]+(?:(?:async|unsafe|extern(?:[ \t]+\"[^\"]*\")?)[ \t]+)*(?:{KW})\b", re.M)
PUB_CRATE_ITEM = re.compile(
    rf"^[ \t]*pub\(crate\)[ \t]+(?:(?:async|unsafe|extern(?:[ \t]+\"[^\"]*\")?)[ \t]+)*(?:{KW})\b", re.M)


def pub_counts(files):
    pub = crate = 0
    for sf in files:
        if not sf.rel.startswith("shared/src/"):
            continue
        # Production lines, literals blanked (a `pub fn` inside a string does not count); the
        # masking keeps `extern "C"`'s quotes as blanks, which the patterns allow for.
        pub += len(PUB_ITEM.findall(sf.prod))
        crate += len(PUB_CRATE_ITEM.findall(sf.prod))
    return pub, crate


def measure():
    files = production_files()
    big_files = sorted(
        ({"file": sf.rel, "lines": sf.prod_lines, "total_lines": sf.total_lines}
         for sf in files if sf.prod_lines > MAX_FILE_LINES),
        key=lambda d: (-d["lines"], d["file"]))
    long_fns = []
    for sf in files:
        for name, line, length in functions(sf):
            if length > MAX_FN_LINES:
                long_fns.append({"file": sf.rel, "line": line, "fn": name, "lines": length})
    long_fns.sort(key=lambda d: (-d["lines"], d["file"], d["line"]))
    cycles, edges = import_cycles(files)
    pub, crate = pub_counts(files)
    return {
        "limits": {"file_lines": MAX_FILE_LINES, "fn_lines": MAX_FN_LINES},
        "files_scanned": len(files),
        "files_over_limit": big_files,
        "functions_over_limit": long_fns,
        "shared_import_cycles": cycles,
        "shared_import_edges": edges,
        "shared_pub_items": pub,
        "shared_pub_crate_items": crate,
    }


def report(r) -> str:
    lim = r["limits"]
    out = [f"{r['files_scanned']} production files scanned"]
    out.append(f"\n(a) files over {lim['file_lines']} production lines: {len(r['files_over_limit'])}")
    for f in r["files_over_limit"]:
        out.append(f"  {f['file']}: {f['lines']} (file {f['total_lines']})")
    out.append(f"\n(b) functions over {lim['fn_lines']} lines: {len(r['functions_over_limit'])}")
    for f in r["functions_over_limit"]:
        out.append(f"  {f['file']}:{f['line']} {f['fn']}: {f['lines']}")
    out.append(f"\n(c) import cycles among shared/src modules: {len(r['shared_import_cycles'])}")
    for c in r["shared_import_cycles"]:
        out.append(f"  {' <-> '.join(c)}")
    out.append(f"\n(d) shared pub items: {r['shared_pub_items']}, "
               f"pub(crate) items: {r['shared_pub_crate_items']}")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    r = measure()
    if args.json:
        print(json.dumps(r, indent=2))
    else:
        print(report(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
