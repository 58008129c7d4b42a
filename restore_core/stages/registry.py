"""The stage registry: one entry per queue-triggered stage, read by everything that lists stages.

Each :class:`StageSpec` names its :class:`~restore_core.models.Stage`, the app setting that names its queue (and
the default queue name), its ``run`` function (``module:function``, imported on first use so that settings can read
this registry without importing the stages), whether a restore may still be cancelled while it is there, the status
a restore shows while there, and a label for people. Readers: settings and their defaults
(:mod:`restore_core.config`), the pipeline (runners, queues), the watchdog (poison queues), cancel
(:mod:`restore_core.api`), ``GET /api/stages`` (the dashboard and ``restorectl``), the chaos campaign and the test
fakes. ``function_app.py`` keeps one explicit trigger per entry; tests tie the two together, and tie every queue
(with its ``-poison`` twin) to ``infra/`` and ``local.settings.sample.json``.

Adding a stage touches: its module under ``restore_core/stages/``, one line here, its rows in
:mod:`restore_core.transitions`, one trigger in ``function_app.py``, one queue name in ``infra/main.bicep`` (and the
sample settings). ``docs/architecture.md`` says the same.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from ..models import Stage, Status

if TYPE_CHECKING:
    from ..deps import Deps
    from ..records import RestoreRecord
    from ..transitions import StageResult
    from . import Claim

StageRun = Callable[["RestoreRecord", "Deps", "Claim"], "StageResult"]


@dataclass(frozen=True)
class StageSpec:
    stage: Stage
    queue_setting: str
    default_queue: str
    run_ref: str
    cancellable: bool
    status: Status
    label: str
    consumer: str = "function"
    """``function``: a queue trigger in ``function_app.py``; ``job``: the replay container job
    (``python -m restore_core.replay``; an Azure Container Apps job scaled on the queue; locally
    ``localdev.jobrunner``)."""
    inline: bool = False
    """A transition into this stage that is due at once (no delay) continues in the same invocation instead of
    waiting for its queue message (one queue hop less). Its message is still sent, delayed by
    :attr:`~restore_core.config.Settings.inline_safety_net_seconds`: the safety net when the invocation dies before
    the stage is done, and otherwise a stale message the pipeline drops after one row read. Only for ``function``
    stages whose predecessors are ``function`` stages (a Function runs it); see :func:`continues_inline`."""

    @property
    def run(self) -> StageRun:
        module, _, name = self.run_ref.partition(":")
        return cast(StageRun, getattr(importlib.import_module(module), name))

    def describe(self) -> dict[str, Any]:
        """The public description (``GET /api/stages``)."""
        return {"stage": self.stage.value, "label": self.label, "status": self.status.value,
                "cancellable": self.cancellable, "queue_setting": self.queue_setting, "consumer": self.consumer}


REGISTRY: tuple[StageSpec, ...] = (
    StageSpec(Stage.VALIDATE, "RESTORE_QUEUE_VALIDATE", "restore-validate", "restore_core.stages.validate:run",
              True, Status.VALIDATING, "Validate"),
    StageSpec(Stage.REHYDRATE, "RESTORE_QUEUE_REHYDRATE", "restore-rehydrate", "restore_core.stages.rehydrate:run",
              True, Status.REHYDRATING, "Rehydrate"),
    StageSpec(Stage.WAIT, "RESTORE_QUEUE_WAIT", "restore-wait", "restore_core.stages.wait:run",
              True, Status.WAITING, "Wait for rehydration"),
    StageSpec(Stage.TRIGGER, "RESTORE_QUEUE_TRIGGER", "restore-trigger", "restore_core.stages.trigger:run",
              False, Status.RESTORING, "Trigger restore", inline=True),
    StageSpec(Stage.MONITOR, "RESTORE_QUEUE_MONITOR", "restore-monitor", "restore_core.stages.monitor:run",
              False, Status.RESTORING, "Follow Azure job"),
    StageSpec(Stage.INVENTORY, "RESTORE_QUEUE_INVENTORY", "restore-inventory", "restore_core.stages.inventory:run",
              False, Status.RESTORING, "Inventory staged files"),
    StageSpec(Stage.REPLAY, "RESTORE_QUEUE_REPLAY", "restore-replay", "restore_core.stages.replay:run",
              False, Status.RESTORING, "Replay into the server", consumer="job"),
    StageSpec(Stage.VERIFY, "RESTORE_QUEUE_VERIFY", "restore-verify", "restore_core.stages.verify:run",
              False, Status.RESTORING, "Verify and clean up", consumer="job"),
)

BY_STAGE: dict[Stage, StageSpec] = {s.stage: s for s in REGISTRY}
#: Stages before the trigger claim: a restore may still be cancelled there.
CANCELLABLE: frozenset[Stage] = frozenset(s.stage for s in REGISTRY if s.cancellable)
#: Stages whose queue a Function trigger consumes (the others: the replay job).
FUNCTION_STAGES: tuple[StageSpec, ...] = tuple(s for s in REGISTRY if s.consumer == "function")
#: Stages the replay container job consumes (replay, and verify: both work on the target server as the job's
#: identity, and both may run longer than a Function may).
JOB_STAGES: tuple[StageSpec, ...] = tuple(s for s in REGISTRY if s.consumer == "job")
#: App settings naming the stage queues, in pipeline order.
QUEUE_SETTINGS: tuple[str, ...] = tuple(s.queue_setting for s in REGISTRY)


def spec(stage: Stage) -> StageSpec:
    return BY_STAGE[stage]


def continues_inline(stage: Stage, next_stage: Stage | None, delay: float) -> bool:
    """Whether the move from ``stage`` to ``next_stage`` (due after ``delay`` s) runs ``next_stage`` in the same
    invocation: a different stage marked ``inline``, due now, both run by a Function."""
    if next_stage is None or next_stage == stage or delay > 0:
        return False
    nxt = BY_STAGE[next_stage]
    return nxt.inline and nxt.consumer == "function" and BY_STAGE[stage].consumer == "function"
