"""The `recreate` command line."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recreate", description="PyTorch -> Keras 3 recreation with proof")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("versions", help="print the running versions and flag known-bad combinations")
    from .export import add_convert_parser
    from .scaffold import add_scaffold_parser
    from .zoo import add_zoo_parser, zoo_command

    add_convert_parser(sub)
    add_scaffold_parser(sub)
    add_zoo_parser(sub)
    args = parser.parse_args(argv)
    if args.cmd == "versions":
        from .versions import problems, report

        print(report())
        return 1 if any(p.startswith("torch ") and "not a matching pair" in p for p in problems()) else 0
    if args.cmd == "zoo":
        return zoo_command(args)
    if args.cmd == "convert":
        from .export import convert_command

        return convert_command(args)
    if args.cmd == "scaffold":
        from .scaffold import scaffold_command

        return scaffold_command(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
