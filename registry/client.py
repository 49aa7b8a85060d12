"""Registry verbs on MLflow: register, set_challenger, promote, rollback, archive, load_bundle."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

CHAMPION = "champion"
CHALLENGER = "challenger"
LIFECYCLE = ("candidate", "validated", "rejected", "challenger", "champion", "archived")
BUNDLE_ARTIFACT = "bundle"
_HISTORY_PREFIX = "history."


class RegistryError(RuntimeError):
    """A registry operation is not possible; the message says why."""


def model_name(tenant: str, spec: str, symbol: str) -> str:
    """Registered model name: ``<tenant>.<spec>.<symbol>``; the tenant prefix isolates tenants."""
    return f"{tenant}.{spec}.{symbol}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Registry:
    """Domain verbs over one MLflow registry, scoped to one tenant."""

    def __init__(self, tracking_uri: str, registry_uri: str | None = None, *, tenant: str = "default") -> None:
        from mlflow import MlflowClient

        self.tenant = tenant
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri or tracking_uri)

    @classmethod
    def from_settings(cls, settings: Any) -> "Registry":
        settings.apply_mlflow_env()
        return cls(settings.tracking_uri, settings.registry_uri, tenant=settings.tenant)

    # -- scoping -------------------------------------------------------------------------
    def _check_tenant(self, name: str) -> None:
        if not name.startswith(f"{self.tenant}."):
            raise RegistryError(f"model {name!r} does not belong to tenant {self.tenant!r}")

    def qualify(self, name: str) -> str:
        """Accept ``spec.symbol`` or a full ``tenant.spec.symbol`` name of this tenant."""
        return name if name.startswith(f"{self.tenant}.") else f"{self.tenant}.{name}"

    # -- verbs ---------------------------------------------------------------------------
    def register(self, name: str, run_id: str, *, tags: dict[str, str]) -> str:
        """Register the run's bundle as a new version tagged ``lifecycle=candidate``."""
        from mlflow.exceptions import MlflowException

        self._check_tenant(name)
        model_tags = {"tenant": self.tenant, **{k: tags[k] for k in ("family", "spec", "symbol", "timeframe") if k in tags}}
        try:
            self.client.create_registered_model(name, tags=model_tags,
                                                description=f"AlphaOps model {name}")
        except MlflowException as exc:
            if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code):
                raise
        version = self.client.create_model_version(
            name, source=f"runs:/{run_id}/{BUNDLE_ARTIFACT}", run_id=run_id,
            tags={**tags, "tenant": self.tenant, "lifecycle": "candidate"},
        )
        return str(version.version)

    def tag(self, name: str, version: str, **tags: Any) -> None:
        self._check_tenant(name)
        for key, value in tags.items():
            self.client.set_model_version_tag(name, version, key, str(value))

    def set_challenger(self, name: str, version: str, *, reason: str, run_id: str = "") -> None:
        self._check_tenant(name)
        status = self.client.get_model_version(name, version).tags.get("validation_status")
        if status != "validated":
            raise RegistryError(f"{name} v{version} has validation_status={status!r}; only validated versions deploy")
        self.tag(name, version, lifecycle=CHALLENGER)
        self._move_alias(name, CHALLENGER, version, reason=reason, run_id=run_id)

    def promote(self, name: str, *, reason: str, run_id: str = "") -> str:
        """Move ``champion`` to the current challenger; the old champion is archived."""
        self._check_tenant(name)
        challenger = self.alias_version(name, CHALLENGER)
        if challenger is None:
            raise RegistryError(f"{name} has no challenger to promote")
        old = self.alias_version(name, CHAMPION)
        self.tag(name, challenger, lifecycle=CHAMPION)
        self._move_alias(name, CHAMPION, challenger, reason=reason, run_id=run_id)
        self._delete_alias(name, CHALLENGER, reason=f"promoted to {CHAMPION}", run_id=run_id)
        if old and old != challenger:
            self.tag(name, old, lifecycle="archived")
        return challenger

    def rollback(self, name: str, *, reason: str, run_id: str = "") -> str | None:
        """End a canary (drop the challenger), or with no challenger restore the previous champion."""
        self._check_tenant(name)
        challenger = self.alias_version(name, CHALLENGER)
        if challenger is not None:
            self.tag(name, challenger, lifecycle="archived", rolled_back="true")
            self._delete_alias(name, CHALLENGER, reason=reason, run_id=run_id)
            return self.alias_version(name, CHAMPION)
        current = self.alias_version(name, CHAMPION)
        previous = [e["version"] for e in self.history(name)
                    if e["alias"] == CHAMPION and e["action"] == "set" and e["version"] != current]
        if not previous:
            raise RegistryError(f"{name} has no challenger and no earlier champion to roll back to")
        target = previous[-1]
        if current:
            self.tag(name, current, lifecycle="archived", rolled_back="true")
        self.tag(name, target, lifecycle=CHAMPION)
        self._move_alias(name, CHAMPION, target, reason=reason, run_id=run_id)
        return target

    def archive(self, name: str, version: str, *, reason: str) -> None:
        self._check_tenant(name)
        if CHAMPION in self.aliases(name).get(str(version), []):
            raise RegistryError(f"{name} v{version} is the champion; promote another version first")
        self.tag(name, version, lifecycle="archived", archived_reason=reason)

    # -- reading -------------------------------------------------------------------------
    def alias_version(self, name: str, alias: str) -> str | None:
        from mlflow.exceptions import MlflowException

        try:
            return str(self.client.get_model_version_by_alias(name, alias).version)
        except MlflowException:
            return None

    def aliases(self, name: str) -> dict[str, list[str]]:
        """Version → its aliases (search results don't carry aliases, the registered model does)."""
        by_version: dict[str, list[str]] = {}
        for alias, version in self.client.get_registered_model(name).aliases.items():
            by_version.setdefault(str(version), []).append(alias)
        return by_version

    def sync_legacy_stages(self, name: str) -> str | None:
        """Map a legacy stage transition to ``Production`` onto the ``champion`` alias."""
        champion = self.alias_version(name, CHAMPION)
        for mv in self.client.search_model_versions(f"name = '{name}'"):
            if mv.current_stage == "Production" and str(mv.version) != champion:
                self.tag(name, str(mv.version), lifecycle=CHAMPION)
                self._move_alias(name, CHAMPION, str(mv.version), reason="legacy stage transition to Production")
                return str(mv.version)
        return None

    def model_names(self) -> list[str]:
        models = self.client.search_registered_models(filter_string=f"tags.tenant = '{self.tenant}'")
        return sorted(m.name for m in models if m.name.startswith(f"{self.tenant}."))

    def version_of_run(self, name: str, run_id: str) -> str | None:
        """The version registered from ``run_id`` (the lowest, should there be several), or None."""
        self._check_tenant(name)
        found = self.client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
        return min((str(mv.version) for mv in found), key=int, default=None)

    def versions(self, name: str) -> list[Any]:
        self._check_tenant(name)
        found = self.client.search_model_versions(f"name = '{name}'")
        return sorted(found, key=lambda mv: int(mv.version))

    def history(self, name: str) -> list[dict[str, Any]]:
        tags = self.client.get_registered_model(name).tags
        events = [json.loads(v) for k, v in sorted(tags.items()) if k.startswith(_HISTORY_PREFIX)]
        return events

    def load_bundle(self, name: str, alias_or_version: str, dst: Path) -> Path:
        """Download ``name@alias`` (or a version number) as a bundle dir: model.onnx + schema.json."""
        import mlflow

        self._check_tenant(name)
        version = alias_or_version if alias_or_version.isdigit() else self.alias_version(name, alias_or_version)
        if version is None:
            raise RegistryError(f"{name} has no version with alias {alias_or_version!r}")
        mv = self.client.get_model_version(name, version)
        dst = Path(dst)
        staging = dst.with_name(dst.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        local = Path(mlflow.artifacts.download_artifacts(
            artifact_uri=f"runs:/{mv.run_id}/{BUNDLE_ARTIFACT}", dst_path=str(staging),
            tracking_uri=self.client._tracking_client.tracking_uri))
        if not (local / "model.onnx").exists() or not (local / "schema.json").exists():
            raise RegistryError(f"{name} v{version} has no complete bundle (model.onnx + schema.json)")
        schema_path = local / "schema.json"
        schema = json.loads(schema_path.read_text())
        if isinstance(schema.get("model"), dict):  # the version is only known once registered
            schema["model"].update({"name": name, "version": str(version)})
            schema_path.write_text(json.dumps(schema, indent=2, sort_keys=True))
        shutil.rmtree(dst, ignore_errors=True)
        dst.parent.mkdir(parents=True, exist_ok=True)
        local.rename(dst)
        shutil.rmtree(staging, ignore_errors=True)
        return dst

    # -- internals -----------------------------------------------------------------------
    def _record(self, name: str, event: dict[str, Any]) -> None:
        seq = len(self.history(name))
        self.client.set_registered_model_tag(name, f"{_HISTORY_PREFIX}{seq:04d}", json.dumps(event))

    def _move_alias(self, name: str, alias: str, version: str, *, reason: str, run_id: str = "") -> None:
        previous = self.alias_version(name, alias)
        self.client.set_registered_model_alias(name, alias, version)
        self._record(name, {"at": _now(), "alias": alias, "action": "set", "version": version,
                            "previous": previous, "reason": reason, "run_id": run_id})

    def _delete_alias(self, name: str, alias: str, *, reason: str, run_id: str = "") -> None:
        previous = self.alias_version(name, alias)
        if previous is None:
            return
        self.client.delete_registered_model_alias(name, alias)
        self._record(name, {"at": _now(), "alias": alias, "action": "delete", "version": previous,
                            "previous": previous, "reason": reason, "run_id": run_id})
