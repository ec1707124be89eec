//! Randomness from the operating system (getrandom(2)).

/// Fills `buf` with random bytes.
pub fn fill(buf: &mut [u8]) {
    // The kernel's generator only fails before it is seeded at boot, long
    // before a daemon runs; there is nothing sensible to do without it.
    getrandom::fill(buf).expect("the operating system provides randomness");
}

pub fn u64() -> u64 {
    let mut b = [0u8; 8];
    fill(&mut b);
    u64::from_ne_bytes(b)
}
