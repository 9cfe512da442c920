"""GGUF -> MLX: a llama.cpp text model as an mlx-lm folder (`model.safetensors`, `config.json`,
tokenizer files with the chat template), for archs `llama` and `gemma3`.

Weights:
- Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 blocks are exactly MLX's affine quantization with group size
  32 (`w = scale * q + bias`: Q4_0 is `d * (q - 8)`, so scale `d`, bias `-8 d`; Q4_1 is
  `d * q + m`; Q8_0's signed bytes shift by 128). They are repacked bit for bit, not requantized;
  `config.json` `quantization` names each module's bits (4, 5 or 8), since a GGUF mixes them.
- K-quants (and every other block type) are dequantized with the `gguf` package to float16;
  so is everything with `dequantize=True`. Float tensors keep their GGUF dtype (norms stay f32).
  The token embedding is float32 (its scales and biases, or its values when dequantized): its
  dtype becomes the residual stream's in mlx-lm (Gemma keeps it, clipping to float16), and with
  the f32 norms MLX then computes in float32 as llama.cpp does.

Layouts: llama.cpp's converter permutes the rows of `llama` q_proj/k_proj for its interleaved
(GPT-J) rotary. The permutation is undone here, rows only, so it applies to quantized triples as
well: the folder is in the standard Hugging Face layout and runs with mlx-lm's default (NeoX)
RoPE, and adapters trained on the Hugging Face checkpoint fit it. `gemma3` q/k are not permuted,
but llama.cpp stores Gemma's RMS-norm weights as `1 + w`; 1 is subtracted again (mlx-lm's
`gemma3_text` adds it back).

Tensors are decoded one at a time (memory-mapped) and streamed into the safetensors file.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from converters.fuse import write_safetensors
from converters.gguf_tokenizer import eog_token_ids, write_tokenizer
from converters.llama_layout import from_llama_cpp_rows
from converters.lora import new_folder
from t3edge.errors import BadInput
from t3edge.gguf_check import GGUFInfo, TensorInfo, check_gguf

GROUP_SIZE = 32
DEQUANT_DTYPE = "F16"
EMBEDDING = "model.embed_tokens.weight"
# safetensors dtype tags and their numpy storage (bfloat16 as its raw 16 bits)
_NP = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2"), "U32": np.dtype("<u4")}
_FLOAT_TYPES = ("F32", "F16", "BF16")  # GGUF float types, copied as they are
_ROW_CHUNK = 8192  # rows decoded at a time: bounds the temporaries of a large embedding
# block types MLX's affine quantization holds exactly: bits
_AFFINE_BITS = {"Q4_0": 4, "Q4_1": 4, "Q5_0": 5, "Q5_1": 5, "Q8_0": 8}


@dataclass(frozen=True)
class Arch:
    """How one llama.cpp architecture maps onto an mlx-lm model."""

    model_type: str
    hf_class: str
    block_names: dict[str, str]  # GGUF name inside blk.N -> Hugging Face name inside model.layers.N
    config: Callable[[dict[str, Any], str], dict[str, Any]]
    permute_qk: bool = False
    norm_shift: float = 0.0


def _int(meta: dict[str, Any], key: str, default: int | None = None) -> int:
    value = meta.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadInput(f"GGUF metadata {key} must be one integer, got {value!r}",
                       hint="per-layer head counts and similar variants are not supported")
    return value


def _common_config(meta: dict[str, Any], arch: str) -> dict[str, Any]:
    heads = _int(meta, f"{arch}.attention.head_count")
    hidden = _int(meta, f"{arch}.embedding_length")
    head_dim = _int(meta, f"{arch}.attention.key_length", hidden // heads)
    rope_dim = meta.get(f"{arch}.rope.dimension_count", head_dim)
    if rope_dim != head_dim:
        raise BadInput(f"partial rotary embeddings ({rope_dim} of {head_dim} dims) are not supported")
    return {
        "hidden_size": hidden,
        "num_hidden_layers": _int(meta, f"{arch}.block_count"),
        "intermediate_size": _int(meta, f"{arch}.feed_forward_length"),
        "num_attention_heads": heads,
        "num_key_value_heads": _int(meta, f"{arch}.attention.head_count_kv", heads),
        "head_dim": head_dim,
        "rms_norm_eps": float(meta[f"{arch}.attention.layer_norm_rms_epsilon"]),
        "rope_theta": float(meta.get(f"{arch}.rope.freq_base", 10000.0)),
        "max_position_embeddings": _int(meta, f"{arch}.context_length", 4096),
        "vocab_size": len(meta["tokenizer.ggml.tokens"]),
        "rope_scaling": _rope_scaling(meta, arch),
    }


def _rope_scaling(meta: dict[str, Any], arch: str) -> dict[str, Any] | None:
    kind = meta.get(f"{arch}.rope.scaling.type", "none")
    if kind == "none":
        return None
    if kind == "linear":
        return {"type": "linear", "factor": float(meta[f"{arch}.rope.scaling.factor"])}
    raise BadInput(f"rope scaling {kind!r} is not supported", hint="supported: none, linear")


def _llama_config(meta: dict[str, Any], arch: str) -> dict[str, Any]:
    return {**_common_config(meta, arch), "rope_traditional": False, "attention_bias": False, "mlp_bias": False}


def _gemma3_config(meta: dict[str, Any], arch: str) -> dict[str, Any]:
    cfg = _common_config(meta, arch)
    layers = cfg["num_hidden_layers"]
    # llama.cpp's fixed choices for gemma3: local rope base 10000, a global layer every 6th, and
    # the attention scale of the 27B model (62 layers) from hidden / heads
    pre_attn = cfg["hidden_size"] // cfg["num_attention_heads"] if layers == 62 else cfg["head_dim"]
    return {
        **cfg,
        "rope_local_base_freq": float(meta.get(f"{arch}.rope.freq_base_swa", 10000.0)),
        "sliding_window": _int(meta, f"{arch}.attention.sliding_window"),
        "sliding_window_pattern": _int(meta, f"{arch}.attention.sliding_window_pattern", 6),
        "query_pre_attn_scalar": pre_attn,
    }


_ATTN = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
         "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
         "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm"}

ARCHS: dict[str, Arch] = {
    "llama": Arch("llama", "LlamaForCausalLM", {**_ATTN, "ffn_norm": "post_attention_layernorm"},
                  _llama_config, permute_qk=True),
    "gemma3": Arch("gemma3_text", "Gemma3ForCausalLM",
                   {**_ATTN, "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm",
                    "post_attention_norm": "post_attention_layernorm",
                    "ffn_norm": "pre_feedforward_layernorm", "post_ffw_norm": "post_feedforward_layernorm"},
                   _gemma3_config, norm_shift=1.0),
}
SUPPORTED_ARCHS = tuple(ARCHS)
_TOP = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}


def hf_tensor_name(gguf_name: str, arch: Arch) -> str | None:
    """The Hugging Face name of a GGUF tensor, or None if the architecture has no such tensor."""
    stem, _, suffix = gguf_name.rpartition(".")
    if suffix != "weight":
        return None
    if stem in _TOP:
        return f"{_TOP[stem]}.weight"
    parts = stem.split(".")
    if len(parts) == 3 and parts[0] == "blk" and parts[1].isdigit() and parts[2] in arch.block_names:
        return f"model.layers.{parts[1]}.{arch.block_names[parts[2]]}.weight"
    return None


# --- block decoding ---------------------------------------------------------------------------

def _fields(blocks: np.ndarray, layout: tuple[tuple[str, int], ...]) -> dict[str, np.ndarray]:
    """Split (..., block_bytes) uint8 blocks into named byte fields."""
    out, at = {}, 0
    for name, n in layout:
        out[name] = blocks[..., at:at + n]
        at += n
    return out


def _nibbles(qs: np.ndarray) -> np.ndarray:
    """ggml's 4-bit order: the low nibbles are elements 0..15, the high ones 16..31."""
    return np.concatenate([qs & 0x0F, qs >> 4], axis=-1)


def _high_bits(qh: np.ndarray) -> np.ndarray:
    bits = np.ascontiguousarray(qh).view("<u4")  # (..., 1)
    return ((bits >> np.arange(32, dtype=np.uint32)) & 1).astype(np.uint8)


def _f16(field: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(field).view("<f2")[..., 0]


def affine_blocks(type_name: str, blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(q uint8 (..., groups, 32), scale f16 (..., groups), bias f16 (..., groups)) of GGUF blocks."""
    if type_name == "Q8_0":
        f = _fields(blocks, (("d", 2), ("qs", 32)))
        q = (f["qs"].view(np.int8).astype(np.int16) + 128).astype(np.uint8)
        d = _f16(f["d"])
        return q, d, d * np.float16(-128)
    if type_name in ("Q4_0", "Q5_0"):
        layout = (("d", 2), ("qs", 16)) if type_name == "Q4_0" else (("d", 2), ("qh", 4), ("qs", 16))
        f = _fields(blocks, layout)
        q = _nibbles(f["qs"])
        if "qh" in f:
            q = q | (_high_bits(f["qh"]) << 4)
        d = _f16(f["d"])
        return q, d, d * np.float16(-8 if type_name == "Q4_0" else -16)
    if type_name in ("Q4_1", "Q5_1"):
        layout = (("d", 2), ("m", 2), ("qs", 16)) if type_name == "Q4_1" else (("d", 2), ("m", 2), ("qh", 4), ("qs", 16))
        f = _fields(blocks, layout)
        q = _nibbles(f["qs"])
        if "qh" in f:
            q = q | (_high_bits(f["qh"]) << 4)
        return q, _f16(f["d"]), _f16(f["m"])
    raise ValueError(f"{type_name} is not an affine block type")


def pack_bits(q: np.ndarray, bits: int) -> np.ndarray:
    """MLX's packing: `bits`-bit values as one little-endian bit stream in uint32 words."""
    q = q.reshape(*q.shape[:-2], -1)  # (..., cols)
    if bits == 8:
        return np.ascontiguousarray(q.astype(np.uint8)).view("<u4")
    eight = q.reshape(*q.shape[:-1], -1, 8).astype(np.uint64)  # 8 values -> `bits` bytes
    word = np.zeros(eight.shape[:-1], dtype=np.uint64)
    for k in range(8):
        word |= eight[..., k] << np.uint64(k * bits)
    raw = word[..., None].view(np.uint8)[..., :bits]  # little-endian bytes
    return np.ascontiguousarray(raw.reshape(*q.shape[:-1], -1)).view("<u4")


# --- the plan -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Part:
    """One safetensors entry: its name, dtype tag and shape, from one GGUF tensor."""

    name: str
    tag: str
    shape: tuple[int, ...]
    role: str  # "weight" | "scales" | "biases" | "float"


@dataclass(frozen=True)
class Planned:
    source: TensorInfo
    hf_name: str
    bits: int | None  # kept quantized with these bits, or None
    parts: tuple[Part, ...]


def _rows_cols(t: TensorInfo) -> tuple[int, int]:
    cols = t.shape[0]
    rows = t.n_elements // cols
    return rows, cols


def plan(info: GGUFInfo, arch: Arch, *, dequantize: bool) -> list[Planned]:
    """Every GGUF tensor's name, storage and shapes in the MLX folder (from the header only)."""
    out = []
    for t in info.tensors:
        name = hf_tensor_name(t.name, arch)
        if name is None:
            raise BadInput(f"{info.path}: tensor {t.name!r} has no counterpart in mlx-lm's "
                           f"{arch.model_type} model", hint="this variant of the architecture is not supported")
        rows, cols = _rows_cols(t)
        bits = _AFFINE_BITS.get(t.type_name) if not dequantize and len(t.shape) == 2 else None
        # the embedding's dtype becomes the residual stream's: float32, as in llama.cpp
        real = "F32" if name == EMBEDDING else DEQUANT_DTYPE
        stem = name.removesuffix(".weight")
        if bits is not None:
            groups = cols // GROUP_SIZE
            parts = (Part(name, "U32", (rows, cols * bits // 32), "weight"),
                     Part(f"{stem}.scales", real, (rows, groups), "scales"),
                     Part(f"{stem}.biases", real, (rows, groups), "biases"))
        else:
            tag = "F32" if name == EMBEDDING else t.type_name if t.type_name in _FLOAT_TYPES else DEQUANT_DTYPE
            parts = (Part(name, tag, tuple(reversed(t.shape)), "float"),)
        out.append(Planned(t, name, bits, parts))
    return out


# --- decoding one tensor ----------------------------------------------------------------------

class TensorDecoder:
    """Decodes planned tensors from the memory-mapped file, applying the layout fixes."""

    def __init__(self, info: GGUFInfo, arch: Arch, config: dict[str, Any]) -> None:
        from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

        self.info, self.arch, self.config = info, arch, config
        self._qtypes = {t.name: t for t in GGMLQuantizationType}
        self._sizes = GGML_QUANT_SIZES
        self._last: tuple[str, dict[str, np.ndarray]] | None = None

    def part(self, p: Planned, part: Part) -> np.ndarray:
        """One part's array (the tensor is decoded once for its three quantized parts)."""
        if self._last is None or self._last[0] != p.hf_name:
            self._last = (p.hf_name, self._decode(p))
        return self._last[1][part.role].astype(_NP[part.tag], copy=False)

    def _raw(self, t: TensorInfo) -> np.ndarray:
        rows, _ = _rows_cols(t)
        return np.memmap(self.info.path, dtype=np.uint8, mode="r", offset=t.offset,
                         shape=(rows, t.nbytes // rows))

    def _decode(self, p: Planned) -> dict[str, np.ndarray]:
        t = p.source
        raw = self._raw(t)
        if p.bits is not None:
            out = self._affine(t, raw, p.bits)
        else:
            out = {"float": self._float(t, raw, _NP[p.parts[0].tag])}
        return {k: self._fix(p.hf_name, v) for k, v in out.items()}

    def _affine(self, t: TensorInfo, raw: np.ndarray, bits: int) -> dict[str, np.ndarray]:
        rows, cols = _rows_cols(t)
        groups = cols // GROUP_SIZE
        block_bytes = self._sizes[self._qtypes[t.type_name]][1]
        out = {"weight": np.empty((rows, cols * bits // 32), np.uint32),
               "scales": np.empty((rows, groups), np.float16), "biases": np.empty((rows, groups), np.float16)}
        for start in range(0, rows, _ROW_CHUNK):
            blocks = np.asarray(raw[start:start + _ROW_CHUNK]).reshape(-1, groups, block_bytes)
            q, scale, bias = affine_blocks(t.type_name, blocks)
            end = start + len(blocks)
            out["weight"][start:end], out["scales"][start:end], out["biases"][start:end] = pack_bits(q, bits), scale, bias
        return out

    def _float(self, t: TensorInfo, raw: np.ndarray, dtype: np.dtype) -> np.ndarray:
        shape = tuple(reversed(t.shape))
        if t.type_name == "BF16" and dtype == _NP["F32"]:
            return (np.asarray(raw).view("<u2").astype(np.uint32) << 16).view("<f4").reshape(shape)
        if t.type_name in _FLOAT_TYPES:
            return np.asarray(raw).view(_NP[t.type_name]).reshape(shape).astype(dtype, copy=False)
        from gguf.quants import dequantize

        qtype = self._qtypes[t.type_name]
        rows, cols = _rows_cols(t)
        out = np.empty((rows, cols), dtype)
        for start in range(0, rows, _ROW_CHUNK):
            out[start:start + _ROW_CHUNK] = dequantize(np.asarray(raw[start:start + _ROW_CHUNK]), qtype)
        return out.reshape(shape)

    def _fix(self, name: str, data: np.ndarray) -> np.ndarray:
        """Undo llama.cpp's layout changes (row permutation of q/k, Gemma's norm + 1)."""
        if self.arch.permute_qk and name.endswith(("q_proj.weight", "k_proj.weight")):
            heads = self.config["num_attention_heads" if "q_proj" in name else "num_key_value_heads"]
            return from_llama_cpp_rows(data, heads)
        if self.arch.norm_shift and name.endswith("norm.weight"):
            return (data.astype(np.float32) - self.arch.norm_shift).astype(data.dtype)
        return data


# --- the folder ---------------------------------------------------------------------------------

def model_config(info: GGUFInfo, arch: Arch, planned: list[Planned]) -> dict[str, Any]:
    """config.json for mlx-lm: dimensions, rope, norms, context, ties, stop ids, quantization."""
    meta = info.metadata
    cfg: dict[str, Any] = {"model_type": arch.model_type, "architectures": [arch.hf_class],
                           **arch.config(meta, info.architecture or "")}
    cfg["tie_word_embeddings"] = not any(p.hf_name == "lm_head.weight" for p in planned)
    for kind in ("bos", "pad"):
        i = meta.get(f"tokenizer.ggml.{kind}_token_id" if kind == "bos" else "tokenizer.ggml.padding_token_id")
        if isinstance(i, int):
            cfg[f"{kind}_token_id"] = i
    cfg["eos_token_id"] = eog_token_ids(meta)
    quantized = {p.hf_name.removesuffix(".weight"): p.bits for p in planned if p.bits is not None}
    if quantized:
        common = max(set(quantized.values()), key=list(quantized.values()).count)
        cfg["quantization"] = {"group_size": GROUP_SIZE, "bits": common, "mode": "affine",
                               **{m: {"group_size": GROUP_SIZE, "bits": b} for m, b in quantized.items()}}
    cfg["torch_dtype"] = "float16"
    cfg["t3edge_source"] = {"gguf": info.path.name, "file_type": meta.get("general.file_type"),
                            "tensor_types": info.type_counts()}
    return cfg


@dataclass
class Conversion:
    """What a conversion wrote, for the command line to report."""

    out: Path
    arch: str
    kept: dict[str, int]  # GGUF type -> tensors kept quantized
    dequantized: dict[str, int]  # GGUF type -> tensors dequantized (float16; the embedding float32)
    chat_template: str  # where the template came from: "gguf", "given" or "family" (the GGUF has none)
    seconds: float


def read_model(gguf: str | Path) -> tuple[GGUFInfo, Arch]:
    """Validate a text-model GGUF and find its architecture, or raise BadInput saying why."""
    info = check_gguf(gguf, keep_arrays=1 << 30, expect_kind="model")
    arch = info.architecture or "?"
    if arch not in ARCHS:
        raise BadInput(f"{info.path}: GGUF architecture {arch!r} cannot be converted to MLX",
                       hint=f"supported architectures: {', '.join(SUPPORTED_ARCHS)}")
    return info, ARCHS[arch]


def planned_tensor_count(gguf: str | Path, *, dequantize: bool = False) -> int:
    info, arch = read_model(gguf)
    return len(plan(info, arch, dequantize=dequantize))


def convert_from_gguf(gguf: str | Path, out: str | Path, *, dequantize: bool = False,
                      chat_template: str | None = None) -> Path:
    """Write an MLX folder for `gguf` into `out` (which must be new or empty); return `out`."""
    return convert(gguf, out, dequantize=dequantize, chat_template=chat_template).out


def convert(gguf: str | Path, out: str | Path, *, dequantize: bool = False, chat_template: str | None = None,
            on_tensor: Callable[[str], None] | None = None) -> Conversion:
    """`convert_from_gguf` with a per-tensor callback and a summary of what was kept quantized.

    `chat_template` replaces the GGUF's template; a GGUF without one (a base model) gets its
    family's from `t3edge.chat_templates`, the one the llama.cpp backend falls back to as well.
    """
    start = time.perf_counter()
    info, arch = read_model(gguf)
    planned = plan(info, arch, dequantize=dequantize)
    config = model_config(info, arch, planned)
    folder = new_folder(out)
    decoder = TensorDecoder(info, arch, config)
    entries = [(part.name, part.tag, part.shape, _loader(decoder, p, part, on_tensor))
               for p in planned for part in p.parts]
    write_safetensors(folder / "model.safetensors", entries, metadata={"format": "mlx"})
    template, origin = _chat_template(info, chat_template)
    write_tokenizer(info.metadata, folder, chat_template=template,
                    context_length=config["max_position_embeddings"])
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return Conversion(folder, info.architecture or "?", _count(planned, kept=True),
                      _count(planned, kept=False), origin, time.perf_counter() - start)


def _chat_template(info: GGUFInfo, given: str | None) -> tuple[str, str]:
    from t3edge.chat_templates import fallback_template

    if given:
        return given, "given"
    own = info.metadata.get("tokenizer.chat_template")
    if isinstance(own, str) and own:
        return own, "gguf"
    return fallback_template(info.architecture or ""), "family"


def _loader(decoder: TensorDecoder, p: Planned, part: Part,
            on_tensor: Callable[[str], None] | None) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        data = decoder.part(p, part)
        if on_tensor is not None and part is p.parts[-1]:
            on_tensor(p.source.name)
        return data
    return load


def _count(planned: list[Planned], *, kept: bool) -> dict[str, int]:
    out: dict[str, int] = {}
    for p in planned:
        t = p.source.type_name
        if (p.bits is not None) == kept and (kept or t not in _FLOAT_TYPES):
            out[t] = out.get(t, 0) + 1
    return out
