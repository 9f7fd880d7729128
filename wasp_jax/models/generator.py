"""Text generation with the project's PLMs: `load_generator` and `Generator` (host side).

`Generator.generate` tokenizes the prompts, groups the (prompt, sample) rows into chunks of
at most ``max_batch_rows``, runs the jitted sampler of `wasp_jax.models.sampler` on each
chunk and decodes the results. Choices, each documented where it is made:

* Prompts are completion-style by default (``chat=False``): WASP prompts end with an opening
  quote that the model should close, as the original code fed raw prompts to every
  open model. ``chat=True`` wraps a prompt as a user turn and opens the assistant turn.
* Too long prompts are truncated from the left (as WASP's tokenizers do) to
  ``max_position - max_new_tokens`` tokens, keeping a leading BOS; a warning says how many.
* Shapes are bucketed (prompt length to multiples of 64 up to 256 and of 128 beyond, rows and
  prompt rows to powers of two, new tokens to powers of two; the rules of
  `wasp_jax.kernels.padding`), so one generation round compiles a handful of programs.
* Stop strings: the device ends a row at a token whose own text contains a stop string
  (exact for one-character stops such as WASP's closing quote); the host then cuts every text
  before the first stop string, also where one spans two tokens.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from wasp_jax import distributed as dist
from wasp_jax.models import layers, t5_sampler
from wasp_jax.models import sampler as smp
from wasp_jax.models import sharding as shd
from wasp_jax.models.chunk_layout import layout_chunk
from wasp_jax.models.decode import PromptBatch, SamplingControls
from wasp_jax.models.generate_args import (
    check_prompts,
    check_sampling,
    check_stop,
    progress_reporter,
    token_texts,
)
from wasp_jax.models.loading import load_causal_lm


@dataclasses.dataclass
class GenerationOutput:
    """Token-level results of `Generator.generate_ids`, indexed [prompt][sample].

    Attributes:
      tokens: generated token ids (EOS excluded, a final stop token included).
      logprobs: log-probabilities of those tokens under the raw model (before temperature
        and filtering).
      steps: decode-loop iterations run, per chunk (early exit makes them < N).
    """

    tokens: list[list[np.ndarray]]
    logprobs: list[list[np.ndarray]]
    steps: list[int]


class Generator:
    """A causal LM ready to sample on a mesh.

    Args:
      loaded: a `wasp_jax.models.LoadedLM` (name, model, tokenizer, config, chat_template,
        is_instruct).
      mesh: a ``("data", "model")`` mesh; default `wasp_jax.models.sharding.make_mesh()`.
      chat: default for wrapping prompts in the chat template (see module docstring).
      max_batch_rows: most sample rows decoded together; more rows run in several chunks.
      add_bos: prepend BOS to completion prompts; default ``tokenizer.add_bos_default``
        (what the original checkpoint expects: True for Gemma, False for SmolLM2).
    """

    def __init__(
        self,
        loaded,
        *,
        mesh=None,
        chat: bool = False,
        max_batch_rows: int = 32,
        add_bos: bool | None = None,
    ):
        self.name = loaded.name
        self.tokenizer = loaded.tokenizer
        self.config = loaded.model.config
        self.chat_template = loaded.chat_template
        self.is_instruct = loaded.is_instruct
        self.mesh = mesh if mesh is not None else shd.make_mesh()
        self.chat = bool(chat)
        self.max_batch_rows = int(max_batch_rows)
        if chat and not self.chat_template:
            raise ValueError(f"model {self.name!r} has no chat template; use chat=False")
        if add_bos is None:
            add_bos = bool(getattr(self.tokenizer, "add_bos_default", True))
        self.add_bos = add_bos
        self.graphdef, state, shardings = shd.shard_model(loaded.model, self.mesh)
        # An encoder-decoder (T5) scans its stacked weights and starts decoding with its own hook.
        self.seq2seq = bool(getattr(loaded.model, "is_encoder_decoder", False))
        self.state, self.state_shardings = state, shardings
        self.layers, self.layer_shardings = {}, {}
        if not self.seq2seq:
            # One array per layer: decoding loops over layers instead of scanning stacked weights.
            self.state, self.state_shardings, self.layers, self.layer_shardings = (
                shd.unstack_layers(state, shardings, self.mesh)
            )
        if shd.axis_size(self.mesh, shd.MODEL) == 1 and not self.seq2seq:
            self.layers = [layers.fuse_projections(p) for p in self.layers]
            self.layer_shardings = [{n: shd.replicated(self.mesh) for n in p} for p in self.layers]
        self.trace_count = 0
        self._samplers: dict[smp.SamplerShape, Callable] = {}
        self._stop_tables: dict[tuple[str, ...], np.ndarray] = {}
        vocab = int(self.config.vocab_size)
        self._eos_table = np.zeros(vocab, bool)
        self._eos_table[[i for i in self.tokenizer.eos_ids if 0 <= i < vocab]] = True

    # -- prompts ---------------------------------------------------------------------------

    def encode_prompt(self, prompt: str, *, chat: bool | None = None) -> list[int]:
        """Token ids of `prompt`, chat-wrapped if asked (default: the generator's setting)."""
        if not isinstance(prompt, str):
            raise TypeError(f"prompts must be strings, got {type(prompt).__name__}")
        if self.chat if chat is None else chat:
            if not self.chat_template:
                raise ValueError(f"model {self.name!r} has no chat template; use chat=False")
            text = self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}])
            return list(self.tokenizer.encode(text, add_bos=False))
        if self.seq2seq:
            # The encoder's input as its tokenizer frames it (T5 appends </s>).
            return list(self.tokenizer.backend.encode(prompt, add_special_tokens=True).ids)
        return list(self.tokenizer.encode(prompt, add_bos=self.add_bos))

    # -- generation ------------------------------------------------------------------------

    def generate(
        self,
        prompts: Sequence[str],
        *,
        num_samples: int = 1,
        max_new_tokens: int,
        min_new_tokens: int = 0,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = 0,
        stop: Sequence[str] = (),
        key: jax.Array,
        chat: bool | None = None,
        progress: bool | Callable[[int, int], None] | None = None,
    ) -> list[list[str]]:
        """Samples `num_samples` continuations of every prompt.

        Args:
          prompts: prompt strings.
          num_samples: continuations per prompt (they share the prompt's prefill).
          max_new_tokens: most new tokens per continuation.
          min_new_tokens: EOS is suppressed before this many new tokens.
          temperature: softmax temperature; 0 means greedy.
          top_p: nucleus mass in (0, 1]; 1 = off.
          top_k: keep the k most likely tokens; 0 = off, 1 = greedy.
          stop: stop strings; a text is cut before the first one and its row stops there.
          key: a typed PRNG key (`jax.random.key`); sample j of prompt i uses
            ``fold_in(key, i * num_samples + j)``, whatever the batching.
          chat: override the generator's chat default for this call.
          progress: True for a tqdm bar over rows, or a callable ``(rows_done, rows_total)``.

        Returns:
          ``texts[i][j]``: continuation j of prompt i, without EOS and before any stop string.
        """
        stop = check_stop(stop)
        ids = [self.encode_prompt(p, chat=chat) for p in check_prompts(prompts)]
        out = self.generate_ids(
            ids,
            num_samples=num_samples,
            max_new_tokens=max_new_tokens,
            min_new_tokens=min_new_tokens,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            stop=stop,
            key=key,
            progress=progress,
        )
        return [
            [self._cut(self.tokenizer.decode(t.tolist()), stop) for t in row] for row in out.tokens
        ]

    def generate_ids(
        self,
        prompt_ids: Sequence[Sequence[int]],
        *,
        num_samples: int = 1,
        max_new_tokens: int,
        min_new_tokens: int = 0,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = 0,
        stop: Sequence[str] = (),
        key: jax.Array,
        share_prefix: bool = True,
        progress: bool | Callable[[int, int], None] | None = None,
    ) -> GenerationOutput:
        """Token-level `generate` on already tokenized prompts (same arguments).

        ``share_prefix=False`` prefills every sample row separately (a reference for tests).
        """
        check_sampling(num_samples, max_new_tokens, min_new_tokens, temperature, top_p, top_k)
        if not jax.dtypes.issubdtype(getattr(key, "dtype", None), jax.dtypes.prng_key):
            raise TypeError("key must be a typed PRNG key from jax.random.key(seed)")
        prompt_ids = [self._fit_context(list(p), max_new_tokens) for p in prompt_ids]
        greedy = temperature == 0 or top_k == 1
        stop_table = self._stop_table(tuple(stop))
        rows = sorted(
            ((i, j) for i in range(len(prompt_ids)) for j in range(num_samples)),
            key=lambda r: (-len(prompt_ids[r[0]]), r),
        )
        tokens = [[None] * num_samples for _ in prompt_ids]
        logprobs = [[None] * num_samples for _ in prompt_ids]
        starts = range(0, len(rows), self.max_batch_rows)
        multi = dist.is_multi()
        if multi:  # each process samples its share of the chunks, each exactly as one would
            starts = starts[dist.share(len(starts))]
        chunks = [rows[s : s + self.max_batch_rows] for s in starts]
        report = progress_reporter(progress, sum(map(len, chunks)))
        steps = []
        for chunk in chunks:
            res = self._run_chunk(
                chunk,
                prompt_ids,
                num_samples=num_samples,
                max_new=max_new_tokens,
                min_new=min_new_tokens,
                temperature=1.0 if greedy else float(temperature),
                top_p=float(top_p),
                top_k=0 if greedy else int(top_k),
                greedy=greedy,
                key=key,
                stop_table=stop_table,
                share_prefix=share_prefix,
            )
            steps.append(int(res["steps"]))
            for r, (i, j) in enumerate(chunk):
                n = int(res["lengths"][r])
                tokens[i][j] = res["tokens"][r, :n]
                logprobs[i][j] = res["logprobs"][r, :n]
            report(len(chunk))
        report(None)
        if multi:
            mine = [cell for chunk in chunks for cell in chunk]
            dist.allgather_cells(mine, tokens, logprobs, what="gathering generated tokens")
        return GenerationOutput(tokens, logprobs, steps)

    # -- internals -------------------------------------------------------------------------

    def _run_chunk(self, chunk, prompt_ids, *, num_samples, key, stop_table, share_prefix, **kw):
        lay = layout_chunk(
            chunk,
            prompt_ids,
            num_samples=num_samples,
            max_new=kw["max_new"],
            share_prefix=share_prefix,
        )
        row_keys = jax.vmap(jax.random.fold_in, (None, 0))(key, jnp.asarray(lay.row_ids))
        shape = smp.SamplerShape(
            prompt_rows=lay.tokens.shape[0],
            prompt_len=lay.tokens.shape[1],
            group=lay.group,
            new_tokens=lay.new_tokens,
            greedy=kw["greedy"],
            top_k=kw["top_k"],
            use_top_p=kw["top_p"] < 1.0,
        )
        fn = self._sampler(shape)
        batch = PromptBatch(lay.tokens, lay.positions, lay.mask, row_keys, lay.active)
        controls = SamplingControls(
            temperature=np.float32(kw["temperature"]),
            top_p=np.float32(kw["top_p"]),
            min_new=np.int32(kw["min_new"]),
            max_new=np.int32(kw["max_new"]),
            eos_table=self._eos_table,
            stop_table=stop_table,
        )
        res = fn(self.state, self.layers, batch, controls)
        res = jax.tree.map(np.asarray, res)
        take = lay.slots  # back to the chunk's row order
        return {**res, **{k: res[k][take] for k in ("tokens", "lengths", "logprobs")}}

    def _sampler(self, shape: smp.SamplerShape) -> Callable:
        if shape not in self._samplers:

            def on_trace(_):
                self.trace_count += 1

            self._samplers[shape] = smp.build_sampler(
                self.graphdef,
                shape=shape,
                mesh=self.mesh,
                state_shardings=self.state_shardings,
                layer_shardings=self.layer_shardings,
                start=t5_sampler.encoder_decoder_start if self.seq2seq else smp.decoder_start,
                on_trace=on_trace,
            )
        return self._samplers[shape]

    def _fit_context(self, ids: list[int], max_new: int) -> list[int]:
        if not ids:
            raise ValueError("a prompt encodes to no tokens; give a non-empty prompt")
        limit = getattr(self.config, "max_position", None)
        if not limit or len(ids) + max_new <= limit:
            return ids
        room = limit - max_new
        if room < 2:
            raise ValueError(
                f"max_new_tokens={max_new} leaves no room for a prompt in the "
                f"{limit}-token context of {self.name!r}; lower max_new_tokens"
            )
        keep_bos = ids[0] == self.tokenizer.bos_id
        kept = ids[:1] + ids[len(ids) - room + 1 :] if keep_bos else ids[len(ids) - room :]
        warnings.warn(
            f"prompt of {len(ids)} tokens truncated from the left to {len(kept)} so that "
            f"{max_new} new tokens fit the {limit}-token context of {self.name!r}",
            stacklevel=3,
        )
        return kept

    def _stop_table(self, stop: tuple[str, ...]) -> np.ndarray:
        """bool [V]: tokens whose own text contains a stop string (cached per stop tuple)."""
        if stop not in self._stop_tables:
            vocab = int(self.config.vocab_size)
            table = np.zeros(vocab, bool)
            if stop:
                texts = token_texts(self.tokenizer, vocab)
                table[:] = [any(s in t for s in stop) for t in texts]
            self._stop_tables[stop] = table
        return self._stop_tables[stop]

    @staticmethod
    def _cut(text: str, stop: Sequence[str]) -> str:
        cut = min((k for k in (text.find(s) for s in stop) if k >= 0), default=len(text))
        return text[:cut]


def load_generator(
    spec: str,
    *,
    mesh=None,
    cache_dir=None,
    chat: bool | None = None,
    dtype=None,
    max_batch_rows: int = 32,
) -> Generator:
    """Loads a causal LM (registry name or path, see `wasp_jax.models.load_causal_lm`).

    Args:
      spec: e.g. ``"smollm2-135m-instruct"``, ``"gemma3-270m"`` or a checkpoint folder.
      mesh: a ``("data", "model")`` mesh; default `wasp_jax.models.sharding.make_mesh()`.
      cache_dir: converted-checkpoint cache (default ``$WASP_JAX_CACHE``).
      chat: wrap prompts in the chat template. Default (None) is False, completion-style,
        because WASP prompts are completions that end with an opening quote.
      dtype: parameter dtype; None: bfloat16 on GPU/TPU, float32 on CPU. With bfloat16 the
        dense products run in bfloat16 with float32 accumulation (norms, softmax and logits
        stay float32): half the weight bytes per decode step; see docs/performance.md for
        speed and agreement with float32.
      max_batch_rows: most sample rows decoded together.

    An API spec (``openai:MODEL``, ``openai-completions:MODEL``) gives a
    `wasp_jax.models.api.ApiGenerator` with the default ``api`` settings instead.
    """
    from wasp_jax.models import api  # the API backend (its client is imported on first use)

    if api.is_api_spec(spec):
        return api.load_api_generator(spec)
    mesh = mesh if mesh is not None else shd.make_mesh()
    if dtype is None:
        dtype = layers.compute_dtype("auto") or jnp.float32
    loaded = load_causal_lm(spec, cache_dir=cache_dir, mesh=mesh, dtype=dtype)
    if jnp.dtype(dtype) != jnp.float32 and hasattr(loaded.model, "compute_dtype"):
        loaded.model.compute_dtype = jnp.dtype(dtype).type
    return Generator(loaded, mesh=mesh, chat=bool(chat), max_batch_rows=max_batch_rows)
