"""`python -m t3edge` is the `t3edge` command."""

from t3edge.cli import main

main()
