#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::mount_args(nfs_proto::mount::MOUNTPROC3_MNT, data));
