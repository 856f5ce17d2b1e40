#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::v4_cb_compound_res(data));
