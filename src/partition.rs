//! Which partition owns a key: Kafka's default partitioner for keyed
//! records (the Java client's `murmur2`, librdkafka's `murmur2_random`).
//!
//! The partitioned engine (#16) keeps a person's state with the input
//! partition of that person, so it must put a key where the producers put
//! it. The contract names the keys (by person, decisions by case) but not
//! the partitioner; the Java clients' default is the one a finance
//! integration team is most likely to use, and `paywatch produce` sets
//! librdkafka to the same (docs/contract.md, reading 37). The engine's
//! lanes inside one process use it too, so lane `i` of `n` holds exactly
//! the persons of input partition `i` of `n`.

/// Kafka's `Utils.murmur2`: MurmurHash2, 32 bits, seed `0x9747b28c`, on
/// the key's bytes.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        if rest.len() >= 3 {
            h ^= u32::from(rest[2]) << 16;
        }
        if rest.len() >= 2 {
            h ^= u32::from(rest[1]) << 8;
        }
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition of `n` that Kafka's default partitioner gives `key`
/// (`toPositive(murmur2(key)) % n`). `n` of 0 is taken as 1.
pub fn of(key: &[u8], n: u32) -> u32 {
    (murmur2(key) as u32 & 0x7fff_ffff) % n.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka's own vectors (`UtilsTest.testMurmur2`), which pin the byte
    /// order, the tail and the final mix.
    #[test]
    fn murmur2_matches_kafka() {
        let cases: [(&str, i32); 6] = [
            ("21", -973932308),
            ("foobar", -790332482),
            ("a-little-bit-long-string", -985981536),
            ("a-little-bit-longer-string", -1486304829),
            ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
            ("abc", 479470107),
        ];
        for (key, want) in cases {
            assert_eq!(murmur2(key.as_bytes()), want, "{key}");
        }
    }

    #[test]
    fn partitions_are_the_positive_hash_modulo_the_count() {
        // -973932308 & 0x7fffffff = 1173551340.
        assert_eq!(of(b"21", 6), 1173551340 % 6);
        assert_eq!(of(b"foobar", 1), 0);
        assert_eq!(of(b"foobar", 0), 0);
        for n in 1..8 {
            assert!(of(b"abc", n) < n);
        }
    }

    /// Every tail length (0 to 3 bytes after the last whole word) reaches
    /// its own branch: the hashes of a key's prefixes all differ.
    #[test]
    fn every_tail_length_counts() {
        let key = b"110101199001011234";
        let hashes: std::collections::HashSet<i32> = (0..=8).map(|n| murmur2(&key[..n])).collect();
        assert_eq!(hashes.len(), 9);
    }
}
