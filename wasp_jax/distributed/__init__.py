"""Multi-process runs on JAX's distributed runtime (see docs/distributed.md).

`runtime` joins a job (flags, environment or cluster detection) and says which process
writes; `collect` holds the host-level collectives the pipeline uses to split work over
processes and to give every process the same population.
"""

from wasp_jax.distributed.collect import (
    DivergenceError,
    PeerFailure,
    allgather_arrays,
    allgather_bytes,
    allgather_cells,
    barrier,
    broadcast_bytes,
    check_same,
    share,
)
from wasp_jax.distributed.runtime import (
    JobSpec,
    free_port,
    initialize,
    is_multi,
    is_writer,
    job_spec,
    process_count,
    process_index,
)

__all__ = [
    "DivergenceError",
    "JobSpec",
    "PeerFailure",
    "allgather_arrays",
    "allgather_bytes",
    "allgather_cells",
    "barrier",
    "broadcast_bytes",
    "check_same",
    "free_port",
    "initialize",
    "is_multi",
    "is_writer",
    "job_spec",
    "process_count",
    "process_index",
    "share",
]
