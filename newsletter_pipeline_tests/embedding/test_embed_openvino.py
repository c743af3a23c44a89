"""The OpenVINO backend: the same vectors as PyTorch, an export made once and published whole."""

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from newsletter_pipeline.embedding import embed
from newsletter_pipeline.embedding import openvino_backend as eo

LONG = " ".join(
    f"Paragraph {i}: the council debated the budget, the harbour, the schools and the new tram line again."
    for i in range(40)
)
TEXTS = [
    "Storm Odile makes landfall. Thousands evacuated as winds reach 180 km/h",
    "Hurricane hits the coast",
    "Central bank cuts rates by a quarter point",
    "Inflation",
    "Rover finds ice on Mars. NASA says the deposit could supply future crews.",
    "Café owners protest new rules on terrace seating in Zürich",
    "東京で地震、被害の報告なし",
    "Champions League: Real Madrid beat Bayern 2-1 in the semi-final",
    "  Leading and trailing spaces  ",
    "UPPER CASE HEADLINE ABOUT ELECTIONS",
    "Tech giant unveils new phone; critics call it 'more of the same' 📱",
    "Oil prices climb after pipeline outage. Brent rose 3% on Tuesday.",
    "Measles cases rise as vaccination rates fall.",
    "How to make sourdough bread at home",
    "Senate passes spending bill hours before shutdown deadline",
    LONG,
    "The best new albums of the month",
    "Police arrest suspect in downtown shooting",
    "Wildfire forces evacuations in northern California",
    "Astronomers spot water vapour on a distant exoplanet",
    "Jobs report: employers added 250,000 workers in October",
    "Museum returns looted bronzes to Nigeria",
    "Airline cancels hundreds of flights after IT failure",
    "Teachers strike over pay and class sizes",
    "Heatwave breaks records across southern Europe",
    "Quarterback signs record $260 million contract",
    "Study links ultra-processed food to heart disease",
    "Data breach exposes millions of customer records",
    "Carmaker recalls 400,000 SUVs over faulty airbags",
    "Royal family announces birth of a baby girl",
]


@pytest.fixture(scope="module")
def model_path() -> str:
    return embed.resolve_model_path(embed.DEFAULT_MODEL)


@pytest.fixture(scope="module")
def exported(model_path, tmp_path_factory) -> Path:
    """One real export for the module, into a cache folder of its own."""
    return eo.export_model(model_path, tmp_path_factory.mktemp("openvino_cache"))


@pytest.fixture(scope="module")
def encoder(exported) -> eo.OpenVinoEncoder:
    return eo.OpenVinoEncoder(exported)


@pytest.fixture(scope="module")
def torch_vectors() -> np.ndarray:
    return embed.embed_texts(embed.load_model(embed.DEFAULT_MODEL, "cpu"), TEXTS)


def test_vectors_match_pytorch(encoder, torch_vectors):
    vectors = encoder.encode(TEXTS, batch_size=8)  # several batches, each padded differently
    assert vectors.shape == (len(TEXTS), 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.sum(vectors * torch_vectors, axis=1).min() >= 0.999
    # One text per batch: no padding at all, another path through the attention mask.
    alone = np.vstack([encoder.encode([text], batch_size=1) for text in TEXTS[:4]])
    assert np.sum(alone * torch_vectors[:4], axis=1).min() >= 0.999


def test_input_order_is_kept(encoder, torch_vectors):
    order = np.random.default_rng(0).permutation(len(TEXTS))
    shuffled = encoder.encode([TEXTS[i] for i in order], batch_size=8)
    assert np.sum(shuffled * torch_vectors[order], axis=1).min() >= 0.999
    # Each row is its own text's, not a neighbour's of similar length.
    assert (np.argmax(shuffled @ torch_vectors.T, axis=1) == order).all()


def test_long_texts_are_truncated_as_sentence_transformers_does(encoder, exported):
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(exported / eo.TOKENIZER_JSON))
    tokenizer.no_truncation()
    assert len(tokenizer.encode(LONG).ids) > 400
    assert encoder.max_seq_length == 256
    # Past the 256th token nothing counts: another ending gives the same vector.
    with_other_end = encoder.encode([LONG, LONG + " And then something else entirely about football."])
    assert with_other_end[0] @ with_other_end[1] > 0.99999


def test_encoder_describes_itself_and_handles_empty_input(encoder):
    # The device names the precision the CPU plugin computes in: bfloat16 where the CPU has it.
    assert encoder.dimension == 384 and encoder.device == f"cpu (openvino {eo.inference_precision()})"
    assert eo.inference_precision() in ("bf16", "fp32")
    empty = encoder.encode([])
    assert empty.shape == (0, 384) and empty.dtype == np.float32


def test_a_second_export_reuses_the_folder(model_path, exported, monkeypatch):
    import openvino

    mtimes = {p.name: p.stat().st_mtime_ns for p in exported.iterdir()}
    monkeypatch.setattr(eo, "_convert", lambda *args: pytest.fail("exported again"))
    monkeypatch.setattr(openvino, "convert_model", lambda *args, **kwargs: pytest.fail("converted again"))
    assert eo.export_model(model_path, exported.parent) == exported
    assert eo.openvino_encoder(model_path, exported.parent).model_dir == exported
    assert {p.name: p.stat().st_mtime_ns for p in exported.iterdir()} == mtimes
    assert not list(exported.parent.glob(f"{eo.TEMP_PREFIX}*"))


def copy_of(exported: Path):
    """A stand-in for the conversion (seconds instead of a minute of tests): writes what a real one writes."""

    def convert(model_dir, out, int8):
        shutil.copytree(exported, out, dirs_exist_ok=True)

    return convert


def test_a_crash_mid_export_leaves_nothing_to_load(model_path, tmp_path, monkeypatch):
    def crash(model_dir, out, int8):
        (out / eo.MODEL_XML).write_text("<net", encoding="utf-8")
        raise RuntimeError("killed mid-export")

    monkeypatch.setattr(eo, "_convert", crash)
    with pytest.raises(RuntimeError, match="killed"):
        eo.export_model(model_path, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_half_written_temp_folder_does_not_break_the_next_export(model_path, exported, tmp_path, monkeypatch):
    # What a process killed mid-export leaves (no cleanup ran): a temp folder named after the same fingerprint.
    name = eo.export_name(Path(model_path))
    stale, busy = tmp_path / f"{eo.TEMP_PREFIX}{name}-stale", tmp_path / f"{eo.TEMP_PREFIX}{name}-busy"
    for folder in (stale, busy):
        folder.mkdir()
        (folder / eo.MODEL_XML).write_text("<net", encoding="utf-8")
    hours_ago = time.time() - 2 * eo.STALE_TEMP_SECONDS
    os.utime(stale, (hours_ago, hours_ago))
    monkeypatch.setattr(eo, "_convert", copy_of(exported))
    published = eo.export_model(model_path, tmp_path)
    assert published == tmp_path / name and eo.OpenVinoEncoder(published).encode(["Inflation"]).shape == (1, 384)
    # The stale one is swept up; a recent one may be another process's export in progress, so it stays.
    assert not stale.exists() and busy.exists()


def test_an_incomplete_cache_folder_is_exported_again(model_path, exported, tmp_path, monkeypatch):
    broken = tmp_path / eo.export_name(Path(model_path))
    broken.mkdir()
    (broken / eo.MODEL_XML).write_text("<net", encoding="utf-8")
    monkeypatch.setattr(eo, "_convert", copy_of(exported))
    assert eo.export_model(model_path, tmp_path) == broken
    assert (broken / eo.META_JSON).is_file() and (broken / eo.MODEL_BIN).stat().st_size > 1_000_000


def test_a_folder_published_meanwhile_by_another_process_wins(model_path, exported, tmp_path, monkeypatch):
    final = tmp_path / eo.export_name(Path(model_path))

    def racing(model_dir, out, int8):
        shutil.copytree(exported, final)  # the other process renames its copy into place first
        shutil.copytree(exported, out, dirs_exist_ok=True)

    monkeypatch.setattr(eo, "_convert", racing)
    assert eo.export_model(model_path, tmp_path) == final
    assert [p.name for p in tmp_path.iterdir()] == [final.name]


def test_variants_and_models_get_their_own_folders(model_path, tmp_path):
    assert eo.export_name(Path(model_path)) != eo.export_name(Path(model_path), int8=True)
    copy = tmp_path / "model"
    shutil.copytree(model_path, copy)
    assert eo.export_name(copy) == eo.export_name(Path(model_path))  # where it lies does not matter, its contents do
    (copy / "config.json").write_text((copy / "config.json").read_text() + " ", encoding="utf-8")
    assert eo.export_name(copy) != eo.export_name(Path(model_path))


def test_int8_stays_close_to_pytorch(model_path, exported, torch_vectors):
    pytest.importorskip("nncf", reason="the int8 export needs nncf")
    int8 = eo.openvino_encoder(model_path, exported.parent, int8=True)
    assert int8.model_dir != exported and int8.device == f"cpu (openvino {eo.precision(int8=True)})"
    assert np.sum(int8.encode(TEXTS) * torch_vectors, axis=1).min() >= 0.99


def test_auto_embeds_with_openvino_on_a_cpu(exported, torch_vectors):
    choice = embed.choose_backend("auto", "cpu", embed.DEFAULT_MODEL, str(exported.parent))
    assert (choice.backend, choice.fallback) == ("openvino", False)
    assert choice.reason == f"auto: OpenVINO runs on this CPU, in {eo.precision()}"
    encoder = embed.load_encoder(embed.DEFAULT_MODEL, "cpu", "auto", model_cache_dir=str(exported.parent))
    assert encoder.model_dir == exported  # the export made once is reused
    assert np.sum(encoder.encode(TEXTS, 64) * torch_vectors, axis=1).min() >= 0.999
    assert embed.variant_name(choice.backend, "cpu") == f"openvino-{eo.precision()}"
    # A configured backend is taken as it is.
    assert embed.choose_backend("torch", "cpu", embed.DEFAULT_MODEL, str(exported.parent)).backend == "torch"


def test_auto_falls_back_to_pytorch_and_says_why(tmp_path, monkeypatch):
    def no_export(*args, **kwargs):
        raise NotImplementedError("OpenVINO export handles Transformer + mean Pooling models; this one is ['CLIP']")

    monkeypatch.setattr(eo, "export_model", no_export)
    choice = embed.choose_backend("auto", "cpu", embed.DEFAULT_MODEL, str(tmp_path))
    assert (choice.backend, choice.fallback) == ("torch", True)
    assert choice.reason == (
        "auto: PyTorch, since OpenVINO cannot run here (NotImplementedError: OpenVINO export handles Transformer + "
        "mean Pooling models; this one is ['CLIP'])"
    )
    assert isinstance(
        embed.load_encoder(backend="auto", device="cpu", model_cache_dir=str(tmp_path)), embed.TorchEncoder
    )
    # A CUDA device is PyTorch's, in float16: OpenVINO is not tried, so this is no fallback.
    cuda = embed.choose_backend("auto", "cuda", embed.DEFAULT_MODEL, str(tmp_path))
    assert (cuda.backend, cuda.fallback, cuda.reason) == ("torch", False, "auto: a CUDA GPU, so PyTorch")
