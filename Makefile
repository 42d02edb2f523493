# Everything a newcomer needs: `make sample` sets up and builds the bundled sample,
# `make test` runs the whole suite (starting local Redis/PostgreSQL when they are down).
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH := torch==2.14.1 torchvision==0.29.1
LS_VENV ?= .venv-ls
LABEL_STUDIO := label-studio==1.23.2
CORPUS := $(or $(AUTODS_CORPUS_DIR),$(HOME)/.cache/autods/corpora)/pang-lee-sentence-polarity.csv

.PHONY: install sample test lint soak bench bench-deps system-deps

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH) -e '.[all,test]'
	touch $@

install: $(VENV)/.installed $(LS_VENV)/.installed $(CORPUS)

# Label Studio, for the labelling loop and its tests, in its own virtualenv (its Django
# pins would fight ours). A database migrated once here lets each test server start in
# seconds instead of ~45 s.
$(LS_VENV)/.installed:
	python3 -m venv $(LS_VENV)
	$(LS_VENV)/bin/python -m pip install -q --upgrade pip
	$(LS_VENV)/bin/python -m pip install -q '$(LABEL_STUDIO)'
	rm -rf $(LS_VENV)/migrating
	env -i PATH="$$PATH" HOME="$(abspath $(LS_VENV))/migrating" LABEL_STUDIO_LATEST_VERSION_CHECK=false \
		LABEL_STUDIO_COLLECT_ANALYTICS=false LABEL_STUDIO_SENTRY_DSN= \
		$(LS_VENV)/bin/label-studio version --data-dir $(LS_VENV)/migrating > /dev/null
	mv $(LS_VENV)/migrating/label_studio.sqlite3 $(LS_VENV)/migrated.sqlite3
	rm -rf $(LS_VENV)/migrating
	touch $@

# The labelled movie-review corpus of the labelling benchmark and tests (bench/reviews.py).
$(CORPUS): $(VENV)/.installed
	$(PY) -m bench.reviews

# The bundled sample embeds with random CLIP weights unless AUTODS_CLIP_PRETRAINED names
# real ones (an open_clip tag whose weights are cached, or a checkpoint path).
sample: $(VENV)/.installed
	AUTODS_CLIP_PRETRAINED=$${AUTODS_CLIP_PRETRAINED:-random} $(VENV)/bin/autods build examples/sample/images examples/sample/texts.jsonl \
		--out sample-ds --lfs examples.sample_lfs

# Debian packages the tests drive: a headless browser for the HTML report, promtool for
# the alert rules.
system-deps:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null \
		&& command -v promtool >/dev/null || (apt-get update -qq \
		&& DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		chromium chromium-driver prometheus >/dev/null)

# Two processes, a test file each at a time (module fixtures are shared within a file);
# then, alone, the tests that restart a shared service.
test: install system-deps
	bash scripts/ensure-services.sh
	$(PY) -m pytest -n 2 --dist loadfile -m "not soak and not exclusive"
	$(PY) -m pytest -m exclusive

soak: install system-deps
	bash scripts/ensure-services.sh
	$(PY) -m pytest -m soak

lint: install
	$(VENV)/bin/ruff check .

# nginx serves the end-to-end benchmark's URLs, as img2dataset's users serve theirs.
bench-deps:
	@command -v nginx >/dev/null || (apt-get update -qq \
		&& DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		nginx >/dev/null)

bench: install bench-deps
	$(PY) -m bench
