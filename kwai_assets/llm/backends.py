"""LLM backends behind one small interface: generate a batch of texts, embed a batch of texts.

- ``vllm``: production generation on a GPU (``pip install '.[gpu]'``); chat
  template from the model's tokenizer, greedy decoding, batches of 64.
  Embeddings come from the same weights through ``transformers``.
- ``transformers``: any local Hugging Face causal-LM directory; length-sorted
  batches with left padding, greedy decoding, bf16 on CUDA, float32 on CPU.
  Embedding = mean of the last hidden state over the prompt's tokens.
- ``template``: offline and deterministic: a natural-language profile written
  from the prompt's JSON, and a weight-free, stateless encoder (hashed word
  and bigram counts, sublinear TF, Gaussian random projection) that puts
  every shard in the same space, so the whole graph runs with no weights.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from kwai_assets.llm.text import SYSTEM, count_tokens, document_of


@dataclass
class Generation:
    text: str
    tokens_in: int
    tokens_out: int


class Backend(Protocol):
    kind: str
    model: str

    def identity(self) -> str:
        """Everything that changes the output for a prompt: the cache key's prefix."""

    def generate(self, prompts: list[str]) -> list[Generation]: ...

    def embed(self, texts: list[str]) -> np.ndarray: ...

    def describe_embedding(self) -> str: ...


def _identity(kind: str, model: str, params: dict) -> str:
    return f"{kind}|{model}|{json.dumps(params, sort_keys=True)}"


def messages(prompt: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]


# -- template -------------------------------------------------------------------------------------------------
def _top(shares: dict[str, float], n: int = 3) -> str:
    return ", ".join(f"{k} ({v:.0%})" for k, v in list(shares.items())[:n])


def template_profile(prompt: str) -> str:
    """A deterministic paragraph from the prompt's JSON document."""
    doc = document_of(prompt)
    if "audience" in doc:       # an item
        parts = [f"A {doc['category']} photo" + (f" taken at {doc['poi']}" if "poi" in doc else "")
                 + (f" (cell {doc['cell']})" if "cell" in doc else "") + "."]
        parts.append(f"{doc['users']} users interacted {doc['interactions']} times, mostly in the "
                     f"{_top(doc['day_parts'], 2)}, {doc['weekend_share']:.0%} on weekends.")
        for name, mix in doc["audience"].items():
            if mix:
                parts.append(f"Audience {name.replace('_', ' ')}: {_top(mix)}.")
        return " ".join(parts)
    who = " ".join(str(v) for v in doc.get("profile", {}).values())
    parts = [f"A {who + ' ' if who else ''}user with {doc['interactions']} interactions."]
    if "home_cell" in doc:
        parts.append(f"Activity centres on cell {doc['home_cell']} and mostly stays within "
                     f"{doc['travel_radius_km']} km.")
    parts.append(f"Most active in the {_top(doc['day_parts'], 2)}, around "
                 f"{', '.join(f'{h}:00' for h in doc['top_hours'])}; "
                 f"{doc['weekend_share']:.0%} of activity on weekends.")
    if doc.get("categories"):
        parts.append(f"Favourite categories: {_top(doc['categories'], 4)}.")
    if doc.get("places"):
        parts.append("Frequent places: " + ", ".join(f"{p['name']} ({p['category']})" for p in doc["places"][:3]) + ".")
    return " ".join(parts)


class TemplateBackend:
    kind, model = "template", "template-v1"

    def __init__(self, dim: int = 128, seed: int = 0, n_features: int = 2**15):
        self.dim, self.seed, self.n_features = dim, seed, n_features

    def identity(self) -> str:
        return _identity(self.kind, self.model, {})

    def generate(self, prompts: list[str]) -> list[Generation]:
        out = []
        for prompt in prompts:
            text = template_profile(prompt)
            out.append(Generation(text, count_tokens(prompt), count_tokens(text)))
        return out

    def embed(self, texts: list[str]) -> np.ndarray:
        """Stateless, so every shard lands in the same space: hashing, then a seeded projection."""
        from sklearn.feature_extraction.text import HashingVectorizer
        from sklearn.preprocessing import normalize
        from sklearn.random_projection import GaussianRandomProjection

        counts = HashingVectorizer(n_features=self.n_features, ngram_range=(1, 2), alternate_sign=False,
                                   norm=None, stop_words="english",
                                   token_pattern=r"(?u)\b[^\W\d_]{2,}\b").transform(texts)
        counts.data = np.log1p(counts.data)
        projection = GaussianRandomProjection(n_components=self.dim, random_state=self.seed)
        projection.fit(counts[:1])            # fixes the random matrix from (n_features, dim, seed) alone
        return normalize(projection.transform(normalize(counts))).astype(np.float32)

    def describe_embedding(self) -> str:
        return (f"hashed word and bigram counts ({self.n_features} buckets, English stop words and numbers "
                f"dropped, sublinear tf) -> Gaussian random projection to {self.dim} dims (seed {self.seed}); "
                "no model weights")


# -- transformers ---------------------------------------------------------------------------------------------
def _require_model_dir(model: str) -> Path:
    path = Path(model).expanduser()
    if not model or not (path / "config.json").exists():
        raise FileNotFoundError(
            f"LLM model directory {model!r} not found (it needs config.json, the weights and the tokenizer). "
            "Set KWAI_LLM_MODEL to a local Hugging Face model directory, e.g. one saved by "
            "`huggingface-cli download Qwen/Qwen2.5-3B-Instruct --local-dir DIR` on a machine with internet.")
    return path


class TransformersBackend:
    kind = "transformers"

    def __init__(self, model: str, batch_size: int = 64, max_new_tokens: int = 256, device: str | None = None):
        path = _require_model_dir(model)
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as err:
            raise ImportError("the transformers backend needs torch and transformers: "
                              f"pip install transformers ({err})") from err
        self.model, self.batch_size, self.max_new_tokens = str(path), batch_size, max_new_tokens
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.lm = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(self.device).eval()
        self._weights = hashlib.sha256((path / "config.json").read_bytes()).hexdigest()[:12]

    def identity(self) -> str:
        return _identity(self.kind, f"{self.model}@{self._weights}", {"max_new_tokens": self.max_new_tokens,
                                                                       "decoding": "greedy"})

    def _chat(self, prompts: list[str]) -> list[str]:
        return [self.tokenizer.apply_chat_template(messages(p), tokenize=False, add_generation_prompt=True)
                for p in prompts]

    def _batches(self, texts: list[str]):
        """Index batches of similar length (less padding), in a deterministic order."""
        order = sorted(range(len(texts)), key=lambda i: (len(texts[i]), i))
        for start in range(0, len(order), self.batch_size):
            yield order[start:start + self.batch_size]

    def generate(self, prompts: list[str]) -> list[Generation]:
        import torch

        chats, out = self._chat(prompts), [None] * len(prompts)
        for batch in self._batches(chats):
            enc = self.tokenizer([chats[i] for i in batch], return_tensors="pt", padding=True,
                                 add_special_tokens=False).to(self.device)
            with torch.inference_mode():
                generated = self.lm.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=False,
                                             pad_token_id=self.tokenizer.pad_token_id)
            new = generated[:, enc["input_ids"].shape[1]:]
            texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
            n_in = enc["attention_mask"].sum(1).tolist()
            n_out = (new != self.tokenizer.pad_token_id).sum(1).tolist()
            for j, i in enumerate(batch):
                out[i] = Generation(texts[j].strip(), int(n_in[j]), int(n_out[j]))
        return out

    def embed(self, texts: list[str]) -> np.ndarray:
        """Mean-pooled last hidden state; an empty text is embedded as the end-of-sequence token."""
        import torch

        texts = [t if t.strip() else self.tokenizer.eos_token for t in texts]
        vectors = [None] * len(texts)
        for batch in self._batches(texts):
            enc = self.tokenizer([texts[i] for i in batch], return_tensors="pt", padding=True).to(self.device)
            with torch.inference_mode():
                hidden = self.lm(**enc, output_hidden_states=True).hidden_states[-1].float()
            mask = enc["attention_mask"].unsqueeze(-1).float()
            pooled = ((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).cpu().numpy()
            for j, i in enumerate(batch):
                vectors[i] = pooled[j]
        if not vectors:
            return np.zeros((0, self.lm.config.hidden_size), np.float32)
        return np.stack(vectors).astype(np.float32)

    def describe_embedding(self) -> str:
        return f"mean-pooled last hidden state of {self.model} ({self.lm.config.hidden_size} dims)"


# -- vLLM -----------------------------------------------------------------------------------------------------
class VLLMBackend:
    """Generation with vLLM; `llm` and `sampling_params` may be given (tests pass a stand-in)."""

    kind = "vllm"

    def __init__(self, model: str, batch_size: int = 64, max_new_tokens: int = 256, seed: int = 0,
                 llm: object | None = None, sampling_params: object | None = None):
        self.model, self.batch_size, self.max_new_tokens, self.seed = model, batch_size, max_new_tokens, seed
        if llm is None:
            _require_model_dir(model)
            try:
                import vllm
            except ImportError as err:
                raise ImportError("the vllm backend needs vLLM on a CUDA machine: pip install '.[gpu]'") from err
            llm = vllm.LLM(model=model, seed=seed)
            sampling_params = vllm.SamplingParams(temperature=0.0, max_tokens=max_new_tokens, seed=seed)
        self.llm, self.sampling_params = llm, sampling_params
        self._embedder: TransformersBackend | None = None

    def identity(self) -> str:
        return _identity(self.kind, self.model, {"max_new_tokens": self.max_new_tokens, "decoding": "greedy",
                                                 "seed": self.seed})

    def generate(self, prompts: list[str]) -> list[Generation]:
        tokenizer = self.llm.get_tokenizer()
        chats = [tokenizer.apply_chat_template(messages(p), tokenize=False, add_generation_prompt=True)
                 for p in prompts]
        out: list[Generation] = []
        for start in range(0, len(chats), self.batch_size):
            for result in self.llm.generate(chats[start:start + self.batch_size], self.sampling_params,
                                            use_tqdm=False):
                completion = result.outputs[0]
                out.append(Generation(completion.text.strip(), len(result.prompt_token_ids),
                                      len(completion.token_ids)))
        return out

    def embed(self, texts: list[str]) -> np.ndarray:
        if self._embedder is None:
            self._embedder = TransformersBackend(self.model, batch_size=self.batch_size)
        return self._embedder.embed(texts)

    def describe_embedding(self) -> str:
        return f"mean-pooled last hidden state of {self.model} (transformers, same weights as vLLM)"


KINDS = ("template", "transformers", "vllm")


def open_backend(kind: str, model: str = "", batch_size: int = 64, max_new_tokens: int = 256, seed: int = 0,
                 embedding_dim: int = 128) -> Backend:
    """The configured backend; a missing model directory or package fails here, at once."""
    if kind == "template":
        return TemplateBackend(dim=embedding_dim, seed=seed)
    if kind == "transformers":
        return TransformersBackend(model, batch_size=batch_size, max_new_tokens=max_new_tokens)
    if kind == "vllm":
        return VLLMBackend(model, batch_size=batch_size, max_new_tokens=max_new_tokens, seed=seed)
    raise ValueError(f"unknown LLM backend {kind!r}; choose one of {', '.join(KINDS)}")
