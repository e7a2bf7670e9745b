"""Training for optimal-depth studies: mini-batch SGD (with momentum) and Adam.

:func:`train` trains one network, or a stack of K networks of equal shape at
once (``init_network(..., num_networks=K)``), on a :class:`~depthlab.datasets.Dataset`
with the weight and bias gradients of :func:`depthlab.cost_gradients` (the
backpropagation of Higham & Higham's Lemma 5.1).

Definitions used here and in every result table:

- A **step** is one parameter update on one mini-batch. Steps are numbered
  1..``num_steps``; "step s" in a learning curve means "after s updates", and
  step 0 is the network at initialization.
- **Loss** is the cost of :func:`depthlab.gradient.cost_value` over a whole set
  (train or test); ``quadratic`` is the paper's
  (1/n) sum_i (1/2) ||y_i - a^[L](x_i)||^2.
- **Accuracy** (classification only, NaN for regression) is the fraction of
  samples whose argmax of a^[L](x) is the argmax of the one-hot target.
- A stack member is a **net**, indexed 0..K-1 (the ``net`` column of every
  table, as in the sampling tables of :mod:`depthlab.jobs.probe`).
- A net **diverges** at step s when the mini-batch loss of step s is not finite,
  when update s would make a parameter non-finite or larger in magnitude than
  ``max_abs_param``, or when the train or test loss evaluated after step s is
  not finite. It then stops updating (it keeps the last parameters that passed
  the check), its later evaluations are not recorded, and its final metrics
  are NaN. The other nets of the stack are unaffected.

Each net draws its mini-batches from its own generator, so a net of a stack is
trained exactly as it would be alone with the same initial parameters and the
same generator (the stack only amortizes numpy's per-call overhead, which
dominates for small networks).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from depthlab.costs import COSTS, Cost, cost_gradients, cost_value
from depthlab.datasets import Dataset, higham_example
from depthlab.network import Network, init_network

if TYPE_CHECKING:  # pandas is imported lazily, only to build result tables.
    import pandas as pd

Array = np.ndarray
Optimizer = Literal["sgd", "adam"]
Sampling = Literal["uniform", "epoch"]
OPTIMIZERS: tuple[str, ...] = ("sgd", "adam")
SAMPLINGS: tuple[str, ...] = ("uniform", "epoch")
_CHUNK_STEPS = 1024
"""Mini-batch indices are drawn for at most this many steps at a time."""
_METRICS = ("train_loss", "test_loss", "train_accuracy", "test_accuracy")


@dataclass(frozen=True)
class HighamExample:
    """The paper's example network and its training (Higham & Higham 2019, Section 6).

    Layers of 2, 2, 3 and 2 neurons, sigmoid everywhere, every weight and bias
    N(0, 0.5^2) (init ``higham``), SGD with learning rate 0.05 on one random
    point per step, the quadratic cost.
    """

    widths: tuple[int, ...] = (2, 2, 3, 2)
    activation: str = "sigmoid"
    init: str = "higham"
    sigma_w: float = 0.5
    sigma_b: float = 0.5
    optimizer: Optimizer = "sgd"
    learning_rate: float = 0.05
    batch_size: int = 1
    sampling: Sampling = "uniform"
    cost: Cost = "quadratic"


HIGHAM_EXAMPLE = HighamExample()
"""The settings of the paper's example, used by :func:`train_higham_example`."""


@dataclass(frozen=True, eq=False)
class Evaluation:
    """One evaluation of every net of a stack, passed to the ``callback``.

    Attributes
    ----------
    step : int
        Number of updates done.
    num_steps : int
        The training budget.
    train_loss, test_loss, train_accuracy, test_accuracy : ndarray, shape (K,)
        NaN for nets that have diverged (and accuracies for regression).
    diverged : ndarray of bool, shape (K,)
        Which nets have diverged so far.
    """

    step: int
    num_steps: int
    train_loss: Array
    test_loss: Array
    train_accuracy: Array
    test_accuracy: Array
    diverged: Array


def _final(metric: str) -> property:
    """The property ``final_<metric>``: ``metric`` after the last step, shape (K,)."""
    label = metric.replace("_", " ").capitalize()
    doc = f"{label} after the last step, shape (K,); NaN where diverged."
    return property(lambda self: getattr(self, metric)[-1], doc=doc)


@dataclass(frozen=True, eq=False)
class TrainingResult:
    """Learning curves and final metrics of a training run.

    Attributes
    ----------
    network : Network
        The trained network (a stack of K if a stack was trained). A net that
        diverged holds its last parameters before the divergence.
    steps : ndarray of int, shape (E,)
        The evaluation steps: 0, k, 2k, ..., and ``num_steps``.
    train_loss, test_loss, train_accuracy, test_accuracy : ndarray, shape (E, K)
        Learning curves; NaN after a net diverged (accuracies: NaN for regression).
    diverged : ndarray of bool, shape (K,)
    diverged_at_step : ndarray of int, shape (K,)
        The step at which each net diverged; -1 for nets that did not.
    cost : str
        The cost that was minimized and evaluated.
    """

    network: Network
    steps: Array
    train_loss: Array
    test_loss: Array
    train_accuracy: Array
    test_accuracy: Array
    diverged: Array
    diverged_at_step: Array
    cost: str

    @property
    def num_nets(self) -> int:
        """K, the number of nets trained."""
        return int(self.diverged.shape[0])

    final_train_loss = _final("train_loss")
    final_test_loss = _final("test_loss")
    final_train_accuracy = _final("train_accuracy")
    final_test_accuracy = _final("test_accuracy")

    def curves(self) -> pd.DataFrame:
        """Learning curves as a tidy table, one row per (net, evaluation step).

        Returns
        -------
        pandas.DataFrame
            Columns ``net``, ``step``, ``train_loss``, ``test_loss``,
            ``train_accuracy``, ``test_accuracy``. A diverged net has rows only
            for the steps before it diverged.
        """
        import pandas as pd

        n_steps, k = self.train_loss.shape
        table = pd.DataFrame(
            {
                "net": np.tile(np.arange(k), n_steps),
                "step": np.repeat(self.steps, k),
                **{m: getattr(self, m).reshape(-1) for m in _METRICS},
            }
        )
        limit = np.where(self.diverged, self.diverged_at_step, np.iinfo(np.int64).max)
        keep = table["step"].to_numpy() < limit[table["net"].to_numpy()]
        return table[keep].sort_values(["net", "step"], ignore_index=True)

    def final(self) -> pd.DataFrame:
        """Final metrics, one row per net.

        Returns
        -------
        pandas.DataFrame
            Columns ``net``, ``train_loss``, ``test_loss``, ``train_accuracy``,
            ``test_accuracy`` (after the last step, NaN for a diverged net),
            ``diverged`` (bool) and ``diverged_at_step`` (nullable integer,
            missing for nets that did not diverge).
        """
        import pandas as pd

        at = pd.array(self.diverged_at_step, dtype="Int64")
        at[~self.diverged] = pd.NA
        return pd.DataFrame(
            {
                "net": np.arange(self.num_nets),
                **{m: getattr(self, m)[-1] for m in _METRICS},
                "diverged": self.diverged.copy(),
                "diverged_at_step": at,
            }
        )


class _FlatParameters:
    """Every W^[l], b^[l] of a stack as views into one ``(K, P)`` array.

    One array lets an optimizer update all parameters with a few numpy calls
    instead of a few calls per layer.
    """

    def __init__(self, net: Network, k: int) -> None:
        shapes = []
        for w, b in zip(net.weights, net.biases, strict=True):
            shapes += [w.shape[-2:], b.shape[-1:]]
        sizes = [int(np.prod(s)) for s in shapes]
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        self.k = k
        self.flat = np.empty((k, int(offsets[-1])), dtype=net.dtype)
        views = [
            self.flat[:, a:b].reshape(k, *s)
            for a, b, s in zip(offsets[:-1], offsets[1:], shapes, strict=True)
        ]
        for view, source in zip(
            views, _interleave(net.weights, net.biases), strict=True
        ):
            view[...] = source.reshape(view.shape)
        self.network = net.with_parameters(views[0::2], views[1::2])

    def flatten(
        self, weight_grads: list[Array], bias_grads: list[Array], out: Array
    ) -> None:
        """Write the gradients into ``out`` (shape ``(K, P)``) in parameter order."""
        np.concatenate(
            [g.reshape(self.k, -1) for g in _interleave(weight_grads, bias_grads)],
            axis=1,
            out=out,
        )


def _interleave(weights: Sequence[Array], biases: Sequence[Array]) -> list[Array]:
    out: list[Array] = []
    for w, b in zip(weights, biases, strict=True):
        out += [w, b]
    return out


class _SGD:
    """SGD with heavy-ball momentum: v <- mu v + g, theta <- theta - lr v."""

    def __init__(
        self,
        shape: tuple[int, int],
        dtype: np.dtype,
        *,
        learning_rate: float,
        momentum: float,
    ) -> None:
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.velocity = np.zeros(shape, dtype=dtype) if momentum else None
        self.update = np.empty(shape, dtype=dtype)

    def step(self, grad: Array) -> Array:
        if self.velocity is None:
            return np.multiply(grad, self.learning_rate, out=self.update)
        self.velocity *= self.momentum
        self.velocity += grad
        return np.multiply(self.velocity, self.learning_rate, out=self.update)


class _Adam:
    """Adam (Kingma & Ba 2015, Algorithm 1) with bias-corrected moments."""

    def __init__(
        self,
        shape: tuple[int, int],
        dtype: np.dtype,
        *,
        learning_rate: float,
        betas: tuple[float, float],
        eps: float,
    ) -> None:
        self.learning_rate = learning_rate
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.m = np.zeros(shape, dtype=dtype)
        self.v = np.zeros(shape, dtype=dtype)
        self.t = 0
        self.update = np.empty(shape, dtype=dtype)
        self.scratch = np.empty(shape, dtype=dtype)

    def step(self, grad: Array) -> Array:
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        self.m *= b1
        self.m += (1 - b1) * grad
        self.v *= b2
        np.multiply(grad, grad, out=self.scratch)
        self.scratch *= 1 - b2
        self.v += self.scratch
        # theta -= lr * m_hat / (sqrt(v_hat) + eps)
        np.multiply(self.v, 1 / (1 - b2**self.t), out=self.scratch)
        np.sqrt(self.scratch, out=self.scratch)
        self.scratch += self.eps
        np.divide(self.m, self.scratch, out=self.update)
        self.update *= self.learning_rate / (1 - b1**self.t)
        return self.update


class _UniformSampler:
    """Each step draws ``batch`` indices independently and uniformly (with
    replacement): with ``batch = 1``, one random point per step, as in the paper."""

    def __init__(self, n: int, batch: int, rng: np.random.Generator) -> None:
        self.n, self.batch, self.rng = n, batch, rng

    def draw(self, steps: int) -> Array:
        return self.rng.integers(0, self.n, size=(steps, self.batch))


class _EpochSampler:
    """Consecutive batches of a stream of random permutations of the data (each
    point once per epoch; a batch may straddle two epochs)."""

    def __init__(self, n: int, batch: int, rng: np.random.Generator) -> None:
        self.n, self.batch, self.rng = n, batch, rng
        self.left = np.empty(0, dtype=np.int64)

    def draw(self, steps: int) -> Array:
        need = steps * self.batch
        parts, have = [self.left], len(self.left)
        while have < need:
            parts.append(self.rng.permutation(self.n))
            have += self.n
        stream = np.concatenate(parts)
        self.left = stream[need:]
        return stream[:need].reshape(steps, self.batch)


def _member_rngs(
    rng: np.random.Generator | Sequence[np.random.Generator], k: int
) -> list[np.random.Generator]:
    if isinstance(rng, np.random.Generator):
        return [rng] if k == 1 else list(rng.spawn(k))
    rngs = list(rng)
    if len(rngs) != k or not all(isinstance(g, np.random.Generator) for g in rngs):
        raise ValueError(
            f"rng must be a numpy Generator or a sequence of {k} Generators, one "
            f"per net of the stack (got {len(rngs)} items)"
        )
    return rngs


def _evaluation_steps(num_steps: int, eval_every: int) -> list[int]:
    steps = list(range(0, num_steps + 1, eval_every))
    if steps[-1] != num_steps:
        steps.append(num_steps)
    return steps


def _validate(
    net: Network,
    data: Dataset,
    *,
    num_steps: int,
    learning_rate: float,
    batch_size: int | None,
    optimizer: str,
    momentum: float,
    betas: tuple[float, float],
    eps: float,
    cost: str,
    sampling: str,
    eval_every: int,
    max_abs_param: float,
) -> None:
    if len(net.stack_shape) > 1:
        raise ValueError(
            f"train needs one network or a stack (K,), not {net.stack_shape}"
        )
    if optimizer not in OPTIMIZERS:
        raise ValueError(
            f"unknown optimizer {optimizer!r}; valid: {', '.join(OPTIMIZERS)}"
        )
    if cost not in COSTS:
        raise ValueError(f"unknown cost {cost!r}; valid: {', '.join(COSTS)}")
    if sampling not in SAMPLINGS:
        raise ValueError(
            f"unknown sampling {sampling!r}; valid: {', '.join(SAMPLINGS)}"
        )
    if cost == "cross_entropy" and net.output_activation != "linear":
        raise ValueError(
            "cost 'cross_entropy' takes a^[L] as logits: use output_activation "
            f"'linear' (got {net.output_activation!r})"
        )
    if int(num_steps) != num_steps or num_steps < 0:
        raise ValueError(f"num_steps must be an integer >= 0 (got {num_steps!r})")
    if int(eval_every) != eval_every or eval_every < 1:
        raise ValueError(f"eval_every must be an integer >= 1 (got {eval_every!r})")
    if batch_size is not None and (int(batch_size) != batch_size or batch_size < 1):
        raise ValueError(
            f"batch_size must be an integer >= 1 or None (got {batch_size!r})"
        )
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be positive (got {learning_rate!r})")
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must lie in [0, 1) (got {momentum!r})")
    if optimizer == "adam" and momentum:
        raise ValueError("momentum is an option of 'sgd'; Adam's are betas")
    if not (0 <= betas[0] < 1 and 0 <= betas[1] < 1) or not eps > 0:
        raise ValueError(f"Adam needs betas in [0, 1) and eps > 0 (got {betas}, {eps})")
    if not max_abs_param > 0:
        raise ValueError(f"max_abs_param must be positive (got {max_abs_param!r})")
    if data.input_dim != net.widths[0] or data.output_dim != net.widths[-1]:
        raise ValueError(
            f"dataset {data.name!r} has {data.input_dim} inputs and {data.output_dim} "
            f"targets but the network's widths are {net.widths}"
        )


def _evaluate(
    net: Network, X: Array, Y: Array, *, cost: Cost, labels: Array | None
) -> tuple[Array, Array]:
    out = net(X)
    loss = cost_value(out, Y, cost=cost).astype(np.float64)
    if labels is None:
        return loss, np.full(loss.shape, np.nan)
    accuracy = np.mean(np.argmax(out, axis=-1) == labels, axis=-1)
    return loss, accuracy


def train(
    net: Network,
    data: Dataset,
    *,
    num_steps: int,
    learning_rate: float,
    batch_size: int | None,
    rng: np.random.Generator | Sequence[np.random.Generator],
    optimizer: Optimizer = "sgd",
    momentum: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    cost: Cost = "quadratic",
    sampling: Sampling = "uniform",
    eval_every: int | None = None,
    max_abs_param: float = 1e6,
    callback: Callable[[Evaluation], None] | None = None,
) -> TrainingResult:
    """Train a network, or a stack of K networks at once, for a fixed budget of steps.

    Parameters
    ----------
    net : Network
        The initial network, or a stack of K (``init_network(...,
        num_networks=K)``). It is not modified.
    data : Dataset
        Training and test data; targets one-hot for classification.
    num_steps : int
        The budget: number of updates.
    learning_rate : float
        Step size (Adam: alpha).
    batch_size : int or None
        Mini-batch size B; None for full-batch gradient descent.
    rng : numpy.random.Generator or sequence of K Generators
        Source of the mini-batch indices. A sequence gives net k its own
        generator ``rng[k]``; a single Generator is used as is for one network
        and split with ``rng.spawn(K)`` for a stack. Net k of a stack trained
        with generator g follows exactly the run of that network trained alone
        with ``rng=g``; its mini-batches do not depend on ``eval_every``.
    optimizer : {"sgd", "adam"}
        ``sgd``: theta <- theta - lr * v with v <- momentum * v + g (plain SGD
        for momentum 0). ``adam``: Kingma & Ba (2015), Algorithm 1.
    momentum : float
        Heavy-ball momentum of ``sgd``, in [0, 1).
    betas, eps : tuple of float, float
        Adam's decay rates of the moment estimates and its epsilon.
    cost : {"quadratic", "cross_entropy"}
        ``quadratic``: the paper's cost, meant for sigmoid outputs.
        ``cross_entropy``: softmax cross-entropy; needs ``output_activation="linear"``.
    sampling : {"uniform", "epoch"}
        ``uniform``: every step draws B indices uniformly with replacement (B = 1
        is the paper's "one random point per step"). ``epoch``: batches are
        consecutive pieces of a stream of random permutations, so each point is
        used once per epoch.
    eval_every : int, optional
        Evaluate the train and test loss and accuracy every this many steps
        (and at steps 0 and ``num_steps``); default ``max(1, num_steps // 100)``.
    max_abs_param : float
        A parameter larger in magnitude than this counts as a blow-up (divergence).
    callback : callable, optional
        Called with an :class:`Evaluation` after every evaluation (progress
        reporting, logging); its return value is ignored.

    Returns
    -------
    TrainingResult
        Learning curves, final metrics and the trained network; a single network
        in gives a single network out.

    Notes
    -----
    The gradients are those of :func:`depthlab.cost_gradients`, backpropagation
    as in Higham & Higham (2019), Lemma 5.1; the SGD step is their (5.4) on a
    mini-batch. Divergence (see the module docstring) ends a net's run without
    an exception: floating-point warnings inside the training loop are
    silenced, and non-finite or blown-up values are detected explicitly instead.

    Examples
    --------
    >>> import numpy as np
    >>> from depthlab import init_network
    >>> from depthlab.datasets import higham_example
    >>> rng = np.random.default_rng(0)
    >>> net = init_network([2, 2, 3, 2], activation="sigmoid", init="higham",
    ...                    sigma_w=0.5, sigma_b=0.5, rng=rng, num_networks=4)
    >>> result = train(net, higham_example(), num_steps=1000, learning_rate=0.05,
    ...                batch_size=1, rng=rng)
    >>> result.train_loss.shape, result.final().shape
    ((101, 4), (4, 7))
    """
    if eval_every is None:
        eval_every = max(1, int(num_steps) // 100)
    _validate(
        net,
        data,
        num_steps=num_steps,
        learning_rate=learning_rate,
        batch_size=batch_size,
        optimizer=optimizer,
        momentum=momentum,
        betas=betas,
        eps=eps,
        cost=cost,
        sampling=sampling,
        eval_every=eval_every,
        max_abs_param=max_abs_param,
    )
    num_steps, eval_every = int(num_steps), int(eval_every)
    single = net.stack_shape == ()
    k = 1 if single else int(net.stack_shape[0])
    rngs = _member_rngs(rng, k)
    params = _FlatParameters(net, k)
    work, flat = params.network, params.flat
    dtype = net.dtype

    X_train = np.asarray(data.X_train, dtype=dtype)
    Y_train = np.asarray(data.Y_train, dtype=dtype)
    X_test = np.asarray(data.X_test, dtype=dtype)
    Y_test = np.asarray(data.Y_test, dtype=dtype)
    classify = data.n_classes is not None
    train_labels = np.argmax(Y_train, axis=1) if classify else None
    test_labels = np.argmax(Y_test, axis=1) if classify else None
    full_batch = batch_size is None
    if not full_batch:
        sampler_type = _UniformSampler if sampling == "uniform" else _EpochSampler
        samplers = [sampler_type(data.n_train, int(batch_size), g) for g in rngs]

    shape = flat.shape
    if optimizer == "sgd":
        opt: _SGD | _Adam = _SGD(
            shape, dtype, learning_rate=learning_rate, momentum=momentum
        )
    else:
        opt = _Adam(shape, dtype, learning_rate=learning_rate, betas=betas, eps=eps)
    grad = np.empty(shape, dtype=dtype)
    candidate = np.empty(shape, dtype=dtype)

    eval_steps = _evaluation_steps(num_steps, eval_every)
    curves = np.full((4, len(eval_steps), k), np.nan)
    active = np.ones(k, dtype=bool)
    diverged_at = np.full(k, -1, dtype=np.int64)

    def evaluate(row: int) -> None:
        step = eval_steps[row]
        with np.errstate(all="ignore"):
            train_loss, train_acc = _evaluate(
                work, X_train, Y_train, cost=cost, labels=train_labels
            )
            test_loss, test_acc = _evaluate(
                work, X_test, Y_test, cost=cost, labels=test_labels
            )
        newly = active & ~(np.isfinite(train_loss) & np.isfinite(test_loss))
        diverged_at[newly] = step
        active[newly] = False
        for i, values in enumerate((train_loss, test_loss, train_acc, test_acc)):
            curves[i, row] = np.where(active, values, np.nan)
        if callback is not None:
            callback(
                Evaluation(
                    step,
                    num_steps,
                    *(c.copy() for c in curves[:, row]),
                    diverged=~active,
                )
            )

    evaluate(0)
    for row in range(1, len(eval_steps)):
        for start in range(eval_steps[row - 1], eval_steps[row], _CHUNK_STEPS):
            stop = min(start + _CHUNK_STEPS, eval_steps[row])
            if not full_batch:
                # (steps, K, B): net k's indices come from its own generator only.
                batches = np.stack([s.draw(stop - start) for s in samplers], axis=1)
            all_active = bool(active.all())
            with np.errstate(all="ignore"):
                for j in range(stop - start):
                    if full_batch:
                        X, Y = X_train, Y_train
                    else:
                        X, Y = X_train[batches[j]], Y_train[batches[j]]
                    loss, w_grads, b_grads = cost_gradients(work, X, Y, cost=cost)
                    params.flatten(w_grads, b_grads, grad)
                    np.subtract(flat, opt.step(grad), out=candidate)
                    # NaN compares False: a non-finite parameter fails this test too.
                    ok = np.abs(candidate).max(axis=1) <= max_abs_param
                    ok &= np.isfinite(loss)
                    if all_active and ok.all():
                        flat[...] = candidate
                        continue
                    newly = active & ~ok
                    diverged_at[newly] = start + j + 1
                    active &= ok
                    all_active = False
                    np.copyto(flat, candidate, where=active[:, None])
        evaluate(row)

    weights = [np.ascontiguousarray(w) for w in work.weights]
    biases = [np.ascontiguousarray(b) for b in work.biases]
    if single:
        weights, biases = [w[0] for w in weights], [b[0] for b in biases]
    trained = net.with_parameters(weights, biases)
    return TrainingResult(
        network=trained,
        steps=np.asarray(eval_steps, dtype=np.int64),
        train_loss=curves[0],
        test_loss=curves[1],
        train_accuracy=curves[2],
        test_accuracy=curves[3],
        diverged=diverged_at >= 0,
        diverged_at_step=diverged_at,
        cost=cost,
    )


def train_higham_example(
    *,
    rng: np.random.Generator,
    num_steps: int = 200_000,
    num_networks: int = 10,
    eval_every: int | None = None,
    callback: Callable[[Evaluation], None] | None = None,
) -> TrainingResult:
    """The paper's example: a 2-2-3-2 sigmoid network fitted to its ten points.

    Every weight and bias is drawn as 0.5 * randn (init ``higham``) and trained
    by SGD with learning rate 0.05 on one random point per step, minimizing the
    quadratic cost (see :data:`HIGHAM_EXAMPLE`). ``num_networks`` seeds are
    trained at once as a stack.

    Parameters
    ----------
    rng : numpy.random.Generator
        Draws the initial stack, then is split with ``rng.spawn`` into one
        generator per net for the choice of points.
    num_steps : int
        The paper runs 10^6 steps; 2 x 10^5 already brings the median cost
        over seeds below 0.05.
    num_networks : int
        Number of seeds (nets of the stack).
    eval_every : int, optional
        See :func:`train`.
    callback : callable, optional
        See :func:`train`.

    Returns
    -------
    TrainingResult
        ``train_loss`` is the paper's
        Cost = (1/10) sum_i (1/2) ||y(x_i) - a^[4](x_i)||^2;
        ``train_accuracy == 1`` means that a net classifies all ten points.

    Notes
    -----
    Higham & Higham (2019), Sections 2 and 6 (the MATLAB code ``netbp``).

    Examples
    --------
    >>> import numpy as np
    >>> result = train_higham_example(rng=np.random.default_rng(0), num_steps=100,
    ...                               num_networks=2)
    >>> result.final_train_loss.shape
    (2,)
    """
    cfg = HIGHAM_EXAMPLE
    net = init_network(
        cfg.widths,
        activation=cfg.activation,
        init=cfg.init,
        sigma_w=cfg.sigma_w,
        sigma_b=cfg.sigma_b,
        rng=rng,
        num_networks=num_networks,
    )
    return train(
        net,
        higham_example(),
        num_steps=num_steps,
        learning_rate=cfg.learning_rate,
        batch_size=cfg.batch_size,
        rng=list(rng.spawn(num_networks)),
        optimizer=cfg.optimizer,
        cost=cfg.cost,
        sampling=cfg.sampling,
        eval_every=eval_every,
        callback=callback,
    )
