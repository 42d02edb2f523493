# Everything a newcomer needs: `make sample` sets up and builds the bundled sample,
# `make test` runs the whole suite (starting local Redis/PostgreSQL when they are down).
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: install sample test lint soak bench

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH) -e '.[all,test]'
	touch $@

install: $(VENV)/.installed

# The bundled sample embeds with random CLIP weights unless AUTODS_CLIP_PRETRAINED names
# real ones (an open_clip tag whose weights are cached, or a checkpoint path).
sample: install
	AUTODS_CLIP_PRETRAINED=$${AUTODS_CLIP_PRETRAINED:-random} $(VENV)/bin/autods build examples/sample/images examples/sample/texts.jsonl \
		--out sample-ds --lfs examples.sample_lfs

test: install
	bash scripts/ensure-services.sh
	$(PY) -m pytest

soak: install
	bash scripts/ensure-services.sh
	$(PY) -m pytest -m soak

lint: install
	$(VENV)/bin/ruff check .

bench: install
	$(PY) -m bench
