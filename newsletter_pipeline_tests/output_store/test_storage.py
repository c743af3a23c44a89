"""Parquet outputs on local disk and on S3, S3 landing, and writes that are atomic when interrupted.

S3 is a real S3-compatible server (moto's server mode) on 127.0.0.1, started once for the module.
"""

from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from newsletter_pipeline.defs.io_manager import OutputStore
from newsletter_pipeline.defs.resources import EmbeddingResource, LandingFolder, resources_from_env
from newsletter_pipeline.items.parse import parse_landing
from newsletter_pipeline.landing.formats import READERS
from newsletter_pipeline.landing.listing import s3_files
from newsletter_pipeline.landing.readers import read_jsonl
from newsletter_pipeline.storage import ParquetStore, split_s3_uri, vectors_to_arrow_column
from newsletter_pipeline_tests.conftest import ASSETS, SAMPLE, SAMPLE_DAYS

DAY = SAMPLE_DAYS[0]
TABLES = [
    "raw_items",
    "duplicates",
    "quarantine",
    "item_embeddings",
    "umap_coordinates",
    "clusters",
    "cluster_summaries",
]


def frame(version: int, rows: int = 5) -> pd.DataFrame:
    return pd.DataFrame(
        {"item_id": [f"v{version}-{i}" for i in range(rows)], "score": np.arange(rows, dtype=float) * version}
    )


def files_under(store: ParquetStore) -> list[str]:
    """Every file or object the store holds, temporary ones included."""
    if store.root.startswith("s3://"):
        from newsletter_pipeline_tests.s3_server import S3Server

        bucket, prefix = split_s3_uri(store.root)
        return S3Server(store.endpoint_url).keys(bucket, prefix)
    return sorted(str(p.relative_to(store.root)) for p in Path(store.root).rglob("*") if p.is_file())


def interrupted(table: pa.Table, progress: list) -> pa.RecordBatchReader:
    """A stream whose first batch arrives and whose second fails: a write that stops halfway."""

    def batches():
        yield from table.to_batches(max_chunksize=2)[:1]
        progress.append("first batch written")
        raise RuntimeError("the input stream broke halfway")

    return pa.RecordBatchReader.from_batches(table.schema, batches())


def test_a_day_round_trips_with_metadata_and_vectors(store):
    vectors = np.random.default_rng(0).random((3, 4), dtype=np.float32)
    table = pa.table({"item_id": ["a", "b", "c"], "embedding": vectors_to_arrow_column(vectors)})
    path = store.write("item_embeddings", DAY, table, metadata={"model": "m", "dimension": 4})
    assert path == store.path("item_embeddings", DAY) and path.endswith(f"/item_embeddings/{DAY}.parquet")
    assert store.exists("item_embeddings", DAY) and not store.exists("item_embeddings", "2026-11-17")
    read = store.read("item_embeddings", DAY)
    assert list(read["item_id"]) == ["a", "b", "c"] and np.allclose(np.stack(read["embedding"]), vectors)
    assert store.read_metadata("item_embeddings", DAY) == {"model": "m", "dimension": "4"}

    store.write("item_embeddings", DAY, frame(2))  # a rewrite replaces the day whole
    pd.testing.assert_frame_equal(store.read("item_embeddings", DAY), frame(2))
    assert files_under(store) == [f"{'outputs/' if path.startswith('s3://') else ''}item_embeddings/{DAY}.parquet"]
    with pytest.raises(FileNotFoundError, match="materialize 'clusters' for 2026-11-17 first"):
        store.read("clusters", "2026-11-17")


def test_s3_paths_are_uris_and_a_stream_writes_batch_by_batch(s3, bucket):
    store = ParquetStore(f"s3://{bucket}/deep/prefix/", endpoint_url=s3.endpoint_url)
    table = pa.Table.from_pandas(frame(1, rows=7), preserve_index=False)
    reader = pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=2))
    assert store.write("raw_items", DAY, reader) == f"s3://{bucket}/deep/prefix/raw_items/{DAY}.parquet"
    pd.testing.assert_frame_equal(store.read("raw_items", DAY), frame(1, rows=7))
    # One object, no directory markers: S3 has no folders to create.
    assert s3.keys(bucket) == [f"deep/prefix/raw_items/{DAY}.parquet"]


def test_an_interrupted_write_leaves_the_previous_version(store):
    store.write("raw_items", DAY, frame(1))
    before = files_under(store)
    progress: list = []
    with pytest.raises(RuntimeError, match="broke halfway"):
        store.write("raw_items", DAY, interrupted(pa.Table.from_pandas(frame(2), preserve_index=False), progress))
    assert progress == ["first batch written"]  # it really was interrupted halfway, not before starting
    pd.testing.assert_frame_equal(store.read("raw_items", DAY), frame(1))
    assert files_under(store) == before  # no temporary file, no partial object
    # An interrupted first write leaves nothing at all.
    with pytest.raises(RuntimeError):
        store.write("clusters", DAY, interrupted(pa.Table.from_pandas(frame(2), preserve_index=False), []))
    assert not store.exists("clusters", DAY) and files_under(store) == before


def test_an_interrupted_s3_write_leaves_no_unfinished_upload(s3, bucket):
    store = ParquetStore(f"s3://{bucket}/outputs", endpoint_url=s3.endpoint_url)
    store.write("raw_items", DAY, frame(1))
    etag = s3.client().head_object(Bucket=bucket, Key=f"outputs/raw_items/{DAY}.parquet")["ETag"]
    with pytest.raises(RuntimeError):
        store.write("raw_items", DAY, interrupted(pa.Table.from_pandas(frame(2), preserve_index=False), []))
    assert s3.client().head_object(Bucket=bucket, Key=f"outputs/raw_items/{DAY}.parquet")["ETag"] == etag
    assert s3.pending_uploads(bucket) == []


def test_a_failed_multipart_upload_is_aborted_and_the_old_object_kept(s3, bucket, monkeypatch):
    """A file too big for one PUT goes up in parts; when a part fails, nothing becomes visible and the upload is aborted."""
    import moto.s3.models

    upload_part = moto.s3.models.S3Backend.upload_part

    def failing_second_part(self, bucket_name, multipart_id, part_id, *args, **kwargs):
        if int(part_id) >= 2:
            raise RuntimeError("injected: the connection dropped")
        return upload_part(self, bucket_name, multipart_id, part_id, *args, **kwargs)

    store = ParquetStore(f"s3://{bucket}/outputs", endpoint_url=s3.endpoint_url)
    store.write("item_embeddings", DAY, frame(1))
    monkeypatch.setattr(moto.s3.models.S3Backend, "upload_part", failing_second_part)
    rng = np.random.default_rng(1)
    big = pa.table({"blob": pa.array([rng.bytes(1 << 20) for _ in range(12)], pa.binary())})  # 12 MB, incompressible
    with pytest.raises(OSError, match="UploadPart"):
        store.write("item_embeddings", DAY, big)
    monkeypatch.undo()
    pd.testing.assert_frame_equal(store.read("item_embeddings", DAY), frame(1))
    assert s3.keys(bucket) == [f"outputs/item_embeddings/{DAY}.parquet"] and s3.pending_uploads(bucket) == []


def test_writing_to_a_missing_bucket_says_so(s3):
    store = ParquetStore("s3://no-such-bucket-here/outputs", endpoint_url=s3.endpoint_url)
    with pytest.raises(OSError, match="no-such-bucket-here.*NO_SUCH_BUCKET"):
        store.write("raw_items", DAY, frame(1))


def put(s3, bucket: str, key: str, body: bytes | str) -> None:
    s3.client().put_object(Bucket=bucket, Key=key, Body=body.encode() if isinstance(body, str) else body)


def test_s3_landing_lists_and_parses_a_prefix(s3, bucket, monkeypatch):
    put(
        s3,
        bucket,
        "landing/morning_brief.jsonl",
        '{"headline": "Rates held", "link": "https://x.test/a", "date": "2026-11-16T08:00:00Z"}\n'
        '{"headline": "Markets rally", "link": "https://x.test/b", "date": "2026-11-16T09:00:00Z"}\n{broken\n',
    )
    put(
        s3,
        bucket,
        "landing/sport/sports_roundup.csv",
        "headline,link,date,source\nCup final,https://y.test/c,2026-11-16,Sports Roundup\n",
    )
    put(s3, bucket, "landing/notes.txt", "not a landing format")
    put(s3, bucket, "landing/sport/", b"")  # a folder marker, as consoles create
    put(s3, bucket, "landing-old/stale.jsonl", '{"headline": "outside the prefix", "date": "2026-11-16"}\n')

    files = s3_files(s3.client(), bucket, "landing")
    assert [f.name for f in files] == [
        f"s3://{bucket}/landing/morning_brief.jsonl",
        f"s3://{bucket}/landing/sport/sports_roundup.csv",
    ]
    parsed = parse_landing(files)
    assert sorted(parsed.items["headline"]) == ["Cup final", "Markets rally", "Rates held"]
    assert set(parsed.items["source"]) == {"morning brief", "Sports Roundup"}
    assert list(parsed.rejects["file"]) == [f"s3://{bucket}/landing/morning_brief.jsonl"] and list(
        parsed.rejects["position"]
    ) == [3]

    # The resource, configured as a deployment would be, lists the same; and the suffixes come from the readers registry.
    from dagster_aws.s3 import S3Resource

    landing = LandingFolder(path=f"s3://{bucket}/landing/", s3=S3Resource(endpoint_url=s3.endpoint_url))
    assert [f.name for f in landing.files()] == [f.name for f in files]
    monkeypatch.setitem(READERS, ".txt", read_jsonl)
    assert f"s3://{bucket}/landing/notes.txt" in [f.name for f in landing.files()]


def test_s3_landing_failures_name_the_location(s3, bucket):
    with pytest.raises(OSError, match="s3://no-such-bucket-here/landing/"):
        s3_files(s3.client(), "no-such-bucket-here", "landing")
    # An object gone between listing and reading is an unreadable file: quarantined, the other files still read.
    put(s3, bucket, "landing/a.jsonl", '{"headline": "Kept", "date": "2026-11-16"}\n')
    put(s3, bucket, "landing/b.jsonl", '{"headline": "Vanished", "date": "2026-11-16"}\n')
    files = s3_files(s3.client(), bucket, "landing")
    s3.client().delete_object(Bucket=bucket, Key="landing/b.jsonl")
    parsed = parse_landing(files)
    assert list(parsed.items["headline"]) == ["Kept"]
    assert (
        parsed.rejects["reason"].str.contains(f"cannot read s3://{bucket}/landing/b.jsonl: NoSuchKey").all()
        and len(parsed.rejects) == 1
    )


def test_environment_configures_s3_landing_and_outputs():
    env = {
        "NEWSLETTER_LANDING_DIR": "s3://team-bucket/landing",
        "NEWSLETTER_OUTPUT_ROOT": "s3://team-bucket/outputs",
        "NEWSLETTER_S3_ENDPOINT_URL": "http://127.0.0.1:9000",
        "AWS_REGION": "eu-west-1",
    }
    resources = resources_from_env(env)
    assert (
        resources["landing"].s3.endpoint_url == "http://127.0.0.1:9000"
        and resources["landing"].s3.region_name == "eu-west-1"
    )
    assert resources["store"].s3_endpoint_url == "http://127.0.0.1:9000"
    assert resources["store"].parquet.path("clusters", DAY) == f"s3://team-bucket/outputs/clusters/{DAY}.parquet"
    local = resources_from_env({"NEWSLETTER_DATA_DIR": "/srv/newsletter"})
    assert local["landing"].s3 is None and local["store"].s3_endpoint_url is None
    assert local["store"].parquet.path("clusters", DAY) == f"/srv/newsletter/outputs/clusters/{DAY}.parquet"


def test_a_day_materializes_with_landing_and_outputs_on_s3(s3, bucket, embedder: EmbeddingResource, tmp_path):
    for path in sorted(SAMPLE.iterdir()):
        put(s3, bucket, f"landing/{path.name}", path.read_bytes())
    resources = {
        **resources_from_env(
            {
                "NEWSLETTER_LANDING_DIR": f"s3://{bucket}/landing",
                "NEWSLETTER_OUTPUT_ROOT": f"s3://{bucket}/outputs",
                "NEWSLETTER_S3_ENDPOINT_URL": s3.endpoint_url,
                "NEWSLETTER_WORKBOOK": str(tmp_path / "clusters.xlsx"),
            }
        ),
        "embedder": embedder,
    }
    result = dg.materialize(ASSETS, partition_key=DAY, resources=resources, instance=dg.DagsterInstance.ephemeral())
    assert result.success
    assert {f"outputs/{table}/{DAY}.parquet" for table in TABLES} <= set(s3.keys(bucket, "outputs/"))
    store: OutputStore = resources["store"]
    items = store.parquet.read("raw_items", DAY)
    assert len(items) == 36 and items["origin"].notna().all()
    assert sorted(store.parquet.read("clusters", DAY)["item_id"]) == sorted(items["item_id"])
    raw = next(m.metadata for m in result.asset_materializations_for_node("raw_items"))
    assert raw["path"].value == f"s3://{bucket}/outputs/raw_items/{DAY}.parquet"
