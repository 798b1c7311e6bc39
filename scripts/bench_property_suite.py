"""Runtime of the registry-wide property test, per converter family.

    python scripts/bench_property_suite.py              # 25 examples per entry (CI's setting)
    python scripts/bench_property_suite.py --examples 100 --family conv

Runs the same property as tests/test_registry_parity.py (both I/O layouts) for every
registered torch type and prints seconds per family and per entry, slowest first. The
budget (issue 3): the whole suite under 10 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import collections
import time

import recreate  # noqa: F401  (torch before keras)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recreate import registry
from recreate.testing import assert_parity


def run_entry(torch_type, examples: int) -> float:
    entry = registry.find_entry(torch_type)

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=entry.cases(torch_type), io_layout=st.sampled_from(["torch", "keras"]))
    def check(case, io_layout):
        assert_parity(case.module, case.inputs, tolerance=entry.tolerance, io_layout=io_layout, kwargs=case.kwargs)

    t0 = time.perf_counter()
    check()
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=25)
    ap.add_argument("--family", help="only this converters/<family>.py")
    args = ap.parse_args(argv)
    per_family: dict[str, float] = collections.defaultdict(float)
    rows = []
    failed = []
    for t, entry in registry.entries():
        if entry.cases is None:
            continue
        family = entry.build.__module__.rsplit(".", 1)[-1]
        if args.family and family != args.family:
            continue
        try:
            dt = run_entry(t, args.examples)
        except Exception as e:  # noqa: BLE001 - report and go on
            failed.append((t.__name__, f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"))
            continue
        per_family[family] += dt
        rows.append((dt, family, t.__name__))
    total = sum(per_family.values())
    print(f"{len(rows)} entries x {args.examples} examples: {total:.1f} s")
    for fam, dt in sorted(per_family.items(), key=lambda kv: -kv[1]):
        print(f"  {fam:<16} {dt:7.1f} s")
    print("slowest entries:")
    for dt, fam, name in sorted(rows, reverse=True)[:10]:
        print(f"  {name:<28} {fam:<14} {dt:6.2f} s")
    for name, err in failed:
        print(f"FAILED {name}: {err}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
