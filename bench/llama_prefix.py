"""KV prefix reuse in the llama.cpp backend: step 4 of a 4-step image conversation.

Warm: the backend has served steps 1-3, so step 4 evaluates only the newest assistant turn and
observation. Baseline (measured in the same run): the same step 4 after `reset()`, which is what
llama-cpp-python's multimodal chat handlers do on every call (re-encode the image, re-prefill
everything). Same greedy output both ways; the ratio is cold / warm wall time.

    python bench/llama_prefix.py [--repeats 5] [--image 448] [--hidden 512] [--layers 8]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--image", type=int, default=448, help="image side (multiple of 28)")
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=16)
    args = parser.parse_args()

    from converters.hf_to_gguf import convert_to_gguf
    from t3edge.backends.base import GenerationConfig, ImagePart, Message, TextPart
    from t3edge.backends.llama import LlamaBackend
    from t3edge.models import BackendSettings, ResolvedModel
    from tinymodels import build_tiny_model, make_test_image

    tmp = Path(tempfile.mkdtemp(prefix="bench-prefix-"))
    try:
        src = build_tiny_model(tmp / "hf", "qwen2_vl", hidden_size=args.hidden, layers=args.layers,
                               heads=args.hidden // 64, kv_heads=max(1, args.hidden // 256),
                               vision_dim=256, vision_depth=6)
        pair = convert_to_gguf(src, tmp / "gguf", "f16")
        image = make_test_image(tmp / "img.png", (args.image, args.image))
        backend = LlamaBackend(ResolvedModel(spec="bench", kind="gguf", path=str(pair.model), mmproj=str(pair.mmproj)),
                               BackendSettings())
        config = GenerationConfig(max_tokens=args.tokens, temperature=0.0)
        messages = [Message("system", "You solve tasks by writing Python that calls tools."),
                    Message("user", [ImagePart(str(image)), TextPart("Task: what is in the image?")])]
        for step in range(3):
            c = backend.generate(messages, config)
            messages += [Message("assistant", c.text),
                         Message("user", f"[OUTPUT OF STEP {step}] -> Observation: found {step + 2} objects")]

        warm, cold = [], []
        for _ in range(args.repeats):
            backend.reset()
            for n in range(3, len(messages) + 1, 2):  # replay steps 1-3 so the cache holds them
                backend.generate(messages[:n], config)
            t0 = time.perf_counter()
            w = backend.generate(messages, config)
            warm.append(time.perf_counter() - t0)
            backend.reset()
            t0 = time.perf_counter()
            c = backend.generate(messages, config)
            cold.append(time.perf_counter() - t0)
            assert w.token_ids == c.token_ids, "prefix reuse changed the greedy output"
        backend.close()
        tw, tc = statistics.median(warm), statistics.median(cold)
        print(f"model: hidden {args.hidden}, {args.layers} layers; image {args.image}x{args.image}; "
              f"step-4 prompt {c.usage.prompt_tokens} tokens, {args.tokens} generated")
        print(f"step 4 without prefix reuse  {tc * 1000:8.1f} ms  (cached {c.usage.cached_tokens})")
        print(f"step 4 with prefix reuse     {tw * 1000:8.1f} ms  (cached {w.usage.cached_tokens}, "
              f"evaluated {w.usage.prompt_tokens - w.usage.cached_tokens})")
        print(f"ratio cold / warm            {tc / tw:8.1f}x  (median of {args.repeats})")

    finally:
        shutil.rmtree(tmp, ignore_errors=True)

if __name__ == "__main__":
    main()
