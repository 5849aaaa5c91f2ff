"""SMAC3 on the BLOX space: multi-fidelity (epochs as the budget) Bayesian optimisation with Hyperband.

    python examples/smac_blox.py                          # default store: imported BLOX, else Blox-mini
    python examples/smac_blox.py --store PATH --trials 200 --seed 1

SMAC minimises a float: the target returns ``objective()``'s fitness (validation top-1 negated) at the
budget SMAC asks for (rounded to the nearest epoch). Needs ``pip install "blox-env[smac]"``.
"""

from __future__ import annotations

import argparse
import tempfile

from smac import MultiFidelityFacade, Scenario

from blox_env import open_store
from blox_env.integrations import configuration_space, objective


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=None, help="store path/URL (default: imported BLOX, else Blox-mini)")
    parser.add_argument("--trials", type=int, default=60, help="SMAC trials (evaluations)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="SMAC's output folder (default: a temporary one)")
    args = parser.parse_args(argv)

    store = open_store(args.store)
    space = configuration_space(benchmark=store)

    def target(config, seed: int = 0, budget: float = 1.0) -> float:
        return objective(config, budget, benchmark=store)["fitness"]

    scenario = Scenario(space, deterministic=True, n_trials=args.trials, min_budget=1,
                        max_budget=store.run_info().epochs, seed=args.seed,
                        output_directory=args.out or tempfile.mkdtemp(prefix="smac-blox-"))
    smac = MultiFidelityFacade(scenario, target, overwrite=True, logging_level=40,
                               initial_design=MultiFidelityFacade.get_initial_design(scenario, n_configs=5))
    incumbent = smac.optimize()
    config = {k: int(v) for k, v in dict(incumbent).items()}
    trials = [(key.budget, value.cost) for key, value in smac.runhistory.items()
              if smac.runhistory.get_config(key.config_id) == incumbent]
    budget, cost = max(trials)  # the incumbent's highest budget: what SMAC judges it by
    epochs = int(round(budget))
    print(f"benchmark: {store.name}; SMAC ran {len(smac.runhistory)} trials")
    print(f"incumbent: {config} at {epochs} epochs: val_top1 {-cost:.3f}")
    return {"config": config, "cost": float(cost), "budget": float(budget), "epochs": epochs,
            "trials": len(smac.runhistory)}


if __name__ == "__main__":
    main()
