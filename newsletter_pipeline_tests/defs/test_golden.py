"""Golden outputs: the bundled sample's five days, materialized as `make demo` does, give the recorded tables and sheet.

It pins behaviour across reshaping of the code (issue 13): every output table per day and the workbook's cells. Text,
ids and integers are compared exactly, through a digest of the sorted rows; float columns (vectors, coordinates,
probabilities, similarities) by count, sums and extremes within a small tolerance, so that a CPU with other vector
kernels does not fail it while any real change of clusters, labels, stories or rows does.

The vectors come from PyTorch, the reference backend, so the recorded outputs hold on every CPU. The default backend
(OpenVINO on a CPU) computes in bfloat16 where the CPU has it and in float32 elsewhere, which moves vectors in the
fifth decimal and can move a borderline item; newsletter_pipeline_tests/embedding/test_embed_openvino.py holds it to PyTorch's vectors.

When a change of outputs is intended, record them again and say why in the commit:
`.venv/bin/python -m newsletter_pipeline_tests.defs.test_golden`.
"""

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from newsletter_pipeline.publishing import export
from newsletter_pipeline_tests.conftest import SAMPLE_DAYS, Workspace

GOLDEN = Path(__file__).with_name("golden") / "sample_outputs.json"
TABLES = [
    "raw_items",
    "duplicates",
    "quarantine",
    "item_embeddings",
    "umap_coordinates",
    "clusters",
    "cluster_summaries",
    "stories",
    "story_items",
    "story_state",
]
# The index tab records when it was written: not part of the outputs.
VOLATILE_TABS = {export.INDEX_TAB}
RELATIVE_TOLERANCE = 1e-3


def _is_float(column: pd.Series) -> bool:
    if pd.api.types.is_float_dtype(column):
        return True
    first = next((v for v in column if v is not None), None)
    return isinstance(first, (np.ndarray, list)) and len(first) > 0 and isinstance(first[0], (float, np.floating))


def _float_figures(column: pd.Series) -> dict:
    values = np.concatenate([np.ravel(np.asarray(v, dtype=np.float64)) for v in column]) if len(column) else np.zeros(0)
    values = values[np.isfinite(values)]
    if not len(values):
        return {"n": 0}
    return {
        "n": int(len(values)),
        "sum": float(values.sum()),
        "abs_sum": float(np.abs(values).sum()),
        "min": float(values.min()),
        "max": float(values.max()),
    }


def table_figures(frame: pd.DataFrame, root: Path) -> dict:
    """A table's exact part (a digest of its non-float columns, rows sorted; the workspace's folder left out of paths)
    and its float columns' figures."""
    floats = [c for c in frame.columns if _is_float(frame[c])]
    exact = (
        frame.drop(columns=floats)
        .astype(str)
        .apply(lambda column: column.str.replace(str(root), "<root>", regex=False))
    )
    rows = sorted(exact.itertuples(index=False, name=None))
    digest = hashlib.sha256(json.dumps([list(exact.columns), rows]).encode()).hexdigest()[:16]
    return {
        "rows": len(frame),
        "columns": list(frame.columns),
        "digest": digest,
        "floats": {c: _float_figures(frame[c]) for c in floats},
    }


def outputs_of(workspace: Workspace) -> dict:
    found = {
        f"{table}/{day}": table_figures(workspace.store.read(table, day), workspace.root)
        for table in TABLES
        for day in SAMPLE_DAYS
    }
    found["quarantine/unassigned"] = table_figures(workspace.store.read("quarantine", "unassigned"), workspace.root)
    for tab, rows in export.read_workbook(workspace.workbook).items():
        if tab not in VOLATILE_TABS:
            found[f"workbook/{tab}"] = table_figures(pd.DataFrame(rows[1:], columns=rows[0]), workspace.root)
    return found


def reference_embedder():
    from newsletter_pipeline.defs.resources import EmbeddingResource

    return EmbeddingResource(device="cpu", backend="torch")


def materialized_sample(root: Path, embedder) -> Workspace:
    workspace = Workspace(root, embedder).add_sample()
    assert workspace.materialize_range(SAMPLE_DAYS[0], SAMPLE_DAYS[-1]).success
    return workspace


def _close(recorded: dict, found: dict) -> bool:
    return (
        recorded.keys() == found.keys()
        and all(np.isclose(found[k], recorded[k], rtol=RELATIVE_TOLERANCE, atol=1e-6) for k in recorded if k != "n")
        and recorded["n"] == found["n"]
    )


@pytest.mark.slow
def test_the_sample_gives_the_recorded_outputs(tmp_path):
    recorded = json.loads(GOLDEN.read_text())
    found = outputs_of(materialized_sample(tmp_path, reference_embedder()))
    assert sorted(found) == sorted(recorded), "tables or tabs appeared or vanished"
    differ = []
    for name, want in recorded.items():
        got = found[name]
        if (got["rows"], got["columns"], got["digest"]) != (want["rows"], want["columns"], want["digest"]):
            differ.append(
                f"{name}: rows/columns/values {got['rows']} {got['digest']} != recorded {want['rows']} {want['digest']}"
            )
        for column, figures in want["floats"].items():
            if not _close(figures, got["floats"].get(column, {})):
                differ.append(f"{name}.{column}: {got['floats'].get(column)} != recorded {figures}")
    assert not differ, (
        "outputs changed (re-record with python -m newsletter_pipeline_tests.defs.test_golden if intended):\n"
        + "\n".join(differ)
    )


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as folder:
        outputs = outputs_of(materialized_sample(Path(folder), reference_embedder()))
        shutil.rmtree(folder, ignore_errors=True)
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(outputs, indent=1, sort_keys=True) + "\n")
    print(f"recorded {len(outputs)} tables in {GOLDEN}")
