# Bake one fleetscale.split tier image (proxy, web, app or database) with the
# same roles the Docker lab proves: Packer's ansible provisioner runs
# playbooks/bake.yml in its `bake_provider=none` mode, which applies the tier
# role's install part to the hosts of inventory group `bake` and nothing else.
#
#   packer validate -var tier=web -var release=1.0.0 packer/fleetscale-tier.pkr.hcl
#   packer build -only=amazon-ebs.debian -var tier=web -var release=1.0.0 packer/fleetscale-tier.pkr.hcl
#
# Written for and checked with the HCL2 of Packer 1.6.6 (Debian 12's package),
# where the amazon-ebs and docker builders and the ansible provisioner are built
# in. Packer >= 1.7 needs the plugins declared and installed: see
# docs/image-pipeline.md. No secrets or addresses go into the image; the roles'
# converge step configures the node later.

variable "tier" {
  type        = string
  description = "The tier to bake: proxy, web, app or database."

  validation {
    condition     = contains(["proxy", "web", "app", "database"], var.tier)
    error_message = "The tier variable must be one of proxy, web, app, database."
  }
}

variable "release" {
  type        = string
  description = "Release string in the image and AMI names and tags, e.g. 1.0.0."

  # Packer 1.6.6 has no regex function: trim() with the allowed characters as its
  # cut set leaves nothing only if every character is allowed. The set is what
  # both a Docker tag and an AMI name accept.
  validation {
    condition = (
      length(var.release) >= 1 && length(var.release) <= 64 &&
      trim(var.release, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == "" &&
      ! contains([".", "-"], substr(var.release, 0, 1))
    )
    error_message = "The release variable must be 1 to 64 letters, digits, '.', '_' or '-', not starting with '.' or '-'."
  }
}

variable "region" {
  type        = string
  description = "AWS region to build the AMI in."
  default     = "eu-central-1"
}

variable "source_ami" {
  type        = string
  description = "Pin the base AMI by id; empty selects the newest official Debian 12 AMI by filter."
  default     = ""
}

variable "instance_type" {
  type        = string
  description = "EC2 instance type of the temporary build instance."
  default     = "t3.small"
}

variable "ssh_username" {
  type        = string
  description = "Login user of the base AMI (admin on Debian's AMIs)."
  default     = "admin"
}

variable "ansible_collections_path" {
  type        = string
  description = "ANSIBLE_COLLECTIONS_PATH for Ansible; empty: the checkout's .build/collections, then the defaults."
  default     = ""
}

locals {
  # Unique per build: AMI names must be unique within an account and region.
  stamp = formatdate("YYYYMMDDhhmmss", timestamp())

  # fleetscale.split must resolve as a collection: installed
  # (ansible-galaxy collection install fleetscale-split-*.tar.gz puts it in
  # ~/.ansible/collections) or, in a checkout, linked by `make collection` as
  # .build/collections/ansible_collections/fleetscale/split.
  collections_path = var.ansible_collections_path != "" ? var.ansible_collections_path : join(":", [
    "${abspath(path.root)}/../.build/collections",
    "~/.ansible/collections",
    "/usr/share/ansible/collections",
  ])

  # The bake playbook's install-only mode: it neither creates nor commits
  # anything itself, Packer owns the machine. No --become: the play that
  # installs has `become: true` (sudo from the AMI's login user; as root on the
  # docker source).
  ansible_arguments = [
    "-e", "bake_provider=none",
    "-e", "bake_tier=${var.tier}",
  ]
  ansible_env_vars = [
    "ANSIBLE_COLLECTIONS_PATH=${local.collections_path}",
    "ANSIBLE_NOCOLOR=True",
  ]
  # The end of both inventory lines: the host variable bake.yml reads, and the
  # interpreter both Debian 12 bases have.
  bake_host_vars = "ansible_python_interpreter=/usr/bin/python3 bake_tier=${var.tier}"
}

# Cloud: a temporary instance from Debian's own Debian 12 AMI, snapshotted as
# fleetscale-<tier>-<release>-<stamp>.
source "amazon-ebs" "debian" {
  region          = var.region
  instance_type   = var.instance_type
  ssh_username    = var.ssh_username
  ami_name        = "fleetscale-${var.tier}-${var.release}-${local.stamp}"
  ami_description = "fleetscale.split ${var.tier} tier ${var.release}: packages installed, not configured"

  source_ami = var.source_ami
  # Used only when no source_ami is pinned. 136693071363 is Debian's AWS account.
  dynamic "source_ami_filter" {
    for_each = var.source_ami == "" ? ["debian-12"] : []
    content {
      filters = {
        name                = "debian-12-amd64-*"
        architecture        = "x86_64"
        virtualization-type = "hvm"
        root-device-type    = "ebs"
      }
      owners      = ["136693071363"]
      most_recent = true
    }
  }

  tags = {
    Name                   = "fleetscale-${var.tier}-${var.release}"
    "fleetscale:tier"      = var.tier
    "fleetscale:release"   = var.release
    "fleetscale:base_ami"  = "{{ .SourceAMI }}"
    "fleetscale:base_name" = "{{ .SourceAMIName }}"
  }
  snapshot_tags = {
    "fleetscale:tier"    = var.tier
    "fleetscale:release" = var.release
  }
  # The build instance is tagged too, so a leftover one is easy to find.
  run_tags = {
    Name                 = "packer-fleetscale-${var.tier}-${var.release}"
    "fleetscale:tier"    = var.tier
    "fleetscale:release" = var.release
  }
}

# Local check of the same path: the lab's node image (no pull), committed and
# tagged fleetscale/packer-<tier>:<release>. Systemd runs as PID 1 as on a
# real node, without --privileged: the capability, cgroup mount and tmpfs the
# molecule scenarios give their nodes, as run_command arguments (they replace
# Packer's default run_command, a shell, entirely). Packer commits the running
# container (docker commit pauses it); the lab's own bake stops systemd first.
source "docker" "lab" {
  image  = "fleetscale/node:bookworm"
  pull   = false
  commit = true
  run_command = [
    "-d",
    "--cap-add", "SYS_ADMIN",
    "--cgroupns", "host",
    "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs", "/run",
    "--tmpfs", "/run/lock",
    "{{.Image}}",
    "/lib/systemd/systemd",
  ]
  changes = [
    "LABEL org.fleetscale.tier=${var.tier} org.fleetscale.release=${var.release}",
    "CMD [\"/lib/systemd/systemd\"]",
  ]
}

build {
  sources = ["source.amazon-ebs.debian", "source.docker.lab"]

  # AMI: Ansible connects straight to the instance over SSH with Packer's
  # temporary key and the login user (use_proxy = false; 1.6.6 supports this for
  # SSH and WinRM communicators only).
  provisioner "ansible" {
    only             = ["amazon-ebs.debian"]
    playbook_file    = "${path.root}/../playbooks/bake.yml"
    groups           = ["bake"]
    host_alias       = "bake-${var.tier}"
    use_proxy        = false
    extra_arguments  = local.ansible_arguments
    ansible_env_vars = local.ansible_env_vars
    # Packer's default line plus local.bake_host_vars.
    inventory_file_template = join(" ", [
      "{{ .HostAlias }}",
      "ansible_host={{ .Host }}",
      "ansible_user={{ .User }}",
      "ansible_port={{ .Port }}",
      "${local.bake_host_vars}\n",
    ])
  }

  # Docker: Packer 1.6.6 ignores use_proxy = false for its docker communicator
  # (it warns and falls back to its local SSH proxy), so the inventory line
  # sends Ansible over community.docker.docker (docker exec into the build
  # container, {{ .ID }}) as the lab does; the proxy Packer starts stays unused.
  provisioner "ansible" {
    only             = ["docker.lab"]
    playbook_file    = "${path.root}/../playbooks/bake.yml"
    groups           = ["bake"]
    host_alias       = "bake-${var.tier}"
    extra_arguments  = local.ansible_arguments
    ansible_env_vars = local.ansible_env_vars
    inventory_file_template = join(" ", [
      "{{ .HostAlias }}",
      "ansible_connection=community.docker.docker",
      "ansible_host={{ .ID }}",
      "ansible_user=root",
      "${local.bake_host_vars}\n",
    ])
  }

  # Not fleetscale/<tier>, the repository of the lab's own bake
  # (`ansible-playbook playbooks/bake.yml`), whose tags name content releases.
  post-processor "docker-tag" {
    only       = ["docker.lab"]
    repository = "fleetscale/packer-${var.tier}"
    tags       = [var.release]
  }
}
