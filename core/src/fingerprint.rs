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

impl Fnv {
    pub fn bytes(mut self, b: &[u8]) -> Self {
        for &x in b {
            self.0 ^= u64::from(x);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self
    }
    /// A string, length-prefixed so that ("ab","c") and ("a","bc") differ.
    pub fn str(self, s: &str) -> Self {
        self.u64(s.len() as u64).bytes(s.as_bytes())
    }
    pub fn u64(self, v: u64) -> Self {
        self.bytes(&v.to_le_bytes())
    }
    pub fn i64(self, v: i64) -> Self {
        self.bytes(&v.to_le_bytes())
    }
    pub fn finish(self) -> u64 {
        self.0
    }
}

/// Fingerprint of a byte string in one call.
pub fn fnv1a(b: &[u8]) -> u64 {
    Fnv::default().bytes(b).finish()
}
