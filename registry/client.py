"""Registry verbs on MLflow: register, set_challenger, promote, rollback, archive, load_bundle."""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import os
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

CHAMPION = "champion"
CHALLENGER = "challenger"
LIFECYCLE = ("candidate", "validated", "rejected", "challenger", "champion", "archived")
BUNDLE_ARTIFACT = "bundle"
BUNDLE_FILES = ("model.onnx", "schema.json")
_HISTORY_PREFIX = "history."


log = logging.getLogger(__name__)


class RegistryError(RuntimeError):
    """A registry operation is not possible; the message says why."""


USER_SEPARATOR = "~"  # the same as pipelines.config.USER_SEPARATOR: tenant names cannot hold it


def model_name(scope: str, spec: str, symbol: str) -> str:
    """Registered model name: ``<scope>.<spec>.<symbol>``.

    ``scope`` is the tenant (a model shared by the tenant) or ``<tenant>~<user>`` (a model
    private to one user of the tenant); the prefix isolates tenants and users."""
    return f"{scope}.{spec}.{symbol}"


def scope_of_name(name: str) -> str:
    """The scope prefix of a full model name: ``alpha`` or ``alpha~bob`` of ``alpha~bob.spec.SYM``."""
    return name.split(".", 1)[0]


def describe_scope(scope: str) -> str:
    """``tenant 'alpha' (shared)`` or ``user 'bob' of tenant 'alpha'``, for error messages."""
    tenant, _, user = scope.partition(USER_SEPARATOR)
    return f"user {user!r} of tenant {tenant!r}" if user else f"tenant {tenant!r} (shared)"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Registry:
    """Domain verbs over one MLflow registry, scoped to one tenant and optionally one user of it.

    Without a user the scope is the tenant's shared models, as before users existed. With a
    user the client reads the tenant's shared models and the user's own (``<tenant>~<user>.…``),
    writes (register, tags, aliases) only the user's own, and never sees another user's."""

    def __init__(self, tracking_uri: str, registry_uri: str | None = None, *, tenant: str = "default",
                 user: str = "") -> None:
        from mlflow import MlflowClient

        if USER_SEPARATOR in tenant or "." in tenant or USER_SEPARATOR in user or "." in user:
            raise RegistryError(f"tenant {tenant!r} and user {user!r} may not contain {USER_SEPARATOR!r} or '.'")
        self.tenant = tenant
        self.user = user
        self.scope = f"{tenant}{USER_SEPARATOR}{user}" if user else tenant
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri or tracking_uri)

    @classmethod
    def from_settings(cls, settings: Any) -> "Registry":
        settings.apply_mlflow_env()
        return cls(settings.tracking_uri, settings.registry_uri, tenant=settings.tenant,
                   user=getattr(settings, "user", ""))

    # -- scoping -------------------------------------------------------------------------
    @property
    def visible_scopes(self) -> tuple[str, ...]:
        """The scopes this client reads: its own, and the tenant's shared one for a user."""
        return (self.scope,) if self.scope == self.tenant else (self.scope, self.tenant)

    def _scope_error(self, name: str, *, writing: bool) -> RegistryError:
        owner = scope_of_name(name)
        who = describe_scope(self.scope)
        if writing and owner in self.visible_scopes:
            return RegistryError(f"model {name!r} belongs to {describe_scope(owner)}; {who} may read it "
                                 f"but not change it (set no ALPHAOPS_USER / --user to manage shared models)")
        if owner.partition(USER_SEPARATOR)[0] == self.tenant and USER_SEPARATOR in owner:
            return RegistryError(f"model {name!r} is private to {describe_scope(owner)}; {who} sees only the "
                                 f"tenant's shared models and its own")
        return RegistryError(f"model {name!r} does not belong to {who}")

    def _check_tenant(self, name: str) -> None:
        """``name`` is this client's own scope (the scope it may write)."""
        if scope_of_name(name) != self.scope:
            raise self._scope_error(name, writing=True)

    def _check_visible(self, name: str) -> None:
        """``name`` is in a scope this client may read (its own, or the tenant's shared one)."""
        if scope_of_name(name) not in self.visible_scopes:
            raise self._scope_error(name, writing=False)

    def qualify(self, name: str) -> str:
        """Accept ``spec.symbol`` or a full ``<scope>.spec.symbol`` name.

        A full name (``<tenant>.…`` or ``<tenant>~<user>.…``) is returned as given; the scope checks
        of the verbs then accept or refuse it. A short name is the client's own model; for a user
        that has none of that name, it is the tenant's shared model."""
        if name.startswith((f"{self.tenant}.", f"{self.tenant}{USER_SEPARATOR}")):
            return name
        own = f"{self.scope}.{name}"
        if self.scope != self.tenant and not self._exists(own):
            return f"{self.tenant}.{name}"
        return own

    def _exists(self, name: str) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(name)
        except MlflowException as exc:
            if "RESOURCE_DOES_NOT_EXIST" not in str(exc.error_code):
                raise
            return False
        return True

    # -- verbs ---------------------------------------------------------------------------
    def register(self, name: str, run_id: str, *, tags: dict[str, str]) -> str:
        """Register the run's bundle as a new version tagged ``lifecycle=candidate``."""
        from mlflow.exceptions import MlflowException

        self._check_tenant(name)
        owner = {"tenant": self.tenant, **({"user": self.user} if self.user else {})}
        model_tags = {**owner, **{k: tags[k] for k in ("family", "spec", "symbol", "timeframe") if k in tags}}
        try:
            self.client.create_registered_model(name, tags=model_tags,
                                                description=f"AlphaOps model {name}")
        except MlflowException as exc:
            if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code):
                raise
        version = self.client.create_model_version(
            name, source=f"runs:/{run_id}/{BUNDLE_ARTIFACT}", run_id=run_id,
            tags={**tags, **owner, "lifecycle": "candidate"},
        )
        return str(version.version)

    def tag(self, name: str, version: str, **tags: Any) -> None:
        self._check_tenant(name)
        for key, value in tags.items():
            self.client.set_model_version_tag(name, version, key, str(value))

    def set_challenger(self, name: str, version: str, *, reason: str, run_id: str = "") -> None:
        self._check_tenant(name)
        self.require_model(name)
        status = self.client.get_model_version(name, version).tags.get("validation_status")
        if status != "validated":
            raise RegistryError(f"{name} v{version} has validation_status={status!r}; only validated versions deploy")
        self.tag(name, version, lifecycle=CHALLENGER)
        self._move_alias(name, CHALLENGER, version, reason=reason, run_id=run_id)

    def promote(self, name: str, *, reason: str, run_id: str = "") -> str:
        """Move ``champion`` to the current challenger; the old champion is archived."""
        self._check_tenant(name)
        self.require_model(name)
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
        self.require_model(name)
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
        self.require_model(name)
        if CHAMPION in self.aliases(name).get(str(version), []):
            raise RegistryError(f"{name} v{version} is the champion; promote another version first")
        self.tag(name, version, lifecycle="archived", archived_reason=reason)

    # -- reading -------------------------------------------------------------------------
    def alias_version(self, name: str, alias: str) -> str | None:
        from mlflow.exceptions import MlflowException

        self._check_visible(name)

        try:
            return str(self.client.get_model_version_by_alias(name, alias).version)
        except MlflowException:
            return None

    def aliases(self, name: str) -> dict[str, list[str]]:
        """Version → its aliases (search results don't carry aliases, the registered model does)."""
        self._check_visible(name)
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
        """This client's own models (the ones its pipeline ranks, deploys and monitors)."""
        return self._names_in((self.scope,))

    def visible_model_names(self) -> list[str]:
        """What this client may read: its own models, and for a user the tenant's shared ones too."""
        return self._names_in(self.visible_scopes)

    def _names_in(self, scopes: tuple[str, ...]) -> list[str]:
        models = self.client.search_registered_models(filter_string=f"tags.tenant = '{self.tenant}'")
        return sorted(m.name for m in models if scope_of_name(m.name) in scopes)

    def version_of_run(self, name: str, run_id: str) -> str | None:
        """The version registered from ``run_id`` (the lowest, should there be several), or None."""
        self._check_visible(name)
        found = self.client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
        return min((str(mv.version) for mv in found), key=int, default=None)

    def versions(self, name: str) -> list[Any]:
        self._check_visible(name)
        found = self.client.search_model_versions(f"name = '{name}'")
        return sorted(found, key=lambda mv: int(mv.version))

    def history(self, name: str) -> list[dict[str, Any]]:
        self._check_visible(name)
        tags = self.client.get_registered_model(name).tags
        events = [json.loads(v) for k, v in sorted(tags.items()) if k.startswith(_HISTORY_PREFIX)]
        return events

    def resolve_version(self, name: str, alias_or_version: str) -> str:
        """The version number ``alias_or_version`` names (a number, or an alias of ``name``)."""
        from mlflow.exceptions import MlflowException

        self.require_model(name)
        ref = str(alias_or_version).strip()
        if ref.isdigit():
            try:
                return str(self.client.get_model_version(name, ref).version)
            except MlflowException:
                known = ", ".join(str(mv.version) for mv in self.versions(name)) or "none"
                raise RegistryError(f"{name} has no version {ref} (versions: {known})") from None
        version = self.alias_version(name, ref)
        if version is None:
            aliases = sorted({a for names in self.aliases(name).values() for a in names})
            raise RegistryError(f"{name} has no version with alias {ref!r} "
                                f"(aliases: {', '.join(aliases) or 'none'})")
        return version

    def require_model(self, name: str) -> None:
        """Raise a one-line RegistryError when ``name`` is not a registered model this client may read."""
        from mlflow.exceptions import MlflowException

        self._check_visible(name)
        try:
            self.client.get_registered_model(name)
        except MlflowException as exc:
            if "RESOURCE_DOES_NOT_EXIST" not in str(exc.error_code):
                raise
            raise RegistryError(f"no registered model {name!r} (`alphaops models` lists them)") from None

    def load_bundle(self, name: str, alias_or_version: str, dst: Path, *, force: bool = False) -> Path:
        """Download ``name@alias`` (or a version number) as a bundle dir: model.onnx + schema.json.

        The bundle is written into a new temporary folder beside ``dst``, checked (a sealed
        schema must match its model.onnx; a bundle from before sealing is sealed here, from
        the registry's copy), and then renamed into place in one step. ``dst`` may be missing,
        empty, or an earlier bundle (nothing but model.onnx and schema.json); anything else is
        refused unless ``force``, and a file is always refused. On any failure nothing is left
        behind and ``dst`` is untouched.
        """
        import mlflow

        self._check_visible(name)
        dst = Path(dst)
        _check_target(dst, force=force)
        version = self.resolve_version(name, alias_or_version)
        mv = self.client.get_model_version(name, version)
        dst.parent.mkdir(parents=True, exist_ok=True)
        _clean_stale_staging(dst)
        staging = Path(tempfile.mkdtemp(prefix=f".{dst.name}.export-", dir=dst.parent))
        try:
            try:
                local = Path(mlflow.artifacts.download_artifacts(
                    artifact_uri=f"runs:/{mv.run_id}/{BUNDLE_ARTIFACT}", dst_path=str(staging / "download"),
                    tracking_uri=self.client._tracking_client.tracking_uri))
            except Exception as exc:  # MLflow and the artifact stores raise many types
                raise RegistryError(f"{name} v{version}: cannot download its bundle: "
                                    f"{str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}") from exc
            if not (local / "model.onnx").is_file() or not (local / "schema.json").is_file():
                raise RegistryError(f"{name} v{version} has no complete bundle (model.onnx + schema.json)")
            bundle = staging / "bundle"
            bundle.mkdir()
            for part in BUNDLE_FILES:
                (local / part).rename(bundle / part)
            _seal_or_verify(bundle, name, version)
            _swap_into_place(bundle, dst)
        finally:
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


# -- writing a bundle directory -------------------------------------------------------------
_STALE_STAGING_SECONDS = 3600.0


def is_bundle_dir(path: Path) -> bool:
    """A directory holding nothing but bundle files (what an export writes)."""
    return path.is_dir() and {p.name for p in path.iterdir()} <= set(BUNDLE_FILES)


def _check_target(dst: Path, *, force: bool) -> None:
    if dst.is_symlink() and not dst.exists():
        raise RegistryError(f"{dst} is a dangling symbolic link; remove it or choose another directory")
    if dst.exists() and not dst.is_dir():
        raise RegistryError(f"{dst} is a file, not a directory; export writes a directory "
                            "(model.onnx + schema.json): choose another path")
    if dst.is_dir() and not force and not is_bundle_dir(dst):
        found = sorted(p.name for p in dst.iterdir())
        shown = ", ".join(found[:5]) + (f" (+{len(found) - 5} more)" if len(found) > 5 else "")
        raise RegistryError(f"{dst} is not empty and is not a bundle (it holds {shown}); export would replace "
                            "it: choose an empty or new directory, or pass --force to replace it")


def _clean_stale_staging(dst: Path) -> None:
    """Remove staging folders of this target that a killed export left behind (over an hour old)."""
    now = time.time()
    for old in dst.parent.glob(f".{dst.name}.export-*"):
        try:
            if old.is_dir() and now - old.stat().st_mtime > _STALE_STAGING_SECONDS:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass


def _seal_or_verify(bundle: Path, name: str, version: str) -> None:
    """Verify a sealed bundle (and set its model name and version), or seal a pre-seal one."""
    from serving.errors import BundleError
    from serving.integrity import UnsealedBundleError, read_bundle, seal, verify, write_schema

    try:
        doc, data = read_bundle(bundle)
        try:
            verify(doc, data, where=f"{name} v{version}")
        except UnsealedBundleError:
            log.warning("%s v%s was registered before bundles were sealed; sealing it from the registry's copy",
                        name, version)
            doc = seal(doc, data, sealed_by="export")
    except BundleError as exc:
        raise RegistryError(str(exc)) from exc
    if isinstance(doc.get("model"), dict):  # the version is only known once registered (not sealed)
        doc["model"].update({"name": name, "version": str(version)})
    write_schema(bundle / "schema.json", doc)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0


def _swap_into_place(bundle: Path, dst: Path) -> None:
    """Put the finished ``bundle`` at ``dst`` in one rename; the old ``dst`` ends up at ``bundle``
    (removed with the staging folder). A reader sees the old bundle or the new one, never a mix
    of files, and ``dst`` never goes missing where the system can swap two paths atomically."""
    if dst.is_dir() and any(dst.iterdir()):
        if _exchange(bundle, dst):
            return
        old = bundle.with_name("previous")
        dst.rename(old)  # fallback: two renames; dst is missing in between
        try:
            bundle.rename(dst)
        except OSError:
            old.rename(dst)
            raise
        return
    os.replace(bundle, dst)  # a missing or empty dst is replaced in one rename
