"""Accounting of DP-SGD (Poisson-sampled Gaussian steps) with dp_accounting's RDP accountant.

A step samples each private record with probability ``sampling_rate``, sums the per-record
gradients clipped to L2 norm ``clip`` (sensitivity ``clip`` under add/remove) and adds
N(0, (z clip)^2). ``steps`` such steps compose as ``PoissonSampledDpEvent`` self-composed.

Example::

    z = dpsgd_noise_multiplier(4.0, 1e-5, sampling_rate=0.5, steps=50)
    dpsgd_epsilon(z, 1e-5, sampling_rate=0.5, steps=50)     # <= 4.0
"""

from __future__ import annotations

import contextlib
import logging
import math

import dp_accounting
from dp_accounting.rdp import rdp_privacy_accountant

from wasp_jax.privacy.accounting import _check_delta, _check_epsilon


def _event(z: float, sampling_rate: float, steps: int) -> dp_accounting.DpEvent:
    step = dp_accounting.PoissonSampledDpEvent(sampling_rate, dp_accounting.GaussianDpEvent(z))
    return dp_accounting.SelfComposedDpEvent(step, steps)


@contextlib.contextmanager
def _quiet_absl():
    """dp_accounting logs one warning per skipped fractional RDP order; keep the console clean."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _check_rate_steps(sampling_rate, steps) -> None:
    if not 0 < sampling_rate <= 1:
        raise ValueError(f"sampling_rate must be in (0, 1], got {sampling_rate!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")


def dpsgd_epsilon(z: float, delta: float, *, sampling_rate: float, steps: int) -> float:
    """Epsilon at ``delta`` of ``steps`` Poisson-sampled Gaussian steps of noise multiplier z."""
    _check_rate_steps(sampling_rate, steps)
    acc = rdp_privacy_accountant.RdpAccountant()
    with _quiet_absl():
        acc = acc.compose(_event(z, sampling_rate, steps))
        return float(acc.get_epsilon(_check_delta(delta)))


def dpsgd_noise_multiplier(
    epsilon: float, delta: float, *, sampling_rate: float, steps: int
) -> float:
    """The smallest noise multiplier (to 0.1%) whose DP-SGD run is (epsilon, delta)-DP."""
    epsilon, delta = _check_epsilon(epsilon), _check_delta(delta)
    _check_rate_steps(sampling_rate, steps)
    if math.isinf(epsilon):
        return 0.0
    with _quiet_absl():
        z = _calibrate(epsilon, delta, sampling_rate, steps)
    while dpsgd_epsilon(z, delta, sampling_rate=sampling_rate, steps=steps) > epsilon:
        z *= 1.001
    return float(z)


def _calibrate(epsilon, delta, sampling_rate, steps) -> float:
    return dp_accounting.calibrate_dp_mechanism(
        rdp_privacy_accountant.RdpAccountant,
        lambda z: _event(z, sampling_rate, steps),
        epsilon,
        delta,
        bracket_interval=dp_accounting.ExplicitBracketInterval(0.05, 500.0),
        tol=1e-3,
    )
