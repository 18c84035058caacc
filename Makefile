# Two commands for a fresh machine: `make demo` (the main job on the shipped sample data) and `make test`.
# Both set up .venv themselves; running them again reinstalls nothing that is already there.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH := torch==2.13.0
STAMP := $(VENV)/.napari-skd-installed
XCB_PKGS := xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxcb-xinput0 libxcb-cursor0 libxkbcommon-x11-0

.PHONY: demo test lint format system-deps clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# torch first and pinned, so that nothing installed later pulls another build. Which build is decided here, once:
#   cuda  when `nvidia-smi` runs and lists a GPU: torch from the default index (PyPI's Linux wheel is the CUDA build,
#         with its nvidia-* packages);
#   cpu   otherwise: torch alone from PyTorch's CPU index (2.13.0+cpu on Linux, no nvidia-* packages), then its
#         plain dependencies from the default index (the +cpu torch satisfies the pin, so pip keeps it). --no-deps
#         keeps the CPU index to one look-up: a machine that has the CPU wheel locally (pip's find-links) but cannot
#         reach download.pytorch.org then only waits for pip's retries once, and pip still installs the local wheel.
# Force one with `make demo TORCH_VARIANT=cpu` (or cuda; also for `make test`). An existing $(VENV) keeps the torch
# it has: `make clean` first to switch.
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu
ifeq ($(origin TORCH_VARIANT),undefined)
TORCH_VARIANT := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo cuda || echo cpu)
endif
ifeq ($(filter cpu cuda,$(TORCH_VARIANT)),)
$(error TORCH_VARIANT must be cpu or cuda, not '$(TORCH_VARIANT)')
endif

$(VENV)/.torch: | $(PY)
ifeq ($(TORCH_VARIANT),cpu)
	$(PY) -m pip install -q --no-deps $(TORCH) --index-url $(TORCH_CPU_INDEX)
endif
	$(PY) -m pip install -q $(TORCH)
	touch $@

$(STAMP): pyproject.toml $(VENV)/.torch
	$(PY) -m pip install -q -e ".[gui,medical,dev]"
ifeq ($(TORCH_VARIANT),cpu)
	@if $(PY) -m pip list 2>/dev/null | grep -qi nvidia; then \
		echo "error: CUDA packages were installed into $(VENV) (TORCH_VARIANT=cpu): make clean, then make again"; \
		exit 1; fi
endif
	touch $@

# Xvfb and the xcb libraries that Qt needs for napari's GUI tests (installed only when missing).
system-deps:
	@if ! dpkg -s $(XCB_PKGS) >/dev/null 2>&1; then \
		echo "installing Xvfb and xcb libraries with apt-get"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq $(XCB_PKGS) >/dev/null; fi

CLI := $(VENV)/bin/napari-skd
demo: $(STAMP)
	$(CLI) train-teacher --config docs/examples/demo_teacher.yaml --overwrite
	$(CLI) distill --config docs/examples/demo_distill.yaml --overwrite
	$(CLI) convert sample_data/nuclei2d.tif runs/demo/nuclei2d.ome.zarr --chunks 256 --overwrite
	$(CLI) --quiet restore runs/demo/nuclei2d.ome.zarr --checkpoint runs/demo/student.pt \
		--output runs/demo/nuclei2d-student.ome.zarr --tile 256 --overwrite
	$(CLI) --quiet restore runs/demo/nuclei2d.ome.zarr --checkpoint runs/demo/teacher.pt \
		--output runs/demo/nuclei2d-teacher.ome.zarr --tile 256 --overwrite
	$(CLI) bench --image nuclei2d --teacher runs/demo/teacher.pt --students runs/demo/student.pt \
		--degradation poisson_gaussian --peak 20 --sigma 0.05 --size 256 --repeats 3

test: $(STAMP) system-deps
	OMP_NUM_THREADS=1 $(PY) -m pytest -q  # subprocesses single-threaded: no OpenMP busy-waiting on 2 cores

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache
