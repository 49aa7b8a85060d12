"""MLflow set-up: tasks on several workers create the same experiment at once."""

from __future__ import annotations

import threading

from pipelines.config import get_settings
from pipelines.tracking import use_experiment


def test_concurrent_use_experiment_creates_one_experiment_and_raises_nowhere():
    settings = get_settings()
    use_experiment(settings, "default/warm-up")  # the tracking DB exists before the race
    barrier = threading.Barrier(6)
    ids: list[str] = []
    errors: list[BaseException] = []

    def create() -> None:
        barrier.wait()
        try:
            ids.append(use_experiment(settings, "default/created-at-once"))
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(ids) == 6 and len(set(ids)) == 1
