"""Hugging Face T5 checkpoints (T5ForConditionalGeneration, T5EncoderModel) -> module params.

Torch linear weights are [out, in]; the modules keep [in, out] with heads split out
(`wasp_jax.models.t5` documents the layout). The relative-position table lives in the
first block of each stack and is shared by all its layers.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

from wasp_jax.models.t5 import T5Config


def is_t5_folder(folder: pathlib.Path) -> bool:
    """A folder whose config.json names model_type "t5"."""
    cfg = pathlib.Path(folder) / "config.json"
    if not cfg.is_file():
        return False
    try:
        return json.loads(cfg.read_text()).get("model_type") == "t5"
    except (json.JSONDecodeError, AttributeError):
        return False


def _heads_in(w: np.ndarray, h: int) -> np.ndarray:
    return w.T.reshape(w.shape[1], h, -1)


def _heads_out(w: np.ndarray, h: int) -> np.ndarray:
    return w.T.reshape(h, -1, w.shape[0])


def _stack_params(sd: dict, c: T5Config, decoder: bool) -> dict:
    name = "decoder" if decoder else "encoder"
    h = c.num_heads
    layers = []
    n = c.num_decoder_layers if decoder else c.num_layers
    for i in range(n):
        b = f"{name}.block.{i}.layer."
        a = b + "0.SelfAttention."
        lp = dict(
            attn_norm=sd[b + "0.layer_norm.weight"],
            wq=_heads_in(sd[a + "q.weight"], h),
            wk=_heads_in(sd[a + "k.weight"], h),
            wv=_heads_in(sd[a + "v.weight"], h),
            wo=_heads_out(sd[a + "o.weight"], h),
        )
        ff = b + ("2" if decoder else "1")
        if decoder:
            x = b + "1.EncDecAttention."
            lp.update(
                cross_norm=sd[b + "1.layer_norm.weight"],
                cq=_heads_in(sd[x + "q.weight"], h),
                ck=_heads_in(sd[x + "k.weight"], h),
                cv=_heads_in(sd[x + "v.weight"], h),
                co=_heads_out(sd[x + "o.weight"], h),
            )
        lp["mlp_norm"] = sd[ff + ".layer_norm.weight"]
        names = ("wi_0", "wi_1") if c.gated else ("wi",)
        for w in names:
            lp[w] = sd[f"{ff}.DenseReluDense.{w}.weight"].T
        lp["wo_ff"] = sd[f"{ff}.DenseReluDense.wo.weight"].T
        layers.append(lp)
    return dict(
        layers={k: np.stack([lp[k] for lp in layers]) for k in layers[0]},
        rel_bias=sd[f"{name}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"],
        final_norm=sd[f"{name}.final_layer_norm.weight"],
    )


def shared_embedding(sd: dict) -> np.ndarray:
    """The token embedding (``shared``, or a stack's own copy where only that was saved)."""
    for key in ("shared.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight"):
        if key in sd:
            return sd[key]
    raise ValueError("no shared.weight: not a T5 checkpoint")


def t5_params(c: T5Config, sd: dict[str, np.ndarray]) -> dict:
    """Params of ``T5Model`` from a T5ForConditionalGeneration state dict."""
    out = dict(
        shared=shared_embedding(sd),
        encoder=_stack_params(sd, c, False),
        decoder=_stack_params(sd, c, True),
    )
    if not c.tie_embeddings:
        out["lm_head"] = sd["lm_head.weight"].T
    return out


def t5_encoder_params(c: T5Config, sd: dict[str, np.ndarray]) -> dict:
    """Params of a T5 encoder (``shared`` and ``encoder``) from a T5EncoderModel state dict."""
    return dict(shared=shared_embedding(sd), encoder=_stack_params(sd, c, False))
