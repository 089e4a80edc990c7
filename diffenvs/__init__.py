"""diffenvs: continuous-time control environments with one definition and three faces.

* the Gymnasium face: ``gymnasium.make("DiffCartpole-v0")``;
* the vector face: ``gymnasium.make_vec("DiffCartpole-v0", num_envs=N, vectorization_mode="vector_entry_point")``;
* the gradient path: :func:`diffenvs.rollout`, a batched differentiable torch rollout.
"""

from gymnasium.envs.registration import register

from diffenvs.core.rollout import RK4, Adaptive, Adjoint, Trajectory, rollout

__all__ = ["RK4", "Adaptive", "Adjoint", "Trajectory", "rollout", "ENV_IDS", "problem_of"]

ENV_IDS = ("DiffZermelo-v0", "DiffCartpole-v0", "DiffIsochronism-v0", "DiffLinearSysID-v0", "DiffDecayDesign-v0")
_MODULES = {
    "DiffZermelo-v0": ("zermelo", "Zermelo"),
    "DiffCartpole-v0": ("cartpole", "Cartpole"),
    "DiffIsochronism-v0": ("isochronism", "Isochronism"),
    "DiffLinearSysID-v0": ("linear_sysid", "LinearSysID"),
    "DiffDecayDesign-v0": ("decay_design", "DecayDesign"),
}
for _id, (_module, _name) in _MODULES.items():
    register(
        id=_id,
        entry_point=f"diffenvs.{_module}:{_name}Env",
        vector_entry_point=f"diffenvs.{_module}:{_name}VectorEnv",
    )


def problem_of(env_id: str, **kwargs):
    """The definition (problem) behind a registered id, built with ``kwargs``."""
    import importlib

    if env_id not in _MODULES:
        raise ValueError(f"env_id must be one of {ENV_IDS}, got {env_id!r}")
    module, name = _MODULES[env_id]
    return getattr(importlib.import_module(f"diffenvs.{module}"), name)(**kwargs)
