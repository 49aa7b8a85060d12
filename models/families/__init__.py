"""Model families: scikit-learn estimators with a ``to_onnx()`` method."""
