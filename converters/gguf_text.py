"""The text-model GGUF of a Qwen2-VL / Qwen2.5-VL checkpoint (llama.cpp arch `qwen2vl`).

Metadata: sizes, rope base and multimodal rope sections, the RMS-norm epsilon (written although
llama.cpp's qwen2vl graph currently ignores it), and the tokenizer: byte-level BPE vocabulary,
merges, token types, special token ids and the chat template, read from tokenizer.json and
tokenizer_config.json without transformers. Tensors are named through gguf's tensor name map.
"""

from __future__ import annotations

import json
from pathlib import Path

from converters.gguf_write import OutType, Planned, file_type, storage_type, write_gguf
from converters.source import ModelSource
from t3edge.errors import BadInput

ARCH = "qwen2vl"


def plan_text_tensors(src: ModelSource, outtype: OutType) -> list[Planned]:
    import gguf

    cfg = src.text_config
    n_layers = int(cfg["num_hidden_layers"])
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.QWEN2VL, n_layers)
    planned: list[Planned] = []
    for hf in src.names:
        if hf.startswith("visual.") or hf.endswith("rotary_emb.inv_freq"):
            continue
        new = names.get_name(hf, try_suffixes=(".weight", ".bias"))
        if new is None:
            raise BadInput(f"{src.folder}: tensor {hf!r} has no GGUF name for arch {ARCH}",
                           hint="the checkpoint has tensors this converter does not know")
        shape = src.shape(hf)
        planned.append(Planned(new, shape, storage_type(new, shape, outtype),
                               lambda hf=hf: src.load(hf)))
    if not any(p.name == "output.weight" for p in planned):
        if not cfg.get("tie_word_embeddings", False):
            raise BadInput(f"{src.folder}: lm_head.weight is missing and embeddings are not tied")
    return planned


def _vocab(folder: Path, vocab_size: int) -> tuple[list[str], list[int], list[str]]:
    """Tokens (padded to vocab_size), their GGUF token types, and the BPE merges."""
    from gguf import TokenType

    tok_path = folder / "tokenizer.json"
    if not tok_path.is_file():
        raise BadInput(f"{folder} has no tokenizer.json", hint="copy the tokenizer files next to the weights")
    data = json.loads(tok_path.read_text(encoding="utf-8"))
    model = data.get("model") or {}
    if model.get("type") != "BPE":
        raise BadInput(f"{tok_path}: expected a BPE tokenizer, got {model.get('type')!r}")
    by_id: dict[int, tuple[str, int]] = {i: (t, int(TokenType.NORMAL)) for t, i in model["vocab"].items()}
    for added in data.get("added_tokens", []):
        kind = TokenType.CONTROL if added.get("special") else TokenType.USER_DEFINED
        by_id[int(added["id"])] = (added["content"], int(kind))
    size = max(vocab_size, max(by_id) + 1)
    tokens = [by_id.get(i, (f"[PAD{i}]", int(TokenType.UNUSED)))[0] for i in range(size)]
    types = [by_id.get(i, ("", int(TokenType.UNUSED)))[1] for i in range(size)]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    return tokens, types, merges


def _chat_template(folder: Path) -> str | None:
    for name, key in (("chat_template.json", "chat_template"), ("tokenizer_config.json", "chat_template")):
        p = folder / name
        if p.is_file():
            value = json.loads(p.read_text(encoding="utf-8")).get(key)
            if isinstance(value, str) and value:
                return value
    jinja = folder / "chat_template.jinja"
    return jinja.read_text(encoding="utf-8") if jinja.is_file() else None


def text_metadata(src: ModelSource, outtype: OutType, name: str):  # noqa: ANN201 (returns a closure)
    cfg = src.text_config
    rope = cfg.get("rope_scaling") or {}
    sections = list(rope.get("mrope_section") or [])
    if not sections:
        raise BadInput(f"{src.folder}: rope_scaling.mrope_section is missing from config.json")
    sections = (sections + [0, 0, 0, 0])[:4]
    tokens, types, merges = _vocab(src.folder, int(cfg["vocab_size"]))
    template = _chat_template(src.folder)

    def apply(w) -> None:  # noqa: ANN001 (gguf.GGUFWriter)
        import gguf

        w.add_type(gguf.GGUFType.MODEL)
        w.add_name(name)
        w.add_file_type(file_type(outtype))
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
        w.add_block_count(int(cfg["num_hidden_layers"]))
        w.add_context_length(int(cfg.get("max_position_embeddings", 32768)))
        w.add_embedding_length(int(cfg["hidden_size"]))
        w.add_feed_forward_length(int(cfg["intermediate_size"]))
        w.add_head_count(int(cfg["num_attention_heads"]))
        w.add_head_count_kv(int(cfg.get("num_key_value_heads", cfg["num_attention_heads"])))
        w.add_rope_freq_base(float(cfg.get("rope_theta", 1e6)))
        w.add_rope_dimension_sections(sections)
        w.add_layer_norm_rms_eps(float(cfg.get("rms_norm_eps", 1e-6)))
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre("qwen2")
        w.add_token_list(tokens)
        w.add_token_types(types)
        w.add_token_merges(merges)
        special = gguf.SpecialVocab(src.folder, load_merges=False, n_vocab=len(tokens))
        special.add_to_gguf(w, quiet=True)
        if "tokenizer.ggml.add_bos_token" not in w.kv_data[0]:
            w.add_add_bos_token(False)
        if template and special.chat_template is None:
            w.add_chat_template(template)

    return apply


def write_text_gguf(src: ModelSource, path: Path, outtype: OutType, *, name: str,
                    on_tensor=None) -> Path:  # noqa: ANN001
    tensors = plan_text_tensors(src, outtype)
    return write_gguf(path, ARCH, text_metadata(src, outtype, name), tensors, on_tensor=on_tensor)
