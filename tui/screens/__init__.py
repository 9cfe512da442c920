"""Screens of the terminal app: chat, model picker, attachment picker, sessions, evaluation."""
