"""The t3edge terminal app: chat with the local agent about your files, watch each step live."""
