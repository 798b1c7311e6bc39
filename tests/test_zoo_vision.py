"""Vision zoo scripts run end to end with random weights and match their torch reference.

Default suite: each script at a small size (a small variant where the real one is big),
with the strict 1e-5 bar, and the saved .keras reloaded with safe_mode=True. The real
default variants at full size are @pytest.mark.slow."""

from recreate.zoo import load_script as load

import numpy as np
import pytest

# (script, saved file stem, command line, the same model for build())
SMALL = [
    ("mobilenet_v3", "mobilenet_v3_small", ["--variant", "mobilenet_v3_small", "--size", "64"],
     dict(variant="mobilenet_v3_small", size=64)),
    ("efficientnet", "efficientnet_b0", ["--variant", "efficientnet_b0", "--size", "64"],
     dict(variant="efficientnet_b0", size=64)),
    ("convnext", "convnext_test", ["--variant", "convnext_test", "--size", "64"],
     dict(variant="convnext_test", size=64)),
    ("vit", "vit_test", ["--variant", "vit_test"], dict(variant="vit_test")),
    ("unet", "unet", ["--base", "8", "--size", "32"], dict(base=8, size=32)),
    ("stn", "stn", ["--size", "28"], dict(size=28)),
    ("flow_warp", "flow_warp", ["--size", "16", "--width", "8"], dict(size=16, width=8)),
]


@pytest.mark.parametrize("script,stem,args,kw", SMALL, ids=[s[0] for s in SMALL])
def test_small(script, stem, args, kw, tmp_path):
    import recreate
    import torch

    import keras

    mod = load(script)
    argv = [*args, "--batches", "2", "--tolerance", "1e-5", "--out", str(tmp_path)]
    assert mod.main(argv) == 0
    assert (tmp_path / "parity.png").exists()
    assert "PASS" in (tmp_path / "parity.md").read_text()
    # The saved file is self-contained (stock + recreate layers, safe mode) and carries every
    # weight, constants included (class token, base mesh): it still matches torch.
    km = keras.saving.load_model(tmp_path / f"{stem}.keras", safe_mode=True)
    tm = mod.build(**kw)[0]
    h, w, c = km.inputs[0].shape[1:]
    x = torch.as_tensor(np.random.default_rng(0).standard_normal((2, c, h, w)).astype("float32"))
    report = recreate.verify(tm, km, x, tolerance=1e-5, layers=False)
    assert report.passed, report


def test_convtranspose_same_is_not_torch():
    """Why unet.py crops: Keras Conv2DTranspose(padding='same') is torch's
    ConvTranspose2d(k=3, s=2, p=1, output_padding=1) shifted by one pixel."""
    import recreate
    import torch

    import keras

    t = torch.nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1, output_padding=1).eval()
    x = torch.randn(1, 2, 5, 5)
    with torch.no_grad():
        ref = t(x).permute(0, 2, 3, 1).numpy()
    xin = x.permute(0, 2, 3, 1).numpy()
    outs = {}
    for mode in ("same", "valid"):
        inp = keras.Input((5, 5, 2))
        if mode == "same":
            layer = keras.layers.Conv2DTranspose(3, 3, strides=2, padding="same", name="t")
            y = layer(inp)
        else:
            layer = keras.layers.Conv2DTranspose(3, 3, strides=2, padding="valid", output_padding=1, name="t")
            y = keras.layers.Cropping2D(1)(layer(inp))
        km = keras.Model(inp, y)
        recreate.transfer_weights({"t.weight": t.weight, "t.bias": t.bias}, km)
        outs[mode] = np.asarray(km(xin))
    assert np.abs(outs["valid"] - ref).max() < 1e-5
    assert np.abs(outs["same"] - ref).max() > 1e-2


@pytest.mark.parametrize("variant,offset_groups,size", [("v1", 1, 12), ("v2", 2, 11)])
def test_deform_head(variant, offset_groups, size, tmp_path):
    """Parity where deformation matters: offsets of pixels, fractional, partly outside the map."""
    import recreate
    import torch

    import keras

    dh = load("deform_head")
    argv = ["--variant", variant, "--size", str(size), "--offset-groups", str(offset_groups), "--batches", "3"]
    assert dh.main([*argv, "--out", str(tmp_path)]) == 0
    tm, _, transfer = dh.build(variant, size, offset_groups)
    assert transfer.complete
    x = recreate.testing.random_batches((2, 32, size, size), 2, seed=7)[1]
    stats = dh.offset_stats(tm, x)
    assert stats["offset_std"] > 1.5 and 0.1 < stats["fraction_outside"] < 0.5, stats
    km = keras.saving.load_model(tmp_path / f"deform_head_{variant}.keras", safe_mode=True)
    assert recreate.verify(tm, km, x, tolerance=1e-5, layers=False).passed
    with torch.no_grad():  # the reference depends on the offsets: a plain conv would not match
        before = tm(x)[0]
        tm.offset.weight[:tm.n_off].zero_()
        tm.offset.bias[:tm.n_off].zero_()
        assert (tm(x)[0] - before).abs().max() > 0.1


@pytest.mark.slow
@pytest.mark.parametrize("script,args", [
    ("mobilenet_v3", ["--variant", "mobilenet_v3_small"]),
    ("mobilenet_v3", ["--variant", "mobilenet_v3_large"]),
    ("efficientnet", ["--variant", "efficientnet_b0"]),
    ("convnext", ["--variant", "convnext_tiny"]),
    ("vit", ["--variant", "vit_b_16"]),
    ("unet", ["--base", "32", "--size", "128"]),
], ids=["mnv3_small", "mnv3_large", "effnet_b0", "convnext_tiny", "vit_b_16", "unet_128"])
def test_default_variants(script, args):
    assert load(script).main([*args, "--batches", "2"]) == 0
