"""Summaries of checkpoints: a safetensors folder (HF, MLX or an adapter) or a GGUF file."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from converters.source import read_safetensors_index
from t3edge.errors import BadInput
from t3edge.gguf_check import check_gguf

_SHOWN_KEYS = ("model_type", "architectures", "hidden_size", "num_hidden_layers", "num_attention_heads",
               "num_key_value_heads", "vocab_size", "rope_theta", "rms_norm_eps", "quantization")


@dataclass
class Summary:
    path: Path
    format: str  # "gguf" | "safetensors"
    kind: str  # model | mmproj | adapter
    architecture: str
    tensor_count: int
    size_bytes: int
    dtypes: dict[str, int]
    metadata: dict[str, Any] = field(default_factory=dict)


def inspect_path(path: str | Path) -> Summary:
    """Validate and summarize `path` (raises BadInput on a broken file)."""
    p = Path(path)
    if p.is_file() and p.suffix == ".gguf":
        info = check_gguf(p)
        meta = {k: v for k, v in info.metadata.items() if k != "tokenizer.chat_template"}
        return Summary(p, "gguf", info.kind, info.architecture or "?", len(info.tensors), info.file_size,
                       info.type_counts(), meta)
    if p.is_dir():
        files = sorted(p.glob("*.safetensors"))
        if not files:
            raise BadInput(f"{p} has no .safetensors or .gguf files", hint="give a model folder or a .gguf file")
        dtypes: dict[str, int] = {}
        count = size = 0
        for f in files:
            for t in read_safetensors_index(f).values():
                dtypes[t.dtype] = dtypes.get(t.dtype, 0) + 1
                count += 1
                size += t.nbytes
        config = _json(p / "config.json")
        adapter = _json(p / "adapter_config.json")
        if adapter:
            kind = "adapter"
            arch = "peft-lora" if "peft_type" in adapter else "mlx-lora"
            meta = adapter
        else:
            kind = "model"
            arch = str(config.get("model_type", "?"))
            meta = {k: config[k] for k in _SHOWN_KEYS if k in config}
        return Summary(p, "safetensors", kind, arch, count, size, dtypes, meta)
    raise BadInput(f"{p}: not a .gguf file or a folder", hint="give a model folder or a .gguf file")


def _json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise BadInput(f"{path} is not valid JSON: {exc}") from exc
    return data if isinstance(data, dict) else {}
