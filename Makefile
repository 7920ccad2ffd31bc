# One command sets up and runs the demo, one runs the tests (see README.md).
# Python 3.11: MXNet 1.9.1 needs numpy 1.23.5, which has no wheels for later Pythons.  The
# first of python3.11 and python3 that is 3.11, unless PYTHON=... says which.
SUPPORTED_PYTHON := 3.11
PYTHON_VERSION = $(shell $(1) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
ifeq ($(origin PYTHON),undefined)
PYTHON := $(firstword $(foreach p,python3.11 python3,\
	$(if $(filter $(SUPPORTED_PYTHON),$(call PYTHON_VERSION,$(p))),$(p))) python3)
endif
VENV ?= .venv
BIN := $(VENV)/bin
# A venv made by another Python (a `make setup` before PYTHON= was given), or whose Python
# no longer runs (its base interpreter removed), is made again.
VENV_VERSION := $(call PYTHON_VERSION,$(BIN)/python)
VENV_STALE := $(strip $(if $(wildcard $(VENV)/pyvenv.cfg),$(if $(VENV_VERSION),\
	$(filter-out $(SUPPORTED_PYTHON),$(VENV_VERSION)),one that no longer runs)))
DEMO := demo

PEERS_VENV ?= .venv-peers

.PHONY: setup setup-horovod setup-serving setup-netns setup-peers demo test bench bench-peers robustness robustness-serving clean FORCE

setup: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml constraints.txt $(if $(VENV_STALE),FORCE)
	+@version=$$($(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null); \
	if [ "$$version" != "$(SUPPORTED_PYTHON)" ]; then \
		echo "make: xception-mx needs Python $(SUPPORTED_PYTHON) (MXNet 1.9.1 needs numpy" \
			"1.23.5, which stops at 3.11); $(PYTHON) is $${version:-not found}: install" \
			"python3.11 or give its path, make PYTHON=/path/to/python3.11" >&2; exit 2; fi
	$(if $(VENV_STALE),rm -rf $(VENV)  # made by Python $(VENV_STALE): made again with $(PYTHON))
	$(PYTHON) -m venv $(VENV)
	@echo "make: installing the pinned packages into $(VENV): about 1.8 GB to download the" \
		"first time (MXNet, TensorFlow), several minutes" >&2
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[validate,test]'
	# Keras 2 (tf-keras) reads and writes Keras 2 files; --no-deps: it asks for the
	# full `tensorflow` wheel, which would overwrite tensorflow-cpu's files
	$(BIN)/python -m pip install -q --no-deps -c constraints.txt tf-keras==2.17.0
	touch $@

# Horovod built from source against the venv's MXNet, with Gloo and without MPI,
# TensorFlow or PyTorch (about 3 minutes; needs g++ and cmake).  Where the venv's MXNet is a
# CUDA build (mxnet-cu117...), Horovod's GPU operations are built too, on NCCL (which needs the
# CUDA toolkit and NCCL): without them Horovod sends GPU arrays down its CPU path.  A CUDA
# toolkit alone decides nothing (a CPU MXNet cannot use it); HOROVOD_GPU_OPERATIONS=NCCL
# (or empty) on the command line overrides.
MXNET_HAS_CUDA = $(BIN)/python -c "import mxnet.runtime as r; \
	print('NCCL' if r.Features().is_enabled('CUDA') else '')" 2>/dev/null
HOROVOD_GPU_OPERATIONS ?= $(shell $(MXNET_HAS_CUDA))
HOROVOD_FLAGS = HOROVOD_WITH_MXNET=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 \
	HOROVOD_WITHOUT_TENSORFLOW=1 HOROVOD_WITHOUT_PYTORCH=1 \
	$(if $(HOROVOD_GPU_OPERATIONS),HOROVOD_GPU_OPERATIONS=$(HOROVOD_GPU_OPERATIONS),)
setup-horovod: $(VENV)/.horovod

$(VENV)/.horovod: $(VENV)/.installed
	$(HOROVOD_FLAGS) $(BIN)/python -m pip install -q --no-build-isolation -c constraints.txt \
		-e '.[horovod]'
	touch $@

# Multi Model Server and model-archiver (xception-export --format mms, the serving tests), and
# the Java 17 MMS runs on: Debian's openjdk-17-jre-headless, installed with apt-get when there
# is no java and this runs as root, else asked for.  ONNX and ONNX Runtime (--format onnx).
# SageMaker's inference toolkits, whose handler service the tests run --format sagemaker's
# model in: --no-deps, as their server needs boto3, whose botocore wants an older
# python-dateutil than matplotlib's (their handler imports neither).
setup-serving: $(VENV)/.serving

$(VENV)/.serving: $(VENV)/.installed
	@command -v java >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		apt-get update -q && apt-get install -y -q openjdk-17-jre-headless; } || { \
		echo "make: Multi Model Server needs Java 17: install openjdk-17-jre-headless" \
			"(sudo apt-get install openjdk-17-jre-headless)" >&2; exit 2; }
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[serve]'
	$(BIN)/python -m pip install -q --no-deps -c constraints.txt sagemaker-inference==1.10.1 \
		sagemaker-mxnet-inference==1.5.5
	touch $@

# Debian's openssh-server and iproute2, for the hosts in network namespaces of the multi-host
# tests (scripts/netns_cluster.sh): installed with apt-get when this runs as root; elsewhere
# those tests are skipped, and this says how to run them.
setup-netns:
	@if [ "$$(id -u)" != 0 ]; then \
		echo "make: the multi-host tests (tests/multihost) need root; they will be skipped" \
			"(run make test as root, with openssh-server and iproute2, to run them)" >&2; \
	elif [ ! -x /usr/sbin/sshd ] || ! command -v ip >/dev/null; then \
		command -v apt-get >/dev/null || { echo "make: install openssh-server and iproute2" \
			"for the multi-host tests" >&2; exit 2; }; \
		apt-get update -q && apt-get install -y -q openssh-server iproute2; \
	fi

# Keras writes a seeded Xception weights file, keras2mxnet converts it, and
# xception-parity compares both frameworks on the sample photos and random inputs.
demo: setup
	$(BIN)/python scripts/make_keras_reference.py --seed 0 -o $(DEMO)/xception_seed0.h5
	$(BIN)/keras2mxnet $(DEMO)/xception_seed0.h5 -o $(DEMO)/xception --force
	$(BIN)/xception-parity --keras $(DEMO)/xception_seed0.h5 --mxnet $(DEMO)/xception \
		tests/data --random 4

test: setup setup-horovod setup-serving setup-netns
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=15

clean:
	rm -rf $(VENV) $(PEERS_VENV) $(DEMO)

# The runtimes users could pick instead (ONNX Runtime, OpenVINO + NNCF, tf2onnx), in a venv
# of their own: they need a newer numpy than MXNet 1.9.1's.  Pinned in bench/peers-constraints.txt.
setup-peers: $(PEERS_VENV)/.installed

$(PEERS_VENV)/.installed: bench/peers-constraints.txt
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install -q -c bench/peers-constraints.txt tensorflow-cpu \
		tf2onnx onnx onnxruntime openvino nncf sympy
	$(PEERS_VENV)/bin/python -m pip install -q --no-deps -c bench/peers-constraints.txt tf-keras
	touch $@

# Every benchmark, side by side with Keras/TF, ONNX Runtime and OpenVINO; rewrites BENCHMARKS.md.
bench: setup setup-peers
	$(BIN)/python bench/run.py

# The sections that run the peers (inference at each precision, per-layer profiles).
bench-peers: setup setup-peers
	$(BIN)/python bench/run.py 2 3 8

# Long fuzzing / kill / full-disk runs; rewrites ROBUSTNESS.md (but its serving section).
robustness: setup
	$(BIN)/python scripts/robustness.py

# Bad bodies and killed workers against a real Multi Model Server; rewrites ROBUSTNESS.md's
# serving section.
robustness-serving: setup setup-serving
	$(BIN)/python scripts/serving_faults.py

FORCE:
