"""Privacy: the sensitivity of the vote release, the noise calibration, the plan and the ledger.

Host-side NumPy and dp_accounting only; the noise itself is drawn in the vote stage
(`wasp_jax.pipeline.stages.vote`). See docs/method.md §6.

* `sensitivity`: the L2 sensitivity of a round's release (and the original's Delta);
* `accounting`: composition, sigma calibration and the release accountant;
* `plan`: `PrivacyPlan`, the one source of a run's sigma, sensitivity and epsilon;
* `ledger`: `RunLedger`, what a run has released (privacy.json).
"""

from wasp_jax.config import ADJACENCIES
from wasp_jax.privacy.accounting import (
    ACCOUNTANTS,
    Accountant,
    PrivacyBudgetExceededError,
    PrivacyLedger,
    Release,
    calibrate_sigma,
    epsilon_of,
)
from wasp_jax.privacy.ledger import RunLedger
from wasp_jax.privacy.plan import PrivacyPlan, ReleaseRequest, plan_releases
from wasp_jax.privacy.sensitivity import classic_delta, l2_sensitivity

__all__ = [
    "ADJACENCIES",
    "ACCOUNTANTS",
    "Accountant",
    "PrivacyBudgetExceededError",
    "PrivacyLedger",
    "PrivacyPlan",
    "Release",
    "RunLedger",
    "calibrate_sigma",
    "classic_delta",
    "epsilon_of",
    "l2_sensitivity",
    "plan_releases",
    "ReleaseRequest",
]
