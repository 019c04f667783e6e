# fleetscale.split: the two commands an operator needs are `make lab` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
VENV_CACHE ?= $(HOME)/.cache/fleetscale-split
VENV_SHARED := $(VENV_CACHE)/venv-$(shell { cat requirements.txt; $(PYTHON) --version; } | sha256sum | cut -c1-16)
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
# Molecule and ansible-test must find the collection under ansible_collections/fleetscale/split.
COLLECTIONS := $(CURDIR)/.build/collections
export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)
SANITY_ROOT := .build/sanity/ansible_collections/fleetscale/split
# ansible-test fetches its pip bootstrap from a host this machine cannot reach.
GET_PIP_CACHE := $(HOME)/.ansible/test/cache/get_pip_24_2.py
# The molecule scenarios, one after the other: one lane (tools/ci/molecule-lanes). Lanes separated
# by spaces run side by side (each scenario has its own names, network and ports), which only a
# machine with CPUs to spare can afford: on 2 CPUs the load tests then fail. One scenario alone:
# `make molecule MOLECULE_LANES=failover`.
MOLECULE_LANES ?= default,failover,rolling
# The lab: a fleet spec, or AGENTS=N for the same spec sized for N agents (written beside it,
# so that its group_vars apply, as *.local.fleet.yml, which git ignores).
LAB_SPEC ?= inventories/lab/lab.fleet.yml
AGENTS ?=
LAB_INVENTORY := $(if $(AGENTS),$(dir $(LAB_SPEC))lab-$(AGENTS).local.fleet.yml,$(LAB_SPEC))

# Seconds per stage of `make test`, printed at its end whether it passed or not.
STAGE_TIMES := $(CURDIR)/.build/stage-times.tsv
STAGE := $(CURDIR)/tools/ci/stage $(STAGE_TIMES)

.PHONY: help venv collection test lint yamllint ansible-lint ruff sanity unit packer molecule docker node-image \
	bake lab lab-spec lab-down bench readme clean

help:
	@echo "make test      lint, ansible-test sanity, unit tests and every molecule scenario"
	@echo "make lab       bake the tier images, bring up the Docker lab and run the main job"
	@echo "make bake      build the base node image and bake one image per tier (reused when up to date)"
	@echo "make lab-down  remove every container, network and volume of the lab"
	@echo "make bench     run the benchmarks under bench/ (the lab ones bring the lab up) and print their figures"

# The virtualenv is made once per requirements.txt and Python version, in the user's cache, and .venv
# links to it: a fresh clone (CI's) reuses it instead of installing everything again (about 100 s here).
# A half-made one (no .installed) is made again; flock keeps two checkouts from making it at once.
$(VENV)/.installed: requirements.txt
	@mkdir -p $(VENV_CACHE)
	@exec 9>$(VENV_SHARED).lock && flock 9 && \
	if [ ! -f $(VENV_SHARED)/.installed ]; then \
	  echo "making the virtualenv $(VENV_SHARED)"; \
	  rm -rf $(VENV_SHARED) && $(PYTHON) -m venv $(VENV_SHARED) && \
	  $(VENV_SHARED)/bin/python -m pip install --quiet --upgrade pip && \
	  $(VENV_SHARED)/bin/python -m pip install --quiet -r requirements.txt && \
	  touch $(VENV_SHARED)/.installed; \
	fi
	@if [ -e $(VENV) ] && [ ! -L $(VENV) ]; then rm -rf $(VENV); fi
	@ln -sfn $(VENV_SHARED) $(VENV)

venv: $(VENV)/.installed

collection: venv
	@mkdir -p $(COLLECTIONS)/ansible_collections/fleetscale
	@ln -sfn ../../../.. $(COLLECTIONS)/ansible_collections/fleetscale/split

test:
	@mkdir -p .build && : >$(STAGE_TIMES)
	@trap '$(CURDIR)/tools/ci/stage --report $(STAGE_TIMES)' EXIT; \
	  $(STAGE) "virtualenv" $(MAKE) --no-print-directory collection && \
	  $(STAGE) "lint" $(MAKE) --no-print-directory lint && \
	  $(STAGE) "sanity" $(MAKE) --no-print-directory sanity && \
	  $(STAGE) "unit" $(MAKE) --no-print-directory unit && \
	  $(STAGE) "docker and images" $(MAKE) --no-print-directory bake && \
	  $(MAKE) --no-print-directory molecule

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

unit: collection packer
	pytest -q -n auto tests/unit

# tests/unit/test_packer_template.py validates packer/fleetscale-tier.pkr.hcl with Debian's packer.
packer:
	@command -v packer >/dev/null || { apt-get -q update >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive apt-get -q -y install packer >/dev/null; } || \
	  { echo "make: Debian's packer package is needed to validate packer/fleetscale-tier.pkr.hcl" >&2; exit 2; }

docker:
	@bash .ci/docker-engine.sh

node-image: docker
	@bash tools/node-image/build.sh

# One image per tier (playbooks/bake.yml): lab and molecule nodes boot from them.
bake: collection node-image
	ansible-playbook playbooks/bake.yml

molecule: collection bake
	@tools/ci/molecule-lanes $(STAGE_TIMES) $(MOLECULE_LANES)

lab-spec: venv
ifneq ($(AGENTS),)
	@[[ "$(AGENTS)" =~ ^[1-9][0-9]*$$ ]] || { echo "make lab: AGENTS must be a whole number of agents, not '$(AGENTS)'" >&2; exit 2; }
	python -c 'import sys, yaml; spec = yaml.safe_load(open(sys.argv[1])); spec["agents"] = int(sys.argv[2]); \
	  yaml.safe_dump(spec, open(sys.argv[3], "w"), sort_keys=False)' $(LAB_SPEC) $(AGENTS) $(LAB_INVENTORY)
endif

# Up, deployed, loaded, verified, compared with the plan; the report lands in lab-output/.
lab: collection bake lab-spec
	ansible-playbook -i $(LAB_INVENTORY) playbooks/lab.yml -e lab_state=up
	ansible-playbook -i $(LAB_INVENTORY) playbooks/site.yml
	ansible-playbook -i $(LAB_INVENTORY) playbooks/lab_job.yml

# Every container and network that carries the lab label (the lab's and molecule's), and the
# spec's replacements record (playbooks/lab.yml).
lab-down: collection docker
	ansible-playbook -i $(LAB_SPEC) playbooks/lab.yml -e lab_state=down

# The lab benchmarks need the lab up and deployed: `make bench` brings it up first.
bench: collection bake
	@command -v wrk >/dev/null || apt-get install -y wrk || { echo "make bench: install wrk (Debian's package)" >&2; exit 2; }
	python bench/inventory_speed.py
	python bench/mysql_tuning.py
	python bench/mysql_tuning.py --disk-iops 3000
	python bench/auth_cost.py
	$(MAKE) lab
	-python bench/node_build.py
	python bench/checkin_throughput.py --profile 15
	python bench/rolling_replace.py

clean:
	rm -rf .build .pytest_cache .ruff_cache .hypothesis

readme: collection
	python tools/readme/generate.py
