"""Run the benchmarks: `python -m bench` runs every bench/*.py module's main() in turn;
`python -m bench capture timeline` runs the named ones only (`make bench` runs them all).

Each module prints its own figures; a module that fails is reported and the others still run,
and the exit status is non-zero if any failed.
"""
from __future__ import annotations

import importlib
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent


def available() -> list[str]:
    return sorted(path.stem for path in HERE.glob("*.py") if not path.stem.startswith("_"))


def main(argv: list[str]) -> int:
    names = available()
    if any(arg in ("-h", "--help") for arg in argv):
        print(__doc__.strip())
        print(f"\nBenchmarks: {', '.join(names)}")
        return 0
    unknown = [arg for arg in argv if arg not in names]
    if unknown:
        print(f"Unknown benchmark {', '.join(unknown)}; there are: {', '.join(names)}", file=sys.stderr)
        return 2
    root = str(HERE.parent)
    if root not in sys.path:
        sys.path.insert(0, root)  # `intercity` and `bench` import from the checkout
    failed = []
    for name in argv or names:
        print(f"== bench/{name}.py", flush=True)
        started = time.perf_counter()
        try:
            module = importlib.import_module(f"bench.{name}")
            module.main()
        except Exception:
            traceback.print_exc()
            failed.append(name)
        print(f"== bench/{name}.py {'FAILED' if name in failed else 'done'} in "
              f"{time.perf_counter() - started:.0f} s\n", flush=True)
    if failed:
        print(f"Failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
