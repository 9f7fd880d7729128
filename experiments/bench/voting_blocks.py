"""What the voting benchmarks share: the block size of the streamed (blocked) vote."""


def auto_block(n_priv: int, n_syn: int) -> int | None:
    """Synthetic rows per block, or None (one unblocked product) when it fits.

    Streams when the (n_priv, n_syn) float32 similarity matrix would exceed ~64 MiB; a block
    then holds about 16 MiB of similarities, at least 1024 rows, a multiple of 16.
    """
    if n_priv * n_syn * 4 <= 64 * 2**20:
        return None
    return max(1024, (16 * 2**20 // (4 * n_priv)) // 16 * 16)
