# community-ml — every command a human, CI or a hook needs. `make` alone lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
.SHELLFLAGS := -eu -o pipefail -c

export BENTOML_DO_NOT_TRACK := true
# Python caches compiled modules in .venv and __pycache__ (git-ignored): with caching off, every command and every
# test subprocess recompiled mlflow, pandas and scikit-learn from source (~11 s of a 24 s `score` run here).
unexport PYTHONDONTWRITEBYTECODE
export COMMUNITY_ML_HOME ?= $(CURDIR)/.community-ml
# uv from PATH, else the one `setup` installs with pip (runnable as a module, whatever the PATH says).
UV = $(shell command -v uv 2>/dev/null || echo python3 -m uv)
BIN := .venv/bin
DEMO_DATASET ?= demo
OPS_PORT ?= 8001
# Synthetic communities of the alerts benchmark (each calm and with six planted changes; ~2.5 min each per core)
BENCH_ALERT_SEEDS ?= 20
DEMO_PORT ?= 3000
# The demo trains on 4 monthly cutoffs and judges on 2 held-out ones (the CLI's defaults are 6 and 3), and tunes
# each recommender for 20 s instead of 60: every step runs, in about 4.5 minutes rather than 10.
DEMO_CUTOFFS ?= --training-cutoffs 4 --test-cutoffs 2
DEMO_TUNING ?= --budget-seconds 20
# Community sizes of the fresh-answers benchmark; each is generated and trained once under .community-ml-bench/
# (200,000 members: about 12 GB while generating and half an hour of training).
BENCH_ONLINE_SIZES ?= 20000 200000
RETAIL_CSV ?= ../shared/data/online_retail/online_retail.csv.gz
CDNOW ?= ../shared/data/cdnow/CDNOW_master.txt.gz
INSTALL_UV = command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 \
	|| python3 -m pip install --quiet --disable-pip-version-check uv \
	|| python3 -m pip install --quiet --disable-pip-version-check --break-system-packages uv
# apt needs root: sudo when we are not root.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

## help: list the targets
.PHONY: help
help:
	@grep -E '^## ' $(MAKEFILE_LIST) | sed -e 's/^## //' | awk -F': ' '{printf "  \033[1m%-8s\033[0m %s\n", $$1, $$2}'

## setup: install uv if missing, create .venv and sync it with uv.lock
.PHONY: setup
setup: .venv/.synced
# --inexact: a .venv that also has the Spark extra (make test) keeps it.
.venv/.synced: pyproject.toml uv.lock
	@$(INSTALL_UV)
	$(UV) sync --frozen --inexact
	@touch $@

# The Spark engine (an optional extra) and a Java it runs on: what the tests and benchmarks of Spark need.
.PHONY: setup-spark
setup-spark: .venv/.synced-spark java
.venv/.synced-spark: pyproject.toml uv.lock
	@$(INSTALL_UV)
	$(UV) sync --frozen --extra spark
	@touch $@ .venv/.synced

## demo: generate the synthetic community, run the whole pipeline on it, then serve the API (about 4.5 minutes)
.PHONY: demo
demo: setup
	$(BIN)/community-ml data generate --dataset $(DEMO_DATASET) --config configs/synthetic.yaml
	$(BIN)/community-ml data describe --dataset $(DEMO_DATASET)
	$(BIN)/community-ml features build --dataset $(DEMO_DATASET) --as-of latest
	$(BIN)/community-ml train churn --dataset $(DEMO_DATASET) $(DEMO_CUTOFFS)
	$(BIN)/community-ml train value --dataset $(DEMO_DATASET) $(DEMO_CUTOFFS)
	$(BIN)/community-ml train product-recs --dataset $(DEMO_DATASET) $(DEMO_TUNING)
	$(BIN)/community-ml train content-recs --dataset $(DEMO_DATASET) $(DEMO_TUNING)
	$(BIN)/community-ml campaign report --dataset $(DEMO_DATASET) --campaign coupon --horizon-days 30
	$(BIN)/community-ml train uplift --dataset $(DEMO_DATASET) --campaign coupon --horizon-days 30
	$(BIN)/community-ml score --dataset $(DEMO_DATASET) --out "$(COMMUNITY_ML_HOME)/scores/$(DEMO_DATASET).parquet"
	$(BIN)/community-ml profile --dataset $(DEMO_DATASET) --out "$(COMMUNITY_ML_HOME)/scores/$(DEMO_DATASET)-profiles.parquet"
	$(BIN)/community-ml winback --dataset $(DEMO_DATASET) --by uplift \
		--out "$(COMMUNITY_ML_HOME)/scores/$(DEMO_DATASET)-winback.parquet"
	$(BIN)/community-ml recommend --dataset $(DEMO_DATASET) --kind content-recs \
		--out "$(COMMUNITY_ML_HOME)/scores/$(DEMO_DATASET)-content.parquet"
	@echo "A post published after training (imported now, no retrain), in M000001's list of what is new:"
	@printf 'content_id,content_type,topic,title,author_id,tags,published_at\nC-DEMO-NEW,knowledge,beauty,How to choose a serum,A010,beauty|knowledge|organic,%s\n' \
		"$$(date -u +%Y-%m-%dT%H:%M:%S)" >"$(COMMUNITY_ML_HOME)/demo-new-post.csv"
	@printf 'member_id\nM000001\n' >"$(COMMUNITY_ML_HOME)/demo-members.csv"
	$(BIN)/community-ml data import --dataset $(DEMO_DATASET) --table contents --input "$(COMMUNITY_ML_HOME)/demo-new-post.csv"
	$(BIN)/community-ml recommend --dataset $(DEMO_DATASET) --kind content-recs --k 3 \
		--members "$(COMMUNITY_ML_HOME)/demo-members.csv" --published-since "$$(date -u +%Y-%m-%d)" \
		--out "$(COMMUNITY_ML_HOME)/scores/$(DEMO_DATASET)-new-content.csv"
	@cat "$(COMMUNITY_ML_HOME)/scores/$(DEMO_DATASET)-new-content.csv"
	$(BIN)/community-ml monitor report --dataset $(DEMO_DATASET)
	@for day in 2026-01-01 2026-02-01 2026-03-01; do \
		$(BIN)/community-ml health --dataset $(DEMO_DATASET) --as-of $$day >/dev/null || true; done
	-$(BIN)/community-ml health --dataset $(DEMO_DATASET) --by group
	@echo "Monitoring: open $(COMMUNITY_ML_HOME)/reports/index.html in a browser"
	@echo "The ops console (health and drift over time): http://127.0.0.1:$(OPS_PORT) (community-ml ops)"
	@mkdir -p "$(COMMUNITY_ML_HOME)/logs"; $(BIN)/community-ml ops --port $(OPS_PORT) >"$(COMMUNITY_ML_HOME)/logs/ops.log" 2>&1 &
	@echo ""
	@echo "Serving the API on http://127.0.0.1:$(DEMO_PORT) (Ctrl-C stops it). Try, from another terminal:"
	@echo "  curl -s -X POST localhost:$(DEMO_PORT)/churn -H 'content-type: application/json' -d '{\"member_ids\": [\"M000001\", \"M000002\"]}'"
	@echo "  curl -s -X POST localhost:$(DEMO_PORT)/recommend_products -H 'content-type: application/json' -d '{\"member_ids\": [\"M000001\"], \"k\": 5}'"
	@echo "  curl -s -X POST localhost:$(DEMO_PORT)/recommend_content -H 'content-type: application/json' -d '{\"member_ids\": [\"M000001\"], \"k\": 5}'"
	@echo "  curl -s -X POST localhost:$(DEMO_PORT)/events -H 'content-type: application/json' -d '{\"orders\": [{\"member_id\": \"M000001\", \"ts\": \"$$(date -u +%Y-%m-%dT%H:%M:%S)\", \"amount\": 42.5}]}'"
	@echo "  (then /churn for M000001 again: fresh, recency_days 0)"
	@echo "  curl -s -X POST localhost:$(DEMO_PORT)/profile -H 'content-type: application/json' -d '{\"member_ids\": [\"M000002\"]}'"
	@echo "  curl -s -X POST localhost:$(DEMO_PORT)/items -H 'content-type: application/json' -d '{\"contents\": [{\"content_id\": \"C-MY-POST\", \"content_type\": \"scene\", \"topic\": \"snacks\", \"tags\": [\"snacks\"], \"published_at\": \"'$$(date -u +%Y-%m-%dT%H:%M:%S)'\"}]}'"
	@echo "  curl -s -X POST localhost:$(DEMO_PORT)/recommend_content -H 'content-type: application/json' -d '{\"member_ids\": [\"M000001\"], \"k\": 5, \"published_since\": \"'$$(date -u +%Y-%m-%d)'\"}'"
	@echo "  curl -s -X POST localhost:$(DEMO_PORT)/metadata -H 'content-type: application/json' -d '{}'"
	@echo "  curl -s localhost:$(DEMO_PORT)/docs.json   # the OpenAPI description"
	$(BIN)/community-ml serve --dataset $(DEMO_DATASET) --port $(DEMO_PORT)

## test: run every test, slow end-to-end ones included (on two workers; tests sharing a trained community stay together)
.PHONY: test
test: setup-spark browser redis
	$(BIN)/pytest -n 2 --dist loadgroup --no-loadscope-reorder -m "not soak"

## soak: the several-machine runs: Spark on a standalone cluster, an MLflow server on PostgreSQL, two replicas under load (a few minutes)
.PHONY: soak
soak: setup-spark redis postgres
	$(BIN)/pytest -m soak
	$(BIN)/pytest --spark-cluster tests/features/test_spark.py
	$(BIN)/python experiments/soak_replicas.py

# Spark 4 runs on Java 17 or 21: kept when there is one (on PATH or under /usr/lib/jvm), else Debian's OpenJDK 17.
.PHONY: java
java:
	@ls -d /usr/lib/jvm/*-17-* /usr/lib/jvm/*-21-* >/dev/null 2>&1 \
		|| java -version 2>&1 | grep -qE 'version "(17|21)' || { \
		echo "installing OpenJDK 17 for the Spark engine ..."; \
		$(SUDO) apt-get install -y -q --no-install-recommends openjdk-17-jre-headless >/dev/null 2>&1 \
		|| { $(SUDO) apt-get update -q >/dev/null 2>&1 \
			&& $(SUDO) apt-get install -y -q --no-install-recommends openjdk-17-jre-headless >/dev/null 2>&1; } \
		|| echo "warning: could not install Java 17; the Spark tests will say so and skip"; }

# Chromium (Debian's package) renders the monitoring pages and the ops console in tests; installed once, when missing.
.PHONY: browser
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing chromium for the report rendering test ..."; \
		$(SUDO) apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1 \
		|| { $(SUDO) apt-get update -q >/dev/null 2>&1 \
			&& $(SUDO) apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1; } \
		|| echo "warning: could not install chromium; the rendering test will say so and skip"; }

# Redis (Debian's package) backs the online store of several workers in a test; the test starts its own server.
.PHONY: redis
redis:
	@command -v redis-server >/dev/null 2>&1 || { \
		echo "installing redis-server for the online store test ..."; \
		$(SUDO) apt-get install -y -q --no-install-recommends redis-server >/dev/null 2>&1 \
		|| { $(SUDO) apt-get update -q >/dev/null 2>&1 \
			&& $(SUDO) apt-get install -y -q --no-install-recommends redis-server >/dev/null 2>&1; } \
		|| echo "warning: could not install redis-server; the Redis test will say so and skip"; }

# PostgreSQL (Debian's package) is the MLflow server's database in `make soak`'s tests; each test starts its own.
.PHONY: postgres
postgres:
	@ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || { \
		echo "installing postgresql for the MLflow server test ..."; \
		$(SUDO) apt-get install -y -q --no-install-recommends postgresql >/dev/null 2>&1 \
		|| { $(SUDO) apt-get update -q >/dev/null 2>&1 \
			&& $(SUDO) apt-get install -y -q --no-install-recommends postgresql >/dev/null 2>&1; } \
		|| echo "warning: could not install postgresql; the MLflow server test will say so and skip"; }

# wrk (Debian's package) loads the service in the serving benchmark; installed once, when missing.
.PHONY: wrk
wrk:
	@command -v wrk >/dev/null 2>&1 || { \
		echo "installing wrk for the serving benchmark ..."; \
		$(SUDO) apt-get install -y -q --no-install-recommends wrk >/dev/null 2>&1 \
		|| { $(SUDO) apt-get update -q >/dev/null 2>&1 \
			&& $(SUDO) apt-get install -y -q --no-install-recommends wrk >/dev/null 2>&1; } \
		|| { echo "error: could not install wrk, which the serving benchmark needs"; exit 1; }; }

## bench: run the benchmarks and write their result tables to experiments/results/
.PHONY: bench
bench: setup-spark wrk redis
	$(BIN)/python experiments/bench_import.py --retail-csv $(RETAIL_CSV)
	$(BIN)/python experiments/bench_features.py --retail-csv $(RETAIL_CSV)
	$(BIN)/python experiments/bench_spark.py --sizes 1,10
	$(BIN)/python experiments/bench_uplift.py
	$(BIN)/python experiments/bench_alerts.py --seeds $(BENCH_ALERT_SEEDS)
	$(BIN)/python experiments/bench_new_items.py --retail-csv $(RETAIL_CSV)
	$(BIN)/python experiments/bench_profile.py --retail-csv $(RETAIL_CSV) --big-home .community-ml-bench/m500k
	$(BIN)/python experiments/churn_value.py --retail-csv $(RETAIL_CSV) --cdnow $(CDNOW)
	$(BIN)/python experiments/recs_online_retail.py --retail-csv $(RETAIL_CSV)
	$(BIN)/python experiments/bench_serving.py
	$(BIN)/python experiments/bench_outreach.py --before 9d938c7
	$(BIN)/python experiments/bench_events.py
	$(BIN)/python experiments/bench_plan.py
	$(BIN)/python experiments/bench_health.py --before c068850
	$(BIN)/python experiments/bench_online.py --sizes $(BENCH_ONLINE_SIZES)
	$(BIN)/python experiments/soak_serving.py --minutes 5

## lint: ruff's checks and formatting
.PHONY: lint
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## format: let ruff fix what it can and format the code
.PHONY: format
format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## clean: remove the state folder (datasets, MLflow, reports) and caches
.PHONY: clean
clean:
	rm -rf "$(COMMUNITY_ML_HOME)" .pytest_cache .ruff_cache
