"""Train an agent on a diffenvs environment and compare it with the analytic answer.

    python scripts/train.py DiffZermelo-v0 --agent neural-ode --out runs/zermelo
    python scripts/train.py DiffCartpole-v0 --agent neural-ode --adjoint
    python scripts/train.py DiffCartpole-v0 --preset upright          # φ0 = 0.1, quadratic cost
    python scripts/train.py DiffIsochronism-v0 --agent neural-ode
    python scripts/train.py DiffCartpole-v0 --agent lqr --preset upright

The run writes into ``--out`` (default ``runs/<env>-<agent>``): ``run.json`` (which run this
is), ``checkpoint.pt`` (resume with ``--resume``), ``results.json`` (final cost on the Gymnasium
face, the analytic optimum, the gap, environment steps, wall time) and the plots ``loss.png``,
``trajectory.png`` and ``control.png``, then prints a summary. Every file is written atomically.
The whole command is checked before the folder is touched. The folder is locked while the run
writes (a second run into it is refused); a folder holding another run is refused unless
``--overwrite``: the new run then writes beside the old one (in ``<out>/.overwrite``) and replaces
it only once it has written all its files, removing only files the old run wrote; a new run that
fails or is killed leaves the old one as it was. ``--resume`` refuses a folder whose run differs in
environment, agent or settings.
Neural-ODE options default to the tuned values of the environment's card
(``agents.neural_ode.default_config``); any given on the command line replaces them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import torch
import tyro

from agents import analytic, cli, neural_ode
from agents.cards import cards, presets
from agents.cli import parse_env_kwargs
from agents.episodes import gym_policy
from agents.files import folder_lock
from agents.training import CHECKPOINT_FILE, abandon_run, claim_folder, commit_run, finish_run, run_identity, summary
from diffenvs import ENV_IDS, problem_of

#: the trainable agent, then every card's analytic controllers (each answers its own environment)
AGENTS = ("neural-ode", *dict.fromkeys(name for c in cards().values() for name in c.controllers))
PRESETS = presets()

# the choices of the command line, as types (a Literal of a tuple lists its items); known only when the script
# runs, so a type checker sees the strings they are
if TYPE_CHECKING:
    EnvId = str
    AgentName = str
    PresetName = str
else:
    EnvId = Literal[tuple(ENV_IDS)]
    AgentName = Literal[AGENTS]
    PresetName = Literal[tuple(sorted(PRESETS))]

_PRESETS_HELP = "named environment settings: " + "; ".join(f"{k}: {v[0]} {v[1]}" for k, v in PRESETS.items())
_TUNED_HELP = ("Defaults: the generic ones shown, replaced by the tuned ones of the environment's card "
               "(agents/cards/<env>.py).")
_AGENT_HELP = ("neural-ode, or an analytic answer ("
               + "; ".join(f"{name}: {c.env_id}" for c in cards().values() for name in c.controllers) + ")")


@dataclass(frozen=True)
class TrainArguments:
    """The run: environment, agent, output and evaluation."""

    env_id: Annotated[EnvId, tyro.conf.Positional]
    """registered environment id"""
    agent: Annotated[AgentName, tyro.conf.arg(help=_AGENT_HELP)] = "neural-ode"
    out: Path | None = None
    """output folder (None: runs/<env>-<agent>)"""
    env_kwargs: str | None = None
    """environment keyword arguments as JSON, e.g. '{"initial_noise": 0.0}'"""
    preset: Annotated[PresetName | None, tyro.conf.arg(help=_PRESETS_HELP)] = None
    episodes: int = 100
    """evaluation episodes on the Gymnasium face"""
    resume: cli.Switch = False
    """continue the run saved in the output folder's checkpoint"""
    overwrite: cli.Switch = False
    """delete the run in the output folder and start afresh"""
    quiet: cli.Switch = False
    """no progress bar"""
    neural_ode: Annotated[neural_ode.NeuralOdeConfig, tyro.conf.arg(help=_TUNED_HELP)] = dataclasses.field(
        default_factory=neural_ode.NeuralOdeConfig)


def parse_arguments(argv: list[str] | None = None) -> TrainArguments:
    """The command line, the neural-ode options defaulting to the tuned ones of the environment.

    Parsed twice: first with the generic defaults (which ``--help`` shows) to learn the
    environment, then with its tuned config (``neural_ode.default_config``) as the defaults,
    so that only the options given replace tuned values.
    """
    given = cli.parse(TrainArguments, argv, description=__doc__)
    if given.agent != "neural-ode":
        return given
    tuned = neural_ode.default_config(given.env_id, parse_env_kwargs(given.env_kwargs, given.preset, given.env_id))
    return cli.parse(TrainArguments, argv, default=TrainArguments(given.env_id, neural_ode=tuned), description=__doc__)


def check_run(args: TrainArguments) -> tuple[dict[str, Any], Path, torch.nn.Module | None]:
    """Everything about the command that can be refused, checked before the output folder is touched.

    Returns the environment's keyword arguments, the output folder and the analytic controller
    (None for the neural ODE). Raises ``ValueError`` naming the option: ``--env-kwargs`` or
    ``--preset`` the environment refuses, an output folder that cannot be one, ``--resume``
    with ``--overwrite``, ``--episodes`` below 1, ``--steps`` beyond the environment's horizon,
    an analytic ``--agent`` of another environment.
    """
    env_kwargs = parse_env_kwargs(args.env_kwargs, args.preset, args.env_id)
    out = args.out if args.out is not None else Path("runs") / f"{args.env_id}-{args.agent}"
    cli.check_out_folder(out)
    if args.resume and args.overwrite:
        raise ValueError(f"--resume continues the run in {out} and --overwrite deletes it: give one, not both")
    if args.episodes < 1:
        raise ValueError(f"--episodes must be at least 1 (evaluation episodes), got {args.episodes}")
    problem = problem_of(args.env_id, **env_kwargs)
    if args.agent != "neural-ode":
        return env_kwargs, out, analytic.analytic_agent(args.agent, args.env_id, env_kwargs)
    if args.neural_ode.steps > problem.max_steps:
        raise ValueError(f"--steps must be at most the horizon of {args.env_id}, {problem.max_steps} steps "
                         f"(0: the horizon), got {args.neural_ode.steps}")
    return env_kwargs, out, None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse, check (:func:`check_run`), train (or build the analytic agent), evaluate, write results and plots;
    returns the results.

    The whole command is checked before the output folder is touched. The folder is locked for
    the run (:func:`agents.files.folder_lock`) and claimed by :func:`agents.training.claim_folder`
    (``--resume``, ``--overwrite``); an ``--overwrite`` run replaces the old run only once it has
    written all its files (:func:`agents.training.commit_run`), and a run that fails leaves the
    old run as it was (:func:`agents.training.abandon_run`).
    """
    args = parse_arguments(argv)
    env_kwargs, out, controller = check_run(args)
    config = args.neural_ode if controller is None else None
    reference = analytic.reference(args.env_id, env_kwargs)
    with folder_lock(out):
        folder = claim_folder(out, run_identity(args.env_id, args.agent, env_kwargs, config), resume=args.resume,
                              overwrite=args.overwrite)
        try:
            if controller is None:
                result = neural_ode.train(args.env_id, args.neural_ode, env_kwargs, checkpoint=folder / CHECKPOINT_FILE,
                                          resume=args.resume, progress=not args.quiet)
                results = finish_run(folder, env_id=args.env_id, agent=args.agent, policy=result.gym_policy(),
                                     env_kwargs=env_kwargs, seed=args.neural_ode.seed, reference=reference,
                                     history=result.history, env_steps=result.transitions,
                                     train_seconds=result.seconds, config=args.neural_ode, episodes=args.episodes)
            else:
                problem = problem_of(args.env_id, **env_kwargs)  # the controller's own problem
                results = finish_run(folder, env_id=args.env_id, agent=args.agent,
                                     policy=gym_policy(controller, problem), env_kwargs=env_kwargs,
                                     reference=reference, episodes=args.episodes)
        except BaseException:
            abandon_run(out, folder)
            raise
        commit_run(out, folder)
    print(summary(results))
    print(f"  results and plots in {out}")
    return results


if __name__ == "__main__":
    main()
