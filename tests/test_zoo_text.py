"""The non-vision zoo scripts (seq2seq, transformer, early_exit, custom_kernel) at small sizes,
the custom-kernel converter's Hypothesis parity, the `zoo` command line, and checkpoint
formats beyond test_checkpoint.py (bf16/fp16 tensors, non-tensor payloads, truncation)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import recreate
import torch
from recreate import registry, zoo
from recreate.testing import assert_parity

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from safetensors.torch import save_file

from tests.test_transfer import keras_small, torch_small

EXAMPLES = int(os.environ.get("RECREATE_EXAMPLES", "25"))
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def scripts():
    mods = {n: zoo.load_script(n) for n in ("seq2seq", "transformer", "early_exit", "custom_kernel")}
    yield mods
    # The custom-kernel script registers a converter at import: leave the registry as found.
    registry.unregister(mods["custom_kernel"].BiasGeluGate)


def _reload_matches(km, path, *inputs):
    loaded = keras.saving.load_model(path, safe_mode=True)
    for a, b in zip(keras.tree.flatten(km(list(inputs) if len(inputs) > 1 else inputs[0])),
                    keras.tree.flatten(loaded(list(inputs) if len(inputs) > 1 else inputs[0]))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=0)


# ---- the scripts --------------------------------------------------------------------------
def test_seq2seq_packed_vs_masked(scripts, tmp_path):
    s2s = scripts["seq2seq"]
    assert s2s.main(["--batches", "3", "--out", str(tmp_path)]) == 0
    assert "PASS" in (tmp_path / "parity.md").read_text() and (tmp_path / "parity.png").exists()
    tm, km, _ = s2s.build()
    g = torch.Generator().manual_seed(5)
    src, tgt = s2s.padded_batch(g, 20, (6, 2, 4), 17, 3)
    logits, memory = (np.asarray(t) for t in km([src.numpy().astype("int32"), tgt.numpy().astype("int32")]))
    assert np.all(memory[1, 2:] == 0) and np.all(memory[2, 4:] == 0)  # pad_packed_sequence's zeros
    # Packing means padding is invisible: sample 1 alone, unpadded, gives the same logits.
    alone = km([src[1:2, :2].numpy().astype("int32"), tgt[1:2].numpy().astype("int32")])[0]
    np.testing.assert_allclose(np.asarray(alone)[0], logits[1], atol=1e-5)
    _reload_matches(km, tmp_path / "seq2seq_small.keras", src.numpy().astype("int32"), tgt.numpy().astype("int32"))


@pytest.mark.parametrize("flags", [[], ["--norm-first"]], ids=["post-norm", "pre-norm"])
def test_transformer(scripts, tmp_path, flags):
    tr = scripts["transformer"]
    assert tr.main([*flags, "--batches", "3", "--out", str(tmp_path)]) == 0
    _, km, report = tr.build(norm_first=bool(flags))
    assert report.complete
    g = torch.Generator().manual_seed(3)
    src, tgt = tr.padded(g, 19, (4, 2)).numpy().astype("int32"), tr.padded(g, 19, (3, 5)).numpy().astype("int32")
    if not flags:
        _reload_matches(km, tmp_path / "transformer_small.keras", src, tgt)


def test_transformer_masks_matter(scripts):
    """Changing a padded source token or a future target token changes nothing; a real one does."""
    tr = scripts["transformer"]
    tm, km, _ = tr.build()
    g = torch.Generator().manual_seed(4)
    src, tgt = tr.padded(g, 19, (5, 3)), tr.padded(g, 19, (4, 4))
    base = np.asarray(km([src.numpy(), tgt.numpy()]))
    src2 = src.clone()
    src2[1, 4] = 7  # was padding: now a real token (padding masks see it)
    assert not np.allclose(np.asarray(km([src2.numpy(), tgt.numpy()]))[1], base[1])
    tgt2 = tgt.clone()
    tgt2[0, 3] = (tgt[0, 3] % 18) + 1  # a later target token cannot change earlier positions
    out = np.asarray(km([src.numpy(), tgt2.numpy()]))
    np.testing.assert_allclose(out[0, :3], base[0, :3], atol=1e-6)


def test_early_exit_every_path_and_tf_function(scripts, tmp_path, capsys):
    ee = scripts["early_exit"]
    assert ee.main(["--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "paths found (-1 = early exit, k = refinement steps): [-1, 0, 1, 2, 3, 4]" in out
    assert "MISMATCH" not in out and "traced 1 time(s)" in out
    tm, km, _ = ee.build()
    paths = ee.path_inputs(tm, 8)
    loaded = keras.saving.load_model(tmp_path / "early_exit.keras", safe_mode=True)
    for key, x in paths.items():
        steps = np.asarray(loaded(x.numpy())[1])
        assert steps[0] == max(key, 0)


def test_early_exit_max_steps_variant(scripts):
    assert scripts["early_exit"].main(["--max-steps", "2"]) == 0


def test_custom_kernel_script_and_convert_leaf(scripts, tmp_path):
    ck = scripts["custom_kernel"]
    assert ck.main(["--out", str(tmp_path)]) == 0
    tm, km, _ = ck.build()
    assert sum(isinstance(layer, ck.KerasBiasGeluGate) for layer in km.layers) == 1
    _reload_matches(km, tmp_path / "custom_kernel.keras", np.random.default_rng(0).standard_normal((2, 7, 12)).astype("float32"))


def test_custom_kernel_parity_hypothesis(scripts):
    ck = scripts["custom_kernel"]
    entry = registry.find_entry(ck.BiasGeluGate)

    @settings(max_examples=EXAMPLES)
    @given(case=entry.cases(ck.BiasGeluGate))
    def check(case):
        assert_parity(case.module, case.inputs, tolerance=entry.tolerance)

    check()


# ---- recreate.zoo and the command line ---------------------------------------------------
def test_list_and_errors(tmp_path, monkeypatch):
    names = zoo.list_scripts()
    assert {"resnet", "seq2seq", "transformer", "early_exit", "custom_kernel"} <= set(names)
    assert names["seq2seq"].startswith("A GRU-decoder seq2seq")
    with pytest.raises(recreate.RecreateError, match="no zoo script 'nope'.*known: .*resnet"):
        zoo.load_script("nope")
    (tmp_path / "hello.py").write_text('"""Hello zoo."""\ndef main(argv):\n    return 3 if argv == ["--x"] else 0\n')
    monkeypatch.setenv("RECREATE_ZOO", str(tmp_path))
    assert zoo.list_scripts() == {"hello": "Hello zoo."}
    assert zoo.run_script("hello", ["--x"]) == 3
    assert zoo.load_script("hello") is sys.modules.pop("recreate_zoo_hello")  # imported once
    monkeypatch.setenv("RECREATE_ZOO", str(tmp_path / "missing"))
    with pytest.raises(recreate.RecreateError, match="RECREATE_ZOO"):
        zoo.list_scripts()


def _cli(*args, module="recreate"):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=600)


def _wired() -> bool:
    return "zoo" in (ROOT / "src" / "recreate" / "cli.py").read_text()


def test_cli_list_run_and_unknown(tmp_path, capsys):
    """`recreate zoo list|run` in a subprocess (`python -m recreate.zoo` until cli.py wires
    the subcommand); the unknown-name path in-process (each subprocess imports torch + TF)."""
    prefix, module = (["zoo"], "recreate") if _wired() else ([], "recreate.zoo")
    r = _cli(*prefix, "list", module=module)
    assert r.returncode == 0, r.stderr
    assert "seq2seq" in r.stdout and "custom_kernel" in r.stdout
    r = _cli(*prefix, "run", "custom_kernel", "--out", str(tmp_path), "--", "--batches", "2", module=module)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PASS" in r.stdout and (tmp_path / "custom_kernel.keras").exists()
    assert zoo.main(["run", "nope"]) == 2
    assert "no zoo script 'nope'" in capsys.readouterr().err


def test_cli_passes_weights_through(tmp_path, scripts):
    """--weights reaches the script: a checkpoint of other weights still verifies (parity
    does not depend on which weights), and a checkpoint with wrong names fails loudly."""
    ck = scripts["custom_kernel"]
    tm = recreate.testing.randomize_(ck.GatedMLP(), 99)
    save_file({k: v.contiguous() for k, v in tm.state_dict().items()}, str(tmp_path / "w.safetensors"))
    args = zoo.add_zoo_parser  # parse exactly as the command line does
    import argparse

    parser = argparse.ArgumentParser()
    args(parser.add_subparsers(dest="cmd"))
    ns = parser.parse_args(["zoo", "run", "custom_kernel", "--weights", str(tmp_path / "w.safetensors")])
    assert zoo.zoo_command(ns) == 0
    save_file({"nope.weight": torch.zeros(1)}, str(tmp_path / "bad.safetensors"))
    ns = parser.parse_args(["zoo", "run", "custom_kernel", "--weights", str(tmp_path / "bad.safetensors")])
    with pytest.raises(RuntimeError, match="nope.weight"):
        zoo.zoo_command(ns)


def _zoo_args(*argv):
    """Parse `recreate zoo ...` exactly as the command line does."""
    import argparse

    parser = argparse.ArgumentParser()
    zoo.add_zoo_parser(parser.add_subparsers(dest="cmd"))
    return parser.parse_args(["zoo", *argv])


def test_run_options_after_the_name():
    """REMAINDER swallows every token after NAME: zoo's own options are taken back from the
    part before --, everything else reaches the script in order."""
    ns = _zoo_args("run", "x", "--out", "o", "--tflite", "m.tflite", "--variant", "v1", "--", "--size", "8", "--out", "s")
    opts, argv = zoo._run_options(ns)
    assert opts == {"weights": None, "out": "o", "saved_model": None, "tflite": "m.tflite"}
    assert argv == ["--variant", "v1", "--size", "8", "--out", "s"]
    opts, argv = zoo._run_options(_zoo_args("run", "--saved-model", "sm", "x"))
    assert opts["saved_model"] == "sm" and argv == []


def test_exports_need_prove_and_save(tmp_path, monkeypatch, capsys):
    (tmp_path / "bare.py").write_text('"""Verifies nothing."""\ndef main(argv):\n    return 0\n')
    monkeypatch.setenv("RECREATE_ZOO", str(tmp_path))
    try:
        assert zoo.zoo_command(_zoo_args("run", "bare", "--tflite", str(tmp_path / "m.tflite"))) == 2
    finally:
        sys.modules.pop("recreate_zoo_bare", None)
    assert "did not end with recreate.report.prove_and_save" in capsys.readouterr().err


@pytest.mark.slow
def test_run_writes_verified_saved_model_and_tflite(tmp_path, capsys):
    sm, tfl = tmp_path / "sm", tmp_path / "head.tflite"
    ns = _zoo_args("run", "deform_head", "--saved-model", str(sm), "--tflite", str(tfl),
                   "--", "--size", "8", "--batches", "2")
    assert zoo.zoo_command(ns) == 0
    out = capsys.readouterr().out
    assert (sm / "saved_model.pb").exists() and tfl.stat().st_size > 0
    assert "TFLite: builtin ops only" in out
    assert f"{sm}: PASS" in out and f"{tfl}: PASS" in out


# ---- checkpoints beyond test_checkpoint.py ------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("fmt", ["safetensors", "pt"])
def test_half_precision_checkpoint_is_cast_and_reported(tmp_path, dtype, fmt):
    tm = torch_small()
    sd = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in tm.state_dict().items()}
    p = tmp_path / f"m.{fmt}"
    save_file(sd, str(p)) if fmt == "safetensors" else torch.save(sd, p)
    km = keras_small()
    report = recreate.transfer_weights(p, km)
    name = "bfloat16" if dtype == torch.bfloat16 else "float16"
    assert report.casts and all(f"{name} -> float32" in c for c in report.casts)
    got = np.asarray(km.get_layer("conv1").kernel.numpy())
    want = sd["conv1.weight"].float().permute(2, 3, 1, 0).numpy()  # exact: every half value is a float32
    np.testing.assert_array_equal(got, want)
    if fmt == "safetensors":
        assert recreate.load_state_dict(p, lazy=True)["conv1.weight"].dtype == name
        assert recreate.load_state_dict(p)["conv1.weight"].dtype == dtype


def test_non_tensor_payload_refused(tmp_path):
    p = tmp_path / "meta.pt"
    torch.save({"epoch": 3, "lr": 0.1, "note": "no tensors here"}, p)
    with pytest.raises(recreate.CheckpointError, match="not a state dict of tensors"):
        recreate.load_state_dict(p)


def test_truncated_safetensors(tmp_path):
    p = tmp_path / "m.safetensors"
    save_file({k: v.contiguous() for k, v in torch_small().state_dict().items()}, str(p))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(recreate.CheckpointError, match="safetensors"):
        km = keras_small()
        recreate.transfer_weights(p, km)
