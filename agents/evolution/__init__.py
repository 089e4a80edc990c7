r"""Evolution strategies: the neural-ODE agent's policy network trained from rollouts, without derivatives.

The zeroth-order side of the comparison: the same network by design (the report's 2 x 16 tanh
layers mapped into the control set, :class:`~agents.neural_ode.PolicyNetwork`), the same batched
simulator (:func:`diffenvs.rollout`, under ``torch.no_grad``), the same objective (the
environment's own episode cost, over its whole horizon, one start per member), but only cost
values: no gradient of the model, no backward pass (``backward_transitions`` 0). Each strategy
runs its published defaults (:class:`EvolutionConfig`), not the neural-ODE agent's tuning. A
generation perturbs the flat weights :math:`\theta`, rolls the whole population out as one batch
(:mod:`agents.evolution.population`) and moves :math:`\theta` from the costs
(:mod:`agents.evolution.strategies`):

* ``es``: OpenAI-ES (Salimans et al. 2017), antithetic members :math:`\theta \pm \sigma\varepsilon_i`,
  centred-rank fitness, Adam on :math:`\sigma\hat g + \lambda\theta`,
  :math:`\hat g = \frac{1}{n\sigma}\sum_i f_i \varepsilon_i` (:math:`\sigma = 0.02`, step 0.01, :math:`\lambda = 0.005`);
* ``cma-es``: CMA-ES from the ``cmaes`` package on the same weights, its default population
  :math:`4 + \lfloor 3 \ln n \rfloor` for :math:`n` weights.

Budgets count every simulated transition, population x batch x rollout steps per generation,
as the neural-ODE agent counts its gradient path's.
"""

from agents.evolution.agent import CMA_ES, ES, EvolutionResult, generation_transitions, network_dimension, train
from agents.evolution.config import STRATEGIES, TUNED_STEPS, EvolutionConfig, default_population
from agents.evolution.population import flat_weights, load_weights, population_costs
from agents.evolution.strategies import CovarianceES, OpenAIES, centred_ranks, es_gradient

__all__ = ["CMA_ES", "ES", "STRATEGIES", "TUNED_STEPS", "CovarianceES", "EvolutionConfig", "EvolutionResult",
           "OpenAIES", "centred_ranks", "default_population", "es_gradient", "flat_weights", "generation_transitions",
           "load_weights", "network_dimension", "population_costs", "train"]
