"""Validators for params values, and the `Section` base class every params section builds on.

One validation style for the whole project: a section is a frozen dataclass whose fields carry
a `Check` (made with `setting(...)`). The check normalises the value or raises a `ConfigError`
that names the full key (`data.max_bytes`), the bad value and what is allowed. Because each
check also knows its JSON-schema fragment, `workflow/schemas/params.schema.yaml` is generated
from these classes (`k1 schema`), never written by hand.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import re
from dataclasses import dataclass
from typing import Any, ClassVar, Iterator, Mapping, Sequence

from k1model.errors import ConfigError


class InvalidValue(ConfigError):
    """A value that failed its check; knows its key so an enclosing section can prefix it."""

    def __init__(self, key: str, value: Any, allowed: str):
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key}={value!r} is not allowed: {key} must be {allowed}")

    def under(self, prefix: str) -> "InvalidValue":
        """The same error with its key under `prefix` (a nested section's path)."""
        return InvalidValue(f"{prefix}.{self.key}" if prefix else self.key, self.value, self.allowed)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class Check:
    """Normalise one value (or raise InvalidValue) and describe it as JSON schema."""

    allowed: str = "a valid value"

    def __call__(self, value: Any, key: str) -> Any:
        raise NotImplementedError

    def schema(self) -> dict[str, Any]:
        raise NotImplementedError

    def fail(self, value: Any, key: str) -> InvalidValue:
        """The error for a value this check refuses."""
        return InvalidValue(key, value, self.allowed)


@dataclass(frozen=True)
class Integer(Check):
    """An integer within optional bounds (booleans are not integers)."""
    minimum: int | None = None
    maximum: int | None = None

    @property
    def allowed(self) -> str:  # type: ignore[override]
        if self.minimum == 1 and self.maximum is None:
            return "a positive integer"
        if self.minimum == 0 and self.maximum is None:
            return "a non-negative integer"
        lo = "" if self.minimum is None else f" >= {self.minimum}"
        hi = "" if self.maximum is None else f" <= {self.maximum}"
        return f"an integer{lo}{' and' if lo and hi else ''}{hi}"

    def __call__(self, value: Any, key: str) -> int:
        if not _is_int(value) or (self.minimum is not None and value < self.minimum) or (
                self.maximum is not None and value > self.maximum):
            raise self.fail(value, key)
        return int(value)

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "integer"}
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        return out


@dataclass(frozen=True)
class Number(Check):
    """A finite real number in an interval; `open_low`/`open_high` make an end exclusive."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False

    @property
    def allowed(self) -> str:  # type: ignore[override]
        if self.low is not None and self.high is not None:
            return (f"a number in {'(' if self.open_low else '['}{self.low:g}, "
                    f"{self.high:g}{')' if self.open_high else ']'}")
        if self.low is not None:
            return f"a finite number {'>' if self.open_low else '>='} {self.low:g}"
        if self.high is not None:
            return f"a finite number {'<' if self.open_high else '<='} {self.high:g}"
        return "a finite number"

    def __call__(self, value: Any, key: str) -> float:
        if not _is_number(value) or not math.isfinite(value):
            raise self.fail(value, key)
        v = float(value)
        if self.low is not None and (v < self.low or (self.open_low and v == self.low)):
            raise self.fail(value, key)
        if self.high is not None and (v > self.high or (self.open_high and v == self.high)):
            raise self.fail(value, key)
        return v

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "number"}
        if self.low is not None:
            out["exclusiveMinimum" if self.open_low else "minimum"] = self.low
        if self.high is not None:
            out["exclusiveMaximum" if self.open_high else "maximum"] = self.high
        return out


@dataclass(frozen=True)
class Boolean(Check):
    """true or false."""
    allowed: str = "true or false"

    def __call__(self, value: Any, key: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(value, key)
        return value

    def schema(self) -> dict[str, Any]:
        return {"type": "boolean"}


@dataclass(frozen=True)
class Text(Check):
    """A string, matching a regular expression when one is given."""
    pattern: str | None = None
    what: str = "a non-empty string"

    @property
    def allowed(self) -> str:  # type: ignore[override]
        return self.what

    def __call__(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value or (self.pattern and not re.fullmatch(self.pattern, value)):
            raise self.fail(value, key)
        return value

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "string", "minLength": 1}
        if self.pattern:
            out["pattern"] = f"^{self.pattern}$"
        return out


class OneOf(Check):
    """One of a fixed list of values; `choices` may be a callable, read when checking (a registry)."""

    def __init__(self, choices: Sequence[Any] | Any):
        self._choices = choices

    @property
    def choices(self) -> list[Any]:
        """The allowed values (asked when checking: a registry's names may grow)."""
        return list(self._choices() if callable(self._choices) else self._choices)

    @property
    def allowed(self) -> str:  # type: ignore[override]
        return "one of " + ", ".join(str(c) for c in self.choices)

    def __call__(self, value: Any, key: str) -> Any:
        if isinstance(value, bool) or value not in self.choices:
            raise self.fail(value, key)
        return value

    def schema(self) -> dict[str, Any]:
        choices = self.choices
        kind = "string" if all(isinstance(c, str) for c in choices) else None
        return {**({"type": kind} if kind else {}), "enum": choices}


@dataclass(frozen=True)
class Nullable(Check):
    """null, or a value the inner check accepts."""
    inner: Check

    @property
    def allowed(self) -> str:  # type: ignore[override]
        return f"{self.inner.allowed} or null"

    def __call__(self, value: Any, key: str) -> Any:
        if value is None:
            return None
        try:
            return self.inner(value, key)
        except InvalidValue:
            raise self.fail(value, key) from None

    def schema(self) -> dict[str, Any]:
        return {"oneOf": [{"type": "null"}, self.inner.schema()]}


@dataclass(frozen=True)
class ListOf(Check):
    """A list, stored as a tuple (immutable) unless `kind=list`; a bad item is named by its index."""

    item: Check
    min_len: int = 0
    max_len: int | None = None
    unique: bool = False
    what: str | None = None
    kind: type = tuple

    @property
    def allowed(self) -> str:  # type: ignore[override]
        if self.what:
            return self.what
        if self.max_len is not None and self.min_len == self.max_len:
            size = f"a list of {self.min_len}"
        elif self.min_len == 1 and self.max_len is None:
            size = "a non-empty list"
        elif self.min_len:
            size = f"a list of at least {self.min_len}"
        else:
            size = "a list"
        return f"{size}{' without repeats' if self.unique else ''} (items: {self.item.allowed})"

    def __call__(self, value: Any, key: str) -> tuple[Any, ...]:
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise self.fail(value, key)
        if len(value) < self.min_len or (self.max_len is not None and len(value) > self.max_len):
            raise self.fail(list(value), key)
        items = self.kind(self.item(v, f"{key}[{i}]") for i, v in enumerate(value))
        if self.unique and len(set(items)) != len(items):
            raise self.fail(list(value), key)
        return items

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "array", "items": self.item.schema()}
        if self.min_len:
            out["minItems"] = self.min_len
        if self.max_len is not None:
            out["maxItems"] = self.max_len
        if self.unique:
            out["uniqueItems"] = True
        return out


@dataclass(frozen=True)
class MapOf(Check):
    """A mapping key -> value (a dict; keys checked with `key_check`, e.g. level numbers or domains)."""

    key_check: Check
    value: Check
    what: str = "a mapping"
    key_pattern: str | None = None  # JSON-schema pattern of the keys as YAML/JSON writes them

    @property
    def allowed(self) -> str:  # type: ignore[override]
        return self.what

    def __call__(self, value: Any, key: str) -> dict[Any, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(value, key)
        out = {}
        for k, v in value.items():
            k2 = self.key_check(k, f"{key} key")
            out[k2] = self.value(v, f"{key}.{k}")
        return out

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "object", "additionalProperties": self.value.schema()}
        if self.key_pattern:
            out["propertyNames"] = {"pattern": self.key_pattern}
        return out


@dataclass(frozen=True)
class IntKey(Check):
    """Mapping keys that are integers (YAML may give them as strings: '1')."""

    minimum: int = 0
    allowed: str = "an integer key"

    def __call__(self, value: Any, key: str) -> int:
        try:
            v = int(value)
        except (TypeError, ValueError):
            raise self.fail(value, key) from None
        if isinstance(value, bool) or v < self.minimum:
            raise self.fail(value, key)
        return v

    def schema(self) -> dict[str, Any]:
        return {"type": "integer", "minimum": self.minimum}


class AnyValue(Check):
    """Any YAML scalar or list of scalars; checked later in context (e.g. sweep values by the key they set)."""

    allowed = "a number, string, boolean or list of them"

    def __call__(self, value: Any, key: str) -> Any:
        ok = (lambda v: isinstance(v, (int, float, str, bool)) and not (isinstance(v, float) and not math.isfinite(v)))
        if ok(value):
            return value
        if isinstance(value, (list, tuple)) and value and all(ok(v) for v in value):
            return tuple(value)
        raise self.fail(value, key)

    def schema(self) -> dict[str, Any]:
        scalar = {"type": ["number", "string", "boolean"]}
        return {"oneOf": [scalar, {"type": "array", "items": scalar, "minItems": 1}]}


class Either(Check):
    """The first of several checks that accepts the value (e.g. a list of orders, or a rule that draws them)."""

    def __init__(self, *options: Check, what: str):
        self.options, self.what = options, what

    @property
    def allowed(self) -> str:  # type: ignore[override]
        return self.what

    def __call__(self, value: Any, key: str) -> Any:
        errors = []
        for option in self.options:
            try:
                return option(value, key)
            except ConfigError as err:
                errors.append((option, err))
        for option, err in errors:  # a mapping given for a sub-section: its own, precise error
            if isinstance(value, Mapping) and isinstance(option, Nested):
                raise err
        raise self.fail(value, key)

    def schema(self) -> dict[str, Any]:
        return {"oneOf": [o.schema() for o in self.options]}


class Nested(Check):
    """A sub-section (another `Section` class); null or absent gives its defaults."""

    def __init__(self, cls: type["Section"], nullable: bool = True):
        self.cls, self.nullable = cls, nullable

    @property
    def allowed(self) -> str:  # type: ignore[override]
        return f"a mapping with keys {', '.join(self.cls.field_names())}"

    def __call__(self, value: Any, key: str) -> "Section":
        if isinstance(value, self.cls):
            return value
        if value is None and self.nullable:
            return self.cls()
        return self.cls.from_mapping(value, key)

    def schema(self) -> dict[str, Any]:
        inner = self.cls.schema()
        return {"oneOf": [{"type": "null"}, inner]} if self.nullable else inner


def setting(default: Any = dataclasses.MISSING, check: Check | None = None, doc: str = "", *,
            factory: Any = dataclasses.MISSING, in_params: bool = True, group: str = "") -> Any:
    """A section field: its default, its check, a one-line description (goes into the schema).

    `in_params=False` marks a field a params file may not set (e.g. `method.variant`, which comes
    from `experiment.variants`); `group` tags fields for consumers (e.g. the probe keys of `analysis`)."""
    meta = {"check": check, "doc": doc, "in_params": in_params, "group": group}
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class Section(Mapping[str, Any]):
    """Base of every params section: validated on construction, immutable, readable like the YAML
    mapping it came from (`cfg["max_bytes"]` and `cfg.max_bytes` are the same)."""

    SECTION: ClassVar[str] = ""
    DESCRIPTION: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            check = f.metadata.get("check")
            if check is not None:
                object.__setattr__(self, f.name, check(getattr(self, f.name), self._key(f.name)))
        self.validate()

    def validate(self) -> None:
        """Checks that involve several fields (override)."""

    def _key(self, name: str) -> str:
        return f"{self.SECTION}.{name}" if self.SECTION else name

    def invalid(self, name: str, allowed: str) -> InvalidValue:
        """The error for field `name` (its current value) with a custom description of what is allowed."""
        return InvalidValue(self._key(name), getattr(self, name), allowed)

    # --- construction from a params mapping --------------------------------------------------
    @classmethod
    def registered(cls) -> Mapping[str, dataclasses.Field]:
        """Settings added to the section by registration (key -> `setting(...)`); see `ExtensibleSection`."""
        return {}

    @classmethod
    def settings(cls) -> list[tuple[str, dataclasses.Field]]:
        """(key, field) of every setting: the class's own fields, then the registered ones."""
        own = [(f.name, f) for f in dataclasses.fields(cls) if not f.metadata.get("hidden")]
        return own + list(cls.registered().items())

    @classmethod
    def field_names(cls, params_only: bool = True) -> list[str]:
        """The section's keys (with `params_only`, only those a params file may set)."""
        return [k for k, f in cls.settings() if f.metadata.get("in_params", True) or not params_only]

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None, where: str | None = None) -> "Section":
        """Build from a params mapping; unknown keys are refused, naming the key and the allowed ones.
        `where` is the key prefix used in messages (default: the class's SECTION)."""
        where = cls.SECTION if where is None else where
        if values is None:
            values = {}
        if not isinstance(values, Mapping):
            raise ConfigError(f"{where} must be a mapping with keys {', '.join(cls.field_names())}, "
                              f"got {values!r}")
        allowed = cls.field_names()
        for key in values:
            if key not in allowed:
                hint = difflib.get_close_matches(str(key), allowed, n=1)
                raise ConfigError(f"{where}.{key}: unknown key; allowed keys: {', '.join(allowed)}"
                                  + (f"; did you mean {where}.{hint[0]}?" if hint else ""))
        try:
            return cls(**cls.prepare(dict(values)))
        except InvalidValue as err:
            if where != cls.SECTION and err.key.startswith(f"{cls.SECTION}."):
                raise InvalidValue(where + err.key[len(cls.SECTION):], err.value, err.allowed) from None
            raise

    @classmethod
    def prepare(cls, values: dict[str, Any]) -> dict[str, Any]:
        """Adjust raw values before construction (override, e.g. to merge with default sub-mappings)."""
        return values

    # --- the Mapping view ------------------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        if key not in self.field_names(params_only=False):
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.field_names(params_only=False))

    def __len__(self) -> int:
        return len(self.field_names(params_only=False))

    __hash__ = object.__hash__  # Mapping sets __hash__ = None; identity hashing is enough here

    def to_dict(self, params_only: bool = False) -> dict[str, Any]:
        """Plain nested dicts and lists (for JSON, YAML and hashing); `params_only` leaves out fields
        a params file may not set."""
        return {k: plain(getattr(self, k), params_only) for k in self.field_names(params_only)}

    # --- the schema --------------------------------------------------------------------------
    @classmethod
    def schema(cls) -> dict[str, Any]:
        props: dict[str, Any] = {}
        defaults = cls()
        for name, f in cls.settings():
            if not f.metadata.get("in_params", True) or f.metadata.get("check") is None:
                continue
            node = dict(f.metadata["check"].schema())
            if f.metadata.get("doc"):
                node["description"] = f.metadata["doc"]
            default = plain(getattr(defaults, name))
            if not isinstance(default, dict):
                node["default"] = default
            props[name] = node
        out: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": props}
        if cls.DESCRIPTION:
            out["description"] = cls.DESCRIPTION
        return out

    @classmethod
    def keys_in_group(cls, group: str) -> list[str]:
        """The section's keys of one group (e.g. the probe keys of `analysis`)."""
        return [k for k, f in cls.settings() if f.metadata.get("group") == group]


def field_default(f: dataclasses.Field) -> Any:
    """A setting's default value (from its factory when it has one)."""
    return f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]


def plain(obj: Any, params_only: bool = False) -> Any:
    """Sections, tuples and mappings as plain dicts and lists."""
    if isinstance(obj, Section):
        return obj.to_dict(params_only)
    if isinstance(obj, Mapping):
        return {k: plain(v, params_only) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v, params_only) for v in obj]
    return obj
