"""Checkpoint conversion: GGUF files and Hugging Face folders -> (DecoderConfig, numpy params).

The params are a nested dict shaped like ``nnx.state(model).to_pure_dict()`` of the
matching module (``embed``, ``layers/<name>`` stacked over layers, ``final_norm``, and
``lm_head`` when untied), float32 numpy, in the modules' [in, out] layout.

Facts this relies on: GGUF shapes are reversed relative to torch
(``shape[::-1]`` gives [out, in]); llama.cpp permutes the q/k rows of the ``llama``
architecture for its interleaved RoPE, undone here to get the HF rotate-half layout; Gemma
GGUF norms already include the +1, Gemma HF norms do not.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize
from safetensors import safe_open

from wasp_jax.models.config import DecoderConfig
from wasp_jax.models.gemma3 import default_layer_pattern
from wasp_jax.models.gpt2 import hf_gpt2_to_params
from wasp_jax.models.opt import hf_opt_config, hf_opt_to_params

GGUF_ARCHS = ("llama", "gemma3")
HF_MODEL_TYPES = ("llama", "mistral", "qwen2", "gemma3_text", "gemma3", "gpt2", "opt")


class UnsupportedModelError(ValueError):
    """The checkpoint's architecture is not one this package implements."""


# --------------------------------------------------------------------------- GGUF


def read_gguf(path) -> tuple[dict, dict[str, np.ndarray]]:
    """Reads a GGUF file: (metadata fields, float32 tensors in torch [out, in] layout)."""
    reader = GGUFReader(str(path))
    fields = {}
    for k, f in reader.fields.items():
        if k.startswith("tokenizer.ggml.") and k.rsplit(".", 1)[-1] in (
            "tokens",
            "merges",
            "scores",
            "token_type",
        ):
            continue
        try:
            fields[k] = f.contents()
        except Exception:  # noqa: BLE001  (exotic field types are irrelevant here)
            continue
    tensors = {}
    for t in reader.tensors:
        arr = dequantize(t.data, t.tensor_type).astype(np.float32)
        tensors[t.name] = arr.reshape([int(x) for x in t.shape[::-1]])
    return fields, tensors


def unpermute_qk(w: np.ndarray, num_heads: int) -> np.ndarray:
    """Undoes llama.cpp's q/k row permutation. w: [num_heads * head_dim, in]."""
    dh = w.shape[0] // num_heads
    return w.reshape(num_heads, dh // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def permute_qk(w: np.ndarray, num_heads: int) -> np.ndarray:
    """llama.cpp's q/k permutation (inverse of :func:`unpermute_qk`); used by tests."""
    dh = w.shape[0] // num_heads
    return w.reshape(num_heads, 2, dh // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _heads_in(w: np.ndarray, n: int) -> np.ndarray:
    """torch [n*dh, in] -> module [in, n, dh]."""
    return w.T.reshape(w.shape[1], n, w.shape[0] // n)


def _heads_out(w: np.ndarray, n: int) -> np.ndarray:
    """torch [out, n*dh] -> module [n, dh, out]."""
    return w.T.reshape(n, w.shape[1] // n, w.shape[0])


def _f32(x) -> float:
    """A GGUF float32 field as the decimal it was written from (9.9999997e-06 -> 1e-05)."""
    return float(f"{float(x):.7g}")


def _stack(per_layer: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.stack([p[k] for p in per_layer]) for k in per_layer[0]}


def _gguf_block(arch: str, tensors: dict, i: int, h: int, kv: int) -> dict[str, np.ndarray]:
    """Block ``i`` of a GGUF llama / gemma3 checkpoint in the module's names and layouts."""
    t = {k[len(f"blk.{i}.") :]: v for k, v in tensors.items() if k.startswith(f"blk.{i}.")}
    lp = dict(
        attn_norm=t["attn_norm.weight"],
        wv=_heads_in(t["attn_v.weight"], kv),
        wo=_heads_out(t["attn_output.weight"], h),
        mlp_norm=t["ffn_norm.weight"],
        w_gate=t["ffn_gate.weight"].T,
        w_up=t["ffn_up.weight"].T,
        w_down=t["ffn_down.weight"].T,
    )
    if arch == "llama":
        lp["wq"] = _heads_in(unpermute_qk(t["attn_q.weight"], h), h)
        lp["wk"] = _heads_in(unpermute_qk(t["attn_k.weight"], kv), kv)
    else:
        lp["wq"] = _heads_in(t["attn_q.weight"], h)
        lp["wk"] = _heads_in(t["attn_k.weight"], kv)
        lp.update(
            q_norm=t["attn_q_norm.weight"],
            k_norm=t["attn_k_norm.weight"],
            post_attn_norm=t["post_attention_norm.weight"],
            post_mlp_norm=t["post_ffw_norm.weight"],
        )
    return lp


def gguf_to_params(fields: dict, tensors: dict) -> tuple[DecoderConfig, dict]:
    """Maps a GGUF checkpoint to (config, params)."""
    arch = fields.get("general.architecture")
    if arch not in GGUF_ARCHS:
        raise UnsupportedModelError(
            f"GGUF architecture {arch!r} is not supported; supported: {', '.join(GGUF_ARCHS)}"
        )
    if "rope_freqs.weight" in tensors:
        raise UnsupportedModelError(
            "GGUF with rope_freqs (Llama 3.1 rope scaling) is not supported"
        )

    def f(key, default=None):
        return fields.get(f"{arch}.{key}", default)

    d, h = int(f("embedding_length")), int(f("attention.head_count"))
    kv = int(f("attention.head_count_kv", h))
    dh = int(f("attention.key_length", d // h))
    n_layers = int(f("block_count"))
    emb = tensors["token_embd.weight"]
    common = dict(
        vocab_size=emb.shape[0],
        hidden_size=d,
        intermediate_size=int(f("feed_forward_length")),
        num_layers=n_layers,
        num_heads=h,
        num_kv_heads=kv,
        head_dim=dh,
        norm_eps=_f32(f("attention.layer_norm_rms_epsilon")),
        max_position=int(f("context_length")) if f("context_length") is not None else None,
    )
    blocks = [_gguf_block(arch, tensors, i, h, kv) for i in range(n_layers)]
    params = dict(embed=emb, layers=_stack(blocks), final_norm=tensors["output_norm.weight"])
    if arch == "llama":
        tied = "output.weight" not in tensors
        if not tied:
            params["lm_head"] = tensors["output.weight"].T
        cfg = DecoderConfig.create(
            arch="llama",
            rope_theta=_f32(f("rope.freq_base", 10000.0)),
            tie_embeddings=tied,
            sliding_window=None,
            **common,
        )
    else:
        window = f("attention.sliding_window")
        cfg = DecoderConfig.create(
            arch="gemma3",
            rope_theta=_f32(f("rope.freq_base", 1e6)),
            rope_local_theta=10000.0,
            sliding_window=int(window) if window is not None else None,
            layer_is_global=default_layer_pattern(n_layers),
            query_scale=dh**-0.5,
            hidden_act="gelu_tanh",
            tie_embeddings=True,
            **common,
        )
    return cfg, params


# --------------------------------------------------------------------------- HF folders


def read_safetensors(folder: pathlib.Path) -> dict[str, np.ndarray]:
    """All tensors of a folder's ``*.safetensors`` files (sharded or not) as float32 numpy."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    else:
        files = sorted(p.name for p in folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors files in {folder}")
    out = {}
    for name in files:
        try:
            with safe_open(str(folder / name), framework="numpy") as fh:
                for k in fh.keys():
                    out[k] = fh.get_tensor(k).astype(np.float32)
        except (TypeError, ValueError):
            # bfloat16 has no numpy dtype; read through JAX instead.
            with safe_open(str(folder / name), framework="flax") as fh:
                for k in fh.keys():
                    out[k] = np.asarray(fh.get_tensor(k), dtype=np.float32)
    return out


def _rope(hf: dict, layer_type: str = "full_attention") -> dict:
    """RoPE base and scaling of a config.json: top-level keys (transformers 4) or the
    ``rope_parameters`` dict that transformers 5 writes instead (one per layer type where
    the layer types differ, as in Gemma 3: ``layer_type`` picks one)."""
    rp = hf.get("rope_parameters")
    if isinstance(rp, dict) and isinstance(rp.get(layer_type), dict):
        rp = rp[layer_type]
    if isinstance(rp, dict) and "rope_theta" not in hf:
        if "rope_theta" not in rp:
            raise UnsupportedModelError(f"rope_parameters without rope_theta: {rp}")
        kind = rp.get("rope_type", rp.get("type", "default"))
        scaling = None if kind == "default" else {k: v for k, v in rp.items() if k != "rope_theta"}
        return dict(rope_theta=rp.get("rope_theta", 10000.0), rope_scaling=scaling)
    return dict(rope_theta=hf.get("rope_theta", 10000.0), rope_scaling=hf.get("rope_scaling"))


def _local_theta(hf: dict) -> float:
    """Gemma 3's RoPE base of its sliding-window layers (10000 unless the config says)."""
    if "rope_local_base_freq" in hf:
        return hf["rope_local_base_freq"]
    rp = hf.get("rope_parameters")
    if isinstance(rp, dict) and isinstance(rp.get("sliding_attention"), dict):
        return _rope(hf, "sliding_attention")["rope_theta"]
    return 10000.0


def hf_config_to_decoder(hf: dict) -> DecoderConfig:
    """Maps a Hugging Face ``config.json`` dict to a DecoderConfig."""
    mt = hf.get("model_type")
    if mt == "gemma3" and "text_config" in hf:
        hf = {**hf["text_config"], "model_type": "gemma3_text"}
        mt = "gemma3_text"
    if mt not in HF_MODEL_TYPES:
        raise UnsupportedModelError(
            f"model_type {mt!r} is not supported; supported: {', '.join(HF_MODEL_TYPES)}"
        )
    if mt == "opt":
        try:
            return hf_opt_config(hf)
        except ValueError as e:
            raise UnsupportedModelError(str(e)) from e
    if mt == "gpt2":
        return DecoderConfig.create(
            arch="gpt2",
            vocab_size=hf["vocab_size"],
            hidden_size=hf["n_embd"],
            intermediate_size=hf.get("n_inner") or 4 * hf["n_embd"],
            num_layers=hf["n_layer"],
            num_heads=hf["n_head"],
            num_kv_heads=hf["n_head"],
            head_dim=hf["n_embd"] // hf["n_head"],
            norm_eps=hf.get("layer_norm_epsilon", 1e-5),
            max_position=hf["n_positions"],
            hidden_act="gelu_new",
            tie_embeddings=True,
        )
    d, h = hf["hidden_size"], hf["num_attention_heads"]
    common = dict(
        vocab_size=hf["vocab_size"],
        hidden_size=d,
        intermediate_size=hf["intermediate_size"],
        num_layers=hf["num_hidden_layers"],
        num_heads=h,
        num_kv_heads=hf.get("num_key_value_heads") or h,
        head_dim=hf.get("head_dim") or d // h,
        norm_eps=hf.get("rms_norm_eps", 1e-6),
        **_rope(hf),
        max_position=hf.get("max_position_embeddings"),
    )
    if mt == "gemma3_text":
        n = common["num_layers"]
        if hf.get("layer_types"):
            pattern = tuple(t == "full_attention" for t in hf["layer_types"])
        else:
            pattern = default_layer_pattern(n, hf.get("sliding_window_pattern", 6))
        return DecoderConfig.create(
            arch="gemma3",
            rope_local_theta=_local_theta(hf),
            sliding_window=hf.get("sliding_window"),
            layer_is_global=pattern,
            query_scale=float(hf.get("query_pre_attn_scalar", common["head_dim"])) ** -0.5,
            attn_softcap=hf.get("attn_logit_softcapping"),
            final_softcap=hf.get("final_logit_softcapping"),
            hidden_act="gelu_tanh",
            tie_embeddings=True,
            **common,
        )
    window = hf.get("sliding_window")
    if mt == "qwen2" and not hf.get("use_sliding_window", False):
        window = None
    act = hf.get("hidden_act", "silu")
    if act != "silu":
        raise UnsupportedModelError(f"hidden_act {act!r} is not supported for {mt} (only silu)")
    return DecoderConfig.create(
        arch="llama",
        sliding_window=window,
        tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        qkv_bias=mt == "qwen2" or bool(hf.get("attention_bias", False)),
        **common,
    )


def hf_to_params(cfg: DecoderConfig, sd: dict[str, np.ndarray]) -> dict:
    """Maps HF tensor names (torch [out, in] layout) to module params."""
    if cfg.arch == "gpt2":
        return hf_gpt2_to_params(cfg, sd)
    if cfg.arch == "opt":
        return hf_opt_to_params(cfg, sd)
    prefix = next(
        (
            p
            for p in ("model.", "language_model.model.", "model.language_model.", "")
            if f"{p}embed_tokens.weight" in sd
        ),
        None,
    )
    if prefix is None:
        raise UnsupportedModelError("no embed_tokens.weight found: not a Llama/Gemma checkpoint")
    h, kv = cfg.num_heads, cfg.num_kv_heads
    gemma = cfg.arch == "gemma3"
    plus = 1.0 if gemma else 0.0  # HF Gemma applies (1 + w)
    layers = []
    for i in range(cfg.num_layers):
        p = f"{prefix}layers.{i}."
        lp = dict(
            attn_norm=sd[p + "input_layernorm.weight"] + plus,
            wq=_heads_in(sd[p + "self_attn.q_proj.weight"], h),
            wk=_heads_in(sd[p + "self_attn.k_proj.weight"], kv),
            wv=_heads_in(sd[p + "self_attn.v_proj.weight"], kv),
            wo=_heads_out(sd[p + "self_attn.o_proj.weight"], h),
            w_gate=sd[p + "mlp.gate_proj.weight"].T,
            w_up=sd[p + "mlp.up_proj.weight"].T,
            w_down=sd[p + "mlp.down_proj.weight"].T,
        )
        if gemma:
            lp.update(
                q_norm=sd[p + "self_attn.q_norm.weight"] + plus,
                k_norm=sd[p + "self_attn.k_norm.weight"] + plus,
                post_attn_norm=sd[p + "post_attention_layernorm.weight"] + plus,
                mlp_norm=sd[p + "pre_feedforward_layernorm.weight"] + plus,
                post_mlp_norm=sd[p + "post_feedforward_layernorm.weight"] + plus,
            )
        else:
            lp["mlp_norm"] = sd[p + "post_attention_layernorm.weight"]
        if cfg.qkv_bias:
            lp.update(
                bq=sd[p + "self_attn.q_proj.bias"].reshape(h, -1),
                bk=sd[p + "self_attn.k_proj.bias"].reshape(kv, -1),
                bv=sd[p + "self_attn.v_proj.bias"].reshape(kv, -1),
            )
        layers.append(lp)
    params = dict(
        embed=sd[f"{prefix}embed_tokens.weight"],
        layers=_stack(layers),
        final_norm=sd[f"{prefix}norm.weight"] + plus,
    )
    if not cfg.tie_embeddings:
        params["lm_head"] = sd["lm_head.weight"].T
    return params


def read_hf_folder(folder) -> tuple[DecoderConfig, dict, dict]:
    """Reads an HF folder: (config, params, raw config.json dict)."""
    folder = pathlib.Path(folder)
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{folder} has no config.json: not a Hugging Face model folder")
    raw = json.loads(cfg_path.read_text())
    cfg = hf_config_to_decoder(raw)
    return cfg, hf_to_params(cfg, read_safetensors(folder)), raw
