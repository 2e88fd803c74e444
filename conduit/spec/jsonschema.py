"""The JSON Schema of the spec, as editors and `conduit schema` see it."""

from __future__ import annotations

import json
from pathlib import Path

from conduit.spec.spec import ClusterSpec

COMMITTED = Path(__file__).with_name("cluster.schema.json")


def schema_text() -> str:
    schema = ClusterSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Conduit cluster spec"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"
