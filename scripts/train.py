"""Train an agent on a diffenvs environment and compare it with the analytic answer.

    python scripts/train.py DiffZermelo-v0 --agent neural-ode --out runs/zermelo
    python scripts/train.py DiffCartpole-v0 --agent neural-ode --adjoint
    python scripts/train.py DiffCartpole-v0 --preset upright          # φ0 = 0.1, quadratic cost
    python scripts/train.py DiffIsochronism-v0 --agent neural-ode
    python scripts/train.py DiffCartpole-v0 --agent lqr --preset upright

The run writes into ``--out`` (default ``runs/<env>-<agent>``): ``checkpoint.pt`` (resume
with ``--resume``), ``results.json`` (final cost on the Gymnasium face, the analytic optimum,
the gap, environment steps, wall time) and the plots ``loss.png``, ``trajectory.png`` and
``control.png``, then prints a summary. Neural-ODE options default to the tuned values
for the environment (``agents.neural_ode.default_config``); any given on the command line
replaces them.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from agents import analytic, neural_ode
from agents.cards import cards, presets
from agents.episodes import gym_policy
from agents.training import (
    CHECKPOINT_FILE,
    add_config_arguments,
    config_from_arguments,
    finish_run,
    parse_env_kwargs,
    summary,
)
from diffenvs import ENV_IDS

#: the trainable agent, then every card's analytic controllers (each answers its own environment)
AGENTS = ("neural-ode", *dict.fromkeys(name for c in cards().values() for name in c.analytic))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("env_id", choices=ENV_IDS, help="registered environment id")
    answers = "; ".join(f"{name}: {c.env_id}" for c in cards().values() for name in c.analytic)
    parser.add_argument("--agent", choices=AGENTS, default="neural-ode",
                        help=f"neural-ode, or an analytic answer ({answers})")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: runs/<env>-<agent>)")
    parser.add_argument("--env-kwargs", default=None,
                        help='environment keyword arguments as JSON, e.g. \'{"initial_noise": 0.0}\'')
    named = presets()
    parser.add_argument("--preset", choices=sorted(named), default=None,
                        help="named environment settings: " + "; ".join(f"{k}: {v[0]} {v[1]}" for k, v in named.items()))
    parser.add_argument("--episodes", type=int, default=100, help="evaluation episodes on the Gymnasium face (default: 100)")
    parser.add_argument("--resume", action="store_true", help="continue the run saved in the output folder's checkpoint")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_arguments(parser, neural_ode.NeuralOdeConfig, "neural-ode options",
                         "Defaults: the generic ones shown, replaced by the tuned ones of the environment's card "
                         "(agents/cards/).")
    return parser


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse, train (or build the analytic agent), evaluate, write results and plots; returns the results."""
    parser = build_parser()
    args = parser.parse_args(argv)
    env_kwargs = parse_env_kwargs(args.env_kwargs, args.preset, args.env_id)
    out = args.out if args.out is not None else Path("runs") / f"{args.env_id}-{args.agent}"
    reference = analytic.reference(args.env_id, env_kwargs)
    if args.agent == "neural-ode":
        config = config_from_arguments(args, neural_ode.default_config(args.env_id, env_kwargs))
        result = neural_ode.train(args.env_id, config, env_kwargs, checkpoint=Path(out) / CHECKPOINT_FILE,
                                  resume=args.resume, progress=not args.quiet)
        results = finish_run(out, env_id=args.env_id, agent=args.agent, policy=result.gym_policy(), env_kwargs=env_kwargs,
                             seed=config.seed, reference=reference, history=result.history, env_steps=result.transitions,
                             train_seconds=result.seconds, config=config, episodes=args.episodes)
    else:
        controller = analytic.analytic_agent(args.agent, args.env_id, env_kwargs)
        results = finish_run(out, env_id=args.env_id, agent=args.agent, policy=gym_policy(controller, controller.problem),
                             env_kwargs=env_kwargs, reference=reference, episodes=args.episodes)
    print(summary(results))
    print(f"  results and plots in {out}")
    return results


if __name__ == "__main__":
    main()
