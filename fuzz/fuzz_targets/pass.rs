#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| gatemesh_fuzz_cases::run("pass", data));
