"""HiPART networks: MSST tokenizer, HiARM generator, lifter, and the assembled model."""

from hipart.models.config import GeneratorConfig, HiPARTConfig, LifterConfig, TokenizerConfig

__all__ = ["GeneratorConfig", "HiPARTConfig", "LifterConfig", "TokenizerConfig"]
