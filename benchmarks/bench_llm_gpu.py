"""The transformers backend on a tiny local Qwen2 model: prompts/s and tokens/s, CUDA when present.

Needs only torch, transformers, tokenizers and numpy, so it runs on a bare GPU
machine: python benchmarks/bench_llm_gpu.py [--prompts 512] [--new-tokens 64]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import torch  # noqa: E402
from tiny_llm import build_tiny_qwen  # noqa: E402

from kwai_assets.llm.backends import TransformersBackend  # noqa: E402

PROMPT = ('Summarise the spatio-temporal preferences of this user.\n{{"profile":{{"gender":"F","age_range":"25-34",'
          '"city":"Chengdu"}},"interactions":{n},"home_cell":"30.57,104.07","travel_radius_km":4.2,'
          '"day_parts":{{"evening":0.6,"morning":0.3}},"top_hours":[19,20,8],"weekend_share":0.3,'
          '"categories":{{"cafe":0.4,"park":0.2,"food":0.1}},"places":[' +
          ",".join('{{"name":"cafe {i}","category":"cafe","cell":"30.57,104.07","visits":3}}'.replace("{i}", str(i))
                   for i in range(10)) + "]}}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prompts", type=int, default=512)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    model = build_tiny_qwen(Path(tempfile.mkdtemp()) / "tiny-qwen")
    backend = TransformersBackend(str(model), batch_size=args.batch_size, max_new_tokens=args.new_tokens)
    prompts = [PROMPT.format(n=i) for i in range(args.prompts)]
    backend.generate(prompts[: args.batch_size])             # warm-up
    start = time.perf_counter()
    out = backend.generate(prompts)
    generate_s = time.perf_counter() - start
    start = time.perf_counter()
    backend.embed([g.text or p for g, p in zip(out, prompts, strict=True)])
    embed_s = time.perf_counter() - start
    device = torch.cuda.get_device_name() if backend.device.type == "cuda" else "CPU"
    tokens_in, tokens_out = sum(g.tokens_in for g in out), sum(g.tokens_out for g in out)
    print("| device | prompts | tokens in / out | generate prompts/s | generated tokens/s | embed prompts/s |")
    print("|---|---|---|---|---|---|")
    print(f"| {device} ({backend.lm.dtype}) | {len(prompts)} | {tokens_in:,} / {tokens_out:,} | "
          f"{len(prompts) / generate_s:,.1f} | {tokens_out / generate_s:,.0f} | {len(prompts) / embed_s:,.1f} |")


if __name__ == "__main__":
    main()
