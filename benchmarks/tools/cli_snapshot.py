"""Run the README's pipeline through the CLI and fingerprint every output, to compare two versions of uqf.

A restructuring must not change what any command computes. This script runs the commands of the
README and docs (prepare, embed-text, train-gcn, fuse with its baselines and ``--apply``, quantize
with ``--apply`` and the LC-Rec index, inspect-sids, train-rec for tiger / sasrec / pop / lightgcn,
evaluate, recommend) on the embedded Office data with small budgets and one torch thread, then
writes the sha256 of every output file and of every ``--json`` answer. Timing fields (any key with
``second``, ``time`` or ``per_s`` in its name) are dropped from JSON before hashing; a model directory
is fingerprinted by its weights and the SIDs copy.

    UQF_THREADS=1 .venv/bin/python -m benchmarks.tools.cli_snapshot --work runs/snap_before --out before.json
    ... (switch versions) ...
    UQF_THREADS=1 .venv/bin/python -m benchmarks.tools.cli_snapshot --work runs/snap_after --out after.json
    .venv/bin/python -m benchmarks.tools.cli_snapshot --compare before.json after.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

SKIP_KEY_PARTS = ("second", "time", "per_s", "path", "output", "workdir")


def steps(w: Path) -> list[tuple[str, list[str], list[Path]]]:
    """(name, uqf arguments, outputs to fingerprint) in pipeline order."""
    ds, text, collab = w / "ds", w / "text.st", w / "collab.st"
    seed = ["--seed", "0"]
    return [
        ("prepare", ["prepare", "builtin:office", "-o", str(ds)], [ds / "items.jsonl", ds / "sequences.jsonl"]),
        ("embed-text", ["embed-text", str(ds), "-o", str(text)], [text]),
        ("train-gcn", ["train-gcn", str(ds), "-o", str(collab), "--epochs", "20", "--eval-every", "5", *seed],
         [collab]),
        ("fuse", ["fuse", "--text", str(text), "--collab", str(collab), "--dataset", str(ds), "-o",
                  str(w / "unified.st"), "--save-model", str(w / "fuser.st"), "--epochs", "1", *seed],
         [w / "unified.st", w / "fuser.st"]),
        ("fuse-concat", ["fuse", "--method", "concat", "--text", str(text), "--collab", str(collab), "--dataset",
                         str(ds), "-o", str(w / "concat.st"), *seed], [w / "concat.st"]),
        ("fuse-apply", ["fuse", "--apply", str(w / "fuser.st"), "--text", str(text), "-o", str(w / "applied.st")],
         [w / "applied.st"]),
        ("quantize", ["quantize", str(w / "unified.st"), "-o", str(w / "sids.jsonl"), "--save-model",
                      str(w / "quantizer.st"), "--format", "lcrec", "--epochs", "20", *seed],
         [w / "sids.jsonl", w / "quantizer.st"]),
        ("quantize-apply", ["quantize", "--apply", str(w / "quantizer.st"), str(w / "applied.st"), "-o",
                            str(w / "sids_applied.jsonl")], [w / "sids_applied.jsonl"]),
        ("inspect-sids", ["inspect-sids", str(w / "sids.jsonl"), "--dataset", str(ds), "--text", str(text),
                          "--collab", str(collab)], []),
        ("train-tiger", ["train-rec", str(ds), "--sids", str(w / "sids.jsonl"), "-o", str(w / "tiger"),
                         "--backbone", "tiger", "--preset", "small", "--epochs", "1", "--eval-users", "100", *seed],
         [w / "tiger"]),
        ("evaluate-tiger", ["evaluate", str(w / "tiger"), str(ds), "--split", "test", "--max-users", "300"], []),
        ("recommend", ["recommend", str(w / "tiger"), str(ds), "--history", "{history}"], []),
        ("train-sasrec", ["train-rec", str(ds), "-o", str(w / "sasrec"), "--backbone", "sasrec", "--epochs", "2",
                          *seed], [w / "sasrec"]),
        ("evaluate-sasrec", ["evaluate", str(w / "sasrec"), str(ds), "--split", "test"], []),
        ("train-pop", ["train-rec", str(ds), "-o", str(w / "pop"), "--backbone", "pop"], [w / "pop"]),
        ("evaluate-pop", ["evaluate", str(w / "pop"), str(ds), "--split", "valid", "--baseline"], []),
        ("train-lightgcn", ["train-rec", str(ds), "-o", str(w / "lightgcn"), "--backbone", "lightgcn", "--epochs",
                            "20", *seed], [w / "lightgcn"]),
        ("evaluate-lightgcn", ["evaluate", str(w / "lightgcn"), str(ds), "--split", "test"], []),
    ]


def first_history(ds: Path) -> str:
    """The first user's first three items, comma-separated (a history that exists in any Office dataset)."""
    with open(ds / "sequences.jsonl", encoding="utf-8") as f:
        return ",".join(json.loads(f.readline())["item_ids"][:3])


def scrub(obj: Any) -> Any:
    """JSON without timing and path fields (they differ between runs and work directories)."""
    if isinstance(obj, dict):
        return {k: scrub(v) for k, v in obj.items() if not any(p in k.lower() for p in SKIP_KEY_PARTS)}
    if isinstance(obj, list):
        return [scrub(v) for v in obj]
    return obj


def file_digest(path: Path) -> str:
    if path.is_dir():  # a model directory: its weights and SIDs copy
        parts = sorted(p for p in path.iterdir() if p.suffix in (".safetensors", ".jsonl") or p.name == "sids.jsonl")
        return hashlib.sha256("".join(f"{p.name}:{file_digest(p)}" for p in parts).encode()).hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(work: Path) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "UQF_THREADS": os.environ.get("UQF_THREADS", "1")}
    out: dict[str, Any] = {}
    for name, argv, outputs in steps(work):
        done = work / f".{name}.snapshot.json"  # a rerun with the same --work resumes after the last finished step
        if done.exists():
            out[name] = json.loads(done.read_text(encoding="utf-8"))
            continue
        force = [] if argv[0] == "recommend" else ["--force"]  # recommend writes nothing
        if "{history}" in argv:
            argv = [first_history(work / "ds") if a == "{history}" else a for a in argv]
        cmd = [sys.executable, "-m", "uqf_cli", *argv, *force, "--quiet", "--json"]
        res = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if res.returncode:
            sys.exit(f"error: step {name} failed (exit {res.returncode}): {res.stderr.strip()[-2000:]}")
        answer = json.loads(res.stdout) if res.stdout.strip() else None
        out[name] = {"json": hashlib.sha256(json.dumps(scrub(answer), sort_keys=True).encode()).hexdigest(),
                     "files": {p.name: file_digest(p) for p in outputs}, "answer": scrub(answer)}
        done.write_text(json.dumps(out[name]), encoding="utf-8")
        print(f"{name}: ok", file=sys.stderr, flush=True)
    return out


def compare(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    diffs = []
    for name in sorted(set(a) | set(b)):
        if name not in a or name not in b:
            diffs.append(f"{name}: only in one snapshot")
            continue
        if a[name]["json"] != b[name]["json"]:
            diffs.append(f"{name}: --json answer differs")
        for f in sorted(set(a[name]["files"]) | set(b[name]["files"])):
            if a[name]["files"].get(f) != b[name]["files"].get(f):
                diffs.append(f"{name}: {f} differs")
    return diffs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, help="scratch directory for the pipeline's files")
    ap.add_argument("--out", type=Path, help="write the snapshot JSON here")
    ap.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    args = ap.parse_args(argv)
    if args.compare:
        a, b = (json.loads(p.read_text(encoding="utf-8")) for p in args.compare)
        diffs = compare(a, b)
        print("\n".join(diffs) if diffs else f"identical: {len(a)} steps, every output and --json answer")
        return 1 if diffs else 0
    if not (args.work and args.out):
        ap.error("--work and --out are needed (or --compare BEFORE AFTER)")
    snap = run(args.work)
    args.out.write_text(json.dumps(snap, indent=1, sort_keys=True), encoding="utf-8")
    print(f"wrote {args.out}: {len(snap)} steps", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
