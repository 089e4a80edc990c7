"""The vector face: N environments stepped in one batched torch call, with Gymnasium's three autoreset modes.

Environment ``i`` of a vector env reset with ``seed=s`` draws exactly the numbers of a single
environment reset with ``seed=s + i`` (counter-based draws, :mod:`diffenvs.core.random`),
so N single environments and one vector env give the same trajectories. In float64 (the
default) both faces take the same arithmetic steps in the same order, the step index and the
time included; they differ only where a definition calls a transcendental function
(``exp``, ``sin``, ``erf``, ``sqrt``, ``log1p``) or a linear solve, which Python's ``math``
(the single face) and torch's vectorised kernels (this face) may round differently in the
last bit.

The step is one function of the batch, :meth:`DiffVectorEnv._batched_step`, fused into one kernel
with ``compile=True``: the transition, the observation (written once, contiguously), the reward,
the flags and, for the environments whose episode ended at the previous step, the next-step
autoreset with its random draws (counter-based integer arithmetic,
:func:`~diffenvs.core.random.uniform_tensor`, the same numbers as the numpy draws).
"""

from __future__ import annotations

import contextlib
import reprlib
import types
from collections.abc import Iterator
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium.error import ResetNeeded
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from diffenvs.core import random
from diffenvs.core.gym_face import action_space, initial_draws, observation_space
from diffenvs.core.numerics import TORCH, stack
from diffenvs.core.problem import Held, Problem, ProblemAttributes
from diffenvs.core.transition import OBSERVATION_LIMIT, transition
from diffenvs.core.validation import as_array, check_options


def check_num_envs(num_envs: Any) -> int:
    """``num_envs`` as an ``int``: a Python or numpy integer of at least 1 (not a bool), else an error naming it."""
    if isinstance(num_envs, (bool, np.bool_)) or not isinstance(num_envs, (int, np.integer)):
        raise TypeError(f"num_envs must be a positive integer, got {num_envs!r} of type {type(num_envs).__name__}")
    if num_envs < 1:
        raise ValueError(f"num_envs must be a positive integer, got {int(num_envs)}")
    return int(num_envs)


def as_finite_batch(name: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    """``value`` as a float64 array of exactly ``shape`` (rows first) with finite entries, else ``ValueError``.

    A batch can hold a million rows: the error names the shapes, or the number of rows that are
    not finite and the first of them (its index and its values), never the whole batch.
    """
    array = as_array(name, value, shape)
    bad = np.flatnonzero(~np.isfinite(array.reshape(shape[0], -1)).all(axis=1))
    if len(bad):
        raise ValueError(f"{name} must be finite: {len(bad)} of {shape[0]} rows are not, the first is row {bad[0]}: "
                         f"{array[bad[0]].tolist()}")
    return array


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


#: the array types a vector env can return
ARRAYS = ("numpy", "torch")


def check_array(array: Any) -> str:
    """``array`` as one of :data:`ARRAYS`, else ``ValueError`` naming the argument."""
    if not (isinstance(array, str) and array in ARRAYS):
        raise ValueError(f"array must be one of {ARRAYS}, got {array!r}")
    return array


def check_threads(threads: Any) -> int | None:
    """``threads`` as a positive ``int`` or ``None``, else ``ValueError`` naming the argument."""
    if threads is None:
        return None
    if isinstance(threads, (bool, np.bool_)) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
    return int(threads)


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


def check_autoreset_mode(mode: Any) -> AutoresetMode:
    """``mode`` as a :class:`gymnasium.vector.AutoresetMode` (the enum or its value, e.g. ``"SameStep"``)."""
    if isinstance(mode, AutoresetMode):
        return mode
    try:
        return AutoresetMode(mode)
    except ValueError:
        raise ValueError(f"autoreset_mode must be a gymnasium.vector.AutoresetMode or one of "
                         f"{[m.value for m in AutoresetMode]}, got {mode!r}") from None


def own_code(method: Any) -> Any:
    """``method`` bound to its object again, through a copy of its function with a code object of its own.

    ``torch.compile`` keeps the graphs it compiled per code object, at most 8 by default: with the
    class's one code object, every env instance's graphs (guarded on the instance) would fill that
    cache and the ninth would run eagerly. Each env compiles into its own cache instead.
    """
    function = method.__func__
    copy = types.FunctionType(function.__code__.replace(), function.__globals__, function.__name__,
                              function.__defaults__, function.__closure__)
    copy.__qualname__, copy.__doc__ = function.__qualname__, function.__doc__
    return types.MethodType(copy, method.__self__)


def _rows(mask: torch.Tensor, new: Any, old: torch.Tensor) -> torch.Tensor:
    """``new`` in the rows where ``mask`` is true, else ``old`` (``new`` may be a constant; ``mask`` has one entry per row)."""
    mask = mask.reshape(mask.shape + (1,) * (old.dim() - mask.dim()))
    return torch.where(mask, torch.as_tensor(new, dtype=old.dtype, device=old.device), old)


class DiffVectorEnv(ProblemAttributes, VectorEnv):
    """Batched Gymnasium vector environment of a :class:`~diffenvs.core.problem.Problem`.

    Arguments: ``num_envs``; ``dtype`` (``torch.float64`` by default, the single
    environment's precision; ``torch.float32`` for throughput); ``device`` (``"cpu"``,
    ``"cuda"``, ...); ``compile`` (fuse the step into one kernel with ``torch.compile``:
    seconds to compile, then several times faster at large ``num_envs``); ``array``
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

    Threads: the step of a batch is short (a fraction of a millisecond at 16384 environments),
    and OpenMP's barriers between several threads stall whenever another process takes a core:
    on a loaded 2-core machine two threads ran 6 to 30 times slower than one. So the step runs on
    ``threads=1`` intra-op thread unless told otherwise: a compiled step is generated for that many
    threads, and an eager step sets torch's thread count for the duration of the step and restores
    it after (torch's global setting is otherwise left alone). ``threads=None`` uses torch's
    setting (``torch.get_num_threads()``), faster on an idle machine with large batches.
    """

    problem_type: ClassVar[type[Problem]]
    metadata: ClassVar[dict] = {"render_modes": ["rgb_array"], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 1, render_mode: str | None = None, dtype: torch.dtype = torch.float64,
                 device: str | torch.device = "cpu", compile: bool = False,
                 autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP, array: str = "numpy",
                 threads: int | None = 1, **problem_kwargs: Any):
        num_envs = check_num_envs(num_envs)
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.array = check_array(array)
        self.threads = check_threads(threads)
        self.autoreset_mode = check_autoreset_mode(autoreset_mode)
        self.metadata = {**self.metadata, "autoreset_mode": self.autoreset_mode}
        self.problem = self.problem_type(**problem_kwargs)
        self.num_envs, self.render_mode = num_envs, render_mode
        self.dtype, self.device = dtype, torch.device(device)
        self.single_observation_space = observation_space(self.problem)
        self.single_action_space = action_space(self.problem)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._tensor_params = self.problem.params_like(self.problem.params, torch.zeros((), dtype=dtype, device=self.device))
        #: rewards as the array type has them: float64 in numpy (as Gymnasium's vector envs), the env's dtype in torch
        self._reward_dtype = torch.float64 if self.array == "numpy" else dtype
        options = {} if self.threads is None else {"cpp.threads": self.threads}
        self._step_fn = torch.compile(own_code(self._batched_step), dynamic=False, options=options) if compile \
            else self._batched_step
        #: whether the step is compiled (``compile=True``)
        self.compiled = bool(compile)
        self._compiled: set[tuple[bool, ...]] = set()  # the variants of the compiled step called once (see _stance)
        kind, count = self.problem.initial_draws
        #: uniform draws are integer arithmetic, the same on every device and in a compiled kernel: the step restarts
        #: episodes itself; normal draws (log, sin, cos) are made with numpy, as the single environment makes them
        self._draws_in_step = kind == "uniform" or count == 0
        self._keys: np.ndarray | None = None
        self._episodes = np.zeros(num_envs, np.uint64)
        self._state: tuple[torch.Tensor, ...] | None = None  # the state's components (see _x), and the episodes' starts
        self._state0: tuple[torch.Tensor, ...] | None = None
        self._packed_state: tuple[Any, Any] | None = None  # both as the step takes them (see _packed)
        self._obs: torch.Tensor | None = None  # the last observation, float32 (returned again for a non-finite state)
        #: environments whose episode has ended and that have not restarted yet
        self._ended = np.zeros(num_envs, dtype=bool)

    @property
    def state(self) -> np.ndarray:
        """Physical states, float64, shape ``(num_envs, n)``."""
        if self._x is None:
            raise ResetNeeded("the environment has no state before reset()")
        return stack(self.problem.state_to_physical(self._x)).double().cpu().numpy()

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(array, dtype=self.dtype, device=self.device)

    def _out(self, value: torch.Tensor | np.ndarray) -> Any:
        """An output in the env's array type: a tensor on its device, or a numpy array."""
        if self.array == "torch":
            return torch.as_tensor(value, device=self.device)
        return value.cpu().numpy() if isinstance(value, torch.Tensor) else value

    def _out_info(self, info: dict) -> dict:
        if self.array == "numpy":
            return info
        return {key: self._out_info(value) if isinstance(value, dict) else value if value.dtype == object else self._out(value)
                for key, value in info.items()}

    def _initial(self, indices: np.ndarray) -> tuple[torch.Tensor, ...]:
        draws = self._tensor(initial_draws(self.problem, self._keys[indices], self._episodes[indices]))
        x = self.problem.initial_state(draws, self._tensor_params, TORCH)
        return self._batched(x, len(indices))

    def _batched(self, x: tuple[Any, ...], n: int) -> tuple[torch.Tensor, ...]:
        """State components as tensors with ``n`` rows (a constant component is broadcast)."""
        return tuple(torch.as_tensor(c, dtype=self.dtype, device=self.device).expand(n) if not isinstance(c, torch.Tensor)
                     or c.dim() == 0 else c for c in x)

    def _seed(self, seed: int | list[int | None] | None, indices: np.ndarray) -> None:
        """Key and episode counter of the environments ``indices``, as N single envs reset with these seeds would set them.

        ``seed=s`` seeds environment ``i`` with ``s + i``; a list gives each environment its seed; ``None`` (or
        a ``None`` in the list) continues an environment's seeded sequence with its next episode.
        """
        n = self.num_envs
        if isinstance(seed, (list, tuple)):
            if len(seed) != n:
                raise ValueError(f"seed must be an int, None or a list of {n} ints, got a list of {len(seed)}")
            seeds = list(seed)
            for i, s in enumerate(seeds):
                if s is not None and (isinstance(s, (bool, np.bool_)) or not isinstance(s, (int, np.integer))):
                    raise TypeError(f"seed[{i}] must be an int or None, got {s!r}")
        elif seed is None or (isinstance(seed, (int, np.integer)) and not isinstance(seed, (bool, np.bool_))):
            seeds = [None] * n if seed is None else None
        else:
            raise TypeError(f"seed must be an int, None or a list of {n} ints, got {seed!r}")
        first = self._keys is None
        if first:
            self._keys, self._episodes = np.zeros(n, np.uint64), np.zeros(n, np.uint64)
        if seed is None and not first:  # every environment continues with its next episode
            self._episodes[indices] += np.uint64(1)
            return
        if seeds is None:  # one int: the seeds s, s + 1, ... (one vectorised draw of the keys)
            self._keys[indices] = random.keys_for_seed(int(seed), n)[indices]
            self._episodes[indices] = 0
            return
        for i in indices:
            s = seeds[i]
            if s is None and not first:
                self._episodes[i] += np.uint64(1)
                continue
            self._keys[i] = random.key_from_generator(gym.utils.seeding.np_random(None if s is None else int(s))[0])
            self._episodes[i] = 0

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict | None = None) -> tuple[Any, dict]:
        """Start new episodes: of every environment, or of those in ``options["reset_mask"]`` (see the class docstring)."""
        options = check_options(options, ("state", "reset_mask"))
        with intra_op_threads(self.threads):
            self._reset(seed, options)
        return self._out(self._obs.clone() if self.array == "torch" else self._obs.cpu().numpy().copy()), {}

    def _reset(self, seed: int | list[int | None] | None, options: dict) -> None:
        n = self.num_envs
        if "reset_mask" in options:
            if self._x is None:
                raise ResetNeeded('reset() every environment once before a reset with options["reset_mask"]')
            indices = np.flatnonzero(check_reset_mask(options["reset_mask"], n))
        else:
            indices = np.arange(n)
        states = None
        if "state" in options:
            states = as_finite_batch('options["state"]', options["state"], (n, self.problem.state_dim))[indices]
            for i, state in zip(indices, states):
                try:
                    self.problem.check_state(state)
                except ValueError as error:
                    raise ValueError(f'options["state"] row {i}: {error}') from None
            fresh = self._batched(self.problem.state_from_physical(self._tensor(states).unbind(-1), self._tensor_params,
                                                                   TORCH), len(indices))
            zero = torch.zeros(len(indices), dtype=torch.int32, device=self.device)
            if not bool((self._observe(zero, fresh).abs() <= OBSERVATION_LIMIT).all()):
                raise ValueError('options["state"] gives observations outside the float32 range')
        self._seed(seed, indices)  # nothing changes before the checks above have passed
        if states is None:
            fresh = self._initial(indices)
        if len(indices) == n:
            self._x = self._x0 = fresh
            self._steps = torch.zeros(n, dtype=torch.int32, device=self.device)
            self._obs = self._observe(self._steps, fresh).to(torch.float32)
        else:
            self._start(indices, fresh)
        self._ended[indices] = False

    def _batched_step(self, steps, x, x0, action, noise, restart, keys, episodes):
        """Everything per step that is arithmetic on the batch, in one function (one kernel when compiled).

        ``steps`` is the step index (int32), turned into the state's dtype so the time ``k * dt`` is
        computed in the precision of the state, as the single environment computes it in float64.
        ``x`` and ``x0`` are tuples of components or (see :meth:`_packed`) one tensor each, returned alike.
        ``restart`` (or ``None``) marks the environments that restart in this step (the next-step
        autoreset): they start their next episode, drawn from their ``keys`` and ``episodes``
        counters (int64 bit patterns, already advanced), and report their first observation, reward 0,
        no flag. Returns the next state, the episodes' start states (``None`` when none restarted), the
        step indices, the observation ``(num_envs, obs)`` float32 (written once, contiguously), the
        reward, the flags ``(terminated, truncated, finite)`` as 0/1 rows of one array (a vectorised
        store; a bool array is stored element by element), and whether every action was finite.
        """
        problem, params = self.problem, self._tensor_params
        packed = isinstance(x, torch.Tensor)
        if packed:
            x, x0 = x.unbind(0), x0.unbind(0)
        k = steps.to(self.dtype)
        control = Held(problem.control_from_action(action.to(self.dtype).unbind(-1), TORCH))
        step = transition(problem, k, x, control, x0=x0, params=params, ns=TORCH,
                          noise=None if noise is None else noise.unbind(-1))
        x1, observation, reward = step.x, step.observation, step.reward
        terminated, truncated, finite = step.terminated, step.truncated, step.finite
        steps1 = steps + 1
        if restart is not None:
            draws = random.uniform_tensor(keys, episodes, 0, problem.initial_draws[1]).to(self.dtype)
            fresh = problem.initial_state(draws, params, TORCH)
            first = problem.observation(torch.zeros_like(k), fresh, params, TORCH)
            x1 = tuple(_rows(restart, f, c) for f, c in zip(fresh, x1))
            x0 = tuple(_rows(restart, f, c) for f, c in zip(fresh, self._batched(x0, len(k))))
            observation = tuple(_rows(restart, f, torch.as_tensor(o, dtype=k.dtype, device=k.device).expand_as(k))
                                for f, o in zip(first, observation))
            reward = _rows(restart, 0.0, reward)
            terminated, truncated, finite = terminated & ~restart, truncated & ~restart, finite | restart
            steps1 = _rows(restart, 0, steps1)
        flags = torch.stack([f.to(k.dtype) for f in (terminated, truncated, finite)])
        x1 = torch.stack(torch.broadcast_tensors(*x1)) if packed else x1
        x0 = None if restart is None else torch.stack(torch.broadcast_tensors(*x0)) if packed else x0  # else unchanged
        return (x1, x0, steps1, stack(observation, like=k).to(torch.float32), reward.to(self._reward_dtype), flags,
                torch.isfinite(action).all())

    def _observe(self, steps: torch.Tensor, x: tuple[torch.Tensor, ...]) -> torch.Tensor:
        t = steps.to(self.dtype) * self.problem.dt
        return stack(self.problem.observation(t, x, self._tensor_params, TORCH), like=t)

    def _actions(self, actions: Any) -> torch.Tensor:
        """The actions as a contiguous tensor of the env's dtype on its device, of the action space's shape."""
        shape = self.action_space.shape
        if isinstance(actions, torch.Tensor):
            if tuple(actions.shape) != shape:
                raise ValueError(f"actions must have shape {shape}, got shape {tuple(actions.shape)}")
            return actions.detach().to(self.device, self.dtype).contiguous()
        array = np.asarray(actions) if isinstance(actions, np.ndarray) else None
        if array is None or array.dtype not in (np.float32, np.float64):
            array = as_array("actions", actions, shape)
        if array.shape != shape:
            raise ValueError(f"actions must have shape {shape}, got shape {array.shape}")
        return torch.as_tensor(array, device=self.device).to(self.dtype).contiguous()

    def _packed(self) -> tuple[Any, Any]:
        """The state and start states as the step takes them: one ``(n, num_envs)`` tensor each when every component
        has one value per environment (fewer tensors through the compiled call), else the tuples of components."""
        if self._packed_state is None:
            if all(c.dim() == 1 for c in (*self._x, *self._x0)):
                self._packed_state = torch.stack(self._x), torch.stack(self._x0)
            else:
                self._packed_state = self._x, self._x0
        return self._packed_state

    def _set_state(self, x: Any, x0: Any) -> None:
        """Keep the state the step returned (packed or as components) and the start states (``None``: unchanged)."""
        x0 = self._packed_state[1] if x0 is None else x0
        state0 = self._state0 if x0 is self._packed_state[1] else x0.unbind(0) if isinstance(x0, torch.Tensor) else x0
        self._state, self._state0 = x.unbind(0) if isinstance(x, torch.Tensor) else x, state0
        self._packed_state = x, x0

    @property
    def _x(self) -> tuple[torch.Tensor, ...] | None:
        return self._state

    @_x.setter
    def _x(self, x: tuple[torch.Tensor, ...] | None) -> None:
        self._state, self._packed_state = x, None

    @property
    def _x0(self) -> tuple[torch.Tensor, ...] | None:
        return self._state0

    @_x0.setter
    def _x0(self, x0: tuple[torch.Tensor, ...] | None) -> None:
        self._state0, self._packed_state = x0, None

    def _stance(self, packed: bool, variant: tuple[bool, ...]) -> Any:
        """How the compiled step is called: once a variant is compiled, without re-checking its guards on constants.

        The step function reads only constants of this env (its frozen problem, params and dtypes) and,
        packed, takes contiguous tensors of fixed shapes and dtypes, so the guards torch.compile puts
        on them hold from the second call of a variant on; checking them cost as much as the rest of a
        step's Python. The guards that tell the compiled variants (with or without a restart, with or
        without noise) apart are still checked.
        """
        if not self.compiled or not packed or variant not in self._compiled:
            self._compiled.add(variant)
            return contextlib.nullcontext()
        return torch.compiler.set_stance("default", skip_guard_eval_unsafe=True)

    def _counters(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The keys and episode counters as int64 tensors (their bit patterns) on the env's device."""
        return tuple(torch.from_numpy(a.view(np.int64)).to(self.device) for a in (self._keys, self._episodes))

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict]:
        """One step of every environment; what an ended episode does depends on :attr:`autoreset_mode`."""
        if self._x is None:
            raise ResetNeeded("call reset() before step()")
        mode = self.autoreset_mode
        if mode == AutoresetMode.DISABLED and self._ended.any():
            ended = np.flatnonzero(self._ended)
            raise ResetNeeded(f"{len(ended)} environments have ended (the first: {ended[:5].tolist()}); autoreset_mode is "
                              'DISABLED: restart them with reset(options={"reset_mask": mask}) before step()')
        with intra_op_threads(self.threads):
            return self._step(actions)

    def _step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict]:
        problem, mode = self.problem, self.autoreset_mode
        action = self._actions(actions)
        noise = None
        if problem.step_noise:
            steps = self._steps.cpu().numpy().astype(np.uint64) + np.uint64(1)
            noise = self._tensor(random.normal(self._keys, self._episodes, steps, problem.step_noise))
        # next-step autoreset: environments whose episode ended at the previous step restart now
        restarting = np.flatnonzero(self._ended)
        restart = keys = episodes = None
        if len(restarting) and self._draws_in_step:
            restart = torch.from_numpy(self._ended.copy()).to(self.device)
            keys, episodes = self._counters()
            episodes = episodes + restart  # their next episode (the counters advance once the step is taken)
        steps, obs = self._steps, self._obs
        packed, packed0 = self._packed()
        inputs = steps, packed, packed0, action, noise, restart, keys, episodes
        try:
            with self._stance(isinstance(packed, torch.Tensor), (restart is None, noise is None)):
                outputs = self._step_fn(*inputs)
        except RuntimeError as error:  # a guard that does change failed (e.g. torch's thread count): compile again
            if "skip_guard_eval_unsafe" not in str(error):
                raise
            outputs = self._step_fn(*inputs)
        x1, x01, steps1, observation, reward, flags, actions_finite = outputs
        if not bool(actions_finite):  # nothing has changed; the error names the rows
            as_finite_batch("actions", action.cpu().numpy(), self.action_space.shape)
        self._steps = steps1
        self._set_state(x1, x01)
        self._obs = observation
        terminated, truncated, finite = flags.cpu().numpy() != 0
        if restart is not None:
            self._episodes[restarting] += np.uint64(1)
        elif len(restarting):  # draws the step does not make: the start states come from numpy
            self._start(restarting, self._next_episode(restarting))
            index = torch.as_tensor(restarting, device=self.device)
            reward = reward.index_fill(0, index, 0.0)
            terminated[restarting], truncated[restarting], finite[restarting] = False, False, True
        nonfinite = ~finite
        if nonfinite.any():  # a state that left the representable range shows its last observation again
            self._obs = torch.where(torch.as_tensor(finite, device=self.device)[:, None], self._obs, obs)
        ended = terminated | truncated
        step_info = {"nonfinite_state": nonfinite, "_nonfinite_state": nonfinite.copy()} if nonfinite.any() else {}
        info: dict[str, Any] = {}
        observation = self._obs
        if mode == AutoresetMode.SAME_STEP and ended.any():
            indices = np.flatnonzero(ended)
            final_obs = np.full(self.num_envs, None, dtype=object)
            rows = observation if self.array == "torch" else observation.cpu().numpy()
            for i in indices:
                final_obs[i] = rows[i].clone() if self.array == "torch" else rows[i].copy()
            info.update(final_obs=final_obs, _final_obs=ended.copy(), final_info=step_info, _final_info=ended.copy())
            self._start(indices, self._next_episode(indices))
            observation = self._obs
        else:
            info.update(step_info)
            self._ended = ended
        return self._out(observation), self._out(reward), self._out(terminated), self._out(truncated), self._out_info(info)

    def _next_episode(self, indices: np.ndarray) -> tuple[torch.Tensor, ...]:
        """The start states of the next episode of the environments ``indices`` (their counters advance by one)."""
        self._episodes[indices] += np.uint64(1)
        return self._initial(indices)

    def _start(self, indices: np.ndarray, fresh: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Put the environments ``indices`` at the start states ``fresh``, step 0; their first observations, float32."""
        index = torch.as_tensor(indices, device=self.device)
        self._x = tuple(c.index_copy(0, index, f) for c, f in zip(self._x, fresh))
        self._x0 = tuple(c.index_copy(0, index, f) for c, f in zip(self._x0, fresh))
        self._steps = self._steps.index_fill(0, index, 0)
        first = self._observe(self._steps[index], fresh).to(torch.float32)
        self._obs = self._obs.index_copy(0, index, first)
        self._ended[indices] = False
        return first

    def restart_episodes(self, indices: Any) -> Any:
        """Start the next episode of the environments ``indices`` now, as the next-step autoreset would; their
        first observations ``(len(indices), obs)``.

        The draw is the one the autoreset would make (each environment's episode counter advances by
        one), so a same-step-autoreset wrapper (e.g. an SB3 ``VecEnv``) gives the trajectories of the
        single environments. The pending autoreset of those environments is cleared.
        """
        if self._x is None:
            raise ResetNeeded("call reset() before restart_episodes()")
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if indices.size and (indices.min() < 0 or indices.max() >= self.num_envs):
            raise ValueError(f"indices must lie in [0, {self.num_envs}), got {reprlib.repr(indices.tolist())}")
        with intra_op_threads(self.threads):
            return self._out(self._start(indices, self._next_episode(indices)))

    def render(self) -> tuple[np.ndarray, ...] | None:
        if self.render_mode is None:
            return None
        return tuple(self.problem.render(s) for s in self.state)
