"""A params section whose keys others add at run time: `method`, which takes the settings strategies
register (`k1model.config.registry`) like its own fields."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from k1model.config.checks import Section, field_default


@dataclass(frozen=True, init=False)
class ExtensibleSection(Section):
    """A section whose keys others add at run time (`registered()`, e.g. the settings strategies register
    for `method`). A registered setting is validated by its check, has its default, and reads like any
    other field (`cfg.ewc_lambda`, `cfg["ewc_lambda"]`, `to_dict()`, the schema); its value lives in the
    hidden field `extra`, so `dataclasses.replace` keeps it. Subclasses are `@dataclass(frozen=True,
    init=False)`: this `__init__` takes the class's fields and the registered keys."""

    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict, hash=False,
                                                 metadata={"hidden": True, "in_params": False})

    def __init__(self, **values: Any) -> None:
        registered = self.registered()
        own = [f for f in dataclasses.fields(self) if f.name != "extra"]
        unknown = [k for k in values if k != "extra" and k not in registered and k not in {f.name for f in own}]
        if unknown:
            raise TypeError(f"{type(self).__name__}() got an unexpected keyword argument {unknown[0]!r}")
        for f in own:
            object.__setattr__(self, f.name, values[f.name] if f.name in values else field_default(f))
        given = dict(values.get("extra") or {})  # from dataclasses.replace: the current registered values
        object.__setattr__(self, "extra", {k: values[k] if k in values else given[k] if k in given else field_default(f)
                                           for k, f in registered.items()})
        self.__post_init__()

    def __post_init__(self) -> None:
        checked = {}
        for key, f in self.registered().items():
            check = f.metadata.get("check")
            checked[key] = self.extra[key] if check is None else check(self.extra[key], self._key(key))
        object.__setattr__(self, "extra", checked)
        super().__post_init__()

    def __getattr__(self, name: str) -> Any:  # only called when ordinary lookup fails: registered settings
        extra = self.__dict__.get("extra")
        if extra is not None and name in extra:
            return extra[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
