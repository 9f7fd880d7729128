"""wasp_api_imdb: WASP on IMDb fusing local open PLMs with closed PLMs served through APIs.

Diff from base.py: the PLMs are the two offline open models plus three API models, as in the
paper's mix of open and closed PLMs (GPT-3.5-turbo-instruct through the completions endpoint,
GPT-4-turbo and GPT-4o through chat completions); per-run caps on requests, tokens and cost;
prices per million prompt / completion tokens. The model names and prices are placeholders:
edit them to what your provider offers and charges today. The key is read from the variable
OPENAI_API_KEY (never written anywhere); the endpoint from OPENAI_BASE_URL or api.base_url.
Answers are cached in <workdir>/private/api_cache (or generation.api_cache_dir): a resumed or
repeated run pays only for requests it has not sent before.

Privacy: as base.py (sigma = 3.781, RDP, add/remove, T = 4). The API models see only public
instructions and synthetic samples, never a private text.

Reproduce (from the repository root):
    export OPENAI_API_KEY=...            # your key; for a local server any value
    wasp-jax run --config experiments/configs/wasp_api_imdb.py --workdir runs/wasp_api_imdb/s0

With a local OpenAI-compatible server (vLLM, TGI, llama.cpp) instead of OpenAI:
    wasp-jax run --config experiments/configs/wasp_api_imdb.py --workdir runs/wasp_api_local \
        --set api.base_url=http://127.0.0.1:8080/v1 \
        --set "generation.plms=['smollm2-135m-instruct','openai-completions:MODEL']" \
        --set api.prices=[]

Expected runtime: as base.py for the local PLMs (an estimated 1-2 h on the 2-core dev CPU);
the API PLMs add about N * 3/5 / batch_size requests (a few minutes at api.concurrency = 4;
an estimate, not measured against OpenAI). Cost: at the placeholder prices, well under 1 USD
(capped by api.max_cost = 5).
"""

import pathlib

from wasp_jax import config

API_PLMS = (
    "openai-completions:gpt-3.5-turbo-instruct",
    "openai:gpt-4-turbo",
    "openai:gpt-4o",
)


def get_config() -> config.WaspConfig:
    base = config.load_config(str(pathlib.Path(__file__).with_name("base.py")))
    return config.replace(
        base,
        **{
            "generation.plms": ("smollm2-135m-instruct", "gemma3-270m", *API_PLMS),
            "api.concurrency": 4,
            "api.max_requests": 2000,
            "api.max_tokens": 2_000_000,
            "api.max_cost": 5.0,
            # USD per million prompt / completion tokens: placeholders, check your provider
            "api.prices": (
                "openai-completions:gpt-3.5-turbo-instruct=1.5/2.0",
                "openai:gpt-4-turbo=10/30",
                "openai:gpt-4o=2.5/10",
            ),
        },
    )
