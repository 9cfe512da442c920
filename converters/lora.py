"""LoRA adapters between worlds: MLX (mlx-vlm / mlx-lm schema), PEFT, and GGUF for llama.cpp.

One in-memory form, `LoraAdapter`: per target module (Hugging Face name, e.g.
`model.layers.0.self_attn.q_proj`) the PEFT-oriented pair A (rank, in) and B (out, rank), and one
scale. The update to a weight W (out, in) is `scale * B @ A` in every world:
- MLX: `adapters.safetensors` holds `lora_a` (in, rank) = A.T and `lora_b` (rank, out) = B.T
  under the MLX module path; `adapter_config.json` holds rank and `scale` (= alpha / rank).
- PEFT: `adapter_model.safetensors` holds `lora_A.weight` = A and `lora_B.weight` = B under
  `base_model.model.<name>`; `adapter_config.json` holds `r` and `lora_alpha` (scale = alpha / r,
  or alpha / sqrt(r) with `use_rslora`).
- GGUF (llama.cpp `lora_path`): `<gguf tensor>.lora_a` (ggml in x rank) and `.lora_b` (rank x out),
  `adapter.lora.alpha` = scale * rank. llama.cpp applies LoRA to the text model only.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from converters.llama_layout import to_llama_cpp_rows
from converters.source import ModelSource, hf_name, load_stored, mlx_name, read_safetensors_index
from t3edge.errors import BadInput

MLX_WEIGHTS, MLX_CONFIG = "adapters.safetensors", "adapter_config.json"
PEFT_WEIGHTS, PEFT_CONFIG = "adapter_model.safetensors", "adapter_config.json"


@dataclass
class LoraAdapter:
    rank: int
    scale: float
    dropout: float = 0.0
    layers: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # name -> (A, B)

    @property
    def alpha(self) -> float:
        return self.scale * self.rank

    def delta(self, name: str) -> np.ndarray:
        a, b = self.layers[name]
        return self.scale * (b.astype(np.float32) @ a.astype(np.float32))


# --- names -----------------------------------------------------------------------------------

def _weights(folder: Path, filename: str) -> dict[str, np.ndarray]:
    path = folder / filename
    if not path.is_file():
        raise BadInput(f"{folder} has no {filename}", hint="give the adapter's folder")
    return {k: load_stored(t) for k, t in read_safetensors_index(path).items()}


def _config(folder: Path, filename: str) -> dict:
    path = folder / filename
    if not path.is_file():
        raise BadInput(f"{folder} has no {filename}", hint="keep the adapter's config next to its weights")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise BadInput(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BadInput(f"{path} is not a JSON object")
    return data


def _pair(layers: dict[str, dict[str, np.ndarray]], folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for name, parts in layers.items():
        if set(parts) != {"a", "b"}:
            raise BadInput(f"{folder}: LoRA for {name!r} lacks its {'A' if 'a' not in parts else 'B'} matrix")
        a, b = parts["a"], parts["b"]
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1]:
            raise BadInput(f"{folder}: LoRA for {name!r} has inconsistent shapes A{a.shape} B{b.shape}")
        out[name] = (a, b)
    return out


# --- MLX -------------------------------------------------------------------------------------

def read_mlx(folder: str | Path) -> LoraAdapter:
    folder = Path(folder)
    cfg = _config(folder, MLX_CONFIG)
    params = cfg.get("lora_parameters")
    if cfg.get("fine_tune_type", "lora") != "lora" or not isinstance(params, dict):
        raise BadInput(f"{folder}: not an MLX LoRA adapter (fine_tune_type "
                       f"{cfg.get('fine_tune_type')!r}; DoRA and full fine-tunes are not LoRA)")
    layers: dict[str, dict[str, np.ndarray]] = {}
    for key, value in _weights(folder, MLX_WEIGHTS).items():
        module, _, part = key.rpartition(".")
        if part not in ("lora_a", "lora_b"):
            raise BadInput(f"{folder}: unexpected tensor {key!r} in an MLX LoRA adapter")
        layers.setdefault(hf_name(module), {})[part[-1]] = value.T
    adapter = LoraAdapter(rank=int(params["rank"]), scale=float(params["scale"]),
                          dropout=float(params.get("dropout", 0.0)), layers=_pair(layers, folder))
    _check_rank(adapter, folder)
    return adapter


def new_folder(path: str | Path) -> Path:
    """`path` created empty; a folder that already holds files (a model, an adapter) is refused."""
    folder = Path(path)
    if folder.is_dir() and any(folder.iterdir()):
        raise BadInput(f"{folder} exists and is not empty", hint="give a new folder")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_mlx(adapter: LoraAdapter, folder: str | Path) -> Path:
    from safetensors.numpy import save_file

    folder = new_folder(folder)
    tensors = {}
    for name, (a, b) in adapter.layers.items():
        tensors[mlx_name(name) + ".lora_a"] = np.ascontiguousarray(a.T)
        tensors[mlx_name(name) + ".lora_b"] = np.ascontiguousarray(b.T)
    save_file(tensors, str(folder / MLX_WEIGHTS))
    config = {"fine_tune_type": "lora", "num_layers": -1, "lora_parameters": {
        "rank": adapter.rank, "dropout": adapter.dropout, "scale": adapter.scale,
        "keys": sorted(mlx_name(n) for n in adapter.layers)}}
    (folder / MLX_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    return folder


# --- PEFT ------------------------------------------------------------------------------------

def read_peft(folder: str | Path) -> LoraAdapter:
    folder = Path(folder)
    cfg = _config(folder, PEFT_CONFIG)
    if str(cfg.get("peft_type", "")).upper() != "LORA":
        raise BadInput(f"{folder}: not a PEFT LoRA adapter (peft_type {cfg.get('peft_type')!r})")
    if cfg.get("use_dora"):
        raise BadInput(f"{folder}: DoRA adapters are not supported")
    rank = int(cfg["r"])
    alpha = float(cfg.get("lora_alpha", rank))
    scale = alpha / math.sqrt(rank) if cfg.get("use_rslora") else alpha / rank
    layers: dict[str, dict[str, np.ndarray]] = {}
    for key, value in _weights(folder, PEFT_WEIGHTS).items():
        for tag, part in ((".lora_A.weight", "a"), (".lora_B.weight", "b")):
            if key.endswith(tag):
                layers.setdefault(hf_name(key[: -len(tag)].removeprefix("base_model.model.")), {})[part] = value
                break
        else:
            raise BadInput(f"{folder}: unexpected tensor {key!r} (only LoRA A/B matrices are supported)")
    adapter = LoraAdapter(rank=rank, scale=scale, dropout=float(cfg.get("lora_dropout", 0.0)),
                          layers=_pair(layers, folder))
    _check_rank(adapter, folder)
    return adapter


def write_peft(adapter: LoraAdapter, folder: str | Path, *, base_model: str | None = None) -> Path:
    from safetensors.numpy import save_file

    folder = new_folder(folder)
    tensors = {}
    for name, (a, b) in adapter.layers.items():
        tensors[f"base_model.model.{name}.lora_A.weight"] = np.ascontiguousarray(a)
        tensors[f"base_model.model.{name}.lora_B.weight"] = np.ascontiguousarray(b)
    save_file(tensors, str(folder / PEFT_WEIGHTS), metadata={"format": "pt"})
    config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base_model,
        "r": adapter.rank, "lora_alpha": adapter.alpha, "lora_dropout": adapter.dropout,
        "target_modules": sorted({n.rsplit(".", 1)[-1] for n in adapter.layers}),
        "bias": "none", "fan_in_fan_out": False, "use_rslora": False, "use_dora": False,
        "inference_mode": True,
    }
    (folder / PEFT_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    return folder


def read_any(folder: str | Path) -> LoraAdapter:
    """An MLX or a PEFT adapter folder, told apart by its weights file."""
    folder = Path(folder)
    if (folder / MLX_WEIGHTS).is_file():
        return read_mlx(folder)
    if (folder / PEFT_WEIGHTS).is_file():
        return read_peft(folder)
    raise BadInput(f"{folder} holds no LoRA adapter",
                   hint=f"expected {MLX_WEIGHTS} (MLX) or {PEFT_WEIGHTS} (PEFT) with {MLX_CONFIG}")


def _check_rank(adapter: LoraAdapter, folder: Path) -> None:
    if not adapter.layers:
        raise BadInput(f"{folder}: the adapter has no LoRA layers")
    for name, (a, _) in adapter.layers.items():
        if a.shape[0] != adapter.rank:
            raise BadInput(f"{folder}: LoRA for {name!r} has rank {a.shape[0]}, the config says {adapter.rank}")


# --- against a base model -------------------------------------------------------------------

def check_fits(adapter: LoraAdapter, base: ModelSource) -> None:
    """Raise BadInput unless every target is a 2-D weight of `base` with matching sizes."""
    for name, (a, b) in adapter.layers.items():
        weight = name + ".weight"
        if weight not in base.names:
            raise BadInput(f"the adapter targets {name!r}, which {base.folder} does not have",
                           hint="the adapter was trained on another model")
        out_dim, in_dim = base.shape(weight)
        if a.shape[1] != in_dim or b.shape[0] != out_dim:
            raise BadInput(
                f"the adapter's {name!r} maps {a.shape[1]} -> {b.shape[0]}, the base weight is "
                f"{in_dim} -> {out_dim}", hint="the adapter was trained on a different base model")


# --- GGUF ------------------------------------------------------------------------------------

GGUF_ARCHS = {"qwen2_vl": "qwen2vl", "qwen2_5_vl": "qwen2vl", "llama": "llama",
              "gemma3_text": "gemma3", "gemma3": "gemma3"}  # Hugging Face model_type -> llama.cpp arch


def write_gguf_lora(adapter: LoraAdapter, path: str | Path, *, n_layers: int, model_type: str = "qwen2_vl",
                    n_heads: int | None = None, n_kv_heads: int | None = None, name: str = "lora") -> Path:
    """A GGUF LoRA (f32) for llama.cpp's text model of `model_type` (qwen2_vl / qwen2_5_vl,
    llama, gemma3_text). For `llama`, q_proj and k_proj get llama.cpp's row permutation, so the
    adapter fits the GGUF that llama.cpp's converter wrote (`n_heads`, `n_kv_heads` needed)."""
    import gguf

    from converters.gguf_write import Planned, write_gguf

    arch = GGUF_ARCHS.get(model_type)
    if arch is None:
        raise BadInput(f"no GGUF LoRA for model type {model_type!r}",
                       hint=f"supported: {', '.join(sorted(GGUF_ARCHS))}")
    permute = {"q_proj": n_heads, "k_proj": n_kv_heads} if arch == "llama" else {}
    if permute and None in permute.values():
        raise BadInput("a llama LoRA needs the base's head counts for its q/k layout")
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], n_layers)
    planned: list[Planned] = []
    for hf, (a, b) in sorted(adapter.layers.items()):
        heads = permute.get(hf.rsplit(".", 1)[-1])
        if heads is not None:
            b = to_llama_cpp_rows(b, heads)
        if hf.startswith("visual."):
            raise BadInput(f"the adapter changes the vision tower ({hf}); llama.cpp applies LoRA "
                           "to the text model only", hint="train the adapter on the language model only")
        base = names.get_name(hf + ".weight", try_suffixes=(".weight",))
        if base is None:
            raise BadInput(f"the adapter targets {hf!r}, which has no llama.cpp tensor")
        for suffix, m in ((".lora_a", a), (".lora_b", b)):
            planned.append(Planned(base + suffix, tuple(m.shape), gguf.GGMLQuantizationType.F32,
                                   lambda m=m: m.astype(np.float32)))

    def metadata(w) -> None:  # noqa: ANN001
        w.add_type(gguf.GGUFType.ADAPTER)
        w.add_name(name)
        w.add_string(gguf.Keys.Adapter.TYPE, "lora")
        w.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(adapter.alpha))

    return write_gguf(Path(path), arch, metadata, planned)


def random_adapter(base: ModelSource, *, rank: int = 4, scale: float = 2.0, seed: int = 0,
                   targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "down_proj"),
                   std: float = 0.05) -> LoraAdapter:
    """A LoRA with random nonzero A and B on the text model's `targets` (tests and benchmarks)."""
    rng = np.random.default_rng(seed)
    layers = {}
    for name in base.names:
        module = name.removesuffix(".weight")
        if name.startswith("model.layers.") and name.endswith(".weight") and module.rsplit(".", 1)[-1] in targets:
            out_dim, in_dim = base.shape(name)
            layers[module] = ((rng.standard_normal((rank, in_dim)) * std).astype(np.float32),
                              (rng.standard_normal((out_dim, rank)) * std).astype(np.float32))
    if not layers:
        raise BadInput(f"{base.folder}: no text-model weights named {', '.join(targets)}")
    return LoraAdapter(rank=rank, scale=scale, layers=layers)
