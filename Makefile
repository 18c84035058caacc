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

# torch first and pinned: a CPU wheel here; an unpinned torch would pull gigabytes of CUDA packages.
$(VENV)/.torch: | $(PY)
	$(PY) -m pip install -q $(TORCH)
	touch $@

$(STAMP): pyproject.toml $(VENV)/.torch
	$(PY) -m pip install -q -e ".[gui,medical,dev]"
	@if $(PY) -m pip list 2>/dev/null | grep -qi nvidia; then \
		echo "error: CUDA packages were installed into $(VENV); remove it and install $(TORCH) first"; exit 1; fi
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
