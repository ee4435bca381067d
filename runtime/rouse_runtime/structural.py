"""The API server's checks of a custom resource, done offline from its CRD schema.

What `kubectl apply` does to a custom object, in the same order and with the same
messages, so a file refused here is refused there and the other way round:

1. unknown fields are refused (kubectl's default `--validate=strict`);
2. defaults from the schema are filled in (structural defaulting, top-down);
3. the OpenAPI schema is checked (types, bounds, patterns, enums, required);
4. the CEL rules (`x-kubernetes-validations`) are evaluated with cel-python.

Messages have the API server's shape: `<field path>: <what is wrong>`.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import celpy
import jsonschema
import jsonschema.exceptions
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError

Schema = dict[str, Any]

_SKIP_KEYS = {
    "description",
    "default",
    "x-kubernetes-validations",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-int-or-string",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
    "x-kubernetes-embedded-resource",
    "format",  # int64/date-time: the API server does not refuse on these for CRDs
}


def join_path(base: str, key: str | int) -> str:
    """Kubernetes field-path notation: `spec.skills[0].name`, `metadata.labels[foo]`."""
    if isinstance(key, int):
        return f"{base}[{key}]"
    return f"{base}.{key}" if base else key


def _is_free_form(schema: Schema) -> bool:
    return bool(schema.get("x-kubernetes-preserve-unknown-fields")) and "properties" not in schema


def unknown_fields(obj: Any, schema: Schema, path: str = "") -> list[str]:
    """Fields the schema does not declare, as the API server's strict field validation names them."""
    errors: list[str] = []
    if isinstance(obj, dict):
        if path == "metadata" or _is_free_form(schema):
            return errors
        props: dict[str, Schema] = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        keep_unknown = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
        for key, value in obj.items():
            child = join_path(path, key)
            if key in props:
                errors += unknown_fields(value, props[key], child)
            elif isinstance(additional, dict):
                errors += unknown_fields(value, additional, join_path(path, str(key)))
            elif not keep_unknown:
                errors.append(f'unknown field "{child}"')
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(obj):
            errors += unknown_fields(item, schema["items"], join_path(path, index))
    return errors


def apply_defaults(obj: Any, schema: Schema) -> None:
    """Structural defaulting in place: set missing defaulted fields, then recurse (as the API server)."""
    if isinstance(obj, dict):
        props: dict[str, Schema] = schema.get("properties") or {}
        for key, prop in props.items():
            if "default" in prop and obj.get(key) is None:
                obj[key] = copy.deepcopy(prop["default"])
        additional = schema.get("additionalProperties")
        for key, value in obj.items():
            if key in props:
                apply_defaults(value, props[key])
            elif isinstance(additional, dict):
                apply_defaults(value, additional)
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for item in obj:
            apply_defaults(item, schema["items"])


def _json_schema(schema: Any) -> Any:
    """The CRD schema as plain JSON Schema (Kubernetes extensions dropped)."""
    if isinstance(schema, dict):
        return {k: _json_schema(v) for k, v in schema.items() if k not in _SKIP_KEYS}
    if isinstance(schema, list):
        return [_json_schema(v) for v in schema]
    return schema


def _go_value(value: Any) -> str:
    """How Go's field.Invalid prints a value: strings quoted, numbers bare."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, sort_keys=True)


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _schema_error(error: jsonschema.exceptions.ValidationError) -> str:
    """One jsonschema error in the API server's words (apiextensions' kube-openapi conversion)."""
    path = ""
    for part in error.absolute_path:
        path = join_path(path, part)
    value: Any = error.instance
    validator: Any = error.validator
    arg: Any = error.validator_value
    if validator == "required":
        missing = re.search(r"'([^']+)' is a required property", error.message)
        name = missing.group(1) if missing else "?"
        return f"{join_path(path, name)}: Required value"
    if validator == "enum":
        supported = ", ".join(json.dumps(v) for v in arg)
        return f"{path}: Unsupported value: {_go_value(value)}: supported values: {supported}"
    if validator in ("type", "anyOf"):
        kind = arg if isinstance(arg, str) else "integer or string"
        actual = _type_name(value)
        return (
            f'{path}: Invalid value: "{actual}": {path} in body must be of type {kind}: "{actual}"'
        )
    if validator == "maxLength":
        return f"{path}: Too long: may not be more than {arg} bytes"
    if validator == "maxItems":
        return f"{path}: Too many: {len(value)}: must have at most {arg} items"
    if validator == "maxProperties":
        return f"{path}: Too many: {len(value)}: must have at most {arg} items"
    body = {
        "pattern": f"should match '{arg}'",
        "minLength": f"should be at least {arg} chars long",
        "minimum": f"should be greater than or equal to {arg}",
        "maximum": f"should be less than or equal to {arg}",
        "minItems": f"should have at least {arg} items",
        "minProperties": f"should have at least {arg} properties",
    }.get(str(validator), error.message)
    shown = len(value) if validator in ("minItems", "minProperties") else value
    return f"{path}: Invalid value: {_go_value(shown)}: {path} in body {body}"


def schema_errors(obj: Any, schema: Schema) -> list[str]:
    """OpenAPI schema violations (types, bounds, patterns, enums, required)."""
    validator = _validator(json.dumps(_json_schema(schema), sort_keys=True))
    errors = sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    return [_schema_error(e) for e in errors]


@lru_cache(maxsize=8)
def _validator(schema_json: str) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(json.loads(schema_json))


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
# Kubernetes' CEL string extensions that the CRD's rules use (cel-go ext.Strings).
_EXTENSIONS: dict[str, Any] = {
    "lowerAscii": lambda s: celpy.celtypes.StringType(str(s).translate(_ASCII_LOWER))
}


@lru_cache(maxsize=256)
def _program(rule: str) -> celpy.Runner:
    env = celpy.Environment()
    return env.program(env.compile(rule), functions=_EXTENSIONS)


def _rules_at(obj: Any, schema: Schema, path: str) -> Iterator[tuple[str, Any, Schema]]:
    """Every (path, value, schema) that carries CEL rules, deepest first (as the API server reports)."""
    if isinstance(obj, dict):
        props: dict[str, Schema] = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        for key, value in obj.items():
            if key in props:
                yield from _rules_at(value, props[key], join_path(path, key))
            elif isinstance(additional, dict):
                yield from _rules_at(value, additional, join_path(path, str(key)))
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(obj):
            yield from _rules_at(item, schema["items"], join_path(path, index))
    if schema.get("x-kubernetes-validations"):
        yield path, obj, schema


def cel_errors(obj: Any, schema: Schema) -> list[str]:
    """Failed `x-kubernetes-validations` rules, with the rule's own message."""
    errors: list[str] = []
    for path, value, node in _rules_at(obj, schema, ""):
        activation = {"self": json_to_cel(value)}
        for rule in node["x-kubernetes-validations"]:
            try:
                passed = bool(_program(rule["rule"]).evaluate(activation))
            except CELEvalError:  # a runtime error fails the rule, as in Kubernetes
                passed = False
            if not passed:
                field = path
                for part in str(rule.get("fieldPath") or "").strip(".").split("."):
                    if part:
                        field = join_path(field, part)
                message = " ".join(
                    str(rule.get("message") or f"failed rule: {rule['rule']}").split()
                )
                # The API server names a rule on the whole object "<nil>" (no field path).
                errors.append(f"{field or '<nil>'}: Invalid value: {message}")
    return errors


def validate(obj: Any, schema: Schema) -> tuple[Any, list[str]]:
    """Refuse unknown fields, default, check the schema, then the CEL rules; return (defaulted, errors)."""
    errors = unknown_fields(obj, schema)
    if errors:
        return obj, errors
    defaulted = copy.deepcopy(obj)
    apply_defaults(defaulted, schema)
    errors = schema_errors(defaulted, schema)
    if errors:
        return defaulted, errors
    return defaulted, cel_errors(defaulted, schema)
