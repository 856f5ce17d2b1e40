#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::nlm_args(nfs_proto::nlm::nlmproc::FREE_ALL, data));
