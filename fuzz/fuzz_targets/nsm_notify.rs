#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::nsm_args(nfs_proto::nlm::smproc::NOTIFY, data));
