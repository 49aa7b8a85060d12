"""The MLflow model registry spoken in domain verbs.

Aliases (``champion``, ``challenger``) and tags only; never the deprecated stages, except
that a legacy stage transition to ``Production`` is read as ``champion``
(:func:`Registry.sync_legacy_stages`). Every alias change is recorded on the registered
model as a ``history.NNNN`` tag: when, what, why and by which run.
"""

from registry.client import (
    CHALLENGER,
    CHAMPION,
    LIFECYCLE,
    Registry,
    RegistryError,
    describe_scope,
    model_name,
    scope_of_name,
)

__all__ = ["CHALLENGER", "CHAMPION", "LIFECYCLE", "Registry", "RegistryError", "describe_scope", "model_name", "scope_of_name"]
