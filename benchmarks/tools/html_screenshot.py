"""Render an ``inspect-sids --html`` report in headless Chromium, check its console, save a screenshot.

What is checked, honestly: Chromium runs headless with a fresh profile and no network services
(``--disable-background-networking`` etc.), loads the page from ``file://`` and writes a screenshot;
with ``--enable-logging=stderr --v=0`` it logs page console messages and uncaught exceptions to
stderr, which the script scans for ``Uncaught``, ``ERROR:CONSOLE``, ``CONSOLE(``-level errors and
failed loads (``net::ERR_``, ``Failed to load``). Before that, a control page that throws on
purpose is rendered the same way, and the script refuses to pass if that error is *not* seen (so a
Chromium build that logs nothing cannot produce a false "no errors"). The report itself holds no
script (only an inert JSON block), no link and no external image: the unit tests check that too.

    .venv/bin/python -m benchmarks.tools.html_screenshot REPORT.html --out screenshot.png [--json result.json]

Exit 0 when the report rendered without console errors and the control page's error was detected.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.tools.command import command_line

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
         "--enable-logging=stderr", "--v=0"]
ERROR_PATTERNS = [r"Uncaught", r"ERROR:CONSOLE", r"net::ERR_", r"Failed to load"]
CONTROL_PAGE = ("<!DOCTYPE html><html><body><p>control</p><script>throw new Error('uqf-selftest');</script>"
                "</body></html>")


def find_chromium(explicit: str | None) -> str:
    for candidate in [explicit, "/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")]:
        if candidate and Path(candidate).exists():
            return candidate
    sys.exit("error: chromium not found (Debian: apt-get install -y chromium), or pass --chromium PATH")


def render(chromium: str, page: Path, shot: Path, size: str, timeout: int) -> str:
    """Run Chromium once on ``page``; returns its stderr (the console log)."""
    with tempfile.TemporaryDirectory(prefix="uqf-chromium-") as profile:
        cmd = [chromium, *FLAGS, f"--user-data-dir={profile}", f"--window-size={size}",
               f"--screenshot={shot}", page.resolve().as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if not shot.exists():
        sys.exit(f"error: chromium wrote no screenshot (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return proc.stderr


def console_errors(log: str) -> list[str]:
    return [line for line in log.splitlines() if any(re.search(p, line) for p in ERROR_PATTERNS)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("html", type=Path)
    ap.add_argument("--out", type=Path, required=True, help="screenshot PNG")
    ap.add_argument("--json", type=Path, help="also write the result record here")
    ap.add_argument("--chromium")
    ap.add_argument("--window-size", default="1400,2600")
    ap.add_argument("--timeout", type=int, default=120)
    args = ap.parse_args()
    chromium = find_chromium(args.chromium)
    version = subprocess.run([chromium, "--version"], capture_output=True, text=True, check=False).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="uqf-control-") as tmp:
        control = Path(tmp) / "control.html"
        control.write_text(CONTROL_PAGE, encoding="utf-8")
        control_errors = console_errors(render(chromium, control, Path(tmp) / "control.png", "400,300",
                                               args.timeout))
    control_seen = any("uqf-selftest" in line for line in control_errors)
    errors = console_errors(render(chromium, args.html, args.out, args.window_size, args.timeout))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            check=False).stdout.strip()
    record = {"command": command_line("benchmarks.tools.html_screenshot", sys.argv[1:]), "commit": commit,
              "machine": f"{platform.node()} {platform.machine()}", "chromium": version,
              "control_error_detected": control_seen, "console_errors": errors,
              "screenshot": str(args.out), "screenshot_bytes": args.out.stat().st_size}
    print(json.dumps(record, indent=2))
    if args.json:
        args.json.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    if not control_seen:
        sys.exit("error: the control page's deliberate error was not seen in the log: this check cannot "
                 "see console errors with this Chromium")
    if errors:
        sys.exit(f"error: {len(errors)} console error line(s) while rendering {args.html}")


if __name__ == "__main__":
    main()
