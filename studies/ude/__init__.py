r"""A universal differential equation for Lotka--Volterra: training recipe, regulariser sweep, symbolic recovery.

The data (the forum post's problem) come from

.. math:: \dot u_1 = \alpha u_1 - \beta u_1 u_2, \qquad \dot u_2 = \gamma u_1 u_2 - \delta u_2,
          \qquad (\alpha, \beta, \gamma, \delta) = (1.3, 0.9, 0.8, 1.8),

saved every 0.25 on :math:`t \in [0, 5]` with noise of 0.5% of each component's mean. The model
knows :math:`\alpha u_1` and :math:`-\delta u_2` and learns the rest with a 2-5-5-5-2 network
:math:`\hat U` (activations :math:`e^{-x^2}`):
:math:`\dot u = (\alpha u_1, -\delta u_2) + \hat U(u)`. The loss of a weight vector :math:`w` is

.. math:: L(w) = \operatorname{mean}_k\,(X_k - \hat X_k(w))^2
          + \lambda \sum_{x \in \{0, 0.1, \dots, 10\}} \big\|\partial \hat U/\partial u\,(x, 1)\big\|_F^2 .

As in Rackauckas et al., *Universal Differential Equations for Scientific Machine Learning*
(2020), training is Adam then L-BFGS on the solver's output, and the trained :math:`\hat U` is
then turned into equations over a polynomial library: candidate sparse models from the network, the choice
among them and their coefficients from the data (:func:`studies.ude.select_equations`; SINDy's STLSQ on the network
alone lost the structure on 2 seeds in 10). The misfit is
taken by multiple shooting: solves of a few intervals, each from a data point (Adam: one interval,
then four; L-BFGS: two). On this orbit one solve over all of :math:`[0, 5]` (single shooting) is
the harder landscape: L-BFGS from Adam's weights stalled there at a misfit 2--15 times the noise.

Here several values of :math:`\lambda` train at once as an *ensemble*: every weight carries a
leading dimension, one member per :math:`\lambda`, the network and its input Jacobian are
batched matrix products (the Jacobian by forward-mode tangent propagation, so the gradient of
the regulariser is forward-over-reverse, equal to :func:`diffenvs.derivatives.input_jacobian`),
and the RK4 solve steps all members together. The loss is the sum of the members' losses, so
Adam (elementwise) trains each member exactly as if alone; L-BFGS, which is not elementwise,
then runs member by member.

The package's modules: :mod:`studies.ude.problem` (the true system, the data, the network, the regulariser),
:mod:`studies.ude.ensemble` (the batched hybrid models), :mod:`studies.ude.training` (the recipe, the sweep, the
choice of :math:`\lambda`) and :mod:`studies.ude.recovery` (the equations).
"""

from studies.ude.ensemble import Ensemble
from studies.ude.problem import (
    DATA_POINTS,
    NOISE,
    SAVE_EVERY,
    TRUE_PARAMETERS,
    Rbf,
    lotka_volterra,
    make_data,
    make_network,
    missing_terms,
    regulariser,
    regulariser_points,
    true_regulariser,
    true_trajectory,
)
from studies.ude.recovery import (
    Candidate,
    SparseModel,
    best_supports,
    fit_to_data,
    select_equations,
    simulate_sparse,
    sparse_regression,
)
from studies.ude.training import (
    AdamRecord,
    HistoryRecord,
    LbfgsRecord,
    RecipeConfig,
    choose,
    evaluate,
    fit,
    holdout_mask,
    relative_rms,
    sweep,
)

__all__ = [
    "TRUE_PARAMETERS", "SAVE_EVERY", "DATA_POINTS", "NOISE", "lotka_volterra", "make_data", "true_trajectory", "Rbf",
    "make_network",
    "regulariser_points", "regulariser", "true_regulariser", "missing_terms", "Ensemble", "RecipeConfig", "AdamRecord",
    "LbfgsRecord", "HistoryRecord", "fit", "evaluate", "sweep", "choose", "holdout_mask", "relative_rms",
    "SparseModel", "sparse_regression", "simulate_sparse", "best_supports", "fit_to_data", "Candidate",
    "select_equations",
]
