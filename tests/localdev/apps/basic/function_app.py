"""Fixture app for the local Functions host tests. Behaviour is driven by the message/request content.

Queue messages to ``worker``: JSON ``{"tag": str, "action": "ok"|"fail"|"fail_once"|"sleep", "secs": float}``.
Every delivery is recorded in EVENTS (in-process tests read it) and logged (subprocess tests read the log);
successes also write ``{"tag", "id", "dequeue_count"}`` to the %OUT_QUEUE% output binding.
"""

import json
import logging
import os
import threading
import time

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

LOCK = threading.Lock()
EVENTS: list[dict] = []
CONCURRENCY = {"worker": 0, "worker_max": 0, "tick": 0, "tick_max": 0}


def _enter(name: str) -> None:
    with LOCK:
        CONCURRENCY[name] += 1
        CONCURRENCY[name + "_max"] = max(CONCURRENCY[name + "_max"], CONCURRENCY[name])


def _leave(name: str) -> None:
    with LOCK:
        CONCURRENCY[name] -= 1


@app.function_name("worker")
@app.queue_trigger(arg_name="msg", queue_name="%WORK_QUEUE%", connection="AzureWebJobsStorage")
@app.queue_output(arg_name="out", queue_name="%OUT_QUEUE%", connection="AzureWebJobsStorage")
def worker(msg: func.QueueMessage, out: func.Out[str], context: func.Context) -> None:
    body = msg.get_json()
    start = time.time()
    logging.getLogger("fixture").info("worker-start tag=%s dequeue_count=%s", body.get("tag"), msg.dequeue_count)
    _enter("worker")
    try:
        action = body.get("action", "ok")
        if action == "sleep":
            time.sleep(float(body.get("secs", 1)))
        failed = action == "fail" or (action == "fail_once" and msg.dequeue_count == 1)
        with LOCK:
            EVENTS.append({"tag": body.get("tag"), "id": msg.id, "dequeue_count": msg.dequeue_count, "start": start,
                           "end": time.time(), "failed": failed, "invocation_id": context.invocation_id,
                           "pop_receipt": msg.pop_receipt, "insertion_time": msg.insertion_time,
                           "next_visible": msg.time_next_visible})
        if failed:
            raise RuntimeError(f"simulated failure of {body.get('tag')}")
        out.set(json.dumps({"tag": body.get("tag"), "id": msg.id, "dequeue_count": msg.dequeue_count}))
    finally:
        _leave("worker")


@app.function_name("tick")
@app.timer_trigger(arg_name="timer", schedule="%TICK_SCHEDULE%", run_on_startup=False)
async def tick(timer: func.TimerRequest) -> None:
    import asyncio

    _enter("tick")
    start = time.time()
    try:
        await asyncio.sleep(float(os.environ.get("TICK_SLEEP", "0")))
        with LOCK:
            EVENTS.append({"tag": "tick", "start": start, "end": time.time(), "past_due": timer.past_due})
    finally:
        _leave("tick")


@app.function_name("hello")
@app.route(route="hello/{name}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def hello(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(f"hello {req.route_params['name']}", mimetype="text/plain")


@app.function_name("items")
@app.route(route="items/{id:int}", methods=["GET", "POST"])
def items(req: func.HttpRequest) -> func.HttpResponse:
    echo = {"method": req.method, "route_params": dict(req.route_params), "params": dict(req.params),
            "body": req.get_body().decode(), "x_test": req.headers.get("x-test"), "url": req.url}
    return func.HttpResponse(json.dumps(echo), status_code=200, mimetype="application/json",
                             headers={"X-Fixture": "items"})


@app.function_name("admin_only")
@app.route(route="admin-only", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
def admin_only(req: func.HttpRequest) -> str:
    return "admin ok"


@app.function_name("enqueue")
@app.route(route="enqueue/{tag}", methods=["POST"])
@app.queue_output(arg_name="out", queue_name="%OUT_QUEUE%", connection="AzureWebJobsStorage")
def enqueue(req: func.HttpRequest, out: func.Out[str]) -> func.HttpResponse:
    out.set(json.dumps({"tag": req.route_params["tag"], **req.get_json()}))
    return func.HttpResponse(status_code=202)


@app.function_name("boom")
@app.route(route="boom", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("boom")


@app.function_name("whoami")
@app.route(route="whoami", methods=["GET"])
def whoami(req: func.HttpRequest) -> func.HttpResponse:
    """What the platform passed on: the X-MS-* headers the function sees, and WEBSITE_AUTH_ENABLED."""
    seen = {k.lower(): v for k, v in req.headers.items() if k.lower().startswith("x-ms-")}
    return func.HttpResponse(json.dumps({"headers": seen, "auth_enabled": os.environ.get("WEBSITE_AUTH_ENABLED")}),
                             mimetype="application/json")
