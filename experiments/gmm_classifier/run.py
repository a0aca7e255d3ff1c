"""Gaussian-mixture head vs linear head on MNIST (same CNN): accuracy, NLL, ECE, OOD AUROC.

    python experiments/gmm_classifier/run.py                          # the whole table
    python experiments/gmm_classifier/run.py --rows linear diag-1 diag-1-gen   # some rows
    python experiments/gmm_classifier/run.py --rows diag-1 --classes 0 1 2 3 4 5  # open set
    python experiments/gmm_classifier/run.py --rows full-1-gen --shift 2 --epochs 10  # augmented
    python experiments/gmm_classifier/run.py --reevaluate --rows full-1-gen --epochs 10  # variants
    python experiments/gmm_classifier/run.py --table                  # the table from results

Every row trains ``train.py``'s config (``data=mnist``, Adam lr 1e-3 with StepLR γ = 0.7 per
epoch, batch 128, ``--epochs`` epochs, seed ``--seed``) on the first ``--limit-train`` of the
50k training digits, keeps the final weights and evaluates on the first ``--limit-eval`` of the
10k test digits. A row ``<cov>-<G>`` trains on the labels alone ("plain"); ``<cov>-<G>-gen``
adds the generative term (``model.generative_weight``, ``--gen-weight``). Every trained model
is also given the post-hoc density (``model.posthoc=true``: each class's G-component mixture of
the row's covariance type fitted by EM to its training features after training; for the
linear head full covariance, G = 1, as in DDU), which needs no retraining, so each training
gives two table lines: the head's own score and the post-hoc one.

Out-of-distribution sets are made from the test digits themselves
(:meth:`MNISTDataModule.ood_sets`: uniform noise, shuffled pixels, inverted, rotated 90°) and,
with ``--classes``, the test digits of the other classes (``heldout``). The score is
``ood_score = −log p(z)`` (higher: more anomalous): of the head (a mixture head's
``logsumexp_c log π_c p(z | c)``, the linear head's energy ``logsumexp_c`` of its logits) or
of the post-hoc density. AUROC is for telling the OOD set from the test digits.
Each trained network also gets six post-hoc densities fitted afresh (``posthoc_variants``): of
the feature alone or with the convolutions' channel means (``conv_means``), G = 1, 4, 8 per
class, each with the validation digits' mean log-likelihood, and each combined with the
classifier's confidence (``+ confidence``, as ``model.net.combine_confidence``);
``--reevaluate`` recomputes them (or those ``--components`` and ``--means`` select, merged
into the saved ones) for saved rows whose checkpoint still exists, without retraining.
``--shift`` trains on digits shifted by up to that many pixels (``data.shift``; the script's
default is 0, ``data=mnist``'s 2).
Results are appended to ``results.json`` next to this file after every row.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import open_dict  # noqa: E402

from mixtures.data import MNISTDataModule  # noqa: E402
from mixtures.lit import ClassifierModule  # noqa: E402
from mixtures.metrics import auroc  # noqa: E402
from mixtures.models.class_density import ClassDensity  # noqa: E402
from mixtures.models.score_calibration import TailCalibration  # noqa: E402
from mixtures.train import train  # noqa: E402

ROWS = {
    "linear": ["model=cnn_linear", "covariance=full"],
    **{f"{cov}-{g}{gen}": ["model=gmm_classifier", f"covariance={cov}",
                           f"model.net.head.num_components={g}"]
       + [f"model.generative_weight={'GEN' if gen else 0}"]
       for gen in ("", "-gen") for cov in ("diag", "full") for g in (1, 2, 4)},
}
RESULTS = HERE / "results.json"


def config(row: str, args: argparse.Namespace, out: Path):
    GlobalHydra.instance().clear()
    overrides = [o.replace("GEN", str(args.gen_weight)) for o in ROWS[row]] + [
        "data=mnist", f"data.data_dir={args.data_dir}", "optimizer=adam", "model.lr=0.001",
        "+scheduler=step", f"trainer.max_epochs={args.epochs}",
        "trainer.enable_progress_bar=false", f"seed={args.seed}", f"hydra.run.dir={out}",
        f"paths.log_dir={out}", "model.posthoc=true", "model.ood=false",
        f"data.limit_train={args.limit_train}", f"data.limit_eval={args.limit_eval}",
        f"model.net.spectral_norm={args.spectral_norm or 'null'}", f"data.shift={args.shift}",
    ] + ([f"data.classes=[{','.join(map(str, args.classes))}]"] if args.classes else []) \
        + args.overrides
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
    return cfg


@torch.no_grad()
def source_scores(net, x: torch.Tensor, batch: int = 1000) -> dict[str, torch.Tensor]:
    """``ood_score`` ``[N]`` of the head, of the post-hoc density and (``combine_confidence``)
    of the density combined with the confidence."""
    net.eval()
    sources = [("head", "head"), ("posthoc", "density")]
    if getattr(net, "calibration", None) is not None and net.calibration.is_fitted:
        sources.append(("combined", "combined"))
    return {source: torch.cat([net.ood_score(x[i:i + batch], source=key)
                               for i in range(0, x.shape[0], batch)])
            for source, key in sources}


def ood_inputs(dm, seed: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The test digits and every OOD set made from them (``heldout`` with ``--classes``)."""
    x = dm.split("test")[0].cpu()
    gen = torch.Generator().manual_seed(seed)
    sets: dict[str, list[torch.Tensor]] = {}
    for i in range(0, x.shape[0], 1000):
        for name, v in dm.ood_sets(x[i:i + 1000], gen).items():
            sets.setdefault(name, []).append(v)
    ood = {name: torch.cat(v) for name, v in sets.items()}
    if "heldout" in dm.splits:
        ood["heldout"] = dm.split("heldout")[0].cpu()
    return x, ood


def evaluate_ood(module, dm, seed: int) -> dict[str, dict[str, float]]:
    """``{source: {auroc_<set>: value}}`` for both scores and every OOD set."""
    x, ood = ood_inputs(dm, seed)
    net = module.net.cpu()
    s_in = source_scores(net, x)
    out: dict[str, dict[str, float]] = {source: {} for source in s_in}
    for name, v in ood.items():
        s_out = source_scores(net, v)
        for source in out:
            out[source][f"auroc_{name}"] = auroc(s_out[source], s_in[source])
    return out


@torch.no_grad()
def posthoc_variants(module, dm, seed: int, components=(1, 4, 8),
                     means_options=(False, True)) -> dict[str, dict]:
    """Post-hoc densities fitted afresh to the trained network's training features: of the
    feature alone or with the convolutions' channel means (``conv_means``), G components per
    class, the row's covariance type and ``reg_covar``: AUROCs and the validation digits' mean
    log-likelihood (the criterion that needs no OOD data). Each is also combined with the
    classifier's confidence (``"<variant> + confidence"``: Fisher's rule on the two scores' tail
    probabilities among the validation digits, as ``model.net.combine_confidence``)."""
    net = module.net.cpu().eval()
    x_in, ood = ood_inputs(dm, seed)
    (x_tr, y_tr), (x_val, _) = dm.split("train"), dm.split("val")

    def confidence(x):
        return torch.cat([net.confidence_score(x[i:i + 1000])
                          for i in range(0, x.shape[0], 1000)])

    c_val, c_in = confidence(x_val.cpu()), confidence(x_in)
    c_ood = {name: confidence(v) for name, v in ood.items()}
    keep, out = net.conv_means, {}
    for means in means_options:
        net.conv_means = means

        def feats(x):
            return torch.cat([net.density_features(x[i:i + 1000])
                              for i in range(0, x.shape[0], 1000)])

        z_tr, z_val, z_in = feats(x_tr.cpu()), feats(x_val.cpu()), feats(x_in)
        z_ood = {name: feats(v) for name, v in ood.items()}
        for g in components:
            dens = ClassDensity(net.density.num_classes, z_tr.shape[1], g, net.density.cov,
                                reg_covar=net.density.reg_covar, seed=seed)
            dens.fit(z_tr, y_tr.cpu())
            s_in = -dens.log_prob(z_in)
            name = f"{'feature+conv means' if means else 'feature'}, G={g}"
            val_ll = dens.log_prob(z_val)
            out[name] = {
                "val_ll": float(val_ll.mean()),
                **{f"auroc_{n}": auroc(-dens.log_prob(z), s_in) for n, z in z_ood.items()}}
            cal = TailCalibration(2)
            cal.fit(torch.stack([-val_ll, c_val], 1))
            comb_in = cal.combined(torch.stack([s_in, c_in], 1))
            out[f"{name} + confidence"] = {"val_ll": out[name]["val_ll"], **{
                f"auroc_{n}": auroc(cal.combined(torch.stack([-dens.log_prob(z), c_ood[n]], 1)),
                                    comb_in) for n, z in z_ood.items()}}
    net.conv_means = keep
    return out


def run_row(row: str, args: argparse.Namespace) -> dict:
    tag = row + (f"-lam{args.gen_weight:g}" if row.endswith("-gen") and args.gen_weight != 0.01
                 else "") + (f"-sn{args.spectral_norm:g}" if args.spectral_norm else "") \
        + (f"-shift{args.shift}" if args.shift else "") + ("-open" if args.classes else "")
    out = Path(tempfile.mkdtemp(prefix=f"gmmcls_{tag}_"))
    cfg = config(row, args, out)
    start = time.perf_counter()
    metrics, objects = train(cfg)
    seconds = time.perf_counter() - start
    module, dm = objects["model"], objects["datamodule"]
    result = {"row": tag, "epochs": args.epochs, "seed": args.seed,
              "limit_train": args.limit_train, "limit_eval": args.limit_eval,
              "gen_weight": args.gen_weight if row.endswith("-gen") else 0.0,
              "classes": args.classes, "spectral_norm": args.spectral_norm, "shift": args.shift,
              "seconds": round(seconds, 1),
              "test/acc": metrics["test/acc"], "test/nll": metrics["test/nll"],
              "test/ece": metrics["test/ece"], "val/acc": metrics["val/acc"],
              **evaluate_ood(module, dm, args.seed), "log_dir": str(out)}
    usage = getattr(module, "component_usage", None)
    if usage is not None:
        result["usage_min"] = float(usage.amin() * usage.shape[1])
        result["usage"] = usage.tolist()
        result["mixing_weights"] = module.net.head.log_mixing_weights.exp().tolist()
    result["posthoc_weights"] = module.net.density.log_weights.exp().tolist()
    result["posthoc_variants"] = posthoc_variants(module, dm, args.seed,
                                                  components=args.components,
                                                  means_options=[bool(m) for m in args.means])
    return result


def reevaluate(result: dict, args: argparse.Namespace) -> dict:
    """Recompute the post-hoc variants of a row from its saved last checkpoint (no retraining:
    they only read the trained network)."""
    ckpt = Path(result["log_dir"]) / "checkpoints" / "last.ckpt"
    module = ClassifierModule.load_from_checkpoint(ckpt, map_location="cpu")
    dm = MNISTDataModule(data_dir=args.data_dir, limit_train=result["limit_train"],
                         limit_eval=result["limit_eval"], classes=result.get("classes"))
    dm.setup("fit")
    variants = posthoc_variants(module, dm, result["seed"], components=args.components,
                                means_options=[bool(m) for m in args.means])
    return {**result, "posthoc_variants": {**result.get("posthoc_variants", {}), **variants}}


SETS = ("noise", "shuffled", "inverted", "rotated", "heldout")


def table(results: list[dict]) -> str:
    lines = ["| head | cov | G | training | OOD score | test acc (%) | NLL | ECE (%) | "
             + " | ".join(f"AUROC {s}" for s in SETS) + " | train digits × epochs | time (s) |",
             "|" + "---|" * (10 + len(SETS))]
    for r in results:
        name = r["row"].removesuffix("-open").split("-sn")[0].split("-shift")[0]
        head, cov, g = ("linear", "full*", "1*") if name.startswith("linear") else \
            ("GMM", *name.split("-")[:2])
        training = f"gen λ={r['gen_weight']:g}" if r["gen_weight"] else "labels"
        if r.get("spectral_norm"):
            training += f", SN c={r['spectral_norm']:g}"
        if r.get("shift"):
            training += f", shifts ±{r['shift']}"
        if r.get("classes"):
            training += " (0–5)"
        if r.get("seed", 0) != 0:
            training += f", seed {r['seed']}"
        for source in ("head", "posthoc", "combined"):
            if source not in r:
                continue
            label = ("energy" if head == "linear" else "head log p(z)") if source == "head" \
                else "post-hoc EM" if source == "posthoc" else "post-hoc EM + confidence"
            aurocs = " | ".join(f"{r[source][f'auroc_{s}']:.4f}" if f"auroc_{s}" in r[source]
                                else "—" for s in SETS)
            lines.append(
                f"| {head} | {cov} | {g} | {training} | {label} | {100 * r['test/acc']:.2f} | "
                f"{r['test/nll']:.4f} | {100 * r['test/ece']:.2f} | {aurocs} | "
                f"{r['limit_train']} × {r['epochs']} | {r['seconds']:.0f} |")
        for variant, v in r.get("posthoc_variants", {}).items():
            aurocs = " | ".join(f"{v[f'auroc_{s}']:.4f}" if f"auroc_{s}" in v else "—"
                                for s in SETS)
            lines.append(
                f"| {head} | {cov} | {g} | {training} | post-hoc EM: {variant} (val LL "
                f"{v['val_ll']:.1f}) | {100 * r['test/acc']:.2f} | {r['test/nll']:.4f} | "
                f"{100 * r['test/ece']:.2f} | {aurocs} | {r['limit_train']} × {r['epochs']} | "
                f"{r['seconds']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit-train", type=int, default=50_000)
    parser.add_argument("--limit-eval", type=int, default=10_000)
    parser.add_argument("--gen-weight", type=float, default=0.01, help="λ of the -gen rows")
    parser.add_argument("--classes", type=int, nargs="*", default=None,
                        help="train on these digits only; the others are the heldout OOD set")
    parser.add_argument("--spectral-norm", type=float, default=None,
                        help="c: cap the body's spectral norms at c (model.net.spectral_norm; "
                        "model=gmm_classifier's default is 2; without the flag: none)")
    parser.add_argument("--shift", type=int, default=0,
                        help="augmentation: shift each training digit by up to this many pixels "
                        "(data.shift)")
    parser.add_argument("--data-dir", default=str(ROOT / "data"))
    parser.add_argument("--table", action="store_true", help="only print the saved table")
    parser.add_argument("--reevaluate", action="store_true",
                        help="recompute the post-hoc variants of the saved rows that match "
                        "--rows, --epochs, --seed and still have their checkpoint")
    parser.add_argument("--components", type=int, nargs="+", default=[1, 4, 8],
                        help="the post-hoc variants' G per class")
    parser.add_argument("--means", type=int, nargs="+", default=[0, 1], choices=[0, 1],
                        help="post-hoc variants without (0) / with (1) the conv means")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every row")
    args = parser.parse_args()
    results = json.loads(args.results.read_text()) if args.results.exists() else []
    if args.reevaluate:
        for i, r in enumerate(results):
            if r["epochs"] == args.epochs and r["seed"] == args.seed \
                    and r["row"].split("-sn")[0] in args.rows \
                    and (Path(r["log_dir"]) / "checkpoints" / "last.ckpt").exists():
                results[i] = reevaluate(r, args)
                args.results.write_text(json.dumps(results, indent=1) + "\n")
                print(f"[{r['row']}] {json.dumps(results[i]['posthoc_variants'])}", flush=True)
    elif not args.table:
        for row in args.rows:
            result = run_row(row, args)
            key = ("row", "epochs", "seed", "limit_train")
            results = [r for r in results
                       if tuple(r.get(k) for k in key) != tuple(result[k] for k in key)]
            results.append(result)
            args.results.write_text(json.dumps(results, indent=1) + "\n")
            print(f"[{row}] {json.dumps(result)}", flush=True)
    print(table(results))


if __name__ == "__main__":
    main()
