"""Reparameterised VI for a Bayesian GMM (`model=gmm_vi`): the logsumexp ELBO and its failure
mode, and a comparison with the natural-gradient DPMM, exact EM and scikit-learn.

Part 1 — the 1-D data of the classic question: 100 points from N(1, 1) and 100 from N(7, 2²),
K = 2, both components started on top of each other near the global mean. The correct ELBO
marginalises the assignment by logsumexp over components; the *wrong* one (a documented
demonstration, not in the library) sums the per-component log-likelihoods
Σ_k [log π_k + log N(x | μ_k, Σ_k)], which rewards every component for explaining every point,
so the means drift together to the global mean.

Part 2 — blobs (K = 5; D = 2 and 16; diag and full): held-out mean log-likelihood of the
posterior-mean mixture (and of the Monte-Carlo predictive), final ELBO per point, and wall time
per full-batch step for VI (S draws, Adam) against one coordinate-ascent step of the DPMM and
one EM iteration of `mixtures.GaussianMixture`; scikit-learn's GaussianMixture and
BayesianGaussianMixture as references. Plain loops, no Lightning, the same data for all.

    python experiments/gmm_vi/run.py            # about 2 minutes on 2 cores
    python experiments/gmm_vi/run.py --quick
"""

from __future__ import annotations

import argparse
import math
import time
import warnings

import torch
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import BayesianGaussianMixture
from sklearn.mixture import GaussianMixture as SkGaussianMixture

from mixtures import GaussianMixture
from mixtures.data import make_blobs
from mixtures.distributions import (
    DiagCovariance,
    FullCovariance,
    ScalarCovariance,
    expfam_log_prob,
    mixture_log_prob,
)
from mixtures.models import DPMM, VariationalGMM


# -- part 1: the failure mode ----------------------------------------------------------------------
def per_cluster_sum_loss(model: VariationalGMM, x: torch.Tensor) -> torch.Tensor:
    """The WRONG negative ELBO: Σ_k instead of logsumexp_k (for the demonstration only)."""
    log_weights, draw = model.rsample(model.num_samples)
    xc = x - model.shift
    log_prob = expfam_log_prob(model.cov.moment_features(xc), xc,
                               *model.family.draw_coefficients(draw))  # [N, S, K]
    wrong = (log_prob + log_weights).sum(-1).mean(-1)  # [N]
    return model.kl() / x.shape[0] - wrong.mean()


def two_gaussians(steps: int) -> list[tuple]:
    g = torch.Generator().manual_seed(5)
    x = torch.cat([1 + torch.randn(100, 1, generator=g), 7 + 2 * torch.randn(100, 1, generator=g)])
    start = torch.softmax(-(x - torch.tensor([4.0, 4.5])).square() / (2 * x.var()), -1)
    rows = []
    for cov_name, cov in (("scalar", ScalarCovariance()), ("full", FullCovariance())):
        for objective in ("logsumexp (correct)", "per-cluster sum (wrong)"):
            torch.manual_seed(0)
            model = VariationalGMM(2, 1, cov)
            model.initialize(x, resp=start)
            opt = torch.optim.Adam(model.parameters(), lr=0.05)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
            for _ in range(steps):
                opt.zero_grad()
                loss = model(x).mean() if objective.startswith("log") else per_cluster_sum_loss(
                    model, x)
                loss.backward()
                opt.step()
                sched.step()
            means, order = model.means.detach().flatten().sort()
            with torch.no_grad():
                torch.manual_seed(1)
                elbo = float(model.elbo_estimate(x, 256)) / x.shape[0]
            weights = model.weights.detach()[order].tolist()
            variances = model.covariances.detach().flatten()[order].tolist()
            rows.append((cov_name, objective, means.tolist(), weights, variances, elbo))
    sk = BayesianGaussianMixture(n_components=2, weight_concentration_prior_type=
                                 "dirichlet_distribution", max_iter=1000, random_state=0).fit(
        x.double().numpy())
    order = sk.means_[:, 0].argsort()
    rows.append(("full", "scikit-learn BayesianGaussianMixture (CAVI)",
                 sk.means_[order, 0].tolist(), sk.weights_[order].tolist(),
                 sk.covariances_.reshape(2)[order].tolist(), float("nan")))
    return rows


# -- part 2: blobs ------------------------------------------------------------------------------
def plug_in_ll(x, weights, means, covariances) -> float:
    cov = FullCovariance(min_scale=1e-6)
    w = torch.as_tensor(weights, dtype=torch.float64)
    raw = cov.from_covariance(torch.as_tensor(covariances, dtype=torch.float64))
    mu = torch.as_tensor(means, dtype=torch.float64)
    return float(mixture_log_prob(x.double(), (w / w.sum()).log(), mu, raw, cov).mean())


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def blobs(d: int, covariance: str, n: int, steps: int) -> dict:
    x, labels, _ = make_blobs(n, d, 5, covariance_type=covariance, seed=0, dtype=torch.float64)
    n_train = int(0.8 * n)
    x_train, x_test, y_test = x[:n_train], x[n_train:], labels[n_train:]
    make_cov = {"diag": DiagCovariance, "full": FullCovariance}[covariance]
    out = {}
    # ours: reparameterised VI (float32, Adam 0.05 with cosine decay, S = 8, full batch)
    torch.manual_seed(0)
    vi = VariationalGMM(5, d, make_cov())
    vi.initialize(x_train.float())
    opt = torch.optim.Adam(vi.parameters(), lr=0.05)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)

    def vi_step():
        opt.zero_grad()
        vi(x_train.float()).mean().backward()
        opt.step()

    start = time.perf_counter()
    for _ in range(steps):
        vi_step()
        sched.step()
    out["vi_fit_s"] = time.perf_counter() - start
    out["vi_step_s"] = out["vi_fit_s"] / steps
    out["vi_ll"] = plug_in_ll(x_test, vi.weights.detach(), vi.means.detach(),
                              vi.covariances.detach())
    torch.manual_seed(1)
    out["vi_pred_ll"] = float(vi.score_samples(x_test.float(), num_samples=256).double().mean())
    with torch.no_grad():
        torch.manual_seed(2)
        out["vi_elbo"] = float(vi.elbo_estimate(x_train.float(), 64)) / n_train
    out["vi_ari"] = adjusted_rand_score(y_test, vi.predict(x_test.float()))
    # the natural-gradient DPMM (truncation 20, same priors), coordinate ascent (float64)
    dpmm = DPMM(20, d, make_cov()).double()
    dpmm.initialize(x_train)
    dopt = torch.optim.SGD(dpmm.parameters(), lr=1.0)

    def dpmm_step():
        dopt.zero_grad()
        dpmm(x_train)[1].mean().backward()
        dopt.step()

    for _ in range(200):
        dpmm_step()
    out["dpmm_step_s"] = timed(dpmm_step, 10)
    out["dpmm_ll"] = plug_in_ll(x_test, dpmm.weights, dpmm.means, dpmm.covariances)
    out["dpmm_elbo"] = float(dpmm.elbo(x_train)) / n_train
    # exact EM (ours, float64) and scikit-learn
    em = GaussianMixture(5, covariance_type=covariance, random_state=0, max_iter=500,
                         dtype="float64").fit(x_train)
    em_cov = em.covariances_ if covariance == "full" else torch.diag_embed(
        torch.as_tensor(em.covariances_))
    out["em_ll"] = plug_in_ll(x_test, em.weights_, em.means_, em_cov)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 20 iterations on purpose: not converged
        start = time.perf_counter()
        GaussianMixture(5, covariance_type=covariance, random_state=0, max_iter=20, tol=0.0,
                        dtype="float64").fit(x_train)
        out["em_step_s"] = (time.perf_counter() - start) / 20  # k-means init included

        sk = SkGaussianMixture(5, covariance_type=covariance, random_state=0).fit(x_train.numpy())
        bgm = BayesianGaussianMixture(n_components=5, covariance_type=covariance,
                                      weight_concentration_prior_type="dirichlet_distribution",
                                      max_iter=1000, random_state=0).fit(x_train.numpy())
    as_dense = (lambda c: c) if covariance == "full" else (
        lambda c: torch.diag_embed(torch.as_tensor(c)))
    out["sk_ll"] = plug_in_ll(x_test, sk.weights_, sk.means_, as_dense(sk.covariances_))
    out["bgm_ll"] = plug_in_ll(x_test, bgm.weights_, bgm.means_, as_dense(bgm.covariances_))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps, smaller N")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    steps = 200 if args.quick else 600
    print("## Part 1: 1-D two-component data, K = 2, start near the global mean\n")
    print("| covariance | objective | means | weights | variances | ELBO / N |")
    print("|---|---|---|---|---|---|")
    fmt = lambda v: ", ".join(f"{u:.3f}" for u in v)  # noqa: E731
    for cov, objective, means, weights, variances, elbo in two_gaussians(steps):
        print(f"| {cov} | {objective} | {fmt(means)} | {fmt(weights)} | {fmt(variances)} | "
              f"{elbo:.4f} |")
    n = 4000 if args.quick else 20000
    print(f"\n## Part 2: blobs, K = 5, N = {n} (80% train / 20% test), full batch\n")
    print("| D | cov | VI LL | VI predictive LL | DPMM LL | EM LL | sklearn GM LL | sklearn BGM "
          "LL | VI − sklearn GM (%) | VI ELBO/N | DPMM ELBO/N | VI ARI | VI s/step | DPMM "
          "s/step | EM s/iter | VI fit s |")
    print("|" + "---|" * 16)
    for d in (2, 16):
        for covariance in ("diag", "full"):
            r = blobs(d, covariance, n, 300 if args.quick else 400)
            gap = 100 * (r["vi_ll"] - r["sk_ll"]) / abs(r["sk_ll"])
            print(f"| {d} | {covariance} | {r['vi_ll']:.4f} | {r['vi_pred_ll']:.4f} | "
                  f"{r['dpmm_ll']:.4f} | {r['em_ll']:.4f} | {r['sk_ll']:.4f} | "
                  f"{r['bgm_ll']:.4f} | {gap:+.3f} | {r['vi_elbo']:.4f} | "
                  f"{r['dpmm_elbo']:.4f} | {r['vi_ari']:.3f} | {r['vi_step_s'] * 1e3:.1f} ms | "
                  f"{r['dpmm_step_s'] * 1e3:.1f} ms | {r['em_step_s'] * 1e3:.1f} ms | "
                  f"{r['vi_fit_s']:.1f} |")
    print(f"\n(torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"ln 2π = {math.log(2 * math.pi):.4f})")


if __name__ == "__main__":
    main()
