"""Speed of the three faces, side by side with gymnasium's own CartPole, in one run.

Prints (and writes as markdown with ``--out``):

1. the Gymnasium face: microseconds per ``env.step`` of ``CartPole-v1`` and of every diffenvs id;
2. the vector face: env-steps per second of gymnasium's ``CartPoleVectorEnv``, of
   ``DiffCartpole-v0`` (float64 eager, float32 eager, float32 compiled by TorchInductor with numpy arrays and
   with torch tensors, ``array="torch"``) and, when jax and gymnax import, of gymnax's ``CartPole-v1``
   (``jax.jit`` of ``jax.vmap``) at each N, once with 1 torch thread and once with all of them (the columns
   timed in interleaved rounds, best of each);
3. the gradient path: forward and forward+backward time of a 100-step cartpole rollout of a
   batch of 256 under a 2x16 tanh policy, their ratio and compile time, eager, ``RK4(compile=True)``
   and, when the extra ``speed`` is installed, the same rollout in JAX (``scripts/jax_cartpole.py``),
   at one torch thread and at all;
4. memory: bytes the autograd graph keeps for the backward pass (every tensor saved for
   backward, counted once) of direct backpropagation against the adjoint, at horizons 100
   and 1000 (continuous feedback, dopri5).

Compare ratios within one run: the machines are shared and noisy. The compiled columns compile
into a new, empty compile cache (their compile seconds are a first compile on the machine);
``--warm-cache`` uses the machine's own (:mod:`diffenvs.core.compiler`), where they load what is
cached. ``scripts/bench_compile.py`` measures the first compile against a second process.

    python scripts/bench_envs.py                 # full: about 13 minutes on a 2-core CPU
    python scripts/bench_envs.py --quick         # seconds, smaller N and fewer repeats
    python scripts/bench_envs.py --device cuda   # the gradient path and the torch-array columns on a GPU
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import torch

import diffenvs
from agents import cli
from agents.files import write_text
from diffenvs.core.compiler import CACHE_VARIABLE
from diffenvs.core.memory import saved_tensor_bytes
from diffenvs.core.vector_face import checked_device
from diffenvs.envs.cartpole import Cartpole


def best_time(run: Callable[[], object], repeats: int) -> float:
    """The fastest of ``repeats`` timings of ``run`` (seconds): the least disturbed by other load. On a GPU each
    timing waits for the kernels ``run`` launched (``torch.cuda.synchronize``)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        if torch.cuda.is_initialized():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def single_step_microseconds(env_id: str, steps: int, repeats: int) -> float:
    env = gym.make(env_id)
    env.reset(seed=0)
    action = 1 if env_id == "CartPole-v1" else env.action_space.sample()

    def run() -> None:
        for _ in range(steps):
            _, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                env.reset()

    return best_time(run, repeats) / steps * 1e6


def vector_runner(make: Callable[[int], gym.vector.VectorEnv], num_envs: int, steps: int) -> Callable[[], None]:
    """A function that takes ``steps`` steps of the vector env ``make(num_envs)``, reset, warmed up (and compiled)."""
    envs = make(num_envs)
    envs.reset(seed=0)
    actions = envs.action_space.sample()
    if getattr(envs.unwrapped, "array", "numpy") == "torch":
        actions = torch.as_tensor(actions, device=getattr(envs.unwrapped, "device", None))
    for _ in range(3):
        envs.step(actions)

    def run() -> None:
        for _ in range(steps):
            envs.step(actions)

    return run


def interleaved_rates(runs: list[Callable[[], None]], num_envs: int, steps: int, repeats: int) -> list[float]:
    """Env-steps per second of each run, best of ``repeats`` rounds that time every run once in turn (a load that
    comes and goes then slows each of them alike)."""
    best = [float("inf")] * len(runs)
    for _ in range(repeats):
        for i, run in enumerate(runs):
            best[i] = min(best[i], best_time(run, 1))
    return [num_envs * steps / b for b in best]


def gymnax_runner(num_envs: int, steps: int) -> Callable[[], None] | None:
    """A function that takes ``steps`` steps of gymnax's ``CartPole-v1``: one ``jax.jit`` of ``jax.vmap`` of its step
    (with its autoreset) per call from Python, as a learner calls it; ``None`` when jax or gymnax do not import."""
    try:
        import gymnax
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    env, params = gymnax.make("CartPole-v1")
    keys = jax.random.split(jax.random.PRNGKey(0), num_envs)
    _, state = jax.vmap(env.reset, in_axes=(0, None))(keys, params)

    @jax.jit
    def step(keys, state, actions):
        split = jax.vmap(jax.random.split)(keys)
        obs, state, reward, done, *_ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(split[:, 1], state, actions, params)
        return split[:, 0], state, obs, reward, done

    actions = jnp.ones(num_envs, dtype=jnp.int32)
    carry = [keys, state]

    def run() -> None:
        for _ in range(steps):
            carry[0], carry[1], obs, _, _ = step(carry[0], carry[1], actions)
        obs.block_until_ready()

    for _ in range(3):  # warm up (and compile)
        carry[0], carry[1], *_ = step(carry[0], carry[1], actions)
    return run


class TanhPolicy(torch.nn.Module):
    """2 hidden layers of 16 tanh units, output scaled to the force bound."""

    def __init__(self, problem: Cartpole) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 16), torch.nn.Tanh(),
                                       torch.nn.Linear(16, 1))
        self.scale = problem.max_force

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        return self.scale * torch.tanh(self.net(observation))


def gradient_rows(batch: int, steps: int, repeats: int, compile: bool, device: str = "cpu"
                  ) -> dict[str, tuple[float, float, float | None]]:
    """Forward and forward+backward seconds of a cartpole rollout on ``device``, interleaved, per implementation.

    Rows: diffenvs eager, diffenvs ``RK4(compile=True)`` (its default chunks of 2 steps) and, when JAX is
    installed, the same rollout in JAX (``scripts/jax_cartpole.py``); each row also gives its
    compile seconds (first call minus a later one; ``None`` for eager). The timings are the
    fastest of ``repeats`` rounds that run every row in turn, so load spreads over all rows. JAX runs
    where its installation puts it (the CPU unless a GPU build of jaxlib is installed).
    """
    problem = Cartpole(max_steps=steps)
    torch.manual_seed(0)
    policy = TanhPolicy(problem).to(device)
    x0 = torch.zeros(batch, 4, device=device)
    x0[:, 2] = torch.pi
    calls: dict[str, tuple[Callable[[], None], Callable[[], None]]] = {}
    compile_seconds: dict[str, float | None] = {}
    solvers = {"diffenvs eager": diffenvs.RK4()}
    if compile:
        solvers["diffenvs RK4(compile=True)"] = diffenvs.RK4(compile=True)
    for name, solver in solvers.items():
        def forward(solver: diffenvs.Solver = solver) -> None:
            with torch.no_grad():
                diffenvs.rollout(problem, policy, x0, solver=solver, check=False)

        def forward_backward(solver: diffenvs.Solver = solver) -> None:
            policy.zero_grad()
            diffenvs.rollout(problem, policy, x0, solver=solver, check=False).costs.mean().backward()

        def both(forward: Callable[[], None] = forward, forward_backward: Callable[[], None] = forward_backward) -> None:
            forward()
            forward_backward()

        first = best_time(both, 1)
        compile_seconds[name] = first - best_time(both, 1) if solver.compile else None
        calls[name] = (forward, forward_backward)
    loss = diffenvs.rollout(problem, policy, x0).costs.mean().item()
    try:
        import jax_cartpole
    except ImportError:  # the optional extra 'speed' is not installed
        pass
    else:
        jax_forward, jax_forward_backward, jax_loss, seconds = jax_cartpole.compiled(copy.deepcopy(policy).cpu(),
                                                                                     x0.cpu(), steps)
        if not math.isclose(jax_loss, loss, rel_tol=1e-4):
            raise RuntimeError(f"the JAX rollout's loss {jax_loss} differs from diffenvs' {loss}: not the same problem")
        calls["JAX lax.scan + jit"] = (jax_forward, jax_forward_backward)
        compile_seconds["JAX lax.scan + jit"] = seconds
    best = {name: [math.inf, math.inf] for name in calls}
    for _ in range(repeats):
        for name, pair in calls.items():
            for i, call in enumerate(pair):
                best[name][i] = min(best[name][i], best_time(call, 1))
    return {name: (fwd, both, compile_seconds[name]) for name, (fwd, both) in best.items()}


def saved_bytes(solver: diffenvs.Solver, horizon: int, batch: int) -> int:
    """Bytes of all tensors the autograd graph saves for backward (each storage once)."""
    problem = Cartpole(max_steps=horizon)
    policy = TanhPolicy(problem).double()
    x0 = torch.zeros(batch, 4, dtype=torch.float64)
    x0[:, 2] = 0.1
    cost, saved = saved_tensor_bytes(
        lambda: diffenvs.rollout(problem, policy, x0, control="feedback", solver=solver).costs.mean())
    cost.backward()  # the graph is whole: the backward runs
    return saved


@dataclass(frozen=True)
class SpeedConfig:
    """What the speed benchmark measures and where it writes."""

    quick: cli.Switch = False
    """small N and few repeats (a smoke run)"""
    no_compile: cli.Switch = False
    """skip the compiled column (compiling takes ~30 s)"""
    out: Path | None = None
    """also write the report as markdown to this file"""
    threads: int | None = None
    """torch intra-op threads (None: torch's own choice, one per core)"""
    sizes: tuple[int, ...] = ()
    """numbers of environments of the vector face (empty: 1, 64, 1024, 16384; quick: 1, 64, 1024)"""
    warm_cache: cli.Switch = False
    """compile into the machine's compile cache (loading what it holds) instead of a new, empty one"""
    device: str = "cpu"
    """where the gradient path and the vector face's torch-array columns run: "cpu", or "cuda" where torch sees a GPU
    (gymnasium's and the numpy columns stay on the CPU)"""

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be at least 1, got {self.threads}")
        if any(n < 1 for n in self.sizes):
            raise ValueError(f"sizes must be positive numbers of environments, got {self.sizes}")
        # the vector face's check: a ValueError naming ``device`` where torch cannot hold tensors there
        if checked_device(self.device).type not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or a CUDA device (timings wait for CUDA's kernels only), "
                             f"got {self.device!r}")


def vector_face_table(emit: Callable[[str], None], args: SpeedConfig, sizes: tuple[int, ...], repeats: int,
                      threads: int) -> None:
    """The vector face's table at ``threads`` torch intra-op threads (the diffenvs envs' ``threads`` option)."""
    emit(f"## Vector face: env-steps per second (millions), {threads} torch thread{'s' if threads > 1 else ''}")

    def diffcartpole(n: int, **kwargs) -> gym.vector.VectorEnv:
        return gym.make_vec("DiffCartpole-v0", num_envs=n, vectorization_mode="vector_entry_point", threads=threads, **kwargs)

    columns = {"CartPoleVectorEnv (gymnasium)": lambda n: gym.make_vec("CartPole-v1", num_envs=n,
                                                                     vectorization_mode="vector_entry_point"),
               "DiffCartpole float64": diffcartpole,
               "DiffCartpole float32": lambda n: diffcartpole(n, dtype=torch.float32)}
    on = ""
    if args.device != "cpu":  # the eager torch-array column too, where it runs elsewhere than the numpy ones
        on = f" on {args.device}"
        columns[f"DiffCartpole float32, torch arrays{on}"] = lambda n: diffcartpole(n, dtype=torch.float32, array="torch",
                                                                                   device=args.device)
    if not args.no_compile:
        columns["DiffCartpole float32 compiled"] = lambda n: diffcartpole(n, dtype=torch.float32, compile=True)
        columns[f"DiffCartpole float32 compiled, torch arrays{on}"] = lambda n: diffcartpole(
            n, dtype=torch.float32, compile=True, array="torch", device=args.device)
    gymnax = gymnax_runner(1, 1) is not None
    names = [*columns, *(["gymnax CartPole-v1 (jit + vmap, XLA's threads)"] if gymnax else [])]
    emit("| N | " + " | ".join(names) + " | best diffenvs / gymnasium |")
    emit("|---:|" + "---:|" * (len(names) + 1))
    for n in sizes:
        steps = max(20, min(2000, 400_000 // n)) // (4 if args.quick else 1)
        runs = [vector_runner(make, n, steps) for make in columns.values()]
        jax_run = gymnax_runner(n, steps) if gymnax else None
        runs += [jax_run] if jax_run is not None else []
        rates = interleaved_rates(runs, n, steps, repeats)
        emit(f"| {n} | " + " | ".join(f"{r / 1e6:.3f}" for r in rates)
             + f" | {max(rates[1:len(columns)]) / rates[0]:.2f} |")


def gymnasium_face_table(emit: Callable[[str], None], quick: bool, repeats: int) -> None:
    """Microseconds per ``env.step`` of gymnasium's ``CartPole-v1`` and of every diffenvs id."""
    emit("## Gymnasium face: one env.step")
    emit("| env | µs / step | × CartPole-v1 |")
    emit("|---|---:|---:|")
    steps = 2000 if quick else 20000
    reference = single_step_microseconds("CartPole-v1", steps, repeats)
    emit(f"| CartPole-v1 (gymnasium, Euler, discrete action) | {reference:.1f} | 1.0 |")
    for env_id in diffenvs.ENV_IDS:
        cost = single_step_microseconds(env_id, steps, repeats)
        emit(f"| {env_id} | {cost:.1f} | {cost / reference:.1f} |")


def gradient_tables(emit: Callable[[str], None], args: SpeedConfig, repeats: int, all_threads: int) -> None:
    """The gradient path's table at one torch thread and at ``all_threads``."""
    on = "" if args.device == "cpu" else f", diffenvs on {args.device}"
    emit(f"## Gradient path: 100-step cartpole rollout, batch 256, 2x16 tanh policy, RK4, float32{on}")
    emit("Rows run in turn, fastest of the rounds; JAX's XLA runs with its own threads whatever torch's setting.")
    for threads in sorted({1, all_threads}):
        torch.set_num_threads(threads)
        rows = gradient_rows(256, 100, 2 * repeats, not args.no_compile, args.device)
        jax_both = rows.get("JAX lax.scan + jit", (None, None, None))[1]
        emit("")
        emit(f"{threads} torch thread{'s' if threads > 1 else ''}:")
        emit("")
        emit("| rollout | forward (no graph), ms | forward+backward, ms | fwd+bwd / fwd | fwd+bwd / JAX's | compile, s |")
        emit("|---|---:|---:|---:|---:|---:|")
        for name, (forward, both, seconds) in rows.items():
            versus = f"{both / jax_both:.2f}" if jax_both else "–"
            compiled = f"{seconds:.1f}" if seconds is not None else "–"
            emit(f"| {name} | {forward * 1e3:.1f} | {both * 1e3:.1f} | {both / forward:.2f} | {versus} | {compiled} |")
    torch.set_num_threads(all_threads)


def memory_table(emit: Callable[[str], None], quick: bool) -> None:
    """Bytes kept for backward by direct backpropagation and by the adjoint, at two horizons."""
    emit("## Memory kept for backward, continuous feedback, batch 256, float64 (MB)")
    emit("| horizon (steps) | direct (RK4 backprop) | direct (dopri5 backprop) | adjoint (dopri5) |")
    emit("|---:|---:|---:|---:|")
    for horizon in ((20, 100) if quick else (100, 1000)):
        solvers = (diffenvs.RK4(), diffenvs.Adaptive(rtol=1e-6, atol=1e-8), diffenvs.Adjoint(rtol=1e-6, atol=1e-8))
        sizes_mb = [saved_bytes(solver, horizon, 256) / 2**20 for solver in solvers]
        emit(f"| {horizon} | " + " | ".join(f"{m:.1f}" for m in sizes_mb) + " |")


@contextlib.contextmanager
def compile_cache(warm: bool) -> Iterator[None]:
    """The machine's compile cache (``warm``) or, within, a new, empty one that is removed after."""
    if warm:
        yield
        return
    before = os.environ.get(CACHE_VARIABLE)
    with tempfile.TemporaryDirectory() as folder:
        os.environ[CACHE_VARIABLE] = str(Path(folder) / "compiled")
        try:
            yield
        finally:
            if before is None:
                del os.environ[CACHE_VARIABLE]
            else:
                os.environ[CACHE_VARIABLE] = before


def check_out_file(path: Path) -> None:
    """Raise ``ValueError`` naming ``--out`` unless the report can be written to ``path``: checked before the
    benchmark's minutes, not after them. Refused: a folder, a path through a file, a place this process cannot
    write into. Nothing is created."""
    if path.is_dir():
        raise ValueError(f"--out must name a file for the markdown report, got {str(path)!r}, a folder")
    parent = path.parent
    while not parent.exists() and parent.parent != parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"--out must name a file for the markdown report, got {str(path)!r}, whose parent "
                         f"{str(parent)!r} is a file")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ValueError(f"--out must name a file this process can write, got {str(path)!r}")


def main(argv: list[str] | None = None) -> str:
    args = cli.parse(SpeedConfig, argv, description=__doc__)
    if args.out is not None:
        check_out_file(args.out)
    with compile_cache(args.warm_cache):
        return _run(args)


def _run(args: SpeedConfig) -> str:
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    all_threads = torch.get_num_threads()
    repeats = 2 if args.quick else 5
    sizes = args.sizes or ((1, 64, 1024) if args.quick else (1, 64, 1024, 16384))
    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    lines = [f"torch {torch.__version__}, gymnasium {gym.__version__}, {torch.get_num_threads()} torch threads, "
             f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; device: {args.device} (CUDA: {cuda})", ""]

    def emit(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    gymnasium_face_table(emit, args.quick, repeats)
    emit()
    for threads in sorted({1, all_threads}):
        if threads > 1:
            emit()
        torch.set_num_threads(threads)
        vector_face_table(emit, args, sizes, repeats, threads)
    torch.set_num_threads(all_threads)
    emit()
    gradient_tables(emit, args, repeats, all_threads)
    emit()
    memory_table(emit, args.quick)
    report = "\n".join(lines)
    if args.out is not None:
        write_text(args.out, report + "\n")
    return report


if __name__ == "__main__":
    main()
