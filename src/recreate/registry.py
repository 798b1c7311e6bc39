"""The module registry: torch.nn type -> how to build its Keras layer, how its weights map,
how to property-test it, and its tolerance.

    @recreate.register(nn.Conv1d, nn.Conv2d, nn.Conv3d,
                       rules={keras.layers.Conv2D: CONV_RULES}, cases=conv_cases)
    def conv(m): ...

Lookup is by exact type, then along the type's MRO. Registering a type twice is an error.
Weight rules are keyed by (torch type, keras type) so that `transfer_weights` can fill
hand-written models made of stock Keras layers; `register_rules` adds a pair without a builder.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .errors import RegistryError, UnsupportedModuleError
from .transforms import IDENTITY, Transform

CHANNELS_LAST = "cl"
TORCH = "torch"
#: Elementwise layers: they take any axis order and keep it (the tracer moves no axes for
#: them; single-module conversion treats them as channels-last).
ANY = "any"


@dataclass(frozen=True)
class Map:
    """Keras variable `keras` (path relative to the layer) <- torch tensor(s) `torch` (names
    relative to the module), through `transform`. `fill` is the constant used when the torch
    tensor does not exist (bias=False, affine=False) but the Keras variable does."""

    keras: str
    torch: str | tuple[str, ...]
    transform: Transform = IDENTITY
    fill: float | None = None

    @property
    def sources(self) -> tuple[str, ...]:
        return (self.torch,) if isinstance(self.torch, str) else tuple(self.torch)


@dataclass(frozen=True)
class Check:
    """A configuration value that must agree for inference to match (e.g. epsilon)."""

    keras_attr: str
    torch_value: Callable[[Any], Any]
    hint: str = ""


@dataclass(frozen=True)
class WeightRules:
    maps: tuple[Map, ...]
    ignore: tuple[str, ...] = ()  # torch tensors that carry no inference value
    checks: tuple[Check, ...] = ()


RulesLike = WeightRules | Callable[[Any, Any], WeightRules]


@dataclass(frozen=True)
class BuildContext:
    """What a converter may need beyond the module: the shapes of the positional tensor
    inputs (PyTorch layout, batch first) and the forward() keyword arguments. Non-tensor
    keyword values (need_weights=False) are given as they are, to be baked into the layer;
    tensor keyword values (attn_mask) are given as their shapes and reach the layer's call()
    as keyword tensors of the same name."""

    input_shapes: tuple[tuple[int, ...], ...]
    kwargs: dict = field(default_factory=dict)
    tensor_kwargs: tuple[str, ...] = ()


@dataclass
class Entry:
    """One registry entry (shared by all the torch types one decorator registers)."""

    torch_types: tuple[type, ...]
    build: Callable[..., Any]
    cases: Callable[[type], Any] | None
    tolerance: float = 1e-5
    layout: tuple[str, str] = (CHANNELS_LAST, CHANNELS_LAST)
    rules: dict[type, RulesLike] = field(default_factory=dict)
    name: str = ""
    _wants_ctx: bool = False

    def make_layers(self, module, ctx, name: str) -> list:
        """Build the Keras layer(s) for `module`. With several layers (e.g. an explicit pad
        before a conv) the main one (the last, unless the builder returned `Layers(.., main=i)`)
        carries the module path as its name and the weights; the others are named
        `<path>.pre<i>` / `<path>.post<i>`."""
        if not isinstance(ctx, BuildContext):
            ctx = BuildContext(tuple(tuple(s) for s in ctx))
        out = self.build(module, ctx) if self._wants_ctx else self.build(module)
        layers = list(out) if isinstance(out, (list, tuple)) else [out]
        main = getattr(out, "main", len(layers) - 1) % len(layers)
        for i, lyr in enumerate(layers):
            lyr.name = name if i == main else f"{name}.{'pre' if i < main else 'post'}{i}"
        return layers


class Layers(list):
    """A converter's result when several layers run in sequence and the weighted one (which
    gets the module path as its name) is not the last: `Layers([pad, conv, crop], main=1)`."""

    def __init__(self, layers, main: int = -1):
        super().__init__(layers)
        self.main = main


_ENTRIES: dict[type, Entry] = {}
_RULES: dict[tuple[type, type], RulesLike] = {}
_DEFAULT_RULES: dict[type, tuple[type, RulesLike]] = {}  # keras type -> first torch pair


def register(
    *torch_types: type,
    cases: Callable[[type], Any] | None = None,
    tolerance: float = 1e-5,
    layout: tuple[str, str] = (CHANNELS_LAST, CHANNELS_LAST),
    rules: dict[type, RulesLike] | None = None,
):
    """Register a converter for one or more torch module types.

    The decorated function reads the live module and returns a keras.Layer (or a list of
    layers applied in sequence, or `Layers(...)`). It may take a second argument, a
    `BuildContext` (input shapes in PyTorch layout, forward keyword arguments), when the
    layer depends on them. `cases(torch_type)` returns a Hypothesis strategy
    of `recreate.testing.Case` (module + inputs) used by the registry-wide parity test;
    `layout` says whether the layer reads/writes channels-last ("cl"), PyTorch's axis order
    ("torch"), or, for elementwise layers, any order it is given ("any", both sides); `rules` maps Keras layer types to the weight rules of this torch type.

    Example::

        @recreate.register(MyBlock, cases=my_block_cases)
        def my_block(m):
            return MyKerasBlock(m.width)
    """
    if not torch_types:
        raise RegistryError("register() needs at least one torch module type")
    for t in torch_types:
        if not isinstance(t, type):
            raise RegistryError(f"register() takes torch module types, got {t!r}")
    if layout[0] not in (CHANNELS_LAST, TORCH, ANY) or layout[1] not in (CHANNELS_LAST, TORCH, ANY):
        raise RegistryError(f"layout must be a pair of 'cl'/'torch'/'any', got {layout!r}")
    if (layout[0] == ANY) != (layout[1] == ANY):
        raise RegistryError(f"'any' layout applies to input and output together, got {layout!r}")

    def deco(fn):
        dup = [t.__qualname__ for t in torch_types if t in _ENTRIES]
        if dup:
            raise RegistryError(
                f"{', '.join(dup)} already registered (by {_ENTRIES[torch_types[0]].name if torch_types[0] in _ENTRIES else '?'}); "
                "unregister it first or register a subclass"
            )
        params = [
            p for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        entry = Entry(
            torch_types=tuple(torch_types),
            build=fn,
            cases=cases,
            tolerance=tolerance,
            layout=tuple(layout),  # type: ignore[arg-type]
            rules=dict(rules or {}),
            name=f"{fn.__module__}.{fn.__qualname__}",
            _wants_ctx=len(params) >= 2,
        )
        for t in torch_types:
            _ENTRIES[t] = entry
            for ktype, r in entry.rules.items():
                register_rules(t, ktype, r)
        fn.entry = entry
        return fn

    return deco


def register_rules(torch_type: type | None, keras_type: type, rules: RulesLike) -> None:
    """Declare how a torch type's tensors fill a Keras layer type (without a builder)."""
    key = (torch_type, keras_type)
    if key in _RULES:
        raise RegistryError(f"weight rules for ({torch_type}, {keras_type.__name__}) already registered")
    _RULES[key] = rules
    _DEFAULT_RULES.setdefault(keras_type, (torch_type, rules))


def unregister(*torch_types: type) -> None:
    """Remove converters (and their weight-rule pairs); mainly for tests and overrides."""
    for t in torch_types:
        entry = _ENTRIES.pop(t, None)
        if entry is None:
            continue
        for ktype in entry.rules:
            _RULES.pop((t, ktype), None)
            if _DEFAULT_RULES.get(ktype, (None,))[0] is t:
                del _DEFAULT_RULES[ktype]


def _mro(t: type) -> list[type]:
    return [c for c in t.__mro__ if c is not object and c.__name__ != "Module"]


def find_entry(torch_type: type) -> Entry | None:
    """Exact type first, then the nearest registered base class, but only when the subclass
    does not override forward() (torchvision's LayerNorm2d subclasses nn.LayerNorm and
    permutes inside forward: it must be traced, not treated as a LayerNorm)."""
    if torch_type in _ENTRIES:
        return _ENTRIES[torch_type]
    for c in _mro(torch_type)[1:]:
        if c in _ENTRIES:
            same_forward = getattr(torch_type, "forward", None) is getattr(c, "forward", None)
            return _ENTRIES[c] if same_forward else None
    return None


def lookup(module, path: str = "") -> Entry:
    """The entry for a module (or type); UnsupportedModuleError naming `path` if none."""
    t = module if isinstance(module, type) else type(module)
    entry = find_entry(t)
    if entry is None:
        detail = ""
        if not isinstance(module, type) and any(True for _ in module.children()):
            detail = (
                "It is a container of submodules: recreate its forward() as a Keras model "
                "(a zoo script shows how) or register a converter for it."
            )
        raise UnsupportedModuleError(path, t, detail)
    return entry


def rules_for(torch_type: type | None, keras_layer, module=None) -> tuple[WeightRules, str] | None:
    """Weight rules for filling `keras_layer` from a torch module of `torch_type` (None when
    only a state dict is known: then the first pair registered for the Keras type is used)."""
    kmro = [c for c in type(keras_layer).__mro__ if c is not object]
    found = None
    if torch_type is not None:
        for tc in _mro(torch_type):
            for kc in kmro:
                if (tc, kc) in _RULES:
                    found = (_RULES[(tc, kc)], f"{tc.__name__}->{kc.__name__}")
                    break
            if found:
                break
    if found is None:
        for kc in kmro:
            if kc in _DEFAULT_RULES:
                tt, r = _DEFAULT_RULES[kc]
                found = (r, f"{getattr(tt, '__name__', '*')}->{kc.__name__}")
                break
    if found is None:
        return None
    rules, label = found
    if not isinstance(rules, WeightRules):
        rules = rules(module, keras_layer)
    return rules, label


def entries() -> Iterator[tuple[type, Entry]]:
    """Every registered torch type with its entry, in registration order."""
    yield from list(_ENTRIES.items())
