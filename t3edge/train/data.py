"""Trajectories to training samples (docs/train.md).

One sample per trajectory: the conversation the agent had (built by `t3edge.conversation`, the
code the agent runs at inference), rendered with the model's own chat template, images resized
by the one image policy. Loss falls on every assistant turn, up to and including its
end-of-turn token; system, task and observation turns are masked.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydantic import ValidationError

from t3edge.backends.base import Message
from t3edge.backends.mlx import hf_messages
from t3edge.conversation import chat_chain, chat_messages, trajectory_messages
from t3edge.errors import BadInput, T3Error
from t3edge.images import ImagePolicy, load_image, normalize_image
from t3edge.jsonl import BadLine, iter_jsonl
from t3edge.mmtraj import from_mmtraj
from t3edge.trajectory import Trajectory


def load_trajectories(path: str | Path, *, image_root: str | Path | None = None) -> list[Trajectory]:
    """Read a JSONL of our trajectories or of released MM-Traj records (each line either form).

    MM-Traj image paths are relative to `image_root` (default: the file's folder).
    """
    p = Path(path)
    root = Path(image_root) if image_root is not None else p.parent
    out: list[Trajectory] = []
    for lineno, obj in enumerate(iter_jsonl(p), 1):
        try:
            if "conversations" in obj:
                out.append(from_mmtraj(obj, root=root))
            elif "task" in obj:
                out.append(Trajectory.model_validate(obj))
            else:
                raise ValueError("neither a trajectory nor an MM-Traj record")
        except (ValidationError, ValueError, T3Error) as exc:
            warnings.warn(f"{p}: record {lineno} skipped: {exc}", BadLine, stacklevel=2)
    if not out:
        raise BadInput(f"no trajectories in {p}", hint="give t3edge trajectory JSONL or MM-Traj records")
    return out


@dataclass
class Encoded:
    """A tokenized sample. `targets[t]` is True where token t carries loss."""

    sample_id: str
    input_ids: np.ndarray
    targets: np.ndarray
    images: list[Image.Image] = field(default_factory=list)

    @property
    def length(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def supervised(self) -> int:
        return int(self.targets[1:].sum())


class SampleEncoder:
    """Renders and tokenizes trajectories for one model (its tokenizer, template, image policy)."""

    def __init__(self, processor: Any, model_config: Any, policy: ImagePolicy,
                 *, image_root: str | Path | None = None) -> None:
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        # The template owner the MLX backend renders prompts with at inference.
        self._template = processor if hasattr(processor, "apply_chat_template") else self.tokenizer
        self.policy = policy
        self.image_root = Path(image_root) if image_root is not None else None
        cfg = model_config if isinstance(model_config, dict) else vars(model_config)
        token_id = cfg.get("image_token_id", cfg.get("image_token_index"))
        # None: a text-only model, whose samples carry no images
        self.image_token = None if token_id is None else self.tokenizer.convert_ids_to_tokens(int(token_id))

    def render(self, messages: Sequence[Message], *, generation_prompt: bool = False) -> str:
        return self._template.apply_chat_template(
            hf_messages(messages), tokenize=False, add_generation_prompt=generation_prompt
        )

    def load_images(self, messages: Sequence[Message]) -> list[Image.Image]:
        """Every image of the conversation, normalized by the one image policy."""
        out = []
        for msg in messages:
            for part in msg.images:
                if isinstance(part.image, Image.Image):
                    out.append(normalize_image(part.image, self.policy))
                    continue
                path = Path(part.image)
                if not path.is_absolute() and self.image_root is not None:
                    path = self.image_root / path
                out.append(normalize_image(load_image(path), self.policy))
        return out

    def _expand(self, text: str, counts: Sequence[int]) -> str:
        """Repeat each image placeholder by that image's token count, as the processor does."""
        if self.image_token is None:
            if counts:
                raise BadInput(f"the conversation shows {len(counts)} images to a text-only model",
                               hint="train a vision model, or use trajectories of a text-only model")
            return text
        pieces = text.split(self.image_token)
        if len(pieces) - 1 > len(counts):
            raise BadInput(f"the conversation has {len(pieces) - 1} image placeholders but "
                           f"{len(counts)} images", hint="remove image tokens from the text")
        out = [pieces[0]]
        for n, piece in zip(counts, pieces[1:]):
            out.append(self.image_token * n + piece)
        return "".join(out)

    def encode(self, traj: Trajectory, context: Sequence[Trajectory] = ()) -> Encoded:
        """Tokens of the whole trajectory and which of them carry loss.

        A follow-up run (`context`: the earlier runs of its chat) is rendered after its whole chat,
        as the model saw it; only its own assistant turns carry loss.
        """
        messages = sample_messages(traj, context)
        own_turns = sum(1 for m in trajectory_messages(traj) if m.role == "assistant")
        skip = sum(1 for m in messages if m.role == "assistant") - own_turns
        images = self.load_images(messages)
        counts = [self.policy.tokens(*img.size) for img in images]
        full = self._expand(self.render(messages), counts)
        spans: list[tuple[int, int]] = []
        for i, msg in enumerate(messages):
            if msg.role != "assistant":
                continue
            if skip > 0:
                skip -= 1
                continue
            start = len(self._expand(self.render(messages[:i], generation_prompt=True), counts))
            turn = self._expand(self.render(messages[: i + 1]), counts)
            if not full.startswith(turn) or start > len(turn):
                raise T3Error(
                    f"{traj.task.id}: the chat template does not render conversations prefix by "
                    "prefix, so assistant turns cannot be located",
                    hint="use a model whose chat template is ChatML-like (Qwen2-VL, Qwen2.5-VL)",
                )
            # The turn up to and including its end-of-turn token (not the newline after it).
            spans.append((start, start + len(turn[start:].rstrip())))
        enc = self.tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
        ids = np.asarray(enc["input_ids"], dtype=np.int32)
        offsets = np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2)
        targets = np.zeros(len(ids), dtype=bool)
        for a, b in spans:
            targets |= (offsets[:, 0] < b) & (offsets[:, 1] > a)
        return Encoded(traj.task.id, ids, targets, images)

    def pixels(self, images: Sequence[Image.Image]) -> dict[str, Any]:
        """Pixel inputs of the images (the model's own image processor), as MLX arrays."""
        import mlx.core as mx

        if not images:
            return {}
        out = self.processor.image_processor(images=list(images), return_tensors="np")
        return {"pixel_values": mx.array(np.asarray(out["pixel_values"])),
                "image_grid_thw": mx.array(np.asarray(out["image_grid_thw"]))}


def sample_messages(traj: Trajectory, context: Sequence[Trajectory] = ()) -> list[Message]:
    """The conversation a sample trains on: the run alone, or its whole chat if it continues one."""
    return chat_messages([*context, traj]) if context else trajectory_messages(traj)


@dataclass
class SampleInfo:
    """A kept sample: its trajectory's index, and its tokens and targets (pixels are not kept)."""

    index: int
    tokens: Encoded

    @property
    def sample_id(self) -> str:
        return self.tokens.sample_id

    @property
    def length(self) -> int:
        return self.tokens.length

    @property
    def supervised(self) -> int:
        return self.tokens.supervised


@dataclass
class Prepared:
    """Trajectories split into train / valid, with over-length and unusable ones counted."""

    trajectories: list[Trajectory]
    train: list[SampleInfo]
    valid: list[SampleInfo]
    dropped_too_long: int = 0
    dropped_no_target: int = 0
    dropped_unreadable: list[str] = field(default_factory=list)  # "id: why" (images, placeholders)
    total_tokens: int = 0
    supervised_tokens: int = 0
    lengths: list[int] = field(default_factory=list)
    contexts: dict[int, list[Trajectory]] = field(default_factory=dict)  # follow-up index -> its chat

    def messages(self, index: int) -> list[Message]:
        """The conversation of trajectory `index`, as it was encoded."""
        return sample_messages(self.trajectories[index], self.contexts.get(index, ()))

    @property
    def masked_tokens(self) -> int:
        return self.total_tokens - self.supervised_tokens


def is_valid_split(sample_id: str, fraction: float) -> bool:
    """A stable split by id: a sample stays on its side when the data set grows."""
    digest = hashlib.sha256(sample_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def prepare(trajectories: Iterable[Trajectory], encoder: SampleEncoder, *, max_length: int,
            valid_fraction: float = 0.0, valid: Iterable[Trajectory] = ()) -> Prepared:
    """Encode every trajectory once: lengths, supervised counts, drops, and the split."""
    trajs = list(trajectories)
    n_train = len(trajs)
    trajs.extend(valid)
    out = Prepared(trajectories=trajs, train=[], valid=[])
    for i, traj in enumerate(trajs):
        try:
            context = chat_chain(trajs, last=traj)[:-1] if traj.continues else []
        except T3Error as exc:  # a follow-up whose earlier runs are not in the data
            out.dropped_unreadable.append(f"{traj.task.id}: {exc}")
            continue
        try:
            enc = encoder.encode(traj, context)
        except BadInput as exc:
            out.dropped_unreadable.append(f"{traj.task.id}: {exc}")
            continue
        if enc.length > max_length:
            out.dropped_too_long += 1
            continue
        if enc.supervised == 0:
            out.dropped_no_target += 1
            continue
        enc.images = []
        if context:
            out.contexts[i] = context
        info = SampleInfo(i, enc)
        out.lengths.append(enc.length)
        out.total_tokens += enc.length
        out.supervised_tokens += enc.supervised
        held_out = i >= n_train or (n_train == len(trajs) and is_valid_split(traj.task.id, valid_fraction))
        (out.valid if held_out else out.train).append(info)
    if valid_fraction > 0 and n_train == len(trajs):  # a tiny set: neither side of the split is left empty
        if not out.valid and len(out.train) > 1:
            out.valid.append(out.train.pop(-1))
        elif not out.train:
            held = 1 if len(out.valid) > 1 else 0
            out.train, out.valid = out.valid[:len(out.valid) - held], out.valid[len(out.valid) - held:]
    return out


def length_histogram(lengths: Sequence[int], bins: int = 10) -> list[tuple[int, int, int]]:
    """(low, high, count) buckets of token lengths."""
    if not lengths:
        return []
    counts, edges = np.histogram(np.asarray(lengths), bins=min(bins, max(1, len(set(lengths)))))
    return [(int(edges[i]), int(edges[i + 1]), int(c)) for i, c in enumerate(counts)]
