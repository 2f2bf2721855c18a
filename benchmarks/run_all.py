"""Run every benchmark in this folder with --json and print one combined JSON object (`make bench`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    results, failed = {}, []
    for script in sorted(HERE.glob("*.py")):
        if script.name == Path(__file__).name or script.name.startswith("_"):
            continue
        print(f"running {script.name} ...", file=sys.stderr)
        done = subprocess.run([sys.executable, str(script), "--json"], capture_output=True, text=True)
        if done.returncode != 0:
            failed.append(script.name)
            results[script.stem] = {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
            continue
        results[script.stem] = json.loads(done.stdout)
    print(json.dumps(results, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
