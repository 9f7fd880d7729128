"""Hugging Face ``BertModel`` state dicts <-> the BERT encoder's parameters (numpy, host side).

Torch ``Linear`` weights are [out, in]; the encoder keeps [in, out] and stacks each layer
weight along a leading layer axis (``layers/<name>`` of ``nnx.state(encoder)``).
"""

from __future__ import annotations

import numpy as np
from flax import nnx

from wasp_jax.models.config import BertConfig

# our stacked-layer name -> (HF suffix under encoder.layer.{i}., transpose torch [out, in])
LAYER_NAMES = {
    "q_kernel": ("attention.self.query.weight", True),
    "q_bias": ("attention.self.query.bias", False),
    "k_kernel": ("attention.self.key.weight", True),
    "k_bias": ("attention.self.key.bias", False),
    "v_kernel": ("attention.self.value.weight", True),
    "v_bias": ("attention.self.value.bias", False),
    "o_kernel": ("attention.output.dense.weight", True),
    "o_bias": ("attention.output.dense.bias", False),
    "ln1_scale": ("attention.output.LayerNorm.weight", False),
    "ln1_bias": ("attention.output.LayerNorm.bias", False),
    "ff_in_kernel": ("intermediate.dense.weight", True),
    "ff_in_bias": ("intermediate.dense.bias", False),
    "ff_out_kernel": ("output.dense.weight", True),
    "ff_out_bias": ("output.dense.bias", False),
    "ln2_scale": ("output.LayerNorm.weight", False),
    "ln2_bias": ("output.LayerNorm.bias", False),
}
TOP_NAMES = {
    "word_emb": ("embeddings.word_embeddings.weight", False),
    "pos_emb": ("embeddings.position_embeddings.weight", False),
    "type_emb": ("embeddings.token_type_embeddings.weight", False),
    "emb_ln_scale": ("embeddings.LayerNorm.weight", False),
    "emb_ln_bias": ("embeddings.LayerNorm.bias", False),
    "pooler_kernel": ("pooler.dense.weight", True),
    "pooler_bias": ("pooler.dense.bias", False),
}


def bert_layer_shapes(config: BertConfig) -> dict[str, tuple[int, ...]]:
    """Per-layer parameter shapes (without the layer axis), in :data:`LAYER_NAMES` order."""
    d, f = config.hidden_size, config.intermediate_size
    special = {"ff_in_kernel": (d, f), "ff_in_bias": (f,), "ff_out_kernel": (f, d)}
    return {
        name: special.get(name, (d, d) if name.endswith("kernel") else (d,)) for name in LAYER_NAMES
    }


def params_from_hf(state_dict: dict[str, np.ndarray], config: BertConfig) -> dict:
    """Maps a Hugging Face BertModel state dict (numpy) to the encoder's pure param dict.

    A ``bert.`` prefix (BertForSequenceClassification checkpoints) is accepted; a missing
    pooler is initialised to zeros (it is only used by ``pooling="cls"`` classifiers).
    """
    sd = {k.removeprefix("bert."): v for k, v in state_dict.items()}

    def get(name, transpose):
        if name not in sd:
            raise ValueError(f"checkpoint lacks tensor {name!r}; is this a BERT checkpoint?")
        a = np.asarray(sd[name], np.float32)
        return a.T if transpose else a

    d = config.hidden_size
    out = {}
    for ours, (hf, tr) in TOP_NAMES.items():
        if ours.startswith("pooler") and hf not in sd:
            out[ours] = np.zeros((d, d) if ours.endswith("kernel") else (d,), np.float32)
        else:
            out[ours] = get(hf, tr)
    out["layers"] = {
        ours: np.stack([get(f"encoder.layer.{i}.{hf}", tr) for i in range(config.num_layers)])
        for ours, (hf, tr) in LAYER_NAMES.items()
    }
    return out


def params_to_hf(model: nnx.Module) -> dict[str, np.ndarray]:
    """Inverse of :func:`params_from_hf`: Hugging Face names and torch layouts."""
    pure = nnx.state(model, nnx.Param).to_pure_dict()
    out = {}
    for ours, (hf, tr) in TOP_NAMES.items():
        a = np.asarray(pure[ours])
        out[hf] = np.ascontiguousarray(a.T if tr else a)
    for ours, (hf, tr) in LAYER_NAMES.items():
        for i, a in enumerate(np.asarray(pure["layers"][ours])):
            out[f"encoder.layer.{i}.{hf}"] = np.ascontiguousarray(a.T if tr else a)
    return out
