"""The K-1 method: attribution (who caused the error), scoring, selection, trust and the sparse update.

A variant (`variants.py`) is a composition of small parts, each from a registry:
a selector (`selection.SELECTORS`), a scorer (`scoring.SCORERS`), whether the trust cooldown
gates updates (`trust.py`; the rule is `method.trust_rule`), and training plugins
(`k1model.train.plugins`). Submodules are imported where used (this package imports nothing).
"""
