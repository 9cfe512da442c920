"""`python -m t3edge.backends.llama_server ARGS`: llama-cpp-python's OpenAI-compatible server
(`python -m llama_cpp.server ARGS`, same arguments) with the llama.cpp backend's load settings,
so a model that the backend runs also serves (see `extra_buffer_types`).

One change of default: `--interrupt_requests False`. llama_cpp.server otherwise ends a stream
early (without a finish reason) whenever another request arrives, which cuts every output short
for clients that send requests at once (evaluation items, synthesis); queued requests now wait
their turn. Give `--interrupt_requests True` to get the old behaviour back. With `--config_file`
llama_cpp.server takes its settings from the file alone: set `"interrupt_requests": false` there.
"""

from __future__ import annotations

import runpy
import sys

from t3edge.backends.llama import extra_buffer_types
from t3edge.backends.settings import configured_settings


def server_args(args: list[str]) -> list[str]:
    """The command-line arguments with this module's defaults added where not given."""
    given = any(a == "--interrupt_requests" or a.startswith("--interrupt_requests=") for a in args)
    return args if given else [*args, "--interrupt_requests", "False"]


def main() -> None:
    sys.argv = [sys.argv[0], *server_args(sys.argv[1:])]
    with extra_buffer_types(configured_settings().llama_extra_buffers):
        runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
