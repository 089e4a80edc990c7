"""The vector face: N environments stepped in one batched torch call, with Gymnasium's three autoreset modes.

Environment ``i`` of a vector env reset with ``seed=s`` draws exactly the numbers of a single
environment reset with ``seed=s + i`` (counter-based draws, :mod:`diffenvs.core.random`),
so N single environments and one vector env give the same trajectories. In float64 (the
default) both faces take the same arithmetic steps in the same order, the step index and the
time included; they differ only where a definition calls a transcendental function
(``exp``, ``sin``, ``erf``, ``sqrt``, ``log1p``) or a linear solve, which Python's ``math``
(the single face) and torch's vectorised kernels (this face) may round differently in the
last bit.

The arithmetic is :func:`~diffenvs.core.vector_step.batched_step`, a pure function of an
immutable :class:`~diffenvs.core.vector_step.VectorState` (fused into one kernel with
``compile=True``). The Gymnasium class here converts types (numpy or torch in and out), checks
its inputs at the boundary, and handles seeding and autoreset.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import reprlib
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.error import ResetNeeded
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from diffenvs.core import random
from diffenvs.core.gym_face import action_space, observation_space, render_fps
from diffenvs.core.numerics import TORCH, stack
from diffenvs.core.problem import Problem, ProblemAttributes
from diffenvs.core.transition import OBSERVATION_LIMIT
from diffenvs.core.validation import as_array, as_finite_batch, as_integer, check_options
from diffenvs.core.vector_step import Batch, CompiledStep, Stepper, VectorState, batched_step, seeded_counters

__all__ = ["ARRAYS", "DiffVectorEnv", "as_finite_batch", "check_autoreset_mode", "check_reset_mask", "checked_device",
           "intra_op_threads"]

#: the array types a vector env can return
ARRAYS = ("numpy", "torch")


def check_reset_mask(mask: Any, num_envs: int) -> np.ndarray:
    """``options["reset_mask"]`` as Gymnasium's vector envs take it: a numpy bool array ``(num_envs,)``, not all False
    (a torch bool tensor, as a torch vector env returns its flags, is taken as its numpy array)."""
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    if not isinstance(mask, np.ndarray):
        raise TypeError(f'options["reset_mask"] must be a numpy array, got {type(mask).__name__}')
    if mask.shape != (num_envs,):
        raise ValueError(f'options["reset_mask"] must have shape ({num_envs},), got {mask.shape}')
    if mask.dtype != np.bool_:
        raise TypeError(f'options["reset_mask"] must have dtype bool, got {mask.dtype}')
    if not mask.any():
        raise ValueError('options["reset_mask"] must have at least one True entry, got none')
    return mask


def check_autoreset_mode(mode: Any) -> AutoresetMode:
    """``mode`` as a :class:`gymnasium.vector.AutoresetMode` (the enum or its value, e.g. ``"SameStep"``)."""
    if isinstance(mode, AutoresetMode):
        return mode
    try:
        return AutoresetMode(mode)
    except ValueError:
        raise ValueError(f"autoreset_mode must be a gymnasium.vector.AutoresetMode or one of "
                         f"{[m.value for m in AutoresetMode]}, got {mode!r}") from None


def checked_device(device: Any) -> torch.device:
    """``device`` (a name such as ``"cpu"`` or ``"cuda:1"``, a ``torch.device`` or a GPU index) as a ``torch.device`` that
    can hold tensors here, else ``ValueError`` (``TypeError`` for another type) naming ``device``."""
    if isinstance(device, (bool, np.bool_)) or not isinstance(device, (str, torch.device, int, np.integer)):
        raise TypeError(f"device must be a torch.device, a device name such as 'cpu' or 'cuda:0', or a GPU index, "
                        f"got {device!r} of type {type(device).__name__}")
    try:
        chosen = torch.device(int(device) if isinstance(device, np.integer) else device)
    except (RuntimeError, ValueError) as error:
        raise ValueError(f"device must name a torch device such as 'cpu' or 'cuda:0', got {device!r} ({error})") from None
    if chosen.type == "meta":
        raise ValueError("device must hold values: 'meta' tensors have none; use 'cpu' or a GPU")
    try:
        torch.zeros((), device=chosen)
    except (RuntimeError, AssertionError) as error:  # torch raises AssertionError where it was built without CUDA
        raise ValueError(f"device {device!r} is not available here ({str(error).strip() or type(error).__name__})") \
            from None
    return chosen


@contextlib.contextmanager
def intra_op_threads(threads: int | None) -> Iterator[None]:
    """Torch's intra-op thread count set to ``threads`` inside the block and restored after it (``None``: unchanged)."""
    previous = torch.get_num_threads()
    if threads is None or threads == previous:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class DiffVectorEnv(ProblemAttributes, VectorEnv):
    """Batched Gymnasium vector environment of a :class:`~diffenvs.core.problem.Problem`.

    Arguments: ``num_envs``; ``dtype`` (``torch.float64`` by default, the single
    environment's precision; ``torch.float32`` for throughput); ``device`` (``"cpu"``,
    ``"cuda"``, ...); ``compile`` (fuse the step into one kernel, traced and compiled by TorchInductor once per
    machine, :mod:`diffenvs.core.compiler`: seconds to compile the first time, then several times faster at large
    ``num_envs``); ``array``
    (``"numpy"``, the default: actions, observations, rewards and flags are numpy arrays, rewards
    float64; ``"torch"``: they are torch tensors on ``device``, rewards in ``dtype``, with no numpy
    round trip, for torch learners); ``threads`` (the intra-op threads the step runs on, 1 by
    default; ``None``: torch's own setting); ``autoreset_mode`` (a
    :class:`gymnasium.vector.AutoresetMode`, also in ``metadata["autoreset_mode"]`` and
    :attr:`autoreset_mode`):

    - ``NEXT_STEP`` (default): an environment whose episode ended at one ``step`` restarts
      during the next one, which ignores its action and returns its first observation with
      reward 0 and both flags false;
    - ``SAME_STEP``: the ``step`` that ends an episode returns the next episode's first
      observation, with the last one in ``info["final_obs"]`` (an object array, ``None`` for the
      environments that did not end), that step's info in ``info["final_info"]``, and the masks
      ``info["_final_obs"]``, ``info["_final_info"]``;
    - ``DISABLED``: nothing restarts by itself; ``reset(options={"reset_mask": mask})`` restarts
      the environments where ``mask`` is true, and stepping an ended one raises ``ResetNeeded``.

    ``reset(options={"reset_mask": mask})`` works in every mode, as in Gymnasium's own vector
    envs (with ``seed=s`` environment ``i`` of the mask is seeded ``s + i``); ``options["state"]``
    gives the physical start states ``(num_envs, n)`` (only the masked rows are used with a mask).
    The rest builds the problem. The batched physical state is :attr:`state` ``(num_envs, n)``
    (numpy, float64). An info key is paired with a mask ``_key`` saying which environments it
    holds for (``nonfinite_state``: the state left the representable range, the episode is
    truncated and keeps its last good state). With ``array="torch"`` the info's arrays are tensors
    on ``device`` too (``final_obs`` stays an object array, of tensors). Each step returns new
    arrays: an observation returned is not overwritten by later steps.

    Declared for clients: ``metadata["render_fps"]`` is the single environment's (one frame per step),
    and :attr:`reward_space` a ``Box`` of shape ``(1,)`` in the rewards' dtype (TorchRL builds its reward
    spec from it). Arguments are checked when the env is built: ``compile`` is a bool, ``device`` one that
    can hold tensors here (``ValueError`` naming it otherwise).

    Threads: the step of a batch is short (a fraction of a millisecond at 16384 environments),
    and OpenMP's barriers between several threads stall whenever another process takes a core:
    on a loaded 2-core machine two threads ran 6 to 30 times slower than one. So the step runs on
    ``threads=1`` intra-op thread unless told otherwise: a compiled step is generated for that many
    threads, and an eager step sets torch's thread count for the duration of the step and restores
    it after (torch's global setting is otherwise left alone). ``threads=None`` uses torch's
    setting (``torch.get_num_threads()``), faster on an idle machine with large batches.
    """

    problem_type: ClassVar[type[Problem[Any]]]
    metadata = {"render_modes": ["rgb_array"], "render_fps": 50, "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 1, render_mode: str | None = None, dtype: torch.dtype = torch.float64,
                 device: str | torch.device = "cpu", compile: bool = False,
                 autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP, array: str = "numpy",
                 threads: int | None = 1, **problem_kwargs: Any):
        num_envs = as_integer("num_envs", num_envs, wrong_type=TypeError)
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        if not (isinstance(array, str) and array in ARRAYS):
            raise ValueError(f"array must be one of {ARRAYS}, got {array!r}")
        if not isinstance(compile, (bool, np.bool_)):
            raise TypeError(f"compile must be True or False, got {compile!r}")
        device = checked_device(device)
        self.array = array
        #: the intra-op threads the step runs on (``None``: torch's setting)
        self.threads = None if threads is None else as_integer("threads", threads, or_none=True)
        self.autoreset_mode = check_autoreset_mode(autoreset_mode)
        self.problem = self.problem_type(**problem_kwargs)
        # the single environment's frame rate (one frame per step), for HumanRendering and RecordVideo
        self.metadata = {**self.metadata, "autoreset_mode": self.autoreset_mode,
                         "render_fps": render_fps(self.problem.dt)}
        self.num_envs, self.render_mode = num_envs, render_mode
        self.dtype, self.device = dtype, device
        self.single_observation_space = observation_space(self.problem)
        self.single_action_space = action_space(self.problem)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        params = self.problem.params_like(self.problem.params, torch.zeros((), dtype=dtype, device=self.device))
        self.batch = Batch(self.problem, params, dtype, self.device, torch.float64 if array == "numpy" else dtype)
        #: the dtype of one environment's reward as the steps return it, declared for TorchRL (which reads
        #: ``reward_space`` and otherwise expects float32): shape ``(1,)``, TorchRL's shape of one reward
        self.reward_space = spaces.Box(-np.inf, np.inf, shape=(1,),
                                       dtype=np.float64 if self.batch.reward_dtype == torch.float64 else np.float32)
        self._step_fn: Stepper = CompiledStep(self.batch, self.threads) if compile \
            else functools.partial(batched_step, self.batch)
        #: whether the step is compiled (``compile=True``)
        self.compiled = bool(compile)
        kind, count = self.problem.initial_draws
        #: uniform draws are integer arithmetic, the same on every device and in a compiled kernel: the step restarts
        #: episodes itself; normal draws (log, sin, cos) are made with numpy, as the single environment makes them
        self._draws_in_step = kind == "uniform" or count == 0
        self._batch_state: VectorState | None = None
        #: ``VectorState.ended`` where no episode has ended (shared, so read-only)
        self._none_ended = np.zeros(num_envs, dtype=bool)
        self._none_ended.flags.writeable = False

    @property
    def state(self) -> np.ndarray:
        """Physical states, float64, shape ``(num_envs, n)``."""
        if self._batch_state is None:
            raise ResetNeeded("the environment has no state before reset()")
        return stack(self.problem.state_to_physical(self._batch_state.x)).double().cpu().numpy()

    # ---- conversions at the boundary ---------------------------------------------------
    def _out(self, value: torch.Tensor | np.ndarray) -> Any:
        """An output in the env's array type: a tensor on its device (the step's tensors are), or a numpy array."""
        if self.array == "torch":
            return value if isinstance(value, torch.Tensor) else torch.from_numpy(value).to(self.device)
        return value.cpu().numpy() if isinstance(value, torch.Tensor) else value

    def _out_info(self, info: dict[str, Any]) -> dict[str, Any]:
        if self.array == "numpy":
            return info
        return {key: self._out_info(value) if isinstance(value, dict) else value if value.dtype == object else self._out(value)
                for key, value in info.items()}

    def _actions(self, actions: Any) -> torch.Tensor:
        """The actions as a contiguous tensor of the env's dtype on its device, of the action space's shape.

        Real numbers only (a tensor of bools or complex numbers raises ``TypeError``, as an array of them does). Every
        action is clipped to ``[-1, 1]`` by the step: a finite action beyond the float32 range is taken as the largest
        float32 of its sign by a float32 env (what it clips to is the same), not as infinite.
        """
        shape = tuple(self.action_space.shape or ())
        if isinstance(actions, torch.Tensor):
            if actions.dtype == torch.bool or actions.dtype.is_complex:
                raise TypeError(f"actions must be real numbers (ints or floats), got a tensor of dtype {actions.dtype}")
            if tuple(actions.shape) != shape:
                raise ValueError(f"actions must have shape {shape}, got shape {tuple(actions.shape)}")
            tensor = actions.detach().to(self.device)
        else:
            array = actions if isinstance(actions, np.ndarray) and actions.dtype in (np.float32, np.float64) \
                else as_array("actions", actions, shape)
            if array.shape != shape:
                raise ValueError(f"actions must have shape {shape}, got shape {array.shape}")
            tensor = torch.as_tensor(array, device=self.device)
        if tensor.dtype == torch.float64 and self.dtype == torch.float32:  # finite stays finite
            largest = torch.finfo(torch.float32).max
            tensor = torch.where(torch.isinf(tensor), tensor, tensor.clamp(-largest, largest))
        return tensor.to(self.dtype).contiguous()

    def _given_states(self, states: Any, indices: np.ndarray) -> tuple[torch.Tensor, ...]:
        """The internal start states of ``options["state"]``'s rows ``indices``, checked."""
        n, problem = self.num_envs, self.problem
        rows = as_finite_batch('options["state"]', states, (n, problem.state_dim))[indices]
        for i, state in zip(indices, rows):
            try:
                problem.check_state(state)
            except ValueError as error:
                raise ValueError(f'options["state"] row {i}: {error}') from None
        fresh = self.batch.rows(problem.state_from_physical(self.batch.tensor(rows).unbind(-1), self.batch.params, TORCH),
                                len(indices))
        zero = torch.zeros(len(indices), dtype=torch.int32, device=self.device)
        if not bool((self.batch.observe(zero, fresh).abs() <= OBSERVATION_LIMIT).all()):
            raise ValueError('options["state"] gives observations outside the float32 range')
        return fresh

    # ---- Gymnasium API -----------------------------------------------------------------
    def reset(self, *, seed: int | list[int | None] | None = None,
              options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Start new episodes: of every environment, or of those in ``options["reset_mask"]`` (see the class docstring)."""
        options = check_options(options, ("state", "reset_mask"))
        with intra_op_threads(self.threads):
            self._batch_state = self._reset(seed, options)
        observation = self._batch_state.observation
        return self._out(observation.clone() if self.array == "torch" else observation.cpu().numpy().copy()), {}

    def _reset(self, seed: int | list[int | None] | None, options: dict[str, Any]) -> VectorState:
        """The state after a reset; nothing changes before every check has passed."""
        n, previous = self.num_envs, self._batch_state
        if "reset_mask" in options:
            if previous is None:
                raise ResetNeeded('reset() every environment once before a reset with options["reset_mask"]')
            indices = np.flatnonzero(check_reset_mask(options["reset_mask"], n))
        else:
            indices = np.arange(n)
        fresh = self._given_states(options["state"], indices) if "state" in options else None
        keys, episodes = seeded_counters(seed, indices, None if previous is None else previous.keys,
                                         np.zeros(n, np.uint64) if previous is None else previous.episodes, n)
        if fresh is None:
            fresh = self.batch.initial(keys[indices], episodes[indices])
        if previous is None or len(indices) == n:
            empty = torch.zeros(0)
            blank = VectorState((), (), empty, empty, keys, episodes, np.zeros(n, dtype=bool))
            return self.batch.first(blank, fresh)
        return self.batch.start(dataclasses.replace(previous, keys=keys, episodes=episodes), indices, fresh)[0]

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        """One step of every environment; what an ended episode does depends on :attr:`autoreset_mode`."""
        if self._batch_state is None:
            raise ResetNeeded("call reset() before step()")
        if self.autoreset_mode == AutoresetMode.DISABLED and self._batch_state.ended.any():
            ended = np.flatnonzero(self._batch_state.ended)
            raise ResetNeeded(f"{len(ended)} environments have ended (the first: {ended[:5].tolist()}); autoreset_mode is "
                              'DISABLED: restart them with reset(options={"reset_mask": mask}) before step()')
        if self.threads is None or self.threads == torch.get_num_threads():
            return self._step(self._batch_state, self._actions(actions))
        with intra_op_threads(self.threads):
            return self._step(self._batch_state, self._actions(actions))

    def _step(self, state: VectorState, action: torch.Tensor) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        problem, batch, n = self.problem, self.batch, self.num_envs
        noise = None
        if problem.step_noise:
            counters = state.steps.cpu().numpy().astype(np.uint64) + np.uint64(1)
            noise = batch.tensor(random.normal(state.keys, state.episodes, counters, problem.step_noise))
        # next-step autoreset: environments whose episode ended at the previous step restart now
        restarting = np.flatnonzero(state.ended) if state.ended.any() else None
        restart = keys = episodes = None
        if restarting is not None and self._draws_in_step:
            restart = torch.from_numpy(state.ended.copy()).to(self.device)
            keys, episodes = (torch.from_numpy(a.view(np.int64)).to(self.device) for a in (state.keys, state.episodes))
            episodes = episodes + restart  # their next episode (the counters advance once the step is taken)
        out = self._step_fn(state.steps, state.x, state.x0, action, noise, restart, keys, episodes)
        actions_finite, raised = out.status.tolist()  # one conversion
        if not actions_finite:  # nothing has changed; the error names the rows
            as_finite_batch("actions", action.cpu().numpy(), tuple(self.action_space.shape or ()))
        reward, episodes_after = out.reward, state.episodes
        if restart is not None:
            episodes_after = state.episodes.copy()
            episodes_after[restarting] += np.uint64(1)
        new = VectorState(out.x, state.x0 if out.x0 is None else out.x0, out.steps, out.observation, state.keys,
                          episodes_after, self._none_ended)
        if not raised and (restarting is None or restart is not None):  # the common step: no flag, nothing to redo
            self._batch_state = new
            if self.array == "torch":
                return (new.observation, reward, torch.zeros(n, dtype=torch.bool, device=self.device),
                        torch.zeros(n, dtype=torch.bool, device=self.device), {})
            return new.observation.cpu().numpy(), reward.cpu().numpy(), np.zeros(n, bool), np.zeros(n, bool), {}
        terminated, truncated, finite = out.flags.cpu().numpy() != 0
        if restarting is not None and restart is None:  # draws the step does not make: the start states from numpy
            new = batch.next_episode(new, restarting)[0]
            reward = reward.index_fill(0, torch.as_tensor(restarting, device=self.device), 0.0)
            terminated[restarting], truncated[restarting], finite[restarting] = False, False, True
        nonfinite = ~finite
        if nonfinite.any():  # a state that left the representable range shows its last observation again
            keep = torch.as_tensor(finite, device=self.device)[:, None]
            new = dataclasses.replace(new, observation=torch.where(keep, new.observation, state.observation))
        new, info = self._autoreset(new, terminated | truncated, nonfinite)
        self._batch_state = new
        return (self._out(new.observation), self._out(reward), self._out(terminated), self._out(truncated),
                self._out_info(info))

    def _autoreset(self, state: VectorState, ended: np.ndarray, nonfinite: np.ndarray
                   ) -> tuple[VectorState, dict[str, Any]]:
        """The state after a step whose episodes ``ended``, and the step's info, as :attr:`autoreset_mode` has them."""
        step_info = {"nonfinite_state": nonfinite, "_nonfinite_state": nonfinite.copy()} if nonfinite.any() else {}
        if self.autoreset_mode != AutoresetMode.SAME_STEP or not ended.any():
            return dataclasses.replace(state, ended=ended), step_info
        indices = np.flatnonzero(ended)
        final_obs = np.full(self.num_envs, None, dtype=object)
        if self.array == "torch":
            for i in indices:
                final_obs[i] = state.observation[i].clone()
        else:
            rows = state.observation.cpu().numpy()
            for i in indices:
                final_obs[i] = rows[i].copy()
        info = dict(final_obs=final_obs, _final_obs=ended.copy(), final_info=step_info, _final_info=ended.copy())
        return self.batch.next_episode(state, indices)[0], info

    def restart_episodes(self, indices: Any) -> Any:
        """Start the next episode of the environments ``indices`` now, as the next-step autoreset would; their
        first observations ``(len(indices), obs)``.

        The draw is the one the autoreset would make (each environment's episode counter advances by
        one), so a same-step-autoreset wrapper (e.g. an SB3 ``VecEnv``) gives the trajectories of the
        single environments. The pending autoreset of those environments is cleared.
        """
        if self._batch_state is None:
            raise ResetNeeded("call reset() before restart_episodes()")
        given = np.asarray(indices.detach().cpu() if isinstance(indices, torch.Tensor) else indices)
        if given.size and given.dtype.kind not in "iu":
            raise TypeError(f"indices must be integers (environment indices), got {reprlib.repr(given.tolist())} of dtype "
                            f"{given.dtype}" + (": for a mask, pass np.flatnonzero(mask)" if given.dtype == bool else ""))
        indices = given.astype(np.int64).reshape(-1)
        if indices.size and (indices.min() < 0 or indices.max() >= self.num_envs):
            raise ValueError(f"indices must lie in [0, {self.num_envs}), got {reprlib.repr(indices.tolist())}")
        with intra_op_threads(self.threads):
            self._batch_state, first = self.batch.next_episode(self._batch_state, indices)
        return self._out(first)

    def render(self) -> tuple[np.ndarray, ...] | None:
        if self.render_mode is None:
            return None
        return tuple(self.problem.render(s) for s in self.state)
