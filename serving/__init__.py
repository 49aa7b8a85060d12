"""AlphaOps serving: a thin, safe onnxruntime runtime for model bundles.

Imports only the standard library, numpy and onnxruntime, so a trading runtime can use it
without Airflow, MLflow or pandas. The REST app over it is :mod:`pipelines.app.rest` (fastapi).
"""

from serving.errors import BundleError, InputError
from serving.integrity import UnsealedBundleError, verify_bundle
from serving.log import PredictionLog
from serving.predictor import Predictor
from serving.results import AnomalyPrediction, MultiPrediction, Prediction, ValuePrediction
from serving.router import CanaryRouter
from serving.schema import Schema
from serving.watcher import AliasWatcher, CanaryWatcher

__all__ = [
    "AliasWatcher",
    "AnomalyPrediction",
    "BundleError",
    "CanaryRouter",
    "CanaryWatcher",
    "InputError",
    "MultiPrediction",
    "Prediction",
    "PredictionLog",
    "Predictor",
    "Schema",
    "UnsealedBundleError",
    "ValuePrediction",
    "verify_bundle",
]
