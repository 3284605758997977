//! The CSV reader on any file: the first byte picks the record kind, the
//! rest is the file. See `paywatch::decode::fuzz` for what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    paywatch::decode::fuzz::csv_file(data);
});
