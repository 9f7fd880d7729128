"""A small tokenizer wrapper over ``tokenizers.Tokenizer`` with explicit special ids.

Sources: a Hugging Face folder (``tokenizer.json`` or anything ``AutoTokenizer`` reads),
the vocabulary embedded in a GGUF file (converted once through transformers 4.57.6 and
cached as ``tokenizer.json``), or a tokenizer built in code (the tiny test models).

BOS is never added implicitly: callers say ``add_bos`` (the SmolLM2 GGUF tokenizer would
otherwise prepend ``<|im_start|>``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib

from gguf import GGUFReader
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import AddedToken, decoders, normalizers, pre_tokenizers
from tokenizers import Tokenizer as Backend
from tokenizers.models import BPE

from wasp_jax.models.cache import sweep_stale

# Tokens that end a turn or a document in the families we load; any present in the
# vocabulary are treated as EOS in addition to the declared eos id.
_END_TOKENS = (
    "</s>",
    "<eos>",
    "<end_of_turn>",
    "<|im_end|>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<|eot_id|>",
)


@dataclasses.dataclass(frozen=True, eq=False)
class Tokenizer:
    """Text <-> ids.

    Attributes:
      backend: the ``tokenizers.Tokenizer``.
      bos_id: beginning-of-sequence id, or None.
      eos_ids: ids that end generation.
      pad_id: id used for padding (eos if the vocabulary has no pad token).
      chat_template: Jinja chat template, if the checkpoint has one.
      add_bos_default: whether the original model expects a BOS at the start of text.
    """

    backend: object
    bos_id: int | None
    eos_ids: frozenset[int]
    pad_id: int
    chat_template: str | None = None
    add_bos_default: bool = False

    @property
    def vocab_size(self) -> int:
        """Number of ids the tokenizer can produce (may be below the model's vocab_size)."""
        return self.backend.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str, *, add_bos: bool) -> list[int]:
        """Token ids of ``text``; prepends ``bos_id`` iff ``add_bos`` (and one exists)."""
        ids = self.backend.encode(text, add_special_tokens=False).ids
        if add_bos and self.bos_id is not None:
            ids = [self.bos_id, *ids]
        return ids

    def encode_batch(self, texts: list[str], *, add_bos: bool) -> list[list[int]]:
        """:meth:`encode` over a list (uses the backend's parallel batch encoder)."""
        encs = self.backend.encode_batch(list(texts), add_special_tokens=False)
        pre = [self.bos_id] if add_bos and self.bos_id is not None else []
        return [pre + e.ids for e in encs]

    def decode(self, ids, *, skip_special_tokens: bool = True) -> str:
        """Text of ``ids`` (special tokens dropped by default)."""
        return self.backend.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def token_id(self, token: str) -> int | None:
        """Id of a token string, or None if absent."""
        return self.backend.token_to_id(token)

    def apply_chat_template(self, messages: list[dict], *, add_generation_prompt=True) -> str:
        """Renders chat ``messages`` with the checkpoint's template (needs jinja2)."""
        if not self.chat_template:
            raise ValueError("this tokenizer has no chat template; build the prompt text yourself")
        # The settings Hugging Face renders chat templates with.
        env = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
        )
        env.globals["raise_exception"] = _raise
        bos = self.backend.id_to_token(self.bos_id) if self.bos_id is not None else ""
        eos = self.backend.id_to_token(min(self.eos_ids)) if self.eos_ids else ""
        return env.from_string(self.chat_template).render(
            messages=messages,
            add_generation_prompt=add_generation_prompt,
            bos_token=bos,
            eos_token=eos,
        )

    # -- persistence --------------------------------------------------------------

    def save(self, directory: str | os.PathLike) -> None:
        """Writes ``tokenizer.json`` and ``wasp_tokenizer.json`` (special ids) to ``directory``."""
        d = pathlib.Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        sweep_stale(d)
        tmp = d / f"tokenizer.json.tmp{os.getpid()}"
        self.backend.save(str(tmp))
        os.replace(tmp, d / "tokenizer.json")
        meta = dict(
            bos_id=self.bos_id,
            eos_ids=sorted(self.eos_ids),
            pad_id=self.pad_id,
            chat_template=self.chat_template,
            add_bos_default=self.add_bos_default,
        )
        (d / "wasp_tokenizer.json").write_text(json.dumps(meta))

    @classmethod
    def load(cls, directory: str | os.PathLike) -> Tokenizer:
        """Inverse of :meth:`save` (fast: no transformers import)."""
        d = pathlib.Path(directory)
        meta = json.loads((d / "wasp_tokenizer.json").read_text())
        backend = Backend.from_file(str(d / "tokenizer.json"))
        backend.no_padding()
        backend.no_truncation()
        return cls(
            backend=backend,
            bos_id=meta["bos_id"],
            eos_ids=frozenset(meta["eos_ids"]),
            pad_id=meta["pad_id"],
            chat_template=meta["chat_template"],
            add_bos_default=meta["add_bos_default"],
        )

    @classmethod
    def from_hf(cls, hf_tok, *, chat_template: str | None = None) -> Tokenizer:
        """Wraps a transformers fast tokenizer (its backend, special ids and template)."""
        backend = hf_tok.backend_tokenizer
        backend.no_padding()
        backend.no_truncation()
        eos = set()
        if hf_tok.eos_token_id is not None:
            eos.add(int(hf_tok.eos_token_id))
        specials = {
            i for i, t in backend.get_added_tokens_decoder().items() if getattr(t, "special", False)
        }
        for t in _END_TOKENS:
            i = backend.token_to_id(t)
            if i is not None and i in specials:
                eos.add(i)
        pad = hf_tok.pad_token_id
        if pad is None:
            pad = min(eos) if eos else 0
        bos = hf_tok.bos_token_id
        probe = hf_tok("a")["input_ids"]
        add_bos = bos is not None and len(probe) > 0 and probe[0] == bos
        template = chat_template or getattr(hf_tok, "chat_template", None)
        return cls(
            backend=backend,
            bos_id=None if bos is None else int(bos),
            eos_ids=frozenset(eos),
            pad_id=int(pad),
            chat_template=template if isinstance(template, str) else None,
            add_bos_default=add_bos,
        )


def _raise(msg):
    raise ValueError(msg)


def from_hf_folder(folder: str | os.PathLike) -> Tokenizer:
    """Tokenizer of a Hugging Face model folder (via transformers.AutoTokenizer).

    A folder whose ``tokenizer_config.json`` names a class the installed transformers lacks
    (transformers 5 writes ``"TokenizersBackend"``) is read from its ``tokenizer.json``
    with the special tokens and chat template of its config (:func:`hf_tokenizer`).
    """
    folder = pathlib.Path(folder)
    conf = _read_json(folder / "tokenizer_config.json")
    template = conf.get("chat_template")
    jinja = folder / "chat_template.jinja"
    if not isinstance(template, str) and jinja.is_file():
        template = jinja.read_text()
    return Tokenizer.from_hf(
        hf_tokenizer(folder), chat_template=template if isinstance(template, str) else None
    )


def hf_tokenizer(folder: str | os.PathLike):
    """A folder's transformers tokenizer: ``AutoTokenizer``, or, where its
    ``tokenizer_config.json`` names a class the installed transformers lacks (transformers 5
    writes ``"TokenizersBackend"``), a fast tokenizer over its ``tokenizer.json`` with the
    special tokens and model input names of that config."""
    # transformers takes about a second to import; loads from the cache never need it.
    import transformers

    folder = pathlib.Path(folder)
    conf = _read_json(folder / "tokenizer_config.json")
    cls = conf.get("tokenizer_class")
    if not (cls and not hasattr(transformers, cls) and (folder / "tokenizer.json").is_file()):
        return transformers.AutoTokenizer.from_pretrained(str(folder))

    def content(v):
        return v.get("content") if isinstance(v, dict) else v

    names = ("bos_token", "eos_token", "unk_token", "pad_token")
    kw = {k: content(conf[k]) for k in names if conf.get(k) is not None}
    if isinstance(conf.get("model_input_names"), list):
        kw["model_input_names"] = conf["model_input_names"]
    if isinstance(conf.get("model_max_length"), int):
        kw["model_max_length"] = conf["model_max_length"]
    return transformers.PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"), **kw)


def _read_json(path: pathlib.Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def from_gguf(path: str | os.PathLike) -> Tokenizer:
    """Rebuilds the tokenizer embedded in a GGUF file (slow: cache the result with save()).

    SentencePiece-BPE vocabularies of the Gemma family are rebuilt here (see
    :func:`_spm_bpe_from_gguf`); everything else goes through transformers 4.57.6, whose
    GGUF conversion is gated on torch being importable although it needs none, so the gate
    is lifted for this call. Special ids come from the GGUF metadata.
    """
    path = pathlib.Path(path)
    reader = GGUFReader(str(path))

    def field(key, default=None):
        f = reader.fields.get(key)
        return default if f is None else f.contents()

    arch = field("general.architecture", "")
    if field("tokenizer.ggml.model") == "llama" and arch.startswith("gemma"):
        backend = _spm_bpe_from_gguf(reader)
        template = field("tokenizer.chat_template")
    else:
        # transformers takes about a second to import; only this conversion needs it.
        import transformers.modeling_gguf_pytorch_utils as gguf_utils
        from transformers import AutoTokenizer

        saved = gguf_utils.is_torch_available
        gguf_utils.is_torch_available = lambda: True
        try:
            hf_tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        finally:
            gguf_utils.is_torch_available = saved
        backend = hf_tok.backend_tokenizer
        template = field("tokenizer.chat_template") or getattr(hf_tok, "chat_template", None)
    backend.no_padding()
    backend.no_truncation()
    bos = field("tokenizer.ggml.bos_token_id")
    eos = set()
    if field("tokenizer.ggml.eos_token_id") is not None:
        eos.add(int(field("tokenizer.ggml.eos_token_id")))
    types = field("tokenizer.ggml.token_type")
    for t in _END_TOKENS:
        i = backend.token_to_id(t)
        # Only control tokens: Gemma's vocabulary also has "</s>" as an ordinary HTML tag.
        if i is not None and (types is None or types[i] == 3):
            eos.add(i)
    pad = field("tokenizer.ggml.padding_token_id")
    if pad is None:
        pad = min(eos) if eos else 0
    return Tokenizer(
        backend=backend,
        bos_id=None if bos is None else int(bos),
        eos_ids=frozenset(eos),
        pad_id=int(pad),
        chat_template=template if isinstance(template, str) else None,
        add_bos_default=bool(field("tokenizer.ggml.add_bos_token", False)),
    )


def _spm_bpe_from_gguf(reader):
    """A ``tokenizers`` BPE equivalent of a SentencePiece-BPE vocabulary stored in GGUF.

    transformers 4.57.6 turns Gemma GGUF vocabularies into a Unigram model, but Gemma's
    scores are negative merge ranks, not log-probabilities, so Unigram splits words into
    many rare pieces ("The movie was" -> The/▁m/ov/ie/▁w/as). SentencePiece BPE merges the
    adjacent pair whose merged piece has the highest score; ordering the merges by that
    score reproduces it ("The", "▁movie", "▁was"). Checked against the ``sentencepiece``
    library's own BPE encoder built from the same GGUF pieces: identical ids on 400 IMDb
    reviews and edge cases (whitespace runs, tabs, non-Latin text, emoji); the one
    intended difference is that control tokens written in the text ("<start_of_turn>")
    are parsed as such, as Hugging Face tokenizers do.
    """
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    scores = reader.fields["tokenizer.ggml.scores"].contents()
    types = reader.fields["tokenizer.ggml.token_type"].contents()
    # Whitespace-only pieces are stored with real spaces; the model sees "▁".
    tokens = ["▁" * len(t) if t and t.strip(" ") == "" else t for t in tokens]
    vocab = {t: i for i, t in enumerate(tokens)}
    normal = {t for t, ty in zip(tokens, types) if ty == 1}
    ranked = sorted((i for i, ty in enumerate(types) if ty == 1), key=lambda i: (-scores[i], i))
    merges = []
    for i in ranked:
        piece = tokens[i]
        local = [
            (piece[:k], piece[k:])
            for k in range(1, len(piece))
            if piece[:k] in normal and piece[k:] in normal
        ]
        local.sort(key=lambda lr: (vocab[lr[0]], vocab[lr[1]]))
        merges.extend(local)
    unk = tokens[int(reader.fields["tokenizer.ggml.unknown_token_id"].contents())]
    backend = Backend(BPE(vocab, merges, unk_token=unk, fuse_unk=True, byte_fallback=True))
    backend.normalizer = normalizers.Replace(" ", "▁")
    backend.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    )
    special = [
        AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types) if ty == 3
    ]
    # User-defined pieces (HTML tags, whitespace runs) match in the normalised text, as in
    # SentencePiece, so that "  " is found as "▁▁".
    user = [
        AddedToken(t, special=False, normalized=True) for t, ty in zip(tokens, types) if ty == 4
    ]
    backend.add_special_tokens(special)
    backend.add_tokens(user)
    return backend


def byte_level(specials: tuple[str, ...] = ("<bos>", "<eos>", "<pad>", "<sep>")) -> Tokenizer:
    """A hermetic byte-level tokenizer (256 byte tokens + ``specials``), built in code.

    Ids 0..255 are the bytes; the specials follow (bos, eos, pad, ...). Used by the tiny
    random models so tests need no files.
    """
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    byte_to_char = _bytes_to_unicode()
    vocab = {byte_to_char[b]: b for b in range(256)}
    assert set(vocab) == set(alphabet)
    backend = Backend(BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(list(specials))
    ids = {s: backend.token_to_id(s) for s in specials}
    return Tokenizer(
        backend=backend,
        bos_id=ids.get("<bos>"),
        eos_ids=frozenset({ids["<eos>"]}),
        pad_id=ids["<pad>"],
        chat_template=None,
        add_bos_default=True,
    )


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (the ByteLevel alphabet)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    out, extra = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return out
