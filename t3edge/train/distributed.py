"""Data-parallel training over `mlx.core.distributed` (processes started by `mlx.launch`).

Every process walks the same global batch order and takes its own slice of each micro-batch;
gradients and loss sums are added across processes. The loss is normalized by the supervised
token count of the whole global update, so the summed gradient equals a single process's
gradient on the same global batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    rank: int
    size: int
    group: Any = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, items: list[T]) -> list[T]:
        """This process's contiguous share of a global micro-batch."""
        per = len(items) // self.size
        return items[self.rank * per:(self.rank + 1) * per]

    def all_sum(self, tree: Any) -> Any:
        """Sum an array tree over all processes (identity for a single process)."""
        if self.size == 1:
            return tree
        import mlx.core as mx
        from mlx.utils import tree_map

        return tree_map(lambda x: mx.distributed.all_sum(x, stream=mx.cpu), tree)


def init_world() -> World:
    """The process group: a single process unless started by `mlx.launch`."""
    import mlx.core as mx

    group = mx.distributed.init()
    return World(rank=group.rank(), size=group.size(), group=group)
