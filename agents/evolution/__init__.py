r"""Evolution strategies: the neural-ODE agent's policy network trained from rollouts, without derivatives.

The zeroth-order side of the comparison: the same network (the report's 2 x 16 tanh layers
mapped into the control set, :class:`~agents.neural_ode.PolicyNetwork`), the same batched
simulator (:func:`diffenvs.rollout`, under ``torch.no_grad``), the same objective (the
environment's own episode cost, over the neural-ODE agent's tuned rollout length and batch of
starts), but only cost values: no gradient of the model. A generation perturbs the flat
weights :math:`\theta`, rolls the whole population out as one batch
(:mod:`agents.evolution.population`) and moves :math:`\theta` from the costs
(:mod:`agents.evolution.strategies`):

* ``es``: OpenAI-ES (Salimans et al. 2017), antithetic members :math:`\theta \pm \sigma\varepsilon_i`,
  centred-rank fitness, Adam on :math:`\hat g = \frac{1}{n\sigma}\sum_i f_i \varepsilon_i`;
* ``cma-es``: CMA-ES from the ``cmaes`` package on the same weights.

Budgets count every simulated transition, population x batch x rollout steps per generation,
as the neural-ODE agent counts its gradient path's.
"""

from agents.evolution.agent import CMA_ES, ES, EvolutionResult, generation_transitions, train
from agents.evolution.config import STRATEGIES, EvolutionConfig
from agents.evolution.population import flat_weights, load_weights, population_costs
from agents.evolution.strategies import CovarianceES, OpenAIES, centred_ranks, es_gradient

__all__ = ["CMA_ES", "ES", "STRATEGIES", "CovarianceES", "EvolutionConfig", "EvolutionResult", "OpenAIES",
           "centred_ranks", "es_gradient", "flat_weights", "generation_transitions", "load_weights",
           "population_costs", "train"]
