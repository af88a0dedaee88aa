"""Hardware cost models for Tucker-2 compressed CNNs (after HALOC, AAAI 2023)."""

__version__ = "0.1.0"
