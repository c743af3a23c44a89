"""Embed texts on the CPU with OpenVINO, from a sentence-transformers model exported once and cached on disk."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from newsletter_pipeline.embedding.weights import folder_digest

# Bump when the exported graph, its quantisation or the files beside it change, so older exports are not reused.
EXPORT_FORMAT = 1
MODEL_XML, MODEL_BIN, TOKENIZER_JSON, META_JSON = "model.xml", "model.bin", "tokenizer.json", "meta.json"
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
TEMP_PREFIX = ".tmp-"
# A temp folder this old is left by an export that was killed; a younger one may be another process still at work.
STALE_TEMP_SECONDS = 3600


def export_model(model_path: str, cache_dir: str | Path, *, int8: bool = False) -> Path:
    """The OpenVINO export of the sentence-transformers model at `model_path`: `cache_dir/<fingerprint>/`, converted
    only if absent.

    The folder holds model.xml/.bin (token ids -> unit-length sentence vectors), tokenizer.json and meta.json."""
    model_dir = Path(model_path)
    if not model_dir.is_dir():
        raise ValueError(f"OpenVINO export needs a local model folder; {model_path!r} is not one")
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    final = cache_dir / export_name(model_dir, int8)
    if _is_complete(final):
        return final
    if final.exists():  # only a hand-edited cache gets here: a rename publishes a folder whole
        shutil.rmtree(final)
    _remove_stale_temps(cache_dir)
    # Convert into a temp folder and rename it into place, so a crash never leaves a half model under the final name.
    temp = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{final.name}-", dir=cache_dir))
    try:
        _convert(model_dir, temp, int8)
        os.chmod(temp, 0o755)  # mkdtemp makes it private; the published export is read by whoever runs the pipeline
        try:
            os.rename(temp, final)
        except OSError:
            # Another process published the same fingerprint meanwhile: keep its copy.
            if not _is_complete(final):
                raise
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return final


def export_name(model_dir: Path, int8: bool = False) -> str:
    """The export's folder name: a hash of the model's file contents (sha256: ~0.1 s for all-MiniLM-L6-v2's 90 MB),
    the export tools' versions and the variant."""
    digest = hashlib.sha256()
    digest.update(
        json.dumps(
            {"format": EXPORT_FORMAT, "variant": _variant(int8), **_tool_versions(int8)}, sort_keys=True
        ).encode()
    )
    digest.update(folder_digest(str(model_dir.resolve())).encode())
    if int8:
        digest.update("\0".join(CALIBRATION_TEXTS).encode())
    return digest.hexdigest()[:20]


def _tool_versions(int8: bool) -> dict[str, str]:
    # From the installed metadata: importing torch only to read its version would cost seconds on every load.
    try:
        return {name: version(name) for name in ("openvino", "torch", "transformers", *(["nncf"] if int8 else []))}
    except PackageNotFoundError as error:
        hint = "pip install nncf==3.4.0" if error.name == "nncf" else f"pip install {error.name}"
        raise ImportError(f"the OpenVINO {_variant(int8)} export needs {error.name}: {hint}") from error


@functools.cache
def inference_precision() -> str:
    """'bf16' where the CPU has bfloat16, which OpenVINO's CPU plugin then computes in by default (most of its
    speed-up here), else 'fp32'. The cache keys vectors by it: the two differ in the fifth decimal."""
    import openvino as ov

    return "bf16" if "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES") else "fp32"


def precision(int8: bool = False) -> str:
    """The precision vectors are computed in on this machine: bf16 or fp32, after int8 for a quantized export."""
    return f"int8-{inference_precision()}" if int8 else inference_precision()


def _variant(int8: bool) -> str:
    return "int8" if int8 else "fp32"


def _is_complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in (MODEL_XML, MODEL_BIN, TOKENIZER_JSON, META_JSON))


def _remove_stale_temps(cache_dir: Path) -> None:
    now = time.time()
    for path in cache_dir.glob(f"{TEMP_PREFIX}*"):
        try:
            if now - path.stat().st_mtime > STALE_TEMP_SECONDS:
                shutil.rmtree(path, ignore_errors=True)
        except FileNotFoundError:  # another process removed it first
            pass


def _convert(model_dir: Path, out: Path, int8: bool) -> None:
    """Export transformer, mean pooling and L2 normalisation as one OpenVINO graph; save it with the tokenizer and
    meta.json."""
    import openvino as ov
    import torch
    from sentence_transformers import SentenceTransformer

    class SentenceEmbedding(torch.nn.Module):
        """What sentence-transformers computes: token vectors, their mean over the attention mask, L2-normalised."""

        def __init__(self, transformer: torch.nn.Module):
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids, attention_mask, token_type_ids):
            tokens = self.transformer(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
            mean = (tokens * mask).sum(1) / torch.clamp(mask.sum(1), min=1e-9)
            return torch.nn.functional.normalize(mean, p=2, dim=1)

    started = time.perf_counter()
    st = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
    _check_supported(st)
    tokenizer = _fixed_tokenizer(st[0].tokenizer, st.max_seq_length)
    tokenizer.save(str(out / TOKENIZER_JSON))

    # A padded example, so the mask takes part in attention. torch.export rather than TorchScript tracing, which torch
    # deprecates.
    example = _features(tokenizer, ["An example", "A somewhat longer example sentence for export"])
    batch, length = torch.export.Dim("batch"), torch.export.Dim("length", max=st.max_seq_length)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*LeafSpec", FutureWarning)  # torch's own internals, nothing to act on
        program = torch.export.export(
            SentenceEmbedding(st[0].auto_model).eval(),
            (),
            kwargs={name: torch.from_numpy(example[name]) for name in INPUT_NAMES},
            dynamic_shapes={name: {0: batch, 1: length} for name in INPUT_NAMES},
        )
        model = ov.convert_model(program)
    # Batch and sequence length stay dynamic ([?,?]); name the ports for whoever reads the IR.
    for port, name in zip(model.inputs, INPUT_NAMES, strict=True):
        port.get_tensor().set_names({name})
    model.outputs[0].get_tensor().set_names({"sentence_embedding"})
    if int8:
        model = _quantize(model, tokenizer)
    # float32 weights: fp16 storage halves the file but moves vectors by up to 5e-5 in cosine, for no speed.
    ov.save_model(model, str(out / MODEL_XML), compress_to_fp16=False)
    meta = {
        "format": EXPORT_FORMAT,
        "variant": _variant(int8),
        "source": str(model_dir),
        "dimension": int(st.get_embedding_dimension()),
        "max_seq_length": int(st.max_seq_length),
        "inputs": list(INPUT_NAMES),
        "versions": _tool_versions(int8),
        "export_seconds": round(time.perf_counter() - started, 1),
    }
    (out / META_JSON).write_text(json.dumps(meta, indent=2), encoding="utf-8")


def _check_supported(st) -> None:
    """Transformer -> mean Pooling (-> Normalize): the layout the exported graph reproduces."""
    names = [type(module).__name__ for module in st]
    if names[:2] != ["Transformer", "Pooling"] or names[2:] not in ([], ["Normalize"]) or st[1].pooling_mode != "mean":
        raise NotImplementedError(
            f"OpenVINO export handles Transformer + mean Pooling (+ Normalize) models; this one is {names}"
        )


def _fixed_tokenizer(tokenizer, max_seq_length: int):
    """The model's own fast tokenizer set as sentence-transformers calls it: truncated to max_seq_length, padded to the
    longest.

    Saved as a plain `tokenizers` file, so encoding needs neither transformers nor torch (importing them costs ~2 s)."""
    from tokenizers import Tokenizer

    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.enable_truncation(max_length=max_seq_length, strategy="longest_first", direction=tokenizer.truncation_side)
    backend.enable_padding(
        direction=tokenizer.padding_side,
        pad_id=tokenizer.pad_token_id,
        pad_type_id=tokenizer.pad_token_type_id,
        pad_token=tokenizer.pad_token,
    )
    return backend


def _features(tokenizer, texts: Sequence[str]) -> dict[str, np.ndarray]:
    encodings = tokenizer.encode_batch(list(texts))
    return {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
    }


def _quantize(model, tokenizer):
    """int8 weights and activations (nncf post-training quantisation), calibrated on CALIBRATION_TEXTS."""
    try:
        import nncf
    except ImportError as error:
        raise ImportError("the int8 OpenVINO export needs nncf: pip install nncf==3.4.0") from error

    dataset = nncf.Dataset([_features(tokenizer, [text]) for text in CALIBRATION_TEXTS])
    # The feed-forward down-projections (the MatMuls fed by GELU) stay in float: quantised, their wide inputs cost the
    # most accuracy (min cosine 0.983 instead of 0.995 on 2,000 HuffPost items); keeping them gives up ~40% of the
    # speed-up.
    down = [
        op.get_friendly_name()
        for op in model.get_ops()
        if op.get_type_name() == "MatMul" and op.input_value(0).get_node().get_type_name() == "Gelu"
    ]
    return nncf.quantize(
        model,
        dataset,
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(CALIBRATION_TEXTS),
        ignored_scope=nncf.IgnoredScope(names=down),
    )


class OpenVinoEncoder:
    """An exported model compiled for the CPU; `encode` gives what SentenceTransformer.encode(normalize_embeddings=True)
    does."""

    def __init__(self, model_dir: str | Path, *, performance_hint: str = "THROUGHPUT", config: dict | None = None):
        import openvino as ov
        from tokenizers import Tokenizer

        self.model_dir = Path(model_dir)
        meta = json.loads((self.model_dir / META_JSON).read_text(encoding="utf-8"))
        self.variant: str = meta["variant"]
        self.dimension: int = meta["dimension"]
        self.max_seq_length: int = meta["max_seq_length"]
        self.device = f"cpu (openvino {precision(int8=self.variant == 'int8')})"
        self._tokenizer = Tokenizer.from_file(str(self.model_dir / TOKENIZER_JSON))
        # THROUGHPUT: one stream per core, each running its own batch; on 2 cores 10-25% faster than LATENCY's one
        # stream on both. The CPU plugin picks the inference precision: bfloat16 where the CPU has it (cosine
        # 0.99997), else f32.
        self._compiled = ov.Core().compile_model(
            str(self.model_dir / MODEL_XML), "CPU", {"PERFORMANCE_HINT": performance_hint, **(config or {})}
        )
        self._queue = ov.AsyncInferQueue(
            self._compiled, self._compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
        )
        self._queue.set_callback(self._store)
        self._lock = threading.Lock()  # the queue is not meant to be fed from several threads at once

    def __repr__(self) -> str:
        return f"OpenVinoEncoder({str(self.model_dir)!r}, variant={self.variant!r})"

    @staticmethod
    def _store(request, userdata) -> None:
        out, rows = userdata
        out[rows] = request.get_output_tensor(0).data

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """One unit-length float32 row per text, in input order."""
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        # Longest first, as sentence-transformers does: a batch holds texts of similar length, so little padding.
        order = np.argsort([-len(text) for text in texts], kind="stable")
        with self._lock:
            for start in range(0, len(texts), batch_size):
                rows = order[start : start + batch_size]
                self._queue.start_async(_features(self._tokenizer, [texts[i] for i in rows]), (out, rows))
            self._queue.wait_all()
        return out


def openvino_encoder(model_path: str, cache_dir: str | Path, *, int8: bool = False) -> OpenVinoEncoder:
    """The model at `model_path` on OpenVINO, exported into `cache_dir` the first time."""
    return OpenVinoEncoder(export_model(model_path, cache_dir, int8=int8))


# int8 calibration: news items as the pipeline embeds them (headline, then description), of many topics and lengths.
# 42 texts give a min cosine of 0.995 to float32; nncf's usual 300 add little here (0.998).
CALIBRATION_TEXTS: tuple[str, ...] = (
    "Central bank holds interest rates steady. Policymakers said inflation is cooling but wages are still rising "
    "faster than expected.",
    "Storm makes landfall on the Gulf Coast. Thousands of homes lost power as winds reached 110 miles per hour "
    "overnight.",
    "Senate passes spending bill hours before shutdown deadline. The measure funds the government through the end of "
    "the fiscal year.",
    "Champions League final: late goal settles it. The visitors scored in stoppage time to lift the trophy for the "
    "first time.",
    "Chipmaker unveils faster AI processor. The company says the new design doubles performance per watt for data "
    "centres.",
    "Scientists map the genome of a deep-sea squid. The study sheds light on how cephalopods evolved their large "
    "brains.",
    "Measles cases rise as vaccination rates fall. Health officials urge parents to check their children's "
    "immunisation records.",
    "Box office: animated sequel tops the weekend. The film earned $120 million in North America, beating forecasts.",
    "Election results",
    "Earthquake",
    "Oil prices climb after pipeline outage. Brent crude rose 3% as traders weighed supply disruptions in the North "
    "Sea.",
    "Court blocks new voting law. A federal judge ruled the state's ID requirements placed an undue burden on older "
    "voters.",
    "Tennis star withdraws from Wimbledon with a wrist injury.",
    "Startup raises $50 million to build electric delivery vans. Investors bet on urban logistics as cities restrict "
    "diesel trucks.",
    "NASA delays moon mission after heat shield tests. Engineers found unexpected erosion during re-entry trials.",
    "Wildfire forces evacuations in northern California. Firefighters battled strong winds and low humidity as the "
    "blaze spread to 20,000 acres.",
    "Recipe: the easiest weeknight pasta you'll ever make. Garlic, lemon, chilli and a handful of spinach, ready in 15 "
    "minutes.",
    "Ten beaches to visit before summer ends.",
    "Police arrest suspect in downtown shooting. Two people were wounded and the suspect was taken into custody near "
    "the train station.",
    "Prime minister reshuffles cabinet after by-election defeat. The finance and foreign ministers both lose their "
    "posts.",
    "Stocks rally as tech earnings beat estimates; the Nasdaq closed at a record high while bond yields edged lower.",
    "The best new albums of the month, from indie folk to hip-hop.",
    "Museum returns looted artefacts to Nigeria. The bronzes were taken by British soldiers in 1897.",
    "How to talk to your kids about climate anxiety. Psychologists share advice for parents of worried teenagers.",
    "Airline cancels hundreds of flights after IT failure. Passengers were stranded at airports across Europe on "
    "Monday morning.",
    "Jobs report: employers added 250,000 workers in October, and unemployment held at 3.9 percent.",
    "Study links ultra-processed food to higher risk of heart disease.",
    "Streaming service raises prices again. Subscribers will pay $2 more a month for the ad-free plan starting in "
    "January.",
    "Refugees cross the border as fighting intensifies. Aid agencies warn of shortages of food, water and medicine in "
    "the camps.",
    "Quarterback signs record contract extension worth $260 million over five years.",
    "Comedian hosts awards show for the third time; viewers gave mixed reviews to the opening monologue.",
    "City council approves plan for new bike lanes. Opponents say the changes will worsen traffic on the main avenues.",
    "Data breach exposes millions of customer records. The retailer said payment card numbers were not affected.",
    "Heatwave breaks temperature records across southern Europe, with Spain recording 46C.",
    "Royal family announces birth of a baby girl.",
    "Teachers strike over pay and class sizes. Schools across the district closed as negotiations stalled for a second "
    "week.",
    "Astronomers spot water vapour on a distant exoplanet. The James Webb telescope detected the signal in the "
    "planet's atmosphere.",
    "Supreme Court hears arguments on social media moderation. Justices appeared divided over whether platforms can be "
    "treated like newspapers.",
    "Why millennials are leaving big cities for small towns.",
    "Carmaker recalls 400,000 SUVs over faulty airbags. Owners will be notified by mail and repairs will be free of "
    "charge.",
    "Olympics: swimmer wins fourth gold medal and sets a world record in the 200m butterfly.",
    "Opinion: we need to rethink how we fund public transport. Fares alone cannot pay for the buses and trains our "
    "cities rely on, and every cut to service pushes more riders back into cars, which clogs the roads and slows the "
    "buses further. A stable source of funding, whether a regional sales tax, congestion charges or a share of parking "
    "revenue, would let agencies plan for decades rather than lurching from one budget crisis to the next. Cities that "
    "have made this choice have seen ridership recover faster after the pandemic, and their residents spend less of "
    "their income on getting to work. The alternative is a slow spiral of decline in which fewer riders mean fewer "
    "trains, and fewer trains mean fewer riders, until only those without any other option remain. That is not a "
    "transport policy; it is a failure to govern, and it falls hardest on the workers who keep our cities running.",
)
