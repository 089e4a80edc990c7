r"""Neural-ODE control: a policy network trained by backpropagating a trajectory loss (report §2.6, §3, §4).

The controlled system :math:`\dot x = f(x, u_\theta(o(x)))` with a network :math:`u_\theta`
is itself a neural ODE (report eq. 4.4), so the policy is trained like one: roll a batch of
trajectories out of the environment's own definition with :func:`diffenvs.rollout`, take
the loss

.. math:: L(\theta) = \frac{1}{B}\sum_{i=1}^{B} J(x^i_0; \theta), \qquad J = -\sum_k r_k

(the batch's mean cost, ``rollout(...).costs.mean()``) and descend its gradient with Adam.
The gradient comes from backpropagation through the solver (direct) or from the adjoint ODE
:math:`\dot{\bar x} = -\bar x\, \partial f/\partial x`,
:math:`\bar\theta = \int_0^T \bar x\, \partial f/\partial\theta\, dt` (report eqs. 2.40, 2.47;
``adjoint=True``); the control is held over each environment step (``control="sampled"``,
what the Gymnasium face does) or evaluated inside the ODE (``"feedback"``).

The agent is generic: it uses only the definition behind an id (:func:`diffenvs.problem_of`):
its dynamics, cost, start distribution (``problem.initial_state`` on torch draws) and control
map, with the tuned settings of the environment's card (:mod:`agents.cards`). The network's output layer is
:math:`a = \tanh(z) \in (-1, 1)` followed by the problem's own action-to-control map
``problem.control_from_action``: for a box :math:`[u_{lo}, u_{hi}]` this is
:math:`u = u_{lo} + (u_{hi} - u_{lo})\,\sigma(2z)` — sigmoid-affine onto :math:`[0, \pi]` for
Zermelo's heading, :math:`u = F \tanh z` for a force bounded by :math:`\pm F`.
"""

from agents.neural_ode.agent import AGENT, budget_config
from agents.neural_ode.config import LBFGS_EVALUATIONS, Callback, NeuralOdeConfig, default_config
from agents.neural_ode.network import PolicyNetwork, initial_states
from agents.neural_ode.training import NeuralOdeResult, NonFiniteError, load_policy, train

__all__ = ["AGENT", "LBFGS_EVALUATIONS", "Callback", "NeuralOdeConfig", "NeuralOdeResult", "NonFiniteError",
           "PolicyNetwork", "budget_config", "default_config", "initial_states", "load_policy", "train"]
