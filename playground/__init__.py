"""Alignment Playground: a base model and its LoRA adapters, side by side, with feedback and retraining."""

__version__ = "0.1.0"
