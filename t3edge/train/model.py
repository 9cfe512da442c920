"""The model side of tuning, on mlx-vlm: load a base, quantize it (QLoRA), attach LoRA, fuse.

Adapters use mlx-vlm's LoRA layers and its mlx-lm adapter schema (`adapters.safetensors` +
`adapter_config.json`, scale = alpha / rank), so `mlx_vlm.load(base, adapter_path=...)` loads them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from t3edge.errors import T3Error
from t3edge.train.config import LoraSettings


def model_dir(spec: str) -> Path:
    """The local folder of a model given by registry name or path (MLX or Hugging Face layout)."""
    from t3edge.models import load_models_config, resolve_model

    resolved = resolve_model(spec, load_models_config(), "mlx")
    if resolved.kind != "mlx" or resolved.path is None:
        raise T3Error(f"{spec} is not an MLX / Hugging Face model folder",
                      hint="training runs on MLX: give a registry name or a model folder")
    return Path(resolved.path)


def load_base(path: Path) -> tuple[Any, Any]:
    """(model, processor) from mlx-vlm, or a T3Error saying why not."""
    from mlx_vlm import load

    try:
        return load(str(path))
    except (OSError, ValueError, KeyError, RuntimeError) as exc:  # mlx reports corrupt weights as RuntimeError
        first_line = (str(exc).strip().splitlines() or [""])[0]
        raise T3Error(f"cannot load {path} with mlx-vlm: {first_line}",
                      hint="give a Qwen2-VL / Qwen2.5-VL folder in MLX or Hugging Face layout "
                           f"(`t3edge convert inspect {path}` checks its files)") from exc


def quantize_language_model(model: Any, bits: int, group_size: int) -> int:
    """Quantize the language model's linear and embedding layers in place (the vision tower stays
    in float, as `mlx_vlm.convert` leaves it). Returns the number of layers quantized."""
    from mlx import nn

    count = 0

    def predicate(_path: str, module: Any) -> bool:
        nonlocal count
        ok = isinstance(module, (nn.Linear, nn.Embedding)) and module.weight.shape[-1] % group_size == 0
        count += ok
        return ok

    nn.quantize(model.language_model, group_size=group_size, bits=bits, class_predicate=predicate)
    if count == 0:
        raise T3Error(f"no language-model layer fits quantization group size {group_size}",
                      hint="set quantize_group_size to 32, or train plain LoRA")
    return count


def attach_lora(model: Any, lora: LoraSettings) -> Any:
    """Freeze the model (vision tower included) and add trainable LoRA layers to the targets."""
    from mlx_vlm.trainer import prepare_model_for_training

    try:
        return prepare_model_for_training(
            model, train_type="lora", lora_rank=lora.rank, lora_alpha=lora.alpha,
            lora_dropout=lora.dropout, target_modules=lora.target_modules or None, verbose=False,
        )
    except ValueError as exc:
        raise T3Error(f"cannot attach LoRA: {exc}", hint="check lora.target_modules") from exc


def save_adapter(model: Any, folder: Path) -> None:
    """`adapters.safetensors` + `adapter_config.json` (the trainable weights only)."""
    import mlx.core as mx
    from mlx.utils import tree_flatten

    folder.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(str(folder / "adapters.safetensors"), dict(tree_flatten(model.trainable_parameters())))
    (folder / "adapter_config.json").write_text(json.dumps(model._vlm_adapter_config, indent=2) + "\n")


def load_adapter_weights(model: Any, folder: Path) -> None:
    model.load_weights(str(folder / "adapters.safetensors"), strict=False)


def fuse(base: Path, adapter: Path, out: Path, *, dequantize: bool = False) -> Path:
    """Merge an adapter into its base and save an MLX model folder that mlx-vlm loads."""
    import mlx.core as mx
    from mlx.utils import tree_unflatten
    from mlx_vlm import load
    from mlx_vlm.utils import save_config, save_weights

    if not (adapter / "adapters.safetensors").is_file():
        raise T3Error(f"no adapter in {adapter}", hint="give the run folder or its adapter folder")
    if out.is_dir() and any(out.iterdir()):  # never write over a model, the base above all
        raise T3Error(f"{out} exists and is not empty", hint="give a new folder for the fused model")
    model, processor = load(str(base), adapter_path=str(adapter))
    fused = [(name, module.fuse(dequantize=dequantize))
             for name, module in model.named_modules() if hasattr(module, "fuse") and hasattr(module, "lora_a")]
    if not fused:
        raise T3Error(f"{adapter} added no LoRA layers to {base}")
    model.update_modules(tree_unflatten(fused))
    out.mkdir(parents=True, exist_ok=True)
    save_weights(out, model)
    config = json.loads((base / "config.json").read_text())
    quant = _quantization(model)
    if quant:
        config["quantization"] = quant
        config["quantization_config"] = quant
    else:
        config.pop("quantization", None)
        config.pop("quantization_config", None)
    save_config(config, out / "config.json")
    processor.save_pretrained(str(out))
    for extra in ("preprocessor_config.json", "chat_template.json", "generation_config.json"):
        if (base / extra).is_file():
            shutil.copy2(base / extra, out / extra)
    mx.clear_cache()
    return out


def _quantization(model: Any) -> dict[str, Any]:
    """{group_size, bits} when the language model is quantized, else {}."""
    from mlx import nn

    for _, module in model.language_model.named_modules():
        if isinstance(module, nn.QuantizedLinear):
            return {"group_size": module.group_size, "bits": module.bits}
    return {}
