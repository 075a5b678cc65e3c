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
# The C++ host is built (without TensorRT) and its ctest runs first; pytest then includes its ctypes test.
test: $(STAMP)
	$(MAKE) cpp && cd $(CPP_BUILD) && ctest --output-on-failure
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

# The main job on embedded defaults: export the demo preset (small, trained: svsr/reference/demo/MODEL_CARD.md),
# upscale the sample clip with it, and put it next to the bicubic upscale (compare.mp4, labelled).
demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/svsr-export --preset demo --out $(BUILD)/demo/model --onnx-only
	$(BIN)/python -m svsr.sample_clip $(BUILD)/demo/sample.mp4
	HF_HUB_OFFLINE=1 $(BIN)/svsr-run $(BUILD)/demo/sample.mp4 -o $(BUILD)/demo/sample_x4.mp4 --model $(BUILD)/demo/model --steps 25
	$(BIN)/python -m svsr.demo_compare $(BUILD)/demo/sample.mp4 $(BUILD)/demo/sample_x4.mp4 $(BUILD)/demo/compare.mp4
	@echo "demo output: $(BUILD)/demo/sample_x4.mp4, side by side with bicubic: $(BUILD)/demo/compare.mp4"

clean:
	rm -rf $(BUILD) $(VENV)

# The C++ host (cpp/README.md): configure + build in cpp/build (Release). Installs nlohmann-json3-dev
# when it is missing and we are root on Debian. CPP_CMAKE_ARGS passes options, e.g. TensorRT paths.
CPP_BUILD := cpp/build
CPP_JOBS ?= 2
.PHONY: cpp cpp-test

cpp:
	@missing=""; for pkg in nlohmann-json3-dev cmake g++; do \
	  command -v dpkg >/dev/null 2>&1 && ! dpkg -s $$pkg >/dev/null 2>&1 && missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ]; then \
	  echo "installing$$missing"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; }; \
	fi
	cmake -S cpp -B $(CPP_BUILD) -DCMAKE_BUILD_TYPE=Release $(CPP_CMAKE_ARGS)
	cmake --build $(CPP_BUILD) -j$(CPP_JOBS)

# ctest (C++ unit tests, goldens from the Python contracts), then the end-to-end pytest through the C ABI.
cpp-test: cpp $(STAMP)
	cd $(CPP_BUILD) && ctest --output-on-failure
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q tests/test_cpp_host.py
