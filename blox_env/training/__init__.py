"""Training engine: normal training, blockwise distillation, KD fine-tuning, the block library.

torch is imported by these modules only; ``import blox_env`` does not pay for it.
"""
