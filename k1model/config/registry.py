"""The registries that the layers above extend, as plain data: variants, training plugins and strategies.

The config layer validates params against what is registered here (variant names, the method keys
strategies add, their cross-section checks) and imports nothing above it; the parts a variant names
(its selector, scorer and plugins) are resolved higher up, by name (`k1model.method`, `k1model.train`).

A strategy is one module and one registration (`register_strategy(Strategy(...))`): its training
plugin, its settings (each made with `k1model.config.checks.setting`, so `MethodConfig`, the JSON
schema, validation messages and the sweep/tuning machinery take them), the variants it adds, its
checks of a whole params file, its description in the paper and its claims (plain data the report
turns into `k1model.report.claims.Claim`). See docs/architecture.md, "How to add a strategy".

Nothing registers at import of this module: importing `k1model.strategies` registers the built-in
variants and strategies. The modules that run or read variants import it (the trainer
`k1model.train.step`, the run plan `k1model.study.plan`, the analysis settings, the report's claims,
`k1 schema`), so the `k1` commands, the pipeline and the API always see every registered name.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from k1model.errors import ConfigError

#: name -> variant (a `k1model.method.variants.Variant`: name, selector, scorer, cooldown, plugins, description)
VARIANTS: dict[str, Any] = {}
#: name -> plugin class (a `k1model.train.plugins.Plugin` subclass)
PLUGINS: dict[str, type] = {}
#: name -> strategy, in registration order (the order of their settings, paper text and claims)
STRATEGIES: dict[str, "Strategy"] = {}
#: section -> keys defined by the section itself (a strategy may not redefine them)
CORE_KEYS: dict[str, frozenset[str]] = {}

HINT = ("strategies register their variants and method keys when `k1model.strategies` is imported (the k1 "
        "commands, the pipeline, the trainer and the analysis do); import it before validating params")
CLAIM_FIELDS = ("name", "metric", "variant", "reference", "statement")


@dataclass(frozen=True)
class Strategy:
    """Everything a strategy adds to the project, declared once (see the module docstring)."""

    name: str  # also its plugin's name (what `Variant.plugins` lists)
    plugin: type | None = None  # its `Plugin` subclass (the hooks of the training loop), or None
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


def variant_names() -> list[str]:
    """Registered variant names, in registration order (what `method.variant` and `experiment.variants` allow)."""
    if not VARIANTS:
        raise ConfigError(f"no variants are registered: {HINT}")
    return list(VARIANTS)


def get_variant(name: str) -> Any:
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(f"invalid value for 'variant': {name!r}; allowed: {', '.join(VARIANTS)}") from None


def register_variant(variant: Any) -> Any:
    """Add a variant (names are unique)."""
    if variant.name in VARIANTS:
        raise ValueError(f"variant {variant.name!r} is already registered")
    VARIANTS[variant.name] = variant
    return variant


def register_plugin(cls: type) -> type:
    """Make a plugin class available to `Variant.plugins` under `cls.name`."""
    if not getattr(cls, "name", ""):
        raise ValueError(f"plugin class {cls.__name__} needs a `name`")
    if cls.name in PLUGINS and PLUGINS[cls.name] is not cls:
        raise ValueError(f"plugin {cls.name!r} is already registered")
    PLUGINS[cls.name] = cls
    return cls


def settings(section: str = "method") -> dict[str, dataclasses.Field]:
    """The settings strategies add to a section (key -> its `setting(...)`), in registration order."""
    return {k: f for s in STRATEGIES.values() for k, f in s.settings.items()} if section == "method" else {}


def reserve(section: str, keys: Any) -> None:
    """Called by a section class: the keys it defines itself, which no strategy may redefine."""
    CORE_KEYS[section] = frozenset(keys)


def register_strategy(strategy: Strategy) -> Strategy:
    """Register a strategy: its settings, variants and plugin. Refuses (naming the strategy and the key)
    a setting that already exists, a setting without a check, a key in `reads` that no section or strategy
    defines, a variant name that is taken, a claim with other fields than Claim's."""
    where = f"strategy {strategy.name!r}"
    if not strategy.name or strategy.name in STRATEGIES:
        raise ValueError(f"{where}: a strategy needs a unique name")
    known = set(CORE_KEYS.get("method", ())) | set(settings())
    for key, spec in strategy.settings.items():
        if key in known:
            raise ValueError(f"{where}: method key {key!r} already exists")
        if not isinstance(spec, dataclasses.Field) or spec.metadata.get("check") is None:
            raise ValueError(f"{where}: setting {key!r} must be made with k1model.config.checks.setting(default, "
                             "check, doc)")
    missing = [k for k in strategy.reads if k not in known and k not in strategy.settings]
    if missing:
        raise ValueError(f"{where} reads method key(s) {missing} that no section or strategy defines")
    taken = [v.name for v in strategy.variants if v.name in VARIANTS]
    if taken or len({v.name for v in strategy.variants}) != len(strategy.variants):
        raise ValueError(f"{where}: variant name(s) {taken or [v.name for v in strategy.variants]} already taken")
    for claim in strategy.claims:
        if sorted(claim) != sorted(CLAIM_FIELDS):
            raise ValueError(f"{where}: a claim needs exactly the fields {', '.join(CLAIM_FIELDS)}; got {sorted(claim)}")
    plugin = strategy.plugin
    if plugin is not None:
        if getattr(plugin, "name", "") not in ("", strategy.name):
            raise ValueError(f"{where}: its plugin is named {plugin.name!r}; a strategy's plugin has its name")
        if plugin.__dict__.get("keys"):
            raise ValueError(f"{where}: declare the keys its plugin reads as the strategy's settings/reads, not as "
                             "Plugin.keys")
        plugin.name, plugin.keys = strategy.name, strategy.keys
        register_plugin(plugin)
    STRATEGIES[strategy.name] = strategy
    for v in strategy.variants:
        register_variant(v)
    return strategy


def unregister_strategy(name: str) -> None:
    """Remove a strategy with its variants and plugin (tests that register a toy strategy)."""
    strategy = STRATEGIES.pop(name)
    for v in strategy.variants:
        VARIANTS.pop(v.name, None)
    if strategy.plugin is not None:
        PLUGINS.pop(strategy.name, None)


def params_checks() -> list[Callable[[Any], None]]:
    """Every registered strategy's checks of a whole params file, in registration order."""
    return [check for s in STRATEGIES.values() for check in s.checks]
