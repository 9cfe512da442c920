"""Widgets of the terminal app: steps, messages, prompt, attachments, status and image previews."""
