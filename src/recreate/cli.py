"""The `recreate` command line."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recreate", description="PyTorch -> Keras 3 recreation with proof")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("versions", help="print the running versions and flag known-bad combinations")
    args = parser.parse_args(argv)
    if args.cmd == "versions":
        from .versions import problems, report

        print(report())
        return 1 if any(p.startswith("torch ") and "not a matching pair" in p for p in problems()) else 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
