# A mount target and the exports it serves, in one call:
#
#   module "checkpoints" {
#     source  = "../../modules/mount-target"   # or a git URL
#     name    = "checkpoints"
#     listen  = ["10.0.0.5:2049"]
#     tier    = "80g"
#     exports = ["/checkpoints"]
#     clients = ["10.0.0.0/8"]
#   }
#
# Checked offline by tests/e2e/terraform.sh (validate, apply, plan, destroy).
terraform {
  required_version = ">= 1.0.0"
  required_providers {
    sluice = {
      source = "sluice.local/sluice/sluice"
    }
  }
}

resource "sluice_export" "this" {
  for_each = toset(var.exports)
  path     = each.key

  dynamic "client" {
    for_each = var.clients
    content {
      match  = client.value
      access = var.read_only ? "ro" : "rw"
      squash = var.squash
    }
  }
}

resource "sluice_mount_target" "this" {
  name           = var.name
  listen         = var.listen
  exports        = [for p in var.exports : sluice_export.this[p].path]
  bandwidth_tier = var.rates == null ? var.tier : null

  dynamic "rates" {
    for_each = var.rates == null ? [] : [var.rates]
    content {
      read  = lookup(rates.value, "read", null)
      write = lookup(rates.value, "write", null)
      total = lookup(rates.value, "total", null)
      burst = lookup(rates.value, "burst", null)
    }
  }
}
