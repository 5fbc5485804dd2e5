from __future__ import annotations

import json
from typing import Any

import pytest


@pytest.fixture(scope="session")
def openapi() -> dict[str, Any]:
    """The OpenAPI document /api/schema/ serves (built as the view builds it)."""
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.renderers import OpenApiJsonRenderer

    return json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(public=True)))


def request_inputs(openapi: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """Every value a request may carry: (where, name, schema), for each query parameter and
    each property of a request body's component (nested ones included)."""
    found: list[tuple[str, str, dict[str, Any]]] = []
    for path, operations in openapi["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "query":
                    where = f"{method.upper()} {path} ?{parameter['name']}"
                    found.append((where, parameter["name"], parameter["schema"]))
    for component, schema in openapi["components"]["schemas"].items():
        if component.endswith("Request"):
            for name, prop in schema.get("properties", {}).items():
                found.append((f"{component}.{name}", name, prop))
    return found


def resolve(openapi: dict[str, Any], schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The alternatives a property's schema allows, with $ref and allOf/oneOf unwrapped."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return [
            {**s, "component": s.get("component", name)}
            for s in resolve(openapi, openapi["components"]["schemas"][name])
        ]
    for combinator in ("allOf", "oneOf", "anyOf"):
        if combinator in schema:
            rest = {k: v for k, v in schema.items() if k != combinator}
            return [
                {**rest, **alternative}
                for part in schema[combinator]
                for alternative in resolve(openapi, part)
            ]
    return [schema]
