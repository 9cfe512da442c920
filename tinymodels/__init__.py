"""Tiny random-weight VLMs of the real architectures, built offline in ~1 s.

`build_tiny_model(out, arch="qwen2_vl")` writes a Hugging Face layout folder (config.json,
model.safetensors with the hub's tensor names, a byte-level BPE tokenizer with the Qwen special
tokens and chat template, preprocessor_config.json) that mlx-vlm loads, trains and converts, and
that the GGUF converter reads. Deterministic for a seed. Defaults make converter bugs visible:
rope theta ~100, norms and biases random rather than 1 and 0.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np

Arch = Literal["qwen2_vl", "qwen2_5_vl"]
ARCHS: tuple[str, ...] = ("qwen2_vl", "qwen2_5_vl")

SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>",
    "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>", "<|box_end|>",
    "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]

# The Qwen2 pre-tokenizer split (contractions, letters, single digits, punctuation, spaces).
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# The Qwen2-VL chat template semantics: a default system turn, image parts as
# <|vision_start|><|image_pad|><|vision_end|>, ChatML turns.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CORPUS = """Thought: I need the text in the receipt, then the sum.
Code:
```py
text = ocr(image_path="receipt.jpg")
print(text)
```<end_action>
[OUTPUT OF STEP 0] -> Observation: Total 12.50 dollars
Thought: The total is known. I will give the final answer.
Code:
```py
final_answer("12.50")
```<end_action>
Task: How many people are in the photo? Attachment: photo.jpg; table.xlsx
answer = visualizer(question="What is in the image?", image_path="image.png")
boxes = objectlocation(object="cat", image_path="cat.jpg")
faces = facedetection(image_path="team.png")
import pandas as pd
df = pd.read_excel("sales.xlsx")
print(df.describe())
for row in range(10): total += row * 2
Describe the image in one sentence. The picture shows a red car on a street.
"""


def _train_tokenizer(vocab_size: int):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([_CORPUS] * 20, trainer=trainer)
    tok.add_special_tokens(SPECIAL_TOKENS)
    return tok


def _text_tensors(rng: np.random.Generator, h: int, inter: int, layers: int, heads: int,
                  kv_heads: int, vocab: int, tie: bool) -> dict[str, np.ndarray]:
    hd = h // heads
    w = _init(rng)
    t = {"model.embed_tokens.weight": w(vocab, h), "model.norm.weight": w.norm(h)}
    for i in range(layers):
        p = f"model.layers.{i}."
        t.update({
            p + "input_layernorm.weight": w.norm(h),
            p + "post_attention_layernorm.weight": w.norm(h),
            p + "self_attn.q_proj.weight": w(heads * hd, h), p + "self_attn.q_proj.bias": w.bias(heads * hd),
            p + "self_attn.k_proj.weight": w(kv_heads * hd, h), p + "self_attn.k_proj.bias": w.bias(kv_heads * hd),
            p + "self_attn.v_proj.weight": w(kv_heads * hd, h), p + "self_attn.v_proj.bias": w.bias(kv_heads * hd),
            p + "self_attn.o_proj.weight": w(h, heads * hd),
            p + "mlp.gate_proj.weight": w(inter, h),
            p + "mlp.up_proj.weight": w(inter, h),
            p + "mlp.down_proj.weight": w(h, inter),
        })
    if not tie:
        t["lm_head.weight"] = w(vocab, h)
    return t


def _vision_tensors(rng: np.random.Generator, arch: str, e: int, depth: int, mlp: int,
                    out: int, merge: int, patch: int, temporal: int) -> dict[str, np.ndarray]:
    w = _init(rng)
    t = {"visual.patch_embed.proj.weight": w(e, 3, temporal, patch, patch)}
    rms = arch == "qwen2_5_vl"
    for i in range(depth):
        p = f"visual.blocks.{i}."
        for norm in ("norm1", "norm2"):
            t[p + f"{norm}.weight"] = w.norm(e)
            if not rms:
                t[p + f"{norm}.bias"] = w.bias(e)
        t.update({
            p + "attn.qkv.weight": w(3 * e, e), p + "attn.qkv.bias": w.bias(3 * e),
            p + "attn.proj.weight": w(e, e), p + "attn.proj.bias": w.bias(e),
        })
        if rms:
            t.update({
                p + "mlp.gate_proj.weight": w(mlp, e), p + "mlp.gate_proj.bias": w.bias(mlp),
                p + "mlp.up_proj.weight": w(mlp, e), p + "mlp.up_proj.bias": w.bias(mlp),
                p + "mlp.down_proj.weight": w(e, mlp), p + "mlp.down_proj.bias": w.bias(e),
            })
        else:
            t.update({
                p + "mlp.fc1.weight": w(mlp, e), p + "mlp.fc1.bias": w.bias(mlp),
                p + "mlp.fc2.weight": w(e, mlp), p + "mlp.fc2.bias": w.bias(e),
            })
    merged = e * merge * merge
    t["visual.merger.ln_q.weight"] = w.norm(e)
    if not rms:
        t["visual.merger.ln_q.bias"] = w.bias(e)
    t.update({
        "visual.merger.mlp.0.weight": w(merged, merged), "visual.merger.mlp.0.bias": w.bias(merged),
        "visual.merger.mlp.2.weight": w(out, merged), "visual.merger.mlp.2.bias": w.bias(out),
    })
    return t


class _init:
    """Random tensors: weights ~ N(0, 0.08), norms ~ 1 + N(0, 0.1), biases ~ N(0, 0.05)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def __call__(self, *shape: int) -> np.ndarray:
        return (self.rng.standard_normal(shape) * 0.08).astype(np.float32)

    def norm(self, n: int) -> np.ndarray:
        return (1.0 + self.rng.standard_normal(n) * 0.1).astype(np.float32)

    def bias(self, n: int) -> np.ndarray:
        return (self.rng.standard_normal(n) * 0.05).astype(np.float32)


def build_tiny_model(
    out: str | Path,
    arch: Arch = "qwen2_vl",
    *,
    seed: int = 0,
    vocab_size: int = 400,
    hidden_size: int = 64,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    vision_depth: int = 3,
    vision_dim: int = 32,
    rope_theta: float = 100.0,
    rms_norm_eps: float = 1e-6,
    min_pixels: int = 3136,
    max_pixels: int = 200704,
    context_length: int = 4096,
) -> Path:
    """Write a random-weight `arch` model in the Hugging Face layout to `out` and return it."""
    if arch not in ARCHS:
        raise ValueError(f"unknown tiny-model arch {arch!r}; choose one of {', '.join(ARCHS)}")
    from safetensors.numpy import save_file
    from tokenizers.processors import ByteLevel as ByteLevelPost  # noqa: F401  (tokenizers present)

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tok = _train_tokenizer(vocab_size)
    tok.save(str(out / "tokenizer.json"))
    vocab = tok.get_vocab_size()
    ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}

    rng = np.random.default_rng(seed)
    head_dim = hidden_size // heads
    inter = hidden_size * 2
    tensors = _text_tensors(rng, hidden_size, inter, layers, heads, kv_heads, vocab, tie=False)
    merge, patch, temporal = 2, 14, 2
    vision_heads = max(1, vision_dim // 16)
    tensors.update(_vision_tensors(rng, arch, vision_dim, vision_depth, vision_dim * 2,
                                   hidden_size, merge, patch, temporal))
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})

    half = head_dim // 2
    section = [half - 2 * (half // 3), half // 3, half // 3]  # [2,3,3] for head_dim 16
    vision: dict[str, object] = {
        "model_type": arch, "depth": vision_depth, "num_heads": vision_heads,
        "in_chans": 3, "in_channels": 3, "patch_size": patch, "spatial_patch_size": patch,
        "spatial_merge_size": merge, "temporal_patch_size": temporal,
    }
    if arch == "qwen2_vl":
        vision.update({"embed_dim": vision_dim, "hidden_size": hidden_size, "mlp_ratio": 2})
        architectures = ["Qwen2VLForConditionalGeneration"]
    else:
        vision.update({
            "hidden_size": vision_dim, "intermediate_size": vision_dim * 2,
            "out_hidden_size": hidden_size, "hidden_act": "silu", "window_size": 112,
            "fullatt_block_indexes": [vision_depth - 1], "tokens_per_second": 2,
        })
        architectures = ["Qwen2_5_VLForConditionalGeneration"]
    config = {
        "architectures": architectures,
        "model_type": arch,
        "hidden_size": hidden_size,
        "intermediate_size": inter,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "hidden_act": "silu",
        "rms_norm_eps": rms_norm_eps,
        "rope_theta": rope_theta,
        "rope_scaling": {"type": "mrope", "mrope_section": section},
        "max_position_embeddings": context_length,
        "max_window_layers": layers,
        "sliding_window": context_length,
        "use_sliding_window": False,
        "tie_word_embeddings": False,
        "vocab_size": vocab,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
        "vision_token_id": ids["<|vision_pad|>"],
        "torch_dtype": "float32",
        "vision_config": vision,
    }
    _write_json(out / "config.json", config)
    _write_json(out / "generation_config.json", {
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": [ids["<|im_end|>"], ids["<|endoftext|>"]],
        "pad_token_id": ids["<|endoftext|>"],
        "do_sample": False,
    })
    _write_json(out / "tokenizer_config.json", {
        "tokenizer_class": "Qwen2Tokenizer",
        "model_max_length": context_length,
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "errors": "replace",
        "clean_up_tokenization_spaces": False,
        "split_special_tokens": False,
        "add_prefix_space": False,
        "chat_template": CHAT_TEMPLATE,
        "added_tokens_decoder": {
            str(ids[t]): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                          "single_word": False, "special": True}
            for t in SPECIAL_TOKENS
        },
    })
    _write_json(out / "chat_template.json", {"chat_template": CHAT_TEMPLATE})
    _write_json(out / "preprocessor_config.json", {
        "image_processor_type": "Qwen2VLImageProcessor",
        "processor_class": "Qwen2_5_VLProcessor" if arch == "qwen2_5_vl" else "Qwen2VLProcessor",
        "do_resize": True, "do_rescale": True, "do_normalize": True, "do_convert_rgb": True,
        "rescale_factor": 1 / 255,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "min_pixels": min_pixels, "max_pixels": max_pixels,
        "patch_size": patch, "merge_size": merge, "temporal_patch_size": temporal,
    })
    return out


def _write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def make_test_image(path: str | Path, size: tuple[int, int] = (112, 112), seed: int = 0) -> Path:
    """A deterministic colourful PNG (sides multiples of 28 by default)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([(xx * 255 // max(w - 1, 1)), (yy * 255 // max(h - 1, 1)),
                    rng.integers(0, 256, (h, w))], axis=-1).astype(np.uint8)
    path = Path(path)
    Image.fromarray(img).save(path)
    return path
