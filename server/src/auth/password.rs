//! Password hashes: argon2id with OWASP's parameters (19 MiB, 2 passes, one
//! lane), in the PHC string format so parameters can change later without
//! breaking stored hashes. Hashing is slow on purpose, so it runs on the
//! blocking pool.

use app::domain::AppError;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Hashes made or checked at once, server-wide: each holds 19 MiB and a
/// blocking thread, and anyone may ask for a sign-in.
const AT_ONCE: usize = 4;
/// How long one waits for its turn before it is refused (503).
const TURN_WAIT: Duration = Duration::from_secs(10);

/// Turns to hash, taken one at a time.
struct Turns(Arc<Semaphore>);

impl Turns {
    /// A turn, or why there is none after waiting `wait`. Owned, so that
    /// the hash's own thread holds it: a request dropped meanwhile (its
    /// client gone) does not give the turn back before the work ends.
    async fn take(&self, wait: Duration) -> Result<OwnedSemaphorePermit, AppError> {
        match tokio::time::timeout(wait, self.0.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(AppError::Unavailable(
                "Too many passwords are being checked at once; try again in a moment.".into(),
            )),
        }
    }
}

/// A turn to hash, server-wide.
async fn turn() -> Result<OwnedSemaphorePermit, AppError> {
    static TURNS: LazyLock<Turns> = LazyLock::new(|| Turns(Arc::new(Semaphore::new(AT_ONCE))));
    TURNS.take(TURN_WAIT).await
}

fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn hash_now(password: &str) -> Result<String, AppError> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(internal)?;
    Ok(argon2()
        .hash_password(password.as_bytes(), &salt)
        .map_err(internal)?
        .to_string())
}

fn internal(e: impl std::fmt::Display) -> AppError {
    tracing::error!("password hashing failed: {e}");
    AppError::Internal
}

/// The stored form of a new password.
pub async fn hash(password: String) -> Result<String, AppError> {
    let turn = turn().await?;
    tokio::task::spawn_blocking(move || {
        let _turn = turn;
        hash_now(&password)
    })
    .await
    .map_err(internal)?
}

/// Whether `password` matches `stored`. With no stored hash (an unknown
/// login), a hash is still checked, so the answer takes as long either way
/// and timing does not tell which logins exist. Refused (503) when it
/// waited too long for its turn.
pub async fn verify(password: String, stored: Option<String>) -> Result<bool, AppError> {
    let turn = turn().await?;
    Ok(tokio::task::spawn_blocking(move || {
        let _turn = turn;
        static DUMMY: OnceLock<Option<String>> = OnceLock::new();
        let dummy = DUMMY.get_or_init(|| hash_now("not a password of anyone").ok());
        let known = stored.is_some();
        let Some(stored) = stored.or_else(|| dummy.clone()) else {
            return false;
        };
        let Ok(parsed) = PasswordHash::new(&stored) else {
            tracing::error!("a stored password hash is not a PHC string");
            return false;
        };
        // Checked first, whatever `known` says: skipping it for unknown
        // logins would answer them faster.
        let matches = argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        known && matches
    })
    .await
    .unwrap_or(false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_are_salted() {
        let a = hash("correct horse".into()).await.unwrap();
        let b = hash("correct horse".into()).await.unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert!(verify("correct horse".into(), Some(a.clone()))
            .await
            .unwrap());
        assert!(!verify("wrong horse".into(), Some(a)).await.unwrap());
        assert!(!verify("not a password of anyone".into(), None)
            .await
            .unwrap());
        assert!(!verify("x".into(), Some("garbage".into())).await.unwrap());
    }

    #[tokio::test]
    async fn a_check_waits_its_turn_then_is_refused() {
        let turns = Turns(Arc::new(Semaphore::new(1)));
        let held = turns.take(TURN_WAIT).await.unwrap();
        let waited = turns.take(Duration::from_millis(50)).await;
        assert!(matches!(waited, Err(AppError::Unavailable(_))));
        drop(held);
        assert!(turns.take(Duration::from_millis(50)).await.is_ok());
    }
}
