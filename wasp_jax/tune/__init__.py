"""Tuning the local generators on DP feedback: preference pairs from noisy releases, LoRA
adapters and the DPO loss (``pairs``, ``dpo``, ``trainer``, ``weights``).

Everything here sees synthetic text and post-noise values only; it spends no privacy.
"""
