#!/usr/bin/env python3
"""Check that the workspace's `rust-version` is true.

A crate's `rust-version` promises the oldest Rust that builds it. It is only
true if it is at least:
  - every locked dependency's own `rust-version`, over the dependency graph
    of the published crates (normal and build dependencies, on Linux); and
  - the language features the published crates' code uses (the table
    below: features with no std API behind them, which clippy's
    `incompatible_msrv` lint, run by CI, does not see).

The machine has one toolchain, so "builds on rust-version" is checked by
these two facts, not by a build on that version. Its limits: a dependency
that declares no `rust-version` is taken at its word (none), and the
feature table holds only what this code uses today (let-chains); syntax
stabilized after 1.88 that is not in the table passes unseen. A build with
a 1.88 toolchain (`cargo +1.88 check`), where one can be installed, is the
stronger check. Optional dependencies are walked too (`--all-features`).

    python3 scripts/check-msrv.py                   exit 1 with what needs more, if anything
    python3 scripts/check-msrv.py --declared 1.87   as if the workspace said 1.87
                                                    (CI's control: it must be refused)
"""
import json
import os
import re
import subprocess
import sys
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Language features the code may use, each with the release that made it
# stable and how to see it in source.
FEATURES = [
    ("let chains (`if let .. && ..`)", (1, 88, 0), re.compile(r"\b(?:if|while)\s+let\b[^{;]*&&|&&\s*let\b")),
]


def version(text):
    parts = [int(p) for p in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))[:3]


def show(v):
    return ".".join(str(p) for p in v[:2]) if v[2] == 0 else ".".join(map(str, v))


def main():
    with open(os.path.join(ROOT, "Cargo.toml"), "rb") as f:
        declared = version(tomllib.load(f)["workspace"]["package"]["rust-version"])
    if sys.argv[1:2] == ["--declared"] and len(sys.argv) == 3:
        declared = version(sys.argv[2])
    elif sys.argv[1:]:
        sys.exit(__doc__)
    meta = json.loads(subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--locked", "--all-features",
         "--filter-platform", "x86_64-unknown-linux-gnu"],
        cwd=ROOT, check=True, capture_output=True, text=True).stdout)
    packages = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    members = set(meta["workspace_members"])
    published = [i for i in members if packages[i].get("publish") != []]

    needs = []  # (version, why)
    seen = set()
    stack = list(published)
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        p = packages[pid]
        if p.get("rust_version") and pid not in members:
            needs.append((version(p["rust_version"]), f"dependency {p['name']} {p['version']}"))
        for dep in nodes[pid]["deps"]:
            kinds = {k["kind"] for k in dep["dep_kinds"]}
            if kinds & {None, "build"}:
                stack.append(dep["pkg"])

    for pid in published:
        src = os.path.join(os.path.dirname(packages[pid]["manifest_path"]), "src")
        for dirpath, _, files in os.walk(src):
            for name in files:
                if not name.endswith(".rs"):
                    continue
                path = os.path.join(dirpath, name)
                with open(path, encoding="utf-8") as f:
                    text = f.read()
                for feature, since, pattern in FEATURES:
                    m = pattern.search(text)
                    if m:
                        line = text.count("\n", 0, m.start()) + 1
                        needs.append((since, f"{feature} in {os.path.relpath(path, ROOT)}:{line}"))

    names = sorted(packages[i]["name"] for i in published)
    highest = max(needs, default=((0, 0, 0), "nothing"))
    over = sorted({(v, why) for v, why in needs if v > declared}, reverse=True)
    print(f"rust-version {show(declared)} declared for {', '.join(names)}; "
          f"{len(seen)} crates in their graph; the most any of it needs: {show(highest[0])} ({highest[1]})")
    if over:
        print(f"error: rust-version {show(declared)} is not true; these need more:", file=sys.stderr)
        for v, why in over[:20]:
            print(f"  {show(v)}: {why}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
