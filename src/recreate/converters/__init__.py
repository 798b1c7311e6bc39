"""torch.nn module converters, one family per file. Importing this package registers every
family module in it (a new family file needs no edit here)."""

import importlib
import pkgutil

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
    if not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")
