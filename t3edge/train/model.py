"""The model side of tuning on MLX: load a base, quantize it (QLoRA) or dequantize it (fast CPU
training), attach LoRA, fuse.

Vision-language models load through mlx-vlm, text-only models (a folder without a vision config,
e.g. one made by `t3edge convert from-gguf`) through mlx-lm. Adapters use the mlx-lm adapter
schema either way (`adapters.safetensors` + `adapter_config.json`, scale = alpha / rank), so
`mlx_vlm.load` / `mlx_lm.load(base, adapter_path=...)` load them.
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

    resolved = resolve_model(spec, load_models_config(), "mlx", with_adapter=False)  # the base alone
    if resolved.kind != "mlx" or resolved.path is None:
        raise T3Error(f"{spec} is not an MLX / Hugging Face model folder",
                      hint="training runs on MLX: give a registry name or a model folder")
    return Path(resolved.path)


def is_text_model(path: Path) -> bool:
    """Whether a model folder holds a text-only model (its config has no vision part)."""
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise T3Error(f"cannot read {path / 'config.json'}: {exc}") from exc
    return "vision_config" not in config


def language_model(model: Any) -> Any:
    """The text decoder: a VLM's `language_model`, or a text model itself."""
    return getattr(model, "language_model", model)


def load_base(path: Path) -> tuple[Any, Any]:
    """(model, processor or tokenizer) from mlx-vlm or, for a text-only model, mlx-lm; or a
    T3Error saying why not."""
    text = is_text_model(path)
    library = "mlx-lm" if text else "mlx-vlm"
    try:
        if text:
            from mlx_lm import load as load_text

            model, wrapper = load_text(str(path))
            return model, getattr(wrapper, "_tokenizer", wrapper)
        from mlx_vlm import load

        return load(str(path))
    except (OSError, ValueError, KeyError, RuntimeError) as exc:  # mlx reports corrupt weights as RuntimeError
        first_line = (str(exc).strip().splitlines() or [""])[0]
        raise T3Error(f"cannot load {path} with {library}: {first_line}",
                      hint="give a model folder in MLX or Hugging Face layout "
                           f"(`t3edge convert inspect {path}` checks its files)") from exc


def is_quantized(model: Any) -> bool:
    from mlx import nn

    return any(isinstance(m, (nn.QuantizedLinear, nn.QuantizedEmbedding))
               for _, m in language_model(model).named_modules())


def dequantize(model: Any) -> None:
    """Turn the language model's quantized layers back into float ones, in place: on a CPU,
    MLX's quantized matmuls do not use BLAS and train several times slower."""
    from mlx_lm.utils import dequantize_model

    dequantize_model(language_model(model))


def on_cpu() -> bool:
    import mlx.core as mx

    return mx.default_device().type == mx.DeviceType.cpu


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

    nn.quantize(language_model(model), group_size=group_size, bits=bits, class_predicate=predicate)
    if count == 0:
        raise T3Error(f"no language-model layer fits quantization group size {group_size}",
                      hint="set quantize_group_size to 32, or train plain LoRA")
    return count


def attach_lora(model: Any, lora: LoraSettings) -> Any:
    """Freeze the model (vision tower included) and add trainable LoRA layers to the targets."""
    if not hasattr(model, "language_model"):
        return _attach_text_lora(model, lora)
    from mlx_vlm.trainer import prepare_model_for_training

    try:
        return prepare_model_for_training(
            model, train_type="lora", lora_rank=lora.rank, lora_alpha=lora.alpha,
            lora_dropout=lora.dropout, target_modules=lora.target_modules or None, verbose=False,
        )
    except ValueError as exc:
        raise T3Error(f"cannot attach LoRA: {exc}", hint="check lora.target_modules") from exc


def _attach_text_lora(model: Any, lora: LoraSettings) -> Any:
    """LoRA on a text model (mlx-lm's layers) over the last `lora.num_layers` blocks."""
    from mlx_lm.tuner.utils import linear_to_lora_layers

    layers = model.layers
    n = len(layers) if lora.num_layers is None else min(lora.num_layers, len(layers))
    keys = sorted({name for name, _ in layers[-1].named_modules()
                   if name and any(name.split(".")[-1] == target for target in lora.target_modules)})
    if not keys:
        raise T3Error(f"no layer named {', '.join(lora.target_modules)} in the model's blocks",
                      hint="check lora.target_modules")
    params = {"rank": lora.rank, "scale": lora.alpha / lora.rank, "dropout": lora.dropout, "keys": keys}
    model.freeze()
    linear_to_lora_layers(model, n, params)
    model._vlm_adapter_config = {"fine_tune_type": "lora", "num_layers": n, "lora_parameters": params}
    return model


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

    for _, module in language_model(model).named_modules():
        if isinstance(module, nn.QuantizedLinear):
            return {"group_size": module.group_size, "bits": module.bits}
    return {}
