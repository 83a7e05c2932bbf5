"""Gaussian-process regression for PB2, from first principles (numpy + scipy).

Inputs are rows X = [t, x..., c...]: the time column first, then the continuous inputs (for PB2
that is R_before and the hyperparameters), then `n_cat` integer-coded categorical columns.

Two kernels:
  "tv_se"  the time-varying squared exponential of PB2 (Parker-Holder et al. 2020, Eq. 5, after
           Bogunovic et al. 2016):  k = σ² exp(-‖x - x'‖² / ℓ) · (1 - ε)^{|t - t'|/2}
  "tv_mix" the CoCaBO mixture (Ru et al. 2020, Eq. 4) with a time decay on each part, as in
           PB2-Mix:  k = (1 - λ)·½(k_x + k_h) + λ·k_x·k_h, where k_x is "tv_se" over the
           continuous columns and k_h = σ_h² · overlap(c, c') · (1 - ε_h)^{|t - t'|/2}.

Parameter vectors (what L-BFGS-B optimises; the noise variance is always last):
  "tv_se":  [log σ², log ℓ, ε, log σ_n²]
  "tv_mix": [log σ_x², log ℓ, ε_x, log σ_h², ε_h, λ, log σ_n²]
Hyperparameters maximise the log marginal likelihood (GPML Eq. 2.30) with analytic gradients
(GPML Eq. 5.9). The lengthscale is bounded to [1e-5, 1] during the fit (the reference clips it to
that range after the fit; bounding the optimiser gives the best likelihood inside the range).
"""
from __future__ import annotations

import ctypes
import functools
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from scipy.linalg import cho_solve, cholesky, lapack, solve_triangular
from scipy.optimize import minimize

LOG_2PI = float(np.log(2 * np.pi))
LENGTHSCALE_RANGE = (1e-5, 1.0)
EPSILON_RANGE = (1e-6, 0.5)
VARIANCE_RANGE = (1e-3, 1e2)
NOISE_RANGE = (1e-6, 1e1)
PARAM_NAMES = {"tv_se": ["variance", "lengthscale", "epsilon", "noise"],
               "tv_mix": ["variance_cont", "lengthscale", "epsilon_cont", "variance_cat",
                          "epsilon_cat", "mix", "noise"]}


# -- one BLAS thread for small matrices ---------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _openblas_thread_controls() -> tuple:
    """(get, set) pairs of the OpenBLAS copies loaded in this process (numpy's and scipy's)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps if "openblas" in line.lower()})
    except OSError:
        return ()
    controls = []
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in ("openblas_", "scipy_openblas_"):
            for suffix in ("", "64_"):
                get = getattr(lib, f"{prefix}get_num_threads{suffix}", None)
                set_ = getattr(lib, f"{prefix}set_num_threads{suffix}", None)
                if get is not None and set_ is not None:
                    controls.append((get, set_))
    return tuple(controls)


@contextmanager
def single_threaded_blas():
    """Run numpy/scipy's OpenBLAS on one thread inside (a tiny threadpoolctl). GP matrices here
    are small: extra BLAS threads only add overhead, and when another process holds a core their
    spin-waiting made a select ~20x slower (measured on a 2-core machine)."""
    controls = _openblas_thread_controls()
    before = [get() for get, _ in controls]
    for _, set_ in controls:
        set_(1)
    try:
        yield
    finally:
        for (_, set_), n in zip(controls, before):
            set_(n)


# -- the kernels --------------------------------------------------------------------------------
def sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """‖a_i - b_j‖² for all pairs."""
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d, 0.0)


def overlap(c1: np.ndarray, c2: np.ndarray) -> np.ndarray:
    """Fraction of matching categorical dimensions (CoCaBO overlap kernel, Ru et al. 2020 Eq. 3)."""
    return (c1[:, None, :] == c2[None, :, :]).mean(-1)


def pair_geometry(X1: np.ndarray, X2: np.ndarray, n_cat: int = 0) -> tuple:
    """What the kernels need of two sets of rows [t, x..., c...], independent of the
    hyperparameters (computed once per fit): (|t - t'|/2, ‖x - x'‖², overlap(c, c') or None)."""
    e1, e2 = X1.shape[1] - n_cat, X2.shape[1] - n_cat
    half = 0.5 * np.abs(X1[:, 0][:, None] - X2[:, 0][None, :])
    cat = overlap(X1[:, e1:], X2[:, e2:]) if n_cat else None
    return half, sq_dists(X1[:, 1:e1], X2[:, 1:e2]), cat


def time_decay(half: np.ndarray, eps: float) -> np.ndarray:
    """(1 - ε)^{|t - t'|/2} (Bogunovic et al. 2016, Eq. 4), given half = |t - t'|/2."""
    return np.exp(half * np.log1p(-eps))


def tv_se(params, geo, grad=False):
    """k = σ² exp(-‖x-x'‖²/ℓ)·(1-ε)^{|t-t'|/2} (PB2 Eq. 5); grads wrt (log σ², log ℓ, ε)."""
    var, ls, eps = np.exp(params[0]), np.exp(params[1]), params[2]
    half, d2, _ = geo
    K = var * np.exp(-d2 / ls + half * np.log1p(-eps))
    if not grad:
        return K
    return K, [K, K * d2 / ls, -K * half / (1.0 - eps)]


def tv_overlap(params, geo, grad=False):
    """k_h = σ_h²·overlap(c,c')·(1-ε_h)^{|t-t'|/2}; grads wrt (log σ_h², ε_h)."""
    var, eps = np.exp(params[0]), params[1]
    half, _, cat = geo
    K = var * cat * time_decay(half, eps)
    if not grad:
        return K
    return K, [K, -K * half / (1.0 - eps)]


def tv_mix(params, geo, grad=False):
    """k = (1-λ)·½(k_x + k_h) + λ·k_x·k_h (CoCaBO Eq. 4, each part time-decayed as in PB2-Mix)."""
    out_x, out_h, lam = tv_se(params[0:3], geo, grad), tv_overlap(params[3:5], geo, grad), params[5]
    kx, kh = (out_x[0], out_h[0]) if grad else (out_x, out_h)
    K = (1.0 - lam) * 0.5 * (kx + kh) + lam * kx * kh
    if not grad:
        return K
    cx, ch = (1.0 - lam) * 0.5 + lam * kh, (1.0 - lam) * 0.5 + lam * kx   # chain rule
    return K, [cx * g for g in out_x[1]] + [ch * g for g in out_h[1]] + [kx * kh - 0.5 * (kx + kh)]


KERNELS = {"tv_se": tv_se, "tv_mix": tv_mix}


def kernel_matrix(kind: str, params, X1, X2, n_cat=0, grad=False):
    """k(X1, X2) for kernel `kind` ("tv_se" | "tv_mix"); with grad, also [∂K/∂θ_j]."""
    if kind not in KERNELS:
        raise ValueError(f"unknown kernel {kind!r}; allowed: {', '.join(KERNELS)}")
    return KERNELS[kind](params, pair_geometry(X1, X2, n_cat), grad)


def prior_variance(kind: str, params) -> float:
    """k(x, x): σ² for tv_se; (1-λ)·½(σ_x² + σ_h²) + λ·σ_x²·σ_h² for tv_mix."""
    if kind == "tv_se":
        return float(np.exp(params[0]))
    vx, vh, lam = np.exp(params[0]), np.exp(params[3]), params[5]
    return float((1.0 - lam) * 0.5 * (vx + vh) + lam * vx * vh)


# -- hyperparameters by maximum marginal likelihood -------------------------------------------
def param_bounds(kind: str) -> list[tuple[float, float]]:
    logv, logl, logn = np.log(VARIANCE_RANGE), np.log(LENGTHSCALE_RANGE), np.log(NOISE_RANGE)
    if kind == "tv_se":
        return [tuple(logv), tuple(logl), EPSILON_RANGE, tuple(logn)]
    return [tuple(logv), tuple(logl), EPSILON_RANGE, tuple(logv), EPSILON_RANGE, (0.0, 1.0),
            tuple(logn)]


def default_params(kind: str) -> np.ndarray:
    """The reference's initial values: σ² = 1, ℓ = 1, ε = 0.1, noise = 1 (λ = 0.5)."""
    if kind == "tv_se":
        return np.array([0.0, 0.0, 0.1, 0.0])
    return np.array([0.0, 0.0, 0.1, 0.0, 0.1, 0.5, 0.0])


def random_params(kind: str, rng: np.random.Generator) -> np.ndarray:
    """A restart point drawn inside the bounds (log-uniform for the scale parameters)."""
    lows, highs = np.array(param_bounds(kind)).T
    p = rng.uniform(lows, highs)
    p[1] = rng.uniform(np.log(1e-2), 0.0)                 # ℓ restarts in a useful range
    p[0], p[-1] = rng.uniform(-1.0, 1.0), rng.uniform(np.log(1e-3), 0.0)
    return p


def neg_log_marginal_likelihood(params, X, y, kind="tv_se", n_cat=0, geo=None):
    """-log p(y|X,θ) = ½yᵀK⁻¹y + ½log|K| + n/2·log 2π (GPML Eq. 2.30) and its gradient (Eq. 5.9);
    `geo` = pair_geometry(X, X, n_cat) when the caller has it already."""
    geo = pair_geometry(X, X, n_cat) if geo is None else geo
    K, dKs = KERNELS[kind](params, geo, grad=True)
    noise = np.exp(params[-1])
    n = len(y)
    try:
        L = cholesky(K + noise * np.eye(n), lower=True, check_finite=False)
    except np.linalg.LinAlgError:
        return 1e25, np.zeros_like(params)
    alpha = cho_solve((L, True), y, check_finite=False)
    nll = 0.5 * y @ alpha + np.log(np.diag(L)).sum() + 0.5 * n * LOG_2PI
    W = cholesky_inverse(L) - np.outer(alpha, alpha)     # K⁻¹ - ααᵀ
    grad = [0.5 * np.sum(W * dK) for dK in dKs] + [0.5 * noise * np.trace(W)]  # Eq. 5.9
    return float(nll), np.array(grad)


def cholesky_inverse(L: np.ndarray) -> np.ndarray:
    """K⁻¹ from the lower Cholesky factor of K (LAPACK potri, about half the cost of a solve)."""
    lower_inv, info = lapack.dpotri(L, lower=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"potri failed with info = {info}")
    return lower_inv + np.tril(lower_inv, -1).T


@dataclass
class GP:
    """A fitted GP: data, hyperparameters, the Cholesky factor L of K + σ_n² I, α = K⁻¹y and K⁻¹."""
    kind: str
    n_cat: int
    params: np.ndarray
    X: np.ndarray
    y: np.ndarray
    L: np.ndarray
    alpha: np.ndarray
    Kinv: np.ndarray
    nll: float

    def named_params(self) -> dict:
        values = [float(np.exp(v)) if name in ("variance", "variance_cont", "variance_cat",
                                               "lengthscale", "noise") else float(v)
                  for name, v in zip(PARAM_NAMES[self.kind], self.params)]
        return dict(zip(PARAM_NAMES[self.kind], values))

    def predict(self, Xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean k*ᵀα and latent variance k** - k*ᵀK⁻¹k* (GPML Eqs. 2.25-2.26)."""
        Ks = kernel_matrix(self.kind, self.params, Xs, self.X, self.n_cat)
        v = solve_triangular(self.L, Ks.T, lower=True)
        var = prior_variance(self.kind, self.params) - (v * v).sum(0)
        return Ks @ self.alpha, np.maximum(var, 0.0)

    def predict_with_grad(self, x: np.ndarray, dims: np.ndarray):
        """Mean, variance and their gradients wrt x[dims] (continuous, non-time columns) at one x:
        ∂μ = αᵀ∂k*, ∂σ² = -2 (K⁻¹k*)ᵀ∂k*, with ∂k_x/∂x = k_x·(-2(x - x_i)/ℓ)."""
        geo = pair_geometry(x[None, :], self.X, self.n_cat)
        geo = tuple(g[0] if g is not None else None for g in geo)
        kx = tv_se(self.params[0:3], geo)
        if self.kind == "tv_se":
            k, factor = kx, kx
        else:
            kh, lam = tv_overlap(self.params[3:5], geo), self.params[5]
            k = (1.0 - lam) * 0.5 * (kx + kh) + lam * kx * kh
            factor = ((1.0 - lam) * 0.5 + lam * kh) * kx
        diff = x[dims][None, :] - self.X[:, dims]
        dk = factor[:, None] * (-2.0 * diff / np.exp(self.params[1]))
        Kinv_k = self.Kinv @ k
        var = prior_variance(self.kind, self.params) - k @ Kinv_k
        return k @ self.alpha, max(var, 0.0), self.alpha @ dk, -2.0 * Kinv_k @ dk


def gp_from_params(kind, params, X, y, n_cat=0) -> GP:
    """Condition a GP with fixed hyperparameters on (X, y) (a tiny jitter only if K is singular,
    e.g. a pending row identical to a data row at the smallest noise)."""
    K = kernel_matrix(kind, params, X, X, n_cat) + np.exp(params[-1]) * np.eye(len(y))
    for jitter in (0.0, 1e-10, 1e-8, 1e-6):
        try:
            L = cholesky(K + jitter * prior_variance(kind, params) * np.eye(len(y)), lower=True)
            break
        except np.linalg.LinAlgError:
            if jitter == 1e-6:
                raise
    alpha = cho_solve((L, True), y)
    Kinv = cholesky_inverse(L)
    nll = 0.5 * y @ alpha + np.log(np.diag(L)).sum() + 0.5 * len(y) * LOG_2PI   # Eq. 2.30
    return GP(kind, n_cat, np.asarray(params, float), X, y, L, alpha, Kinv, float(nll))


def fit_gp(X, y, kind="tv_se", n_cat=0, rng=None, n_restarts=1, init=None, maxiter=200) -> GP:
    """Maximise the marginal likelihood with L-BFGS-B (analytic gradients) from `init` (or the
    reference's defaults) and `n_restarts` random starts drawn from `rng`; keep the best."""
    X, y = np.asarray(X, float), np.asarray(y, float)
    geo = pair_geometry(X, X, n_cat)
    starts = [default_params(kind) if init is None else np.asarray(init, float)]
    if rng is not None:
        starts += [random_params(kind, rng) for _ in range(n_restarts)]
    best = None
    with single_threaded_blas():
        for p0 in starts:
            res = minimize(neg_log_marginal_likelihood, p0, args=(X, y, kind, n_cat, geo),
                           jac=True, method="L-BFGS-B", bounds=param_bounds(kind),
                           options={"maxiter": maxiter})
            if best is None or res.fun < best.fun:
                best = res
        return gp_from_params(kind, best.x, X, y, n_cat)
