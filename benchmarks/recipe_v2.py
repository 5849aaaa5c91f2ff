"""Choose the Blox-mini v2 recipe by measurement (issue 17): cost ratios, discrimination, build arithmetic.

For each candidate recipe (batch size x epochs at stem width 4 on digits), a seeded sample of the v2
sub-space (K = 9 blocks per stage) is trained normally for two seeds, and a few models are fine-tuned with
knowledge distillation (the fine-tuning loop of the blockwise builder: ``fit`` with the KD criterion and a
teacher forward per batch) for the short and the full length. Reported per recipe:

- normal training time (median over the sample, recorded ``train_time_s``, one torch thread);
- short (1 epoch) and full fine-tune time as a fraction of a normal training (goal: short <= 10 %, full ~ 1);
- test-accuracy range over the sample and seed-vs-seed Spearman of test accuracy (goals: >= 30 points, >= 0.6);
- the v2 build's arithmetic: 729 models x 3 seeds normal, 729 x {M1, M5} x {short, full} fine-tunes, the
  25-entry teacher matrix and distillation, in core-hours and in hours on 2 cores at a measured pool speed-up.

``python benchmarks/recipe_v2.py --sample 16 --recipes b128e8,b64e10,b32e10`` (about 20-40 min on one core).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine  # noqa: E402


def parse_recipe(tag: str):  # noqa: ANN201 - a Recipe
    """``b64e10`` -> digits_mini with batch 64 and 10 epochs; a trailing ``s`` (``b128e12s``) anneals the cosine per
    batch (``cosine_step``); ``v2`` is ``digits_mini_v2``. The short fine-tune is 1 epoch."""
    from blox_env.training.recipes import DIGITS_MINI, DIGITS_MINI_V2

    if tag == "v2":
        return DIGITS_MINI_V2
    step = tag.endswith("s")
    b, e = tag[1:].rstrip("s").split("e")
    return DIGITS_MINI.with_(name=f"digits_mini_{tag}", batch_size=int(b), epochs=int(e),
                             schedule="cosine_step" if step else "cosine")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sample", type=int, default=16, help="models of the v2 space trained per recipe")
    ap.add_argument("--recipes", default="b128e8,b64e10,b32e10")
    ap.add_argument("--ft-models", type=int, default=3, help="models fine-tuned (short and full) per recipe")
    ap.add_argument("--blocks", default="1,8,9,10,11,23,24,27,33", help="the v2 blocks per stage")
    ap.add_argument("--pool-speedup", type=float, default=1.8, help="2-process pool speed-up over one process")
    ap.add_argument("--out", default=None, help="write the raw results (JSON) here")
    args = ap.parse_args()

    import torch
    from scipy.stats import spearmanr

    from blox_env.build.benchmark import cached_data
    from blox_env.space import Arch, SubSpace
    from blox_env.training.finetune import kd_loss
    from blox_env.training.train import fit, init_model, model_config_for, train_model

    torch.set_num_threads(1)
    blocks = tuple(int(b) for b in args.blocks.split(","))
    space = SubSpace((blocks, blocks, blocks))
    rng = np.random.default_rng(0)
    sample = [Arch.from_index(int(i)) for i in rng.choice(space.indices(), size=args.sample, replace=False)]
    data = cached_data("digits", (("seed", 0),))
    print(f"{machine()}; v2 blocks {blocks} ({space.size} models); sample of {len(sample)}", flush=True)
    out: dict[str, dict] = {}
    for tag in args.recipes.split(","):
        recipe = parse_recipe(tag)
        short = 1
        accs = {0: [], 1: []}
        times = []
        t0 = time.perf_counter()
        for arch in sample:
            for seed in (0, 1):
                r = train_model(arch, data, recipe=recipe, seed=seed, device="cpu")
                accs[seed].append(r.test_top1)
                times.append(r.train_time_s)
        # fine-tuning cost: the builder's KD loop, teacher = the sample's best model (its trained weights)
        best = int(np.argmax(accs[0]))
        config = model_config_for(data, recipe)
        teacher = init_model(sample[best], config, seed=0).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)

        def criterion(logits, y, x, teacher=teacher):  # noqa: ANN001, ANN202
            with torch.no_grad():
                t_logits = teacher(x)
            return kd_loss(logits, t_logits, y)

        ft = {"short": [], "full": []}
        for arch in sample[: args.ft_models]:
            for name, epochs in (("short", short), ("full", recipe.epochs)):
                student = init_model(arch, config, seed=1)
                res = fit(student, data, recipe=recipe.with_(epochs=epochs), seed=0, device=torch.device("cpu"),
                          criterion=criterion, arch_index=arch.index)
                ft[name].append(res.train_time_s)
        normal_med = statistics.median(times)
        ft_short = statistics.median(ft["short"]) / statistics.median(times[: 2 * args.ft_models])
        ft_full = statistics.median(ft["full"]) / statistics.median(times[: 2 * args.ft_models])
        rho = float(spearmanr(accs[0], accs[1]).statistic)
        mean_acc = (np.array(accs[0]) + np.array(accs[1])) / 2
        # build arithmetic (normal-training equivalents): 3 seeds normal; M1, M5 x (short + full) fine-tunes of all;
        # 25 matrix fine-tunes (full); 5 teacher retrainings; distillation ~ 2 lengths x 2 teachers x 27 blocks
        # at 10 and 2 epochs plus 3 teachers x 3 blocks (about 1.5 normal trainings per 10-epoch teacher pass)
        n = space.size
        equiv = 3 * n + 2 * n * (ft_short + ft_full) + 25 * ft_full + 5 + 12
        core_h = equiv * normal_med / 3600
        out[tag] = {"recipe": recipe.to_dict(), "short_ft_epochs": short, "normal_median_s": normal_med,
                    "ft_short_ratio": ft_short, "ft_full_ratio": ft_full, "test_range": float(np.ptp(mean_acc)),
                    "test_min": float(mean_acc.min()), "test_max": float(mean_acc.max()), "seed_spearman": rho,
                    "build_core_hours": core_h, "build_hours_2cores": core_h / args.pool_speedup,
                    "measured_s": time.perf_counter() - t0, "accs": accs, "times": times}
        print(f"{tag}: normal {normal_med:.2f} s (median), short FT ({short} ep) {ft_short:.1%}, full FT "
              f"{ft_full:.2f}x; test {mean_acc.min():.1f}-{mean_acc.max():.1f} (range {np.ptp(mean_acc):.1f}); "
              f"seed Spearman {rho:.2f}; v2 build ~{core_h:.1f} core-h = {core_h / args.pool_speedup:.1f} h on 2 "
              f"cores at {args.pool_speedup}x", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
