"""Every torch.nn module class is either registered or listed here as not applicable, with
the reason. A new torch release that adds a module fails this test until someone decides."""

import inspect

from torch import nn

from recreate import registry

_CONTAINER = "container: its forward() is the user's model; recreate it (zoo) or convert the whole model"
_ABSTRACT = "abstract base class; its concrete subclasses are registered"
NOT_APPLICABLE: dict[str, str] = {
    "Module": _CONTAINER,
    "Container": _CONTAINER + " (deprecated)",
    "Sequential": _CONTAINER,
    "ModuleList": _CONTAINER,
    "ModuleDict": _CONTAINER,
    "ParameterList": "parameter container, no forward()",
    "ParameterDict": "parameter container, no forward()",
    "DataParallel": "multi-GPU wrapper: convert its .module",
    "RNNBase": _ABSTRACT,
    "RNNCellBase": _ABSTRACT,
    "AdaptiveLogSoftmaxWithLoss": "training loss (forward needs targets); its log_prob() is not a forward()",
}
LOSS_REASON = "loss function: used in training, not inference"


def _applicability() -> dict[str, str]:
    out = {}
    for name in dir(nn):
        cls = getattr(nn, name)
        if not (inspect.isclass(cls) and issubclass(cls, nn.Module)):
            continue
        if name in NOT_APPLICABLE:
            out[name] = NOT_APPLICABLE[name]
        elif issubclass(cls, nn.modules.loss._Loss) or name.endswith("Loss") or name == "NLLLoss2d":
            out[name] = LOSS_REASON
        elif registry.find_entry(cls) is not None:
            out[name] = "registered"
        else:
            out[name] = "MISSING"
    return out


def test_every_torch_nn_module_is_registered_or_not_applicable():
    status = _applicability()
    missing = sorted(n for n, s in status.items() if s == "MISSING")
    assert not missing, f"{len(missing)} torch.nn modules neither registered nor listed as not applicable: {missing}"


def test_not_applicable_list_has_no_stale_or_registered_entries():
    for name in NOT_APPLICABLE:
        cls = getattr(nn, name, None)
        assert cls is not None, f"{name} no longer exists in torch.nn: remove it from NOT_APPLICABLE"
        assert registry.find_entry(cls) is None or name in ("Module",), f"{name} is registered: remove it from NOT_APPLICABLE"
