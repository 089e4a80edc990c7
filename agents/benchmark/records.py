"""What a benchmark run file holds: the run's record, its learning-curve points, and a failed run's report.

:func:`agents.benchmark.run.execute` builds a :class:`RunRecord` and the sweep writes it as the
run's JSON file; :func:`agents.benchmark.run.read_run` checks a file's required fields before it
hands one back. The optional fields are those a run file of an earlier version may lack.
"""

from __future__ import annotations

from typing import Any, TypedDict, final


class _CurvePointFields(TypedDict):
    transitions: float
    seconds: float
    cost: float


class CurvePoint(_CurvePointFields, total=False):
    """One learning-curve point: training ``transitions`` and ``seconds`` spent so far, the mean ``cost`` on the
    validation starts, ``incomplete``, how many of those episodes did not reach the objective, and, where the agent
    counts them, ``backward_transitions``, the transitions its backward passes went through so far."""

    incomplete: int
    backward_transitions: float


class RunStarts(TypedDict):
    """The seeds of a run's first validation and test episodes, and the episodes of each."""

    validation: int
    test: int
    episodes: int


class _RunRecordFields(TypedDict):
    spec: dict[str, Any]
    env_id: str
    agent: str
    family: str
    seed: int
    final_cost: float
    incomplete: int
    transitions: float
    seconds: float
    total_seconds: float
    curve: list[CurvePoint]


@final  # so that ``"error" in result`` tells a failure from a record
class RunRecord(_RunRecordFields, total=False):
    """One finished run: its spec (:meth:`~agents.benchmark.config.RunSpec.as_dict`), who ran where, the final cost on
    the test starts (mean, and per episode), the test episodes that did not reach the objective, what training spent
    (transitions, seconds; ``total_seconds`` with the curve's evaluations), the learning curve and the agent's
    JSON-able details."""

    variant: str
    mode: str
    starts: RunStarts
    final_costs: list[float]
    details: dict[str, Any]


@final
class RunFailure(TypedDict):
    """A run that raised: its spec and the traceback."""

    spec: dict[str, Any]
    error: str
