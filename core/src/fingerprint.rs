//! A stable 64-bit fingerprint (FNV-1a) of a command's content: the same on
//! every target, so a retried command can be told apart from a reused key.

/// FNV-1a over bytes, fed incrementally.
#[derive(Clone, Copy, Debug)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

const PRIME: u64 = 0x0000_0100_0000_01b3;

/// `PRIME^k` for k in 0..=8 (wrapping).
const PRIME_POW: [u64; 9] = {
    let mut t = [1u64; 9];
    let mut k = 1;
    while k < 9 {
        t[k] = t[k - 1].wrapping_mul(PRIME);
        k += 1;
    }
    t
};

impl Fnv {
    #[inline]
    pub fn bytes(mut self, b: &[u8]) -> Self {
        for &x in b {
            self.0 ^= u64::from(x);
            self.0 = self.0.wrapping_mul(PRIME);
        }
        self
    }
    #[inline]
    /// A string, length-prefixed so that ("ab","c") and ("a","bc") differ.
    pub fn str(self, s: &str) -> Self {
        self.u64(s.len() as u64).bytes(s.as_bytes())
    }
    /// The 8 little-endian bytes of `v`. A zero byte is a bare multiply by
    /// the prime, so the high zero bytes of a small value are one multiply by
    /// a power of it: the same result as feeding them one by one, faster.
    #[inline]
    pub fn u64(mut self, v: u64) -> Self {
        let significant = 8 - (v.leading_zeros() / 8) as usize;
        let b = v.to_le_bytes();
        for &x in &b[..significant] {
            self.0 ^= u64::from(x);
            self.0 = self.0.wrapping_mul(PRIME);
        }
        self.0 = self.0.wrapping_mul(PRIME_POW[8 - significant]);
        self
    }
    #[inline]
    pub fn i64(self, v: i64) -> Self {
        self.u64(v as u64)
    }
    pub fn finish(self) -> u64 {
        self.0
    }
}

/// Fingerprint of a byte string in one call.
pub fn fnv1a(b: &[u8]) -> u64 {
    Fnv::default().bytes(b).finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u64_matches_bytewise() {
        for v in [
            0u64,
            1,
            7,
            255,
            256,
            65_535,
            1 << 40,
            u64::MAX,
            0x0100_0000_0000_0000,
        ] {
            let slow = Fnv::default().bytes(&v.to_le_bytes()).finish();
            assert_eq!(Fnv::default().u64(v).finish(), slow, "{v}");
            let slow = Fnv::default().bytes(&(v as i64).to_le_bytes()).finish();
            assert_eq!(Fnv::default().i64(v as i64).finish(), slow, "{v}");
        }
    }
}
