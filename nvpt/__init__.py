"""Spike-NVPT: noise-robust visual prompt tuning of frozen Vision Transformers with spiking binary prompts.

The package's modules are imported on use (``nvpt.config``, ``nvpt.pipeline``, ...); importing ``nvpt``
itself loads nothing heavy. ``__version__`` is the version pyproject.toml declares (tests/test_packaging.py).
"""
__version__ = "0.1.0"
