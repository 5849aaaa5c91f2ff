"""Bridges to other optimisation libraries (the ``integrations`` extra: ConfigSpace, Optuna).

- :mod:`.configspace`: the space as a ConfigSpace ``ConfigurationSpace`` (:func:`configuration_space`) and an
  objective taking a configuration and a fidelity (:func:`objective`, :class:`BloxObjective`), for SMAC, DEHB
  and other ConfigSpace-based optimizers;
- :mod:`.optuna_study`: Optuna samplers (TPE, NSGA-II, random, or any built-in sampler object) driving
  ``BloxOneShot-v0`` (:func:`optuna_search`);
- :mod:`.syne_tune`: a store as a Syne Tune tabular blackbox, its export to Syne Tune's on-disk format, and
  Syne Tune's simulator backend over it (the ``syne-tune`` extra);
- :mod:`.ray_tune`: live (training) or tabular search on Ray Tune with ASHA, every trial recorded by the driver in a
  trace store (the ``ray-tune`` extra; :func:`~blox_env.integrations.ray_tune.tune_search`);
- DEHB and SMAC run on :func:`configuration_space` / :func:`objective` directly (the ``dehb`` and ``smac``
  extras; see ``examples/dehb_blox.py`` and ``examples/smac_blox.py``).

Importing this package imports none of these libraries: each is imported when first used, and a missing one
raises :class:`~blox_env.errors.MissingDependencyError` naming the ``pip install "blox-env[<extra>]"``.
"""

from __future__ import annotations

from blox_env.lazy import lazy_exports

#: Public name -> its defining module.
_EXPORTS = {
    "BloxObjective": "blox_env.integrations.configspace",
    "configuration_space": "blox_env.integrations.configspace",
    "objective": "blox_env.integrations.configspace",
    "OptunaSearchResult": "blox_env.integrations.optuna_study",
    "optuna_search": "blox_env.integrations.optuna_study",
    "TraceCallback": "blox_env.integrations.ray_tune",
    "TuneSearch": "blox_env.integrations.ray_tune",
    "tune_search": "blox_env.integrations.ray_tune",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
