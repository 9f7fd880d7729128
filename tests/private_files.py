"""Private files for tests: the first n records of the bundled demo file, written once per
test process by the project's own preparation step (`wasp_jax.pipeline.stages.prepare`)."""

import atexit
import functools
import pathlib
import shutil
import tempfile

from wasp_jax.data import bundled_path
from wasp_jax.pipeline.stages.prepare import prepare_private
from wasp_jax.tasks import load_task


@functools.cache
def _folder() -> pathlib.Path:
    folder = pathlib.Path(tempfile.mkdtemp(prefix="wasp-jax-test-private-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


@functools.cache
def first_private(n: int) -> str:
    """Path of a private file holding the first ``n`` records of the bundled IMDb file."""
    out = _folder() / f"imdb_first{n}.jsonl"
    prepare_private(bundled_path("imdb", "private.jsonl"), out, task=load_task("imdb"), num=n)
    return str(out)
