#!/usr/bin/env python3
"""The simulation's controls: each defect issue 21 fixed, put back one at a
time (worker-core/tests/simulation/defects/*.patch), must be found by the
simulation within the seed budget CI runs (SIM_SEEDS, 6000 by default:
DEFAULT_SEEDS in worker-core/tests/simulation/main.rs).

For each patch: apply it to a scratch worktree of HEAD, build, run the
simulation until its first failing seed, and record which seed and which
invariants found the defect. Exits 1 if any defect goes unfound (or a patch
no longer applies: a control that rotted is a control lost).

Some defects only the long mode finds (the review's and the long sweep's
own finds, tens of thousands of seeds in): their patch says `Search: long`
in its header. CI skips them; `--long` runs every patch on a release build
with a budget of 500,000 seeds (up to about 15 minutes per rare defect).

    python3 scripts/sim-controls.py                 # CI: every patch found within CI's budget
    python3 scripts/sim-controls.py --long          # every patch, the long budget, release build
    python3 scripts/sim-controls.py --seeds 500 04  # one patch (by its number), another budget
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFECTS = ROOT / "worker-core/tests/simulation/defects"


def default_seeds():
    """The budget the simulation runs by default (one place: main.rs)."""
    text = (ROOT / "worker-core/tests/simulation/main.rs").read_text()
    return int(re.search(r"const DEFAULT_SEEDS: u64 = (\d+);", text).group(1))


LONG_SEEDS = 500_000


def is_long(patch):
    """The patch's header (before the diff) says `Search: long`."""
    header = patch.read_text().split("\ndiff --git", 1)[0]
    return re.search(r"^Search: long$", header, re.M) is not None


def run(cmd, **kw):
    return subprocess.run(cmd, text=True, capture_output=True, **kw)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=int(os.environ.get("SIM_SEEDS", default_seeds())))
    ap.add_argument("--long", action="store_true", help="every patch, 500,000 seeds, release build")
    ap.add_argument("only", nargs="*", help="patch numbers (01, 13, ...) to run; default all")
    args = ap.parse_args()
    if args.long and "--seeds" not in sys.argv:
        args.seeds = LONG_SEEDS

    patches = sorted(DEFECTS.glob("*.patch"))
    if not args.long and not args.only:
        skipped = [p.stem for p in patches if is_long(p)]
        patches = [p for p in patches if not is_long(p)]
        if skipped:
            print(f"long-mode only (run with --long): {', '.join(skipped)}", flush=True)
    if args.only:
        patches = [p for p in patches if p.name.split("-")[0] in args.only]
    if not patches:
        sys.exit(f"no patches in {DEFECTS}")
    # Its own target dir: a worktree's crates hash like the main tree's, and
    # sharing one would rebuild (or reuse) the wrong artifacts.
    target = Path(os.environ.get("SIM_CONTROLS_TARGET", ROOT / "target/sim-controls"))
    scratch = Path(tempfile.mkdtemp(prefix="sim-controls-"))
    tree = scratch / "tree"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), "HEAD"],
                   check=True, capture_output=True)
    env = dict(os.environ, CARGO_TARGET_DIR=str(target), SIM_SEEDS=str(args.seeds),
               SIM_STOP_AT_FIRST="1", CARGO_TERM_COLOR="never")
    env.pop("SIM_SEED", None)
    rows, missed, stale = [], [], []
    try:
        for patch in patches:
            name = patch.stem
            started = time.monotonic()
            applied = run(["git", "-C", str(tree), "apply", str(patch)])
            if applied.returncode != 0:
                rows.append((name, "patch does not apply", "", ""))
                stale.append(name)
                print(f"{name}: the patch does not apply: {applied.stderr.strip()}", flush=True)
                continue
            profile = ["--release"] if args.long else []
            test = run(["cargo", "test", "-q", "--locked", *profile, "-p", "sfn-worker-core", "--test",
                        "simulation", "simulation"], cwd=tree, env=env)
            out = test.stdout + test.stderr
            seed = re.search(r"^seed (\d+): (.*)$", out, re.M)
            seconds = round(time.monotonic() - started)
            if test.returncode != 0 and seed:
                found = sorted(set(re.findall(r"\[([a-z-]+)\]", out)))
                rows.append((name, str(int(seed.group(1)) + 1), " ".join(found), f"{seconds} s"))
                print(f"{name}: found at seed {seed.group(1)} ({', '.join(found)}) in {seconds} s", flush=True)
            else:
                rows.append((name, "NOT FOUND", "", f"{seconds} s"))
                missed.append(name)
                tail = "\n".join(out.splitlines()[-15:])
                print(f"{name}: NOT FOUND within {args.seeds} seeds (exit {test.returncode})\n{tail}", flush=True)
            run(["git", "-C", str(tree), "checkout", "--", "."])
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], capture_output=True)
        shutil.rmtree(scratch, ignore_errors=True)

    print(f"\n| defect put back | seeds until found (budget {args.seeds}) | invariants that caught it | time |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} |")
    if missed or stale:
        sys.exit("; ".join(filter(None, (
            missed and f"not found: {', '.join(missed)}",
            stale and f"do not apply to this tree (rebase them): {', '.join(stale)}",
        ))))


if __name__ == "__main__":
    main()
