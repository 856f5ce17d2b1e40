# A training data set, read-only for every client and squashed to nobody, served through a
# mount target with its own read rate so epochs cannot starve checkpoint writes elsewhere.
terraform {
  required_providers {
    sluice = {
      source = "sluice.local/sluice/sluice"
    }
  }
}

provider "sluice" {}

variable "listen" {
  type    = list(string)
  default = ["10.0.0.6:2049"]
}

resource "sluice_export" "datasets" {
  path = "/datasets"
  client {
    match  = "*"
    access = "ro"
    squash = "all"
  }
}

resource "sluice_mount_target" "datasets" {
  name    = "datasets"
  listen  = var.listen
  exports = [sluice_export.datasets.path]
  rates {
    read  = "5GB/s"
    write = "100MB/s"
    burst = "256MiB"
  }
}

data "sluice_cluster" "this" {}

output "leader" {
  value = data.sluice_cluster.this.leader
}
