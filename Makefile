# fleetscale.split: the two commands an operator needs are `make lab` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
# Molecule and ansible-test must find the collection under ansible_collections/fleetscale/split.
COLLECTIONS := $(CURDIR)/.build/collections
export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)
SANITY_ROOT := .build/sanity/ansible_collections/fleetscale/split
# ansible-test fetches its pip bootstrap from a host this machine cannot reach.
GET_PIP_CACHE := $(HOME)/.ansible/test/cache/get_pip_24_2.py
MOLECULE_SCENARIOS ?= default

.PHONY: help venv collection test lint yamllint ansible-lint ruff sanity unit molecule docker node-image \
	lab lab-down bench readme clean

help:
	@echo "make test      lint, ansible-test sanity, unit tests and every molecule scenario"
	@echo "make lab       build the node image, bring up the Docker lab and run the main job"
	@echo "make lab-down  remove every container, network and volume of the lab"
	@echo "make bench     run the benchmarks under bench/ and print their figures"

$(VENV)/.installed: requirements.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	@touch $@

venv: $(VENV)/.installed

collection: venv
	@mkdir -p $(COLLECTIONS)/ansible_collections/fleetscale
	@ln -sfn ../../../.. $(COLLECTIONS)/ansible_collections/fleetscale/split

test: lint sanity unit molecule

lint: yamllint ansible-lint ruff

yamllint: venv
	yamllint -s .

ansible-lint: collection
	ansible-lint --profile production

ruff: venv
	ruff check .

# ansible-test wants the collection at .../ansible_collections/fleetscale/split and in its own
# git tree: copy what git would commit into one.
sanity: collection
	@install -D -m 0644 tools/ansible-test/get_pip_offline.py $(GET_PIP_CACHE)
	@rm -rf .build/sanity && mkdir -p $(SANITY_ROOT)
	@git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t $(SANITY_ROOT)
	@cd $(SANITY_ROOT) && git init -q && git add -A
	cd $(SANITY_ROOT) && ansible-test sanity --local --python 3.11 --color no plugins/

unit: collection
	pytest -q tests/unit

docker:
	@bash .ci/docker-engine.sh

node-image: docker
	@bash tools/node-image/build.sh

molecule: collection node-image
	@for scenario in $(MOLECULE_SCENARIOS); do \
		echo "== molecule test -s $$scenario"; \
		molecule test -s $$scenario || exit 1; \
	done

bench: collection
	python bench/inventory_speed.py

clean:
	rm -rf .build .pytest_cache .ruff_cache .hypothesis

readme: collection
	python tools/readme/generate.py
