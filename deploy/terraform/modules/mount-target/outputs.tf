output "name" {
  value = sluice_mount_target.this.name
}

output "mounts" {
  description = "host:path pairs for mount -t nfs, one per address and export"
  value = flatten([
    for a in sluice_mount_target.this.listen : [
      # host:port -> host (an IPv6 host keeps its brackets: [fd00::5]:/path)
      for p in sluice_mount_target.this.exports : "${regex("^(.*):[0-9]+$", a)[0]}:${p}"
    ]
  ])
}

output "export_ids" {
  description = "The id each export writes into file handles, by path"
  value       = { for p, e in sluice_export.this : p => e.export_id }
}
