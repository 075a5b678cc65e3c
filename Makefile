# Two commands for a newcomer: `make demo` and `make test`. Both make .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BUILD := build

.PHONY: demo test venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch/torchvision come from this machine's pip configuration (pinned in pyproject.toml)
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

# pytest exits 5 when it collected no test: that must fail CI, not pass it.
test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

# The main job on embedded defaults: export the tiny preset, upscale the sample clip with it.
demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/svsr-export --preset tiny --out $(BUILD)/demo/model --onnx-only
	$(BIN)/python -m svsr.sample_clip $(BUILD)/demo/sample.mp4
	HF_HUB_OFFLINE=1 $(BIN)/svsr-run $(BUILD)/demo/sample.mp4 -o $(BUILD)/demo/sample_x4.mp4 --model $(BUILD)/demo/model --steps 25
	@echo "demo output: $(BUILD)/demo/sample_x4.mp4"

clean:
	rm -rf $(BUILD) $(VENV)
