"""t3edge: T3-Agent (Gao et al., ICLR 2025) on a laptop."""

__version__ = "0.1.0"
