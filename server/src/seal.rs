//! Sealing with XChaCha20-Poly1305: a fresh random nonce, the ciphertext
//! with its tag, and associated data that binds what is sealed to where it
//! belongs, so that it opens nowhere else. The credential store seals with
//! the master key (`vault.rs`); another use of it with a key derived for
//! that use ([`Sealer`]).

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};

/// Seals and opens the messages of one use of a key (the master key's,
/// derived for it: [`crate::vault::MasterKey::sealer`]): what one use
/// seals, no other opens.
#[derive(Clone)]
pub struct Sealer {
    cipher: XChaCha20Poly1305,
    aad: &'static [u8],
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(…)")
    }
}

impl Sealer {
    /// Bytes sealing adds to a message.
    pub const OVERHEAD: usize = 24 + 16;

    /// Seals with `key` for `purpose` (the associated data of all it seals).
    pub fn new(key: [u8; 32], purpose: &'static str) -> Self {
        Self {
            cipher: XChaCha20Poly1305::new(&key.into()),
            aad: purpose.as_bytes(),
        }
    }

    /// The nonce and the ciphertext, with its tag.
    pub fn seal(&self, plaintext: &[u8]) -> anyhow::Result<Vec<u8>> {
        let (nonce, ciphertext) = seal(&self.cipher, plaintext, self.aad)?;
        Ok([nonce, ciphertext].concat())
    }

    /// What [`Self::seal`] sealed, or nothing for what it did not.
    pub fn open(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        (sealed.len() > 24)
            .then(|| open(&self.cipher, &sealed[..24], &sealed[24..], self.aad))
            .flatten()
    }
}

/// Seals `plaintext`: a fresh random nonce, and the ciphertext with its tag.
pub fn seal(
    cipher: &XChaCha20Poly1305,
    plaintext: &[u8],
    aad: &[u8],
) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let nonce: [u8; 24] = rand::random();
    let ciphertext = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| anyhow::anyhow!("sealing failed"))?;
    Ok((nonce.to_vec(), ciphertext))
}

/// What [`seal`] sealed with `nonce` and `aad`, or nothing.
pub fn open(
    cipher: &XChaCha20Poly1305,
    nonce: &[u8],
    ciphertext: &[u8],
    aad: &[u8],
) -> Option<Vec<u8>> {
    (nonce.len() == 24)
        .then(|| {
            cipher
                .decrypt(
                    XNonce::from_slice(nonce),
                    Payload {
                        msg: ciphertext,
                        aad,
                    },
                )
                .ok()
        })
        .flatten()
}
