variable "name" {
  description = "The target's name: 1 to 63 letters, digits, '.', '_' or '-'"
  type        = string
}

variable "listen" {
  description = "Addresses clients mount the target at, ip:port"
  type        = list(string)
}

variable "tier" {
  description = "A named tier: 1g, 20g, 40g, 80g or unlimited (ignored when rates is set)"
  type        = string
  default     = "unlimited"
}

variable "rates" {
  description = "A custom tier instead of a named one: keys read, write, total (rates like \"40MB/s\") and burst (a size like \"16MiB\")"
  type        = map(string)
  default     = null
}

variable "exports" {
  description = "Paths of the exports to create and serve through the target"
  type        = list(string)
}

variable "clients" {
  description = "Who may mount the exports: *, CIDRs, addresses or host names"
  type        = list(string)
}

variable "read_only" {
  description = "Serve the exports read-only"
  type        = bool
  default     = false
}

variable "squash" {
  description = "root (default), all or none"
  type        = string
  default     = "root"
}
