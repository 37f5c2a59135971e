"""Evidently 0.7.23 run on the same data as the engine, to compare verdicts and scores with.

Two of its entry points: the legacy ``DataDriftTable`` (per-column verdicts, the dataset
verdict) and the current ``Report([DataDriftPreset()])`` (drifted-columns count and share, each
column's ``ValueDrift`` score and method)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import pandas as pd

# Evidently's display names -> the engine's test names.
TEST_NAMES = {
    "K-S p_value": "ks",
    "chi-square p_value": "chisquare",
    "Z-test p_value": "z",
    "Wasserstein distance (normed)": "wasserstein",
    "Jensen-Shannon distance": "jensenshannon",
    "PSI": "psi",
    "Kullback-Leibler divergence": "kl_div",
    "Hellinger distance": "hellinger",
}


@dataclass
class EvColumn:
    test: str
    score: float
    drifted: bool
    threshold: float


@dataclass
class EvDataset:
    columns: dict[str, EvColumn]
    drift_share: float
    dataset_drift: bool


def legacy_table(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    numeric: list[str],
    categorical: list[str],
    per_column_test: dict[str, str] | None = None,
    per_column_threshold: dict[str, float] | None = None,
    drift_share: float = 0.5,
) -> EvDataset:
    from evidently.legacy.metrics import DataDriftTable, DatasetDriftMetric
    from evidently.legacy.pipeline.column_mapping import ColumnMapping
    from evidently.legacy.report import Report

    report = Report(
        metrics=[
            DataDriftTable(
                per_column_stattest=per_column_test,
                per_column_stattest_threshold=per_column_threshold,
            ),
            DatasetDriftMetric(
                drift_share=drift_share,
                per_column_stattest=per_column_test,
                per_column_stattest_threshold=per_column_threshold,
            ),
        ]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report.run(
            reference_data=reference,
            current_data=current,
            column_mapping=ColumnMapping(
                numerical_features=numeric, categorical_features=categorical
            ),
        )
        table, dataset = (m["result"] for m in report.as_dict()["metrics"])
    columns = {
        name: EvColumn(
            test=TEST_NAMES[col["stattest_name"]],
            score=float(col["drift_score"]),
            drifted=bool(col["drift_detected"]),
            threshold=float(col["stattest_threshold"]),
        )
        for name, col in table["drift_by_columns"].items()
    }
    return EvDataset(
        columns=columns,
        drift_share=float(dataset["share_of_drifted_columns"]),
        dataset_drift=bool(dataset["dataset_drift"]),
    )


def preset(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    numeric: list[str],
    categorical: list[str],
    drift_share: float = 0.5,
) -> tuple[int, float, dict[str, tuple[str, float]]]:
    """(drifted count, drifted share, {column: (test, score)}) from DataDriftPreset."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snapshot = Report([DataDriftPreset(drift_share=drift_share)]).run(
            Dataset.from_pandas(current, data_definition=definition),
            Dataset.from_pandas(reference, data_definition=definition),
        )
        metrics = snapshot.dict()["metrics"]
    count = share = None
    scores = {}
    for metric in metrics:
        config = metric["config"]
        if config["type"].endswith(":DriftedColumnsCount"):
            count, share = int(metric["value"]["count"]), float(metric["value"]["share"])
        elif config["type"].endswith(":ValueDrift"):
            scores[config["column"]] = (TEST_NAMES[config["method"]], float(metric["value"]))
    return count, share, scores
