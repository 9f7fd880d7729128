"""Where the DP noise comes from: a run's secret, expanded into uniform words per release.

A run draws a 256-bit secret from the operating system's CSPRNG (``secrets``) the first time
it starts and keeps it only in its private folder (``wasp_jax.pipeline.run.secret``). Every
noise draw of the run is read from SHAKE-256 keyed by that secret and by the release's label
(round, kind, histogram, party), so the words of two releases are independent, a resume that
reaches the same release reads the same words, and nobody without the secret can regenerate
them: the seed, the config and every released file are useless for that. All 256 bits of the
secret key the expansion (a JAX threefry key would hold only 64).

``NoiseSource.seeded(seed)`` keys the same expansion with the public seed instead. Its noise
can be regenerated and subtracted by anyone who knows the seed, so it is NOT differentially
private; it exists for tests and byte-for-byte replication only, and the ledger, report and
datasheet of a run that uses it say so.

Example::

    src = NoiseSource.fresh()                              # a new secret
    words = src.child("r1", "nearest").words((n, ))          # (n, 4) uint32
    noise = src.child("r1", "nearest").lattice_noise((n,), scale=452.0)   # (n,) int32
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import secrets

import jax
import numpy as np

from wasp_jax.kernels.noise import WORDS, discrete_gaussian, threshold_table

#: Bytes of secret a run draws (256 bits).
SECRET_BYTES = 32
#: Fewest secret bytes a secure source accepts (128 bits).
MIN_SECRET_BYTES = 16
_DOMAIN = b"wasp-jax noise words v1"

#: What a run that uses seeded noise is marked with (ledger, report, datasheet).
SEEDED_NOTE = "NOT DP: noise reproducible from the seed"


def _encode(parts: tuple[str, ...]) -> bytes:
    """Injective encoding of a label path (length-prefixed UTF-8 parts)."""
    out = bytearray()
    for p in parts:
        b = str(p).encode("utf-8")
        out += len(b).to_bytes(4, "big") + b
    return bytes(out)


@functools.lru_cache(maxsize=1)
def _sampler():
    return jax.jit(discrete_gaussian)


@dataclasses.dataclass(frozen=True, repr=False)
class NoiseSource:
    """A keyed stream of uniform words, one independent stream per label path.

    Attributes:
      private: True when the key is a secret (DP); False for ``seeded`` (tests only).
      label: the label path of this node (``child`` extends it).
    """

    _key: bytes
    private: bool
    label: tuple[str, ...] = ()

    def __repr__(self) -> str:  # never shows the key
        kind = "secure" if self.private else "seeded"
        return f"NoiseSource({kind}, label={'/'.join(self.label)!r})"

    @classmethod
    def secure(cls, secret: bytes) -> NoiseSource:
        """A DP source keyed by ``secret`` (>= 16 bytes drawn from a CSPRNG)."""
        if not isinstance(secret, bytes | bytearray) or len(secret) < MIN_SECRET_BYTES:
            raise ValueError(
                f"the noise secret must be at least {MIN_SECRET_BYTES} bytes from a CSPRNG"
            )
        return cls(b"secret:" + bytes(secret), True)

    @classmethod
    def fresh(cls) -> NoiseSource:
        """A DP source with a new secret from the operating system's CSPRNG."""
        return cls.secure(secrets.token_bytes(SECRET_BYTES))

    @classmethod
    def seeded(cls, seed: int) -> NoiseSource:
        """NOT DP: a source anyone who knows ``seed`` can regenerate (tests, replication)."""
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        return cls(b"seed:" + str(int(seed)).encode(), False)

    def child(self, *labels) -> NoiseSource:
        """The source of a sub-release (e.g. ``child("r3", "nearest")``)."""
        return dataclasses.replace(self, label=self.label + tuple(str(x) for x in labels))

    def words(self, shape: tuple[int, ...]) -> np.ndarray:
        """(*shape, 4) uint32 uniform words of this label path (the same on every call)."""
        shape = tuple(int(d) for d in shape)
        count = int(np.prod(shape, dtype=np.int64)) * WORDS
        h = hashlib.shake_256(_DOMAIN)
        h.update(len(self._key).to_bytes(4, "big") + self._key)
        h.update(_encode(self.label))
        raw = h.digest(4 * count) if count else b""
        return np.frombuffer(raw, dtype=">u4").astype(np.uint32).reshape(*shape, WORDS)

    def lattice_noise(self, shape: tuple[int, ...], *, scale: float, parties: int = 1):
        """(*shape) int32 discrete Gaussian noise in lattice units, summed over parties.

        Each of the ``parties`` draws N_Z(0, scale^2) from its own label (``party{p}``) and
        the draws are summed (the aggregate of ``parties`` independent noisy shares).
        """
        shape = tuple(int(d) for d in shape)
        table = threshold_table(float(scale))
        total = np.zeros(shape, np.int32)
        if int(np.prod(shape, dtype=np.int64)) == 0:
            return total
        for p in range(int(parties)):
            words = self.child(f"party{p}").words(shape)
            total += np.asarray(_sampler()(words, table), np.int32)
        return total
