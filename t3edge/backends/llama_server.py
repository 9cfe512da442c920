"""`python -m t3edge.backends.llama_server ARGS`: llama-cpp-python's OpenAI-compatible server
(`python -m llama_cpp.server ARGS`, same arguments) with the llama.cpp backend's load settings,
so a model that the backend runs also serves (see `extra_buffer_types`)."""

from __future__ import annotations

import runpy

from t3edge.backends.llama import extra_buffer_types
from t3edge.backends.settings import configured_settings


def main() -> None:
    with extra_buffer_types(configured_settings().llama_extra_buffers):
        runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
