"""Churn-model example: a tiny, deterministic scikit-learn classifier.

Modules:
  features  - column names, CSV I/O and the row-level preparation shared by
              training (prepare.py) and inference (predict/serve)
  training  - deterministic training (logreg | gbm | dummy) + metrics
  evaluate  - metrics of any model file on a labelled CSV (the CT gate):
              python -m model.evaluate --model M --data D --out metrics.json
  predict   - batch CLI:  python -m model.predict INPUT_CSV OUTPUT_CSV
  serve     - stdlib HTTP API:  python -m model.serve --port 8080
"""

__all__ = ["features", "training"]
