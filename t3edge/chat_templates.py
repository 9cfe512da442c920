"""Chat templates for models that ship none (e.g. Gemma 3 270M, a base model).

A GGUF or model folder normally carries its own template (`tokenizer.chat_template`); when it does
not, the backends and converters use the template of the model's family from here, so a base
model can still be driven (and tuned) as a chat. Written for the Jinja environment that chat
templates run in (`messages`, `add_generation_prompt`, `bos_token`).
"""

from __future__ import annotations

# ChatML, as the Qwen and SmolLM families use it.
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Gemma's turns: `user` and `model`; no system role, so the system text opens the first user turn.
GEMMA = (
    "{{ bos_token }}"
    "{% set system = messages[0]['content'] if messages and messages[0]['role'] == 'system' else '' %}"
    "{% for message in messages if message['role'] != 'system' %}"
    "{% set role = 'model' if message['role'] == 'assistant' else 'user' %}"
    "{% set text = (system + '\\n\\n' + message['content']) if loop.first and system else message['content'] %}"
    "{{ '<start_of_turn>' + role + '\\n' + text | trim + '<end_of_turn>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
)

BY_ARCHITECTURE = {"gemma": GEMMA, "gemma2": GEMMA, "gemma3": GEMMA, "gemma3_text": GEMMA}


def fallback_template(architecture: str) -> str:
    """The chat template to use for a model of `architecture` (GGUF arch or HF model_type) that
    has none of its own: its family's, else ChatML."""
    return BY_ARCHITECTURE.get(architecture.lower(), CHATML)
