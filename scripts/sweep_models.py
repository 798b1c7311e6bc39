"""Convert and verify many real architectures with random weights: which convert, which match.

    python scripts/sweep_models.py torchvision-cls [--only resnet50,vit_b_16] [--max-params 120]
    python scripts/sweep_models.py torchvision-seg | torchvision-video | timm
    python scripts/sweep_models.py transformers | diffusers | kornia | ultralytics | smp | open_clip
        [--only a,b] [--limit N] [--timeout 300] [--jobs 1] [--out results.jsonl]

The third-party sources need the "sweep" extra (`pip install -c constraints.txt -e .[sweep]`);
no weights are downloaded (ultralytics runs with YOLO_OFFLINE=1, models from their yaml).

Each model: random weights (`randomize_`, so nothing is trivially zero), batch norm
calibrated on 8 random samples, and a torch forward at batch 2 and 3 (a model that fails to
build or to run in torch is BUILD-FAIL). Its output must change when the input changes
(TRIVIAL otherwise: default init can make outputs ignore inputs, and parity on them proves
nothing). Then `recreate.convert` at batch 2 and `recreate.verify` on that batch and on a batch
of 3, tolerance 1e-4 (max|keras - torch| / max(1, max|torch|)). CNNs run at 64x64 where torch
accepts it (else the model's default size); video at 8x64x64 (else 16x224x224). Every model
runs in its own process (forked from this one after the heavy imports, so a crash or a hang
costs one model: `--timeout` seconds and `--max-memory` GB each).

One line per model: BUILD-FAIL, SKIP (over --max-params, or over --max-memory / --timeout
while torch itself builds or runs the model), TRIVIAL, OK, DRIFT (past 1e-4 in float32 only:
the model converted again in float64 matches within 1e-9, so the gap is float32 rounding, not
the converter; counted as matched), MISMATCH (the report's last line, which names the first
diverging layer) or FAIL (the error's first line, which
names the missing op or module and the source line), then a summary: built, converted,
matched, and the failures grouped by reason (exception type and the start of its message,
numbers normalized). `--out` writes one JSON object per model.

Deep randomised networks at 64x64 can drift past 1e-4 in float32 (MobileNetV2, MNASNet
1.0 and EfficientNetV2 in the last sweep: batch norm calibrated on 8 samples of 2x2 maps
amplifies rounding, the error grows smoothly with depth, and the same models pass at
`--size 224`): read the per-layer report before calling a MISMATCH a converter bug, and do
not call one drift without that check (MViT-v1-B was 4.3e-3 off before session 3's in-place
and tensor-attribute fixes, 5.9e-7 after).
Results of the last sweep: README.md, "Checked beyond the tests".
"""

from __future__ import annotations

import argparse
import inspect
import json
import multiprocessing as mp
import os
import re
import sys
import time
import traceback
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from multiprocessing.connection import wait

# Random weights only, nothing fetched: set before huggingface_hub (imported by recreate) reads them.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import recreate  # noqa: E402 - first: imports torch and torchvision before tensorflow
import torch  # noqa: E402
import torchvision  # noqa: E402
from recreate.testing import calibrate_batchnorm_, randomize_  # noqa: E402

TIMM = ("resnet18 resnet26d resnext26ts seresnext26d_32x4d ecaresnet26t regnetx_002 regnety_002 efficientnet_b0 "
        "efficientnet_lite0 tf_efficientnet_b0 mobilenetv3_small_100 mobilenetv4_conv_small mixnet_s ghostnet_100 "
        "ghostnetv2_100 hrnet_w18_small dla34 dpn68 densenet121 convnext_atto convnextv2_atto vit_tiny_patch16_224 "
        "deit_tiny_patch16_224 deit_tiny_distilled_patch16_224 swin_tiny_patch4_window7_224 swinv2_cr_tiny_ns_224 "
        "cait_xxs24_224 coat_lite_tiny convit_tiny crossvit_tiny_240 levit_128s mobilevit_xxs mobilevitv2_050 "
        "efficientformer_l1 efficientformerv2_s0 poolformer_s12 pvt_v2_b0 twins_svt_small tnt_s_patch16_224 "
        "xcit_nano_12_p16_224 edgenext_xx_small fastvit_t8 repvit_m0_9 rexnet_100 tinynet_a lcnet_050 hgnet_tiny "
        "inception_v3 xception41 nfnet_l0 res2net50_14w_8s skresnet18 cspresnet50 cspdarknet53 darknet53 gernet_s "
        "maxvit_nano_rw_256 coatnet_nano_rw_224 mvitv2_tiny sequencer2d_s gmlp_ti16_224 resmlp_12_224 mixer_s16_224 "
        "eva02_tiny_patch14_224 davit_tiny focalnet_tiny_srf nest_tiny visformer_tiny volo_d1_224 "
        "inception_next_tiny tiny_vit_5m_224").split()

TOLERANCE = 1e-4
SOURCES = ["torchvision-cls", "torchvision-seg", "torchvision-video", "timm", "transformers", "diffusers",
           "kornia", "ultralytics", "smp", "open_clip"]


class BuildFail(Exception):
    """The model could not be built, or does not run in torch with the inputs made for it."""


class Skip(Exception):
    """Not run (over --max-params)."""


@dataclass
class Spec:
    """A built model and how to make its inputs: `make(batch, seed)` returns the positional
    tensors and the tensor keyword arguments (attention_mask, ...) of one batch; `const` are
    the fixed non-tensor keyword arguments (use_cache=False, return_dict=False, ...)."""

    model: torch.nn.Module
    make: object
    const: dict = field(default_factory=dict)
    note: str = ""


def _gen(seed):
    return torch.Generator().manual_seed(int(seed))


def _randn(shape, seed):
    return torch.randn(*shape, generator=_gen(seed))


def _params(m) -> int:
    return sum(p.numel() for p in m.parameters())


def _forward(m, make, const, batch=2, seed=1):
    args, kw = make(batch, seed)
    with torch.no_grad():
        return m(*args, **kw, **const)


def first_runnable(m, candidates, const=None):
    """The first input maker of `candidates` (name, make) with which the model runs in torch."""
    errors = []
    for what, make in candidates:
        try:
            _forward(m, make, const or {})
            return what, make
        except Exception as e:  # noqa: BLE001 - this input does not fit: try the next
            errors.append(f"{what}: {type(e).__name__}: {_first_line(e)[:150]}")
    raise BuildFail("torch forward fails with every input tried: " + " | ".join(errors))


def _images(shape, *, uniform=False):
    def make(batch, seed):
        x = torch.rand(batch, *shape, generator=_gen(seed)) if uniform else _randn((batch, *shape), seed)
        return (x,), {}
    return make


# --- torchvision and timm ------------------------------------------------------------------------

def torchvision_names(source):
    if source == "timm":
        return list(TIMM)
    module = {"torchvision-cls": torchvision.models, "torchvision-seg": torchvision.models.segmentation,
              "torchvision-video": torchvision.models.video}[source]
    names = torchvision.models.list_models(module=module)
    if source == "torchvision-cls":
        names = [n for n in names if n not in torchvision.models.list_models(module=torchvision.models.segmentation)]
    return names


def torchvision_spec(source, name, args) -> Spec:
    if source == "timm":
        import timm

        m = timm.create_model(name, pretrained=False, num_classes=10)
    else:
        kw = {"num_classes": 5, "weights_backbone": None} if source == "torchvision-seg" else {"num_classes": 10}
        if name in ("googlenet", "inception_v3"):
            kw.update(aux_logits=False, init_weights=True)
        m = torchvision.models.get_model(name, weights=None, **kw)
    m.eval()
    if _params(m) > args.max_params * 1e6:
        raise Skip(f"{_params(m) / 1e6:.0f}M parameters")
    video = source == "torchvision-video"
    cfg = getattr(m, "pretrained_cfg", None) or {}
    default = tuple(cfg.get("input_size", (3, 224, 224)))[1:]
    sizes = [(3, 8, 64, 64), (3, 16, 224, 224)] if video else [(3, 64, 64), (3, *default)]
    if args.size:
        sizes = [(3, 8, args.size, args.size)] if video else [(3, args.size, args.size)]
    _, make = first_runnable(m, [("x".join(map(str, s)), _images(s)) for s in sizes])
    return Spec(m, make)


# --- Hugging Face transformers -------------------------------------------------------------------

HIDDEN, HEADS, LAYERS, FFN, VOCAB = 32, 4, 2, 37, 99
TINY_INT = {
    **dict.fromkeys(["hidden_size", "d_model", "n_embd", "dim", "embed_dim", "encoder_hidden_size",
                     "text_embed_dim", "vision_embed_dim", "projection_dim", "word_embed_proj_dim",
                     "embedding_size", "hidden_dim_model"], HIDDEN),
    **dict.fromkeys(["num_hidden_layers", "n_layer", "n_layers", "num_layers", "encoder_layers", "decoder_layers",
                     "num_encoder_layers", "num_decoder_layers", "num_hidden_groups_layers"], LAYERS),
    **dict.fromkeys(["num_attention_heads", "n_head", "n_heads", "num_heads", "encoder_attention_heads",
                     "decoder_attention_heads"], HEADS),
    **dict.fromkeys(["num_key_value_heads", "n_kv_heads", "num_kv_heads"], 2),
    **dict.fromkeys(["intermediate_size", "ffn_dim", "encoder_ffn_dim", "decoder_ffn_dim", "d_ff", "n_inner",
                     "hidden_dim", "intermediate_dim", "decoder_intermediate_size", "encoder_intermediate_size"], FFN),
    **dict.fromkeys(["head_dim", "d_kv", "attention_head_dim", "qk_nope_head_dim", "qk_rope_head_dim",
                     "v_head_dim"], HIDDEN // HEADS),
    **dict.fromkeys(["kv_lora_rank", "q_lora_rank"], 16),
    **dict.fromkeys(["num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts"], 4),
    **dict.fromkeys(["num_experts_per_tok", "moe_topk", "top_k"], 2),
    **dict.fromkeys(["moe_intermediate_size", "shared_expert_intermediate_size"], 16),
    **dict.fromkeys(["n_shared_experts", "num_shared_experts", "first_k_dense_replace", "n_group", "topk_group"], 1),
    "vocab_size": VOCAB, "max_position_embeddings": 64, "n_positions": 64, "n_ctx": 64,
    "max_source_positions": 32, "max_target_positions": 64, "num_frames": 2, "frames_per_clip": 2,
    "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 2, "window_size": 2,
}
TOKEN_IDS = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2, "decoder_start_token_id": 1,
             "sep_token_id": 2, "cls_token_id": 1, "mask_token_id": 3, "unk_token_id": 3}


def _shrink_list(key, v):
    if not v or not all(isinstance(i, int) and not isinstance(i, bool) for i in v):
        return None
    n = len(v)
    if key in ("depths", "num_layers", "stage_depths", "layers", "encoder_depths"):
        return type(v)([1] * n)
    if key in ("hidden_sizes", "embed_dims", "embed_dim", "channels", "neck_hidden_sizes", "encoder_hidden_sizes"):
        return type(v)([16 * 2 ** min(i, 3) for i in range(n)])
    if key in ("num_attention_heads", "num_heads", "encoder_num_heads"):
        return type(v)([2 ** min(i, 3) for i in range(n)])
    if key == "conv_dim":
        return type(v)([32] * n)
    return None


def tiny_overrides(cfg, size) -> dict:
    """Keyword arguments that make `cfg` (a transformers config) tiny: only keys it has, sub-configs
    (text_config, vision_config, ...) as partial dicts, so derived attributes follow."""
    from transformers import PretrainedConfig

    out = {}
    for k, v in vars(cfg).items():
        if k.startswith("_"):
            continue
        if isinstance(v, PretrainedConfig):
            out[k] = tiny_overrides(v, size)
        elif isinstance(v, bool) or v is None:
            continue
        elif isinstance(v, int):
            if k in TOKEN_IDS and v >= VOCAB:
                out[k] = TOKEN_IDS[k]
            elif k in TINY_INT:
                out[k] = min(v, TINY_INT[k]) if k.startswith(("max_", "n_pos", "n_ctx", "window")) else TINY_INT[k]
            elif k in ("image_size", "img_size", "input_size"):
                out[k] = size
        elif isinstance(v, (list, tuple)):
            if k in ("image_size", "img_size") and len(v) == 2:
                out[k] = type(v)([size, size])
            else:
                s = _shrink_list(k, v)
                if s is not None:
                    out[k] = s
    return out


def _sub_attr(cfg, names, default=None):
    """The first of `names` on the config or its vision/audio/text sub-configs."""
    for c in (cfg, *(getattr(cfg, s, None) for s in ("vision_config", "audio_config", "encoder_config",
                                                     "text_config", "backbone_config"))):
        if c is None:
            continue
        for n in names:
            v = getattr(c, n, None)
            if v is not None:
                return v
    return default


def _left_padded_mask(batch, length, seed):
    pads = {(2, 1): [3, 0], (2, 2): [1, 4], (3, 3): [0, 2, 5]}.get((batch, seed), [seed % length] * batch)
    mask = torch.ones(batch, length, dtype=torch.long)
    for row, n in enumerate(pads):
        mask[row, :n] = 0
    return mask


def _text_maker(vocab, params, length=10, decoder=False, pixels=None):
    def make(batch, seed):
        ids = torch.randint(4, max(5, vocab), (batch, length), generator=_gen(seed))
        kw = {}
        if "attention_mask" in params:
            kw["attention_mask"] = _left_padded_mask(batch, length, seed)
        if decoder:
            kw["decoder_input_ids"] = torch.randint(4, max(5, vocab), (batch, 5), generator=_gen(seed + 100))
        if pixels:
            kw["pixel_values"] = _randn((batch, *pixels), seed + 200)
        return (ids,), kw
    return make


def _with_decoder_ids(make, vocab):
    def wrapped(batch, seed):
        xs, kw = make(batch, seed)
        return xs, {**kw, "decoder_input_ids": torch.randint(4, max(5, vocab), (batch, 5), generator=_gen(seed + 100))}
    return wrapped


def _hf_candidates(model, cfg, size):
    name = model.main_input_name
    params = inspect.signature(model.forward).parameters
    try:
        emb = model.get_input_embeddings()
    except Exception:  # noqa: BLE001 - dual encoders (CLIP) do not say
        emb = None
    vocab = int(getattr(emb, "num_embeddings", None) or _sub_attr(cfg, ["vocab_size"], VOCAB))
    decoder = bool(getattr(cfg, "is_encoder_decoder", False)) and "decoder_input_ids" in params
    c = _sub_attr(cfg, ["num_channels", "in_channels", "num_input_channels"], 3)
    c = c if isinstance(c, int) else 3
    if name == "input_ids":
        out = [("text", _text_maker(vocab, params, decoder=decoder))]
        if "pixel_values" in params:  # dual encoders (CLIP, SigLIP, ...): text and image
            out.append((f"text+{c}x{size}x{size}", _text_maker(vocab, params, decoder=decoder, pixels=(c, size, size))))
        return out
    if name in ("pixel_values", "pixel_values_videos"):
        f = _sub_attr(cfg, ["num_frames", "frames_per_clip"], 2)
        out = [(f"{c}x{size}x{size}", _images((c, size, size))),
               (f"{f}x{c}x{size}x{size}", _images((f, c, size, size))),
               (f"{c}x{f}x{size}x{size}", _images((c, f, size, size)))]
    elif name == "input_values":
        out = [(f"{t}", _images((t,))) for t in (1600, 4000)] + [("1x1600", _images((1, 1600)))]
    elif name == "input_features":
        mel = _sub_attr(cfg, ["num_mel_bins", "feature_size", "input_feat_per_channel", "n_mels"], 80)
        src = _sub_attr(cfg, ["max_source_positions"], 32)
        out = [(f"{mel}x{2 * src}", _images((mel, 2 * src))), (f"64x{mel}", _images((64, mel))),
               (f"{mel}x64", _images((mel, 64)))]
    else:
        raise BuildFail(f"main_input_name {name!r}: no input maker in this sweep")
    if decoder:
        out = [(f"{what}+decoder_ids", _with_decoder_ids(make, vocab)) for what, make in out]
    return out


def transformers_names():
    from transformers import CONFIG_MAPPING
    from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES

    return [k for k in MODEL_MAPPING_NAMES if k in CONFIG_MAPPING]


def transformers_spec(name, args) -> Spec:
    from transformers import CONFIG_MAPPING, AutoModel

    cls = CONFIG_MAPPING[name]
    errors = []
    for size in (32, 64):
        try:
            cfg = cls(**tiny_overrides(cls(), size))
            model = AutoModel.from_config(cfg, dtype=torch.float32).eval()
        except Exception as e:  # noqa: BLE001
            raise BuildFail(f"build: {type(e).__name__}: {_first_line(e)[:200]}") from None
        params = inspect.signature(model.forward).parameters
        const = {k: v for k, v in (("use_cache", False),) if k in params}
        try:
            what, make = first_runnable(model, _hf_candidates(model, cfg, size), const)
            return Spec(model, make, const, note=f"{type(model).__name__} {what}")
        except BuildFail as e:
            errors.append(str(e))
            if model.main_input_name not in ("pixel_values", "pixel_values_videos"):
                break
    raise BuildFail(" / ".join(errors))


# --- diffusers -----------------------------------------------------------------------------------

DIFFUSERS_TINY = {
    "layers_per_block": 1, "norm_num_groups": 8, "resnet_groups": 8, "attention_head_dim": 8,
    "num_attention_heads": 2, "cross_attention_dim": 32, "joint_attention_dim": 32, "pooled_projection_dim": 32,
    "caption_channels": 32, "caption_projection_dim": 32, "num_layers": 2, "num_single_layers": 1,
    "transformer_layers_per_block": 1, "sample_size": 16, "out_channels": None, "text_dim": 32,
    "time_embed_dim": None, "embed_dim": 32, "hidden_size": 32, "encoder_hid_dim": None,
    "conditioning_embedding_out_channels": (8, 16), "num_vq_embeddings": 16, "vq_embed_dim": 4,
    "encoder_block_out_channels": (16, 32), "decoder_block_out_channels": (16, 32),
    "block_out_channels": (32, 64), "addition_embed_type_num_heads": 2, "projection_class_embeddings_input_dim": None,
    "num_embeds_ada_norm": 1000, "mid_block_channels": 32, "temporal_num_attention_heads": 2,
}


def diffusers_names():
    import diffusers.models
    from diffusers import ModelMixin

    names = []
    for n in sorted(dir(diffusers.models)):
        try:
            obj = getattr(diffusers.models, n)
        except Exception:  # noqa: BLE001,S112 - a model whose optional dependency is missing
            continue
        if isinstance(obj, type) and issubclass(obj, ModelMixin) and obj is not ModelMixin:
            names.append(n)
    return names


def _diffusers_kwargs(cls) -> dict:
    sig = inspect.signature(cls.__init__).parameters
    kw = {}
    for k, v in DIFFUSERS_TINY.items():
        if k not in sig or v is None:
            continue
        if k == "num_attention_heads" and "attention_head_dim" in sig and "block_out_channels" in sig:
            continue  # UNets: heads come from attention_head_dim (diffusers refuses both)
        default = sig[k].default
        if isinstance(v, tuple):
            if not isinstance(default, (tuple, list)):
                continue
            v = v[: max(1, min(len(default), len(v)))]
        elif isinstance(default, (tuple, list)) and default and isinstance(default[0], int):
            v = type(default)([v] * len(default))
        kw[k] = v
    n = len(kw.get("block_out_channels", ()))
    for k in ("down_block_types", "up_block_types", "temporal_down_block_types", "temporal_up_block_types"):
        default = sig[k].default if k in sig else None
        if n and isinstance(default, (tuple, list)) and len(default) != n:
            kw[k] = type(default)([default[0], default[-1]][:n] if n <= 2 else list(default[:n]))
    if "axes_dims_rope" in sig and "attention_head_dim" in kw:
        kw["axes_dims_rope"] = (2, 2, 4)
    return kw


def _diffusers_candidates(model):
    cfg = model.config
    params = inspect.signature(model.forward).parameters
    names = list(params)
    c = cfg.get("in_channels", None) or cfg.get("num_channels", None) or 4
    s = cfg.get("sample_size", 16)
    s = s[0] if isinstance(s, (list, tuple)) else (s or 16)
    s = min(int(s), 32)
    ctx = cfg.get("cross_attention_dim", None) or cfg.get("joint_attention_dim", None) or cfg.get("caption_channels", None)
    pooled = cfg.get("pooled_projection_dim", None)

    required = {p for p, v in params.items() if v.default is inspect.Parameter.empty}
    cond = s * 2 ** (len(cfg.get("conditioning_embedding_out_channels", None) or (0, 0, 0, 0)) - 1)
    n_class = cfg.get("num_embeds_ada_norm", None) or cfg.get("num_class_embeds", None)

    def maker(sample_shape):
        # The sample is positional, everything else by keyword (forward orders differ: Flux, SD3 and
        # PixArt take encoder_hidden_states before timestep).
        def make(batch, seed):
            kw = {}
            for p in names[1:]:
                if p in ("timestep", "timesteps", "t", "timestep_r", "r_timestep", "timestep_ratio"):
                    kw[p] = torch.rand(batch, generator=_gen(seed + 1)) * 900 + 10
                elif p == "encoder_hidden_states" and (ctx or p in required):
                    kw[p] = _randn((batch, 4, int((ctx if isinstance(ctx, int) else ctx[0]) if ctx else 32)), seed + 2)
                elif p == "pooled_projections" and pooled:
                    kw[p] = _randn((batch, int(pooled)), seed + 3)
                elif p == "controlnet_cond":
                    kw[p] = _randn((batch, 3, cond, cond), seed + 4)
                elif p == "class_labels" and n_class:
                    kw[p] = torch.randint(0, int(n_class), (batch,), generator=_gen(seed + 5))
            return (_randn((batch, *sample_shape), seed),), kw
        return make

    const = {"return_dict": False} if "return_dict" in params else {}
    shapes = [(c, s, s), (c, 2, s, s), (c, s)]
    return [("x".join(map(str, sh)), maker(sh)) for sh in shapes], const


def diffusers_spec(name, args) -> Spec:
    import diffusers

    cls = getattr(diffusers.models, name)
    try:
        model = cls(**_diffusers_kwargs(cls)).eval()
    except Exception as e:  # noqa: BLE001
        raise BuildFail(f"build: {type(e).__name__}: {_first_line(e)[:200]}") from None
    if _params(model) > args.max_params * 1e6:
        raise Skip(f"{_params(model) / 1e6:.0f}M parameters")
    candidates, const = _diffusers_candidates(model)
    what, make = first_runnable(model, candidates, const)
    return Spec(model, make, const, note=what)


# --- kornia --------------------------------------------------------------------------------------

KORNIA_MODULES = ["kornia.filters", "kornia.color", "kornia.enhance", "kornia.geometry.transform", "kornia.feature"]


def _kornia_args():
    from kornia.color import CFA

    t = torch.tensor
    return {
        "RawToRgb": dict(cfa=CFA.BG), "RawToRgb2x2Downscaled": dict(cfa=CFA.BG), "RgbToRaw": dict(cfa=CFA.BG),
        "GaussianBlur2d": dict(kernel_size=(5, 5), sigma=(1.5, 1.5)), "BoxBlur": dict(kernel_size=(3, 3)),
        "MedianBlur": dict(kernel_size=(3, 3)), "MotionBlur": dict(kernel_size=5, angle=35.0, direction=0.5),
        "BilateralBlur": dict(kernel_size=(5, 5), sigma_color=0.1, sigma_space=(1.5, 1.5)),
        "JointBilateralBlur": dict(kernel_size=(5, 5), sigma_color=0.1, sigma_space=(1.5, 1.5)),
        "GuidedBlur": dict(kernel_size=5, eps=0.01), "UnsharpMask": dict(kernel_size=(5, 5), sigma=(1.5, 1.5)),
        "Laplacian": dict(kernel_size=5), "Canny": {}, "DexiNed": dict(pretrained=False),
        "InRange": dict(lower=(0.2, 0.2, 0.2), upper=(0.8, 0.8, 0.8)),
        "AdjustBrightness": dict(brightness_factor=0.2), "AdjustContrast": dict(contrast_factor=1.3),
        "AdjustContrastWithMeanSubtraction": dict(contrast_factor=1.3), "AdjustSaturation": dict(saturation_factor=1.4),
        "AdjustSaturationWithGraySubtraction": dict(saturation_factor=1.4), "AdjustHue": dict(hue_factor=0.2),
        "AdjustGamma": dict(gamma=1.4, gain=1.1), "AdjustSigmoid": dict(cutoff=0.4, gain=8.0),
        "AdjustLog": dict(gain=1.2), "AdjustBrightnessAccumulative": dict(brightness_factor=0.2),
        "Normalize": dict(mean=t([0.4, 0.5, 0.6]), std=t([0.2, 0.25, 0.3])),
        "Denormalize": dict(mean=t([0.4, 0.5, 0.6]), std=t([0.2, 0.25, 0.3])),
        "ZCAWhitening": None, "Sharpness": dict(sharpness=0.5), "Posterize": dict(bits=3),
        "Solarize": dict(thresholds=0.4), "Invert": {}, "JPEGCodecDifferentiable": {},
        "Rotate": dict(angle=t([30.0])), "Translate": dict(translation=t([[3.0, -2.0]])),
        "Scale": dict(scale_factor=t([[1.2, 0.9]])), "Shear": dict(shear=t([[0.1, 0.2]])),
        "Resize": dict(size=(24, 40)), "Rescale": dict(factor=0.5), "Affine": dict(angle=t([20.0])),
        "Hflip": {}, "Vflip": {}, "Rot180": {}, "PyrDown": {}, "PyrUp": {}, "ScalePyramid": {},
        "ResizePreProcessor": dict(size=(32, 32)), "HistogramMatcher": None,
        "ImageRegistrator": None, "Homography": None, "SIFTDescriptor": dict(patch_size=32),
        "MKDDescriptor": dict(patch_size=32), "HardNet": dict(pretrained=False), "HardNet8": dict(pretrained=False),
        "TFeat": dict(pretrained=False), "SOSNet": dict(pretrained=False), "HyNet": dict(pretrained=False),
        "AffNet": dict(pretrained=False), "OriNet": dict(pretrained=False), "KeyNet": dict(pretrained=False),
        "DenseSIFTDescriptor": {}, "BlobHessian": {}, "BlobDoG": {}, "CornerHarris": dict(k=0.04),
        "CornerGFTT": {}, "BlobDoGSingle": {}, "SpatialGradient": {}, "SpatialGradient3d": {}, "Sobel": {},
        "DiamondSquareGenerator": None, "BlurPool2D": dict(kernel_size=3), "MaxBlurPool2D": dict(kernel_size=3),
        "EdgeAwareBlurPool2D": dict(kernel_size=3), "MotionBlur3D": dict(kernel_size=5, angle=(30.0, 20.0, 10.0),
                                                                         direction=0.5),
        "BgrToRgba": dict(alpha_val=1.0), "RgbToRgba": dict(alpha_val=1.0), "Threshold": dict(thresh=0.5),
        "CenterCrop2D": dict(size=(24, 24)), "FilterResponseNorm2d": dict(num_features=3),
        "TLU": dict(num_features=3), "DeFMO": dict(pretrained=False), "KeyNetDetector": dict(pretrained=False),
        "LAFAffNetShapeEstimator": dict(pretrained=False), "ApplyColorMap": None, "AddWeighted": None,
        "BaseWarper": None, "HomographyWarper": None, "LocalFeature": None, "LocalFeatureMatcher": None,
        "MultiResolutionDetector": None, "StableDiffusionDissolving": None, "LightGlue": None,
        "LightGlueMatcher": None, "LoFTR": None, "SOLD2": None, "SOLD2_detector": None, "DeDoDe": None,
    }


def kornia_names():
    import importlib

    names = []
    for modname in KORNIA_MODULES:
        mod = importlib.import_module(modname)
        for n in sorted(dir(mod)):
            obj = getattr(mod, n)
            if isinstance(obj, type) and issubclass(obj, torch.nn.Module) and obj.__module__.startswith("kornia"):
                key = f"{modname.split('.')[-1]}.{n}"
                if key not in names:
                    names.append(key)
    return names


def kornia_spec(name, args) -> Spec:
    import importlib

    group, cls_name = name.split(".")
    modname = next(m for m in KORNIA_MODULES if m.endswith(group))
    cls = getattr(importlib.import_module(modname), cls_name)
    kw = _kornia_args().get(cls_name, {})
    if kw is None:
        raise BuildFail("not run: needs data, several inputs, or downloaded weights")
    if "pretrained" in inspect.signature(cls.__init__).parameters:
        kw = {"pretrained": False, **kw}
    try:
        m = cls(**kw).eval()
    except Exception as e:  # noqa: BLE001
        raise BuildFail(f"build: {type(e).__name__}: {_first_line(e)[:200]}") from None
    shapes = [(3, 32, 32), (1, 32, 32), (4, 32, 32), (3, 64, 64), (1, 64, 64), (3, 4, 16, 16)]
    what, make = first_runnable(m, [("x".join(map(str, s)), _images(s, uniform=True)) for s in shapes])
    return Spec(m, make, note=what)


# --- ultralytics ---------------------------------------------------------------------------------

ULTRALYTICS = ("yolov8n yolov8n-seg yolov8n-pose yolov8n-cls yolov8n-obb yolov8n-ghost yolov8n-p2 yolov8n-p6 "
               "yolo11n yolo11n-seg yolo11n-pose yolo11n-cls yolo11n-obb yolo12n yolo12n-seg yolo12n-cls "
               "yolo26n yolo26n-seg yolo26n-pose yolo26n-cls yolo26n-obb yolov10n yolov9c yolov6n yolov5nu "
               "yolov3-tiny rtdetr-l").split()


def ultralytics_spec(name, args) -> Spec:
    from ultralytics.nn import tasks

    cls = tasks.RTDETRDetectionModel if name.startswith("rtdetr") else {
        "seg": tasks.SegmentationModel, "pose": tasks.PoseModel, "cls": tasks.ClassificationModel,
        "obb": tasks.OBBModel}.get(name.rsplit("-", 1)[-1], tasks.DetectionModel)
    try:
        m = cls(f"{name}.yaml", verbose=False).eval()
    except Exception as e:  # noqa: BLE001
        raise BuildFail(f"build: {type(e).__name__}: {_first_line(e)[:200]}") from None
    size = args.size or 64
    what, make = first_runnable(m, [(f"3x{s}x{s}", _images((3, s, s))) for s in (size, 128)])
    return Spec(m, make, note=what)


# --- segmentation_models_pytorch -----------------------------------------------------------------

SMP_ARCHS = "Unet UnetPlusPlus FPN PSPNet DeepLabV3 DeepLabV3Plus Linknet MAnet PAN UPerNet Segformer".split()
SMP_ENCODERS = ["resnet18", "mobilenet_v2"]


def smp_spec(name, args) -> Spec:
    import segmentation_models_pytorch as smp

    arch, encoder = name.split("/")
    try:
        m = getattr(smp, arch)(encoder_name=encoder, encoder_weights=None, classes=3).eval()
    except Exception as e:  # noqa: BLE001
        raise BuildFail(f"build: {type(e).__name__}: {_first_line(e)[:200]}") from None
    size = args.size or 64
    what, make = first_runnable(m, [(f"3x{s}x{s}", _images((3, s, s))) for s in (size, 128)])
    return Spec(m, make, note=what)


# --- open_clip -----------------------------------------------------------------------------------

OPEN_CLIP = ["RN50", "ViT-B-32", "convnext_tiny", "MobileCLIP-S1"]


def open_clip_spec(name, args) -> Spec:
    import open_clip

    size = args.size or 64
    try:
        model = open_clip.create_model(name, pretrained=None, force_image_size=size)
    except Exception as e:  # noqa: BLE001
        raise BuildFail(f"build: {type(e).__name__}: {_first_line(e)[:200]}") from None
    m = model.visual.eval()
    what, make = first_runnable(m, [(f"3x{size}x{size}", _images((3, size, size)))])
    return Spec(m, make, note=f"visual {what}")


# --- one model -----------------------------------------------------------------------------------

def names_for(source):
    if source in ("torchvision-cls", "torchvision-seg", "torchvision-video", "timm"):
        return torchvision_names(source)
    return {
        "transformers": transformers_names, "diffusers": diffusers_names, "kornia": kornia_names,
        "ultralytics": lambda: list(ULTRALYTICS), "smp": lambda: [f"{a}/{e}" for e in SMP_ENCODERS for a in SMP_ARCHS],
        "open_clip": lambda: list(OPEN_CLIP),
    }[source]()


def spec_for(source, name, args) -> Spec:
    if source in ("torchvision-cls", "torchvision-seg", "torchvision-video", "timm"):
        return torchvision_spec(source, name, args)
    return {"transformers": transformers_spec, "diffusers": diffusers_spec, "kornia": kornia_spec,
            "ultralytics": ultralytics_spec, "smp": smp_spec, "open_clip": open_clip_spec}[source](name, args)


class _Call(torch.nn.Module):
    """model(*args, **kwargs) with fixed keyword arguments, for calibrate_batchnorm_."""

    def __init__(self, model, kwargs):
        super().__init__()
        self.model, self.kwargs = model, kwargs

    def forward(self, *args):
        return self.model(*args, **self.kwargs)


def _no_download(*args, **kwargs):
    raise BuildFail("weights download refused (random weights only, no network)")


def _first_line(e) -> str:
    s = str(e).strip()
    return s.splitlines()[0] if s else ""


def _flat_tensors(out):
    from recreate.convert import flatten_outputs

    return [o for o in flatten_outputs(out) if isinstance(o, torch.Tensor)]


def _informative(a, b) -> tuple[bool, list[int]]:
    """Whether any floating output changes between two input batches (and is not near zero),
    and which outputs do not."""
    constant = []
    for i, (x, y) in enumerate(zip(a, b)):
        if not x.is_floating_point() or x.shape != y.shape:
            continue
        x, y = x.double(), y.double()
        peak = float(x.abs().max()) if x.numel() else 0.0
        if peak < 1e-3 or torch.allclose(x, y, atol=1e-6 * max(1.0, peak), rtol=0):
            constant.append(i)
    floating = [i for i, x in enumerate(a) if x.is_floating_point()]
    return bool(floating) and len(constant) < len(floating), constant


STAGES = ("build", "check", "convert", "verify", "float64")
_stage_shared = None  # a multiprocessing Value in a sweep's child: the parent reads it on a kill


def _enter(stage: str) -> str:
    if _stage_shared is not None:
        _stage_shared.value = STAGES.index(stage)
    return stage


def run_one(source, name, args) -> dict:
    """Build, check, convert and verify one model (in a child process). Returns the result record."""
    torch.set_grad_enabled(False)
    rec = {"source": source, "name": name}
    t0 = time.perf_counter()
    stage = _enter("build")
    try:
        spec = spec_for(source, name, args)
        m, make, const = spec.model, spec.make, spec.const
        rec["note"] = spec.note
        rec["params"] = _params(m)
        randomize_(m, 0)
        if any(isinstance(x, torch.nn.modules.batchnorm._BatchNorm) for x in m.modules()):
            cal_args, cal_kw = make(8, 100)
            calibrate_batchnorm_(_Call(m, {**cal_kw, **const}), *cal_args)
        m.eval()
        a2, k2 = make(2, 1)
        b2, kb2 = make(2, 2)
        a3, k3 = make(3, 3)
        out_a, out_b = _flat_tensors(m(*a2, **k2, **const)), _flat_tensors(m(*b2, **kb2, **const))
        _flat_tensors(m(*a3, **k3, **const))
        rec["shape"] = [list(x.shape) for x in a2]
        stage = _enter("check")
        informative, constant = _informative(out_a, out_b)
        if constant:
            rec["constant_outputs"] = constant
        if not informative:
            rec.update(status="TRIVIAL", detail=f"no output changes with the input ({len(out_a)} output(s))")
            return rec
        stage = _enter("convert")
        km = recreate.convert(m, a2, kwargs={**k2, **const})
        rec["convert_s"] = round(time.perf_counter() - t0, 2)
        stage = _enter("verify")
        reports = [recreate.verify(m, km, a2, kwargs={**k2, **const}, tolerance=TOLERANCE),
                   recreate.verify(m, km, a3, kwargs={**k3, **const}, tolerance=TOLERANCE)]
        passed = all(r.passed for r in reports)
        worst = max(reports, key=lambda r: r.error)
        rec["error"] = worst.error
        rec["status"] = "OK" if passed else "MISMATCH"
        rec["detail"] = (f"error {reports[0].error:.3g} at batch 2, {reports[1].error:.3g} at batch 3"
                         + ("" if passed else "; " + str(worst).strip().splitlines()[-1][:300]))
        if not passed:
            fd = worst.first_divergent
            rec["reason"] = f"MISMATCH in {fd.torch_type}" if fd is not None else "MISMATCH (no diverging layer named)"
            if args.float64:
                stage = _enter("float64")
                rec["float64_error"] = float64_error(m, a2, {**k2, **const})
                if rec["float64_error"] <= FLOAT64_BUDGET:
                    rec["status"] = "DRIFT"
                    rec["detail"] = (f"float32 error {worst.error:.3g}, float64 error {rec['float64_error']:.2g}: "
                                     "float32 rounding, not the converter")
                    rec.pop("reason")
                else:
                    rec["detail"] += f"; float64 error {rec['float64_error']:.2g}"
    except Skip as e:
        rec.update(status="SKIP", detail=str(e))
    except Exception as e:  # noqa: BLE001 - report and go on with the next model
        failed_build = stage == "build"
        rec.update(status="BUILD-FAIL" if failed_build else "FAIL", stage=stage,
                   detail=f"{type(e).__name__}: {_first_line(e)[:400]}", reason=reason_of(e))
        if os.environ.get("SWEEP_TRACEBACK"):
            traceback.print_exc()
    finally:
        rec["seconds"] = round(time.perf_counter() - t0, 2)
    return rec


FLOAT64_BUDGET = 1e-9  # a converter bug stays large in float64; rounding falls to ~1e-12


def float64_error(m, args, kwargs) -> float:
    """The same model converted and compared in float64 (this child process only: Keras's
    global dtype policy changes). Tells float32 rounding in a deep net from a converter bug
    (timm LeViT: 0.096 in float32, 1.5e-10 in float64)."""
    import keras

    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")

    def dbl(v):
        return v.double() if isinstance(v, torch.Tensor) and v.is_floating_point() else v

    m = m.double()
    args = tuple(dbl(a) for a in args)
    kwargs = {k: dbl(v) for k, v in kwargs.items()}
    km = recreate.convert(m, args, kwargs=kwargs)
    report = recreate.verify(m, km, args, kwargs=kwargs, tolerance=1.0)
    return float(report.error)


def _normalize(s: str) -> str:
    s = re.sub(r"0x[0-9a-fA-F]+", "0x_", s)
    s = re.sub(r"\d+", "N", s)
    return re.sub(r"\s+", " ", s).strip()


def reason_of(e: BaseException | str, etype: str | None = None) -> str:
    """A failure's group: exception type and the start of its message, numbers normalized, with
    the wrapper text of recreate's own errors (capture/trace/convert of node ...) taken off."""
    etype = etype or type(e).__name__
    msg = _first_line(e) if isinstance(e, BaseException) else str(e)
    if isinstance(e, BuildFail):
        msg = re.sub(r"^build: ", "", msg)
        msg = re.sub(r"^torch forward fails with every input tried: [^:]*: ", "forward: ", msg)
        return _normalize(msg)[:70]
    m = re.search(r"(?:ATen op|op converter for \w+) '?([\w.:<>]+)", msg)
    if m:
        return f"{etype}: {m.group(1)}"
    m = re.match(r"torch\.(export|fx) could not (?:capture|trace) .*?: (\w+(?:Error|Exception|Warning|Node)\w*): (.*)", msg)
    if m:
        return f"{etype}({m.group(1)}): {m.group(2)}: {_normalize(m.group(3))[:60]}"
    m = re.match(r"converting .*?target=([\w.:]+).*?\): (?:(\w+Error): )?(.*)", msg)
    if m:
        return f"{etype}: {m.group(1)}: {m.group(2) or ''} {_normalize(m.group(3))[:50]}".replace("  ", " ")
    return f"{etype}: {_normalize(msg)[:60]}"


def _child(source, name, args, conn, stage=None):
    global _stage_shared
    _stage_shared = stage
    try:
        rec = run_one(source, name, args)
    except BaseException as e:  # noqa: BLE001
        rec = {"source": source, "name": name, "status": "FAIL", "detail": f"{type(e).__name__}: {_first_line(e)}",
               "reason": reason_of(e)}
    conn.send(rec)
    conn.close()


def _rss_gb(pid) -> float:
    """A child's resident set in GB (0 where /proc cannot tell)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            kb = next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0)
    except (OSError, ValueError):
        return 0.0
    return kb / 2**20


def format_line(rec) -> str:
    s = rec["status"]
    shape = "x".join(map(str, rec["shape"][0])) if rec.get("shape") else ""
    head = f"{rec['name']}: {s} {rec.get('seconds', 0):.1f} s"
    if shape:
        head += f" {shape}"
    if rec.get("note"):
        head += f" [{rec['note']}]"
    if rec.get("constant_outputs") and s in ("OK", "MISMATCH"):
        head += f" (constant outputs {rec['constant_outputs']})"
    return f"{head}: {rec.get('detail', '')[:300]}"


def run_all(source, names, args):
    """Each model in a forked child with a timeout; `args.jobs` children at once."""
    ctx = mp.get_context("fork")
    pending = list(names)
    running = {}  # reader -> (process, name, start)
    results = []
    out = open(args.out, "a") if args.out else None  # noqa: SIM115 - closed below

    def finish(rec):
        results.append(rec)
        print(format_line(rec), flush=True)
        if out:
            out.write(json.dumps(rec) + "\n")
            out.flush()

    try:
        while pending or running:
            while pending and len(running) < args.jobs:
                name = pending.pop(0)
                reader, writer = ctx.Pipe(duplex=False)
                stage = ctx.Value("i", 0)
                p = ctx.Process(target=_child, args=(source, name, args, writer, stage), daemon=True)
                p.start()
                writer.close()
                running[reader] = (p, name, time.monotonic(), stage)
            ready = wait(list(running), timeout=1.0)
            for reader in ready:
                p, name, start, _ = running.pop(reader)
                try:
                    rec = reader.recv()
                except EOFError:
                    p.join(10)
                    code = p.exitcode
                    why = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
                    rec = {"source": source, "name": name, "status": "FAIL", "detail": f"Crash: process died ({why})",
                           "reason": f"Crash: {why}"}
                rec.setdefault("seconds", round(time.monotonic() - start, 2))
                p.join(30)
                if p.is_alive():
                    p.kill()
                    p.join()
                reader.close()
                finish(rec)
            now = time.monotonic()
            for reader, (p, name, start, stage) in list(running.items()):
                rss = _rss_gb(p.pid)
                if now - start > args.timeout or rss > args.max_memory:
                    p.kill()  # this child only, by its pid
                    p.join()
                    running.pop(reader)
                    reader.close()
                    where = STAGES[stage.value]
                    why = (f"Timeout: no result after {args.timeout:.0f} s" if now - start > args.timeout else
                           f"Memory: resident set {rss:.1f} GB over --max-memory {args.max_memory:g} GB")
                    # Killed while torch was still building or running the model: the harness's
                    # budget, not a conversion result (SKIP, like --max-params).
                    status = "SKIP" if where in ("build", "check") else "FAIL"
                    finish({"source": source, "name": name, "status": status, "seconds": round(now - start, 1),
                            "stage": where, "detail": f"{why} (while in {where})", "reason": why.split(":")[0]})
    finally:
        for p, *_ in running.values():
            p.kill()
        if out:
            out.close()
    return results


def summarize(source, results) -> str:
    c = Counter(r["status"] for r in results)
    built = len(results) - c["BUILD-FAIL"] - c["SKIP"]
    converted = c["OK"] + c["MISMATCH"] + c["DRIFT"]
    lines = [f"\n== {source}: {len(results)} models: built {built}, trivial {c['TRIVIAL']}, "
             f"converted {converted} of {built - c['TRIVIAL']}, matched {c['OK'] + c['DRIFT']}"
             + (f" ({c['DRIFT']} past 1e-4 in float32 only: float64 error <= {FLOAT64_BUDGET:g})" if c["DRIFT"] else "")
             + (f", skipped {c['SKIP']}" if c["SKIP"] else "") + f", did not build {c['BUILD-FAIL']}"]
    for title, statuses in (("failures", ("FAIL", "MISMATCH")), ("did not build", ("BUILD-FAIL",))):
        groups = defaultdict(list)
        for r in results:
            if r["status"] in statuses:
                groups[r.get("reason") or r.get("detail", "")[:60]].append(r["name"])
        if groups:
            lines.append(f"-- {title} by reason:")
            for reason, ns in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
                shown = ", ".join(ns[:8]) + (f" ... (+{len(ns) - 8})" if len(ns) > 8 else "")
                lines.append(f"  {len(ns):4d}  {reason}  [{shown}]")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("source", choices=SOURCES)
    p.add_argument("--only", help="comma-separated model names")
    p.add_argument("--limit", type=int, help="run the first N models only")
    p.add_argument("--max-params", type=float, default=120, help="skip models above this many million parameters")
    p.add_argument("--size", type=int, help="input height and width (default: 64 where the model takes it)")
    p.add_argument("--timeout", type=float, default=300, help="seconds per model (its process is killed after)")
    p.add_argument("--jobs", type=int, default=1, help="models at once (default 1)")
    p.add_argument("--max-memory", type=float, default=8, metavar="GB",
                   help="kill a model's process whose resident set grows past this (default 8 GB; the machine is shared)")
    p.add_argument("--out", help="append one JSON object per model to this file")
    p.add_argument("--no-float64", dest="float64", action="store_false",
                   help=f"do not recheck a MISMATCH in float64 (DRIFT: float64 error <= {FLOAT64_BUDGET:g})")
    p.add_argument("--resume", action="store_true", help="skip the models already in --out (same source)")
    p.add_argument("--shuffle", type=int, metavar="SEED", help="run the models in a seeded random order "
                   "(a --limit or an interrupted run is then a random sample)")
    args = p.parse_args()
    if args.source == "ultralytics":
        os.environ.setdefault("YOLO_VERBOSE", "False")
    # Nothing is fetched: weights downloads fail at once (packages imported after this bind these).
    import urllib.request

    torch.hub.load_state_dict_from_url = torch.hub.download_url_to_file = _no_download
    urllib.request.urlopen = _no_download
    # The heavy imports happen here, once: every model's process is forked from this one.
    import keras  # noqa: F401
    import tensorflow  # noqa: F401

    names = names_for(args.source)
    if args.only:
        wanted = args.only.split(",")
        names = [n for n in names if n in wanted]
    if args.resume and args.out and os.path.exists(args.out):
        with open(args.out) as f:
            done = {r["name"] for r in map(json.loads, filter(str.strip, f)) if r.get("source") == args.source}
        names = [n for n in names if n not in done]
    if args.shuffle is not None:
        import random

        random.Random(args.shuffle).shuffle(names)
    if args.limit:
        names = names[: args.limit]
    t = time.monotonic()
    print(f"# {args.source}: {len(names)} models, timeout {args.timeout:.0f} s, jobs {args.jobs}, "
          f"{time.strftime('%Y-%m-%d %H:%M:%S')}", flush=True)
    results = run_all(args.source, names, args)
    print(summarize(args.source, results), flush=True)
    print(f"({time.monotonic() - t:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
