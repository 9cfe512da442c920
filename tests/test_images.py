"""The one image policy shared by every backend and the trainer."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from t3edge.errors import BadInput
from t3edge.images import ImagePolicy, load_image, normalize_image


@pytest.mark.parametrize("size", [(224, 224), (640, 480), (33, 1000), (1, 1), (5000, 3000), (100, 57)])
def test_target_sizes_are_on_the_grid_and_within_limits(size: tuple[int, int]) -> None:
    policy = ImagePolicy(max_pixels=200_704)
    w, h = policy.target_size(*size)
    assert w % 28 == 0 and h % 28 == 0
    assert (w // 28) * (h // 28) >= 8  # llama.cpp's minimum merged tokens
    assert w * h <= 200_704


def test_conforming_images_are_left_alone_and_others_resized() -> None:
    policy = ImagePolicy()
    img = Image.new("RGB", (224, 112))
    assert normalize_image(img, policy) is img
    odd = normalize_image(Image.new("RGBA", (230, 100)), policy)
    assert odd.size == (224, 112) and odd.mode == "RGB"
    assert policy.tokens(224, 224) == 64


def test_rounding_is_half_to_even_like_the_hf_processor() -> None:
    # 42 / 28 = 1.5 -> 2 (even), 70 / 28 = 2.5 -> 2 (even); 98/28 = 3.5 -> 4
    policy = ImagePolicy(min_pixels=0, min_tokens=1)
    assert policy.target_size(42, 70) == (56, 56)
    assert policy.target_size(98, 28) == (112, 28)


def test_policy_from_model_folder(tiny_qwen2_vl: Path) -> None:
    policy = ImagePolicy.for_model(tiny_qwen2_vl, max_pixels=100_000)
    assert (policy.patch_size, policy.merge_size, policy.min_pixels) == (14, 2, 3136)
    assert policy.max_pixels == 100_000


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="image not found"):
        load_image(tmp_path / "nope.png")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(BadInput, match="cannot read image .*corrupt or not an image"):
        load_image(bad)
    truncated = tmp_path / "cut.png"
    Image.new("RGB", (64, 64), "red").save(tmp_path / "full.png")
    truncated.write_bytes((tmp_path / "full.png").read_bytes()[:60])
    with pytest.raises(BadInput):
        load_image(truncated)
    with pytest.raises(BadInput, match="not a file"):
        load_image(tmp_path)
