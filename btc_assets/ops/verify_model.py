"""``btc-assets verify``'s model lines: the promoted dataset and model verify, the model loads,
and the dataset its card names is still in the lake with the same sha256."""

from __future__ import annotations

from btc_assets.artifacts import ArtifactError
from btc_assets.model.dataset import DATASET_NAME, dataset_store
from btc_assets.model.registry import ModelRefused, load_model, model_store
from btc_assets.settings import Settings


def verify_model(settings: Settings) -> tuple[list[str], list[str]]:
    """Lines to show, and problems (each names the version and the file or reason)."""
    lines: list[str] = []
    problems: list[str] = []
    datasets, models, name = (
        dataset_store(settings.lake_location),  # a folder or gs://bucket/prefix
        model_store(settings.lake_location),
        settings.model.name,
    )
    try:
        dataset = datasets.read_current(DATASET_NAME)
        lines.append(
            f"dataset {DATASET_NAME}: "
            + (f"{dataset.version} verifies" if dataset else "none promoted yet")
        )
    except ArtifactError as exc:
        problems.append(f"dataset {DATASET_NAME}: {exc}")
    try:
        if models.current(name) is None:
            lines.append(f"model {name}: none promoted yet (materialize the train_model job)")
            return lines, problems
        model = load_model(models, name)
    except (ModelRefused, ArtifactError) as exc:
        problems.append(f"model {name}: {exc}")
        return lines, problems
    trained_on_version = model.card.get("dataset_version")
    lines.append(
        f"model {name}: {model.version} loads ({len(model.features)} features, env "
        f"{model.env}, dataset {trained_on_version})"
    )
    if model.env != settings.env:
        problems.append(f"model {name} {model.version} was trained in env {model.env}, this is "
                        f"{settings.env}")  # fmt: skip
    if not trained_on_version:
        problems.append(f"model {name} {model.version}: its card names no dataset version")
        return lines, problems
    try:
        trained_on = datasets.verify(DATASET_NAME, str(trained_on_version))
        if trained_on.sha256 != model.card["dataset_sha256"]:
            problems.append(
                f"model {name} {model.version}: its dataset {trained_on.version} has sha256 "
                f"{trained_on.sha256[:12]}..., the card says {model.card['dataset_sha256'][:12]}..."
            )
    except ArtifactError as exc:
        problems.append(f"model {name} {model.version}: its dataset cannot be traced: {exc}")
    return lines, problems
