//! The death decoder on any bytes: a line as the file reader or the Kafka
//! consumer hands it over. See `paywatch::decode::fuzz` for what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    paywatch::decode::fuzz::one_record(paywatch::decode::Kind::Death, data);
});
