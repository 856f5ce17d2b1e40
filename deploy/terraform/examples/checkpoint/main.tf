# A checkpoint directory for a GPU cluster: one export, served through a mount target on the
# 80 Gbit/s tier. Clients: mount -t nfs -o vers=4.1,nconnect=16 10.0.0.5:/checkpoints /ckpt
terraform {
  required_providers {
    sluice = {
      source = "sluice.local/sluice/sluice"
    }
  }
}

# The admin API's URL and token come from SLUICE_API and SLUICE_TOKEN (the content of the
# server's <data_dir>/admin.token), or set endpoint / token_file / ca_file here.
provider "sluice" {}

variable "listen" {
  description = "Addresses clients mount the target at"
  type        = list(string)
  default     = ["10.0.0.5:2049"]
}

variable "clients" {
  description = "Who may mount it: *, a CIDR, an address or a host name"
  type        = string
  default     = "10.0.0.0/8"
}

variable "tier" {
  description = "1g, 20g, 40g, 80g or unlimited; changing it keeps clients connected"
  type        = string
  default     = "80g"
}

resource "sluice_export" "checkpoints" {
  path = "/checkpoints"
  client {
    match = var.clients
  }
}

resource "sluice_mount_target" "checkpoints" {
  name           = "checkpoints"
  listen         = var.listen
  exports        = [sluice_export.checkpoints.path]
  bandwidth_tier = var.tier
}

output "mount" {
  # host:port -> host:/path (an IPv6 host keeps its brackets)
  value = "${regex("^(.*):[0-9]+$", sluice_mount_target.checkpoints.listen[0])[0]}:${sluice_export.checkpoints.path}"
}
