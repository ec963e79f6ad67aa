"""Independent NumPy float64 reference implementations of the textbook update rules.

Each ``run_<name>(grad_fn, theta0, steps, **hyper)`` applies ``steps`` updates of one optimizer, written
directly from its formula (the seeds in ../shared/seeds/ and the papers they cite), and returns the list
``[θ_0, θ_1, …, θ_steps]`` of float64 NumPy arrays. ``grad_fn`` maps a 1-D float64 array to its gradient.
Nothing here imports gradflow, JAX or optax: the references must stay independent of the code they check.

Notation: t counts steps from 1, g = ∇L(θ_{t−1}), all operations are elementwise.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

GradFn = Callable[[np.ndarray], np.ndarray]

__all__ = [
    "REFERENCES",
    "run_adadelta",
    "run_adagrad",
    "run_adam",
    "run_adamax",
    "run_adamw",
    "run_amsgrad",
    "run_lion",
    "run_momentum",
    "run_momentum_seed",
    "run_nadam",
    "run_nag",
    "run_nesterov",
    "run_rmsprop",
    "run_sgd",
    "run_sign_sgd",
    "run_signum",
]


def _start(theta0) -> tuple[np.ndarray, list[np.ndarray]]:
    theta = np.array(theta0, dtype=np.float64).copy()
    return theta, [theta.copy()]


def run_sgd(grad_fn: GradFn, theta0, steps: int, learning_rate: float) -> list[np.ndarray]:
    """Plain gradient descent: θ ← θ − η·g."""
    theta, out = _start(theta0)
    for _ in range(steps):
        theta = theta - learning_rate * grad_fn(theta)
        out.append(theta.copy())
    return out


def run_momentum(grad_fn: GradFn, theta0, steps: int, learning_rate: float, momentum: float) -> list[np.ndarray]:
    """Heavy-ball momentum (Polyak, 1964), optax's form: m ← γ·m + g, θ ← θ − η·m."""
    theta, out = _start(theta0)
    m = np.zeros_like(theta)
    for _ in range(steps):
        m = momentum * m + grad_fn(theta)
        theta = theta - learning_rate * m
        out.append(theta.copy())
    return out


def run_momentum_seed(grad_fn: GradFn, theta0, steps: int, learning_rate: float, momentum: float) -> list[np.ndarray]:
    """Heavy-ball momentum in the seed's form (seed 002 eqs. 1–2): v ← γ·v + η·g, θ ← θ − v."""
    theta, out = _start(theta0)
    v = np.zeros_like(theta)
    for _ in range(steps):
        v = momentum * v + learning_rate * grad_fn(theta)
        theta = theta - v
        out.append(theta.copy())
    return out


def run_nesterov(grad_fn: GradFn, theta0, steps: int, learning_rate: float, momentum: float) -> list[np.ndarray]:
    """Reformulated Nesterov momentum (Sutskever et al., 2013; optax's ``trace(nesterov=True)``):

    m ← γ·m + g,  u = g + γ·m (with the new m),  θ ← θ − η·u.
    """
    theta, out = _start(theta0)
    m = np.zeros_like(theta)
    for _ in range(steps):
        g = grad_fn(theta)
        m = momentum * m + g
        theta = theta - learning_rate * (g + momentum * m)
        out.append(theta.copy())
    return out


def run_nag(grad_fn: GradFn, theta0, steps: int, learning_rate: float, momentum: float, return_velocity: bool = False):
    """Nesterov's accelerated gradient with the look-ahead gradient (seed 000 §5.1.3):

    m ← γ·m + η·∇L(θ − γ·m),  θ ← θ − m.

    With ``return_velocity=True`` also returns the list of velocities ``[m_0, …, m_steps]``.
    """
    theta, out = _start(theta0)
    m = np.zeros_like(theta)
    velocities = [m.copy()]
    for _ in range(steps):
        m = momentum * m + learning_rate * grad_fn(theta - momentum * m)
        theta = theta - m
        out.append(theta.copy())
        velocities.append(m.copy())
    return (out, velocities) if return_velocity else out


def run_adagrad(
    grad_fn: GradFn,
    theta0,
    steps: int,
    learning_rate: float,
    initial_accumulator_value: float = 0.0,
    eps: float = 1e-10,
) -> list[np.ndarray]:
    """AdaGrad (Duchi et al., 2011; seed 002 eq. 9): s ← s + g², θ ← θ − η·g/√(s + ε), s starts at s₀."""
    theta, out = _start(theta0)
    s = np.full_like(theta, initial_accumulator_value)
    for _ in range(steps):
        g = grad_fn(theta)
        s = s + g**2
        theta = theta - learning_rate * g / np.sqrt(s + eps)
        out.append(theta.copy())
    return out


def run_rmsprop(
    grad_fn: GradFn,
    theta0,
    steps: int,
    learning_rate: float,
    decay: float = 0.9,
    eps: float = 1e-8,
    initial_scale: float = 0.0,
    eps_in_sqrt: bool = True,
    centered: bool = False,
    momentum: float | None = None,
    nesterov: bool = False,
    bias_correction: bool = False,
) -> list[np.ndarray]:
    """RMSprop (Hinton, 2012; seed 002 eqs. 10–11): s ← γ·s + (1−γ)·g², d = η·g/√(s + ε), θ ← θ − d.

    ``eps_in_sqrt=False``: d = η·g/(√s + ε). ``bias_correction``: s is divided by 1 − γ^t (and so is the
    mean in the centered form). ``centered`` (Graves, 2013): μ ← γ·μ + (1−γ)·g and s is replaced by the
    variance estimate s − μ². ``momentum`` μ_m (as optax and TensorFlow do it, AFTER the learning rate):
    b ← μ_m·b + d, θ ← θ − b (Nesterov: θ ← θ − (d + μ_m·b) with the new b).
    """
    theta, out = _start(theta0)
    s = np.full_like(theta, initial_scale)
    mu = np.zeros_like(theta)
    buf = np.zeros_like(theta)
    for t in range(1, steps + 1):
        g = grad_fn(theta)
        s = decay * s + (1 - decay) * g**2
        second = s / (1 - decay**t) if bias_correction else s
        if centered:
            mu = decay * mu + (1 - decay) * g
            first = mu / (1 - decay**t) if bias_correction else mu
            second = second - first**2
        denominator = np.sqrt(second + eps) if eps_in_sqrt else np.sqrt(second) + eps
        d = learning_rate * g / denominator
        if momentum is not None:
            buf = momentum * buf + d
            d = d + momentum * buf if nesterov else buf
        theta = theta - d
        out.append(theta.copy())
    return out


def run_adadelta(
    grad_fn: GradFn,
    theta0,
    steps: int,
    learning_rate: float = 1.0,
    rho: float = 0.9,
    eps: float = 1e-6,
    weight_decay: float = 0.0,
) -> list[np.ndarray]:
    """Adadelta (Zeiler, 2012; seed 002 eqs. 12–15), with an optional learning rate η (1 in the seed):

    s ← ρ·s + (1−ρ)·g²  (12);  g' = √(Δθ + ε)/√(s + ε)·g  (13);  Δθ ← ρ·Δθ + (1−ρ)·g'²  (14);  θ ← θ − η·g'  (15).

    ``weight_decay`` λ adds λ·θ to the gradient first (optax's and gradflow's ``adadelta``).
    """
    theta, out = _start(theta0)
    s = np.zeros_like(theta)
    delta = np.zeros_like(theta)
    for _ in range(steps):
        g = grad_fn(theta) + weight_decay * theta
        s = rho * s + (1 - rho) * g**2
        g_prime = np.sqrt(delta + eps) / np.sqrt(s + eps) * g
        delta = rho * delta + (1 - rho) * g_prime**2
        theta = theta - learning_rate * g_prime
        out.append(theta.copy())
    return out


def run_adam(
    grad_fn: GradFn,
    theta0,
    steps: int,
    learning_rate: float,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    weight_decay: float = 0.0,
) -> list[np.ndarray]:
    """Adam (Kingma & Ba, 2015; seed 002 eqs. 16–19), AdamW when ``weight_decay`` λ > 0 (Loshchilov & Hutter):

    m ← b1·m + (1−b1)·g,  v ← b2·v + (1−b2)·g²,  m̂ = m/(1−b1^t),  v̂ = v/(1−b2^t),
    θ ← θ − η·(m̂/(√(v̂ + eps_root) + eps) + λ·θ).
    """
    theta, out = _start(theta0)
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    for t in range(1, steps + 1):
        g = grad_fn(theta)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        m_hat = m / (1 - b1**t)
        v_hat = v / (1 - b2**t)
        theta = theta - learning_rate * (m_hat / (np.sqrt(v_hat + eps_root) + eps) + weight_decay * theta)
        out.append(theta.copy())
    return out


def run_adamw(
    grad_fn: GradFn,
    theta0,
    steps: int,
    learning_rate: float,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    weight_decay: float = 1e-4,
) -> list[np.ndarray]:
    """AdamW: Adam with decoupled weight decay, θ ← θ − η·(m̂/(√(v̂ + eps_root) + eps) + λ·θ)."""
    return run_adam(grad_fn, theta0, steps, learning_rate, b1, b2, eps, eps_root, weight_decay)


def run_nadam(
    grad_fn: GradFn,
    theta0,
    steps: int,
    learning_rate: float,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
) -> list[np.ndarray]:
    """NAdam (Dozat, 2016) in optax's form: Adam with the look-ahead first moment

    m̂ = b1·m_t/(1 − b1^(t+1)) + (1−b1)·g_t/(1 − b1^t),  θ ← θ − η·m̂/(√(v̂ + eps_root) + eps).
    """
    theta, out = _start(theta0)
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    for t in range(1, steps + 1):
        g = grad_fn(theta)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        m_hat = b1 * m / (1 - b1 ** (t + 1)) + (1 - b1) * g / (1 - b1**t)
        v_hat = v / (1 - b2**t)
        theta = theta - learning_rate * m_hat / (np.sqrt(v_hat + eps_root) + eps)
        out.append(theta.copy())
    return out


def run_adamax(
    grad_fn: GradFn, theta0, steps: int, learning_rate: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
) -> list[np.ndarray]:
    """AdaMax (Kingma & Ba, 2015, §7.1; optax's ε placement):

    m ← b1·m + (1−b1)·g,  u ← max(b2·u, |g| + eps),  θ ← θ − η·(m/(1 − b1^t))/u.
    """
    theta, out = _start(theta0)
    m = np.zeros_like(theta)
    u = np.zeros_like(theta)
    for t in range(1, steps + 1):
        g = grad_fn(theta)
        m = b1 * m + (1 - b1) * g
        u = np.maximum(b2 * u, np.abs(g) + eps)
        theta = theta - learning_rate * (m / (1 - b1**t)) / u
        out.append(theta.copy())
    return out


def run_amsgrad(
    grad_fn: GradFn,
    theta0,
    steps: int,
    learning_rate: float,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    bias_correction_mu: bool = True,
    bias_correction_nu: bool = True,
) -> list[np.ndarray]:
    """AMSGrad (Reddi et al., 2018; seed 003).

    optax's form (both corrections): m̂ = m/(1−b1^t), v̂ = v/(1−b2^t), v̂_max ← max(v̂_max, v̂).
    The paper's form (both flags False): no bias correction, v_max ← max(v_max, v) over the raw v.
    Then θ ← θ − η·m̂/(√(v̂_max + eps_root) + eps).
    """
    theta, out = _start(theta0)
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    v_max = np.zeros_like(theta)
    for t in range(1, steps + 1):
        g = grad_fn(theta)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        m_hat = m / (1 - b1**t) if bias_correction_mu else m
        v_hat = v / (1 - b2**t) if bias_correction_nu else v
        v_max = np.maximum(v_max, v_hat)
        theta = theta - learning_rate * m_hat / (np.sqrt(v_max + eps_root) + eps)
        out.append(theta.copy())
    return out


def run_lion(
    grad_fn: GradFn,
    theta0,
    steps: int,
    learning_rate: float,
    b1: float = 0.9,
    b2: float = 0.99,
    weight_decay: float = 1e-3,
) -> list[np.ndarray]:
    """Lion (Chen et al., 2023): c = b1·m + (1−b1)·g, θ ← θ − η·(sign(c) + λ·θ), m ← b2·m + (1−b2)·g."""
    theta, out = _start(theta0)
    m = np.zeros_like(theta)
    for _ in range(steps):
        g = grad_fn(theta)
        c = b1 * m + (1 - b1) * g
        theta = theta - learning_rate * (np.sign(c) + weight_decay * theta)
        m = b2 * m + (1 - b2) * g
        out.append(theta.copy())
    return out


def run_sign_sgd(grad_fn: GradFn, theta0, steps: int, learning_rate: float) -> list[np.ndarray]:
    """signSGD (Bernstein et al., 2018): θ ← θ − η·sign(g)."""
    theta, out = _start(theta0)
    for _ in range(steps):
        theta = theta - learning_rate * np.sign(grad_fn(theta))
        out.append(theta.copy())
    return out


def run_signum(grad_fn: GradFn, theta0, steps: int, learning_rate: float, beta: float = 0.9) -> list[np.ndarray]:
    """Signum (Bernstein et al., 2018): m ← β·m + (1−β)·g, θ ← θ − η·sign(m)."""
    theta, out = _start(theta0)
    m = np.zeros_like(theta)
    for _ in range(steps):
        m = beta * m + (1 - beta) * grad_fn(theta)
        theta = theta - learning_rate * np.sign(m)
        out.append(theta.copy())
    return out


REFERENCES = {
    "sgd": run_sgd,
    "momentum": run_momentum,
    "momentum_seed": run_momentum_seed,
    "nesterov": run_nesterov,
    "nag": run_nag,
    "adagrad": run_adagrad,
    "rmsprop": run_rmsprop,
    "adadelta": run_adadelta,
    "adam": run_adam,
    "adamw": run_adamw,
    "nadam": run_nadam,
    "adamax": run_adamax,
    "amsgrad": run_amsgrad,
    "lion": run_lion,
    "sign_sgd": run_sign_sgd,
    "signum": run_signum,
}
