#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::nfs3_args(nfs_proto::v3::proc3::READDIRPLUS, data));
