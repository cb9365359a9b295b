"""The registry of variants, strategies and training plugins: plain data at the bottom, filled on first lookup.

The first time anything looks a name up (`VARIANTS`, `STRATEGIES`, `PLUGINS`, `variant_names()`, the method
keys `MethodConfig` takes), the registry loads, in this order:

1. the built-in declarations that `k1model.strategies.BUILTIN` lists (the core variants, then EWC, replay,
   joint training and structural plasticity);
2. every Python entry point of the group `k1model.strategies` (ENTRY_POINT_GROUP), sorted by name: how a
   strategy that lives in another package joins the project.

Each names an object as "module:attribute": a `Strategy`, a variant (`k1model.method.variants.Variant`) or a
tuple of them, which the registry registers (`register`). The registration order is the order of the
settings in the schema, of the variants and of the paper's claims. Importing a module registers nothing; the
config layer validates against what is registered and imports nothing above it (a declaration is loaded by
name, like an entry point).

A strategy's declaration is plain data: its settings (each made with `k1model.config.checks.setting`, so
`MethodConfig`, the JSON schema, validation messages and the sweep/tuning machinery take them), the variants
it adds, its checks of a whole params file, its description in the paper and its claims. Its training plugin
(a `k1model.train.plugins.Plugin` subclass, which needs torch) is named by "module:Class" and imported only
when a run trains with it (`plugin_class`), so planning, validating and analysing never import torch.
docs/architecture.md, "How to add a strategy", walks through one.

In-process registration (a notebook, a test): `register(strategy)`; the built-ins are loaded first.
"""
from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Callable, Iterator, Mapping

from k1model.errors import ConfigError

#: the entry-point group a package declares its strategies in (pyproject.toml:
#: [project.entry-points."k1model.strategies"] name = "package.module:STRATEGY")
ENTRY_POINT_GROUP = "k1model.strategies"
#: the module whose BUILTIN tuple lists the built-in declarations ("module:attribute", in registration order)
BUILTIN_LIST = "k1model.strategies"
CLAIM_FIELDS = ("name", "metric", "variant", "reference", "statement")


@dataclass(frozen=True)
class Strategy:
    """Everything a strategy adds to the project, declared once as plain data (see the module docstring)."""

    name: str  # also its plugin's name (what `Variant.plugins` lists)
    plugin: str | type | None = None  # "module:Class" of its Plugin subclass (imported when a run trains), or None
    settings: Mapping[str, Any] = field(default_factory=dict)  # method key -> setting(default, check, doc)
    reads: tuple[str, ...] = ()  # other method keys its plugin reads (e.g. loo_interval)
    variants: tuple[Any, ...] = ()  # the variants it adds (`k1model.method.variants.Variant`)
    checks: tuple[Callable[[Any], None], ...] = ()  # check(params): raise ConfigError for a bad params file
    paper: str = ""  # its description in the paper: a str.format template over `method` and `model`
    paper_section: str = "baselines"  # where the paper describes it: "baselines", or its own section
    claims: tuple[Mapping[str, str], ...] = ()  # {name, metric, variant, reference, statement}

    @property
    def keys(self) -> tuple[str, ...]:
        """Every method key the strategy's plugin reads: its settings, then `reads`."""
        return tuple(self.settings) + tuple(k for k in self.reads if k not in self.settings)


# --------------------------------------------------------------------------- the registries and their loading
_variants: dict[str, Any] = {}
_strategies: dict[str, Strategy] = {}
_plugins: dict[str, str | type] = {}  # name -> plugin class, or "module:Class" until first used
#: section -> keys defined by the section itself (a strategy may not redefine them)
CORE_KEYS: dict[str, frozenset[str]] = {}
_state = {"loaded": False, "loading": False}


def _resolve(reference: str) -> Any:
    """The object "module:attribute" names."""
    module, _, attribute = reference.partition(":")
    obj = importlib.import_module(module)
    for part in attribute.split(".") if attribute else ():
        obj = getattr(obj, part)
    return obj


def _entry_points() -> list[Any]:
    return sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def load() -> None:
    """Register the built-in declarations and every installed entry point, once (what the first lookup does).
    A declaration that fails to load is named with the package that ships it; nothing stays half registered."""
    if _state["loaded"] or _state["loading"]:
        return
    saved = (dict(_variants), dict(_strategies), dict(_plugins))
    _state["loading"] = True
    try:
        for reference in _resolve(BUILTIN_LIST).BUILTIN:
            register(_resolve(reference))
        for ep in _entry_points():
            where = f"the {ENTRY_POINT_GROUP} entry point {ep.name} = {ep.value!r}"
            dist = getattr(ep, "dist", None)
            where += f" (package {dist.name})" if dist is not None else ""
            try:
                declared = ep.load()
            except Exception as err:
                raise ConfigError(f"{where} cannot be loaded: {type(err).__name__}: {err}; fix or uninstall "
                                  "that package") from err
            try:
                register(declared)
            except (TypeError, ValueError) as err:
                raise ConfigError(f"{where}: {err}") from err
        _state["loaded"] = True
    except BaseException:
        for live, kept in zip((_variants, _strategies, _plugins), saved):
            live.clear()
            live.update(kept)
        raise
    finally:
        _state["loading"] = False


class _Lookup(Mapping[str, Any]):
    """A read-only view of one registry that loads the registry on first use."""

    def __init__(self, data: dict[str, Any], get: Callable[[str], Any] | None = None, what: str = "name"):
        self._data, self._get, self._what = data, get, what

    def __getitem__(self, name: str) -> Any:
        load()
        if name not in self._data:
            raise KeyError(name)
        return self._get(name) if self._get is not None else self._data[name]

    def __iter__(self) -> Iterator[str]:
        load()
        return iter(list(self._data))

    def __len__(self) -> int:
        load()
        return len(self._data)

    def __contains__(self, name: object) -> bool:
        load()
        return name in self._data

    def __repr__(self) -> str:
        return f"<registered {self._what}s: {', '.join(self)}>"


# --------------------------------------------------------------------------- lookups
def plugin_class(name: str) -> type:
    """The plugin class registered as `name`, imported on first use (a strategy's: with its name and keys set)."""
    load()
    try:
        plugin = _plugins[name]
    except KeyError:
        raise ValueError(f"unknown plugin {name!r}; registered: {', '.join(_plugins) or 'none'}") from None
    if isinstance(plugin, str):
        try:
            cls = _resolve(plugin)
        except (ImportError, AttributeError) as err:
            raise ConfigError(f"strategy {name!r}: its plugin {plugin!r} cannot be imported: {err}") from err
        _plugins[name] = plugin = _adopt(_strategies[name], cls)
    return plugin


#: name -> variant (a `k1model.method.variants.Variant`: name, selector, scorer, cooldown, plugins, description)
VARIANTS: Mapping[str, Any] = _Lookup(_variants, what="variant")
#: name -> strategy, in registration order (the order of their settings, paper text and claims)
STRATEGIES: Mapping[str, Strategy] = _Lookup(_strategies, what="strategy")
#: name -> plugin class (imported when looked up)
PLUGINS: Mapping[str, type] = _Lookup(_plugins, get=plugin_class, what="plugin")


def variant_names() -> list[str]:
    """Registered variant names, in registration order (what `method.variant` and `experiment.variants` allow)."""
    return list(VARIANTS)


def get_variant(name: str) -> Any:
    """The registered variant `name` (a ValueError naming the allowed ones otherwise)."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(f"invalid value for 'variant': {name!r}; allowed: {', '.join(VARIANTS)}") from None


def plugin_keys(name: str) -> tuple[str, ...]:
    """The method keys plugin `name` reads: a strategy's settings and `reads` (its declaration: no import), or
    the `keys` of a plugin class registered on its own."""
    load()
    if name in _strategies:
        return _strategies[name].keys
    return plugin_class(name).keys


def settings(section: str = "method") -> dict[str, dataclasses.Field]:
    """The settings strategies add to a section (key -> its `setting(...)`), in registration order."""
    return {k: f for s in STRATEGIES.values() for k, f in s.settings.items()} if section == "method" else {}


def params_checks() -> list[Callable[[Any], None]]:
    """Every registered strategy's checks of a whole params file, in registration order."""
    return [check for s in STRATEGIES.values() for check in s.checks]


# --------------------------------------------------------------------------- registration
def reserve(section: str, keys: Any) -> None:
    """Called by a section class: the keys it defines itself, which no strategy may redefine."""
    CORE_KEYS[section] = frozenset(keys)


def register(declared: Any) -> Any:
    """Register what a declaration names: a `Strategy`, a variant, or a tuple/list of them (the built-ins are
    loaded first, so a name is never taken from them)."""
    if isinstance(declared, Strategy):
        return register_strategy(declared)
    if isinstance(declared, (tuple, list)):
        for item in declared:
            register(item)
        return declared
    if all(hasattr(declared, a) for a in ("name", "selector", "scorer", "cooldown", "plugins")):
        return register_variant(declared)
    raise TypeError(f"cannot register {declared!r}: expected a Strategy, a Variant or a tuple of them")


def register_variant(variant: Any) -> Any:
    """Add a variant (names are unique)."""
    load()
    if variant.name in _variants:
        raise ValueError(f"variant {variant.name!r} is already registered")
    _variants[variant.name] = variant
    return variant


def register_plugin(cls: type) -> type:
    """Make a plugin class that belongs to no strategy available to `Variant.plugins` under `cls.name`."""
    load()
    if not getattr(cls, "name", ""):
        raise ValueError(f"plugin class {cls.__name__} needs a `name`")
    if cls.name in _plugins and _plugins[cls.name] is not cls:
        raise ValueError(f"plugin {cls.name!r} is already registered")
    _plugins[cls.name] = cls
    return cls


def _adopt(strategy: Strategy, cls: type) -> type:
    """A strategy's plugin class, checked and given the strategy's name and keys."""
    where = f"strategy {strategy.name!r}"
    if not isinstance(cls, type):
        raise ValueError(f"{where}: its plugin must be a class (or \"module:Class\"), not {cls!r}")
    if getattr(cls, "name", "") not in ("", strategy.name):
        raise ValueError(f"{where}: its plugin is named {cls.name!r}; a strategy's plugin has its name")
    if cls.__dict__.get("keys"):
        raise ValueError(f"{where}: declare the keys its plugin reads as the strategy's settings/reads, not as "
                         "Plugin.keys")
    cls.name, cls.keys = strategy.name, strategy.keys
    return cls


def register_strategy(strategy: Strategy) -> Strategy:
    """Register a strategy: its settings, variants and plugin. Refuses (naming the strategy and the key)
    a setting that already exists, a setting without a check, a key in `reads` that no section or strategy
    defines, a variant name that is taken, a claim with other fields than Claim's."""
    load()
    where = f"strategy {strategy.name!r}"
    if not strategy.name or strategy.name in _strategies or strategy.name in _plugins:
        raise ValueError(f"{where}: a strategy needs a unique name")
    known = set(CORE_KEYS.get("method", ())) | {k for s in _strategies.values() for k in s.settings}
    for key, spec in strategy.settings.items():
        if key in known:
            raise ValueError(f"{where}: method key {key!r} already exists")
        if not isinstance(spec, dataclasses.Field) or spec.metadata.get("check") is None:
            raise ValueError(f"{where}: setting {key!r} must be made with k1model.config.checks.setting(default, "
                             "check, doc)")
    missing = [k for k in strategy.reads if k not in known and k not in strategy.settings]
    if missing:
        raise ValueError(f"{where} reads method key(s) {missing} that no section or strategy defines")
    taken = [v.name for v in strategy.variants if v.name in _variants]
    if taken or len({v.name for v in strategy.variants}) != len(strategy.variants):
        raise ValueError(f"{where}: variant name(s) {taken or [v.name for v in strategy.variants]} already taken")
    for claim in strategy.claims:
        if sorted(claim) != sorted(CLAIM_FIELDS):
            raise ValueError(f"{where}: a claim needs exactly the fields {', '.join(CLAIM_FIELDS)}; got {sorted(claim)}")
    plugin = strategy.plugin
    if plugin is not None and not isinstance(plugin, str):
        plugin = _adopt(strategy, plugin)
    elif isinstance(plugin, str) and ":" not in plugin:
        raise ValueError(f"{where}: name its plugin as \"module:Class\", not {plugin!r}")
    _strategies[strategy.name] = strategy
    if plugin is not None:
        _plugins[strategy.name] = plugin
    for v in strategy.variants:
        _variants[v.name] = v
    return strategy


def unregister_strategy(name: str) -> None:
    """Remove a strategy with its variants and plugin (tests that register a toy strategy)."""
    strategy = _strategies.pop(name)
    for v in strategy.variants:
        _variants.pop(v.name, None)
    _plugins.pop(name, None)


def unregister_variant(name: str) -> None:
    """Remove a variant registered on its own (tests)."""
    _variants.pop(name)


def unregister_plugin(name: str) -> None:
    """Remove a plugin registered on its own (tests)."""
    _plugins.pop(name)
