"""The sandbox process that runs model-written code, and how it starts (kept free of heavy
imports: it is what the sandbox process imports before it confines itself)."""
