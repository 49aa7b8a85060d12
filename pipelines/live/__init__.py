"""The live loop: the prediction sink, outcomes, live metrics, drift, the monitor, retraining
requests and alerts."""
