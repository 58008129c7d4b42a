"""Azure Functions entry points: thin triggers only (decode, delegate, return). All logic lives in restore_core/.

Bindings read their queue names and schedule from app settings (binding expressions); the names are defined once in
restore_core/config.py and set in infra/ (Bicep) and local.settings.sample.json.

Who may call (README "Who asked"): the user routes' auth level follows ``RESTORE_AUTH_MODE``, read when the host
indexes the functions (a settings change restarts the app, which indexes again): ``key`` (default) — the host checks a
function key; ``entra`` — anonymous at the Functions level, because App Service built-in authentication validates the
caller in front of the app and the app requires its principal and app roles (restore_core/principal.py). The alert
door ``POST /api/alerts`` is always keyed (an action group's webhook carries the key in its URL) and is excluded from
the platform's authentication (infra: authsettingsV2 ``excludedPaths``).
"""

from __future__ import annotations

from collections.abc import Callable

import azure.functions as func

from restore_core import api, browse, config, intake, pipeline, runtime, watchdog
from restore_core.deps import Deps
from restore_core.drills import api as drills_api
from restore_core.drills import scheduler as drills_scheduler
from restore_core.guards import Caller
from restore_core.models import Stage

#: The user routes' auth level, from configuration only (RESTORE_AUTH_MODE): see the module docstring.
USER_AUTH = func.AuthLevel.ANONYMOUS if config.auth_mode() == "entra" else func.AuthLevel.FUNCTION
app = func.FunctionApp(http_auth_level=USER_AUTH)
CONN = "RestoreStorage"


def _http(resp: api.ApiResponse) -> func.HttpResponse:
    return func.HttpResponse(resp.json(), status_code=resp.status, headers=resp.headers, mimetype="application/json")


def _base_url(req: func.HttpRequest) -> str:
    return str(req.url).split("?", 1)[0].split("/restores", 1)[0]


def _as(action: str, req: func.HttpRequest, handler: Callable[[Caller, Deps], api.ApiResponse]) -> func.HttpResponse:
    """Run ``handler`` when the caller may do ``action`` (restore_core/principal.py); the refusal otherwise."""
    deps = runtime.deps()
    return _http(api.authorized(action, dict(req.headers), deps, lambda caller: handler(caller, deps)))


@app.route(route="restores", methods=["POST"])
def restores_create(req: func.HttpRequest) -> func.HttpResponse:
    """Start a restore (idempotent). Contract: restore_core/api.py create."""
    return _as("start", req, lambda caller, deps: api.create(req.get_body(), headers=dict(req.headers),
                                                             base_url=_base_url(req), deps=deps, caller=caller))


@app.route(route="restores/preview", methods=["POST"])
def restores_preview(req: func.HttpRequest) -> func.HttpResponse:
    """Dry run: every check a restore would run, answered synchronously; creates nothing. Contract: restore_core/
    preview.py."""
    return _as("preview", req, lambda caller, deps: api.preview_restore(req.get_body(), headers=dict(req.headers),
                                                                        deps=deps, caller=caller))


@app.route(route="restores/{id}", methods=["GET"])
def restores_get(req: func.HttpRequest) -> func.HttpResponse:
    """Status resource of one restore, with its timeline."""
    return _as("read", req, lambda _, deps: api.get(req.route_params.get("id", ""), deps=deps))


@app.route(route="restores", methods=["GET"])
def restores_list(req: func.HttpRequest) -> func.HttpResponse:
    """Restores by status and creation time, paged."""
    return _as("read", req, lambda _, deps: api.list_restores(dict(req.params), deps=deps))


@app.route(route="stages", methods=["GET"])
def stages_list(req: func.HttpRequest) -> func.HttpResponse:
    """The pipeline's stages (label, status, cancellable), from the stage registry."""
    return _as("read", req, lambda _, __: api.stages())


@app.route(route="restores/{id}/cancel", methods=["POST"])
def restores_cancel(req: func.HttpRequest) -> func.HttpResponse:
    """Cancel before the trigger; 409 afterwards (Azure cannot cancel a restore job)."""
    return _as("cancel", req, lambda caller, deps: api.cancel(req.route_params.get("id", ""), deps=deps,
                                                              caller=caller))


@app.route(route="backup-instances", methods=["GET"])
def backup_instances_list(req: func.HttpRequest) -> func.HttpResponse:
    """Backup instances of the configured vaults, of ?vault=, or protecting ?datasource=. Contract: browse.py."""
    base = str(req.url).split("?", 1)[0].split("/backup-instances", 1)[0]
    return _as("browse", req, lambda _, deps: browse.list_instances(dict(req.params), base_url=base, deps=deps))


@app.route(route="backup-instances/{instance}/recovery-points", methods=["GET"])
def recovery_points_list(req: func.HttpRequest) -> func.HttpResponse:
    """Recovery points of a backup instance, newest first, each with its restore request. Contract: browse.py."""
    return _as("browse", req, lambda _, deps: browse.list_points(req.route_params.get("instance", ""),
                                                                 dict(req.params), deps=deps))


@app.route(route="alerts", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def alerts_receive(req: func.HttpRequest) -> func.HttpResponse:
    """Alert door for Azure Monitor action groups (common alert schema; always keyed, whatever RESTORE_AUTH_MODE).
    Contract: restore_core/api.py alert, restore_core/intake.py from_alert_http."""
    base = str(req.url).split("?", 1)[0].rsplit("/alerts", 1)[0]
    return _http(api.alert(req.get_body(), base_url=base, deps=runtime.deps()))


@app.route(route="restores/{id}/redrive", methods=["POST"])
def restores_redrive(req: func.HttpRequest) -> func.HttpResponse:
    """Re-send an active restore's current stage message (lost or poisoned); 409 when it ended."""
    return _as("redrive", req, lambda caller, deps: api.redrive(req.route_params.get("id", ""), deps=deps,
                                                                who=caller.label()))


@app.queue_trigger(arg_name="msg", queue_name="%RESTORE_QUEUE_REQUESTS%", connection=CONN)
def restore_requests(msg: func.QueueMessage) -> None:
    """Intake door for other systems and Azure Monitor alerts. Contract: restore_core/intake.py."""
    intake.from_queue(msg.get_body(), message_id=msg.id or "", deps=runtime.deps())


def _stage(stage: Stage, msg: func.QueueMessage) -> None:
    pipeline.handle(stage, msg.get_body(), message_id=msg.id or "", dequeue_count=msg.dequeue_count or 1,
                    deps=runtime.deps(), inserted_at=msg.insertion_time)


@app.queue_trigger(arg_name="msg", queue_name="%RESTORE_QUEUE_VALIDATE%", connection=CONN)
def restore_validate(msg: func.QueueMessage) -> None:
    """Stage validate. Contract: restore_core/stages/validate.py."""
    _stage(Stage.VALIDATE, msg)


@app.queue_trigger(arg_name="msg", queue_name="%RESTORE_QUEUE_REHYDRATE%", connection=CONN)
def restore_rehydrate(msg: func.QueueMessage) -> None:
    """Stage rehydrate. Contract: restore_core/stages/rehydrate.py."""
    _stage(Stage.REHYDRATE, msg)


@app.queue_trigger(arg_name="msg", queue_name="%RESTORE_QUEUE_WAIT%", connection=CONN)
def restore_wait(msg: func.QueueMessage) -> None:
    """Stage wait. Contract: restore_core/stages/wait.py."""
    _stage(Stage.WAIT, msg)


@app.queue_trigger(arg_name="msg", queue_name="%RESTORE_QUEUE_TRIGGER%", connection=CONN)
def restore_trigger(msg: func.QueueMessage) -> None:
    """Stage trigger (exactly once). Contract: restore_core/stages/trigger.py."""
    _stage(Stage.TRIGGER, msg)


@app.queue_trigger(arg_name="msg", queue_name="%RESTORE_QUEUE_MONITOR%", connection=CONN)
def restore_monitor(msg: func.QueueMessage) -> None:
    """Stage monitor. Contract: restore_core/stages/monitor.py."""
    _stage(Stage.MONITOR, msg)


@app.queue_trigger(arg_name="msg", queue_name="%RESTORE_QUEUE_INVENTORY%", connection=CONN)
def restore_inventory(msg: func.QueueMessage) -> None:
    """Stage inventory (server targets). Contract: restore_core/stages/inventory.py."""
    _stage(Stage.INVENTORY, msg)


# Stages replay and verify have no trigger here: the replay container job consumes their queues
# (python -m restore_core.replay; locally localdev.jobrunner), as the job's identity, for as long as they take.


@app.timer_trigger(arg_name="timer", schedule="%RESTORE_WATCHDOG_SCHEDULE%", run_on_startup=False, use_monitor=True)
def restore_watchdog(timer: func.TimerRequest) -> None:
    """Re-drives overdue restores, batches per-vault checks, enforces deadlines. Contract: restore_core/watchdog.py."""
    watchdog.tick(runtime.deps(), past_due=bool(timer.past_due))


# --- restore drills (issue 15): definitions, runs, run now, and the drill timer. Contract: restore_core/drills/.
@app.route(route="drills", methods=["POST"])
def drills_create(req: func.HttpRequest) -> func.HttpResponse:
    """Define a drill. Contract: restore_core/drills/api.py."""
    return _as("drills", req, lambda _, deps: drills_api.create(req.get_body(), deps=deps))


@app.route(route="drills", methods=["GET"])
def drills_list(req: func.HttpRequest) -> func.HttpResponse:
    """Every drill definition."""
    return _as("read", req, lambda _, deps: drills_api.list_all(deps=deps))


@app.route(route="drills/{id}", methods=["GET", "PUT", "DELETE"])
def drills_one(req: func.HttpRequest) -> func.HttpResponse:
    """One drill: read, create or replace, delete."""
    drill_id = req.route_params.get("id", "")
    if req.method == "PUT":
        return _as("drills", req, lambda _, deps: drills_api.replace(drill_id, req.get_body(), deps=deps))
    if req.method == "DELETE":
        return _as("drills", req, lambda _, deps: drills_api.delete(drill_id, deps=deps))
    return _as("read", req, lambda _, deps: drills_api.get(drill_id, deps=deps))


@app.route(route="drills/{id}/runs", methods=["GET"])
def drills_runs(req: func.HttpRequest) -> func.HttpResponse:
    """A drill's runs, newest first, with their results and clean-up."""
    return _as("read", req, lambda _, deps: drills_api.runs(req.route_params.get("id", ""), deps=deps))


@app.route(route="drills/runs/latest", methods=["GET"])
def drills_latest_runs(req: func.HttpRequest) -> func.HttpResponse:
    """The last run per drill and backup instance, with its RTO trend (the dashboard's drills panel)."""
    return _as("read", req, lambda _, deps: drills_api.latest_runs(dict(req.params), deps=deps))


@app.route(route="drills/{id}/run", methods=["POST"])
def drills_run_now(req: func.HttpRequest) -> func.HttpResponse:
    """Run a drill now (same plan, same evidence)."""
    return _as("drills", req, lambda _, deps: drills_api.run_now(req.route_params.get("id", ""), deps=deps))


@app.timer_trigger(arg_name="timer", schedule="%RESTORE_DRILL_SCHEDULE%", run_on_startup=False, use_monitor=True)
def restore_drills(timer: func.TimerRequest) -> None:
    """Starts due drill runs, writes missing evidence, cleans up after validation windows. Contract:
    restore_core/drills/scheduler.py."""
    drills_scheduler.tick(runtime.deps())
