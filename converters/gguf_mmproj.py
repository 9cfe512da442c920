"""The vision projector (mmproj) GGUF of a Qwen2-VL / Qwen2.5-VL checkpoint (llama.cpp arch `clip`).

The vision encoder and the patch merger, with projector type `qwen2vl_merger` or
`qwen2.5vl_merger`. Conversions that llama.cpp's clip graph expects:
- the fused `attn.qkv` projection is split into q, k and v;
- the 3-D patch convolution (O, C, T=2, P, P) becomes two 2-D convolutions, one per frame
  (`v.patch_embd.weight` and `v.patch_embd.weight.1`), which llama.cpp sums for a still image;
- Qwen2-VL blocks use LayerNorm and quick-GELU (the clip default); Qwen2.5-VL uses RMSNorm and a
  SiLU-gated MLP (`clip.use_silu`) with window attention, written as `n_wa_pattern`: every
  n-th block is a full-attention block, so `fullatt_block_indexes` must be evenly spaced.
"""

from __future__ import annotations

import json
from pathlib import Path

from converters.gguf_write import OutType, Planned, file_type, storage_type, write_gguf
from converters.source import ModelSource
from t3edge.errors import BadInput

ARCH = "clip"
VISION_EPS = 1e-6  # the vision norms' epsilon, fixed in both model families
DEFAULT_IMAGE_SIZE = 560


def plan_vision_tensors(src: ModelSource, outtype: OutType) -> list[Planned]:
    import gguf

    vc = src.vision_config
    depth = int(vc["depth"])
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.MMPROJ, depth)
    patch = gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.V_ENC_EMBD_PATCH] + ".weight"
    planned: list[Planned] = []
    for hf in src.names:
        if not hf.startswith("visual."):
            continue
        shape = src.shape(hf)
        if hf.endswith("patch_embed.proj.weight"):
            if len(shape) != 5 or shape[2] != 2:
                raise BadInput(f"{src.folder}: {hf} has shape {shape}; expected (out, 3, 2, p, p)",
                               hint="only a temporal patch size of 2 is supported")
            frame = (shape[0], shape[1], shape[3], shape[4])
            for t, suffix in ((0, ""), (1, ".1")):
                planned.append(Planned(patch + suffix, frame,
                                       storage_type(patch, frame, outtype, float_only=True),
                                       lambda hf=hf, t=t: src.load(hf)[:, :, t]))
            continue
        if ".attn.qkv." in hf:
            third = shape[0] // 3
            for i, part in enumerate(("q", "k", "v")):
                new = _name(names, hf.replace(".qkv.", f".{part}."), src)
                sub = (third, *shape[1:])
                planned.append(Planned(new, sub, storage_type(new, sub, outtype),
                                       lambda hf=hf, i=i, n=third: src.load(hf)[i * n:(i + 1) * n]))
            continue
        new = _name(names, hf, src)
        planned.append(Planned(new, shape, storage_type(new, shape, outtype), lambda hf=hf: src.load(hf)))
    if not any(p.name.startswith("mm.") for p in planned):
        raise BadInput(f"{src.folder}: no vision merger tensors (visual.merger.*) found",
                       hint="this checkpoint has no vision tower to convert")
    return planned


def _name(names, hf: str, src: ModelSource) -> str:  # noqa: ANN001 (gguf.TensorNameMap)
    new = names.get_name(hf, try_suffixes=(".weight", ".bias"))
    if new is None:
        raise BadInput(f"{src.folder}: vision tensor {hf!r} has no GGUF name")
    return new


def _wa_pattern(vc: dict, folder: Path) -> int:
    full = list(vc.get("fullatt_block_indexes") or [])
    if not full:
        raise BadInput(f"{folder}: vision_config.fullatt_block_indexes is missing (needed for Qwen2.5-VL)")
    n = full[0] + 1
    if any(b - a != n for a, b in zip(full, full[1:])):
        raise BadInput(f"{folder}: fullatt_block_indexes {full} are not evenly spaced; "
                       "llama.cpp's window attention needs a fixed pattern")
    return n


def mmproj_metadata(src: ModelSource, outtype: OutType, name: str):  # noqa: ANN201
    import gguf

    vc = src.vision_config
    pre_path = src.folder / "preprocessor_config.json"
    pre = json.loads(pre_path.read_text()) if pre_path.is_file() else {}
    if "image_mean" not in pre or "image_std" not in pre:
        raise BadInput(f"{src.folder}: preprocessor_config.json with image_mean and image_std is needed")
    qwen25 = src.arch == "qwen2_5_vl"
    if qwen25:
        width, ffn = int(vc["hidden_size"]), int(vc["intermediate_size"])
        projector = gguf.VisionProjectorType.QWEN25VL
        wa = _wa_pattern(vc, src.folder)
    else:
        width = int(vc["embed_dim"])
        ffn = int(width * float(vc.get("mlp_ratio", 4)))
        projector = gguf.VisionProjectorType.QWEN2VL
        wa = 0
    text_hidden = int(src.text_config["hidden_size"])

    def apply(w) -> None:  # noqa: ANN001
        w.add_type(gguf.GGUFType.MMPROJ)
        w.add_name(name)
        w.add_file_type(file_type(outtype))
        w.add_clip_has_vision_encoder(True)
        w.add_clip_projector_type(projector)
        w.add_vision_projection_dim(text_hidden)
        w.add_vision_image_size(int(vc.get("image_size", DEFAULT_IMAGE_SIZE)))
        w.add_vision_patch_size(int(vc.get("patch_size", vc.get("spatial_patch_size", 14))))
        w.add_vision_embedding_length(width)
        w.add_vision_feed_forward_length(ffn)
        w.add_vision_block_count(int(vc["depth"]))
        w.add_vision_head_count(int(vc["num_heads"]))
        w.add_vision_attention_layernorm_eps(VISION_EPS)
        w.add_vision_spatial_merge_size(int(vc.get("spatial_merge_size", 2)))
        if "min_pixels" in pre and "max_pixels" in pre:  # the image policy of t3edge's backends
            w.add_vision_min_pixels(int(pre["min_pixels"]))
            w.add_vision_max_pixels(int(pre["max_pixels"]))
        w.add_vision_image_mean([float(x) for x in pre["image_mean"]])
        w.add_vision_image_std([float(x) for x in pre["image_std"]])
        if qwen25:
            w.add_vision_use_silu(True)
            w.add_vision_n_wa_pattern(wa)
            w.add_vision_window_size(int(vc.get("window_size", 112)))

    return apply


def write_mmproj_gguf(src: ModelSource, path: Path, outtype: OutType, *, name: str,
                      on_tensor=None) -> Path:  # noqa: ANN001
    tensors = plan_vision_tensors(src, outtype)
    return write_gguf(path, ARCH, mmproj_metadata(src, outtype, name), tensors, on_tensor=on_tensor)
