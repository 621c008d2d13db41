#!/usr/bin/env python3
"""Versioned release artifacts for a team that deploys without Rust (`make release VERSION=x.y.z`).

From the bootstraps `make package` built (target/lambda/<binary>/bootstrap) this writes
dist/ct-entitlements-<version>/:

  <binary>.zip          one per function binary, holding `bootstrap` (mode 0755)
  template-<arch>.yaml  template.yaml with each function's CodeUri pointing at its zip, no
                        rust-cargolambda build Metadata, Architecture defaulting to <arch>
  RELEASE-NOTES.md      the version's CHANGELOG.md entry, naming the architecture
  README.md             a copy (the template's AWS::ServerlessRepo::Application ReadmeUrl)
  SHA256SUMS            `sha256sum -c` format, every file above

and dist/ct-entitlements-<version>-<arch>.tar.gz holding that directory (its checksum beside it,
.tar.gz.sha256). Zips and tarball are
deterministic (fixed timestamps, owners, modes and order), so two runs over the same bootstraps
give the same checksums. <arch> is read from the bootstraps' ELF headers, never assumed.

Refuses (exit 2) a version other than Cargo.toml's workspace version, a version with no
`## <version>` heading in CHANGELOG.md, and missing or mixed-architecture bootstraps.
Stdlib only (Python 3.11).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import re
import shutil
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

# template.yaml's BuildProperties.Binary values; AccountBackfillFunction reuses account-lifecycle.
BINARIES = [
    "account-lifecycle",
    "reconciler",
    "org-bootstrap",
    "catalog-provisioning",
    "account-vending",
    "notifier",
]
# ELF e_machine -> the Lambda architecture name.
ELF_MACHINES = {0x3E: "x86_64", 0xB7: "arm64"}
# The zip format's earliest timestamp: what every entry carries.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


class Refused(Exception):
    pass


def workspace_version(root: Path) -> str:
    with open(root / "Cargo.toml", "rb") as f:
        return tomllib.load(f)["workspace"]["package"]["version"]


def changelog_entry(root: Path, version: str) -> str:
    """The text under `## <version>` (a heading such as `## 0.2.0 — 2026-11-30` counts) up to
    the next `## ` heading."""
    lines = (root / "CHANGELOG.md").read_text(encoding="utf-8").splitlines()
    heading = re.compile(rf"^## {re.escape(version)}(\s|$)")
    for i, line in enumerate(lines):
        if heading.match(line):
            end = next(
                (j for j in range(i + 1, len(lines)) if lines[j].startswith("## ")),
                len(lines),
            )
            return "\n".join(lines[i:end]).rstrip() + "\n"
    raise Refused(f"CHANGELOG.md has no `## {version}` entry: write it before releasing")


def check_version(root: Path, version: str) -> str:
    if not re.fullmatch(r"\d+\.\d+\.\d+", version):
        raise Refused(f"VERSION={version!r} is not x.y.z")
    workspace = workspace_version(root)
    if version != workspace:
        raise Refused(
            f"VERSION={version} is not the workspace version in Cargo.toml ({workspace}): "
            "bump [workspace.package] version (and the template's SemanticVersion) first"
        )
    return changelog_entry(root, version)


def elf_architecture(path: Path) -> str:
    head = path.read_bytes()[:20]
    if head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
        raise Refused(f"{path} is not a 64-bit little-endian ELF executable")
    machine = int.from_bytes(head[18:20], "little")
    if machine not in ELF_MACHINES:
        raise Refused(f"{path}: ELF machine {machine:#x} is neither x86_64 nor arm64")
    return ELF_MACHINES[machine]


def bootstraps(lambda_dir: Path) -> tuple[dict[str, Path], str]:
    found, missing = {}, []
    for binary in BINARIES:
        path = lambda_dir / binary / "bootstrap"
        (found.__setitem__(binary, path) if path.is_file() else missing.append(str(path)))
    if missing:
        raise Refused("missing bootstraps (run `make package`): " + ", ".join(missing))
    archs = {b: elf_architecture(p) for b, p in found.items()}
    if len(set(archs.values())) != 1:
        raise Refused(f"bootstraps of different architectures: {archs}")
    return found, next(iter(archs.values()))


def write_zip(bootstrap: Path, dest: Path) -> None:
    info = zipfile.ZipInfo("bootstrap", date_time=ZIP_EPOCH)
    info.create_system = 3  # Unix: external_attr holds the mode
    info.external_attr = (0o100755 & 0xFFFF) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(dest, "w") as z:
        z.writestr(info, bootstrap.read_bytes(), compresslevel=9)


def packaged_template(text: str, version: str, arch: str) -> str:
    """template.yaml, rewritten line by line (comments and layout kept): every
    AWS::Serverless::Function's `CodeUri: .` becomes `CodeUri: <binary>.zip`, its rust-cargolambda
    BuildMethod/BuildProperties go, the Architecture parameter defaults to `arch`, and the
    Description starts with the release and its architecture."""
    lines = text.splitlines()
    # Split the Resources section into resources: a line of two-space indentation starts one.
    out: list[str] = []
    section = None
    i = 0
    functions = 0
    while i < len(lines):
        line = lines[i]
        if re.match(r"^\S", line):
            section = line.split(":")[0]
            out.append(line)
            if line.startswith("Description: >"):
                out.append(f"  ct-entitlements {version}, built for {arch}.")
            i += 1
            continue
        if section in ("Resources", "Parameters") and re.match(r"^  \S", line):
            j = i + 1
            while j < len(lines) and not re.match(r"^(  )?\S", lines[j]):
                j += 1
            block = lines[i:j]
            if section == "Parameters" and line == "  Architecture:":
                block = [re.sub(r"^    Default: .*$", f"    Default: {arch}", b) for b in block]
                if f"    Default: {arch}" not in block:
                    raise Refused("template.yaml: the Architecture parameter has no Default")
            elif section == "Resources" and "    Type: AWS::Serverless::Function" in block:
                block = function_block(block, line)
                functions += 1
            out.extend(block)
            i = j
            continue
        out.append(line)
        i += 1
    if functions == 0:
        raise Refused("template.yaml: no AWS::Serverless::Function found")
    result = "\n".join(out) + "\n"
    if "rust-cargolambda" in result or re.search(r"^\s+CodeUri: \.\s*$", result, re.M):
        raise Refused("template.yaml: a function's build Metadata or CodeUri was not rewritten")
    return result


def function_block(block: list[str], name: str) -> list[str]:
    binary = None
    kept: list[str] = []
    skip_indent = None
    for line in block:
        indent = len(line) - len(line.lstrip(" "))
        if skip_indent is not None:
            if line.strip() and indent > skip_indent:
                m = re.match(r"^\s+Binary:\s*(\S+)\s*$", line)
                if m:
                    binary = m.group(1)
                continue
            skip_indent = None
        if re.match(r"^      BuildMethod:\s*rust-cargolambda\s*$", line):
            continue
        if re.match(r"^      BuildProperties:\s*$", line):
            skip_indent = indent
            continue
        kept.append(line)
    if binary not in BINARIES:
        raise Refused(f"template.yaml {name.strip()} builds {binary!r}, not one of {BINARIES}")
    uris = [k for k, line in enumerate(kept) if re.match(r"^      CodeUri:\s*\.\s*$", line)]
    if len(uris) != 1:
        raise Refused(f"template.yaml {name.strip()}: expected one `CodeUri: .`")
    kept[uris[0]] = f"      CodeUri: {binary}.zip"
    # A Metadata left with nothing under it goes too.
    for k, line in enumerate(kept):
        if line == "    Metadata:" and (k + 1 == len(kept) or not kept[k + 1].startswith("      ")):
            del kept[k]
            break
    return kept


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_tarball(directory: Path, dest: Path) -> None:
    def normalized(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
        info.mode = 0o755 if info.isdir() else 0o644
        return info

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(directory, arcname=directory.name, recursive=False, filter=normalized)
        for path in sorted(directory.iterdir()):
            tar.add(path, arcname=f"{directory.name}/{path.name}", filter=normalized)
    with open(dest, "wb") as f, gzip.GzipFile(
        filename="", mode="wb", fileobj=f, mtime=0, compresslevel=9
    ) as gz:
        gz.write(buf.getvalue())


def release(root: Path, version: str, lambda_dir: Path, out: Path) -> Path:
    notes = check_version(root, version)
    found, arch = bootstraps(lambda_dir)
    template = packaged_template((root / "template.yaml").read_text(encoding="utf-8"), version, arch)
    dest = out / f"ct-entitlements-{version}"
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for binary, path in found.items():
        write_zip(path, dest / f"{binary}.zip")
    template_name = f"template-{arch}.yaml"
    (dest / template_name).write_text(template, encoding="utf-8")
    (dest / "RELEASE-NOTES.md").write_text(
        f"# ct-entitlements {version} ({arch})\n\n"
        f"The functions in this release are built for {arch}; {template_name} defaults the\n"
        f"Architecture parameter to {arch}. docs/deploy.md in the repository says how to deploy it\n"
        "and how to roll back.\n\n"
        + notes.replace(f"## {version}", f"## Changes in {version}", 1),
        encoding="utf-8",
    )
    shutil.copyfile(root / "README.md", dest / "README.md")
    sums = "".join(
        f"{sha256(p)}  {p.name}\n" for p in sorted(dest.iterdir()) if p.name != "SHA256SUMS"
    )
    (dest / "SHA256SUMS").write_text(sums, encoding="utf-8")
    tarball = out / f"ct-entitlements-{version}-{arch}.tar.gz"
    write_tarball(dest, tarball)
    (out / f"{tarball.name}.sha256").write_text(f"{sha256(tarball)}  {tarball.name}\n")
    return dest


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("version")
    p.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    p.add_argument("--lambda-dir", type=Path, help="default: <root>/target/lambda")
    p.add_argument("--out", type=Path, help="default: <root>/dist")
    p.add_argument("--check", action="store_true", help="only check the version and changelog")
    a = p.parse_args()
    try:
        if a.check:
            check_version(a.root, a.version)
            return 0
        dest = release(
            a.root, a.version, a.lambda_dir or a.root / "target/lambda", a.out or a.root / "dist"
        )
    except Refused as e:
        print(f"release refused: {e}", file=sys.stderr)
        return 2
    for path in sorted(dest.iterdir()):
        print(f"{path.stat().st_size:>10}  {path}")
    print((dest / "SHA256SUMS").read_text(), end="")
    for tarball in sorted(dest.parent.glob(f"{dest.name}-*.tar.gz.sha256")):
        print(tarball.read_text(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
