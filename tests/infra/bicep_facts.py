"""Facts read from the Bicep templates for the infra tests (offline: pycep-parser, no Azure, no bicep CLI).

Consumes: ``infra/**/*.bicep`` and ``function_app.py`` from the repository.
Produces: the app setting names the templates set, the ``%NAME%`` binding expressions the app uses, and the scans
(secrets, role ids) the tests assert on. Each extractor also runs on small synthetic inputs in the tests, so a broken
extractor fails loudly instead of making the parity checks vacuous.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pycep import BicepParser

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
MAIN_BICEP = INFRA / "main.bicep"
ROLES_BICEP = INFRA / "modules" / "roles.bicep"
FUNCTION_APP = ROOT / "function_app.py"

#: Variable in main.bicep that holds THE app settings, and the variables it unions in by name.
APP_SETTINGS_VAR = "appSettings"

#: Settings the platform reads (not restore_core), with the reason they are allowed in the Bicep.
PLATFORM_SETTINGS: dict[str, str] = {
    "FUNCTIONS_EXTENSION_VERSION": "Functions runtime version on App Service plans (Flex sets it in functionAppConfig)",
    "FUNCTIONS_WORKER_RUNTIME": "language worker on App Service plans (Flex sets it in functionAppConfig)",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Entra ID ingestion for the host's telemetry (local auth disabled)",
    "PYTHON_ENABLE_OPENTELEMETRY": "Python worker announces WorkerOpenTelemetryEnabled: with host.json telemetryMode "
    "OpenTelemetry the host stops exporting the worker's logs, which the app exports itself (no duplicates)",
}
#: Prefixes of identity-based connection settings read by the Functions host / the storage bindings.
PLATFORM_PREFIXES: dict[str, str] = {
    "AzureWebJobsStorage__": "host storage connection, identity-based (read by the Functions host)",
    "RestoreStorage__": "the app's storage connection, identity-based (bindings connection='RestoreStorage' and "
    "restore_core.config.STORAGE_CONNECTION)",
}

SECRET_PATTERNS: dict[str, re.Pattern[str]] = {
    "listKeys(": re.compile(r"listKeys\s*\(", re.IGNORECASE),
    "AccountKey=": re.compile(r"AccountKey\s*=", re.IGNORECASE),
    "SharedAccessSignature": re.compile(r"SharedAccessSignature", re.IGNORECASE),
    "listAccountSas/listServiceSas": re.compile(r"list(Account|Service)Sas\s*\(", re.IGNORECASE),
    "connection string with a key": re.compile(r"DefaultEndpointsProtocol=[^'\"\n]*(Key|Signature)=", re.IGNORECASE),
    "instrumentation key literal": re.compile(r"InstrumentationKey=[0-9a-f-]{36}", re.IGNORECASE),
}

GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


def parse(path: Path) -> dict[str, Any]:
    result: dict[str, Any] = BicepParser().parse(file_path=path)
    return result


def parse_text(text: str, tmp_dir: Path) -> dict[str, Any]:
    path = tmp_dir / "snippet.bicep"
    path.write_text(text)
    return parse(path)


def _object_keys(node: Any, variables: dict[str, Any], seen: set[str]) -> Iterator[str]:
    """Keys of every object literal reachable from ``node``; a bare string naming a variable is followed."""
    if isinstance(node, dict):
        if "function" in node or "operator" in node:
            inner = node.get("function") or node.get("operator")
            args = inner.get("parameters") or inner.get("operands") or {}
            for value in args.values():
                yield from _object_keys(value, variables, seen)
            return
        for key, value in node.items():
            yield key
            # values are settings, not nested settings objects: do not descend
            del value
    elif isinstance(node, str) and node in variables and node not in seen:
        seen.add(node)
        yield from _object_keys(variables[node]["value"], variables, seen)


def app_setting_names(parsed_main: dict[str, Any], var_name: str = APP_SETTINGS_VAR) -> set[str]:
    """Names of the app settings built in ``var <var_name> = union(...)`` of a parsed main.bicep."""
    variables = parsed_main.get("variables", {})
    if var_name not in variables:
        raise AssertionError(f"main.bicep has no variable {var_name!r}: the app settings must be built in one place")
    # the value of the variable is a union(...) call or an object literal
    top = variables[var_name]["value"]
    names: set[str] = set()
    if isinstance(top, dict) and not ("function" in top or "operator" in top):
        names.update(top)
    else:
        names.update(_object_keys(top, variables, {var_name}))
    return names


def _object_items(node: Any, variables: dict[str, Any], seen: set[str]) -> Iterator[tuple[str, Any]]:
    """(key, value) of every object literal reachable from ``node`` (both branches of a conditional)."""
    if isinstance(node, dict):
        if "function" in node or "operator" in node:
            inner = node.get("function") or node.get("operator")
            args = inner.get("parameters") or inner.get("operands") or {}
            for value in args.values():
                yield from _object_items(value, variables, seen)
            return
        yield from node.items()
    elif isinstance(node, str) and node in variables and node not in seen:
        seen.add(node)
        yield from _object_items(variables[node]["value"], variables, seen)


def app_settings(parsed_main: dict[str, Any], var_name: str = APP_SETTINGS_VAR) -> dict[str, Any]:
    """Name -> parsed value of every app setting in ``var <var_name>`` (a literal string, or an expression)."""
    variables = parsed_main.get("variables", {})
    if var_name not in variables:
        raise AssertionError(f"main.bicep has no variable {var_name!r}: the app settings must be built in one place")
    return dict(_object_items(variables[var_name]["value"], variables, {var_name}))


def object_var(parsed: dict[str, Any], var_name: str) -> dict[str, Any]:
    value = parsed["variables"][var_name]["value"]
    if not isinstance(value, dict):
        raise AssertionError(f"variable {var_name!r} is not an object literal")
    return value


#: Site properties Microsoft lists under "Flex Consumption plan deprecations" (functions-app-settings) that ARM also
#: rejects on a Flex site even when null (error 51021); docs/deploy.md quotes both sources.
FLEX_REJECTED_SITE_PROPERTIES = ("ftpsState", "linuxFxVersion", "alwaysOn", "use32BitWorkerProcess",
                                 "netFrameworkVersion", "functionsRuntimeScaleMonitoringEnabled")


def evaluate(node: Any, variables: dict[str, Any], flags: dict[str, bool]) -> Any:
    """``node`` (a parsed Bicep expression) as deployed when the boolean variables in ``flags`` have those values.

    A conditional on a flag takes its branch, ``union()`` merges objects, a bare string naming an object variable
    becomes that object; other values stay as parsed. A conditional on anything else fails loudly, so a check built
    on this never passes by not looking.
    """
    if isinstance(node, str):
        value = variables.get(node, {}).get("value") if node in variables else None
        return evaluate(value, variables, flags) if isinstance(value, dict) else node
    if not isinstance(node, dict):
        return node
    if "operator" in node and node["operator"].get("type") == "conditional":
        operands = node["operator"]["operands"]
        if operands["condition"] not in flags:
            raise AssertionError(f"conditional on {operands['condition']!r}: give its value in flags")
        branch = "true_value" if flags[operands["condition"]] else "false_value"
        return evaluate(operands[branch], variables, flags)
    if "function" in node and node["function"].get("type") == "union":
        merged: dict[str, Any] = {}
        for arg in node["function"]["parameters"].values():
            value = evaluate(arg, variables, flags)
            if not isinstance(value, dict):
                raise AssertionError(f"union() of a non-object: {arg!r}")
            merged.update(value)
        return merged
    if "operator" in node or "function" in node:
        return node
    return {key: evaluate(value, variables, flags) for key, value in node.items()}


def resource_properties(parsed: dict[str, Any], resource: str, flags: dict[str, bool]) -> dict[str, Any]:
    """``properties`` of the named resource of a parsed template, evaluated for ``flags``."""
    config = parsed["resources"][resource]["config"]
    value = evaluate(config["properties"], parsed.get("variables", {}), flags)
    if not isinstance(value, dict):
        raise AssertionError(f"properties of {resource!r} did not evaluate to an object")
    return value


def binding_setting_names(function_app_source: str) -> set[str]:
    """Every ``%NAME%`` binding expression in function_app.py source."""
    return set(re.findall(r"%([A-Za-z_][A-Za-z0-9_]*)%", function_app_source))


def is_platform_setting(name: str) -> bool:
    return name in PLATFORM_SETTINGS or any(name.startswith(p) for p in PLATFORM_PREFIXES)


def code_lines(text: str) -> Iterator[tuple[int, str]]:
    """Lines of a Bicep file without ``//`` comments (string-aware enough for our templates)."""
    for number, line in enumerate(text.splitlines(), start=1):
        code = re.sub(r"^\s*//.*$", "", line)
        code = re.sub(r"\s//\s.*$", "", code)
        yield number, code


def secret_findings(files: Iterable[Path]) -> list[str]:
    findings = []
    for path in files:
        text = path.read_text()
        for label, pattern in SECRET_PATTERNS.items():
            for match in pattern.finditer(text):
                line = text.count("\n", 0, match.start()) + 1
                findings.append(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}:{line}: {label}")
    return findings


def role_guid_literals_outside(files: Iterable[Path], allowed: Path) -> list[str]:
    """GUID literals in code (not comments) of any Bicep file other than ``allowed``."""
    findings = []
    for path in files:
        if path == allowed:
            continue
        for number, code in code_lines(path.read_text()):
            if GUID.search(code):
                findings.append(f"{path.name}:{number}: {code.strip()}")
    return findings


def role_vars_without_comment(text: str) -> list[str]:
    """``var x = '<guid>'`` lines not directly preceded by a ``//`` comment line."""
    lines = text.splitlines()
    bad = []
    for i, line in enumerate(lines):
        if re.match(r"\s*var\s+\w+\s*=\s*'" + GUID.pattern + "'", line):
            if i == 0 or not lines[i - 1].strip().startswith("//"):
                bad.append(line.strip())
    return bad


def _loop_items(config: dict[str, Any], variables: dict[str, Any]) -> tuple[str | None, Any]:
    """(item name, what it iterates) of a loop, or (None, None); what it iterates is the array variable's literal list,
    else the array's name."""
    loop = config.get("loop_type")
    if not loop:
        return None, None
    detail = loop["detail"]
    array = detail["array_name"]
    value = variables.get(array, {}).get("value") if array in variables else None
    return detail["item_name"], value if isinstance(value, list) else array


def role_grants(parsed_roles: dict[str, Any]) -> list[dict[str, Any]]:
    """Every role assignment of a parsed roles.bicep: ``{principal, role, scope, condition, name}``, one per principal
    and role. ``role`` is the role variable's name (a loop over a list variable of roles gives one grant per role);
    ``scope`` is the scope resource's symbolic name, or the array a module loop assigns at (e.g.
    ``stagingContainerIds``), or the module's ``targetResourceId`` expression. Fails loudly on a shape it does not
    know, so a check built on it never passes by not looking."""
    variables = parsed_roles.get("variables", {})
    grants: list[dict[str, Any]] = []
    for name, res in parsed_roles.get("resources", {}).items():
        if res["type"] != "Microsoft.Authorization/roleAssignments":
            continue
        config = res["config"]
        body = config.get("config") or config
        props = body["properties"]
        role_ref = props["roleDefinitionId"]["function"]["parameters"]["resource_name_1"]
        item, items = _loop_items(config, variables)
        roles = items if role_ref == item else [role_ref]
        if not isinstance(roles, list):
            raise AssertionError(f"{name}: roles from {roles!r}, not a list variable")
        grants += [{"principal": props["principalId"], "role": r, "scope": body["scope"],
                    "condition": props.get("condition"), "name": name} for r in roles]
    for name, mod in parsed_roles.get("modules", {}).items():
        config = mod["config"]
        body = config.get("config") or config
        params = body["params"]
        if "roleDefinitionGuid" not in params:
            raise AssertionError(f"module {name} assigns no roleDefinitionGuid: an unknown assignment shape")
        item, items = _loop_items(config, variables)
        target = params.get("targetResourceId")
        scope = items if target == item and isinstance(items, str) else target
        principals = params.get("principalIds", params.get("principalId"))
        principals = principals if isinstance(principals, list) else [principals]
        grants += [{"principal": p, "role": params["roleDefinitionGuid"], "scope": scope,
                    "condition": params.get("condition"), "name": name} for p in principals]
    return grants
