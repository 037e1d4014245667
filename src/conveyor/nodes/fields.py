"""The ``set`` node type: typed field assignments on an object, keeping or dropping the rest."""

from __future__ import annotations

import copy
import json
import math
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from conveyor.errors import NodeError
from conveyor.nodes.base import NodeContext, NodeType
from conveyor.nodes.paths import MISSING, get_path, set_path, type_name


class FieldType(StrEnum):
    STRING = "string"
    NUMBER = "number"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    JSON = "json"
    ARRAY = "array"
    OBJECT = "object"


class Keep(StrEnum):
    ALL = "all"
    NONE = "none"
    LISTED = "listed"


class FieldAssignment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        min_length=1,
        max_length=500,
        description="the field to set; dots set nested fields ('customer.address.city')",
    )
    value: Any = Field(default=None, description="the value (usually a template)")
    type: FieldType | None = Field(
        default=None,
        description="convert the value to string, number, integer, boolean, array, object, "
        "or json (a string holding JSON text is parsed); none: the value as rendered. "
        "null stays null",
    )

    @field_validator("name")
    @classmethod
    def _no_empty_part(cls, value: str) -> str:
        if any(not part for part in value.split(".")):
            raise ValueError(f"'{value}' has an empty part between dots")
        return value


class SetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    fields: list[FieldAssignment] = Field(default_factory=list, description="fields to set")
    from_: Any = Field(
        default=None,
        alias="from",
        description="the object to start from, e.g. '{{ nodes.get.output }}' (default: none)",
    )
    keep: Keep = Field(
        default=Keep.ALL,
        description="which fields of 'from' to keep besides those set: all, none, or listed",
    )
    keep_fields: list[str] = Field(
        default_factory=list, description="with keep: listed, the fields of 'from' to keep"
    )

    @model_validator(mode="after")
    def _listed_needs_fields(self) -> SetConfig:
        if self.keep == Keep.LISTED and not self.keep_fields:
            raise ValueError("keep: listed needs keep_fields")
        if self.keep != Keep.LISTED and self.keep_fields:
            raise ValueError("keep_fields goes with keep: listed")
        return self


class SetFields(NodeType):
    name = "set"
    title = "Set fields"
    category = "data"
    icon = "pencil"
    description = "Set typed fields on an object; keep all, none or some of its other fields."
    config_model = SetConfig
    example = {
        "id": "contact",
        "type": "set",
        "config": {
            "from": "{{ nodes.get.output.body }}",
            "keep": "listed",
            "keep_fields": ["email"],
            "fields": [
                {"name": "name.full", "value": "{{ trigger.first }} {{ trigger.last }}"},
                {"name": "age", "value": "{{ trigger.age }}", "type": "integer"},
                {"name": "vip", "value": "yes", "type": "boolean"},
            ],
        },
    }

    async def run(self, ctx: NodeContext, config: SetConfig) -> dict[str, Any]:
        return assign(config)


def assign(config: SetConfig) -> dict[str, Any]:
    source = config.from_ if config.from_ is not None else {}
    if not isinstance(source, dict):
        raise NodeError(
            f"config.from: expected an object, got {type_name(source)}", non_retryable=True
        )
    result: dict[str, Any] = {}
    if config.keep == Keep.ALL:
        result = copy.deepcopy(source)
    elif config.keep == Keep.LISTED:
        for name in config.keep_fields:
            found = get_path(source, name)
            if found is not MISSING:
                set_path(result, name, copy.deepcopy(found))
    for index, field in enumerate(config.fields):
        where = f"config.fields[{index}] ({field.name})"
        try:
            set_path(result, field.name, convert(field.value, field.type))
        except ValueError as exc:
            raise NodeError(f"{where}: {exc}", non_retryable=True) from None
    return result


def convert(value: Any, to: FieldType | None) -> Any:
    """``value`` as a ``to``; ValueError saying why it cannot be."""
    if value is None or to is None:
        return value
    return _CONVERTERS[to](value)


def _to_string(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _to_number(value: Any) -> int | float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{value} is not a finite number")
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"{_shown(value)} is not a number") from None
        if math.isfinite(number):
            return number
    raise ValueError(f"{_shown(value)} is not a number")


def _to_integer(value: Any) -> int:
    number = _to_number(value)
    if isinstance(number, float):
        if not number.is_integer():
            raise ValueError(f"{_shown(value)} is not a whole number")
        return int(number)
    return number


_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0", ""})


def _to_boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"{_shown(value)} is not a boolean (true/false, yes/no, on/off, 1/0)")


def _to_json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{_shown(value)} is not valid JSON ({exc.msg})") from None
    return value


def _to_array(value: Any) -> list[Any]:
    parsed = _to_json(value) if isinstance(value, str) else value
    if not isinstance(parsed, list):
        raise ValueError(f"{_shown(value)} is not an array")
    return parsed


def _to_object(value: Any) -> dict[str, Any]:
    parsed = _to_json(value) if isinstance(value, str) else value
    if not isinstance(parsed, dict):
        raise ValueError(f"{_shown(value)} is not an object")
    return parsed


_CONVERTERS: dict[FieldType, Any] = {
    FieldType.STRING: _to_string,
    FieldType.NUMBER: _to_number,
    FieldType.INTEGER: _to_integer,
    FieldType.BOOLEAN: _to_boolean,
    FieldType.JSON: _to_json,
    FieldType.ARRAY: _to_array,
    FieldType.OBJECT: _to_object,
}


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."
