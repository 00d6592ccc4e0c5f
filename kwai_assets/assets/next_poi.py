"""[models] Where the user goes next: check-in sequences and the distance-aware next-POI model.

Assets: checkins, next_poi. Checks: checkins_valid, next_poi_beats_baselines. next_poi writes no table
when its training failed (a non-finite loss or gradient, or a loss that never fell).
"""
import dataclasses
import re

import dagster as dg
import pandas as pd

from kwai_assets.assets.common import GPU, check_result, config_from, guard, to_dataclass
from kwai_assets.core.evaluation import device
from kwai_assets.core.mobility import (
    POICatalog,
    Queries,
    baseline_metrics,
    build_checkins,
    checkin_problems,
    protocol_table,
    table_problems,
)
from kwai_assets.core.reid import index_sizes
from kwai_assets.models import next_poi as model
from kwai_assets.models.early_stopping import training_problems
from kwai_assets.resources import ModelStoreResource

NO_CHECKINS = "the source has no located check-ins (no POI coordinates or no click coordinates, e.g. MovieLens)"


class CheckinsConfig(dg.Config):
    visit_km: float = 0.5      # a click within this distance of its photo's POI is a visit


@dg.asset(group_name="models", kinds={"duckdb", "parquet"})
def checkins(context: dg.AssetExecutionContext, config: CheckinsConfig, splits: pd.DataFrame,
             poi_attributes: pd.DataFrame, id_maps: pd.DataFrame) -> dg.Output[pd.DataFrame]:
    """Per user, the POI visits in time order (every split, labelled) with the POI's category and coordinates, the
    local hour of week, and the hours and km since the previous visit (`core/mobility.py`)."""
    catalog = POICatalog.from_frames(poi_attributes, id_maps)
    df = build_checkins(splits, catalog, config.visit_km)
    guard(context, "checkins", df, checkin_problems(df, len(catalog.category)))
    sizes = df["split"].value_counts()
    return dg.Output(df, metadata={
        "rows": len(df), "users": int(df["user_idx"].nunique()), "pois": int(df["poi_idx"].nunique()),
        **{s: int(sizes.get(s, 0)) for s in ("train", "val", "test")}, "visit_km": config.visit_km,
        "median_km_since_prev": float(df["km_since_prev"].median()) if len(df) else 0.0,
        **({"note": NO_CHECKINS} if df.empty else {})})


@dg.asset_check(asset=checkins, name="checkins_valid", blocking=True,
                additional_ins={"id_maps": dg.AssetIn("id_maps")},
                description="Sorted by (user, ts); known POIs with coordinates; hour of week in 0..167; "
                            "non-negative intervals.")
def checkins_valid(df: pd.DataFrame, id_maps: pd.DataFrame) -> dg.AssetCheckResult:
    n_pois = index_sizes(id_maps)["poi"]
    return check_result(checkin_problems(df, n_pois), f"{len(df)} check-ins of {df['user_idx'].nunique()} users",
                        rows=len(df))


NextPOIRunConfig = config_from(
    model.NextPOIConfig,
    radius_km=(float, 2.0, "radius of the radius-popular baseline, km around the last check-in"),
    ablation=(bool, True, "also train the model without the distance term, for the protocol's table"))


@dg.asset(group_name="models", **GPU, kinds={"pytorch", "mlflow"})
def next_poi(context: dg.AssetExecutionContext, config: NextPOIRunConfig, models: ModelStoreResource,
             checkins: pd.DataFrame, poi_attributes: pd.DataFrame, id_maps: pd.DataFrame) -> dg.Output[pd.DataFrame]:
    """The next-POI protocol's table on the test split (Acc@1/5/10, MRR) of the model (`models/next_poi.py`), the
    same model without its distance term, and the popular, radius-popular and Markov baselines; the model's
    weights in the model store under the run id in the metadata."""
    if checkins.empty:
        return dg.Output(protocol_table({}), metadata={"note": NO_CHECKINS})
    catalog, n_categories = POICatalog.from_frames(poi_attributes, id_maps), index_sizes(id_maps)["category"]
    settings = to_dataclass(config, model.NextPOIConfig)
    name = f"next_poi ({settings.encoder})"
    test = Queries.of(checkins, "test")
    params = {**config.model_dump(), "device": device().type,
              "train_checkins": int((checkins["split"] == "train").sum())}
    with models.run(context, params) as run:
        trained, history = model.train_next_poi(checkins, catalog, n_categories, settings, log=run.log_epoch)
        run.save("next_poi", trained)
        results = {name: model.evaluate(trained, checkins, "test")}
        problems = training_problems(history)
        if config.ablation and settings.distance:
            plain, plain_history = model.train_next_poi(checkins, catalog, n_categories,
                                                        dataclasses.replace(settings, distance=False))
            results[f"{name} without distance"] = model.evaluate(plain, checkins, "test")
            problems += [f"without distance: {p}" for p in training_problems(plain_history)]
        results |= baseline_metrics(checkins, catalog, test, config.radius_km)
        run.log_metrics({f"test.{re.sub(r'[^a-z_]+', '_', method)}.{k}": v
                         for method, found in results.items() for k, v in found.items()})
        table = protocol_table(results)
        markdown = table.to_markdown(index=False, floatfmt=".4f")
        run.log_text(markdown, "next_poi.md")
    guard(context, "next_poi", table, problems)
    best = max(history, key=lambda h: h.get("val_mrr", 0.0))
    curve = pd.DataFrame(history)
    return dg.Output(table, metadata={
        "results": dg.MetadataValue.md(markdown),
        "mlflow_run_id": run.run_id, "encoder": settings.encoder, "epochs_run": len(history),
        "best_epoch": int(best["epoch"]), "best_val_mrr": float(best.get("val_mrr", 0.0)),
        "best_val_acc_at_10": float(best.get("val_acc_at_10", 0.0)),
        "first_loss": float(history[0]["loss"]), "final_loss": float(history[-1]["loss"]),
        "loss_curve": dg.MetadataValue.md(curve.to_markdown(index=False, floatfmt=".4f")),
        "test_queries": len(test.rows), "samples_per_s": float(curve["samples_per_s"].mean()),
        "device": device().type})


@dg.asset_check(asset=next_poi, name="next_poi_beats_baselines",
                description="On the test split the model's Acc@10 is above every baseline's (a warning, not a block: "
                            "on some data a baseline may win).")
def next_poi_beats_baselines(table: pd.DataFrame) -> dg.AssetCheckResult:
    return check_result(table_problems(table), "the model beats every baseline on Acc@10",
                        severity=dg.AssetCheckSeverity.WARN, methods=len(table))
