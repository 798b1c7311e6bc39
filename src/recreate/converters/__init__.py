"""torch.nn module converters, one family per file. Importing this package registers them."""

from . import activation, attention, conv, dropout, linear, norm, pool, recurrent, shape  # noqa: F401
