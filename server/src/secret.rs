//! Random secrets and their stored form: Paddock keeps only the SHA-256 of
//! a secret it hands out (proxy tokens, API tokens), so a copy of the
//! database cannot be replayed.

use sha2::{Digest, Sha256};

/// 256 random bits, as 64 hex digits.
pub fn random_hex() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// The SHA-256 of `secret`, as hex: what the store keeps.
pub fn sha256_hex(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Compares two secrets in time that does not depend on where they differ.
pub fn same(a: &str, b: &str) -> bool {
    let (a, b) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}
