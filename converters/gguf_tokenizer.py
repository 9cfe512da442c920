"""A Hugging Face fast tokenizer (`tokenizer.json` + `tokenizer_config.json`) rebuilt from a GGUF's
`tokenizer.ggml.*` metadata, so that it splits text the way llama.cpp does.

Two GGUF tokenizer models are handled:
- `gpt2`: byte-level BPE with the GGUF's merges; the pre-tokenizer regexes follow
  `tokenizer.ggml.pre` (`smollm`, `gpt-2`, `llama-bpe`; others are refused rather than guessed).
- `llama`: SentencePiece BPE (Gemma, Llama 2). llama.cpp merges the adjacent pair whose joined
  text is the best-scored token; a BPE whose merges are every split of every token, ranked by
  the joined token's score, does the same. Spaces become `▁`, unknown bytes `<0xXX>` tokens.

Control tokens become special added tokens and user-defined ones plain added tokens (llama.cpp
matches both as whole strings before the tokenizer model runs).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from t3edge.errors import BadInput

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

# token texts llama.cpp treats as end-of-generation besides the eos/eot/eom ids
_EOG_TEXTS = ("<|im_end|>", "<|endoftext|>", "<end_of_turn>", "<|eot_id|>", "<|eom_id|>", "<|end|>",
              "<|end_of_text|>", "<end_of_utterance>", "<EOT>", "<|return|>", "<|call|>")

_GPT2_REGEX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")
# tokenizer.ggml.pre -> (regexes applied in turn, ignore_merges)
_BPE_PRE: dict[str, tuple[tuple[str, ...], bool]] = {
    "smollm": ((r"\p{N}", _GPT2_REGEX), False),
    "gpt-2": ((_GPT2_REGEX,), False),
    "llama-bpe": ((_LLAMA3_REGEX,), True),
}


def eog_token_ids(meta: dict[str, Any]) -> list[int]:
    """End-of-generation ids: eos, eot, eom, and the end-of-turn tokens llama.cpp recognizes."""
    tokens: list[str] = meta["tokenizer.ggml.tokens"]
    ids = [meta.get(f"tokenizer.ggml.{k}_token_id") for k in ("eos", "eot", "eom")]
    by_text = {t: i for i, t in enumerate(tokens) if t in _EOG_TEXTS}
    ids += [by_text[t] for t in _EOG_TEXTS if t in by_text]
    return sorted({int(i) for i in ids if isinstance(i, int) and 0 <= i < len(tokens)})


def build_tokenizer(meta: dict[str, Any]):  # noqa: ANN201 (tokenizers.Tokenizer)
    """The `tokenizers.Tokenizer` equivalent of the GGUF's tokenizer."""
    model = meta.get("tokenizer.ggml.model")
    if model == "gpt2":
        tok = _byte_level_bpe(meta)
    elif model == "llama":
        tok = _sentencepiece_bpe(meta)
    else:
        raise BadInput(f"GGUF tokenizer model {model!r} is not supported",
                       hint="supported tokenizer models: gpt2 (byte-level BPE), llama (SentencePiece)")
    _add_tokens(tok, meta)
    _post_processor(tok, meta)
    return tok


def _types(meta: dict[str, Any]) -> list[int]:
    n = len(meta["tokenizer.ggml.tokens"])
    types = meta.get("tokenizer.ggml.token_type")
    return list(types) if isinstance(types, list) and len(types) == n else [NORMAL] * n


def _byte_level_bpe(meta: dict[str, Any]):  # noqa: ANN202
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    pre = str(meta.get("tokenizer.ggml.pre", "gpt-2"))
    if pre not in _BPE_PRE:
        raise BadInput(f"GGUF byte-level tokenizer with pre-tokenizer {pre!r} is not supported",
                       hint=f"supported: {', '.join(_BPE_PRE)}")
    regexes, ignore_merges = _BPE_PRE[pre]
    tokens: list[str] = meta["tokenizer.ggml.tokens"]
    merges_raw = meta.get("tokenizer.ggml.merges")
    if not isinstance(merges_raw, list):
        raise BadInput("the GGUF's byte-level BPE tokenizer has no merges (tokenizer.ggml.merges)")
    merges = [tuple(m.split(" ", 1)) for m in merges_raw]
    tok = Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, merges, ignore_merges=ignore_merges))
    splits = [pre_tokenizers.Split(Regex(r), behavior="isolated") for r in regexes]
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [*splits, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    return tok


def _sentencepiece_bpe(meta: dict[str, Any]):  # noqa: ANN202
    from tokenizers import Tokenizer, decoders, models, normalizers

    tokens: list[str] = meta["tokenizer.ggml.tokens"]
    scores = meta.get("tokenizer.ggml.scores")
    if not isinstance(scores, list) or len(scores) != len(tokens):
        raise BadInput("the GGUF's SentencePiece tokenizer has no token scores (tokenizer.ggml.scores)")
    types = _types(meta)
    unk_id = meta.get("tokenizer.ggml.unknown_token_id")
    unk = tokens[unk_id] if isinstance(unk_id, int) and 0 <= unk_id < len(tokens) else None
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab, _score_merges(tokens, scores, types), unk_token=unk,
                               byte_fallback=True, fuse_unk=True))
    steps = [normalizers.Replace(" ", "▁")]
    decode = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    if meta.get("tokenizer.ggml.add_space_prefix", True):
        steps.insert(0, normalizers.Prepend("▁"))
        decode.append(decoders.Strip(" ", 1, 0))
    tok.normalizer = normalizers.Sequence(steps)
    tok.decoder = decoders.Sequence(decode)
    return tok


def _score_merges(tokens: Sequence[str], scores: Sequence[float], types: Sequence[int]) -> list[tuple[str, str]]:
    """Every split (a, b) of every mergeable token, best-scored joined token first."""
    mergeable = {NORMAL, USER_DEFINED, UNUSED}
    rank = {t: r for r, t in enumerate(tokens[i] for i in sorted(range(len(tokens)), key=lambda i: -scores[i])
                                       if types[i] in mergeable)}
    found: list[tuple[int, int, int, str, str]] = []
    for joined, r in rank.items():
        for k in range(1, len(joined)):
            a, b = joined[:k], joined[k:]
            ra, rb = rank.get(a), rank.get(b)
            if ra is not None and rb is not None:
                found.append((r, ra, rb, a, b))
    found.sort()
    return [(a, b) for *_, a, b in found]


def _add_tokens(tok, meta: dict[str, Any]) -> None:  # noqa: ANN001
    from tokenizers import AddedToken

    tokens: list[str] = meta["tokenizer.ggml.tokens"]
    added = [AddedToken(tokens[i], special=t == CONTROL, normalized=False)
             for i, t in enumerate(_types(meta)) if t in (CONTROL, USER_DEFINED)]
    tok.add_tokens(added)


def _post_processor(tok, meta: dict[str, Any]) -> None:  # noqa: ANN001
    from tokenizers import processors

    tokens: list[str] = meta["tokenizer.ggml.tokens"]
    bos, eos = _special(meta, "bos"), _special(meta, "eos")
    add_bos = bool(meta.get("tokenizer.ggml.add_bos_token", False)) and bos is not None
    add_eos = bool(meta.get("tokenizer.ggml.add_eos_token", False)) and eos is not None
    if not (add_bos or add_eos):
        return
    single = ([tokens[bos]] if add_bos else []) + ["$A"] + ([tokens[eos]] if add_eos else [])
    pair = single + ["$B"] + ([tokens[eos]] if add_eos else [])
    special = [(tokens[i], i) for i, on in ((bos, add_bos), (eos, add_eos)) if on]
    tok.post_processor = processors.TemplateProcessing(single=" ".join(single), pair=" ".join(pair),
                                                       special_tokens=special)


def _special(meta: dict[str, Any], kind: str) -> int | None:
    i = meta.get(f"tokenizer.ggml.{kind}_token_id")
    return i if isinstance(i, int) and 0 <= i < len(meta["tokenizer.ggml.tokens"]) else None


def write_tokenizer(meta: dict[str, Any], out: Path, *, chat_template: str | None,
                    context_length: int | None) -> None:
    """Write tokenizer.json and tokenizer_config.json (with the chat template) into `out`."""
    tok = build_tokenizer(meta)
    tok.save(str(out / "tokenizer.json"))
    tokens: list[str] = meta["tokenizer.ggml.tokens"]
    config: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "add_bos_token": bool(meta.get("tokenizer.ggml.add_bos_token", False)),
        "add_eos_token": bool(meta.get("tokenizer.ggml.add_eos_token", False)),
        "clean_up_tokenization_spaces": False,
        "model_max_length": context_length or 1 << 30,
    }
    for kind, key in (("bos", "bos_token"), ("eos", "eos_token"), ("unknown", "unk_token"),
                      ("padding", "pad_token")):
        i = _special(meta, kind)
        if i is not None:
            config[key] = tokens[i]
    if chat_template:
        config["chat_template"] = chat_template
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
