"""The zoo: hand-written Keras recreations of known models, each a script with `main(argv)`.

    recreate zoo list
    recreate zoo run resnet --out out/ -- --variant resnet50
    recreate zoo run resnet --saved-model out/resnet18_sm --tflite out/resnet18.tflite -- --size 64

Scripts live in the repository's zoo/ directory (next to src/), or in $RECREATE_ZOO.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

from .errors import RecreateError


def zoo_dir() -> Path:
    """The zoo directory: $RECREATE_ZOO, else <repository>/zoo next to src/recreate.

    Example::

        zoo_dir()  # PosixPath('/work/main/zoo')
    """
    env = os.environ.get("RECREATE_ZOO")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "zoo"


def list_scripts(directory: Path | None = None) -> dict[str, str]:
    """Script name -> first line of its docstring, sorted by name.

    Example::

        list_scripts()["resnet"]  # 'ResNet-18/34/50/101 and ResNeXt-50, recreated by hand ...'
    """
    d = directory or zoo_dir()
    if not d.is_dir():
        raise RecreateError(f"zoo directory {d} does not exist: set RECREATE_ZOO to the zoo/ folder of a checkout")
    out = {}
    for p in sorted(d.glob("*.py")):
        if p.name.startswith("_"):
            continue
        out[p.stem] = _first_doc_line(p)
    return out


def _first_doc_line(p: Path) -> str:
    import ast

    try:
        doc = ast.get_docstring(ast.parse(p.read_text()))
    except SyntaxError as e:
        return f"(does not parse: {e})"
    return doc.splitlines()[0] if doc else ""


def load_script(name: str, directory: Path | None = None):
    """Import zoo script `name` by path (as module `recreate_zoo_<name>`) and return it.

    Example::

        resnet = load_script("resnet"); tm, km, report = resnet.build("resnet18")
    """
    d = directory or zoo_dir()
    path = d / f"{name}.py"
    if not path.is_file():
        known = ", ".join(list_scripts(d)) if d.is_dir() else "none"
        raise RecreateError(f"no zoo script '{name}' in {d} (known: {known})")
    mod_name = f"recreate_zoo_{name}"
    cached = sys.modules.get(mod_name)
    if cached is not None and Path(getattr(cached, "__file__", "")).resolve() == path.resolve():
        return cached  # importing twice would register its converters and custom ops twice
    spec = importlib.util.spec_from_file_location(mod_name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        del sys.modules[mod_name]
        raise
    if not callable(getattr(mod, "main", None)):
        raise RecreateError(f"zoo script {path} has no main(argv) function")
    return mod


def run_script(name: str, argv: list[str] | None = None, directory: Path | None = None) -> int:
    """Run zoo script `name` with command-line arguments `argv`; its exit code (0 = parity).

    Example::

        run_script("seq2seq", ["--out", "out/"])
    """
    rc = load_script(name, directory).main(list(argv or []))
    return int(rc or 0)


def add_zoo_parser(subparsers) -> None:
    """Add `zoo list` and `zoo run NAME [--weights FILE] [--out DIR] [--saved-model DIR]
    [--tflite FILE] [-- SCRIPT ARGS]`."""
    p = subparsers.add_parser("zoo", help="list or run the zoo's hand-written, verified recreations")
    zsub = p.add_subparsers(dest="zoo_cmd", required=True)
    zsub.add_parser("list", help="list the zoo scripts")
    run = zsub.add_parser("run", help="run one zoo script: build, transfer, verify parity")
    run.add_argument("name", help="script name, as printed by `recreate zoo list`")
    run.add_argument("--weights", help="checkpoint (.safetensors/.pt) with the script's torch names")
    run.add_argument("--out", help="directory for the .keras model, parity.md and parity.png")
    run.add_argument("--saved-model", help="also write a TensorFlow SavedModel to this directory "
                     "(loaded back in a fresh process and verified against torch)")
    run.add_argument("--tflite", help="also write a TensorFlow Lite file (verified likewise)")
    run.add_argument("script_args", nargs=argparse.REMAINDER,
                     help="further arguments for the script after --, e.g. -- --variant resnet50")
    p.set_defaults(handler=zoo_command)


RUN_OPTIONS = ("weights", "out", "saved_model", "tflite")


def _run_options(args) -> tuple[dict, list[str]]:
    """({option: value} for RUN_OPTIONS, the script's argv). argparse.REMAINDER takes every
    token after NAME, so options written after the name (the usual order) arrive among the
    script's arguments: take ours back from the part before `--`; the rest goes to the script."""
    rest = list(getattr(args, "script_args", None) or [])
    cut = rest.index("--") if "--" in rest else len(rest)
    own = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    for name in RUN_OPTIONS:
        own.add_argument("--" + name.replace("_", "-"), dest=name)
    found, head = own.parse_known_args(rest[:cut])
    opts = {name: getattr(found, name) or getattr(args, name, None) for name in RUN_OPTIONS}
    return opts, head + rest[cut + 1:]


def zoo_command(args) -> int:
    """Handler for the `zoo` subcommand (args from add_zoo_parser)."""
    try:
        if args.zoo_cmd == "list":
            scripts = list_scripts()
            width = max((len(n) for n in scripts), default=0)
            for name, doc in scripts.items():
                print(f"{name:<{width}}  {doc}")
            return 0
        opts, argv = _run_options(args)
        for flag in ("weights", "out"):
            if opts[flag]:
                argv += [f"--{flag}", opts[flag]]
        saved_model, tflite = opts["saved_model"], opts["tflite"]
        if not (saved_model or tflite):
            return run_script(args.name, argv)
        from .report import exports

        # The scripts do not know these options: prove_and_save, which every script ends
        # with, writes and verifies the exports when run inside this block.
        with exports(saved_model=saved_model, tflite=tflite) as written:
            rc = run_script(args.name, argv)
        if rc == 0 and not written:
            raise RecreateError(f"zoo script '{args.name}' did not end with recreate.report.prove_and_save: "
                                "nothing to export")
        return rc
    except RecreateError as e:
        print(f"recreate zoo: {e}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    """`python -m recreate.zoo list|run ...`: the zoo subcommand on its own."""
    parser = argparse.ArgumentParser(prog="recreate", description="PyTorch -> Keras 3 recreation with proof")
    add_zoo_parser(parser.add_subparsers(dest="cmd", required=True))
    args = parser.parse_args(["zoo", *(sys.argv[1:] if argv is None else argv)])
    return zoo_command(args)


if __name__ == "__main__":
    sys.exit(main())
